//! The `fusion` group: matrix products take their epilogues (bias,
//! activation, residual add) into one `linear` op ([`tessera_ir::ops::fused`]),
//! so a backend runs one kernel and writes the result once.
//!
//! Order of the epilogue is fixed by the op: `act(a@b + bias) + residual`.
//! A bias or activation is only taken while the later stages are still
//! empty, so the fused op always computes what the ops it replaces did.

use super::recognize::{attr, attrs, op_over, ops, same, ty};
use super::{Cond, Rhs, RuleDef, Template, Vars};
use crate::egraph::analysis::{is_absent, TsrEGraph};
use crate::egraph::lang::{AttrSet, OpNode};
use egg::Id;
use tessera_ir::Attr;

#[rustfmt::skip]
pub fn rules() -> Vec<RuleDef> {
    use Cond::Always;
    use Rhs::Build;
    let r = |name, lhs, rhs| RuleDef { name, lhs, rhs, cond: Always };
    vec![
        // matmul(a, b) + c == linear(a, b, bias = c) (c a constant that
        // broadcasts onto the product) or linear(a, b, residual = c)
        r("matmul-add",        "(add (matmul ?a ?b) ?c)",                Build(matmul_add)),
        r("add-matmul",        "(add ?c (matmul ?a ?b))",                Build(matmul_add)),
        // gemm(a, b, c) with alpha = beta = 1 and no transposes == linear(a, b, c)
        r("gemm-linear",       "(gemm* ?a ?b ?c)",                       Build(gemm_linear)),
        r("gemm-linear-nobias", "(gemm* ?a ?b)",                         Build(gemm_linear)),
        // reshape(linear(reshape(x, [M, K]), w, ..), [.., N]) == linear(x, w, ..):
        // a 2-D product of flattened rows is the batched product
        r("linear-unflatten",  "(reshape* (linear* (reshape* ?x ?s1) ?w ?c ?r) ?s2)", Build(unflatten)),
        // act(linear(a, b, c)) == linear(a, b, c, activation = act), and the same for a bare matmul
        r("linear-relu",       "(relu (linear* ?a ?b ?c ?r))",           Build(linear_act)),
        r("linear-gelu",       "(gelu* (linear* ?a ?b ?c ?r))",          Build(linear_act)),
        r("linear-silu",       "(swish* (linear* ?a ?b ?c ?r))",         Build(linear_act)),
        r("linear-sigmoid",    "(sigmoid (linear* ?a ?b ?c ?r))",        Build(linear_act)),
        r("linear-tanh",       "(tanh (linear* ?a ?b ?c ?r))",           Build(linear_act)),
        r("matmul-relu",       "(relu (matmul ?a ?b))",                  Build(linear_act)),
        r("matmul-gelu",       "(gelu* (matmul ?a ?b))",                 Build(linear_act)),
        r("matmul-silu",       "(swish* (matmul ?a ?b))",                Build(linear_act)),
        r("matmul-sigmoid",    "(sigmoid (matmul ?a ?b))",               Build(linear_act)),
        r("matmul-tanh",       "(tanh (matmul ?a ?b))",                  Build(linear_act)),
        // linear(a, b, c) + x == linear(a, b, c, residual = x)
        r("linear-residual",   "(add (linear* ?a ?b ?c ?r) ?x)",         Build(linear_residual)),
        r("residual-linear",   "(add ?x (linear* ?a ?b ?c ?r))",         Build(linear_residual)),
    ]
}

/// The activations the epilogue takes: the op's mnemonic, the attributes it
/// must have (beyond defaults) and the `linear` activation name.
fn activation_of(n: &OpNode) -> Option<&'static str> {
    let a = n
        .attrs
        .as_ref()
        .map(|a| a.attrs().clone())
        .unwrap_or_default();
    let only = |allowed: &[(&str, Attr)]| {
        a.iter()
            .all(|(k, v)| allowed.iter().any(|(ak, av)| ak == k && av == v))
    };
    match n.kind.mnemonic() {
        "relu" if a.is_empty() => Some("relu"),
        "sigmoid" if a.is_empty() => Some("sigmoid"),
        "tanh" if a.is_empty() => Some("tanh"),
        "swish" if only(&[("alpha", Attr::Float(1.0))]) => Some("silu"),
        "gelu" if only(&[("approximate", Attr::Str("none".into()))]) => Some("gelu"),
        "gelu" if a.get("approximate") == Some(&Attr::Str("tanh".into())) && a.len() == 1 => {
            Some("gelu_tanh")
        }
        _ => None,
    }
}

fn linear_attrs(activation: &str) -> AttrSet {
    if activation == "none" {
        AttrSet::empty()
    } else {
        attrs(&[("activation", Attr::Str(activation.into()))])
    }
}

fn activation_attr(n: &OpNode) -> String {
    match attr(n, "activation") {
        Some(Attr::Str(s)) => s.clone(),
        _ => "none".into(),
    }
}

/// `c` may be `linear`'s bias: a constant of rank <= 1 (per output column).
fn is_bias(eg: &TsrEGraph, c: Id) -> bool {
    eg[c].data.constant.is_some() && ty(eg, c).is_some_and(|t| t.rank() <= 1)
}

/// The full operand list `a, b, bias, residual`, absent ones included, so
/// one pattern `(linear* ?a ?b ?c ?r)` matches every `linear`.
fn operands(eg: &TsrEGraph, a: Id, b: Id, bias: Option<Id>, residual: Option<Id>) -> Vec<Id> {
    let absent = eg
        .lookup(crate::egraph::lang::TsrLang::Absent)
        .expect("the e-graph has the absent class");
    vec![a, b, bias.unwrap_or(absent), residual.unwrap_or(absent)]
}

