//! Attention (ONNX opset 25: causal and sliding-window masks, KV cache,
//! GQA/MQA, softcap, debug QK output) and RotaryEmbedding (opset 23).

use super::{float_dtype, gemm, real_dispatch, Mat, Real};
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::ops::quant::round_to;
use crate::ops::*;

/// Sizes of one attention call, with K/V heads and the cache resolved. The
/// one definition of the op's geometry: the reference semantics and the
/// backends' kernels both get it from [`attention_dims`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_seq: usize,
    pub kv_seq: usize,
    pub past: usize,
    pub head: usize,
    pub v_head: usize,
    /// Q, K, V are [batch, seq, heads*size] rather than [batch, heads, seq, size].
    pub packed: bool,
}

impl Dims {
    /// Keys seen by each query: the cache plus the new ones.
    pub fn total(&self) -> usize {
        self.past + self.kv_seq
    }
}

/// The head count for a 3-D operand, from its attribute.
fn heads_attr(ctx: &impl AttrAccess, name: &str) -> Result<Option<i64>, String> {
    if ctx.has_attr(name) {
        let h = ctx.int(name)?;
        if h <= 0 {
            return Err(format!("{name} must be positive, got {h}"));
        }
        Ok(Some(h))
    } else {
        Ok(None)
    }
}

/// Splits a packed hidden dim into (heads, size).
fn split_hidden(hidden: usize, heads: usize, what: &str) -> Result<usize, String> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(format!(
            "{what} hidden size {hidden} is not divisible by {heads} heads"
        ));
    }
    Ok(hidden / heads)
}

fn eval_dims(ctx: &EvalCtx) -> Result<Dims, String> {
    let shape = |i: usize| ctx.opt_input(i).map(|t| t.shape.as_slice());
    if ctx.opt_input(6).is_some() && shape(4).is_some() {
        return Err("nonpad_kv_seqlen cannot be combined with past_key/past_value".into());
    }
    attention_dims(
        ctx,
        &ctx.input(0)?.shape,
        &ctx.input(1)?.shape,
        &ctx.input(2)?.shape,
        shape(4),
        shape(5),
    )
}

/// Resolves the geometry of an `attention` op from its attributes and the
/// concrete shapes of Q, K, V and the optional past K/V, checking that they
/// agree.
pub fn attention_dims(
    attrs: &impl AttrAccess,
    q: &[usize],
    k: &[usize],
    v: &[usize],
    past_k: Option<&[usize]>,
    past_v: Option<&[usize]>,
) -> Result<Dims, String> {
    if q.len() != k.len() || q.len() != v.len() {
        return Err("Q, K and V must have the same rank".into());
    }
    let past = past_k;
    if past.is_some() != past_v.is_some() {
        return Err("past_key and past_value must be given together".into());
    }
    let qh = heads_attr(attrs, "q_num_heads")?;
    let kvh = heads_attr(attrs, "kv_num_heads")?;
    let mut d = match q.len() {
        4 => {
            if qh.is_some() || kvh.is_some() {
                return Err("q_num_heads and kv_num_heads must not be set for 4-D inputs".into());
            }
            Dims {
                batch: q[0],
                q_heads: q[1],
                kv_heads: k[1],
                q_seq: q[2],
                kv_seq: k[2],
                past: 0,
                head: q[3],
                v_head: v[3],
                packed: false,
            }
        }
        3 => {
            let (qh, kvh) = match (qh, kvh) {
                (Some(a), Some(b)) => (a as usize, b as usize),
                _ => return Err("3-D inputs need q_num_heads and kv_num_heads".into()),
            };
            let head = split_hidden(q[2], qh, "Q")?;
            if split_hidden(k[2], kvh, "K")? != head {
                return Err("Q and K head sizes differ".into());
            }
            Dims {
                batch: q[0],
                q_heads: qh,
                kv_heads: kvh,
                q_seq: q[1],
                kv_seq: k[1],
                past: 0,
                head,
                v_head: split_hidden(v[2], kvh, "V")?,
                packed: true,
            }
        }
        r => return Err(format!("Q, K and V must be 3-D or 4-D, got rank {r}")),
    };
    let expect_k = if d.packed {
        vec![d.batch, d.kv_seq, d.kv_heads * d.head]
    } else {
        vec![d.batch, d.kv_heads, d.kv_seq, d.head]
    };
    let expect_v = if d.packed {
        vec![d.batch, d.kv_seq, d.kv_heads * d.v_head]
    } else {
        vec![d.batch, d.kv_heads, d.kv_seq, d.v_head]
    };
    if k != expect_k || v != expect_v {
        return Err(format!("K {k:?} / V {v:?} do not match Q {q:?}"));
    }
    if d.kv_heads == 0 || d.q_heads % d.kv_heads != 0 {
        return Err(format!(
            "q heads ({}) must be a multiple of kv heads ({})",
            d.q_heads, d.kv_heads
        ));
    }
    if let (Some(pk), Some(pv)) = (past, past_v) {
        let p = pk.get(2).copied().unwrap_or(0);
        if pk != [d.batch, d.kv_heads, p, d.head] || pv != [d.batch, d.kv_heads, p, d.v_head] {
            return Err(format!(
                "past_key {pk:?} / past_value {pv:?} do not match K/V"
            ));
        }
        d.past = p;
    }
    Ok(d)
}

