//! RotaryEmbedding, Attention and GroupQueryAttention of com.microsoft as
//! the core `rotary_embedding` and `attention` (ONNX opset 23+ semantics:
//! packed 3-D heads, GQA, KV cache, causal and sliding-window masks,
//! softcap).
//!
//! What the contrib ops add on top is made explicit: Attention's mask_index
//! forms and its finite `mask_filter_value` become one additive float mask;
//! GroupQueryAttention's per-batch lengths become rotary positions and
//! masks computed at compile time; attention sinks (`head_sink`,
//! `smooth_softmax`) become one extra key of zeros whose logit the mask sets
//! to the sink, so its `exp` joins the softmax denominator and adds nothing
//! to the output.

use super::rewriter::{attrs, Rewriter};
use tessera_ir::{Attr, Attrs, DType, OpKind, Tensor, ValueId};

/// The position ids of a rotary call as i64 `[batch, seq]`.
fn positions_bs(rw: &mut Rewriter, p: ValueId, b: usize, s: usize) -> Result<ValueId, String> {
    let n: usize = rw.shape(p)?.iter().product();
    if n != b * s {
        return Err(format!(
            "position_ids of shape {:?} must be [batch, seq]",
            rw.shape(p)?
        ));
    }
    let p = rw.cast(p, DType::I64)?;
    rw.reshape(p, &[b, s])
}

/// Positions known now must index the caches (the contrib op checks them).
fn check_positions(rw: &Rewriter, p: ValueId, rows: usize) -> Result<(), String> {
    if let Some(t) = rw.constant(p) {
        if let Some(bad) = t
            .to_i64_vec()
            .into_iter()
            .find(|&v| v < 0 || v as usize >= rows)
        {
            return Err(format!("position {bad} is outside the cache of {rows}"));
        }
    }
    Ok(())
}

/// Checked rotary caches: (half width, rows).
fn rotary_caches(
    rw: &Rewriter,
    cos: ValueId,
    sin: ValueId,
    head: usize,
) -> Result<(usize, usize), String> {
    let (cs, ss) = (rw.shape(cos)?, rw.shape(sin)?);
    if cs.len() != 2 || cs != ss {
        return Err(format!(
            "cos_cache and sin_cache must be 2-D of the same shape, got {cs:?} and {ss:?}"
        ));
    }
    let half = cs[1];
    if 2 * half > head || half == 0 {
        return Err(format!(
            "rotary dim {} exceeds the head size {head}",
            2 * half
        ));
    }
    Ok((half, cs[0]))
}

/// Checked rotary caches and how they apply to heads of size `head`.
#[derive(Clone, Copy)]
struct Rope {
    cos: ValueId,
    sin: ValueId,
    head: usize,
    half: usize,
    interleaved: bool,
}

/// The core rotary over `[b, s, heads * head]` (or 4-D) input.
fn core_rotary(
    rw: &mut Rewriter,
    x: ValueId,
    rope: Rope,
    pos: ValueId,
    heads: Option<usize>,
) -> Result<ValueId, String> {
    let rot = if 2 * rope.half == rope.head {
        // 0 rotates the whole head.
        0
    } else {
        2 * rope.half as i64
    };
    let mut a = vec![
        ("interleaved", Attr::Int(rope.interleaved as i64)),
        ("rotary_embedding_dim", Attr::Int(rot)),
    ];
    if let Some(h) = heads {
        a.push(("num_heads", Attr::Int(h as i64)));
    }
    rw.emit(
        OpKind::RotaryEmbedding,
        &[x, rope.cos, rope.sin, pos],
        attrs(&a),
    )
}

