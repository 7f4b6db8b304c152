//! Data movement of 4-byte tensors (`Expand`, `Slice`, `Concat`, `Gather`
//! with constant indices, `Unsqueeze`, `Squeeze`, `Flatten`, `Reshape` of
//! i32) as constant-index gathers by strided DMA ([`GatherKernel`]).
//!
//! Which source word lands in which output word is not re-derived here: the
//! op's own reference semantics are evaluated on *index tensors* (every data
//! operand filled with the word offsets of its elements from a common base
//! address) with the op's constant operands, so the result is the source
//! offset of every output element. Slice clamping, negative steps, Expand's
//! broadcasting and Concat's axis are then exactly the interpreter's, and
//! adding a movement op here is one table line.

use crate::conv::{dma_blocks, GatherKernel};
use crate::lower::{classify, Addrs, Arg, Ctx};
use std::collections::HashMap;
use std::sync::Arc;
use tessera_ir::ops::{AttrAccess, EvalCtx};
use tessera_ir::{Attrs, Builder, DType, Diagnostic, Graph, Loc, Op, OpKind, Tensor, ValueId};

/// Movement ops and which of their operands carry data (the rest must be
/// compile-time constants: shapes, starts, axes, indices).
const MOVEMENT: &[(OpKind, DataOperands)] = &[
    (OpKind::Expand, DataOperands::First),
    (OpKind::Slice, DataOperands::First),
    (OpKind::Gather, DataOperands::First),
    (OpKind::Unsqueeze, DataOperands::First),
    (OpKind::Squeeze, DataOperands::First),
    (OpKind::Flatten, DataOperands::First),
    (OpKind::Reshape, DataOperands::First),
    (OpKind::Concat, DataOperands::All),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum DataOperands {
    First,
    All,
}

pub fn is_movement(kind: OpKind) -> bool {
    MOVEMENT.iter().any(|(k, _)| *k == kind)
}

/// Lowers a movement op of f32 or i32 data to a DMA gather.
pub fn build<A: Addrs>(cx: &Ctx, op: &Op, a: &mut A) -> Result<GatherKernel, String> {
    let Some(&(_, data)) = MOVEMENT.iter().find(|(k, _)| *k == op.kind) else {
        return Err("not a data movement op".into());
    };
    if op.results.len() != 1 {
        return Err("several results".into());
    }
    let y = op.results[0];
    let dtype = cx.g.ty(y).dtype();
    if !matches!(dtype, DType::F32 | DType::I32) {
        return Err(format!("{dtype} data (the accumulator moves 4-byte words)"));
    }
    let is_data = |i: usize| data == DataOperands::All || i == 0;
    // DRAM byte address of every data operand; the rest as constants.
    let mut addrs: Vec<Option<u64>> = Vec::new();
    let mut consts: Vec<Option<&Tensor>> = Vec::new();
    for (i, v) in op.operands.iter().enumerate() {
        match v {
            Some(v) if is_data(i) => {
                if cx.g.ty(*v).dtype() != dtype {
                    return Err("operands of another type".into());
                }
                addrs.push(Some(cx.dram_addr(a, *v)));
                consts.push(None);
            }
            Some(v) => {
                let t =
                    cx.g.constant_value(*v, cx.producers)
                        .ok_or("a runtime shape, index or bound operand")?;
                addrs.push(None);
                consts.push(Some(&**t));
            }
            None => {
                addrs.push(None);
                consts.push(None);
            }
        }
    }
    let base = addrs
        .iter()
        .flatten()
        .copied()
        .min()
        .ok_or("no data operand")?;
    // Index tensors: word offsets from `base`.
    let mut index_tensors: Vec<Option<Tensor>> = Vec::new();
    for (i, v) in op.operands.iter().enumerate() {
        index_tensors.push(match (v, addrs[i]) {
            (Some(v), Some(addr)) => {
                let shape: Vec<usize> =
                    cx.g.ty(*v)
                        .static_shape()
                        .ok_or("non-static operand shape")?
                        .into_iter()
                        .map(|d| d as usize)
                        .collect();
                let n: usize = shape.iter().product();
                let first = ((addr - base) / 4) as i64;
                Some(Tensor::i64(shape, (first..first + n as i64).collect()))
            }
            _ => None,
        });
    }
    let inputs: Vec<Option<&Tensor>> = index_tensors
        .iter()
        .zip(&consts)
        .map(|(ix, c)| ix.as_ref().or(*c))
        .collect();
    let def = op.kind.def();
    let eval = def.eval.ok_or("no reference semantics")?;
    let out = eval(&EvalCtx {
        def,
        attrs: &op.attrs,
        inputs,
        num_results: 1,
    })?;
    let want: Vec<usize> =
        cx.g.ty(y)
            .static_shape()
            .ok_or("non-static result shape")?
            .into_iter()
            .map(|d| d as usize)
            .collect();
    let src = out.first().ok_or("no result")?;
    if src.shape != want {
        return Err(format!(
            "source map of shape {:?} for a result of {:?}",
            src.shape, want
        ));
    }
    let src: Vec<u64> = src.to_i64_vec().into_iter().map(|s| s as u64).collect();
    if src.is_empty() {
        return Err("empty tensor".into());
    }
    Ok(GatherKernel {
        data: base,
        out: a.value(y),
        blocks: dma_blocks(&src),
    })
}

/// Binary elementwise f32 ops with an operand broadcast the vector unit
/// cannot stride (e.g. Llama's `x[b, h, s, d] * cos[b, 1, s, d]`) get that
/// operand materialized by an `Expand`, which runs as a DMA gather; the
/// interpreter computes the same values either way. Returns how many
/// operands were expanded.
pub fn materialize_broadcasts(g: &mut Graph) -> Result<usize, Diagnostic> {
    let static_shape = |g: &Graph, v| -> Option<Vec<u64>> {
        let s = g.ty(v).static_shape()?;
        Some(s.into_iter().map(|d| d as u64).collect())
    };
    let old = std::mem::take(&mut g.ops);
    let mut expanded = 0;
    for mut op in old {
        let binary = matches!(
            op.kind,
            OpKind::Add | OpKind::Sub | OpKind::Mul | OpKind::Div | OpKind::Max | OpKind::Min
        ) && op.operands.len() == 2
            && op.results.len() == 1
            && g.ty(op.results[0]).dtype() == DType::F32;
        let shapes = (binary)
            .then(|| {
                let out = static_shape(g, op.results[0])?;
                let a = static_shape(g, op.operand(0)?)?;
                let b = static_shape(g, op.operand(1)?)?;
                Some((out, a, b))
            })
            .flatten();
        if let Some((out, a, b)) = shapes {
            let classes = [classify(&a, &out), classify(&b, &out)];
            let has_full = classes.contains(&Some(Arg::Full));
            for (i, class) in classes.iter().enumerate() {
                if class.is_some() && (has_full || i == 1) {
                    continue;
                }
                let v = op
                    .operand(i)
                    .ok_or_else(|| Diagnostic::new("missing operand"))?;
                let node = crate::program::node_name(&op);
                let name = format!("{node}/accel_broadcast/{i}");
                let loc = Some(Loc {
                    name: name.clone(),
                    op_type: "Expand".into(),
                });
                let mut b = Builder::new(g);
                let dims: Vec<i64> = out.iter().map(|&d| d as i64).collect();
                let shape = b.constant(
                    &format!("{name}/shape"),
                    Arc::new(Tensor::i64(vec![dims.len()], dims)),
                    loc.clone(),
                );
                let e = b
                    .op(
                        OpKind::Expand,
                        vec![Some(v), Some(shape)],
                        Attrs::new(),
                        1,
                        loc,
                    )
                    .map_err(|e| Diagnostic::new(e).at(op.loc.clone()))?;
                op.operands[i] = Some(e[0]);
                expanded += 1;
            }
        }
        g.ops.push(op);
    }
    Ok(expanded)
}

/// `Split` of 4-byte data into one `Slice` per result (each then a DMA
/// gather): the results' static shapes give the pieces, so the split
/// operand, the `split` attribute and `num_outputs` need no re-reading.
pub fn split_to_slices(g: &mut Graph) -> Result<usize, Diagnostic> {
    let old = std::mem::take(&mut g.ops);
    let mut subst: HashMap<ValueId, ValueId> = HashMap::new();
    for mut op in old {
        for o in op.operands.iter_mut().flatten() {
            *o = subst.get(o).copied().unwrap_or(*o);
        }
        let Some(pieces) = split_pieces(g, &op) else {
            g.ops.push(op);
            continue;
        };
        let (x, axis) = pieces.0;
        let node = crate::program::node_name(&op);
        let mut start = 0;
        let mut b = Builder::new(g);
        for (i, (size, old_result)) in pieces.1.into_iter().zip(&op.results).enumerate() {
            let name = format!("{node}/accel_split/{i}");
            let loc = Some(Loc {
                name: name.clone(),
                op_type: "Slice".into(),
            });
            let mut konst = |what: &str, v: i64| {
                b.constant(
                    &format!("{name}/{what}"),
                    Arc::new(Tensor::i64(vec![1], vec![v])),
                    loc.clone(),
                )
            };
            let bounds = [
                konst("starts", start),
                konst("ends", start + size),
                konst("axes", axis),
            ];
            let mut operands = vec![Some(x)];
            operands.extend(bounds.map(Some));
            let y = b
                .op(OpKind::Slice, operands, Attrs::new(), 1, loc)
                .map_err(|e| Diagnostic::new(e).at(op.loc.clone()))?;
            subst.insert(*old_result, y[0]);
            start += size;
        }
    }
    for (_, v) in g.outputs.iter_mut() {
        *v = subst.get(v).copied().unwrap_or(*v);
    }
    g.remove_dead();
    Ok(subst.len())
}

/// `((x, axis), sizes)` of a Split of 4-byte data with static results.
fn split_pieces(g: &Graph, op: &Op) -> Option<((ValueId, i64), Vec<i64>)> {
    let x = op.operand(0)?;
    if op.kind != OpKind::Split || !matches!(g.ty(x).dtype(), DType::F32 | DType::I32) {
        return None;
    }
    let rank = g.ty(x).rank() as i64;
    let axis = crate::OpAttrs(op).int("axis").ok()?;
    let axis = if axis < 0 { axis + rank } else { axis };
    let sizes = op
        .results
        .iter()
        .map(|r| g.ty(*r).static_shape().map(|s| s[axis as usize]))
        .collect::<Option<Vec<i64>>>()?;
    Some(((x, axis), sizes))
}
