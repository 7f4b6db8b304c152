//! The `recognize` group: the decomposed forms that exporters write for
//! GELU, SiLU/SwiGLU, RMSNorm, LayerNorm, Softmax, scaled-dot-product
//! attention and rotary embeddings become the one op the dialect has for
//! each.
//!
//! Patterns match the structure; each builder then proves what the pattern
//! cannot say (constants of the right value, reductions over the last axis
//! only, K^T really being a transpose of K, repeated K/V heads) and returns
//! no candidate when it cannot. Constants are compared with a relative
//! tolerance of 1e-6: exporters write them rounded to f32 (`0.70710677` for
//! 1/sqrt 2). Patterns are written against the exporters' operand order and
//! against the canonical order the `algebra` group gives (constants right),
//! so they fire with the group alone or together with `algebra`.

use super::{Cond, Rhs, RuleDef, TNode, Template, Vars};
use crate::egraph::analysis::{is_absent, TsrEGraph};
use crate::egraph::lang::{AttrSet, OpNode, TsrLang};
use egg::Id;
use tessera_ir::{Attr, Attrs, Dim, OpKind, TensorType};

#[rustfmt::skip]
pub fn rules() -> Vec<RuleDef> {
    use Cond::Always;
    use Rhs::{Build, Pattern as P};
    let r = |name, lhs, rhs| RuleDef { name, lhs, rhs, cond: Always };
    vec![
        // 0.5 * x * (1 + erf(x / sqrt 2)) == gelu(x), in the three groupings exporters write
        r("gelu-erf-a",      "(mul (mul ?x (add (erf ?u) ?one)) ?h)",            Build(gelu_erf)),
        r("gelu-erf-b",      "(mul (mul ?x ?h) (add (erf ?u) ?one))",            Build(gelu_erf)),
        r("gelu-erf-c",      "(mul ?x (mul (add (erf ?u) ?one) ?h))",            Build(gelu_erf)),
        // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) == gelu(x, approximate = tanh)
        r("gelu-tanh-a",     "(mul (mul ?x (add (tanh ?u) ?one)) ?h)",           Build(gelu_tanh)),
        r("gelu-tanh-b",     "(mul (mul ?x ?h) (add (tanh ?u) ?one))",           Build(gelu_tanh)),
        r("gelu-tanh-c",     "(mul ?x (mul (add (tanh ?u) ?one) ?h))",           Build(gelu_tanh)),
        // x * sigmoid(x) == swish(x) (SiLU)
        r("silu-a",          "(mul ?x (sigmoid ?x))",                            P("(swish ?x)")),
        r("silu-b",          "(mul (sigmoid ?x) ?x)",                            P("(swish ?x)")),
        // swish(a) * b == swiglu(a, b); the guard refuses a broadcasting b
        r("swiglu-a",        "(mul (swish ?a) ?b)",                              P("(swiglu ?a ?b)")),
        r("swiglu-b",        "(mul ?b (swish ?a))",                              P("(swiglu ?a ?b)")),
        // x * (1 / sqrt(mean(x^2 over the last axis) + eps)) == rms_normalization(x, 1)
        r("rms-norm",        "(mul ?x (div ?one (sqrt (add ?m ?eps))))",          Build(rms_norm)),
        // rms_normalization(x, 1) * w == rms_normalization(x, w) for a per-channel w
        r("rms-norm-scale",  "(mul (rms_normalization* ?x ?one) ?w)",             Build(norm_scale)),
        // (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) * w == layer_normalization(x, w)
        r("layer-norm",      "(mul (div ?d (sqrt (add ?v ?eps))) ?w)",            Build(layer_norm)),
        // layer_normalization(x, w) + b == layer_normalization(x, w, b)
        r("layer-norm-bias", "(add (layer_normalization* ?x ?w) ?b)",             Build(layer_norm_bias)),
        // exp(x - max(x)) / sum(exp(x - max(x))) == softmax(x) (along one axis, kept)
        r("softmax",         "(div (exp ?e) (reduce_sum* (exp ?e) ?ax))",         Build(softmax)),
        // softmax(Q K^T * scale [+ mask]) V == attention(Q, K, V [, mask]) on
        // [batch, heads, seq, size] operands, K and V heads repeated for GQA stripped
        r("sdpa",            "(matmul (softmax* ?s) ?v)",                         Build(sdpa)),
        // merge_heads(attention(split_heads(q), ...)) == attention on [batch, seq, heads*size]
        // (then reshaped like the merged heads were, when they were flattened further)
        r("attention-3d",    "(reshape* (transpose* ?o) ?shape)",                 Build(attention_3d)),
        // attention(q, repeat_kv(k), repeat_kv(v), ..) == attention(q, k, v, ..): the op
        // shares K/V heads itself
        r("attention-gqa",        "(attention* ?q ?k ?v)",                        Build(attention_gqa)),
        r("attention-gqa-masked", "(attention* ?q ?k ?v ?m)",                     Build(attention_gqa)),
        // attention(q, k, v, causal [and m]) == attention(q, k, v [, m], is_causal = 1) for a
        // boolean mask proven lower-triangular (j <= i from two ranges, or a constant)
        r("attention-causal",     "(attention* ?q ?k ?v ?m)",                     Build(attention_causal)),
        // x * unsqueeze(cos2, 1) + rotate_half(x) * unsqueeze(sin2, 1) == rotary_embedding(x, cos, sin)
        // on [B, H, S, D] x, when the caches are two equal halves: cos2 = [cos, cos]
        r("rotary-half",     "(add (mul ?a ?b) (mul ?c ?d))",                     Build(rotary_half)),
    ]
}

