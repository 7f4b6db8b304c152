//! `DynamicQuantizeLinear` feeding u8 `MatMulInteger`s (onnxruntime's
//! `quantize_dynamic` graphs), rewritten into ops the accelerator runs, with
//! the same integers and the same scale as the ONNX ops, bit for bit.
//!
//! The accelerator cannot hold the u8 tensor: the array reads scratchpad
//! bytes as i8 and its activation zero point is a static register, while DQL
//! picks the zero point at run time. So the u8 values are re-centred and the
//! zero point is folded into a per-column correction:
//!
//! ```text
//! Σ_k (a − za)·w = Σ_k (a − 128)·w + (128 − za)·colsum(w)
//! ```
//!
//! `a − 128` fits i8, `colsum(w) = Σ_k w[k, n]` is a compile-time constant,
//! and the correction is one wrapping i32 multiply and add on the vector unit
//! (the ONNX contract: MatMulInteger wraps in 32 bits). The quantize step
//! itself, written as Tessera IR:
//!
//! ```text
//! hi    = max(ReduceMax(ReduceMax(x, [-1]) as [R]), 0)
//! lo    = min(−ReduceMax(ReduceMax(−x, [-1]) as [R]), 0)
//! range = hi − lo
//! one   = min(range · 2^100 · 2^100, 1)          1 unless range is 0
//! s     = (range + (1 − one)·255) / 255          the scale; 1 for an all-zero x
//! zp    = Round(Clip(−lo / s, 0, 255))
//! a−128 = Cast<i8>(Clip(Round(x / s) + (zp − 128), −128, 127))
//! ```
//!
//! Each step is one IEEE f32 operation, as in the interpreter's DQL
//! (`(hi − lo) / 255`, `x / s` divided, not multiplied by a reciprocal: the
//! vector unit's `div` is correctly rounded). `−lo / s` equals `0 − lo / s`
//! up to the sign of a zero, which Clip and Round map to the same integer.
//! Every other step sums or clamps integers below 2^24, so it is exact.
//!
//! A DQL is rewritten only when all of its quantized output's and zero
//! point's uses are such MatMulIntegers (i8 constant weight of rank 2, zero
//! weight zero point); otherwise it stays on the host whole.

use crate::quantize::Rewriter;
use std::collections::HashMap;
use tessera_ir::{Attr, Attrs, Builder, DType, Diagnostic, Graph, Op, OpKind, Tensor, ValueId};

/// The uses of every value: (op index, operand index).
fn uses(g: &Graph) -> HashMap<ValueId, Vec<(usize, usize)>> {
    let mut u: HashMap<ValueId, Vec<(usize, usize)>> = HashMap::new();
    for (i, op) in g.ops.iter().enumerate() {
        for (j, v) in op.operands.iter().enumerate() {
            if let Some(v) = v {
                u.entry(*v).or_default().push((i, j));
            }
        }
    }
    u
}

/// Column sums of an i8 `[K, N]` weight with zero weight zero point, or why
/// the MatMulInteger does not fit the rewrite.
fn weight_colsums(g: &Graph, producers: &[Option<usize>], op: &Op) -> Option<Vec<i32>> {
    let w = g.constant_value(op.operand(1)?, producers)?;
    if w.dtype != DType::I8 || w.rank() != 2 {
        return None;
    }
    if let Some(z) = op.operand(3) {
        let z = g.constant_value(z, producers)?;
        if z.to_i64_vec().iter().any(|&v| v != 0) {
            return None;
        }
    }
    let (k, n) = (w.shape[0], w.shape[1]);
    let wv = w.to_i64_vec();
    Some(
        (0..n)
            .map(|j| (0..k).map(|i| wv[i * n + j] as i32).sum())
            .collect(),
    )
}

