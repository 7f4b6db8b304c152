//! ILP extraction: the exact DAG cost (every chosen e-node paid once, however
//! many users share it) as a 0-1 program, solved by `good_lp` on the
//! pure-Rust `microlp` branch and bound.
//!
//! The model, for the e-classes reachable from the roots:
//! - a binary `x[c,n]` per candidate e-node; at most one per class, exactly
//!   one per root class;
//! - a chosen e-node needs every child class chosen: `x[c,n] <= Σ x[k,·]`;
//! - acyclicity as in TENSAT: an order `t[c]` per class of a cyclic strongly
//!   connected component, and `t[c] >= t[k] + 1` whenever a chosen e-node of
//!   `c` uses a class `k` of the same component (big-M on `x[c,n]`). Edges
//!   between components can never close a cycle, so they get no constraint;
//!   unlike up-front cycle banning, no e-node is excluded;
//! - objective: Σ cost(n) · x[c,n].
//!
//! Two reductions keep it small without losing optimality: e-nodes whose
//! children include their own class are dropped (never usable), and of the
//! e-nodes of a class with the same child classes only the cheapest is kept
//! (they are interchangeable for the rest of the program; this is what
//! collapses tile alternatives to one variable).
//!
//! The greedy extraction seeds the solver (a feasible incumbent from the
//! start) and is what a timed-out or failed solve falls back to; the outcome
//! says which happened. The solver is deterministic; only a run stopped by
//! the clock may differ between machines.

use super::analysis::TsrEGraph;
use super::convert::Choice;
use super::extract::{check_acyclic, Extraction};
use super::lang::TsrLang;
use egg::{Id, Language};
use good_lp::solvers::microlp::microlp;
use good_lp::{
    variable, Expression, ProblemVariables, ResolutionError, Solution, SolutionStatus, SolverModel,
    Variable, WithInitialSolution, WithTimeLimit,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How an ILP extraction ended.
#[derive(Clone, Debug, PartialEq)]
pub enum IlpStatus {
    /// Proven optimal.
    Optimal,
    /// Stopped by the time limit with a solution at least as good as the seed.
    TimeLimit,
    /// Nothing to decide: every reachable class had a single candidate.
    Trivial,
    /// The seed (greedy) extraction was returned; the reason says why.
    FellBack(String),
}

impl std::fmt::Display for IlpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IlpStatus::Optimal => f.write_str("optimal"),
            IlpStatus::TimeLimit => f.write_str("time limit (best found)"),
            IlpStatus::Trivial => f.write_str("trivial"),
            IlpStatus::FellBack(why) => write!(f, "fell back to greedy: {why}"),
        }
    }
}

/// Size of the 0-1 program, for reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IlpSize {
    pub classes: usize,
    pub node_vars: usize,
    pub order_vars: usize,
}

pub struct IlpOutcome {
    pub extraction: Extraction,
    pub status: IlpStatus,
    pub size: IlpSize,
}

struct Candidate {
    /// Index of the e-node in its class.
    node: usize,
    cost: f64,
    /// Distinct child classes (dense indices), sorted.
    kids: Vec<usize>,
}

/// The classes reachable from the roots, dense-indexed in id order, with
/// their candidate e-nodes after the two reductions.
struct Problem {
    ids: Vec<Id>,
    dense: HashMap<Id, usize>,
    cands: Vec<Vec<Candidate>>,
}

fn build_problem(
    eg: &TsrEGraph,
    roots: &[Id],
    node_cost: &dyn Fn(&TsrEGraph, Id, &TsrLang) -> f64,
) -> Problem {
    let mut seen: HashMap<Id, ()> = HashMap::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    while let Some(id) = stack.pop() {
        if seen.insert(id, ()).is_some() {
            continue;
        }
        for n in &eg[id].nodes {
            stack.extend(n.children().iter().map(|&c| eg.find(c)));
        }
    }
    let mut ids: Vec<Id> = seen.into_keys().collect();
    ids.sort();
    let dense: HashMap<Id, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let cands = ids
        .iter()
        .enumerate()
        .map(|(ci, &id)| {
            let mut best: BTreeMap<Vec<usize>, Candidate> = BTreeMap::new();
            for (ni, node) in eg[id].nodes.iter().enumerate() {
                let mut kids: Vec<usize> = node
                    .children()
                    .iter()
                    .map(|&c| dense[&eg.find(c)])
                    .collect();
                kids.sort_unstable();
                kids.dedup();
                if kids.contains(&ci) {
                    continue;
                }
                let cost = node_cost(eg, id, node);
                match best.get(&kids) {
                    Some(b) if b.cost <= cost => {}
                    _ => {
                        best.insert(
                            kids.clone(),
                            Candidate {
                                node: ni,
                                cost,
                                kids,
                            },
                        );
                    }
                }
            }
            let mut v: Vec<Candidate> = best.into_values().collect();
            v.sort_by_key(|c| c.node);
            v
        })
        .collect();
    Problem { ids, dense, cands }
}

