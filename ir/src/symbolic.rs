//! Symbolic shape arithmetic.
//!
//! Exporters compute shapes inside the graph: `Shape → Gather → Unsqueeze →
//! Concat → Reshape`. With symbolic dims these chains cannot be folded to
//! constants, but they can be *understood*: every small integer tensor
//! computed from shapes gets a symbolic value, a vector of [`Dim`]s
//! (`[batch, seq, 4, 32]`). [`simplify_shapes`] then replaces each such
//! chain by a constant when its value is static, by Reshape's `0`/`-1` form
//! when that expresses it, or by one `tsr.dims` op otherwise; re-infers every
//! type with the values known (so `Range(0, seq)` has type `[seq]`), and
//! drops the dead chains.
//!
//! Only ops that *move* integers (Gather, Concat, Slice, Unsqueeze...) and
//! integer arithmetic take part. Moving ops are evaluated with their own
//! `eval` on tensors of element ids, so their semantics are not restated here.

use crate::attr::{Attr, Attrs};
use crate::builder::infer_op_with_syms;
use crate::dim::Dim;
use crate::dtype::DType;
use crate::graph::{Graph, Op, ValueId};
use crate::ops::{AttrAccess, EvalCtx, OpKind};
use crate::tensor::Tensor;
use crate::types::TensorType;
use std::collections::HashMap;
use std::sync::Arc;

/// The symbolic value of a small integer (or bool, as 0/1) tensor of rank <= 1.
pub type SymVal = Vec<Dim>;

/// Symbolic values are tracked for tensors up to this many elements.
const MAX_SYM_LEN: usize = 64;

/// Ops that only move elements: evaluated on element ids.
const MOVING: &[&str] = &[
    "gather",
    "concat",
    "slice",
    "unsqueeze",
    "squeeze",
    "reshape",
    "identity",
    "flatten",
    "expand",
    "tile",
];

struct OpAttrs<'a>(&'a Op);

impl AttrAccess for OpAttrs<'_> {
    fn def(&self) -> &'static crate::ops::OpDef {
        self.0.kind.def()
    }
    fn attrs(&self) -> &Attrs {
        &self.0.attrs
    }
}

fn small_static(t: &TensorType) -> Option<usize> {
    if t.rank() > 1 || !(t.dtype().is_int() || t.dtype() == DType::Bool) {
        return None;
    }
    let n = t.num_elements()? as usize;
    (n <= MAX_SYM_LEN).then_some(n)
}

/// The symbolic value of one op's single result, given its operands'.
fn eval_sym(
    g: &Graph,
    op: &Op,
    producers: &[Option<usize>],
    sym: &dyn Fn(ValueId) -> Option<SymVal>,
) -> Option<SymVal> {
    if op.results.len() != 1 {
        return None;
    }
    let out_ty = g.ty(op.results[0]);
    small_static(out_ty)?;
    let m = op.kind.mnemonic();
    match m {
        "constant" => {
            let Some(Attr::Const(c)) = op.attrs.get("value") else {
                return None;
            };
            let t = &g.constant(*c).value;
            Some(t.to_i64_vec().into_iter().map(Dim::fixed).collect())
        }
        "dims" => crate::ops::symbolic::dims_exprs(&OpAttrs(op)).ok(),
        "shape" => {
            let x = g.ty(op.operand(0)?);
            let r = x.rank() as i64;
            let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) } as usize;
            let start = clamp(OpAttrs(op).int("start").unwrap_or(0));
            let end = clamp(OpAttrs(op).int("end").unwrap_or(r));
            Some(x.shape.get(start..end.max(start))?.to_vec())
        }
        "size" => Some(vec![g
            .ty(op.operand(0)?)
            .shape
            .iter()
            .fold(Dim::fixed(1), |a, d| a.mul(d))]),
        "cast" => {
            let to = g.ty(op.results[0]).dtype();
            (to.is_int() || to == DType::Bool).then(|| sym(op.operand(0)?))?
        }
        "add" | "sub" | "mul" | "div" | "equal" | "max" | "min" => {
            let (a, b) = (sym(op.operand(0)?)?, sym(op.operand(1)?)?);
            let n = a.len().max(b.len());
            if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
                return None;
            }
            let at = |v: &SymVal, i: usize| v[if v.len() == 1 { 0 } else { i }].clone();
            (0..n)
                .map(|i| {
                    let (x, y) = (at(&a, i), at(&b, i));
                    match m {
                        "add" => Some(x.add(&y)),
                        "sub" => Some(x.sub(&y)),
                        "mul" => Some(x.mul(&y)),
                        "div" => Some(x.div_exact(&y)).filter(|d| *d != Dim::Unknown),
                        "equal" => decide_equal(&x, &y).map(|b| Dim::fixed(b as i64)),
                        _ => match (x.as_fixed(), y.as_fixed()) {
                            (Some(p), Some(q)) => {
                                Some(Dim::fixed(if m == "max" { p.max(q) } else { p.min(q) }))
                            }
                            // A dim is never negative, so max(dim, c<=0) = dim, min(dim, c<=0) = c.
                            (None, Some(q)) | (Some(q), None) if q <= 0 => Some(if m == "max" {
                                if x.is_fixed() {
                                    y.clone()
                                } else {
                                    x.clone()
                                }
                            } else {
                                Dim::fixed(q)
                            }),
                            _ => None,
                        },
                    }
                })
                .collect()
        }
        "where" => {
            let (c, a, b) = (
                sym(op.operand(0)?)?,
                sym(op.operand(1)?)?,
                sym(op.operand(2)?)?,
            );
            let n = c.len().max(a.len()).max(b.len());
            let at = |v: &SymVal, i: usize| v.get(if v.len() == 1 { 0 } else { i }).cloned();
            (0..n)
                .map(|i| match at(&c, i)?.as_fixed()? {
                    0 => at(&b, i),
                    _ => at(&a, i),
                })
                .collect()
        }
        _ if MOVING.contains(&m) => eval_moving(g, op, producers, sym),
        _ => None,
    }
}