// ---------------------------------------------------------------------------
// Looking into e-classes.

pub(crate) fn kind(m: &str) -> OpKind {
    OpKind::from_mnemonic(m).unwrap_or_else(|| panic!("op '{m}' is in the op table"))
}

/// The single-result e-nodes of op `m` in `class`.
pub(crate) fn ops<'a>(eg: &'a TsrEGraph, class: Id, m: &str) -> impl Iterator<Item = &'a OpNode> {
    let k = kind(m);
    eg[class]
        .nodes
        .iter()
        .filter_map(TsrLang::as_op)
        .filter(move |n| n.kind == k && n.num_results == 1)
}

pub(crate) fn same(eg: &TsrEGraph, a: Id, b: Id) -> bool {
    eg.find(a) == eg.find(b)
}

pub(crate) fn ty(eg: &TsrEGraph, c: Id) -> Option<&TensorType> {
    eg[c].data.ty.as_ref()
}

/// The value every element of a non-empty constant has.
pub(crate) fn splat(eg: &TsrEGraph, c: Id) -> Option<f64> {
    let t = eg[c].data.constant.as_ref()?;
    if t.is_empty() {
        return None;
    }
    let v = t.get_f64(0);
    (1..t.len()).all(|i| t.get_f64(i) == v).then_some(v)
}

/// Equal up to the f32 rounding exporters apply to their constants.
pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1e-30)
}

pub(crate) fn splat_is(eg: &TsrEGraph, c: Id, want: f64) -> bool {
    splat(eg, c).is_some_and(|v| close(v, want))
}

pub(crate) fn attr<'a>(n: &'a OpNode, name: &str) -> Option<&'a Attr> {
    n.attrs.as_ref()?.attrs().get(name)
}

pub(crate) fn int_attr(n: &OpNode, name: &str, default: i64) -> Option<i64> {
    match attr(n, name) {
        None => Some(default),
        Some(Attr::Int(i)) => Some(*i),
        Some(_) => None,
    }
}

pub(crate) fn attrs(list: &[(&str, Attr)]) -> AttrSet {
    AttrSet::new(
        list.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// Adds a new op node whose children are template references.
pub(crate) fn push_op(t: &mut Template, m: &str, a: AttrSet, kids: Vec<Id>) -> Id {
    t.push(TNode::New(TsrLang::op(kind(m), a, kids)))
}

/// A template of one new op over existing e-classes.
pub(crate) fn op_over(m: &str, a: AttrSet, classes: &[Id]) -> Template {
    let mut t = Template::default();
    let kids = classes.iter().map(|&c| t.push(TNode::Class(c))).collect();
    push_op(&mut t, m, a, kids);
    t
}

/// `x * c` or `x / (1/c)`: the factor `c` by which `class` scales `x`.
fn scale_of(eg: &TsrEGraph, class: Id, x: Id) -> Option<f64> {
    let mul = ops(eg, class, "mul").find_map(|n| {
        let [a, b] = n.children[..] else { return None };
        if same(eg, a, x) {
            splat(eg, b)
        } else if same(eg, b, x) {
            splat(eg, a)
        } else {
            None
        }
    });
    mul.or_else(|| {
        ops(eg, class, "div").find_map(|n| {
            let [a, b] = n.children[..] else { return None };
            (same(eg, a, x))
                .then(|| splat(eg, b))
                .flatten()
                .map(|d| 1.0 / d)
        })
    })
}

/// The constant axes operand of a reduction, normalized; `None` unless it
/// is exactly the last axis of a rank-`rank` input with kept dims.
fn reduces_last_axis(eg: &TsrEGraph, n: &OpNode, rank: usize) -> bool {
    let Some(axes) = n
        .children
        .get(1)
        .and_then(|&a| eg[a].data.constant.as_ref())
        .map(|t| t.to_i64_vec())
    else {
        return false;
    };
    int_attr(n, "keepdims", 1) == Some(1)
        && rank > 0
        && axes.len() == 1
        && (axes[0] == -1 || axes[0] == rank as i64 - 1)
}

fn gelu_erf(eg: &TsrEGraph, _: Id, v: &Vars) -> Vec<Template> {
    let (x, u) = (v.get("?x"), v.get("?u"));
    let ok = splat_is(eg, v.get("?h"), 0.5)
        && splat_is(eg, v.get("?one"), 1.0)
        && scale_of(eg, u, x).is_some_and(|s| close(s, std::f64::consts::FRAC_1_SQRT_2));
    if !ok {
        return Vec::new();
    }
    vec![op_over("gelu", AttrSet::empty(), &[x])]
}

/// `class` is `x^3`, as `pow(x, 3)` or a product of three `x`.
fn is_cube(eg: &TsrEGraph, class: Id, x: Id) -> bool {
    let pow = ops(eg, class, "pow")
        .any(|n| same(eg, n.children[0], x) && splat_is(eg, n.children[1], 3.0));
    let square =
        |c: Id| ops(eg, c, "mul").any(|n| same(eg, n.children[0], x) && same(eg, n.children[1], x));
    let prod = ops(eg, class, "mul").any(|n| {
        let [a, b] = n.children[..] else { return false };
        (same(eg, a, x) && square(b)) || (same(eg, b, x) && square(a))
    });
    pow || prod
}

fn gelu_tanh(eg: &TsrEGraph, _: Id, v: &Vars) -> Vec<Template> {
    let (x, u) = (v.get("?x"), v.get("?u"));
    if !splat_is(eg, v.get("?h"), 0.5) || !splat_is(eg, v.get("?one"), 1.0) {
        return Vec::new();
    }
    let k = (2.0 / std::f64::consts::PI).sqrt();
    // u == k * (x + 0.044715 * x^3)
    let inner_ok = |p: Id| {
        ops(eg, p, "add").any(|n| {
            let [a, b] = n.children[..] else { return false };
            let cubic = |c: Id| {
                ops(eg, c, "mul").any(|m| {
                    let [l, r] = m.children[..] else { return false };
                    (splat_is(eg, r, 0.044715) && is_cube(eg, l, x))
                        || (splat_is(eg, l, 0.044715) && is_cube(eg, r, x))
                })
            };
            (same(eg, a, x) && cubic(b)) || (same(eg, b, x) && cubic(a))
        })
    };
    let ok = ops(eg, u, "mul").any(|n| {
        let [a, b] = n.children[..] else { return false };
        (splat_is(eg, b, k) && inner_ok(a)) || (splat_is(eg, a, k) && inner_ok(b))
    });
    if !ok {
        return Vec::new();
    }
    let a = attrs(&[("approximate", Attr::Str("tanh".into()))]);
    vec![op_over("gelu", a, &[x])]
}

/// A normalization parameter that broadcasts over the last axis only:
/// rank <= 1 with 1 or `last` elements.
fn per_channel(eg: &TsrEGraph, p: Id, x: Id) -> bool {
    let (Some(pt), Some(xt)) = (ty(eg, p), ty(eg, x)) else {
        return false;
    };
    let Some(last) = xt.shape.last() else {
        return false;
    };
    pt.elem == xt.elem
        && match pt.shape.as_slice() {
            [] => true,
            [d] => d.as_fixed() == Some(1) || d.same_as(last),
            _ => false,
        }
}

fn epsilon_of(eg: &TsrEGraph, eps: Id) -> Option<f64> {
    let t = ty(eg, eps)?;
    (t.num_elements() == Some(1))
        .then(|| splat(eg, eps))
        .flatten()
        .filter(|e| *e >= 0.0)
}

fn rms_norm(eg: &TsrEGraph, _: Id, v: &Vars) -> Vec<Template> {
    let (x, one, m) = (v.get("?x"), v.get("?one"), v.get("?m"));
    let Some(rank) = ty(eg, x).map(|t| t.rank()) else {
        return Vec::new();
    };
    let Some(eps) = epsilon_of(eg, v.get("?eps")) else {
        return Vec::new();
    };
    let squares = |c: Id| {
        ops(eg, c, "pow").any(|n| same(eg, n.children[0], x) && splat_is(eg, n.children[1], 2.0))
            || ops(eg, c, "mul").any(|n| same(eg, n.children[0], x) && same(eg, n.children[1], x))
    };
    let mean_sq =
        ops(eg, m, "reduce_mean").any(|n| reduces_last_axis(eg, n, rank) && squares(n.children[0]));
    if !mean_sq || !splat_is(eg, one, 1.0) || !per_channel(eg, one, x) {
        return Vec::new();
    }
    let a = attrs(&[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))]);
    vec![op_over("rms_normalization", a, &[x, one])]
}

