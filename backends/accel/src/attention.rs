//! Activation x activation matmuls and fused attention in the int8 scheme,
//! written as Tessera IR (like [`crate::quantize`]) so the reference
//! interpreter runs the graph the accelerator implements.
//!
//! `y = A · B` with both operands computed at run time (the attention score
//! `Q·Kᵀ` and context `P·V` products):
//!
//! ```text
//! (aq, as) = per-row int8 of A                       as: [..., M, 1]   (as for constant weights)
//! bs  = max(max over B's matrix |B|, 2^-100) / 127   per matrix (per batch, head): [..., 1, 1]
//! bq  = Cast<i8>(Clip(Round(B · (1/bs))))            the 1/bs broadcast over B's rows
//! acc = MatMulInteger(aq, bq)                         i32 on the array
//! y   = Cast<f32>(acc) · (as · bs)                    one per-row factor
//! ```
//!
//! A per-matrix scale (rather than per column of B) needs no reduction across
//! rows, which the vector unit does not have: the matrix maximum is a row
//! maximum (`ReduceMax` over the last axis), reshaped into one row per matrix
//! and reduced again. Broadcasting a per-matrix value over the rows of a
//! matrix uses the same reshape: `max(0 · rowvalues, s)` on the `[..., 1, R]`
//! view, where the per-matrix `s` is one word per row of the view. Reshapes
//! are vector-unit copies, so every step runs on the accelerator.
//!
//! `tsr.attention` (4-D or packed 3-D Q/K/V, no KV-cache operands, no
//! softcap or windows, one result) expands to: packed operands split into
//! heads (`Reshape` + `Transpose`), query heads grouped per KV head
//! (`[b, kv_heads, group·q, d]`, a reshape, so GQA shares K and V),
//! `S = (Q·Kᵀ)·scale` with K quantized per matrix and transposed as int8
//! (`Transpose(kq)`), the mask and causal frontier as an additive bias
//! (`Where(mask, 0, -1e30)` + a `[q, kv]` constant, broadcast over heads:
//! mask construction, on the host, once per mask), then softmax and `P·V` as
//! one product with the normalization deferred
//! ([`Rewriter::softmax_matmul`], also used for a `MatMul` whose first
//! operand is a softmax), V per matrix. A row whose mask excludes every key
//! gets uniform probabilities (the op defines zeros); no fixture has one.

use crate::quantize::Rewriter;
use std::collections::HashMap;
use tessera_ir::ops::AttrAccess;
use tessera_ir::{
    Attr, Attrs, Builder, DType, Diagnostic, Dim, Graph, Op, OpKind, Tensor, ValueId,
};

/// The additive bias made from each attention mask, shared by every
/// attention op that uses the same mask with the same head layout.
#[derive(Default)]
pub struct MaskBiases {
    made: HashMap<(Option<ValueId>, bool, i64, i64), ValueId>,
}

/// The large negative logit of a masked-out key: `exp(-1e30 - max)` is 0.
const MASKED: f32 = -1e30;

fn attrs1(name: &str, v: Attr) -> Attrs {
    let mut a = Attrs::new();
    a.insert(name.into(), v);
    a
}