/// [batch, heads, seq, size] values of a 3-D or 4-D operand.
fn heads_first<R: Real>(t: &Tensor, d: &Dims, heads: usize, seq: usize, size: usize) -> Vec<R> {
    let v = R::load(t);
    if !d.packed {
        return v;
    }
    let mut out = Vec::with_capacity(v.len());
    for b in 0..d.batch {
        for h in 0..heads {
            for s in 0..seq {
                let base = (b * seq + s) * heads * size + h * size;
                out.extend_from_slice(&v[base..base + size]);
            }
        }
    }
    out
}

/// past ++ new along the sequence axis: [batch, heads, past+seq, size].
fn concat_cache<R: Real>(past: Option<&Tensor>, new: Vec<R>, d: &Dims, size: usize) -> Vec<R> {
    let Some(past) = past else { return new };
    let p = R::load(past);
    let (ps, ns) = (d.past * size, d.kv_seq * size);
    let mut out = Vec::with_capacity(p.len() + new.len());
    for bh in 0..d.batch * d.kv_heads {
        out.extend_from_slice(&p[bh * ps..(bh + 1) * ps]);
        out.extend_from_slice(&new[bh * ns..(bh + 1) * ns]);
    }
    out
}

/// The additive attention bias of one (batch, head): `q_seq x total`, from
/// the mask, the causal frontier, the sliding window and the padding.
struct Bias<'a> {
    mask: Option<&'a Tensor>,
    /// Mask strides for [batch, head, q, kv] (0 where broadcast) and its kv length.
    mask_strides: [usize; 4],
    mask_kv: usize,
    causal: bool,
    left: i64,
    right: i64,
    nonpad: Option<Vec<i64>>,
    past: usize,
    q_seq: usize,
}

