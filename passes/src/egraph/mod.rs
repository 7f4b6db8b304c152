//! The e-graph optimizer: the graph goes into an egg e-graph, named rule
//! groups saturate it under explicit limits, and a DAG-cost extractor picks
//! the cheapest equivalent program for a target.
//!
//! - [`lang`]: [`TsrLang`](lang::TsrLang), one generic e-node over the op table.
//! - [`analysis`]: per e-class type, constant value and source location.
//! - [`convert`]: graph -> e-graph and extracted choice -> graph.
//! - [`rules`]: rule groups as data, each replacement type-checked first.
//! - [`extract`]: deterministic greedy DAG extraction, acyclic by construction.
//! - [`cost`]: FLOP/byte estimates priced by the target's roofline.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod extract;
pub mod lang;
pub mod rules;

use crate::{Pass, PassStats};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tessera_cost_model::TargetDesc;
use tessera_ir::{Diagnostic, Graph};

/// Saturation limits. The defaults are TENSAT's (15 iterations, 50k e-nodes)
/// with a 5 s wall-clock cap; a run stopped by the clock is not
/// reproducible, the other two limits are.
#[derive(Clone, Debug)]
pub struct Limits {
    pub iterations: usize,
    pub nodes: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            iterations: 15,
            nodes: 50_000,
            time: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Rule groups to run, by name ([`rules::GROUPS`]).
    pub groups: Vec<String>,
    /// When set, only the rules of those groups with these names run.
    pub only_rules: Option<Vec<String>>,
    pub limits: Limits,
    pub target: TargetDesc,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            groups: rules::GROUPS.iter().map(|g| g.name.to_string()).collect(),
            only_rules: None,
            limits: Limits::default(),
            target: TargetDesc::builtin("cpu").expect("the cpu target is built in"),
        }
    }
}

/// What one optimization did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub iterations: usize,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    pub stop_reason: String,
    /// Times each rule changed the e-graph.
    pub applied: BTreeMap<String, usize>,
    /// Times each rule's type guard refused a replacement.
    pub refused: BTreeMap<String, usize>,
    pub build_time: Duration,
    pub saturate_time: Duration,
    pub extract_time: Duration,
    /// DAG cost on the target, seconds, of the program before saturation
    /// and of the one returned.
    pub cost_before: f64,
    pub cost: f64,
    /// The saturated e-graph's extraction cost more than the input program,
    /// which was returned instead.
    pub kept_initial: bool,
}

/// Optimizes `g` with the configured rule groups; `g` itself is untouched.
pub fn optimize(g: &Graph, cfg: &Config) -> Result<(Graph, Report), String> {
    let mut rewrites = Vec::new();
    for name in &cfg.groups {
        let group = rules::group(name).ok_or_else(|| {
            let known: Vec<&str> = rules::GROUPS.iter().map(|g| g.name).collect();
            format!("unknown rule group '{name}' (known: {})", known.join(", "))
        })?;
        rewrites.extend(rules::compile(group)?);
    }
    if let Some(only) = &cfg.only_rules {
        rewrites.retain(|r| only.iter().any(|n| r.name.as_str() == n));
    }
    let mut report = Report::default();

    let start = Instant::now();
    let convert::Converted { egraph, roots } = convert::graph_to_egraph(g)?;
    report.build_time = start.elapsed();

    // The program as it came in (after hash-consing and folding), priced
    // first: the result is never worse than it by the cost model, even where
    // the greedy extractor misjudges the saturated e-graph.
    let model = cost::CostModel::new(cfg.target.clone());
    let node_cost =
        |eg: &analysis::TsrEGraph, id: egg::Id, n: &lang::TsrLang| model.node_cost(eg, id, n);
    let initial = egraph.clone();
    let start = Instant::now();
    let ex0 = extract::extract_dag(&initial, &roots, &node_cost)?;
    report.extract_time = start.elapsed();
    report.cost_before = ex0.cost;

    let start = Instant::now();
    let runner = egg::Runner::<lang::TsrLang, analysis::TsrAnalysis>::new(Default::default())
        .with_egraph(egraph)
        .with_iter_limit(cfg.limits.iterations)
        .with_node_limit(cfg.limits.nodes)
        .with_time_limit(cfg.limits.time)
        .run(&rewrites);
    report.saturate_time = start.elapsed();
    report.iterations = runner.iterations.len();
    report.stop_reason = runner
        .stop_reason
        .as_ref()
        .map(|r| format!("{r:?}"))
        .unwrap_or_default();
    for it in &runner.iterations {
        for (rule, n) in &it.applied {
            *report.applied.entry(rule.to_string()).or_default() += n;
        }
    }
    let eg = runner.egraph;
    report.refused = eg.analysis.refused.clone();
    report.egraph_nodes = eg.total_number_of_nodes();
    report.egraph_classes = eg.number_of_classes();
    let roots: Vec<egg::Id> = roots.iter().map(|&r| eg.find(r)).collect();

    let start = Instant::now();
    let ex = extract::extract_dag(&eg, &roots, &node_cost)?;
    let out = if ex.cost <= ex0.cost {
        report.cost = ex.cost;
        convert::egraph_to_graph(g, &eg, &roots, &ex.choice)?
    } else {
        report.cost = ex0.cost;
        report.kept_initial = true;
        convert::egraph_to_graph(g, &initial, &roots, &ex0.choice)?
    };
    report.extract_time += start.elapsed();
    Ok((out, report))
}

/// The `egraph` pass: [`optimize`] with every rule group, the default
/// [`Limits`] and the `cpu` target.
#[derive(Default)]
pub struct EgraphPass {
    pub config: Config,
}

impl Pass for EgraphPass {
    fn name(&self) -> &'static str {
        "egraph"
    }

    fn run(&self, g: &mut Graph) -> Result<PassStats, Diagnostic> {
        let (out, r) =
            optimize(g, &self.config).map_err(|e| Diagnostic::new(format!("egraph: {e}")))?;
        let applied: usize = r.applied.values().sum();
        let changes = applied + g.ops.len().abs_diff(out.ops.len());
        *g = out;
        let micros = |d: Duration| d.as_micros() as usize;
        let mut counters = vec![
            ("iterations".to_string(), r.iterations),
            ("e-nodes".to_string(), r.egraph_nodes),
            ("e-classes".to_string(), r.egraph_classes),
            ("build us".to_string(), micros(r.build_time)),
            ("saturate us".to_string(), micros(r.saturate_time)),
            ("extract us".to_string(), micros(r.extract_time)),
        ];
        // Cost in nanoseconds of modelled time on the target.
        counters.push((
            "cost ns before".to_string(),
            (r.cost_before * 1e9).round() as usize,
        ));
        counters.push(("cost ns after".to_string(), (r.cost * 1e9).round() as usize));
        counters.extend(r.applied.iter().map(|(k, v)| (format!("rule {k}"), *v)));
        counters.extend(r.refused.iter().map(|(k, v)| (format!("refused {k}"), *v)));
        Ok(PassStats { changes, counters })
    }
}

#[cfg(test)]
mod tests;
