//! The `algebra` group: identities that hold for every value, each under a
//! comment stating it. Rules that drop an op (`x*1 -> x`) rely on the type
//! guard: when the constant broadcasts `x` to a bigger shape the types
//! differ and the rewrite is refused.

use super::{Cond, Rhs, RuleDef, TNode, Template, Vars};
use crate::egraph::analysis::TsrEGraph;
use crate::egraph::lang::{AttrSet, TsrLang};
use egg::Id;
use tessera_ir::{Attr, OpKind};

#[rustfmt::skip]
pub fn rules() -> Vec<RuleDef> {
    use Cond::*;
    use Rhs::{Build, Pattern as P};
    let r = |name, lhs, rhs, cond| RuleDef { name, lhs, rhs, cond };
    vec![
        // transpose(transpose(x, p), q) == transpose(x, p∘q), and x when p∘q is the identity
        r("transpose-transpose", "(transpose* (transpose* ?x))",       Build(compose_transposes),        Always),
        // reshape(reshape(x, s1), s2) == reshape(x, s2): a reshape only reads the
        // elements in order, unless s2 copies a dim of its input (a 0 entry)
        r("reshape-reshape",     "(reshape* (reshape* ?x ?s1) ?s2)",   Build(collapse_reshapes),         Const(&["?s2"])),
        // reshape(x, s) == x when the result has x's type (the guard proves it)
        r("reshape-same",        "(reshape* ?x ?s)",                   P("?x"),                          Always),
        // identity(x) == x
        r("identity",            "(identity ?x)",                      P("?x"),                          Always),
        // -(-x) == x, exactly, for floats and two's complement integers alike
        r("neg-neg",             "(neg (neg ?x))",                     P("?x"),                          Always),
        // x * 1 == 1 * x == x / 1 == x
        r("mul-one",             "(mul ?x ?c)",                        P("?x"),                          Splat("?c", 1.0)),
        r("one-mul",             "(mul ?c ?x)",                        P("?x"),                          Splat("?c", 1.0)),
        r("div-one",             "(div ?x ?c)",                        P("?x"),                          Splat("?c", 1.0)),
        // x + 0 == 0 + x == x - 0 == x (up to the sign of a zero result)
        r("add-zero",            "(add ?x ?c)",                        P("?x"),                          Splat("?c", 0.0)),
        r("zero-add",            "(add ?c ?x)",                        P("?x"),                          Splat("?c", 0.0)),
        r("sub-zero",            "(sub ?x ?c)",                        P("?x"),                          Splat("?c", 0.0)),
        // c * x == x * c and c + x == x + c: constants go right, so the
        // constant chains below see one form
        r("mul-const-right",     "(mul ?c ?x)",                        P("(mul ?x ?c)"),                 ConstNotConst("?c", "?x")),
        r("add-const-right",     "(add ?c ?x)",                        P("(add ?x ?c)"),                 ConstNotConst("?c", "?x")),
        // (x * a) * b == x * (a * b) and (x + a) + b == x + (a + b) for
        // constants a, b; the analysis folds a*b into one constant
        r("mul-const-assoc",     "(mul (mul ?x ?a) ?b)",               P("(mul ?x (mul ?a ?b))"),        Const(&["?a", "?b"])),
        r("add-const-assoc",     "(add (add ?x ?a) ?b)",               P("(add ?x (add ?a ?b))"),        Const(&["?a", "?b"])),
        // x / c == x * (1/c) and x - c == x + (-c) for float constants: scales
        // and shifts then gather with the rules above (1/c rounds once)
        r("div-const",           "(div ?x ?c)",                        P("(mul ?x (reciprocal ?c))"),    FloatConst(&["?c"])),
        r("sub-const",           "(sub ?x ?c)",                        P("(add ?x (neg ?c))"),           FloatConst(&["?c"])),
        // (-x) * (-y) == x * y, exactly
        r("neg-mul-neg",         "(mul (neg ?x) (neg ?y))",            P("(mul ?x ?y)"),                 Always),
        // -(x * c) == x * (-c) for float constants (negation is exact)
        r("neg-mul-const",       "(neg (mul ?x ?c))",                  P("(mul ?x (neg ?c))"),           FloatConst(&["?c"])),
    ]
}

