//! The e-graph optimizer: the graph goes into an egg e-graph, named rule
//! groups saturate it in stages under explicit limits, and a DAG-cost
//! extractor (greedy or ILP) picks the cheapest equivalent program for a
//! target. Repeated blocks (transformer layers) are found first and
//! optimized once ([`blocks`]).
//!
//! - [`lang`]: [`TsrLang`](lang::TsrLang), one generic e-node over the op table.
//! - [`analysis`]: per e-class type, constant value and source location.
//! - [`convert`]: graph -> e-graph and extracted choice -> graph.
//! - [`rules`]: rule groups as data, each replacement type-checked first.
//! - [`stages`]: one saturation per group, per-rule match/apply statistics.
//! - [`extract`]: deterministic greedy DAG extraction, acyclic by construction.
//! - [`ilp`]: exact DAG-cost extraction as a 0-1 program, seeded by greedy.
//! - [`blocks`]: structural hashing of layers, one optimization per block kind.
//! - [`cost`]: FLOP/byte estimates priced by the target's roofline, tiles
//!   by their traffic per memory level.

pub mod analysis;
pub mod blocks;
pub mod convert;
pub mod cost;
pub mod extract;
pub mod ilp;
pub mod lang;
pub mod rules;
pub mod stages;

use crate::{Pass, PassStats};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tessera_cost_model::TargetDesc;
use tessera_ir::{Diagnostic, Graph};

/// Saturation limits. The defaults are TENSAT's (15 iterations, 50k e-nodes)
/// with a 5 s wall-clock cap; a run stopped by the clock is not
/// reproducible, the other two limits are. With staging, the iteration limit
/// applies to each stage, the node and time limits to the whole run.
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

/// Which extractor picks the program from the saturated e-graph.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Extractor {
    /// [`extract::extract_dag`]: fast, DAG-aware, may miss sharing wins.
    Greedy,
    /// [`ilp::extract_ilp`]: optimal DAG cost within [`Config::ilp_time`],
    /// seeded by and falling back to the greedy result.
    Ilp,
}

impl std::str::FromStr for Extractor {
    type Err = String;
    fn from_str(s: &str) -> Result<Extractor, String> {
        match s {
            "greedy" => Ok(Extractor::Greedy),
            "ilp" => Ok(Extractor::Ilp),
            _ => Err(format!("unknown extractor '{s}' (known: greedy, ilp)")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Rule groups to run, by name ([`rules::GROUPS`]), in this order.
    pub groups: Vec<String>,
    /// When set, only the rules of those groups with these names run.
    pub only_rules: Option<Vec<String>>,
    pub limits: Limits,
    pub target: TargetDesc,
    /// Each group saturates in its own stage (in `groups` order); otherwise
    /// all rules run together in one.
    pub staged: bool,
    pub extractor: Extractor,
    /// The ILP solver's time limit, per extraction.
    pub ilp_time: Duration,
    /// Optimize each kind of repeated block once and reuse the result.
    pub reuse_blocks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            groups: rules::GROUPS.iter().map(|g| g.name.to_string()).collect(),
            only_rules: None,
            limits: Limits::default(),
            target: TargetDesc::builtin("cpu").expect("the cpu target is built in"),
            staged: true,
            extractor: Extractor::Greedy,
            ilp_time: Duration::from_secs(2),
            reuse_blocks: true,
        }
    }
}

/// What one optimization did. With block reuse the counts add up over the
/// optimized pieces (a block kind counts once), the costs over the whole
/// program.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The most iterations any stage ran.
    pub iterations: usize,
    /// E-nodes before saturation and after it.
    pub nodes_before: usize,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    pub stop_reason: String,
    /// Times each rule changed the e-graph.
    pub applied: BTreeMap<String, usize>,
    /// Times each rule's type guard refused a replacement.
    pub refused: BTreeMap<String, usize>,
    /// Matches, applications and time per rule.
    pub rules: BTreeMap<String, stages::RuleStats>,
    pub stages: Vec<stages::StageReport>,
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
    /// ILP extractions that ended optimal, at the time limit, or fell back
    /// to greedy (each fallback's reason in `ilp_notes`).
    pub ilp_optimal: usize,
    pub ilp_time_limit: usize,
    pub ilp_fallbacks: usize,
    pub ilp_notes: Vec<String>,
    /// The repeated blocks found, when block reuse was on.
    pub blocks: Option<blocks::BlockReport>,
}