/// Tarjan's strongly connected components of the class graph (iterative).
/// Returns the component of every class and each component's size.
fn components(p: &Problem) -> (Vec<usize>, Vec<usize>) {
    let n = p.ids.len();
    let succ: Vec<Vec<usize>> = p
        .cands
        .iter()
        .map(|cs| {
            let mut s: Vec<usize> = cs.iter().flat_map(|c| c.kids.iter().copied()).collect();
            s.sort_unstable();
            s.dedup();
            s
        })
        .collect();
    const NONE: usize = usize::MAX;
    let (mut index, mut low, mut comp) = (vec![NONE; n], vec![0; n], vec![NONE; n]);
    let mut on_stack = vec![false; n];
    let (mut stack, mut sizes, mut next) = (Vec::new(), Vec::new(), 0);
    for start in 0..n {
        if index[start] != NONE {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(start, 0)];
        index[start] = next;
        low[start] = next;
        next += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut i)) = call.last_mut() {
            if let Some(&w) = succ[v].get(*i) {
                *i += 1;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(u, _)) = call.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                let id = sizes.len();
                let mut size = 0;
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = id;
                    size += 1;
                    if w == v {
                        break;
                    }
                }
                sizes.push(size);
            }
        }
    }
    (comp, sizes)
}