impl Rewriter<'_> {
    /// `Reshape(x, target)` with a constant target (0 copies a dim, -1 infers).
    fn reshape(&mut self, step: &str, x: ValueId, target: Vec<i64>) -> Result<ValueId, Diagnostic> {
        let t = self.constant(
            &format!("{step}_shape"),
            Tensor::i64(vec![target.len()], target),
        );
        self.op(step, OpKind::Reshape, vec![x, t], Attrs::new())
    }

    /// `[..., R, 1] -> [..., 1, R]` and back (same bytes).
    fn rows_to_row(&mut self, step: &str, x: ValueId, rank: usize) -> Result<ValueId, Diagnostic> {
        let mut t = vec![0; rank - 2];
        t.extend([1, -1]);
        self.reshape(step, x, t)
    }
    fn row_to_rows(&mut self, step: &str, x: ValueId, rank: usize) -> Result<ValueId, Diagnostic> {
        let mut t = vec![0; rank - 2];
        t.extend([-1, 1]);
        self.reshape(step, x, t)
    }

    /// Per-matrix int8 of `x` `[..., R, C]`: returns (`xq` i8, `xs` `[..., 1, 1]`).
    fn quantize_matrix(&mut self, tag: &str, x: ValueId) -> Result<(ValueId, ValueId), Diagnostic> {
        let rank = self.b.graph.ty(x).rank();
        let ax = self.op(&format!("{tag}abs"), OpKind::Abs, vec![x], Attrs::new())?;
        let rmax = self.row_max(&format!("{tag}row_max"), ax)?;
        let row = self.rows_to_row(&format!("{tag}row_max_t"), rmax, rank)?;
        let amax = self.row_max(&format!("{tag}matrix_max"), row)?;
        let (xs, inv) = self.scale_of(tag, amax)?;
        // 1/xs once per row of x: max(0·rowmax, inv) on the [..., 1, R] view.
        let zero = self.constant(&format!("{tag}zero"), Tensor::f32(vec![], vec![0.0]));
        let zeros = self.op(
            &format!("{tag}zeros"),
            OpKind::Mul,
            vec![row, zero],
            Attrs::new(),
        )?;
        let inv_row = self.op(
            &format!("{tag}inv_bcast"),
            OpKind::Max,
            vec![zeros, inv],
            Attrs::new(),
        )?;
        let inv_rows = self.row_to_rows(&format!("{tag}inv_rows"), inv_row, rank)?;
        Ok((self.int8_of(tag, x, inv_rows)?, xs))
    }

    /// `Cast<f32>(acc) · (as · bs · extra)` with `as` per row `[..., M, 1]`
    /// and `bs` per matrix `[..., 1, 1]` (or `[1, 1]`).
    fn dequantize(
        &mut self,
        tag: &str,
        acc: ValueId,
        a_scale: ValueId,
        b_scale: ValueId,
        extra: Option<f32>,
    ) -> Result<ValueId, Diagnostic> {
        let rank = self.b.graph.ty(a_scale).rank();
        let row = self.rows_to_row(&format!("{tag}scale_t"), a_scale, rank)?;
        let mut c = self.op(
            &format!("{tag}scale_ab"),
            OpKind::Mul,
            vec![row, b_scale],
            Attrs::new(),
        )?;
        if let Some(s) = extra {
            let sc = self.constant(&format!("{tag}extra"), Tensor::f32(vec![], vec![s]));
            c = self.op(
                &format!("{tag}scale_extra"),
                OpKind::Mul,
                vec![c, sc],
                Attrs::new(),
            )?;
        }
        let c = self.row_to_rows(&format!("{tag}scale_rows"), c, rank)?;
        let accf = self.cast(&format!("{tag}cast_f32"), acc, DType::F32)?;
        self.op(
            &format!("{tag}dequant"),
            OpKind::Mul,
            vec![accf, c],
            Attrs::new(),
        )
    }

    /// `Softmax(logits) · b` with the normalization deferred to the output
    /// (as FlashAttention does): `e = exp(l − rowmax(l))` has a row maximum
    /// of exactly 1, so it quantizes with the constant scale 1/127, and
    /// `(e·b) · (1/rowsum(e))` is applied to the `[rows, N]` result. The
    /// integers then depend only on ops the vector unit rounds exactly as
    /// the interpreter (max, subtract, exp in f64 rounded once), not on the
    /// row sum (f32 on the vector unit, f64 in the interpreter).
    fn softmax_matmul(
        &mut self,
        tag: &str,
        logits: ValueId,
        b: ValueId,
    ) -> Result<ValueId, Diagnostic> {
        let m = self.row_max(&format!("{tag}row_max"), logits)?;
        let shifted = self.op(
            &format!("{tag}shifted"),
            OpKind::Sub,
            vec![logits, m],
            Attrs::new(),
        )?;
        let e = self.op(
            &format!("{tag}exp"),
            OpKind::Exp,
            vec![shifted],
            Attrs::new(),
        )?;
        let axes = self.constant(&format!("{tag}sum_axes"), Tensor::i64(vec![1], vec![-1]));
        let keep = attrs1("keepdims", Attr::Int(1));
        let sum = self.op(
            &format!("{tag}row_sum"),
            OpKind::ReduceSum,
            vec![e, axes],
            keep,
        )?;
        let c127 = self.constant(&format!("{tag}c127"), Tensor::f32(vec![], vec![127.0]));
        let eq = self.int8_of(&format!("{tag}e_"), e, c127)?;
        let (bq, b_scale) = self.quantize_matrix(&format!("{tag}b_"), b)?;
        let acc = self.op(
            &format!("{tag}matmul_integer"),
            OpKind::MatMulInteger,
            vec![eq, bq],
            Attrs::new(),
        )?;
        let inv_sum = self.op(
            &format!("{tag}inv_sum"),
            OpKind::Reciprocal,
            vec![sum],
            Attrs::new(),
        )?;
        let inv127 = self.constant(
            &format!("{tag}inv127"),
            Tensor::f32(vec![], vec![1.0 / 127.0]),
        );
        let a_scale = self.op(
            &format!("{tag}e_scale"),
            OpKind::Mul,
            vec![inv_sum, inv127],
            Attrs::new(),
        )?;
        self.dequantize(tag, acc, a_scale, b_scale, None)
    }

    /// `a · b` for runtime float operands, `extra` folded into the scale.
    fn runtime_matmul(
        &mut self,
        tag: &str,
        a: ValueId,
        b: ValueId,
        extra: Option<f32>,
    ) -> Result<ValueId, Diagnostic> {
        let (aq, a_scale) = self.quantize_rows(&format!("{tag}a_"), a)?;
        let (bq, b_scale) = self.quantize_matrix(&format!("{tag}b_"), b)?;
        let acc = self.op(
            &format!("{tag}matmul_integer"),
            OpKind::MatMulInteger,
            vec![aq, bq],
            Attrs::new(),
        )?;
        self.dequantize(tag, acc, a_scale, b_scale, extra)
    }
}