/// Two dims are equal for sure (Some(true)), differ for sure (Some(false)),
/// or it depends on the run (None). Dims are never negative.
fn decide_equal(x: &Dim, y: &Dim) -> Option<bool> {
    if x.same_as(y) {
        return Some(true);
    }
    match (x.as_fixed(), y.as_fixed()) {
        (Some(p), Some(q)) => Some(p == q),
        (Some(c), None) | (None, Some(c)) if c < 0 => Some(false),
        _ => None,
    }
}

/// Runs a moving op's own `eval` on tensors of element ids: operands with a
/// symbolic value become id tensors, constant operands are passed as they are.
fn eval_moving(
    g: &Graph,
    op: &Op,
    producers: &[Option<usize>],
    sym: &dyn Fn(ValueId) -> Option<SymVal>,
) -> Option<SymVal> {
    let mut table: Vec<Dim> = Vec::new();
    let mut inputs: Vec<Option<Tensor>> = Vec::new();
    let data_slots: Vec<usize> = if op.kind.mnemonic() == "concat" {
        (0..op.operands.len()).collect()
    } else {
        vec![0]
    };
    for (i, o) in op.operands.iter().enumerate() {
        let Some(v) = o else {
            inputs.push(None);
            continue;
        };
        if data_slots.contains(&i) {
            let vals = sym(*v)?;
            let ty = g.ty(*v);
            let shape: Vec<usize> = ty.static_shape()?.iter().map(|&d| d as usize).collect();
            let ids: Vec<i64> = (table.len()..table.len() + vals.len())
                .map(|x| x as i64)
                .collect();
            table.extend(vals);
            inputs.push(Some(Tensor::i64(shape, ids)));
        } else {
            inputs.push(Some((**g.constant_value(*v, producers)?).clone()));
        }
    }
    let def = op.kind.def();
    let ctx = EvalCtx {
        def,
        attrs: &op.attrs,
        inputs: inputs.iter().map(|t| t.as_ref()).collect(),
        num_results: 1,
    };
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (def.eval?)(&ctx).ok()))
        .ok()??;
    out.first()?
        .to_i64_vec()
        .into_iter()
        .map(|id| table.get(usize::try_from(id).ok()?).cloned())
        .collect()
}

/// Symbolic values of every value of `g` (None where unknown or not a small integer tensor).
pub fn sym_values(g: &Graph) -> Vec<Option<SymVal>> {
    let mut vals: Vec<Option<SymVal>> = vec![None; g.values.len()];
    let producers = g.producers();
    for op in &g.ops {
        let v = eval_sym(g, op, &producers, &|x| vals[x.0 as usize].clone());
        if let (Some(v), [r]) = (v, &op.results[..]) {
            vals[r.0 as usize] = Some(v);
        }
    }
    vals
}