impl<'a> Bias<'a> {
    fn new(ctx: &EvalCtx<'a>, d: &Dims) -> Result<Bias<'a>, String> {
        let mask = ctx.opt_input(3);
        let target = [d.batch, d.q_heads, d.q_seq, d.total()];
        let (mut mask_strides, mut mask_kv) = ([0; 4], d.total());
        if let Some(m) = mask {
            if m.rank() == 0 || m.rank() > 4 {
                return Err(format!("attn_mask must have rank 1 to 4, got {}", m.rank()));
            }
            if !(m.dtype.is_float() || m.dtype == DType::Bool) {
                return Err(format!("attn_mask must be bool or float, got {}", m.dtype));
            }
            let strides = m.strides();
            let off = 4 - m.rank();
            for (i, (&dim, &st)) in m.shape.iter().zip(&strides).enumerate() {
                let t = target[off + i];
                let last = off + i == 3;
                if dim != 1 && dim != t && !(last && dim < t) {
                    return Err(format!(
                        "attn_mask shape {:?} does not broadcast to {:?}",
                        m.shape, target
                    ));
                }
                mask_strides[off + i] = if dim == 1 && !last { 0 } else { st };
            }
            mask_kv = *m.shape.last().unwrap_or(&1);
        }
        let nonpad = ctx.opt_input(6).map(|t| t.to_i64_vec());
        if let Some(np) = &nonpad {
            if np.len() != d.batch {
                return Err(format!(
                    "nonpad_kv_seqlen has {} values for batch {}",
                    np.len(),
                    d.batch
                ));
            }
        }
        Ok(Bias {
            mask,
            mask_strides,
            mask_kv,
            causal: ctx.int("is_causal")? != 0,
            left: ctx.int("left_window_size")?,
            right: ctx.int("right_window_size")?,
            nonpad,
            past: d.past,
            q_seq: d.q_seq,
        })
    }

    /// Writes the bias of (b, h) into `out` (q_seq x total, row-major).
    fn fill(&self, b: usize, h: usize, out: &mut [f64]) {
        let total = out.len().checked_div(self.q_seq).unwrap_or(0);
        // Valid keys preceding the query block: the internal cache length,
        // or per batch for an external cache (may be negative).
        let offset = match &self.nonpad {
            Some(np) if self.past == 0 => np[b] - self.q_seq as i64,
            _ => self.past as i64,
        };
        for i in 0..self.q_seq {
            let pos = i as i64 + offset;
            for j in 0..total {
                let mut v = 0.0;
                if let Some(m) = self.mask {
                    v = if j >= self.mask_kv {
                        f64::NEG_INFINITY
                    } else {
                        let s = &self.mask_strides;
                        let idx = b * s[0] + h * s[1] + i * s[2] + j * s[3];
                        if m.dtype == DType::Bool {
                            if m.get_f64(idx) != 0.0 {
                                0.0
                            } else {
                                f64::NEG_INFINITY
                            }
                        } else {
                            m.get_f64(idx)
                        }
                    };
                }
                let j = j as i64;
                let excluded = (self.causal && j > pos)
                    || (self.left >= 0 && pos - j > self.left)
                    || (self.right >= 0 && j - pos > self.right)
                    || self.nonpad.as_ref().is_some_and(|np| j >= np[b]);
                if excluded {
                    v += f64::NEG_INFINITY;
                }
                out[i * total + j as usize] = v;
            }
        }
    }
}

fn attention_kernel<R: Real>(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let d = eval_dims(ctx)?;
    let (q_t, k_t, v_t) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let (qdt, vdt) = (q_t.dtype, v_t.dtype);
    let total = d.total();
    let scale = if ctx.has_attr("scale") {
        ctx.float("scale")?
    } else {
        1.0 / (d.head as f64).sqrt()
    };
    // Q and K are each scaled by sqrt(scale) (in the input type) before the
    // product, which keeps the logits in range for narrow types.
    let sqrt_scale = R::of(round_to(qdt, scale.sqrt()));
    let softcap = ctx.float("softcap")?;
    let mode = ctx.int("qk_matmul_output_mode")?;
    if !(0..=3).contains(&mode) {
        return Err(format!("qk_matmul_output_mode must be 0..3, got {mode}"));
    }
    if ctx.int("left_window_size")? < -1 || ctx.int("right_window_size")? < -1 {
        return Err("left_window_size and right_window_size must be -1 or nonnegative".into());
    }

    let q: Vec<R> = heads_first::<R>(q_t, &d, d.q_heads, d.q_seq, d.head)
        .into_iter()
        .map(|x| x * sqrt_scale)
        .collect();
    let present_k = concat_cache(
        ctx.opt_input(4),
        heads_first::<R>(k_t, &d, d.kv_heads, d.kv_seq, d.head),
        &d,
        d.head,
    );
    let present_v = concat_cache(
        ctx.opt_input(5),
        heads_first::<R>(v_t, &d, d.kv_heads, d.kv_seq, d.v_head),
        &d,
        d.v_head,
    );
    let k_scaled: Vec<R> = present_k.iter().map(|&x| x * sqrt_scale).collect();
    let bias = Bias::new(ctx, &d)?;

    let want_qk = ctx.num_results > 3;
    let mut qk_out = vec![
        0f64;
        if want_qk {
            d.batch * d.q_heads * d.q_seq * total
        } else {
            0
        }
    ];
    let mut y = vec![R::ZERO; d.batch * d.q_heads * d.q_seq * d.v_head];
    let group = d.q_heads / d.kv_heads;
    let plane = d.q_seq * total;
    let mut scores = vec![R::ZERO; plane];
    let mut bias_buf = vec![0f64; plane];
    let mut probs = vec![R::ZERO; plane];
    for b in 0..d.batch {
        for h in 0..d.q_heads {
            // GQA: consecutive query heads share a KV head.
            let kvh = h / group;
            let q_off = (b * d.q_heads + h) * d.q_seq * d.head;
            let k_off = (b * d.kv_heads + kvh) * total * d.head;
            gemm(
                &q,
                Mat::dense(q_off, d.q_seq, d.head),
                &k_scaled,
                Mat::dense(k_off, total, d.head).t(),
                R::ZERO,
                &mut scores,
                Mat::dense(0, d.q_seq, total),
            )?;
            let qk_base = (b * d.q_heads + h) * plane;
            if want_qk && mode == 0 {
                qk_out[qk_base..qk_base + plane]
                    .iter_mut()
                    .zip(&scores)
                    .for_each(|(o, s)| *o = s.to_f64());
            }
            if softcap > 0.0 {
                let c = R::of(softcap);
                scores.iter_mut().for_each(|s| *s = c * (*s / c).tanh());
            }
            if want_qk && mode == 1 {
                qk_out[qk_base..qk_base + plane]
                    .iter_mut()
                    .zip(&scores)
                    .for_each(|(o, s)| *o = s.to_f64());
            }
            bias.fill(b, h, &mut bias_buf);
            for i in 0..d.q_seq {
                let row = i * total..(i + 1) * total;
                let mut logits: Vec<f64> = scores[row.clone()]
                    .iter()
                    .zip(&bias_buf[row.clone()])
                    .map(|(s, bb)| s.to_f64() + bb)
                    .collect();
                if want_qk && mode == 2 {
                    qk_out[qk_base + row.start..qk_base + row.end].copy_from_slice(&logits);
                }
                // A row whose bias excludes every key attends nothing: its
                // probabilities (and so its output) are zero, not NaN.
                let fully_masked = bias_buf[row.clone()]
                    .iter()
                    .all(|&x| x == f64::NEG_INFINITY);
                if fully_masked {
                    logits.iter_mut().for_each(|x| *x = 0.0);
                } else {
                    stable_softmax(&mut logits);
                }
                if want_qk && mode == 3 {
                    qk_out[qk_base + row.start..qk_base + row.end].copy_from_slice(&logits);
                }
                for (p, &l) in probs[row].iter_mut().zip(&logits) {
                    *p = R::of(round_to(qdt, l));
                }
            }
            let v_off = (b * d.kv_heads + kvh) * total * d.v_head;
            let y_mat = if d.packed {
                // Written straight into [batch, q_seq, heads*v_head].
                Mat {
                    offset: b * d.q_seq * d.q_heads * d.v_head + h * d.v_head,
                    rows: d.q_seq,
                    cols: d.v_head,
                    row_stride: d.q_heads * d.v_head,
                    col_stride: 1,
                }
            } else {
                Mat::dense((b * d.q_heads + h) * d.q_seq * d.v_head, d.q_seq, d.v_head)
            };
            gemm(
                &probs,
                Mat::dense(0, d.q_seq, total),
                &present_v,
                Mat::dense(v_off, total, d.v_head),
                R::ZERO,
                &mut y,
                y_mat,
            )?;
        }
    }

    let y_shape = if d.packed {
        vec![d.batch, d.q_seq, d.q_heads * d.v_head]
    } else {
        vec![d.batch, d.q_heads, d.q_seq, d.v_head]
    };
    let mut out = vec![R::store(qdt, y_shape, y)];
    if ctx.num_results > 1 {
        out.push(R::store(
            k_t.dtype,
            vec![d.batch, d.kv_heads, total, d.head],
            present_k,
        ));
    }
    if ctx.num_results > 2 {
        out.push(R::store(
            vdt,
            vec![d.batch, d.kv_heads, total, d.v_head],
            present_v,
        ));
    }
    if want_qk {
        out.push(Tensor::from_f64(
            qdt,
            vec![d.batch, d.q_heads, d.q_seq, total],
            &qk_out,
        ));
    }
    Ok(out)
}

/// Softmax of a row with at least one finite-biased entry; a row whose
/// logits are all -inf gives zeros.
// Not softmax_lane on purpose: ONNX Softmax gives NaN for such a lane.
fn stable_softmax(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let max = if max == f64::NEG_INFINITY { 0.0 } else { max };
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum != 0.0 {
        row.iter_mut().for_each(|x| *x /= sum);
    }
}

fn infer_attention(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let (q, k, v) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let qdt = float_dtype(q, "Q")?;
    float_dtype(k, "K")?;
    let vdt = float_dtype(v, "V")?;
    if q.rank() != k.rank() || q.rank() != v.rank() {
        return Err("Q, K and V must have the same rank".into());
    }
    if ctx.opt_input(4).is_some() != ctx.opt_input(5).is_some() {
        return Err("past_key and past_value must be given together".into());
    }
    let (batch, q_heads, kv_heads, q_seq, kv_seq, head, v_head);
    match q.rank() {
        4 => {
            if ctx.has_attr("q_num_heads") || ctx.has_attr("kv_num_heads") {
                return Err("q_num_heads and kv_num_heads must not be set for 4-D inputs".into());
            }
            batch = q.shape[0].clone();
            q_heads = q.shape[1].clone();
            kv_heads = k.shape[1].clone();
            q_seq = q.shape[2].clone();
            kv_seq = k.shape[2].clone();
            head = q.shape[3].clone();
            v_head = v.shape[3].clone();
        }
        3 => {
            let qh = heads_attr(ctx, "q_num_heads")?.ok_or("3-D inputs need q_num_heads")?;
            let kvh = heads_attr(ctx, "kv_num_heads")?.ok_or("3-D inputs need kv_num_heads")?;
            batch = q.shape[0].clone();
            q_heads = Dim::fixed(qh);
            kv_heads = Dim::fixed(kvh);
            q_seq = q.shape[1].clone();
            kv_seq = k.shape[1].clone();
            head = q.shape[2].div_exact(&q_heads);
            v_head = v.shape[2].div_exact(&kv_heads);
        }
        r => return Err(format!("Q, K and V must be 3-D or 4-D, got rank {r}")),
    }
    let past = ctx
        .opt_input(4)
        .map(|p| p.shape.get(2).cloned().unwrap_or(Dim::Unknown));
    let total = match &past {
        Some(p) => p.add(&kv_seq),
        None => kv_seq.clone(),
    };
    let y = if q.rank() == 3 {
        TensorType::new(
            vec![batch.clone(), q_seq.clone(), q_heads.mul(&v_head)],
            qdt,
        )
    } else {
        TensorType::new(
            vec![
                batch.clone(),
                q_heads.clone(),
                q_seq.clone(),
                v_head.clone(),
            ],
            qdt,
        )
    };
    let mut out = vec![
        y,
        TensorType::new(
            vec![batch.clone(), kv_heads.clone(), total.clone(), head],
            k.dtype(),
        ),
        TensorType::new(vec![batch.clone(), kv_heads, total.clone(), v_head], vdt),
        TensorType::new(vec![batch, q_heads, q_seq, total], qdt),
    ];
    out.truncate(ctx.num_results);
    Ok(out)
}

pub static ATTENTION: OpDef = OpDef {
    mnemonic: "attention",
    summary: "Scaled dot-product attention with masks, KV cache and grouped heads",
    operands: &[
        req("q"),
        req("k"),
        req("v"),
        opt("attn_mask"),
        opt("past_key"),
        opt("past_value"),
        opt("nonpad_kv_seqlen"),
    ],
    results: Results::Range(1, 4),
    attrs: &[
        attr("is_causal", AttrKind::Int, Default::Int(0)),
        attr("kv_num_heads", AttrKind::Int, Default::Absent),
        attr("q_num_heads", AttrKind::Int, Default::Absent),
        attr("qk_matmul_output_mode", AttrKind::Int, Default::Int(0)),
        attr("scale", AttrKind::Float, Default::Absent),
        attr("softcap", AttrKind::Float, Default::Float(0.0)),
        attr("softmax_precision", AttrKind::Int, Default::Absent),
        attr("left_window_size", AttrKind::Int, Default::Int(-1)),
        attr("right_window_size", AttrKind::Int, Default::Int(-1)),
    ],
    traits: &[],
    infer: infer_attention,
    eval: Some(|ctx| real_dispatch!(ctx.input(0)?.dtype, attention_kernel(ctx))),
};

pub static ROTARY_EMBEDDING: OpDef = OpDef {
    mnemonic: "rotary_embedding",
    summary: "Rotary position embedding (RoPE) of 3-D [B,S,H*D] or 4-D [B,H,S,D] input",
    operands: &[
        req("x"),
        req("cos_cache"),
        req("sin_cache"),
        opt("position_ids"),
    ],
    results: Results::Fixed(1),
    attrs: &[
        attr("interleaved", AttrKind::Int, Default::Int(0)),
        attr("num_heads", AttrKind::Int, Default::Absent),
        attr("rotary_embedding_dim", AttrKind::Int, Default::Int(0)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        float_dtype(x, "x")?;
        match x.rank() {
            4 => {}
            3 if ctx.has_attr("num_heads") => {}
            3 => return Err("3-D input needs num_heads".into()),
            r => return Err(format!("x must be 3-D or 4-D, got rank {r}")),
        }
        Ok(vec![x.clone()])
    },
    eval: Some(eval_rotary),
};

/// Rotates the pairs of one head vector by the angles whose cosines and sines
/// are `cos` and `sin`: pairs (x[2i], x[2i+1]) when `interleaved`, else
/// (x[i], x[i + half]) with `half = cos.len()`.
pub fn rotate_pairs(x: &mut [f64], cos: &[f64], sin: &[f64], interleaved: bool) {
    let half = cos.len();
    for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
        let (a, b) = if interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        };
        let (x1, x2) = (x[a], x[b]);
        x[a] = x1 * c - x2 * s;
        x[b] = x2 * c + x1 * s;
    }
}