/// The DQL ops to rewrite, each with the column sums of its MatMulIntegers
/// (by op index).
fn eligible(g: &Graph) -> HashMap<usize, HashMap<usize, Vec<i32>>> {
    let producers = g.producers();
    let uses = uses(g);
    let outputs: Vec<ValueId> = g.outputs.iter().map(|(_, v)| *v).collect();
    let mut found = HashMap::new();
    'dql: for (i, op) in g.ops.iter().enumerate() {
        if op.kind != OpKind::DynamicQuantizeLinear || op.results.len() != 3 {
            continue;
        }
        let (y, zp) = (op.results[0], op.results[2]);
        if outputs.contains(&y) || outputs.contains(&zp) {
            continue;
        }
        let mut mms = HashMap::new();
        for &(u, j) in uses.get(&y).into_iter().flatten() {
            let mm = &g.ops[u];
            if mm.kind != OpKind::MatMulInteger || j != 0 || mm.operand(2) != Some(zp) {
                continue 'dql;
            }
            match weight_colsums(g, &producers, mm) {
                Some(c) => mms.insert(u, c),
                None => continue 'dql,
            };
        }
        for &(u, j) in uses.get(&zp).into_iter().flatten() {
            if j != 2 || !mms.contains_key(&u) {
                continue 'dql;
            }
        }
        if !mms.is_empty() {
            found.insert(i, mms);
        }
    }
    found
}

/// What a rewritten DQL hands its MatMulIntegers.
struct Requantized {
    /// `a − 128` as i8, the shape of x.
    centred: ValueId,
    /// `128 − za` as an i32 scalar.
    fold: ValueId,
}

impl Rewriter<'_> {
    fn f32_const(&mut self, step: &str, v: f32) -> ValueId {
        self.constant(step, Tensor::f32(vec![], vec![v]))
    }

    fn binary(
        &mut self,
        step: &str,
        kind: OpKind,
        a: ValueId,
        b: ValueId,
    ) -> Result<ValueId, Diagnostic> {
        self.op(step, kind, vec![a, b], Attrs::new())
    }

    /// The largest element of `x` over all axes, as a scalar: per row on
    /// the vector unit, then over the row maxima.
    fn global_max(&mut self, tag: &str, x: ValueId) -> Result<ValueId, Diagnostic> {
        let rows = self.row_max(&format!("{tag}_row_max"), x)?;
        let flat_shape =
            self.constant(&format!("{tag}_flat_shape"), Tensor::i64(vec![1], vec![-1]));
        let flat = self.op(
            &format!("{tag}_flat"),
            OpKind::Reshape,
            vec![rows, flat_shape],
            Attrs::new(),
        )?;
        let axes = self.constant(&format!("{tag}_axes"), Tensor::i64(vec![1], vec![-1]));
        let mut drop = Attrs::new();
        drop.insert("keepdims".into(), Attr::Int(0));
        self.op(
            &format!("{tag}_max"),
            OpKind::ReduceMax,
            vec![flat, axes],
            drop,
        )
    }

    /// DQL's scale (a scalar), and the re-centred activations and zero-point
    /// fold for its MatMulIntegers.
    fn dynamic_quantize(&mut self, x: ValueId) -> Result<(ValueId, Requantized), Diagnostic> {
        use OpKind as K;
        let zero = self.f32_const("zero", 0.0);
        let hi = self.global_max("hi", x)?;
        let hi = self.binary("hi_with_zero", K::Max, hi, zero)?;
        let neg_x = self.op("neg_x", K::Neg, vec![x], Attrs::new())?;
        let neg_lo = self.global_max("neg_lo", neg_x)?;
        let lo = self.op("lo", K::Neg, vec![neg_lo], Attrs::new())?;
        let lo = self.binary("lo_with_zero", K::Min, lo, zero)?;
        let range = self.binary("range", K::Sub, hi, lo)?;
        // 1 for any positive range (2^200 lifts the smallest subnormal,
        // 2^-149, above 1; larger ranges overflow to inf), 0 for a zero range.
        let big = self.f32_const("two_pow_100", 2f32.powi(100));
        let lifted = self.binary("range_lifted", K::Mul, range, big)?;
        let lifted = self.binary("range_lifted2", K::Mul, lifted, big)?;
        let one = self.f32_const("one", 1.0);
        let nonzero = self.binary("range_nonzero", K::Min, lifted, one)?;
        let is_zero = self.binary("range_is_zero", K::Sub, one, nonzero)?;
        let c255 = self.f32_const("c255", 255.0);
        let pad = self.binary("zero_range_pad", K::Mul, is_zero, c255)?;
        let numerator = self.binary("scale_numerator", K::Add, range, pad)?;
        let scale = self.binary("scale", K::Div, numerator, c255)?;

        let neg_lo_s = self.op("neg_lo_s", K::Neg, vec![lo], Attrs::new())?;
        let zp = self.binary("zp_real", K::Div, neg_lo_s, scale)?;
        let zp = self.op("zp_clip", K::Clip, vec![zp, zero, c255], Attrs::new())?;
        let zp = self.op("zp", K::Round, vec![zp], Attrs::new())?;
        let c128 = self.f32_const("c128", 128.0);
        let shift = self.binary("zp_minus_128", K::Sub, zp, c128)?;
        let fold = self.binary("fold_real", K::Sub, c128, zp)?;
        let fold = self.cast("fold", fold, DType::I32)?;

        let q = self.binary("x_over_scale", K::Div, x, scale)?;
        let q = self.op("x_rounded", K::Round, vec![q], Attrs::new())?;
        let q = self.binary("x_shifted", K::Add, q, shift)?;
        let lo8 = self.f32_const("lo8", -128.0);
        let hi8 = self.f32_const("hi8", 127.0);
        let q = self.op("x_clip", K::Clip, vec![q, lo8, hi8], Attrs::new())?;
        let centred = self.cast("x_centred_i8", q, DType::I8)?;
        Ok((scale, Requantized { centred, fold }))
    }

    /// `MatMulInteger(a, w, za, 0)` from the re-centred `a − 128`.
    fn folded_matmul(
        &mut self,
        r: &Requantized,
        w: ValueId,
        colsums: Vec<i32>,
    ) -> Result<ValueId, Diagnostic> {
        let n = colsums.len();
        let acc = self.op(
            "matmul_centred",
            OpKind::MatMulInteger,
            vec![r.centred, w],
            Attrs::new(),
        )?;
        let colsum = Tensor::new(DType::I32, vec![n], tessera_ir::Data::I32(colsums))
            .map_err(Diagnostic::new)?;
        let colsum = self.constant("colsum", colsum);
        let corr = self.binary("zero_point_fold", OpKind::Mul, colsum, r.fold)?;
        self.binary("matmul", OpKind::Add, acc, corr)
    }
}