fn ints_attr(attrs: &Option<AttrSet>, name: &str) -> Option<Vec<i64>> {
    match attrs.as_ref()?.attrs().get(name) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

/// A transpose's permutation over `rank` axes (absent = reversed axes),
/// normalized to non-negative entries.
fn perm_of(attrs: &Option<AttrSet>, rank: usize) -> Option<Vec<usize>> {
    let p = ints_attr(attrs, "perm").unwrap_or_else(|| (0..rank as i64).rev().collect());
    if p.len() != rank {
        return None;
    }
    p.iter()
        .map(|&a| {
            let a = if a < 0 { a + rank as i64 } else { a };
            (0..rank as i64).contains(&a).then_some(a as usize)
        })
        .collect()
}

/// The inner and outer e-nodes of `kind(kind(x, ..), ..)` in `eclass`.
fn nested(eg: &TsrEGraph, eclass: Id, kind: OpKind, x: Id) -> Vec<(&TsrLang, &TsrLang)> {
    let is = |n: &TsrLang| n.as_op().is_some_and(|o| o.kind == kind && o.result == 0);
    let mut out = Vec::new();
    for outer in eg[eclass].nodes.iter().filter(|n| is(n)) {
        let inner_class = outer.as_op().expect("op").children[0];
        for inner in eg[inner_class].nodes.iter().filter(|n| is(n)) {
            if eg.find(inner.as_op().expect("op").children[0]) == eg.find(x) {
                out.push((inner, outer));
            }
        }
    }
    out
}

fn compose_transposes(eg: &TsrEGraph, eclass: Id, vars: &Vars) -> Vec<Template> {
    let x = vars.get("?x");
    let Some(rank) = eg[x].data.ty.as_ref().map(|t| t.rank()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (inner, outer) in nested(
        eg,
        eclass,
        OpKind::from_mnemonic("transpose").expect("transpose exists"),
        x,
    ) {
        let (Some(p), Some(q)) = (
            perm_of(&inner.as_op().expect("op").attrs, rank),
            perm_of(&outer.as_op().expect("op").attrs, rank),
        ) else {
            continue;
        };
        // Result axis i is the inner result's axis q[i], which is x's axis p[q[i]].
        let composed: Vec<usize> = q.iter().map(|&i| p[i]).collect();
        if composed.iter().enumerate().all(|(i, &a)| i == a) {
            out.push(Template::class(x));
            continue;
        }
        let mut attrs = tessera_ir::Attrs::new();
        attrs.insert(
            "perm".into(),
            Attr::Ints(composed.iter().map(|&a| a as i64).collect()),
        );
        let mut t = Template::default();
        let xi = t.push(TNode::Class(x));
        t.push(TNode::New(TsrLang::op(
            inner.as_op().expect("op").kind,
            AttrSet::new(attrs),
            vec![xi],
        )));
        out.push(t);
    }
    out
}

fn collapse_reshapes(eg: &TsrEGraph, eclass: Id, vars: &Vars) -> Vec<Template> {
    let (x, s2) = (vars.get("?x"), vars.get("?s2"));
    let Some(shape) = eg[s2].data.constant.as_ref().map(|t| t.to_i64_vec()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (_, outer) in nested(eg, eclass, OpKind::Reshape, x) {
        let o = outer.as_op().expect("op");
        if eg.find(o.children[1]) != eg.find(s2) {
            continue;
        }
        let allowzero = matches!(
            o.attrs.as_ref().and_then(|a| a.attrs().get("allowzero")),
            Some(Attr::Int(1))
        );
        if shape.contains(&0) && !allowzero {
            continue;
        }
        let mut t = Template::default();
        let xi = t.push(TNode::Class(x));
        let si = t.push(TNode::Class(s2));
        t.push(TNode::New(TsrLang::op(
            OpKind::Reshape,
            o.attrs.clone().unwrap_or_else(AttrSet::empty),
            vec![xi, si],
        )));
        out.push(t);
    }
    out
}