pub fn rotary_embedding(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let x = rw.req(0, "input")?;
    let (pids, cos, sin) = (
        rw.req(1, "position_ids")?,
        rw.req(2, "cos_cache")?,
        rw.req(3, "sin_cache")?,
    );
    if !rw.dtype(x).is_float() {
        return Err(format!("input must be a float tensor, got {}", rw.dtype(x)));
    }
    if rw.int("is_packed_batching")? != 0 {
        return Err("packed (ragged) batching is not supported".into());
    }
    let rot_attr = rw.int("rotary_embedding_dim")?.max(0) as usize;
    let half = rw.shape(cos)?.get(1).copied().unwrap_or(0);
    let xs = rw.shape(x)?;
    let (b, s, head, heads) = match xs[..] {
        [b, _, s, h] => (b, s, h, None),
        [b, s, hidden] => {
            let nh = rw.int("num_heads")?.max(0) as usize;
            let head = match hidden.checked_div(nh) {
                Some(h) => h,
                None if rot_attr > 0 => rot_attr,
                None => 2 * half,
            };
            if head == 0 || hidden % head != 0 {
                return Err(format!(
                    "hidden size {hidden} is not a multiple of the head size {head}"
                ));
            }
            (b, s, head, Some(hidden / head))
        }
        _ => return Err(format!("input must be 3-D or 4-D, got {xs:?}")),
    };
    let (half, rows) = rotary_caches(rw, cos, sin, head)?;
    if rot_attr > 0 && rot_attr != 2 * half {
        return Err(format!(
            "rotary_embedding_dim {rot_attr} differs from the cache width {}",
            2 * half
        ));
    }
    check_positions(rw, pids, rows)?;
    let pos = if rw.shape(pids)?.iter().product::<usize>() == 1 {
        // One offset: token i of every sequence is at offset + i.
        let p0 = rw.as_scalar(pids, "position_ids", DType::I64)?;
        let steps: Vec<i64> = (0..s as i64).collect();
        let steps = rw.i64s(&[1, s], &steps);
        let p = rw.bin(OpKind::Add, steps, p0)?;
        let shape = rw.vec_i64(&[b as i64, s as i64]);
        rw.bin(OpKind::Expand, p, shape)?
    } else {
        positions_bs(rw, pids, b, s)?
    };
    let rope = Rope {
        cos,
        sin,
        head,
        half,
        interleaved: rw.int("interleaved")? != 0,
    };
    Ok(vec![core_rotary(rw, x, rope, pos, heads)?])
}

/// Attention's `mask_index` as "masked" booleans `[b, 1, s or 1, t]`:
/// raw 0/1 masks `[b, t]` or `[b, s, t]`, right-padding lengths `[b]`, or
/// end/start positions `[2b]`.
fn mask_index(
    rw: &mut Rewriter,
    m: ValueId,
    b: usize,
    s: usize,
    t: usize,
) -> Result<ValueId, String> {
    let ms = rw.shape(m)?;
    let dt = rw.dtype(m);
    if !dt.is_int() {
        return Err(format!("mask_index must be an integer tensor, got {dt}"));
    }
    let keys = |rw: &mut Rewriter| {
        let j: Vec<i64> = (0..t as i64).collect();
        rw.tensor(Tensor::from_i64(dt, vec![1, t], &j))
    };
    let (masked, rows) = match ms[..] {
        [bb, tt] if bb == b && tt == t => {
            let zero = rw.tensor(Tensor::from_i64(dt, vec![], &[0]));
            (rw.bin(OpKind::Equal, m, zero)?, 1)
        }
        [bb, ss, tt] if bb == b && ss == s && tt == t => {
            let zero = rw.tensor(Tensor::from_i64(dt, vec![], &[0]));
            (rw.bin(OpKind::Equal, m, zero)?, s)
        }
        [n] if n == b => {
            let j = keys(rw);
            let end = rw.reshape(m, &[b, 1])?;
            (rw.bin(OpKind::GreaterOrEqual, j, end)?, 1)
        }
        [n] if n == 2 * b => {
            let j = keys(rw);
            let halves = rw.split(m, 0, &[b, b])?;
            let end = rw.reshape(halves[0], &[b, 1])?;
            let start = rw.reshape(halves[1], &[b, 1])?;
            let after = rw.bin(OpKind::GreaterOrEqual, j, end)?;
            let before = rw.bin(OpKind::Less, j, start)?;
            (rw.bin(OpKind::Or, after, before)?, 1)
        }
        _ => {
            return Err(format!(
                "mask_index of shape {ms:?} is not supported (use [B, T], [B, S, T], [B] or [2B])"
            ))
        }
    };
    rw.reshape(masked, &[b, 1, rows, t])
}