/// Whether `a · b` fits the runtime scheme: f32 operands of rank >= 2, and
/// `b` either one matrix or with the batch dims of `a` (the per-matrix scales
/// of `b` then line up with the rows of `a`).
fn runtime_operands(g: &Graph, a: ValueId, b: ValueId) -> bool {
    let (ta, tb) = (g.ty(a), g.ty(b));
    if ta.dtype() != DType::F32 || tb.dtype() != DType::F32 || ta.rank() < 2 || tb.rank() < 2 {
        return false;
    }
    tb.rank() == 2
        || (ta.rank() == tb.rank()
            && ta.shape[..ta.rank() - 2]
                .iter()
                .zip(&tb.shape[..tb.rank() - 2])
                .all(|(x, y)| x.same_as(y)))
}

/// The logits when `a` is a softmax over its last axis.
fn softmax_logits(g: &Graph, a: ValueId) -> Option<ValueId> {
    let op = g.ops.iter().rev().find(|o| o.results.contains(&a))?;
    let rank = g.ty(a).rank() as i64;
    let axis = crate::OpAttrs(op).int("axis").ok()?;
    (op.kind == OpKind::Softmax && (axis == -1 || axis == rank - 1)).then(|| op.operand(0))?
}

fn fixed(d: &Dim) -> Option<i64> {
    d.as_fixed()
}

/// Rewrites `op` when it is an activation x activation matmul or a fused
/// attention the scheme covers; `None` leaves it as it is (placement then
/// reports it).
pub(crate) fn rewrite(
    g: &mut Graph,
    op: &Op,
    node: &str,
    masks: &mut MaskBiases,
) -> Result<Option<ValueId>, Diagnostic> {
    match op.kind {
        OpKind::MatMul | OpKind::Linear => {
            let (Some(a), Some(b)) = (op.operand(0), op.operand(1)) else {
                return Ok(None);
            };
            if !runtime_operands(g, a, b) {
                return Ok(None);
            }
            let mut rw = Rewriter {
                b: Builder::new(g),
                node: node.to_string(),
            };
            let mut y = match softmax_logits(rw.b.graph, a) {
                Some(l) => rw.softmax_matmul("", l, b)?,
                None => rw.runtime_matmul("", a, b, None)?,
            };
            if op.kind == OpKind::Linear {
                y = rw.linear_epilogue(op, y)?;
            }
            Ok(Some(y))
        }
        OpKind::Attention => attention(g, op, node, masks),
        _ => Ok(None),
    }
}