/// Extracts the DAG-cost-optimal program for `roots`, seeded with (and
/// falling back to) `seed`, an acyclic extraction of the same roots.
pub fn extract_ilp(
    eg: &TsrEGraph,
    roots: &[Id],
    node_cost: &dyn Fn(&TsrEGraph, Id, &TsrLang) -> f64,
    seed: Extraction,
    time_limit: Duration,
) -> Result<IlpOutcome, String> {
    if !eg.clean {
        return Err("extraction needs a rebuilt e-graph (call rebuild first)".into());
    }
    let p = build_problem(eg, roots, node_cost);
    let (comp, comp_size) = components(&p);
    let cyclic = |c: usize| comp_size[comp[c]] > 1;
    let mut size = IlpSize {
        classes: p.ids.len(),
        ..Default::default()
    };
    let fall_back = |seed: Extraction, size: IlpSize, why: String| IlpOutcome {
        extraction: seed,
        status: IlpStatus::FellBack(why),
        size,
    };
    if p.cands.iter().all(|c| c.len() <= 1) {
        return Ok(IlpOutcome {
            extraction: seed,
            status: IlpStatus::Trivial,
            size,
        });
    }

    let mut vars = ProblemVariables::new();
    let x: Vec<Vec<Variable>> = p
        .cands
        .iter()
        .map(|cs| cs.iter().map(|_| vars.add(variable().binary())).collect())
        .collect();
    let t: Vec<Option<Variable>> = (0..p.ids.len())
        .map(|c| {
            cyclic(c).then(|| vars.add(variable().min(0).max((comp_size[comp[c]] - 1) as f64)))
        })
        .collect();
    size.node_vars = x.iter().map(Vec::len).sum();
    size.order_vars = t.iter().flatten().count();

    // The seed as a full assignment: chosen e-nodes, and for the order
    // variables the longest chosen path below each class inside its component.
    let seed_node: HashMap<usize, usize> = seed
        .choice
        .iter()
        .filter_map(|(id, node)| {
            let ci = *p.dense.get(&eg.find(*id))?;
            let ni = eg[p.ids[ci]].nodes.iter().position(|n| n == node)?;
            let mut kids: Vec<usize> = node
                .children()
                .iter()
                .map(|&c| p.dense[&eg.find(c)])
                .collect();
            kids.sort_unstable();
            kids.dedup();
            // The kept candidate with the same children stands in for it.
            let k = p.cands[ci]
                .iter()
                .position(|c| c.node == ni || c.kids == kids)?;
            Some((ci, k))
        })
        .collect();
    let mut order = vec![0.0; p.ids.len()];
    let mut by_depth: Vec<usize> = seed_node.keys().copied().collect();
    by_depth.sort_unstable();
    // Relax until stable: the seed is acyclic, so this takes at most its depth.
    loop {
        let mut changed = false;
        for &c in &by_depth {
            for &k in &p.cands[c][seed_node[&c]].kids {
                if cyclic(c) && comp[k] == comp[c] && order[c] < order[k] + 1.0 {
                    order[c] = order[k] + 1.0;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut initial: Vec<(Variable, f64)> = Vec::new();
    for (c, xs) in x.iter().enumerate() {
        for (k, &v) in xs.iter().enumerate() {
            initial.push((v, f64::from(u8::from(seed_node.get(&c) == Some(&k)))));
        }
        if let Some(tv) = t[c] {
            initial.push((tv, order[c]));
        }
    }

    let objective: Expression = p
        .cands
        .iter()
        .zip(&x)
        .flat_map(|(cs, xs)| cs.iter().zip(xs).map(|(c, &v)| c.cost * v))
        .sum();
    let chosen = |c: usize| -> Expression { x[c].iter().copied().sum() };
    let mut model = vars
        .minimise(objective)
        .using(microlp)
        .with_initial_solution(initial)
        .with_time_limit(time_limit.as_secs_f64());
    let root_idx: Vec<usize> = roots.iter().map(|&r| p.dense[&eg.find(r)]).collect();
    for c in 0..p.ids.len() {
        if x[c].is_empty() {
            if root_idx.contains(&c) {
                return Ok(fall_back(
                    seed,
                    size,
                    format!("root e-class {} has no usable e-node", p.ids[c]),
                ));
            }
            continue;
        }
        if root_idx.contains(&c) {
            model.add_constraint(chosen(c).eq(1));
        } else if x[c].len() > 1 {
            model.add_constraint(chosen(c).leq(1));
        }
        for (cand, &v) in p.cands[c].iter().zip(&x[c]) {
            for &k in &cand.kids {
                model.add_constraint((v - chosen(k)).leq(0));
                if let (Some(tc), Some(tk)) = (t[c], t[k]) {
                    if comp[k] == comp[c] {
                        let m = comp_size[comp[c]] as f64;
                        // x = 1: t[c] >= t[k] + 1; x = 0: always satisfiable.
                        model.add_constraint((tc - tk - m * v).geq(1.0 - m));
                    }
                }
            }
        }
    }

    let solution = match model.solve() {
        Ok(s) => s,
        Err(ResolutionError::Other(why)) => return Ok(fall_back(seed, size, why.to_string())),
        Err(e) => return Ok(fall_back(seed, size, format!("solver error: {e}"))),
    };
    let status = match solution.status() {
        SolutionStatus::Optimal => IlpStatus::Optimal,
        _ => IlpStatus::TimeLimit,
    };

    // Follow the chosen e-nodes from the roots, so stray selections the
    // objective tolerated (zero-cost ones) never reach the program.
    let pick = |c: usize| -> Option<usize> {
        x[c].iter()
            .position(|&v| solution.value(v) > 0.5)
            .map(|k| p.cands[c][k].node)
    };
    let mut choice = Choice::new();
    let mut cost = 0.0;
    let mut stack = root_idx.clone();
    let mut done = vec![false; p.ids.len()];
    while let Some(c) = stack.pop() {
        if std::mem::replace(&mut done[c], true) {
            continue;
        }
        let Some(ni) = pick(c) else {
            return Ok(fall_back(
                seed,
                size,
                format!("the solution chose nothing for e-class {}", p.ids[c]),
            ));
        };
        let node = eg[p.ids[c]].nodes[ni].clone();
        cost += node_cost(eg, p.ids[c], &node);
        stack.extend(node.children().iter().map(|&k| p.dense[&eg.find(k)]));
        choice.insert(p.ids[c], node);
    }
    if let Err(e) = check_acyclic(eg, roots, &choice) {
        return Ok(fall_back(
            seed,
            size,
            format!("the solution is invalid: {e}"),
        ));
    }
    // A time-limited incumbent can only be worse when the seed was refused.
    if cost > seed.cost * (1.0 + 1e-9) {
        return Ok(fall_back(
            seed,
            size,
            format!("the solver's best ({cost:e}) is costlier than the seed"),
        ));
    }
    Ok(IlpOutcome {
        extraction: Extraction { choice, cost },
        status,
        size,
    })
}