/// The inner `inner_m` e-node of `outer_m(inner_m(x, ..), ..)` in `class`,
/// with the inner op's first operand `x`.
fn inner<'a>(
    eg: &'a TsrEGraph,
    class: Id,
    outer_m: &str,
    inner_m: &'a str,
    x: Id,
) -> Vec<&'a OpNode> {
    ops(eg, class, outer_m)
        .flat_map(|o| ops(eg, o.children[0], inner_m))
        .filter(|n| same(eg, n.children[0], x))
        .collect()
}

fn norm_scale(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let (x, one, w) = (v.get("?x"), v.get("?one"), v.get("?w"));
    if !splat_is(eg, one, 1.0) || eg[w].data.constant.is_none() || !per_channel(eg, w, x) {
        return Vec::new();
    }
    inner(eg, class, "mul", "rms_normalization", x)
        .into_iter()
        .filter(|n| same(eg, n.children[1], one))
        .map(|n| {
            op_over(
                "rms_normalization",
                n.attrs.clone().unwrap_or_else(AttrSet::empty),
                &[x, w],
            )
        })
        .collect()
}

/// `class` is `reduce_mean(of, last axis)`.
fn is_mean_of(eg: &TsrEGraph, class: Id, of: Id, rank: usize) -> bool {
    ops(eg, class, "reduce_mean")
        .any(|n| same(eg, n.children[0], of) && reduces_last_axis(eg, n, rank))
}

fn layer_norm(eg: &TsrEGraph, _: Id, v: &Vars) -> Vec<Template> {
    let (d, var, w) = (v.get("?d"), v.get("?v"), v.get("?w"));
    let Some(eps) = epsilon_of(eg, v.get("?eps")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // d == x - mean(x)
    for n in ops(eg, d, "sub") {
        let [x, mean] = n.children[..] else { continue };
        let Some(rank) = ty(eg, x).map(|t| t.rank()) else {
            continue;
        };
        let variance = ops(eg, var, "reduce_mean").any(|m| {
            reduces_last_axis(eg, m, rank)
                && (ops(eg, m.children[0], "pow")
                    .any(|p| same(eg, p.children[0], d) && splat_is(eg, p.children[1], 2.0))
                    || ops(eg, m.children[0], "mul")
                        .any(|p| same(eg, p.children[0], d) && same(eg, p.children[1], d)))
        });
        if variance
            && is_mean_of(eg, mean, x, rank)
            && eg[w].data.constant.is_some()
            && per_channel(eg, w, x)
        {
            let a = attrs(&[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))]);
            out.push(op_over("layer_normalization", a, &[x, w]));
        }
    }
    out
}