fn eval_rotary(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    let xv = super::float_values(x, "x")?;
    // Element (b, s, h, d) of the input sits at b*bs + s*ss + h*hs + d.
    let (batch, seq, heads, head, strides) = match x.rank() {
        4 => {
            let (b, h, s, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
            (b, s, h, d, [h * s * d, d, s * d])
        }
        3 => {
            let heads =
                usize::try_from(heads_attr(ctx, "num_heads")?.ok_or("3-D input needs num_heads")?)
                    .unwrap_or(0);
            let (b, s, hidden) = (x.shape[0], x.shape[1], x.shape[2]);
            let d = split_hidden(hidden, heads, "x")?;
            (b, s, heads, d, [s * hidden, hidden, d])
        }
        r => return Err(format!("x must be 3-D or 4-D, got rank {r}")),
    };
    let rot = match ctx.int("rotary_embedding_dim")? {
        0 => head,
        r if r > 0 && r as usize <= head && r % 2 == 0 => r as usize,
        r => {
            return Err(format!(
                "rotary_embedding_dim {r} must be even and at most the head size {head}"
            ))
        }
    };
    if rot % 2 != 0 {
        return Err(format!("head size {head} must be even to rotate"));
    }
    let half = rot / 2;
    let (cos_t, sin_t) = (ctx.input(1)?, ctx.input(2)?);
    let cos = super::float_values(cos_t, "cos_cache")?;
    let sin = super::float_values(sin_t, "sin_cache")?;
    if cos_t.shape != sin_t.shape || cos_t.shape.last() != Some(&half) {
        return Err(format!(
            "cos/sin caches {:?}/{:?} must end in rotary_dim/2 = {half}",
            cos_t.shape, sin_t.shape
        ));
    }
    // Row of the caches for each (b, s): by position id, or the caches are [B, S, half].
    let positions = ctx.opt_input(3).map(|p| p.to_i64_vec());
    let cache_row = |b: usize, s: usize| -> Result<usize, String> {
        match &positions {
            Some(p) => {
                let rows = cos_t.shape[0];
                let id = *p
                    .get(b * seq + s)
                    .ok_or("position_ids must have shape [batch, seq]")?;
                usize::try_from(id).ok().filter(|&i| i < rows && cos_t.rank() == 2).ok_or_else(|| {
                    format!("position id {id} is outside the {rows}-row cache (caches must be 2-D with position_ids)")
                })
            }
            None if cos_t.shape == [batch, seq, half] => Ok(b * seq + s),
            None => Err(format!(
                "without position_ids the caches must be [batch, seq, {half}], got {:?}",
                cos_t.shape
            )),
        }
    };
    let interleaved = ctx.int("interleaved")? != 0;
    let mut y = xv;
    for b in 0..batch {
        for s in 0..seq {
            let row = cache_row(b, s)? * half;
            for h in 0..heads {
                let base = b * strides[0] + s * strides[1] + h * strides[2];
                rotate_pairs(
                    &mut y[base..],
                    &cos[row..row + half],
                    &sin[row..row + half],
                    interleaved,
                );
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &y)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::ops::testing;

    fn run(
        def: &'static OpDef,
        inputs: Vec<Option<&Tensor>>,
        attrs: &[(&str, Attr)],
        n: usize,
    ) -> Vec<Tensor> {
        testing::run(def, &inputs, attrs, n).unwrap()
    }

    #[test]
    fn causal_attention_by_hand() {
        // One head, head size 1, scale 1: q = [1, 1], k = [0, ln 3], v = [10, 20].
        let q = Tensor::f32(vec![1, 1, 2, 1], vec![1., 1.]);
        let k = Tensor::f32(vec![1, 1, 2, 1], vec![0., 3f32.ln()]);
        let v = Tensor::f32(vec![1, 1, 2, 1], vec![10., 20.]);
        let out = run(
            &ATTENTION,
            vec![Some(&q), Some(&k), Some(&v)],
            &[("is_causal", Attr::Int(1)), ("scale", Attr::Float(1.0))],
            4,
        );
        // Row 0 sees key 0 only; row 1 weights keys 1:3 -> 0.25*10 + 0.75*20.
        let y = out[0].to_f64_vec();
        assert!(
            (y[0] - 10.0).abs() < 1e-5 && (y[1] - 17.5).abs() < 1e-5,
            "{y:?}"
        );
        // Mode 0 exposes the raw scores, before the causal mask.
        assert!((out[3].to_f64_vec()[1] - 3f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn fully_masked_row_is_zero_and_gqa_shares_heads() {
        // Two query heads over one KV head; the bool mask hides everything from query 0.
        let q = Tensor::f32(vec![1, 2, 2, 1], vec![1., 1., 1., 1.]);
        let k = Tensor::f32(vec![1, 1, 2, 1], vec![0., 0.]);
        let v = Tensor::f32(vec![1, 1, 2, 1], vec![2., 4.]);
        let mask = Tensor::new(
            DType::Bool,
            vec![2, 2],
            crate::tensor::Data::Bool(vec![false, false, true, true]),
        )
        .unwrap();
        let out = run(
            &ATTENTION,
            vec![Some(&q), Some(&k), Some(&v), Some(&mask)],
            &[],
            1,
        );
        assert_eq!(out[0].to_f64_vec(), vec![0., 3., 0., 3.]);
    }

    #[test]
    fn packed_inputs_with_cache_and_window() {
        // 3-D inputs, 1 head, head size 1; past of one key; left window 0 leaves
        // each query only its own position (offset 1).
        let q = Tensor::f32(vec![1, 1, 1], vec![1.]);
        let k = Tensor::f32(vec![1, 1, 1], vec![5.]);
        let v = Tensor::f32(vec![1, 1, 1], vec![7.]);
        let pk = Tensor::f32(vec![1, 1, 1, 1], vec![0.]);
        let pv = Tensor::f32(vec![1, 1, 1, 1], vec![3.]);
        let attrs = [
            ("q_num_heads", Attr::Int(1)),
            ("kv_num_heads", Attr::Int(1)),
            ("left_window_size", Attr::Int(0)),
        ];
        let out = run(
            &ATTENTION,
            vec![Some(&q), Some(&k), Some(&v), None, Some(&pk), Some(&pv)],
            &attrs,
            3,
        );
        assert_eq!(out[0].shape, vec![1, 1, 1]);
        assert_eq!(out[0].to_f64_vec(), vec![7.]);
        assert_eq!(out[1].to_f64_vec(), vec![0., 5.]);
        assert_eq!(out[2].shape, vec![1, 1, 2, 1]);
    }

    #[test]
    fn infer_keeps_symbolic_dims() {
        let (b, s, past) = (Dim::sym("batch"), Dim::sym("seq"), Dim::sym("past"));
        let q = TensorType::new(vec![b.clone(), s.clone(), Dim::fixed(64)], DType::F32);
        let kv = TensorType::new(vec![b.clone(), s.clone(), Dim::fixed(32)], DType::F32);
        let cache = TensorType::new(
            vec![b.clone(), Dim::fixed(2), past.clone(), Dim::fixed(16)],
            DType::F32,
        );
        let attrs: Attrs = [
            ("q_num_heads", Attr::Int(4)),
            ("kv_num_heads", Attr::Int(2)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let ctx = InferCtx {
            def: &ATTENTION,
            attrs: &attrs,
            operands: vec![
                Some(&q),
                Some(&kv),
                Some(&kv),
                None,
                Some(&cache),
                Some(&cache),
            ],
            consts: vec![None; 6],
            syms: vec![None; 6],
            num_results: 4,
        };
        let out = (ATTENTION.infer)(&ctx).unwrap();
        assert_eq!(out[0], q);
        let total = past.add(&s);
        assert_eq!(
            out[1].shape,
            vec![b.clone(), Dim::fixed(2), total.clone(), Dim::fixed(16)]
        );
        assert_eq!(out[3].shape, vec![b, Dim::fixed(4), s, total]);
    }

    #[test]
    fn rotary_rotates_halves_and_pairs() {
        // cos = 0, sin = 1: (x1, x2) -> (-x2, x1).
        let x = Tensor::f32(vec![1, 1, 1, 4], vec![1., 2., 3., 4.]);
        let cos = Tensor::f32(vec![1, 2], vec![0., 0.]);
        let sin = Tensor::f32(vec![1, 2], vec![1., 1.]);
        let pos = Tensor::i64(vec![1, 1], vec![0]);
        let y = run(
            &ROTARY_EMBEDDING,
            vec![Some(&x), Some(&cos), Some(&sin), Some(&pos)],
            &[],
            1,
        );
        assert_eq!(y[0].to_f64_vec(), vec![-3., -4., 1., 2.]);
        let y = run(
            &ROTARY_EMBEDDING,
            vec![Some(&x), Some(&cos), Some(&sin), Some(&pos)],
            &[("interleaved", Attr::Int(1))],
            1,
        );
        assert_eq!(y[0].to_f64_vec(), vec![-2., 1., -4., 3.]);
    }
}
