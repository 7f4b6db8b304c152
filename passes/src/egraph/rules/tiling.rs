//! The `tiling` group: a contraction with static shapes gets alternatives
//! carrying a `sched.tile = [mt, nt, kt]` blocking. The attribute changes no
//! value (every op ignores `sched.*` attributes; backends may take it as
//! their blocking), so each alternative is the same e-class and the
//! extractor picks the blocking the target's cost model prices cheapest
//! ([`tessera_cost_model::op_cost`]), or none.
//!
//! The candidates come from every built-in target's memories
//! ([`op_cost::tile_candidates`]: tiles fitting a CPU's L1 and L2, an
//! accelerator's scratchpad, a GPU's shared memory), clamped to the
//! problem. Rules see no configuration, so the e-graph holds the union and
//! the extraction for one target discards the tiles that do not pay there.
//! It runs last: earlier groups' patterns name ops without attributes.

use super::{Cond, Rhs, RuleDef, TNode, Template, Vars};
use crate::egraph::analysis::TsrEGraph;
use crate::egraph::lang::{AttrSet, TsrLang};
use egg::Id;
use tessera_cost_model::op_cost::{self, TILE_ATTR};
use tessera_cost_model::TargetDesc;
use tessera_ir::Attr;

/// The rules with a numeric test in this file.
pub const TESTED: &[&str] = &["tile-matmul", "tile-linear", "tile-gemm"];

#[rustfmt::skip]
pub fn rules() -> Vec<RuleDef> {
    let r = |name, lhs, rhs, cond| RuleDef { name, lhs, rhs, cond };
    vec![
        // op(a, b, ..) == op(a, b, ..) {sched.tile = t}: a schedule, not a value
        r("tile-matmul", "(matmul* ?a ?b)",             Rhs::Build(tile), Cond::Always),
        r("tile-linear", "(linear* ?a ?b ?bias ?res)",  Rhs::Build(tile), Cond::Always),
        r("tile-gemm",   "(gemm* ?a ?b ?c)",            Rhs::Build(tile), Cond::Always),
    ]
}

/// Candidate tiles for an `m x n x k` product of `elem_bytes` elements:
/// every built-in target's, clamped to the problem, each once.
fn candidates(m: u64, n: u64, k: u64, elem_bytes: f64) -> Vec<[u64; 3]> {
    let mut out: Vec<[u64; 3]> = Vec::new();
    for name in TargetDesc::BUILTIN {
        let Some(t) = TargetDesc::builtin(name) else {
            continue;
        };
        for [mt, nt, kt] in op_cost::tile_candidates(&t, elem_bytes) {
            let c = [mt.min(m), nt.min(n), kt.min(k)];
            // A tile the size of the whole problem is no blocking at all.
            if c != [m, n, k] && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

fn tile(eg: &TsrEGraph, eclass: Id, vars: &Vars) -> Vec<Template> {
    let (a, b) = (eg.find(vars.get("?a")), eg.find(vars.get("?b")));
    let Some(out) = eg[eclass].data.ty.as_ref() else {
        return Vec::new();
    };
    let (Some(ta), Some(tb)) = (eg[a].data.ty.as_ref(), eg[b].data.ty.as_ref()) else {
        return Vec::new();
    };
    if [ta, tb, out].iter().any(|t| t.static_shape().is_none()) {
        return Vec::new();
    }
    let mut templates = Vec::new();
    for node in eg[eclass].nodes.iter() {
        let Some(op) = node.as_op() else { continue };
        let attrs = op
            .attrs
            .as_ref()
            .map(|s| s.attrs().clone())
            .unwrap_or_default();
        let is_product = matches!(op.kind.mnemonic(), "matmul" | "linear" | "gemm");
        if !is_product
            || op.result != 0
            || attrs.contains_key(TILE_ATTR)
            || op.children.len() < 2
            || eg.find(op.children[0]) != a
            || eg.find(op.children[1]) != b
        {
            continue;
        }
        let Some(g) = op_cost::gemm_shape(op.kind, &attrs, ta, tb, out, 1) else {
            continue;
        };
        let (m, n, k) = (g.m as u64, g.n as u64, g.k as u64);
        for t in candidates(m, n, k, g.elem_bytes) {
            let mut with = attrs.clone();
            with.insert(
                TILE_ATTR.into(),
                Attr::Ints(t.iter().map(|&x| x as i64).collect()),
            );
            let mut tpl = Template::default();
            let kids: Vec<Id> = op
                .children
                .iter()
                .map(|&c| tpl.push(TNode::Class(c)))
                .collect();
            tpl.push(TNode::New(TsrLang::op(op.kind, AttrSet::new(with), kids)));
            templates.push(tpl);
        }
    }
    templates
}

#[cfg(test)]
mod tests;