/// Re-infers every op's result types in order, with constants and symbolic
/// values known, keeping a previous dim where the new inference knows less.
/// Returns the number of values whose type changed.
pub fn reinfer(g: &mut Graph) -> usize {
    let mut changed = 0;
    let mut syms: Vec<Option<SymVal>> = vec![None; g.values.len()];
    let mut producers = vec![None; g.values.len()];
    for i in 0..g.ops.len() {
        let op = &g.ops[i];
        if op.kind != OpKind::Constant {
            let inferred = infer_op_with_syms(
                g,
                op.kind,
                &op.operands,
                &op.attrs,
                op.results.len(),
                &|v| g.constant_value(v, &producers).cloned(),
                &|v| syms[v.0 as usize].clone(),
            );
            if let Ok(tys) = inferred {
                let results = op.results.clone();
                for (r, t) in results.iter().zip(tys) {
                    let old = &g.values[r.0 as usize].ty;
                    if old.elem != t.elem || old.rank() != t.rank() {
                        continue; // a disagreement is the verifier's to report
                    }
                    let merged: Vec<Dim> = t
                        .shape
                        .iter()
                        .zip(&old.shape)
                        .map(|(n, o)| {
                            if *n == Dim::Unknown {
                                o.clone()
                            } else {
                                n.clone()
                            }
                        })
                        .collect();
                    if merged != old.shape {
                        g.values[r.0 as usize].ty.shape = merged;
                        changed += 1;
                    }
                }
            }
        }
        let op = &g.ops[i];
        for r in &op.results {
            producers[r.0 as usize] = Some(i);
        }
        if let Some(v) = eval_sym(g, op, &producers, &|x| syms[x.0 as usize].clone()) {
            syms[op.results[0].0 as usize] = Some(v);
        }
    }
    changed
}

/// Where each symbol can be read at run time: a graph input and dim.
fn symbol_sources(g: &Graph) -> HashMap<String, (ValueId, usize)> {
    let mut m = HashMap::new();
    for v in &g.inputs {
        for (d, dim) in g.ty(*v).shape.iter().enumerate() {
            if let Dim::Known(p) = dim {
                if let [s] = p.symbols().collect::<Vec<_>>()[..] {
                    if dim.same_as(&Dim::sym(s)) {
                        m.entry(s.clone()).or_insert((*v, d));
                    }
                }
            }
        }
    }
    m
}

/// The Reshape target `dims` for an input of shape `input` written with
/// `0` (copy the input dim) and one `-1`, when that makes it constant.
fn reshape_target(input: &[Dim], dims: &[Dim]) -> Option<Vec<i64>> {
    let mut out = Vec::with_capacity(dims.len());
    let mut open = None;
    for (i, d) in dims.iter().enumerate() {
        if let Some(c) = d.as_fixed() {
            // The model's own 0 ("copy", allowzero is off here) and -1 keep their meaning.
            if c == -1 && open.replace(i).is_some() {
                return None;
            }
            out.push(c);
        } else if input.get(i).is_some_and(|x| x.same_as(d)) {
            out.push(0);
        } else if open.replace(i).is_none() {
            out.push(-1);
        } else {
            return None;
        }
    }
    Some(out)
}

/// Replaces shape computations by constants, Reshape `0`/`-1` targets or
/// `tsr.dims` ops, re-infers types and drops dead ops. Returns whether
/// anything changed.
pub fn simplify_shapes(g: &mut Graph) -> bool {
    let mut any = false;
    for _ in 0..4 {
        let round = simplify_round(g);
        let refined = reinfer(g) > 0;
        any |= round || refined;
        if !round && !refined {
            break;
        }
    }
    g.remove_dead();
    any
}

