//! Staged saturation: rule groups run one stage after another, each
//! saturating on its own (algebra, then recognize, then fusion, then
//! tiling), so an early group's closure never multiplies with a later
//! group's matches. luminal reports staging as the difference between a
//! 15-minute and a sub-minute compile.
//!
//! Every stage runs under egg's backoff scheduler wrapped by [`Timed`],
//! which records per rule the matches found, the rewrites that changed the
//! e-graph and the time spent searching and applying.

use super::analysis::{TsrAnalysis, TsrEGraph};
use super::lang::TsrLang;
use super::Limits;
use egg::{BackoffScheduler, Rewrite, RewriteScheduler, Runner, SearchMatches};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one rule did over a whole optimization.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleStats {
    /// Substitutions its left-hand side matched (before the guard), summed
    /// over searches: a match still present next iteration counts again.
    pub matches: usize,
    /// Matches that changed the e-graph.
    pub applied: usize,
    pub search: Duration,
    pub apply: Duration,
}

impl RuleStats {
    pub fn add(&mut self, o: &RuleStats) {
        self.matches += o.matches;
        self.applied += o.applied;
        self.search += o.search;
        self.apply += o.apply;
    }
}

/// One stage's outcome.
#[derive(Clone, Debug, Default)]
pub struct StageReport {
    pub name: String,
    pub iterations: usize,
    pub stop_reason: String,
    pub nodes_after: usize,
    pub time: Duration,
}

type Shared = Arc<Mutex<BTreeMap<String, RuleStats>>>;

/// The backoff scheduler, timed per rule.
struct Timed {
    inner: BackoffScheduler,
    stats: Shared,
}

impl Timed {
    fn record(&self, rule: &str, f: impl FnOnce(&mut RuleStats)) {
        // A poisoned lock only means an earlier panic while recording;
        // the counters are still meaningful.
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f(s.entry(rule.to_string()).or_default());
    }
}

impl RewriteScheduler<TsrLang, TsrAnalysis> for Timed {
    fn can_stop(&mut self, iteration: usize) -> bool {
        RewriteScheduler::<TsrLang, TsrAnalysis>::can_stop(&mut self.inner, iteration)
    }

    fn search_rewrite<'a>(
        &mut self,
        iteration: usize,
        egraph: &TsrEGraph,
        rewrite: &'a Rewrite<TsrLang, TsrAnalysis>,
    ) -> Vec<SearchMatches<'a, TsrLang>> {
        let start = Instant::now();
        let m = self.inner.search_rewrite(iteration, egraph, rewrite);
        let n: usize = m.iter().map(|m| m.substs.len()).sum();
        self.record(rewrite.name.as_str(), |s| {
            s.search += start.elapsed();
            s.matches += n;
        });
        m
    }

    fn apply_rewrite(
        &mut self,
        iteration: usize,
        egraph: &mut TsrEGraph,
        rewrite: &Rewrite<TsrLang, TsrAnalysis>,
        matches: Vec<SearchMatches<TsrLang>>,
    ) -> usize {
        let start = Instant::now();
        let n = self
            .inner
            .apply_rewrite(iteration, egraph, rewrite, matches);
        self.record(rewrite.name.as_str(), |s| {
            s.apply += start.elapsed();
            s.applied += n;
        });
        n
    }
}

/// A stage: a name (its groups joined by `+`) and its rewrites.
pub struct Stage {
    pub name: String,
    pub rewrites: Vec<Rewrite<TsrLang, TsrAnalysis>>,
}

/// Runs the stages in order on `egraph`. The node limit is global; every
/// stage gets the iteration limit and what is left of the time limit.
pub fn saturate(
    mut egraph: TsrEGraph,
    stages: &[Stage],
    limits: &Limits,
    rules: &mut BTreeMap<String, RuleStats>,
) -> (TsrEGraph, Vec<StageReport>) {
    let start = Instant::now();
    let mut reports = Vec::new();
    for stage in stages {
        let stats: Shared = Arc::default();
        let t = Instant::now();
        let left = limits.time.saturating_sub(start.elapsed());
        let runner = Runner::<TsrLang, TsrAnalysis>::new(TsrAnalysis::default())
            .with_egraph(egraph)
            .with_iter_limit(limits.iterations)
            .with_node_limit(limits.nodes)
            .with_time_limit(left)
            .with_scheduler(Timed {
                inner: BackoffScheduler::default(),
                stats: stats.clone(),
            })
            .run(&stage.rewrites);
        reports.push(StageReport {
            name: stage.name.clone(),
            iterations: runner.iterations.len(),
            stop_reason: runner
                .stop_reason
                .as_ref()
                .map(|r| format!("{r:?}"))
                .unwrap_or_default(),
            nodes_after: runner.egraph.total_number_of_nodes(),
            time: t.elapsed(),
        });
        egraph = runner.egraph;
        let stats = stats.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in stats.iter() {
            rules.entry(k.clone()).or_default().add(v);
        }
    }
    (egraph, reports)
}