fn matmul_add(eg: &TsrEGraph, _: Id, v: &Vars) -> Vec<Template> {
    let (a, b, c) = (v.get("?a"), v.get("?b"), v.get("?c"));
    let kids = if is_bias(eg, c) {
        operands(eg, a, b, Some(c), None)
    } else {
        operands(eg, a, b, None, Some(c))
    };
    vec![op_over("linear", AttrSet::empty(), &kids)]
}

fn gemm_linear(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let (a, b) = (v.get("?a"), v.get("?b"));
    let plain = |n: &OpNode| {
        let f = |k: &str| match attr(n, k) {
            None => Some(1.0),
            Some(Attr::Float(x)) => Some(*x),
            Some(Attr::Int(i)) => Some(*i as f64),
            _ => None,
        };
        let i = |k: &str| matches!(attr(n, k), None | Some(Attr::Int(0)));
        f("alpha") == Some(1.0) && f("beta") == Some(1.0) && i("transA") && i("transB")
    };
    ops(eg, class, "gemm")
        .filter(|n| plain(n) && same(eg, n.children[0], a) && same(eg, n.children[1], b))
        .map(|n| {
            let c = n.children.get(2).copied().filter(|&c| !is_absent(eg, c));
            // A bias that is not a constant vector is a residual: it may
            // be a full [M, N] matrix.
            let kids = match c {
                Some(c) if is_bias(eg, c) => operands(eg, a, b, Some(c), None),
                Some(c) => operands(eg, a, b, None, Some(c)),
                None => operands(eg, a, b, None, None),
            };
            op_over("linear", AttrSet::empty(), &kids)
        })
        .take(1)
        .collect()
}

/// The `linear` e-nodes of `class` with first two operands `a`, `b`.
fn linears(eg: &TsrEGraph, class: Id, a: Id, b: Id) -> impl Iterator<Item = &OpNode> {
    ops(eg, class, "linear")
        .filter(move |n| same(eg, n.children[0], a) && same(eg, n.children[1], b))
}

/// (bias, residual) of a linear node.
fn epilogue(eg: &TsrEGraph, n: &OpNode) -> (Option<Id>, Option<Id>) {
    let get = |i: usize| n.children.get(i).copied().filter(|&c| !is_absent(eg, c));
    (get(2), get(3))
}

fn unflatten(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let (x, w) = (v.get("?x"), v.get("?w"));
    let (Some(xt), Some(yt)) = (ty(eg, x), ty(eg, class)) else {
        return Vec::new();
    };
    // x [.., K] flattened to [M, K]: the last axis stays, so rows map to rows.
    let mut out = Vec::new();
    for r in ops(eg, class, "reshape") {
        for n in ops(eg, r.children[0], "linear") {
            if !ops(eg, n.children[0], "reshape").any(|f| same(eg, f.children[0], x)) {
                continue;
            }
            let Some(ft) = ty(eg, n.children[0]) else {
                continue;
            };
            let keeps_rows = ft.rank() == 2
                && xt.rank() >= 2
                && yt.rank() == xt.rank()
                && ft.shape[1].same_as(&xt.shape[xt.rank() - 1])
                && xt.shape[..xt.rank() - 1]
                    .iter()
                    .zip(&yt.shape)
                    .all(|(a, b)| a.same_as(b));
            let (bias, residual) = epilogue(eg, n);
            // A residual of the flat shape would need its own reshape.
            if !keeps_rows || residual.is_some() || !same(eg, n.children[1], w) {
                continue;
            }
            let kids = operands(eg, x, w, bias, None);
            out.push(op_over("linear", linear_attrs(&activation_attr(n)), &kids));
        }
    }
    out
}

fn linear_act(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let (a, b) = (v.get("?a"), v.get("?b"));
    let mut out = Vec::new();
    for outer in eg[class].nodes.iter().filter_map(|n| n.as_op()) {
        let Some(act) = activation_of(outer) else {
            continue;
        };
        let Some(&inner) = outer.children.first() else {
            continue;
        };
        for n in linears(eg, inner, a, b) {
            let (bias, residual) = epilogue(eg, n);
            if residual.is_none() && activation_attr(n) == "none" {
                out.push(op_over(
                    "linear",
                    linear_attrs(act),
                    &operands(eg, a, b, bias, None),
                ));
            }
        }
        if ops(eg, inner, "matmul")
            .any(|m| same(eg, m.children[0], a) && same(eg, m.children[1], b))
        {
            out.push(op_over(
                "linear",
                linear_attrs(act),
                &operands(eg, a, b, None, None),
            ));
        }
    }
    out
}

fn linear_residual(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let (a, b, x) = (v.get("?a"), v.get("?b"), v.get("?x"));
    let mut out = Vec::new();
    for add in ops(eg, class, "add") {
        for (lin, other) in [
            (add.children[0], add.children[1]),
            (add.children[1], add.children[0]),
        ] {
            if !same(eg, other, x) {
                continue;
            }
            for n in linears(eg, lin, a, b) {
                let (bias, residual) = epilogue(eg, n);
                if residual.is_some() {
                    continue;
                }
                let act = activation_attr(n);
                // A constant vector after a bare product is its bias.
                let kids = if bias.is_none() && act == "none" && is_bias(eg, x) {
                    operands(eg, a, b, Some(x), None)
                } else {
                    operands(eg, a, b, bias, Some(x))
                };
                out.push(op_over("linear", linear_attrs(&act), &kids));
            }
        }
    }
    out
}