/// Rewrites every eligible DQL and its MatMulIntegers; returns the node names
/// of the DQL ops rewritten.
pub fn rewrite_dynamic_quantization(g: &mut Graph) -> Result<Vec<String>, Diagnostic> {
    let plan = eligible(g);
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let mut done = Vec::new();
    let mut subst: HashMap<ValueId, ValueId> = HashMap::new();
    let mut requantized: HashMap<usize, Requantized> = HashMap::new();
    // Which DQL feeds each rewritten MatMulInteger, and its column sums.
    let mut matmuls: HashMap<usize, (usize, Vec<i32>)> = HashMap::new();
    for (&d, mms) in &plan {
        for (&m, c) in mms {
            matmuls.insert(m, (d, c.clone()));
        }
    }
    let old_ops = std::mem::take(&mut g.ops);
    for (i, mut op) in old_ops.into_iter().enumerate() {
        for o in op.operands.iter_mut().flatten() {
            *o = subst.get(o).copied().unwrap_or(*o);
        }
        let node = crate::program::node_name(&op);
        if plan.contains_key(&i) {
            let x = op
                .operand(0)
                .ok_or_else(|| Diagnostic::new("DQL without an input"))?;
            let mut rw = Rewriter {
                b: Builder::new(g),
                node: node.clone(),
            };
            let (scale, r) = rw.dynamic_quantize(x).map_err(|e| e.at(op.loc.clone()))?;
            subst.insert(op.results[1], scale);
            requantized.insert(i, r);
            done.push(node);
        } else if let Some((d, colsums)) = matmuls.remove(&i) {
            let w = op
                .operand(1)
                .ok_or_else(|| Diagnostic::new("MatMulInteger without B"))?;
            let r = &requantized[&d];
            let mut rw = Rewriter {
                b: Builder::new(g),
                node,
            };
            let y = rw
                .folded_matmul(r, w, colsums)
                .map_err(|e| e.at(op.loc.clone()))?;
            if g.ty(y) != g.ty(op.results[0]) {
                return Err(Diagnostic::new(format!(
                    "dynamic quantization rewrite: result type {} differs from {}",
                    g.ty(y),
                    g.ty(op.results[0])
                ))
                .at(op.loc.clone()));
            }
            subst.insert(op.results[0], y);
        } else {
            g.ops.push(op);
        }
    }
    for (_, v) in g.outputs.iter_mut() {
        *v = subst.get(v).copied().unwrap_or(*v);
    }
    g.remove_dead();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_ir::{Data, TensorType};

    /// x [rows, k] f32 -> DQL -> MatMulInteger with a constant i8 [k, n]
    /// weight; outputs the i32 product and the scale.
    fn graph(rows: usize, k: usize, n: usize, w: Vec<i8>) -> Graph {
        let mut g = Graph::new("dql");
        let x = g.add_input("x", TensorType::fixed(&[rows as i64, k as i64], DType::F32));
        let mut b = Builder::new(&mut g);
        let q = b
            .op(
                OpKind::DynamicQuantizeLinear,
                vec![Some(x)],
                Attrs::new(),
                3,
                None,
            )
            .unwrap();
        let wt = Tensor::new(DType::I8, vec![k, n], Data::I8(w)).unwrap();
        let w = b.constant("w", std::sync::Arc::new(wt), None);
        let zw = b.constant(
            "zw",
            std::sync::Arc::new(Tensor::new(DType::I8, vec![], Data::I8(vec![0])).unwrap()),
            None,
        );
        let y = b
            .op(
                OpKind::MatMulInteger,
                vec![Some(q[0]), Some(w), Some(q[2]), Some(zw)],
                Attrs::new(),
                1,
                None,
            )
            .unwrap();
        g.add_output("y", y[0]);
        g.add_output("scale", q[1]);
        g
    }

    fn weights(k: usize, n: usize) -> Vec<i8> {
        (0..k * n)
            .map(|i| ((i * 37 + 11) % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect()
    }

    fn check(x: Vec<f32>, rows: usize, k: usize) {
        let n = 5;
        let g = graph(rows, k, n, weights(k, n));
        let mut r = g.clone();
        let done = rewrite_dynamic_quantization(&mut r).unwrap();
        assert_eq!(done.len(), 1);
        assert!(r
            .ops
            .iter()
            .all(|o| o.kind != OpKind::DynamicQuantizeLinear));
        let input = Tensor::f32(vec![rows, k], x);
        let want = tessera_reference::run(&g, std::slice::from_ref(&input)).unwrap();
        let got = tessera_reference::run(&r, &[input]).unwrap();
        assert_eq!(want[0].to_i64_vec(), got[0].to_i64_vec());
        assert_eq!(
            want[1].to_f32_vec()[0].to_bits(),
            got[1].to_f32_vec()[0].to_bits()
        );
    }

    #[test]
    fn rewrite_is_bit_exact_with_the_onnx_ops() {
        // Mixed signs, the ONNX doc example's values, ties of x / s near
        // half-integers, an all-positive and an all-negative tensor.
        check(vec![0.0, 2.0, -3.0, -2.5, 1.34, 0.5, 0.7, -0.1], 2, 4);
        let mut seed = 0x9e3779b9u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as f32 / u32::MAX as f32
        };
        for (lo, hi) in [(-1.0f32, 1.0), (0.25, 3.0), (-7.0, -0.001), (-1e-30, 1e-30)] {
            let x: Vec<f32> = (0..3 * 16).map(|_| lo + (hi - lo) * next()).collect();
            check(x, 3, 16);
        }
    }

    #[test]
    fn all_zero_input_takes_scale_one() {
        check(vec![0.0; 12], 3, 4);
    }

    #[test]
    fn other_uses_keep_the_dql_whole() {
        let mut g = graph(2, 4, 3, weights(4, 3));
        // The quantized tensor is also a graph output: no rewrite.
        let dql_y = g
            .ops
            .iter()
            .find(|o| o.kind == OpKind::DynamicQuantizeLinear)
            .unwrap()
            .results[0];
        g.add_output("q", dql_y);
        assert!(rewrite_dynamic_quantization(&mut g).unwrap().is_empty());
    }
}