impl Report {
    /// Adds a piece's report; `times` is how many copies of it the
    /// program holds (costs scale, work does not).
    fn absorb(&mut self, o: &Report, times: usize) {
        self.iterations = self.iterations.max(o.iterations);
        self.nodes_before += o.nodes_before;
        self.egraph_nodes += o.egraph_nodes;
        self.egraph_classes += o.egraph_classes;
        if self.stop_reason.is_empty() {
            self.stop_reason = o.stop_reason.clone();
        }
        for (k, v) in &o.applied {
            *self.applied.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.rules {
            self.rules.entry(k.clone()).or_default().add(v);
        }
        // Stages of the same name (one per optimized piece) add up.
        for st in &o.stages {
            match self.stages.iter_mut().find(|s| s.name == st.name) {
                Some(s) => {
                    s.iterations = s.iterations.max(st.iterations);
                    s.nodes_after += st.nodes_after;
                    s.time += st.time;
                }
                None => self.stages.push(st.clone()),
            }
        }
        self.build_time += o.build_time;
        self.saturate_time += o.saturate_time;
        self.extract_time += o.extract_time;
        self.cost_before += o.cost_before * times as f64;
        self.cost += o.cost * times as f64;
        self.kept_initial |= o.kept_initial;
        self.ilp_optimal += o.ilp_optimal;
        self.ilp_time_limit += o.ilp_time_limit;
        self.ilp_fallbacks += o.ilp_fallbacks;
        self.ilp_notes.extend(o.ilp_notes.iter().cloned());
    }
}

/// The configured groups compiled into stages.
fn compile_stages(cfg: &Config) -> Result<Vec<stages::Stage>, String> {
    let mut groups = Vec::new();
    for name in &cfg.groups {
        let group = rules::group(name).ok_or_else(|| {
            let known: Vec<&str> = rules::GROUPS.iter().map(|g| g.name).collect();
            format!("unknown rule group '{name}' (known: {})", known.join(", "))
        })?;
        let mut rw = rules::compile(group)?;
        if let Some(only) = &cfg.only_rules {
            rw.retain(|r| only.iter().any(|n| r.name.as_str() == n));
        }
        groups.push(stages::Stage {
            name: name.clone(),
            rewrites: rw,
        });
    }
    groups.retain(|s| !s.rewrites.is_empty());
    if !cfg.staged && groups.len() > 1 {
        let name = groups
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let rewrites = groups.into_iter().flat_map(|s| s.rewrites).collect();
        groups = vec![stages::Stage { name, rewrites }];
    }
    if groups.is_empty() {
        // One empty stage still rebuilds and reports, like a rule-less run.
        groups.push(stages::Stage {
            name: "none".into(),
            rewrites: Vec::new(),
        });
    }
    Ok(groups)
}

/// Optimizes `g` with the configured rule groups; `g` itself is untouched.
pub fn optimize(g: &Graph, cfg: &Config) -> Result<(Graph, Report), String> {
    let stages = compile_stages(cfg)?;
    if cfg.reuse_blocks {
        if let Some(done) = blocks::optimize_blocks(g, cfg, &stages)? {
            return Ok(done);
        }
    }
    optimize_with(g, cfg, &stages)
}

/// Extracts with the configured extractor; ILP outcomes are counted.
fn extract_with(
    eg: &analysis::TsrEGraph,
    roots: &[egg::Id],
    node_cost: &dyn Fn(&analysis::TsrEGraph, egg::Id, &lang::TsrLang) -> f64,
    cfg: &Config,
    report: &mut Report,
) -> Result<extract::Extraction, String> {
    let greedy = extract::extract_dag(eg, roots, node_cost)?;
    if cfg.extractor == Extractor::Greedy {
        return Ok(greedy);
    }
    let out = ilp::extract_ilp(eg, roots, node_cost, greedy, cfg.ilp_time)?;
    match &out.status {
        ilp::IlpStatus::Optimal | ilp::IlpStatus::Trivial => report.ilp_optimal += 1,
        ilp::IlpStatus::TimeLimit => report.ilp_time_limit += 1,
        ilp::IlpStatus::FellBack(why) => {
            report.ilp_fallbacks += 1;
            report.ilp_notes.push(why.clone());
        }
    }
    Ok(out.extraction)
}

/// The whole-graph optimization: build, saturate in stages, extract.
pub(crate) fn optimize_with(
    g: &Graph,
    cfg: &Config,
    stages: &[stages::Stage],
) -> Result<(Graph, Report), String> {
    let mut report = Report::default();

    let start = Instant::now();
    let convert::Converted { egraph, roots } = convert::graph_to_egraph(g)?;
    report.build_time = start.elapsed();
    report.nodes_before = egraph.total_number_of_nodes();

    // The program as it came in (after hash-consing and folding), priced
    // first: the result is never worse than it by the cost model, even where
    // the extractor misjudges the saturated e-graph.
    let model = cost::CostModel::new(cfg.target.clone());
    let node_cost =
        |eg: &analysis::TsrEGraph, id: egg::Id, n: &lang::TsrLang| model.node_cost(eg, id, n);
    let initial = egraph.clone();
    let start = Instant::now();
    let ex0 = extract::extract_dag(&initial, &roots, &node_cost)?;
    report.extract_time = start.elapsed();
    report.cost_before = ex0.cost;

    let start = Instant::now();
    let (eg, stage_reports) = stages::saturate(egraph, stages, &cfg.limits, &mut report.rules);
    report.saturate_time = start.elapsed();
    report.iterations = stage_reports
        .iter()
        .map(|s| s.iterations)
        .max()
        .unwrap_or(0);
    report.stop_reason = stage_reports
        .iter()
        .map(|s| format!("{}: {}", s.name, s.stop_reason))
        .collect::<Vec<_>>()
        .join(", ");
    report.stages = stage_reports;
    for (rule, s) in &report.rules {
        if s.applied > 0 {
            report.applied.insert(rule.clone(), s.applied);
        }
    }
    report.refused = eg.analysis.refused.clone();
    report.egraph_nodes = eg.total_number_of_nodes();
    report.egraph_classes = eg.number_of_classes();
    let roots: Vec<egg::Id> = roots.iter().map(|&r| eg.find(r)).collect();

    let start = Instant::now();
    let ex = extract_with(&eg, &roots, &node_cost, cfg, &mut report)?;
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

impl EgraphPass {
    /// The pass with options from a pipeline string
    /// (`egraph{extractor=ilp target=accel}`).
    pub fn from_args(args: &crate::PassArgs) -> Result<EgraphPass, String> {
        let mut c = Config::default();
        let num = |k: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("option {k}={v}: expected a non-negative integer"))
        };
        let flag = |k: &str, v: &str| {
            v.parse::<bool>()
                .map_err(|_| format!("option {k}={v}: expected true or false"))
        };
        for (k, v) in &args.0 {
            match k.as_str() {
                "extractor" => c.extractor = v.parse()?,
                "target" => {
                    c.target = TargetDesc::builtin(v)
                        .ok_or_else(|| format!("unknown target '{v}' (known: cpu, cuda, accel, ref)"))?
                }
                "reuse-blocks" => c.reuse_blocks = flag(k, v)?,
                "staged" => c.staged = flag(k, v)?,
                "groups" => {
                    c.groups = v.split(',').filter(|s| !s.is_empty()).map(String::from).collect()
                }
                "ilp-ms" => c.ilp_time = Duration::from_millis(num(k, v)?),
                "iterations" => c.limits.iterations = num(k, v)? as usize,
                "nodes" => c.limits.nodes = num(k, v)? as usize,
                "time-ms" => c.limits.time = Duration::from_millis(num(k, v)?),
                _ => return Err(format!("unknown option '{k}' (known: extractor, target, reuse-blocks, staged, groups, ilp-ms, iterations, nodes, time-ms)")),
            }
        }
        // Unknown group names fail here, not in the middle of a compile.
        compile_stages(&c)?;
        Ok(EgraphPass { config: c })
    }
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
            ("e-nodes before".to_string(), r.nodes_before),
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
        if let Some(b) = &r.blocks {
            counters.push(("block ops".to_string(), b.block_ops));
            counters.push(("block instances".to_string(), b.instances));
        }
        if self.config.extractor == Extractor::Ilp {
            counters.push(("ilp optimal".to_string(), r.ilp_optimal));
            counters.push(("ilp time limit".to_string(), r.ilp_time_limit));
            counters.push(("ilp fallbacks".to_string(), r.ilp_fallbacks));
        }
        for st in &r.stages {
            counters.push((format!("stage {} us", st.name), micros(st.time)));
        }
        for (k, v) in r.rules.iter().filter(|(_, v)| v.matches > 0) {
            counters.push((format!("rule {k} matches"), v.matches));
            counters.push((format!("rule {k} applied"), v.applied));
            counters.push((format!("rule {k} us"), micros(v.search + v.apply)));
        }
        counters.extend(r.refused.iter().map(|(k, v)| (format!("refused {k}"), *v)));
        Ok(PassStats { changes, counters })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_extract;
#[cfg(test)]
mod tests_fusion;