fn layer_norm_bias(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let (x, w, b) = (v.get("?x"), v.get("?w"), v.get("?b"));
    if eg[b].data.constant.is_none() || !per_channel(eg, b, x) {
        return Vec::new();
    }
    inner(eg, class, "add", "layer_normalization", x)
        .into_iter()
        .filter(|n| n.children.len() == 2 && same(eg, n.children[1], w))
        .map(|n| {
            op_over(
                "layer_normalization",
                n.attrs.clone().unwrap_or_else(AttrSet::empty),
                &[x, w, b],
            )
        })
        .collect()
}

fn softmax(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let (e, ax) = (v.get("?e"), v.get("?ax"));
    let Some(rank) = ty(eg, e).map(|t| t.rank()) else {
        return Vec::new();
    };
    let Some(axes) = eg[ax].data.constant.as_ref().map(|t| t.to_i64_vec()) else {
        return Vec::new();
    };
    let [axis] = axes[..] else { return Vec::new() };
    let kept = ops(eg, class, "div").any(|n| {
        ops(eg, n.children[1], "reduce_sum")
            .any(|s| same(eg, s.children[1], ax) && int_attr(s, "keepdims", 1) == Some(1))
    });
    if !kept || axis < -(rank as i64) || axis >= rank as i64 {
        return Vec::new();
    }
    let a = attrs(&[("axis", Attr::Int(axis))]);
    // exp(x - max(x)) only guards against overflow: softmax does the same.
    let stabilized: Vec<Id> = ops(eg, e, "sub")
        .filter(|n| {
            ops(eg, n.children[1], "reduce_max").any(|m| {
                same(eg, m.children[0], n.children[0])
                    && m.children.get(1).is_some_and(|&c| same(eg, c, ax))
                    && int_attr(m, "keepdims", 1) == Some(1)
            })
        })
        .map(|n| n.children[0])
        .collect();
    let input = stabilized.first().copied().unwrap_or(e);
    vec![op_over("softmax", a, &[input])]
}

// ---------------------------------------------------------------------------
// Attention.

/// `class` is `transpose(y, p)` for a rank-4 `y`: `y` and `p`.
fn transposes(eg: &TsrEGraph, class: Id) -> Vec<(Id, Vec<i64>)> {
    ops(eg, class, "transpose")
        .filter_map(|n| match attr(n, "perm") {
            Some(Attr::Ints(p)) if p.len() == 4 => Some((n.children[0], p.clone())),
            _ => None,
        })
        .collect()
}

/// The kv-head tensor `[B, kv, S, D]` behind a `[B, kv*rep, S, D]` class that
/// repeats each head `rep` times in a row (`repeat_kv`: unsqueeze at 2,
/// expand, reshape), which is exactly how attention shares K/V heads.
/// The types prove it: unsqueezing inserts a 1, expanding repeats along it,
/// and reshaping merges it into the head axis, keeping the element order.
fn unrepeated(eg: &TsrEGraph, class: Id) -> Option<Id> {
    let same_dims =
        |a: &[Dim], b: &[Dim]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y));
    for r in ops(eg, class, "reshape") {
        for e in ops(eg, r.children[0], "expand") {
            for u in ops(eg, e.children[0], "unsqueeze") {
                let k = u.children[0];
                let (Some(kt), Some(ut), Some(et), Some(rt)) = (
                    ty(eg, k),
                    ty(eg, e.children[0]),
                    ty(eg, r.children[0]),
                    ty(eg, class),
                ) else {
                    continue;
                };
                let [b, kv, s, d] = &kt.shape[..] else {
                    continue;
                };
                let ([ub, ukv, one, us, ud], [eb, ekv, rep, es, ed], [rb, rh, rs, rd]) =
                    (&ut.shape[..], &et.shape[..], &rt.shape[..])
                else {
                    continue;
                };
                let (Some(kvn), Some(repn), Some(rhn)) =
                    (kv.as_fixed(), rep.as_fixed(), rh.as_fixed())
                else {
                    continue;
                };
                if one.as_fixed() == Some(1)
                    && same_dims(
                        &[ub.clone(), ukv.clone(), us.clone(), ud.clone()],
                        &kt.shape,
                    )
                    && same_dims(
                        &[eb.clone(), ekv.clone(), es.clone(), ed.clone()],
                        &kt.shape,
                    )
                    && same_dims(
                        &[rb.clone(), rs.clone(), rd.clone()],
                        &[b.clone(), s.clone(), d.clone()],
                    )
                    && kvn * repn == rhn
                {
                    return Some(k);
                }
            }
        }
    }
    None
}

/// Q·K^T scaled: `(q, kt, scale)` for each way `class` is written as
/// `matmul(q, kt)` times, or divided by, a scalar (scale 1 without).
fn scaled_scores(eg: &TsrEGraph, class: Id) -> Vec<(Id, Id, f64)> {
    let mut out = Vec::new();
    let mut qk = |c: Id, scale: f64| {
        for m in ops(eg, c, "matmul") {
            out.push((m.children[0], m.children[1], scale));
        }
    };
    qk(class, 1.0);
    for n in ops(eg, class, "mul") {
        let [a, b] = n.children[..] else { continue };
        let scalar = |c: Id| ty(eg, c).is_some_and(|t| t.num_elements() == Some(1));
        if let Some(s) = splat(eg, b).filter(|_| scalar(b)) {
            qk(a, s);
        } else if let Some(s) = splat(eg, a).filter(|_| scalar(a)) {
            qk(b, s);
        }
    }
    for n in ops(eg, class, "div") {
        let [a, b] = n.children[..] else { continue };
        if let Some(s) =
            splat(eg, b).filter(|_| ty(eg, b).is_some_and(|t| t.num_elements() == Some(1)))
        {
            qk(a, 1.0 / s);
        }
    }
    out
}