/// The expansion of `tsr.attention`, or `None` for the variants it does not
/// cover (KV-cache operands, softcap, windows, extra outputs; a causal mask
/// before the sequence lengths are known).
fn attention(
    g: &mut Graph,
    op: &Op,
    node: &str,
    masks: &mut MaskBiases,
) -> Result<Option<ValueId>, Diagnostic> {
    let at = crate::OpAttrs(op);
    let err = |e: String| Diagnostic::new(e).at(op.loc.clone());
    let (Some(q), Some(k), Some(v)) = (op.operand(0), op.operand(1), op.operand(2)) else {
        return Ok(None);
    };
    let extra_inputs = (4..op.operands.len()).any(|i| op.operand(i).is_some());
    if op.results.len() != 1
        || extra_inputs
        || at.float("softcap").map_err(err)? != 0.0
        || at.int("left_window_size").map_err(err)? >= 0
        || at.int("right_window_size").map_err(err)? >= 0
    {
        return Ok(None);
    }
    let causal = at.int("is_causal").map_err(err)? != 0;
    let (tq, tk, tv) = (g.ty(q).clone(), g.ty(k).clone(), g.ty(v).clone());
    if [&tq, &tk, &tv].iter().any(|t| t.dtype() != DType::F32) {
        return Ok(None);
    }
    // [b, heads, seq, size] geometry: 4-D operands, or 3-D [b, seq, heads·size].
    let packed = match tq.rank() {
        4 => false,
        3 => true,
        _ => return Ok(None),
    };
    let (qh, kvh) = if packed {
        match (at.int("q_num_heads"), at.int("kv_num_heads")) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Ok(None),
        }
    } else {
        match (fixed(&tq.shape[1]), fixed(&tk.shape[1])) {
            (Some(a), Some(b)) => (a, b),
            _ => return Ok(None),
        }
    };
    if kvh <= 0 || qh % kvh != 0 {
        return Ok(None);
    }
    let per_head = |t: &tessera_ir::TensorType, heads: i64| -> Option<i64> {
        let last = fixed(t.shape.last()?)?;
        if packed {
            (last % heads == 0).then_some(last / heads)
        } else {
            Some(last)
        }
    };
    let (Some(d), Some(dv)) = (per_head(&tq, qh), per_head(&tv, kvh)) else {
        return Ok(None);
    };
    let seq_axis = if packed { 1 } else { 2 };
    let (bd, qs, kvs) = (&tq.shape[0], &tq.shape[seq_axis], &tk.shape[seq_axis]);
    if !bd.same_as(&tk.shape[0]) || !kvs.same_as(&tv.shape[seq_axis]) {
        return Ok(None);
    }
    let scale = if at.has_attr("scale") {
        at.float("scale").map_err(err)? as f32
    } else {
        1.0 / (d as f32).sqrt()
    };
    let mask = op.operand(3);
    if mask.is_some_and(|m| !matches!(g.ty(m).dtype(), DType::Bool | DType::F32)) {
        return Ok(None);
    }
    let full = [bd.clone(), Dim::fixed(qh), qs.clone(), kvs.clone()];
    let mut rw = Rewriter {
        b: Builder::new(g),
        node: node.to_string(),
    };
    let bias = match (mask, causal) {
        (None, false) => None,
        _ => match attention_bias(&mut rw, masks, mask, causal, &full, kvh)? {
            Some(b) => Some(b),
            None => return Ok(None),
        },
    };
    let heads_first = |rw: &mut Rewriter, step: &str, x: ValueId, heads: i64, size: i64| {
        if !packed {
            return Ok(x);
        }
        let split = rw.reshape(&format!("{step}_split"), x, vec![0, 0, heads, size])?;
        let perm = attrs1("perm", Attr::Ints(vec![0, 2, 1, 3]));
        rw.op(
            &format!("{step}_heads"),
            OpKind::Transpose,
            vec![split],
            perm,
        )
    };
    let q = heads_first(&mut rw, "q", q, qh, d)?;
    let k = heads_first(&mut rw, "k", k, kvh, d)?;
    let v = heads_first(&mut rw, "v", v, kvh, dv)?;
    let group = qh / kvh;
    // Query heads that share a KV head become one taller matrix.
    let qg = if group > 1 {
        rw.reshape("q_grouped", q, vec![0, kvh, -1, d])?
    } else {
        q
    };
    let (qq, q_scale) = rw.quantize_rows("q_", qg)?;
    let (kq, k_scale) = rw.quantize_matrix("k_", k)?;
    let perm = attrs1("perm", Attr::Ints(vec![0, 1, 3, 2]));
    let kt = rw.op("k_t", OpKind::Transpose, vec![kq], perm)?;
    let acc = rw.op(
        "qk_matmul_integer",
        OpKind::MatMulInteger,
        vec![qq, kt],
        Attrs::new(),
    )?;
    let mut s = rw.dequantize("qk_", acc, q_scale, k_scale, Some(scale))?;
    if let Some(b) = bias {
        s = rw.op("masked", OpKind::Add, vec![s, b], Attrs::new())?;
    }
    let y = rw.softmax_matmul("pv_", s, v)?;
    let y = if group > 1 {
        rw.reshape("heads", y, vec![0, qh, -1, 0])?
    } else {
        y
    };
    if !packed {
        return Ok(Some(y));
    }
    let perm = attrs1("perm", Attr::Ints(vec![0, 2, 1, 3]));
    let y = rw.op("y_seq_first", OpKind::Transpose, vec![y], perm)?;
    Ok(Some(rw.reshape("y_packed", y, vec![0, 0, -1])?))
}