/// `[1, 1, s, t]` booleans: key j is after query i (whose position is past + i).
fn future_keys(rw: &mut Rewriter, s: usize, t: usize, past: usize) -> ValueId {
    let v: Vec<i64> = (0..s)
        .flat_map(|i| (0..t).map(move |j| (j > past + i) as i64))
        .collect();
    rw.tensor(Tensor::from_i64(DType::Bool, vec![1, 1, s, t], &v))
}

/// Checks an attention bias `[b or 1, heads or 1, s, any]`; returns its last dim.
fn check_bias(
    rw: &Rewriter,
    bias: ValueId,
    b: usize,
    heads: usize,
    s: usize,
) -> Result<usize, String> {
    let bs = rw.shape(bias)?;
    match bs[..] {
        [bb, hh, ss, tt] if (bb == 1 || bb == b) && (hh == 1 || hh == heads) && ss == s => Ok(tt),
        _ => Err(format!(
            "attention_bias must be [B or 1, N or 1, {s}, total], got {bs:?}"
        )),
    }
}

/// The contrib ops read `scale` as the model's f32.
fn scale_attr(scale: f64) -> (&'static str, Attr) {
    ("scale", Attr::Float(scale as f32 as f64))
}

pub fn attention(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let (x, w) = (rw.req(0, "input")?, rw.req(1, "weights")?);
    let dt = rw.dtype(x);
    if !dt.is_float() {
        return Err(format!("input must be a float tensor, got {dt}"));
    }
    let (xs, ws) = (rw.shape(x)?, rw.shape(w)?);
    if xs.len() != 3 || ws.len() != 2 || ws[0] != xs[2] {
        return Err(format!(
            "input [B, S, H] and weights [H, 3H'] do not match: {xs:?} and {ws:?}"
        ));
    }
    if rw.int("do_rotary")? != 0 || rw.int("past_present_share_buffer")? != 0 {
        return Err("do_rotary and past_present_share_buffer are not supported".into());
    }
    let (b, s, ncols) = (xs[0], xs[1], ws[1]);
    let nh = rw.int("num_heads")?;
    let (hq, hk, hv) = if rw.has_attr("qkv_hidden_sizes") {
        let v = rw.ints("qkv_hidden_sizes")?;
        if v.len() != 3 || v.iter().any(|&d| d <= 0) || v.iter().sum::<i64>() != ncols as i64 {
            return Err(format!(
                "qkv_hidden_sizes {v:?} must be 3 positive sizes adding up to the weights' {ncols}"
            ));
        }
        (v[0] as usize, v[1] as usize, v[2] as usize)
    } else if ncols % 3 == 0 {
        (ncols / 3, ncols / 3, ncols / 3)
    } else {
        return Err(format!(
            "weights width {ncols} does not split into Q, K and V evenly"
        ));
    };
    if nh <= 0 || hq % nh as usize != 0 || hk != hq || hv % nh as usize != 0 {
        return Err(format!(
            "hidden sizes ({hq}, {hk}, {hv}) must divide by num_heads {nh} (and q, k agree)"
        ));
    }
    let nh = nh as usize;
    let (hd, hdv) = (hq / nh, hv / nh);

    let mut proj = rw.bin(OpKind::MatMul, x, w)?;
    if let Some(bias) = rw.opt(2) {
        if rw.shape(bias)?.iter().product::<usize>() != ncols {
            return Err(format!(
                "bias must have {ncols} elements, got shape {:?}",
                rw.shape(bias)?
            ));
        }
        let bias = rw.reshape(bias, &[ncols])?;
        proj = rw.bin(OpKind::Add, proj, bias)?;
    }
    let qkv = rw.split(proj, 2, &[hq, hk, hv])?;

    let (past, p) = match rw.opt(4) {
        Some(pt) => {
            let ps = rw.shape(pt)?;
            if ps.len() != 5 || ps[0] != 2 || ps[1] != b || ps[2] != nh || ps[4] != hd || hdv != hd
            {
                return Err(format!(
                    "past must be [2, {b}, {nh}, past, {hd}], got {ps:?}"
                ));
            }
            let halves = rw.split(pt, 0, &[1, 1])?;
            let k = rw.reshape(halves[0], &[b, nh, ps[3], hd])?;
            let v = rw.reshape(halves[1], &[b, nh, ps[3], hd])?;
            (Some((k, v)), ps[3])
        }
        None => (None, 0),
    };
    let t = p + s;

    // onnxruntime sets (does not add) the finite filter value at masked or
    // future keys, then adds the attention bias.
    let mut masked = match rw.opt(3) {
        Some(m) => Some(mask_index(rw, m, b, s, t)?),
        None => None,
    };
    if rw.int("unidirectional")? != 0 {
        let future = future_keys(rw, s, t, p);
        masked = Some(match masked {
            Some(m) => rw.bin(OpKind::Or, m, future)?,
            None => future,
        });
    }
    let mut mask = match masked {
        Some(m) => {
            let filter = rw.float("mask_filter_value")? as f32 as f64;
            let (f, zero) = (rw.scalar(dt, filter), rw.scalar(dt, 0.0));
            Some(rw.emit(OpKind::Where, &[m, f, zero], Attrs::new())?)
        }
        None => None,
    };
    if let Some(bias) = rw.opt(5) {
        if check_bias(rw, bias, b, nh, s)? != t {
            return Err(format!("attention_bias must end in the total length {t}"));
        }
        mask = Some(match mask {
            Some(m) => rw.bin(OpKind::Add, m, bias)?,
            None => bias,
        });
    }

    let mut a = vec![
        ("q_num_heads", Attr::Int(nh as i64)),
        ("kv_num_heads", Attr::Int(nh as i64)),
    ];
    if rw.has_attr("scale") {
        a.push(scale_attr(rw.float("scale")?));
    }
    let want_present = rw.results() > 1;
    let outs = rw.emit_n(
        OpKind::Attention,
        &[
            Some(qkv[0]),
            Some(qkv[1]),
            Some(qkv[2]),
            mask,
            past.map(|p| p.0),
            past.map(|p| p.1),
        ],
        attrs(&a),
        if want_present { 3 } else { 1 },
    )?;
    let mut res = vec![outs[0]];
    if want_present {
        if hd != hdv {
            return Err("present needs equal key and value head sizes".into());
        }
        let k = rw.reshape(outs[1], &[1, b, nh, t, hd])?;
        let v = rw.reshape(outs[2], &[1, b, nh, t, hd])?;
        res.push(rw.concat(&[k, v], 0)?);
    }
    Ok(res)
}