/// The mask broadcasts onto `[B, H, Sq, Sk]` (the type of the scores) and
/// is a float mask of the scores' type or a boolean one. Its key axis must
/// be the full `Sk`: `attention` reads a shorter one (even of size 1) as
/// masking the keys past it, where broadcasting would repeat it.
fn mask_fits(eg: &TsrEGraph, mask: Id, scores: &TensorType) -> bool {
    let Some(m) = ty(eg, mask) else { return false };
    (m.elem == scores.elem || m.dtype() == tessera_ir::DType::Bool)
        && (1..=4).contains(&m.rank())
        && m.shape
            .last()
            .zip(scores.shape.last())
            .is_some_and(|(a, b)| a.same_as(b))
        && m.shape
            .iter()
            .rev()
            .zip(scores.shape.iter().rev())
            .all(|(a, b)| a.as_fixed() == Some(1) || a.same_as(b))
}

fn sdpa(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let (s, vv) = (v.get("?s"), v.get("?v"));
    let Some(st) = ty(eg, s).filter(|t| t.rank() == 4).cloned() else {
        return Vec::new();
    };
    let last_axis = ops(eg, class, "matmul")
        .flat_map(|m| ops(eg, m.children[0], "softmax"))
        .any(|n| same(eg, n.children[0], s) && matches!(int_attr(n, "axis", -1), Some(-1 | 3)));
    if !last_axis {
        return Vec::new();
    }
    // The scores, with or without an additive mask.
    let mut forms: Vec<(Id, Option<Id>)> = vec![(s, None)];
    for n in ops(eg, s, "add") {
        let [a, b] = n.children[..] else { continue };
        forms.push((a, Some(b)));
        forms.push((b, Some(a)));
    }
    let mut out = Vec::new();
    for (scores, mask) in forms {
        if mask.is_some_and(|m| !mask_fits(eg, m, &st)) {
            continue;
        }
        for (q, kt, scale) in scaled_scores(eg, scores) {
            if out.len() >= 2 {
                return out;
            }
            let mut t = Template::default();
            // K = transpose(K^T, [0, 1, 3, 2]), folded into K^T's own transpose.
            let k = match transposes(eg, kt).first() {
                Some((y, p)) => {
                    let perm = vec![p[0], p[1], p[3], p[2]];
                    if perm == [0, 1, 2, 3] {
                        t.push(TNode::Class(*y))
                    } else {
                        let yi = t.push(TNode::Class(*y));
                        push_op(
                            &mut t,
                            "transpose",
                            attrs(&[("perm", Attr::Ints(perm))]),
                            vec![yi],
                        )
                    }
                }
                None => {
                    let ki = t.push(TNode::Class(kt));
                    let swap = attrs(&[("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
                    push_op(&mut t, "transpose", swap, vec![ki])
                }
            };
            // GQA: attention shares K/V heads itself, so the repetition goes.
            let k_class = match &t.0[usize::from(k)] {
                TNode::Class(c) => Some(*c),
                TNode::New(_) => None,
            };
            let (k, vi) = match (k_class.and_then(|c| unrepeated(eg, c)), unrepeated(eg, vv)) {
                (Some(k0), Some(v0))
                    if ty(eg, k0).map(|t| &t.shape[1]) == ty(eg, v0).map(|t| &t.shape[1]) =>
                {
                    (t.push(TNode::Class(k0)), t.push(TNode::Class(v0)))
                }
                _ => (k, t.push(TNode::Class(vv))),
            };
            let qi = t.push(TNode::Class(q));
            let mut kids = vec![qi, k, vi];
            if let Some(m) = mask {
                kids.push(t.push(TNode::Class(m)));
            }
            push_op(
                &mut t,
                "attention",
                attrs(&[("scale", Attr::Float(scale))]),
                kids,
            );
            out.push(t);
        }
    }
    out
}

/// `class` is `transpose(reshape(x3, ..), [0, 2, 1, 3])` with `x3` of type
/// `[B, S, H*D]` split into `[B, S, H, D]`: `(x3, H)`.
fn split_heads(eg: &TsrEGraph, class: Id) -> Option<(Id, i64)> {
    transposes(eg, class)
        .into_iter()
        .filter(|(_, p)| p == &[0, 2, 1, 3])
        .flat_map(|(y, _)| ops(eg, y, "reshape").map(move |r| (y, r.children[0])))
        .find_map(|(y, x3)| {
            let (yt, xt) = (ty(eg, y)?, ty(eg, x3)?);
            let [b, s, h, d] = &yt.shape[..] else {
                return None;
            };
            let [xb, xs, hd] = &xt.shape[..] else {
                return None;
            };
            let (h, d, hd) = (h.as_fixed()?, d.as_fixed()?, hd.as_fixed()?);
            (b.same_as(xb) && s.same_as(xs) && h * d == hd).then_some((x3, h))
        })
}

fn attention_3d(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let o = v.get("?o");
    let merge = ops(eg, class, "reshape").find(|r| {
        ops(eg, r.children[0], "transpose").any(|t| {
            same(eg, t.children[0], o)
                && matches!(attr(t, "perm"), Some(Attr::Ints(p)) if p == &[0, 2, 1, 3])
        })
    });
    let Some(merge) = merge else {
        return Vec::new();
    };
    // Merged to [B, S, H*D] the op's 3-D result is the value; merged further
    // (GPT-2 flattens to [B*S, H*D] for its Gemm) the same reshape follows it.
    let direct = ty(eg, class).is_some_and(|t| t.rank() == 3);
    let shape = v.get("?shape");
    let mut out = Vec::new();
    for n in ops(eg, o, "attention") {
        if n.children.len() < 3
            || n.children[4.min(n.children.len())..]
                .iter()
                .any(|&c| !is_absent(eg, c))
        {
            continue;
        }
        let (Some((q3, qh)), Some((k3, kh)), Some((v3, vh))) = (
            split_heads(eg, n.children[0]),
            split_heads(eg, n.children[1]),
            split_heads(eg, n.children[2]),
        ) else {
            continue;
        };
        if kh != vh {
            continue;
        }
        let mut a: Attrs = n
            .attrs
            .as_ref()
            .map(|a| a.attrs().clone())
            .unwrap_or_default();
        a.insert("q_num_heads".into(), Attr::Int(qh));
        a.insert("kv_num_heads".into(), Attr::Int(kh));
        let mut kids = vec![q3, k3, v3];
        kids.extend(n.children.get(3).copied());
        let mut t = op_over("attention", AttrSet::new(a), &kids);
        if !direct {
            let root = Id::from(t.0.len() - 1);
            let s = t.push(TNode::Class(shape));
            let keep = merge.attrs.clone().unwrap_or_else(AttrSet::empty);
            push_op(&mut t, "reshape", keep, vec![root, s]);
        }
        out.push(t);
    }
    out
}

/// The `attention` e-nodes of `class` reading exactly `kids`.
fn attention_nodes<'a>(
    eg: &'a TsrEGraph,
    class: Id,
    kids: &'a [Id],
) -> impl Iterator<Item = &'a OpNode> {
    ops(eg, class, "attention").filter(move |n| {
        n.children.len() == kids.len() && n.children.iter().zip(kids).all(|(&a, &b)| same(eg, a, b))
    })
}

fn bound(v: &Vars, names: &[&str]) -> Vec<Id> {
    names.iter().map(|n| v.get(n)).collect()
}

/// The attention's variables: `?q ?k ?v`, and `?m` when the pattern has it.
fn attention_vars(v: &Vars, masked: bool) -> Vec<Id> {
    if masked {
        bound(v, &["?q", "?k", "?v", "?m"])
    } else {
        bound(v, &["?q", "?k", "?v"])
    }
}

fn attention_gqa(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let masked = ops(eg, class, "attention").any(|n| n.children.len() == 4);
    let mut out = Vec::new();
    for kids in [attention_vars(v, false), attention_vars(v, masked)] {
        let (k, vv) = (kids[1], kids[2]);
        // 4-D operands carry the head counts in their shapes.
        if ty(eg, kids[0]).is_none_or(|t| t.rank() != 4) {
            continue;
        }
        let (Some(k0), Some(v0)) = (unrepeated(eg, k), unrepeated(eg, vv)) else {
            continue;
        };
        if ty(eg, k0).map(|t| &t.shape[1]) != ty(eg, v0).map(|t| &t.shape[1]) {
            continue;
        }
        for n in attention_nodes(eg, class, &kids) {
            let mut new = kids.clone();
            new[1] = k0;
            new[2] = v0;
            let keep = n.attrs.clone().unwrap_or_else(AttrSet::empty);
            out.push(op_over("attention", keep, &new));
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// `class` holds the index along one axis of itself and 1-sized elsewhere:
/// `range(0, n, 1)`, unsqueezed. That axis and the rank.
fn iota(eg: &TsrEGraph, class: Id, depth: usize) -> Option<(usize, usize)> {
    if depth == 0 {
        return None;
    }
    let range = ops(eg, class, "range").any(|n| {
        n.children.len() == 3
            && const_ints(eg, n.children[0]).is_some_and(|s| s == [0])
            && const_ints(eg, n.children[2]).is_some_and(|s| s == [1])
    });
    if range && ty(eg, class).is_some_and(|t| t.rank() == 1) {
        return Some((0, 1));
    }
    ops(eg, class, "unsqueeze").find_map(|u| {
        let (axis, rank) = iota(eg, u.children[0], depth - 1)?;
        let axes = const_ints(eg, *u.children.get(1)?)?;
        let out_rank = (rank + axes.len()) as i64;
        let mut inserted: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + out_rank } else { a })
            .collect();
        inserted.sort_unstable();
        inserted.dedup();
        if inserted.len() != axes.len() || inserted.iter().any(|&a| a < 0 || a >= out_rank) {
            return None;
        }
        // The kept axes fill the other positions in order.
        let pos = (0..out_rank).filter(|p| !inserted.contains(p)).nth(axis)?;
        Some((pos as usize, out_rank as usize))
    })
}

/// Depth limit when looking through unsqueezes of a range.
const IOTA_DEPTH: usize = 6;

/// `class` is a mask of rank `r` whose element (.., i, j) is `j <= i`:
/// boolean, or a float constant of 0 and -inf.
fn is_causal_mask(eg: &TsrEGraph, class: Id, depth: usize) -> bool {
    let Some(t) = ty(eg, class) else { return false };
    let r = t.rank();
    if r < 2 || depth == 0 {
        return false;
    }
    if let Some(c) = eg[class].data.constant.as_ref() {
        return constant_is_causal(c, t.dtype() == tessera_ir::DType::Bool);
    }
    if t.dtype() != tessera_ir::DType::Bool {
        return false;
    }
    // The index along the last axis (key j) against the second-last (query i).
    let along = |c: Id, want: usize| {
        iota(eg, c, IOTA_DEPTH).is_some_and(|(axis, rank)| rank <= r && axis + (r - rank) == want)
    };
    let (key, query) = (r - 1, r - 2);
    let compare = ops(eg, class, "less_or_equal")
        .any(|n| along(n.children[0], key) && along(n.children[1], query))
        || ops(eg, class, "greater_or_equal")
            .any(|n| along(n.children[0], query) && along(n.children[1], key));
    compare
        || ops(eg, class, "and").any(|n| {
            let [a, b] = n.children[..] else { return false };
            // and(true, x) == x when it does not broadcast x
            let passes = |yes: Id, x: Id| {
                splat_is(eg, yes, 1.0) && ty(eg, x) == Some(t) && is_causal_mask(eg, x, depth - 1)
            };
            passes(a, b) || passes(b, a)
        })
}

fn constant_is_causal(c: &tessera_ir::Tensor, boolean: bool) -> bool {
    let r = c.shape.len();
    if r < 2 || c.shape[..r - 2].iter().any(|&d| d != 1) {
        return false;
    }
    let cols = c.shape[r - 1];
    (0..c.len()).all(|e| {
        let (i, j) = (e / cols.max(1) % c.shape[r - 2].max(1), e % cols.max(1));
        let v = c.get_f64(e);
        match (boolean, j <= i) {
            (true, keep) => (v != 0.0) == keep,
            (false, true) => v == 0.0,
            (false, false) => v == f64::NEG_INFINITY,
        }
    })
}

/// The `[B, H, Sq, Sk]` type of an attention's scores.
fn scores_type(eg: &TsrEGraph, n: &OpNode) -> Option<TensorType> {
    let (q, k) = (ty(eg, n.children[0])?, ty(eg, n.children[1])?);
    let shape = match (&q.shape[..], &k.shape[..]) {
        ([b, h, sq, _], [_, _, sk, _]) => vec![b.clone(), h.clone(), sq.clone(), sk.clone()],
        ([b, sq, _], [_, sk, _]) => {
            let h = match attr(n, "q_num_heads") {
                Some(Attr::Int(h)) => Dim::fixed(*h),
                _ => return None,
            };
            vec![b.clone(), h, sq.clone(), sk.clone()]
        }
        _ => return None,
    };
    Some(TensorType {
        shape,
        elem: q.elem.clone(),
    })
}

fn attention_causal(eg: &TsrEGraph, class: Id, v: &Vars) -> Vec<Template> {
    let kids = attention_vars(v, true);
    let m = kids[3];
    let mut out = Vec::new();
    for n in attention_nodes(eg, class, &kids) {
        let (Some(st), Some(mt)) = (scores_type(eg, n), ty(eg, m)) else {
            continue;
        };
        // The mask spans every query and key: no broadcast along them, and
        // no shorter key axis (which attention masks out).
        let r = mt.rank();
        let spans = r >= 2
            && mt.shape[r - 2].same_as(&st.shape[2])
            && mt.shape[r - 1].same_as(&st.shape[3]);
        if !spans || int_attr(n, "is_causal", 0) != Some(0) {
            continue;
        }
        let mut a: Attrs = n
            .attrs
            .as_ref()
            .map(|a| a.attrs().clone())
            .unwrap_or_default();
        a.insert("is_causal".into(), Attr::Int(1));
        let a = AttrSet::new(a);
        if is_causal_mask(eg, m, IOTA_DEPTH) {
            out.push(op_over("attention", a.clone(), &kids[..3]));
            continue;
        }
        // and(causal, rest): the causal half becomes the flag. Both are
        // boolean, so excluded keys get -inf either way.
        for and in ops(eg, m, "and") {
            let [x, y] = and.children[..] else { continue };
            for (causal, rest) in [(x, y), (y, x)] {
                let rest_ok = ty(eg, rest).is_some_and(|t| t.dtype() == tessera_ir::DType::Bool)
                    && mask_fits(eg, rest, &st);
                if rest_ok && is_causal_mask(eg, causal, IOTA_DEPTH) {
                    let mut new = kids[..3].to_vec();
                    new.push(rest);
                    out.push(op_over("attention", a.clone(), &new));
                }
            }
        }
    }
    out.truncate(1);
    out
}

// ---------------------------------------------------------------------------
// Rotary embeddings.

fn const_ints(eg: &TsrEGraph, c: Id) -> Option<Vec<i64>> {
    eg[c].data.constant.as_ref().map(|t| t.to_i64_vec())
}

/// `axis` names the last axis of a rank-`rank` tensor.
fn is_last_axis(axis: i64, rank: usize) -> bool {
    axis == -1 || axis == rank as i64 - 1
}

/// The `[start, end)` ranges that `class` takes of `x`'s last axis (size
/// `d`, step 1) as `slice(x, [start], [end], [last axis])`, bounds
/// normalized and clamped the way Slice does.
fn last_axis_slices(eg: &TsrEGraph, class: Id, x: Id, d: i64, rank: usize) -> Vec<(i64, i64)> {
    let clamp = |v: i64| if v < 0 { v.saturating_add(d) } else { v }.clamp(0, d);
    ops(eg, class, "slice")
        .filter(|n| same(eg, n.children[0], x) && n.children.len() >= 4)
        .filter_map(|n| {
            let step_one = match n.children.get(4) {
                None => true,
                Some(&c) => is_absent(eg, c) || const_ints(eg, c).is_some_and(|s| s == [1]),
            };
            let one = |i: usize| match const_ints(eg, n.children[i])?[..] {
                [v] => Some(v),
                _ => None,
            };
            let (start, end, axis) = (one(1)?, one(2)?, one(3)?);
            (step_one && is_last_axis(axis, rank)).then(|| (clamp(start), clamp(end)))
        })
        .collect()
}

/// The values `class` is the negation of: `neg(y)` or `y * -1`.
fn negated(eg: &TsrEGraph, class: Id) -> Vec<Id> {
    let mut out: Vec<Id> = ops(eg, class, "neg").map(|n| n.children[0]).collect();
    for n in ops(eg, class, "mul") {
        let [a, b] = n.children[..] else { continue };
        if splat_is(eg, b, -1.0) && ty(eg, b).is_some_and(|t| t.num_elements() == Some(1)) {
            out.push(a);
        } else if splat_is(eg, a, -1.0) && ty(eg, a).is_some_and(|t| t.num_elements() == Some(1)) {
            out.push(b);
        }
    }
    out
}

/// `rot` is `rotate_half(x)`: `concat(-x[.., h:], x[.., :h])` along the last
/// axis (size `d = 2h`).
fn is_rotate_half(eg: &TsrEGraph, rot: Id, x: Id, d: i64, rank: usize) -> bool {
    let h = d / 2;
    ops(eg, rot, "concat").any(|c| {
        let axis_ok = matches!(attr(c, "axis"), Some(Attr::Int(a)) if is_last_axis(*a, rank));
        let [neg, first] = c.children[..] else {
            return false;
        };
        axis_ok
            && last_axis_slices(eg, first, x, d, rank).contains(&(0, h))
            && negated(eg, neg)
                .into_iter()
                .any(|second| last_axis_slices(eg, second, x, d, rank).contains(&(h, d)))
    })
}

/// `class` is `concat(h, h)` along the last axis: `h`.
fn doubled(eg: &TsrEGraph, class: Id, rank: usize) -> Option<Id> {
    ops(eg, class, "concat").find_map(|c| {
        let axis_ok = matches!(attr(c, "axis"), Some(Attr::Int(a)) if is_last_axis(*a, rank));
        match c.children[..] {
            [a, b] if axis_ok && same(eg, a, b) => Some(a),
            _ => None,
        }
    })
}

/// `class` is `unsqueeze(C, [1])` broadcasting onto `x` (`[B, H, S, D]`),
/// with `C` (`[B, S, D]`) two equal halves along D. Pushes the computation
/// of one half (`[B, S, D/2]`) onto `t` and returns its reference:
/// `h` for `C = concat(h, h)`, `cos(f)` for `C = cos(concat(f, f))` (and
/// `sin` likewise, both being elementwise).
fn cache_half(eg: &TsrEGraph, t: &mut Template, class: Id, xt: &TensorType) -> Option<Id> {
    let [b, _, s, d] = &xt.shape[..] else {
        return None;
    };
    ops(eg, class, "unsqueeze").find_map(|u| {
        let axes = const_ints(eg, *u.children.get(1)?)?;
        let c = u.children[0];
        let ct = ty(eg, c)?;
        let fits = matches!(axes[..], [1] | [-3])
            && ct.elem == xt.elem
            && matches!(&ct.shape[..], [cb, cs, cd] if cb.same_as(b) && cs.same_as(s) && cd.same_as(d));
        if !fits {
            return None;
        }
        if let Some(h) = doubled(eg, c, 3) {
            return Some(t.push(TNode::Class(h)));
        }
        ["cos", "sin"].into_iter().find_map(|m| {
            let n = ops(eg, c, m).next()?;
            let f = doubled(eg, n.children[0], 3)?;
            let fi = t.push(TNode::Class(f));
            Some(push_op(t, m, n.attrs.clone().unwrap_or_else(AttrSet::empty), vec![fi]))
        })
    })
}

fn rotary_half(eg: &TsrEGraph, _: Id, v: &Vars) -> Vec<Template> {
    let (a, b, c, d) = (v.get("?a"), v.get("?b"), v.get("?c"), v.get("?d"));
    // Which product is x * cos and which rotate_half(x) * sin, and which
    // side of each is the cache, is not fixed: try every assignment.
    for ((p, q), (r, s)) in [((a, b), (c, d)), ((c, d), (a, b))] {
        for (x, cos) in [(p, q), (q, p)] {
            let Some(xt) = ty(eg, x).filter(|t| t.rank() == 4) else {
                continue;
            };
            let Some(dim) = xt.shape[3].as_fixed().filter(|n| n % 2 == 0 && *n > 0) else {
                continue;
            };
            for (rot, sin) in [(r, s), (s, r)] {
                if !is_rotate_half(eg, rot, x, dim, 4) {
                    continue;
                }
                let mut t = Template::default();
                let xi = t.push(TNode::Class(x));
                let (Some(ci), Some(si)) = (
                    cache_half(eg, &mut t, cos, xt),
                    cache_half(eg, &mut t, sin, xt),
                ) else {
                    continue;
                };
                push_op(
                    &mut t,
                    "rotary_embedding",
                    AttrSet::empty(),
                    vec![xi, ci, si],
                );
                return vec![t];
            }
        }
    }
    Vec::new()
}