fn simplify_round(g: &mut Graph) -> bool {
    let syms = sym_values(g);
    let producers = g.producers();
    let sources = symbol_sources(g);
    // Values already in final form: graph inputs, constants, dims ops.
    let leaf: Vec<bool> = producers
        .iter()
        .map(|p| p.is_none_or(|p| matches!(g.ops[p].kind, OpKind::Constant | OpKind::Dims)))
        .collect();
    let is_leaf = |v: ValueId| leaf[v.0 as usize];
    let ops = std::mem::take(&mut g.ops);
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    let mut memo: HashMap<ValueId, ValueId> = HashMap::new();
    let mut by_content: HashMap<(String, usize, DType), ValueId> = HashMap::new();
    let mut changed = false;
    for mut op in ops {
        for j in 0..op.operands.len() {
            let Some(v) = op.operands[j] else { continue };
            let Some(val) = syms[v.0 as usize].clone() else {
                continue;
            };
            if is_leaf(v) || val.contains(&Dim::Unknown) {
                continue;
            }
            let dtype = g.ty(v).dtype();
            let rank = g.ty(v).rank();
            // Reshape: a constant with 0/-1 when the target is symbolic.
            if op.kind == OpKind::Reshape && j == 1 && val.iter().any(|d| !d.is_fixed()) {
                let allowzero = OpAttrs(&op).int("allowzero").unwrap_or(0) != 0;
                let input = op
                    .operand(0)
                    .map(|x| g.ty(x).shape.clone())
                    .unwrap_or_default();
                if let Some(t) = reshape_target(&input, &val).filter(|_| !allowzero) {
                    let name = fresh_name(g, "shape");
                    let c = push_const(
                        g,
                        &mut out,
                        &name,
                        Tensor::i64(vec![t.len()], t),
                        op.loc.clone(),
                    );
                    op.operands[j] = Some(c);
                    changed = true;
                    continue;
                }
            }
            // The same value, or the same content computed by another chain, is materialized once.
            let key = (format!("{val:?}"), rank, dtype);
            if let Some(&r) = memo.get(&v).or_else(|| by_content.get(&key)) {
                op.operands[j] = Some(r);
                changed = true;
                continue;
            }
            let r = if let Some(fixed) = val.iter().map(Dim::as_fixed).collect::<Option<Vec<i64>>>()
            {
                let shape = if rank == 0 { vec![] } else { vec![fixed.len()] };
                let name = fresh_name(g, "shape");
                push_const(
                    g,
                    &mut out,
                    &name,
                    Tensor::from_i64(dtype, shape, &fixed),
                    op.loc.clone(),
                )
            } else if dtype == DType::I64 && rank <= 1 {
                match dims_op(g, &mut out, &val, rank, &sources, op.loc.clone()) {
                    Some(r) => r,
                    None => continue,
                }
            } else {
                continue;
            };
            memo.insert(v, r);
            by_content.insert(key, r);
            op.operands[j] = Some(r);
            changed = true;
        }
        out.push(op);
    }
    g.ops = out;
    if changed {
        g.remove_dead();
    }
    changed
}

fn fresh_name(g: &Graph, base: &str) -> String {
    let taken: std::collections::HashSet<&str> =
        g.constants.iter().map(|c| c.name.as_str()).collect();
    (0..)
        .map(|i| format!("{base}.{i}"))
        .find(|n| !taken.contains(n.as_str()))
        .expect("a free name")
}

fn push_const(
    g: &mut Graph,
    out: &mut Vec<Op>,
    name: &str,
    t: Tensor,
    loc: Option<crate::graph::Loc>,
) -> ValueId {
    let ty = TensorType::fixed(
        &t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        t.dtype,
    );
    let c = g.add_constant(name, Arc::new(t));
    let r = g.add_value(ty);
    let mut attrs = Attrs::new();
    attrs.insert("value".into(), Attr::Const(c));
    out.push(Op {
        kind: OpKind::Constant,
        operands: vec![],
        results: vec![r],
        attrs,
        loc,
    });
    r
}

/// A `tsr.dims` op computing `val` from the graph inputs that carry its symbols.
fn dims_op(
    g: &mut Graph,
    out: &mut Vec<Op>,
    val: &[Dim],
    rank: usize,
    sources: &HashMap<String, (ValueId, usize)>,
    loc: Option<crate::graph::Loc>,
) -> Option<ValueId> {
    let mut symbols: Vec<String> = val
        .iter()
        .filter_map(|d| match d {
            Dim::Known(p) => Some(p.symbols().cloned().collect::<Vec<_>>()),
            Dim::Unknown => None,
        })
        .flatten()
        .collect();
    symbols.sort();
    symbols.dedup();
    let mut operands: Vec<ValueId> = Vec::new();
    let mut src = Vec::new();
    for s in &symbols {
        let (v, d) = *sources.get(s)?;
        let k = match operands.iter().position(|o| *o == v) {
            Some(k) => k,
            None => {
                operands.push(v);
                operands.len() - 1
            }
        };
        src.extend([k as i64, d as i64]);
    }
    let exprs: Vec<String> = val
        .iter()
        .map(|d| match d {
            Dim::Known(p) => p.to_string(),
            Dim::Unknown => unreachable!("filtered above"),
        })
        .collect();
    let mut attrs = Attrs::new();
    attrs.insert("exprs".into(), Attr::Strs(exprs));
    attrs.insert("symbols".into(), Attr::Strs(symbols));
    attrs.insert("sources".into(), Attr::Ints(src));
    let ty = if rank == 0 {
        attrs.insert("rank".into(), Attr::Int(0));
        TensorType::scalar(DType::I64)
    } else {
        TensorType::fixed(&[val.len() as i64], DType::I64)
    };
    let r = g.add_value(ty);
    out.push(Op {
        kind: OpKind::Dims,
        operands: operands.into_iter().map(Some).collect(),
        results: vec![r],
        attrs,
        loc,
    });
    Some(r)
}