/// A GroupQueryAttention call's sizes, once its lengths are known.
struct Gqa {
    b: usize,
    s: usize,
    heads: usize,
    kv_heads: usize,
    head: usize,
    /// Rows of the past cache, which every batch entry continues.
    past: usize,
    /// Valid keys of each batch entry (`seqlens_k + 1`).
    totals: Vec<usize>,
    first_prompt: bool,
}

fn const_ints(rw: &Rewriter, i: usize, name: &str) -> Result<Vec<i64>, String> {
    let v = rw.req(i, name)?;
    rw.constant(v).map(|t| t.to_i64_vec()).ok_or_else(|| {
        format!(
            "{name} must be known when compiling (the cpu target binds it from the run's inputs)"
        )
    })
}

/// The lengths of each batch entry, as onnxruntime derives them, restricted
/// to caches laid out as `past ++ new` for every entry (the core attention's
/// KV cache): a shared buffer longer than that is an error.
fn gqa_lengths(rw: &Rewriter, g: &mut Gqa, past_len: usize) -> Result<usize, String> {
    let seqlens = const_ints(rw, 5, "seqlens_k")?;
    if seqlens.len() != g.b {
        return Err(format!("seqlens_k must have {} values", g.b));
    }
    let total = *const_ints(rw, 6, "total_sequence_length")?
        .first()
        .ok_or("total_sequence_length is empty")?;
    let total = usize::try_from(total).map_err(|_| "negative total_sequence_length")?;
    let present_len = past_len.max(total);
    g.first_prompt = total == g.s;
    for &sk in &seqlens {
        let tot = usize::try_from(sk + 1).map_err(|_| "negative seqlens_k")?;
        let past = if g.first_prompt {
            0
        } else {
            tot.checked_sub(g.s)
                .ok_or("seqlens_k is shorter than the new tokens")?
        };
        if past + g.s > present_len {
            return Err(format!(
                "seqlens_k {sk} exceeds the present length {present_len}"
            ));
        }
        if past != past_len || present_len != past_len + g.s {
            return Err(format!(
                "a KV cache that is not past ++ new tokens for every batch entry is not supported \
                 (past length {past_len}, entry past {past}, present length {present_len})"
            ));
        }
        g.totals.push(tot);
    }
    Ok(present_len)
}