/// The additive bias of the mask and the causal frontier, broadcast to
/// `full = [b, heads, q, kv]` and laid out as `[b, kv_heads, group·q, kv]`
/// (host ops: mask construction, once per mask); `None` when its shape is
/// not known well enough yet.
fn attention_bias(
    rw: &mut Rewriter,
    masks: &mut MaskBiases,
    mask: Option<ValueId>,
    causal: bool,
    full: &[Dim; 4],
    kvh: i64,
) -> Result<Option<ValueId>, Diagnostic> {
    let qh = full[1].as_fixed().unwrap_or(0);
    let key = (mask, causal, qh, kvh);
    if let Some(&b) = masks.made.get(&key) {
        return Ok(Some(b));
    }
    let mut bias = match mask {
        Some(m) if rw.b.graph.ty(m).dtype() == DType::Bool => {
            let zero = rw.constant("mask_keep", Tensor::f32(vec![], vec![0.0]));
            let neg = rw.constant("mask_drop", Tensor::f32(vec![], vec![MASKED]));
            Some(rw.op("mask_bias", OpKind::Where, vec![m, zero, neg], Attrs::new())?)
        }
        m => m,
    };
    if causal {
        // Key j is after query i: the op's frontier without a KV cache.
        let (Some(q), Some(kv)) = (full[2].as_fixed(), full[3].as_fixed()) else {
            return Ok(None);
        };
        let (q, kv) = (q as usize, kv as usize);
        let tri = (0..q * kv)
            .map(|i| if i % kv > i / kv { MASKED } else { 0.0 })
            .collect();
        let c = rw.constant("causal", Tensor::f32(vec![q, kv], tri));
        bias = Some(match bias {
            Some(b) => rw.op("mask_causal", OpKind::Add, vec![b, c], Attrs::new())?,
            None => c,
        });
    }
    let Some(mut bias) = bias else {
        return Ok(None);
    };
    // Broadcast to every head (dims already there stay 1 in the target).
    let target: Vec<i64> = full.iter().map(|d| d.as_fixed().unwrap_or(1)).collect();
    let t = rw.constant("mask_shape", Tensor::i64(vec![4], target));
    bias = rw.op("mask_expand", OpKind::Expand, vec![bias, t], Attrs::new())?;
    let ty = rw.b.graph.ty(bias);
    if ty.rank() != 4 || !ty.shape.iter().zip(full).all(|(a, b)| a.same_as(b)) {
        return Ok(None);
    }
    if qh != kvh {
        bias = rw.reshape("mask_grouped", bias, vec![0, kvh, -1, 0])?;
    }
    masks.made.insert(key, bias);
    Ok(Some(bias))
}