/// `[b, s]` rotary positions: each entry continues its past; padding tokens
/// of a first prompt take position 1, as in onnxruntime.
fn gqa_positions(g: &Gqa) -> Vec<i64> {
    (0..g.b)
        .flat_map(|bi| {
            (0..g.s).map(move |si| {
                if g.first_prompt && si >= g.totals[bi] {
                    1
                } else {
                    (g.past + si) as i64
                }
            })
        })
        .collect()
}

/// `[b, s, heads * head]` as `[b, heads, s, head]`.
fn heads_first(rw: &mut Rewriter, x: ValueId, g: &Gqa, heads: usize) -> Result<ValueId, String> {
    let x = rw.reshape(x, &[g.b, g.s, heads, g.head])?;
    rw.emit(
        OpKind::Transpose,
        &[x],
        attrs(&[("perm", Attr::Ints(vec![0, 2, 1, 3]))]),
    )
}

pub fn group_query_attention(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let q = rw.req(0, "query")?;
    let dt = rw.dtype(q);
    if !dt.is_float() {
        return Err(format!("query must be a float tensor, got {dt}"));
    }
    for (i, what) in [
        (12, "k_scale"),
        (13, "v_scale"),
        (14, "q_norm_weight"),
        (15, "k_norm_weight"),
    ] {
        if rw.opt(i).is_some() {
            return Err(format!(
                "{what} (quantized cache / QK norm) is not supported"
            ));
        }
    }
    if rw.int("sliding_window_cache")? != 0 || rw.int("qk_output")? != 0 || rw.results() > 3 {
        return Err("sliding_window_cache and output_qk are not supported".into());
    }
    let qs = rw.shape(q)?;
    let [b, s, width] = qs[..] else {
        return Err(format!("query must be [batch, seq, hidden], got {qs:?}"));
    };
    let (nh, kvh) = (rw.int("num_heads")?, rw.int("kv_num_heads")?);
    if nh <= 0 || kvh <= 0 || nh % kvh != 0 {
        return Err(format!(
            "num_heads {nh} must be a positive multiple of kv_num_heads {kvh}"
        ));
    }
    let (nh, kvh) = (nh as usize, kvh as usize);
    let packed = rw.opt(1).is_none();
    let head = width / if packed { nh + 2 * kvh } else { nh };
    let (q, k, v) = if packed {
        if width != (nh + 2 * kvh) * head || head == 0 {
            return Err(format!(
                "packed QKV width {width} must be (num_heads + 2 kv_num_heads) * head_size"
            ));
        }
        let p = rw.split(q, 2, &[nh * head, kvh * head, kvh * head])?;
        (p[0], p[1], p[2])
    } else {
        let k = rw.req(1, "key")?;
        let v = rw.opt(2).ok_or("value is required with key")?;
        let kv = [b, s, kvh * head];
        if width != nh * head || head == 0 || rw.shape(k)? != kv || rw.shape(v)? != kv {
            return Err(format!(
                "query {qs:?}, key {:?}, value {:?} do not match the head counts",
                rw.shape(k)?,
                rw.shape(v)?
            ));
        }
        (q, k, v)
    };
    let past = match (rw.opt(3), rw.opt(4)) {
        (Some(pk), Some(pv)) => {
            let ps = rw.shape(pk)?;
            if rw.dtype(pk) != dt
                || ps.len() != 4
                || rw.shape(pv)? != ps
                || ps[0] != b
                || ps[1] != kvh
                || ps[3] != head
            {
                return Err(format!(
                    "past_key/past_value must be {dt} [{b}, {kvh}, past, {head}], got {ps:?}"
                ));
            }
            Some((pk, pv, ps[2]))
        }
        (None, None) => None,
        _ => return Err("past_key and past_value go together".into()),
    };
    let mut g = Gqa {
        b,
        s,
        heads: nh,
        kv_heads: kvh,
        head,
        past: past.map_or(0, |p| p.2),
        totals: Vec::with_capacity(b),
        first_prompt: false,
    };
    let past_len = g.past;
    let t = gqa_lengths(rw, &mut g, past_len)?;

    let (mut q, mut k) = (q, k);
    if rw.int("do_rotary")? != 0 {
        let (cos, sin) = (rw.req(7, "cos_cache")?, rw.req(8, "sin_cache")?);
        let (half, rows) = rotary_caches(rw, cos, sin, head)?;
        let pos = match rw.opt(9) {
            Some(p) => positions_bs(rw, p, b, s)?,
            None => {
                let p = gqa_positions(&g);
                rw.i64s(&[b, s], &p)
            }
        };
        check_positions(rw, pos, rows)?;
        let rope = Rope {
            cos,
            sin,
            head,
            half,
            interleaved: rw.int("rotary_interleaved")? != 0,
        };
        q = core_rotary(rw, q, rope, pos, Some(nh))?;
        k = core_rotary(rw, k, rope, pos, Some(kvh))?;
    }

    let causal = rw.int("causal")? != 0;
    let window = rw.int("local_window_size")?;
    let sinks = match (rw.opt(11), rw.int("smooth_softmax")?) {
        (Some(h), _) => {
            if rw.shape(h)?.iter().product::<usize>() != nh {
                return Err(format!(
                    "head_sink must have {nh} elements, got {:?}",
                    rw.shape(h)?
                ));
            }
            let h = rw.cast(h, dt)?;
            Some(rw.reshape(h, &[1, nh, 1, 1])?)
        }
        (None, 1) => Some(rw.tensor(Tensor::from_f64(dt, vec![1, nh, 1, 1], &vec![0.0; nh]))),
        _ => None,
    };
    // The attention bias covers the first `tt` keys; the others get none.
    let bias = match rw.opt(10) {
        Some(bias) => {
            let tt = check_bias(rw, bias, b, nh, s)?;
            Some(if tt < t {
                let pads = rw.vec_i64(&[0, 0, 0, 0, 0, 0, 0, (t - tt) as i64]);
                rw.bin(OpKind::Pad, bias, pads)?
            } else if tt > t {
                let (st, en, ax) = (rw.vec_i64(&[0]), rw.vec_i64(&[t as i64]), rw.vec_i64(&[3]));
                rw.emit(OpKind::Slice, &[bias, st, en, ax], Attrs::new())?
            } else {
                bias
            })
        }
        None => None,
    };
    let mut a = Vec::new();
    let scale = rw.float("scale")?;
    if scale != 0.0 {
        a.push(scale_attr(scale));
    }
    let softcap = rw.float("softcap")?;
    if softcap > 0.0 {
        a.push(("softcap", Attr::Float(softcap as f32 as f64)));
    }
    // Keys a query may see: causal up to its own position, otherwise every
    // valid key of its entry; a local window keeps the `window` most recent.
    let visible = |bi: usize, i: usize, j: usize| -> bool {
        let qpos = g.past + i;
        let end = if causal { qpos + 1 } else { g.totals[bi] };
        let start = if window > 0 {
            (qpos + 1).saturating_sub(window as usize)
        } else {
            0
        };
        j < end && j >= start
    };
    let padded = !causal && g.totals.iter().any(|&tot| tot < t);

    let n = rw.results();
    if let Some(sinks) = sinks {
        // Explicit masks over the present keys plus one sink key of zeros.
        let mb = if padded { b } else { 1 };
        let base: Vec<f64> = (0..mb)
            .flat_map(|bi| (0..s).flat_map(move |i| (0..t).map(move |j| (bi, i, j))))
            .map(|(bi, i, j)| {
                if visible(bi, i, j) {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let mut mask = rw.tensor(Tensor::from_f64(dt, vec![mb, 1, s, t], &base));
        if let Some(bias) = bias {
            mask = rw.bin(OpKind::Add, mask, bias)?;
        }
        let mb = rw.shape(mask)?[0];
        let full = rw.vec_i64(&[mb as i64, nh as i64, s as i64, t as i64]);
        let mask = rw.bin(OpKind::Expand, mask, full)?;
        let col = rw.vec_i64(&[mb as i64, nh as i64, s as i64, 1]);
        let sink_col = rw.bin(OpKind::Expand, sinks, col)?;
        let mask = rw.concat(&[mask, sink_col], 3)?;

        let q4 = heads_first(rw, q, &g, g.heads)?;
        let mut kv = Vec::new();
        for (new, old) in [(k, past.map(|p| p.0)), (v, past.map(|p| p.1))] {
            let new = heads_first(rw, new, &g, g.kv_heads)?;
            kv.push(match old {
                Some(old) => rw.concat(&[old, new], 2)?,
                None => new,
            });
        }
        let zeros = rw.tensor(Tensor::from_f64(
            dt,
            vec![b, kvh, 1, head],
            &vec![0.0; b * kvh * head],
        ));
        let k_ext = rw.concat(&[kv[0], zeros], 2)?;
        let v_ext = rw.concat(&[kv[1], zeros], 2)?;
        let y4 = rw.emit(OpKind::Attention, &[q4, k_ext, v_ext, mask], attrs(&a))?;
        let y = rw.emit(
            OpKind::Transpose,
            &[y4],
            attrs(&[("perm", Attr::Ints(vec![0, 2, 1, 3]))]),
        )?;
        let y = rw.reshape(y, &[b, s, nh * head])?;
        let mut outs = vec![y];
        outs.extend(kv.into_iter().take(n - 1));
        return Ok(outs);
    }

    a.push(("q_num_heads", Attr::Int(nh as i64)));
    a.push(("kv_num_heads", Attr::Int(kvh as i64)));
    if causal {
        a.push(("is_causal", Attr::Int(1)));
    }
    if window > 0 {
        a.push(("left_window_size", Attr::Int(window - 1)));
    }
    let mut mask = bias;
    if padded {
        let totals = &g.totals;
        let keep: Vec<i64> = (0..b)
            .flat_map(|bi| (0..t).map(move |j| (j < totals[bi]) as i64))
            .collect();
        let keep = rw.tensor(Tensor::from_i64(DType::Bool, vec![b, 1, 1, t], &keep));
        mask = Some(match mask {
            Some(bias) => {
                let (zero, ninf) = (rw.scalar(dt, 0.0), rw.scalar(dt, f64::NEG_INFINITY));
                let m = rw.emit(OpKind::Where, &[keep, zero, ninf], Attrs::new())?;
                rw.bin(OpKind::Add, m, bias)?
            }
            None => keep,
        });
    }
    rw.emit_n(
        OpKind::Attention,
        &[
            Some(q),
            Some(k),
            Some(v),
            mask,
            past.map(|p| p.0),
            past.map(|p| p.1),
        ],
        attrs(&a),
        n,
    )
}
