//! com.microsoft ops that onnxruntime's exporters, fusers and quantizers emit
//! (mnemonics `ms.<snake_case>`), plus onnxruntime's SimplifiedLayerNormalization,
//! which onnxruntime registers in the default domain (it is an onnxruntime op
//! all the same, so it is `ms.simplified_layer_normalization`). Semantics follow
//! onnxruntime's CPU kernels. Float math runs in f64 and is rounded once to the
//! result type.

use super::elementwise::{gelu_erf, gelu_tanh};
use super::linalg::GemmElem;
use super::nn::attention::rotate_pairs;
use super::quant::{
    dynamic_qparams_u8, eval_dequantize, eval_quantize, matmul_i32, sub_zero_point,
};
use super::util::{broadcast_all, broadcast_index_map, broadcast_shapes, infer_same, norm_axis};
use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;

// ---------------------------------------------------------------------------
// Shared numerics
// ---------------------------------------------------------------------------

fn check_float(name: &str, t: &Tensor) -> Result<(), String> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("{name} must be a float tensor, got {}", t.dtype))
    }
}

/// `a + b` broadcast, in f64, with the result shape.
fn add_broadcast(
    a: &[f64],
    ash: &[usize],
    b: &[f64],
    bsh: &[usize],
) -> Result<(Vec<f64>, Vec<usize>), String> {
    let shape = broadcast_shapes(ash, bsh)?;
    let (ia, ib) = (
        broadcast_index_map(ash, &shape),
        broadcast_index_map(bsh, &shape),
    );
    Ok((
        ia.iter().zip(&ib).map(|(&i, &j)| a[i] + b[j]).collect(),
        shape,
    ))
}

/// Row-major `[m, k] @ [k, n]` through the shared GEMM kernel.
fn matmul_rows<T: GemmElem>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut out = vec![T::default(); m * n];
    T::gemm(
        m,
        k,
        n,
        T::one(),
        a,
        (k, 1),
        b,
        (n, 1),
        T::default(),
        &mut out,
    );
    out
}

fn last_dim(t: &Tensor) -> Result<usize, String> {
    t.shape
        .last()
        .copied()
        .ok_or_else(|| "expects a tensor of rank >= 1".to_string())
}

fn expect_len(name: &str, t: &Tensor, n: usize) -> Result<(), String> {
    if t.len() != n {
        return Err(format!(
            "{name} must have {n} elements, got shape {:?}",
            t.shape
        ));
    }
    Ok(())
}

fn opt_f64(t: Option<&Tensor>) -> Option<Vec<f64>> {
    t.map(Tensor::to_f64_vec)
}

/// Softmax of `row[lo..hi]` in place (the rest set to 0). `sink` adds
/// `exp(sink)` to the denominator (smooth softmax / attention sinks).
// Not nn::softmax::softmax_lane on purpose: a row with no finite mass gives zeros, not NaN.
fn softmax_range(row: &mut [f64], lo: usize, hi: usize, sink: Option<f64>) {
    let mut mx = row[lo..hi]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some(s) = sink {
        mx = mx.max(s);
    }
    let mut sum = sink.map_or(0.0, |s| (s - mx).exp());
    for v in &mut row[lo..hi] {
        *v = (*v - mx).exp();
        sum += *v;
    }
    for (j, v) in row.iter_mut().enumerate() {
        *v = if j >= lo && j < hi && sum > 0.0 {
            *v / sum
        } else {
            0.0
        };
    }
}

// ---------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------

/// A float unary activation of the ms domain.
macro_rules! ms_unary {
    ($name:ident, $mn:literal, $summary:literal, $attrs:expr, |$ctx:ident, $x:ident| $f:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("x")],
            results: Results::Fixed(1),
            attrs: $attrs,
            traits: &[Trait::Elementwise],
            infer: infer_same,
            eval: Some(|$ctx| {
                let t = $ctx.input(0)?;
                check_float("x", t)?;
                let v: Vec<f64> = t.to_f64_vec().into_iter().map(|$x| $f).collect();
                Ok(vec![Tensor::from_f64(t.dtype, t.shape.clone(), &v)])
            }),
        };
    };
}

ms_unary!(
    GELU,
    "ms.gelu",
    "GELU with erf: 0.5 x (1 + erf(x / sqrt(2)))",
    &[],
    |_ctx, x| gelu_erf(x)
);

pub static QUICK_GELU: OpDef = OpDef {
    mnemonic: "ms.quick_gelu",
    summary: "x * sigmoid(alpha * x)",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[attr("alpha", AttrKind::Float, Default::Float(1.702))],
    traits: &[Trait::Elementwise],
    infer: infer_same,
    eval: Some(|ctx| {
        let t = ctx.input(0)?;
        check_float("x", t)?;
        // The attribute is an f32 in the model.
        let alpha = ctx.float("alpha")? as f32 as f64;
        let v: Vec<f64> = t
            .to_f64_vec()
            .into_iter()
            .map(|x| x / (1.0 + (-alpha * x).exp()))
            .collect();
        Ok(vec![Tensor::from_f64(t.dtype, t.shape.clone(), &v)])
    }),
};

/// `f(x + bias)` with the bias broadcast (BiasGelu, FastGelu).
fn eval_biased(x: &Tensor, bias: Option<&Tensor>, f: fn(f64) -> f64) -> Result<Tensor, String> {
    check_float("x", x)?;
    let xs = x.to_f64_vec();
    let (v, shape) = match bias {
        Some(b) => add_broadcast(&xs, &x.shape, &b.to_f64_vec(), &b.shape)?,
        None => (xs, x.shape.clone()),
    };
    let v: Vec<f64> = v.into_iter().map(f).collect();
    Ok(Tensor::from_f64(x.dtype, shape, &v))
}

pub static BIAS_GELU: OpDef = OpDef {
    mnemonic: "ms.bias_gelu",
    summary: "Exact GELU of a + bias",
    operands: &[req("a"), req("b")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| util::infer_broadcast(ctx, None),
    eval: Some(|ctx| {
        Ok(vec![eval_biased(
            ctx.input(0)?,
            Some(ctx.input(1)?),
            gelu_erf,
        )?])
    }),
};

pub static FAST_GELU: OpDef = OpDef {
    mnemonic: "ms.fast_gelu",
    summary: "tanh-approximated GELU of x (+ optional bias)",
    operands: &[req("x"), opt("bias")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| util::infer_broadcast(ctx, None),
    eval: Some(|ctx| {
        Ok(vec![eval_biased(
            ctx.input(0)?,
            ctx.opt_input(1),
            gelu_tanh,
        )?])
    }),
};

pub static BIAS_ADD: OpDef = OpDef {
    mnemonic: "ms.bias_add",
    summary: "x + bias + skip (bias over the channel dim)",
    operands: &[req("x"), req("bias"), req("skip")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| util::infer_broadcast(ctx, None),
    eval: Some(|ctx| {
        let (x, b, s) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        check_float("x", x)?;
        let (xb, sh) = add_broadcast(&x.to_f64_vec(), &x.shape, &b.to_f64_vec(), &b.shape)?;
        // onnxruntime rounds x + bias to the element type before adding skip.
        let xb: Vec<f64> = xb
            .into_iter()
            .map(|v| super::quant::round_to(x.dtype, v))
            .collect();
        let (v, sh) = add_broadcast(&xb, &sh, &s.to_f64_vec(), &s.shape)?;
        Ok(vec![Tensor::from_f64(x.dtype, sh, &v)])
    }),
};

// ---------------------------------------------------------------------------
// Layer normalizations
// ---------------------------------------------------------------------------

/// Normalizes each row of `h` values in place; returns (mean, 1/std) per row.
/// `simplified` is RMSNorm (no mean subtraction, no beta).
// Not nn::norm's moments/normalize_chunks: the RMS form and cyclic gamma/beta differ.
fn normalize_rows(
    v: &mut [f64],
    h: usize,
    eps: f64,
    gamma: &[f64],
    beta: Option<&[f64]>,
    simplified: bool,
) -> (Vec<f64>, Vec<f64>) {
    let rows = v.len().checked_div(h).unwrap_or(0);
    let (mut means, mut inv) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for row in v.chunks_mut(h.max(1)).take(rows) {
        let mean = if simplified {
            0.0
        } else {
            row.iter().sum::<f64>() / h as f64
        };
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / h as f64;
        let r = 1.0 / (var + eps).sqrt();
        for (i, x) in row.iter_mut().enumerate() {
            *x = (*x - mean) * r * gamma[i % gamma.len()] + beta.map_or(0.0, |b| b[i % b.len()]);
        }
        means.push(mean);
        inv.push(r);
    }
    (means, inv)
}

/// Shape of per-row statistics: the input's with the last dim set to 1.
fn stat_dims(shape: &[Dim]) -> Vec<Dim> {
    let mut s = shape.to_vec();
    if let Some(l) = s.last_mut() {
        *l = Dim::fixed(1);
    }
    s
}

fn infer_skip_norm(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    let stats = TensorType::new(stat_dims(&x.shape), DType::F32);
    let all = [x.clone(), stats.clone(), stats, x.clone()];
    Ok(all[..ctx.num_results.min(4)].to_vec())
}

/// SkipLayerNormalization / SkipSimplifiedLayerNormalization: normalize
/// input + skip (+ bias) over the last dim. `beta_at` is the beta operand's
/// index (None for the simplified form) and `bias_at` the bias's.
fn eval_skip_norm(
    ctx: &EvalCtx,
    beta_at: Option<usize>,
    bias_at: usize,
    simplified: bool,
) -> Result<Vec<Tensor>, String> {
    let (x, skip, gamma) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    check_float("input", x)?;
    let h = last_dim(x)?;
    if skip.is_empty() || !x.len().is_multiple_of(skip.len()) || last_dim(skip)? != h {
        return Err(format!(
            "skip of shape {:?} does not match input {:?}",
            skip.shape, x.shape
        ));
    }
    expect_len("gamma", gamma, h)?;
    let beta = beta_at.and_then(|i| ctx.opt_input(i));
    let bias = ctx.opt_input(bias_at);
    for (n, t) in [("beta", beta), ("bias", bias)] {
        if let Some(t) = t {
            expect_len(n, t, h)?;
        }
    }
    // skip is [B,S,H], [1,S,H] or [S,H]: it repeats over the batch.
    let (xs, ss) = (x.to_f64_vec(), skip.to_f64_vec());
    let bs = opt_f64(bias);
    let mut sum: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            super::quant::round_to(
                x.dtype,
                v + ss[i % ss.len()] + bs.as_ref().map_or(0.0, |b| b[i % h]),
            )
        })
        .collect();
    let summed = sum.clone();
    let (means, inv) = normalize_rows(
        &mut sum,
        h,
        ctx.float("epsilon")? as f32 as f64,
        &gamma.to_f64_vec(),
        opt_f64(beta).as_deref(),
        simplified,
    );
    let mut stat_shape = x.shape.clone();
    if let Some(l) = stat_shape.last_mut() {
        *l = 1;
    }
    let outs = [
        Tensor::from_f64(x.dtype, x.shape.clone(), &sum),
        Tensor::from_f64(DType::F32, stat_shape.clone(), &means),
        Tensor::from_f64(DType::F32, stat_shape, &inv),
        Tensor::from_f64(x.dtype, x.shape.clone(), &summed),
    ];
    Ok(outs.into_iter().take(ctx.num_results).collect())
}

pub static SKIP_LAYER_NORMALIZATION: OpDef = OpDef {
    mnemonic: "ms.skip_layer_normalization",
    summary:
        "LayerNorm(input + skip + bias) over the last dim; outputs y, mean, inv_std_var, the sum",
    operands: &[
        req("input"),
        req("skip"),
        req("gamma"),
        opt("beta"),
        opt("bias"),
    ],
    results: Results::Range(1, 4),
    attrs: &[attr("epsilon", AttrKind::Float, Default::Float(1e-12))],
    traits: &[],
    infer: infer_skip_norm,
    eval: Some(|ctx| eval_skip_norm(ctx, Some(3), 4, false)),
};

pub static SKIP_SIMPLIFIED_LAYER_NORMALIZATION: OpDef = OpDef {
    mnemonic: "ms.skip_simplified_layer_normalization",
    summary:
        "RMSNorm(input + skip + bias) over the last dim; outputs y, mean, inv_std_var, the sum",
    operands: &[req("input"), req("skip"), req("gamma"), opt("bias")],
    results: Results::Range(1, 4),
    attrs: &[attr("epsilon", AttrKind::Float, Default::Float(1e-12))],
    traits: &[],
    infer: infer_skip_norm,
    eval: Some(|ctx| eval_skip_norm(ctx, None, 3, true)),
};

/// onnxruntime's SimplifiedLayerNormalization (default domain): RMSNorm over
/// the dims from `axis` on, `y = x / sqrt(mean(x^2) + epsilon) * scale`.
pub static SIMPLIFIED_LAYER_NORMALIZATION: OpDef = OpDef {
    mnemonic: "ms.simplified_layer_normalization",
    summary: "RMSNorm over the dims from axis on: x / sqrt(mean(x^2) + epsilon) * scale",
    operands: &[req("x"), req("scale")],
    results: Results::Range(1, 2),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(-1)),
        attr("epsilon", AttrKind::Float, Default::Float(1e-5)),
        attr("stash_type", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let mut stat = x.shape.clone();
        for d in &mut stat[axis..] {
            *d = Dim::fixed(1);
        }
        let stash = if x.dtype() == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        Ok([x.clone(), TensorType::new(stat, stash)][..ctx.num_results.min(2)].to_vec())
    },
    eval: Some(|ctx| {
        let (x, scale) = (ctx.input(0)?, ctx.input(1)?);
        check_float("x", x)?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let h: usize = x.shape[axis..].iter().product();
        if scale.is_empty() || !h.is_multiple_of(scale.len()) {
            return Err(format!(
                "scale of shape {:?} does not broadcast over the normalized {h} elements",
                scale.shape
            ));
        }
        let mut v = x.to_f64_vec();
        let (_, inv) = normalize_rows(
            &mut v,
            h,
            ctx.float("epsilon")? as f32 as f64,
            &scale.to_f64_vec(),
            None,
            true,
        );
        let mut stat = x.shape.clone();
        for d in &mut stat[axis..] {
            *d = 1;
        }
        let stash = if x.dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let outs = [
            Tensor::from_f64(x.dtype, x.shape.clone(), &v),
            Tensor::from_f64(stash, stat, &inv),
        ];
        Ok(outs.into_iter().take(ctx.num_results).collect())
    }),
};

pub static EMBED_LAYER_NORMALIZATION: OpDef = OpDef {
    mnemonic: "ms.embed_layer_normalization",
    summary:
        "BERT embeddings (word + position + segment) then LayerNorm; outputs y, mask_index, the sum",
    operands: &[
        req("input_ids"),
        opt("segment_ids"),
        req("word_embedding"),
        req("position_embedding"),
        opt("segment_embedding"),
        req("gamma"),
        req("beta"),
        opt("mask"),
        opt("position_ids"),
    ],
    results: Results::Range(1, 3),
    attrs: &[
        attr("epsilon", AttrKind::Float, Default::Float(1e-12)),
        attr("mask_index_type", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[],
    infer: |ctx| {
        let ids = ctx.input(0)?;
        let w = ctx.input(2)?;
        if ids.rank() != 2 || w.rank() != 2 {
            return Err("input_ids and word_embedding must be 2-D".into());
        }
        let out = TensorType::new(
            vec![
                ids.shape[0].clone(),
                ids.shape[1].clone(),
                w.shape[1].clone(),
            ],
            w.dtype(),
        );
        let mask = TensorType::new(vec![ids.shape[0].clone()], DType::I32);
        Ok([out.clone(), mask, out][..ctx.num_results.min(3)].to_vec())
    },
    eval: Some(|ctx| {
        let ids = ctx.input(0)?;
        let (word, pos) = (ctx.input(2)?, ctx.input(3)?);
        let (gamma, beta) = (ctx.input(5)?, ctx.input(6)?);
        check_float("word_embedding", word)?;
        if ids.rank() != 2 || word.rank() != 2 || pos.rank() != 2 {
            return Err("input_ids and the embedding tables must be 2-D".into());
        }
        let (b, s, h) = (ids.shape[0], ids.shape[1], word.shape[1]);
        expect_len("gamma", gamma, h)?;
        expect_len("beta", beta, h)?;
        // Each table lookup checks its index against the table's rows.
        let lookup = |table: &Tensor, idx: i64, what: &str| -> Result<usize, String> {
            if table.rank() != 2 || table.shape[1] != h {
                return Err(format!(
                    "{what} table must be [rows, {h}], got {:?}",
                    table.shape
                ));
            }
            usize::try_from(idx)
                .ok()
                .filter(|&i| i < table.shape[0])
                .map(|i| i * h)
                .ok_or_else(|| {
                    format!(
                        "{what} id {idx} is out of range for {} rows",
                        table.shape[0]
                    )
                })
        };
        let idv = ids.to_i64_vec();
        let segs = match (ctx.opt_input(1), ctx.opt_input(4)) {
            (Some(si), Some(se)) => {
                expect_len("segment_ids", si, b * s)?;
                Some((si.to_i64_vec(), se, se.to_f64_vec()))
            }
            _ => None,
        };
        let pos_ids = match ctx.opt_input(8) {
            Some(p) if p.len() == b * s || p.len() == s => Some(p.to_i64_vec()),
            Some(p) => {
                return Err(format!(
                    "position_ids of shape {:?} must be [batch, seq] or [1, seq]",
                    p.shape
                ))
            }
            None => None,
        };
        let (wv, pv) = (word.to_f64_vec(), pos.to_f64_vec());
        let mut sum = vec![0f64; b * s * h];
        for bi in 0..b {
            for si in 0..s {
                let t = bi * s + si;
                let w0 = lookup(word, idv[t], "word")?;
                let p = pos_ids.as_ref().map_or(si as i64, |p| p[t % p.len()]);
                let p0 = lookup(pos, p, "position")?;
                let out = &mut sum[t * h..(t + 1) * h];
                for (k, o) in out.iter_mut().enumerate() {
                    *o = wv[w0 + k] + pv[p0 + k];
                }
                if let Some((si_v, se, sev)) = &segs {
                    let s0 = lookup(se, si_v[t], "segment")?;
                    for (k, o) in out.iter_mut().enumerate() {
                        *o += sev[s0 + k];
                    }
                }
                for o in out.iter_mut() {
                    *o = super::quant::round_to(word.dtype, *o);
                }
            }
        }
        let summed = sum.clone();
        normalize_rows(
            &mut sum,
            h,
            ctx.float("epsilon")? as f32 as f64,
            &gamma.to_f64_vec(),
            Some(&beta.to_f64_vec()),
            false,
        );
        // mask_index: the number of ones in each mask row (0 without a mask).
        let mask_index: Vec<i64> = match ctx.opt_input(7) {
            Some(m) => {
                expect_len("mask", m, b * s)?;
                let mv = m.to_i64_vec();
                (0..b)
                    .map(|bi| mv[bi * s..(bi + 1) * s].iter().filter(|&&v| v != 0).count() as i64)
                    .collect()
            }
            None => vec![0; b],
        };
        let outs = [
            Tensor::from_f64(word.dtype, vec![b, s, h], &sum),
            Tensor::from_i64(DType::I32, vec![b], &mask_index),
            Tensor::from_f64(word.dtype, vec![b, s, h], &summed),
        ];
        Ok(outs.into_iter().take(ctx.num_results).collect())
    }),
};

// ---------------------------------------------------------------------------
// MatMulNBits
// ---------------------------------------------------------------------------

/// Unpacks `count` codes of `bits` bits starting at element `first` of a
/// little-endian bit stream (low bits first).
fn unpack_codes(bytes: &[u8], bits: usize, first: usize, count: usize, out: &mut [u8]) {
    let mask = ((1u16 << bits) - 1) as u8;
    for (j, o) in out.iter_mut().enumerate().take(count) {
        let bit = (first + j) * bits;
        *o = (bytes[bit / 8] >> (bit % 8)) & mask;
    }
}

/// The dequantized weight of MatMulNBits, transposed to [K, N] f32.
fn matmul_nbits_weight(
    ctx: &EvalCtx,
    k: usize,
    n: usize,
    bits: usize,
    block: usize,
) -> Result<Vec<f32>, String> {
    let (b, scales) = (ctx.input(1)?, ctx.input(2)?);
    let kb = k.div_ceil(block);
    let blob = block * bits / 8;
    if b.dtype != DType::U8 || b.len() != n * kb * blob {
        return Err(format!(
            "B must be u8 [{n}, {kb}, {blob}], got {} {:?}",
            b.dtype, b.shape
        ));
    }
    expect_len("scales", scales, n * kb)?;
    let bytes = match &b.data {
        crate::tensor::Data::U8(v) => v,
        _ => return Err("B must be u8".into()),
    };
    let sv = scales.to_f64_vec();
    let default_zp = (1u32 << (bits - 1)) as f64;
    // Zero points: packed u8 [N, ceil(kb*bits/8)] or unpacked floats [N, kb].
    let zps: Option<Vec<f64>> = match ctx.opt_input(3) {
        None => None,
        Some(z) if z.dtype == DType::U8 => {
            let row = (kb * bits).div_ceil(8);
            expect_len("zero_points", z, n * row)?;
            let zb = z
                .to_i64_vec()
                .into_iter()
                .map(|v| v as u8)
                .collect::<Vec<_>>();
            let mut codes = vec![0u8; kb];
            let mut out = Vec::with_capacity(n * kb);
            for ni in 0..n {
                unpack_codes(&zb[ni * row..(ni + 1) * row], bits, 0, kb, &mut codes);
                out.extend(codes.iter().map(|&c| c as f64));
            }
            Some(out)
        }
        Some(z) if z.dtype.is_float() => {
            expect_len("zero_points", z, n * kb)?;
            Some(z.to_f64_vec())
        }
        Some(z) => return Err(format!("zero_points must be u8 or float, got {}", z.dtype)),
    };
    // g_idx (deprecated) maps each k to its block.
    let g_idx = match ctx.opt_input(4) {
        Some(g) => {
            expect_len("g_idx", g, k)?;
            let v = g.to_i64_vec();
            if v.iter().any(|&x| x < 0 || x as usize >= kb) {
                return Err("g_idx has a block index out of range".into());
            }
            Some(v)
        }
        None => None,
    };
    let mut wt = vec![0f32; k * n];
    let mut codes = vec![0u8; block];
    for ni in 0..n {
        for bi in 0..kb {
            let start = (ni * kb + bi) * blob;
            unpack_codes(&bytes[start..start + blob], bits, 0, block, &mut codes);
            for (j, &c) in codes.iter().enumerate() {
                let ki = bi * block + j;
                if ki >= k {
                    break;
                }
                let blk = g_idx.as_ref().map_or(bi, |g| g[ki] as usize);
                let p = ni * kb + blk;
                let zp = zps.as_ref().map_or(default_zp, |z| z[p]);
                // In the element type's precision, as onnxruntime dequantizes.
                wt[ki * n + ni] = ((c as f64 - zp) as f32 * sv[p] as f32) as f32;
            }
        }
    }
    Ok(wt)
}

pub static MATMUL_NBITS: OpDef = OpDef {
    mnemonic: "ms.matmul_nbits",
    summary: "A @ dequantize(B)^T with B packed 2/4/8-bit blockwise along K (low bits first)",
    operands: &[
        req("a"),
        req("b"),
        req("scales"),
        opt("zero_points"),
        opt("g_idx"),
        opt("bias"),
    ],
    results: Results::Fixed(1),
    attrs: &[
        attr("K", AttrKind::Int, Default::Required),
        attr("N", AttrKind::Int, Default::Required),
        attr("accuracy_level", AttrKind::Int, Default::Int(0)),
        attr("bits", AttrKind::Int, Default::Int(4)),
        attr("block_size", AttrKind::Int, Default::Required),
        attr("weight_prepacked", AttrKind::Int, Default::Int(0)),
    ],
    traits: &[],
    infer: |ctx| {
        let a = ctx.input(0)?;
        let (k, n) = (ctx.int("K")?, ctx.int("N")?);
        let last = a.shape.last().ok_or("A must have rank >= 1")?;
        if !last.compatible(&Dim::fixed(k)) {
            return Err(format!("A's last dim {last} differs from K = {k}"));
        }
        let mut shape = a.shape.clone();
        *shape.last_mut().unwrap() = Dim::fixed(n);
        Ok(vec![TensorType::new(shape, a.dtype())])
    },
    eval: Some(|ctx| {
        let a = ctx.input(0)?;
        check_float("A", a)?;
        let (k, n, bits, block) = (
            ctx.int("K")?,
            ctx.int("N")?,
            ctx.int("bits")?,
            ctx.int("block_size")?,
        );
        if !matches!(bits, 2 | 4 | 8) {
            return Err(format!("bits must be 2, 4 or 8, got {bits}"));
        }
        if block < 16 || block & (block - 1) != 0 {
            return Err(format!(
                "block_size must be a power of two >= 16, got {block}"
            ));
        }
        if k <= 0 || n <= 0 || last_dim(a)? != k as usize {
            return Err(format!(
                "A's last dim must be K = {k} (N = {n}), got {:?}",
                a.shape
            ));
        }
        if ctx.int("weight_prepacked")? != 0 {
            return Err("execution-provider prepacked weights have no reference semantics".into());
        }
        let (k, n) = (k as usize, n as usize);
        let wt = matmul_nbits_weight(ctx, k, n, bits as usize, block as usize)?;
        let m = a.len() / k;
        let mut y = matmul_rows(&a.to_f32_vec(), &wt, m, k, n);
        if let Some(bias) = ctx.opt_input(5) {
            expect_len("bias", bias, n)?;
            let bv = bias.to_f32_vec();
            for row in y.chunks_mut(n) {
                for (o, b) in row.iter_mut().zip(&bv) {
                    *o += b;
                }
            }
        }
        let mut shape = a.shape.clone();
        *shape.last_mut().unwrap() = n;
        let yv: Vec<f64> = y.into_iter().map(|v| v as f64).collect();
        Ok(vec![Tensor::from_f64(a.dtype, shape, &yv)])
    }),
};

// ---------------------------------------------------------------------------
// Rotary embedding
// ---------------------------------------------------------------------------

/// Rotates the first `rot` values of one head vector at `pos` in place.
/// `interleaved`: pairs (x[2i], x[2i+1]); otherwise (x[i], x[i + rot/2]).
fn rotate(x: &mut [f64], pos: usize, cos: &[f64], sin: &[f64], half: usize, interleaved: bool) {
    let rows = pos * half..(pos + 1) * half;
    rotate_pairs(x, &cos[rows.clone()], &sin[rows], interleaved);
}

/// Checked rotary tables: (cos, sin, half, max positions).
fn rotary_tables(
    cos: &Tensor,
    sin: &Tensor,
    head: usize,
) -> Result<(Vec<f64>, Vec<f64>, usize, usize), String> {
    if cos.rank() != 2 || cos.shape != sin.shape {
        return Err(format!(
            "cos_cache and sin_cache must be 2-D of the same shape, got {:?} and {:?}",
            cos.shape, sin.shape
        ));
    }
    let half = cos.shape[1];
    if 2 * half > head || half == 0 {
        return Err(format!(
            "rotary dim {} exceeds the head size {head}",
            2 * half
        ));
    }
    Ok((cos.to_f64_vec(), sin.to_f64_vec(), half, cos.shape[0]))
}

pub static ROTARY_EMBEDDING: OpDef = OpDef {
    mnemonic: "ms.rotary_embedding",
    summary:
        "Rotary position embedding of [B, S, H] or [B, N, S, h] by cached cos/sin at position_ids",
    operands: &[
        req("input"),
        req("position_ids"),
        req("cos_cache"),
        req("sin_cache"),
    ],
    results: Results::Fixed(1),
    attrs: &[
        attr("interleaved", AttrKind::Int, Default::Int(0)),
        attr("is_packed_batching", AttrKind::Int, Default::Int(0)),
        attr("num_heads", AttrKind::Int, Default::Int(0)),
        attr("rotary_embedding_dim", AttrKind::Int, Default::Int(0)),
        attr("scale", AttrKind::Float, Default::Float(1.0)),
    ],
    traits: &[],
    infer: infer_same,
    eval: Some(|ctx| {
        let (x, pids, cos, sin) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.input(3)?);
        check_float("input", x)?;
        if ctx.int("is_packed_batching")? != 0 {
            return Err("packed (ragged) batching is not supported".into());
        }
        let interleaved = ctx.int("interleaved")? != 0;
        let rot_attr = ctx.int("rotary_embedding_dim")?.max(0) as usize;
        let half = cos.shape.get(1).copied().unwrap_or(0);
        // (batch, heads, seq, head size) and whether the layout is BSNH.
        let (b, nh, s, hd, bsnh) = match x.shape[..] {
            [b, n, s, h] => (b, n, s, h, false),
            [b, s, hidden] => {
                let nh = ctx.int("num_heads")?.max(0) as usize;
                let hd = match hidden.checked_div(nh) {
                    Some(hd) => hd,
                    None if rot_attr > 0 => rot_attr,
                    None => 2 * half,
                };
                if hd == 0 || hidden % hd != 0 {
                    return Err(format!(
                        "hidden size {hidden} is not a multiple of the head size {hd}"
                    ));
                }
                (b, hidden / hd, s, hd, true)
            }
            _ => return Err(format!("input must be 3-D or 4-D, got {:?}", x.shape)),
        };
        let (cv, sv, half, max_pos) = rotary_tables(cos, sin, hd)?;
        if rot_attr > 0 && rot_attr != 2 * half {
            return Err(format!(
                "rotary_embedding_dim {rot_attr} differs from the cache width {}",
                2 * half
            ));
        }
        let pv = pids.to_i64_vec();
        let pos_of = |bi: usize, si: usize| -> Result<usize, String> {
            let p = if pv.len() == 1 {
                pv[0] + si as i64
            } else if pv.len() == b * s {
                pv[bi * s + si]
            } else {
                return Err(format!(
                    "position_ids of shape {:?} must be [1] or [batch, seq]",
                    pids.shape
                ));
            };
            usize::try_from(p)
                .ok()
                .filter(|&p| p < max_pos)
                .ok_or_else(|| format!("position {p} is outside the cache of {max_pos}"))
        };
        let mut v = x.to_f64_vec();
        for bi in 0..b {
            for hi in 0..nh {
                for si in 0..s {
                    let off = if bsnh {
                        ((bi * s + si) * nh + hi) * hd
                    } else {
                        ((bi * nh + hi) * s + si) * hd
                    };
                    rotate(
                        &mut v[off..off + hd],
                        pos_of(bi, si)?,
                        &cv,
                        &sv,
                        half,
                        interleaved,
                    );
                }
            }
        }
        Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &v)])
    }),
};

// ---------------------------------------------------------------------------
// Attention (com.microsoft)
// ---------------------------------------------------------------------------

/// One head's attention: `softmax(scores) @ v` for `s` queries over `t`
/// keys. `score(i, j)` gives the logit, or None for a key the query may not
/// see (it gets probability 0).
// Kept apart from nn::attention's GEMM kernel: f64 per head with onnxruntime's mask and sink rules.
fn attend_head(
    s: usize,
    t: usize,
    dv: usize,
    v: &dyn Fn(usize, usize) -> f64,
    score: &dyn Fn(usize, usize) -> Option<f64>,
    sink: Option<f64>,
) -> Vec<f64> {
    let mut out = vec![0f64; s * dv];
    let mut row = vec![0f64; t];
    for i in 0..s {
        let mut lo = t;
        let mut hi = 0;
        for (j, r) in row.iter_mut().enumerate() {
            match score(i, j) {
                Some(x) => {
                    *r = x;
                    lo = lo.min(j);
                    hi = j + 1;
                }
                None => *r = f64::NEG_INFINITY,
            }
        }
        if lo >= hi {
            continue;
        }
        // Excluded keys inside [lo, hi) are -inf and get probability 0.
        softmax_range(&mut row, lo, hi, sink);
        for (j, &p) in row.iter().enumerate() {
            if p != 0.0 {
                for d in 0..dv {
                    out[i * dv + d] += p * v(j, d);
                }
            }
        }
    }
    out
}

pub static ATTENTION: OpDef = OpDef {
    mnemonic: "ms.attention",
    summary: "Multi-head self attention with fused QKV projection, masks and optional past state",
    operands: &[
        req("input"),
        req("weights"),
        opt("bias"),
        opt("mask_index"),
        opt("past"),
        opt("attention_bias"),
        opt("past_sequence_length"),
    ],
    results: Results::Range(1, 2),
    attrs: &[
        attr("do_rotary", AttrKind::Int, Default::Int(0)),
        attr(
            "mask_filter_value",
            AttrKind::Float,
            Default::Float(-10000.0),
        ),
        attr("num_heads", AttrKind::Int, Default::Required),
        attr("past_present_share_buffer", AttrKind::Int, Default::Int(0)),
        attr("qkv_hidden_sizes", AttrKind::Ints, Default::Absent),
        attr("rotary_embedding_dim", AttrKind::Int, Default::Int(0)),
        attr("scale", AttrKind::Float, Default::Absent),
        attr("unidirectional", AttrKind::Int, Default::Int(0)),
    ],
    traits: &[],
    infer: |ctx| {
        let (x, w) = (ctx.input(0)?, ctx.input(1)?);
        if x.rank() != 3 || w.rank() != 2 {
            return Err("input must be [batch, seq, hidden] and weights 2-D".into());
        }
        let nh = ctx.int("num_heads")?;
        let sizes = attention_sizes(ctx, w.shape[1].as_fixed())?;
        let out = TensorType::new(
            vec![
                x.shape[0].clone(),
                x.shape[1].clone(),
                sizes.map_or(Dim::Unknown, |s| Dim::fixed(s.2)),
            ],
            x.dtype(),
        );
        let mut tys = vec![out];
        if ctx.num_results > 1 {
            let past = ctx.opt_input(4).map_or(Dim::fixed(0), |p| {
                p.shape.get(3).cloned().unwrap_or(Dim::Unknown)
            });
            let hd = sizes.map_or(Dim::Unknown, |s| Dim::fixed(s.0 as i64 / nh.max(1)));
            tys.push(TensorType::new(
                vec![
                    Dim::fixed(2),
                    x.shape[0].clone(),
                    Dim::fixed(nh),
                    past.add(&x.shape[1]),
                    hd,
                ],
                x.dtype(),
            ));
        }
        Ok(tys)
    },
    eval: Some(eval_attention),
};

/// (q, k, v) hidden sizes from `qkv_hidden_sizes` or an even split of the weights.
fn attention_sizes(
    ctx: &dyn AttrAccess,
    total: Option<i64>,
) -> Result<Option<(usize, usize, i64)>, String> {
    if ctx.has_attr("qkv_hidden_sizes") {
        let s = ctx.ints("qkv_hidden_sizes")?;
        if s.len() != 3 || s.iter().any(|&v| v <= 0) {
            return Err(format!(
                "qkv_hidden_sizes must be 3 positive sizes, got {s:?}"
            ));
        }
        if total.is_some_and(|t| t != s.iter().sum::<i64>()) {
            return Err(format!(
                "qkv_hidden_sizes {s:?} do not add up to the weights' {}",
                total.unwrap()
            ));
        }
        return Ok(Some((s[0] as usize, s[1] as usize, s[2])));
    }
    Ok(total.map(|t| ((t / 3) as usize, (t / 3) as usize, t / 3)))
}

fn eval_attention(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    check_float("input", x)?;
    if x.rank() != 3 || w.rank() != 2 || w.shape[0] != x.shape[2] {
        return Err(format!(
            "input [B, S, H] and weights [H, 3H'] do not match: {:?} and {:?}",
            x.shape, w.shape
        ));
    }
    if ctx.int("do_rotary")? != 0 || ctx.int("past_present_share_buffer")? != 0 {
        return Err(
            "ms.attention: do_rotary and past_present_share_buffer are not supported".into(),
        );
    }
    let (b, s, hin) = (x.shape[0], x.shape[1], x.shape[2]);
    let nh = ctx.int("num_heads")?;
    let (hq, hk, hv) = attention_sizes(ctx, Some(w.shape[1] as i64))?.ok_or("no weights")?;
    let hv = hv as usize;
    if nh <= 0 || !hq.is_multiple_of(nh as usize) || hk != hq || !hv.is_multiple_of(nh as usize) {
        return Err(format!(
            "hidden sizes ({hq}, {hk}, {hv}) must divide by num_heads {nh} (and q, k agree)"
        ));
    }
    let nh = nh as usize;
    let (hd, hdv) = (hq / nh, hv / nh);
    let ncols = w.shape[1];
    // Fused projection: [B*S, Hin] @ [Hin, 2H + Hv] + bias.
    let mut proj = matmul_rows(&x.to_f64_vec(), &w.to_f64_vec(), b * s, hin, ncols);
    if let Some(bias) = ctx.opt_input(2) {
        expect_len("bias", bias, ncols)?;
        let bv = bias.to_f64_vec();
        for row in proj.chunks_mut(ncols) {
            for (o, bb) in row.iter_mut().zip(&bv) {
                *o += bb;
            }
        }
    }
    let proj: Vec<f64> = proj
        .into_iter()
        .map(|v| super::quant::round_to(x.dtype, v))
        .collect();
    let past = ctx.opt_input(4);
    let p = match past {
        Some(pt) => {
            if pt.rank() != 5
                || pt.shape[0] != 2
                || pt.shape[1] != b
                || pt.shape[2] != nh
                || pt.shape[4] != hd
                || hdv != hd
            {
                return Err(format!(
                    "past must be [2, {b}, {nh}, past, {hd}], got {:?}",
                    pt.shape
                ));
            }
            pt.shape[3]
        }
        None => 0,
    };
    let t = p + s;
    let pv = opt_f64(past);
    // Key and value caches [B, N, T, h]: the past, then the new tokens.
    let cache = |kv: usize, width: usize, col0: usize| -> Vec<f64> {
        let mut c = vec![0f64; b * nh * t * width];
        for bi in 0..b {
            for hi in 0..nh {
                let base = (bi * nh + hi) * t * width;
                if let Some(pv) = &pv {
                    let src = ((kv * b + bi) * nh + hi) * p * width;
                    c[base..base + p * width].copy_from_slice(&pv[src..src + p * width]);
                }
                for si in 0..s {
                    let col = col0 + hi * width;
                    let row = &proj[(bi * s + si) * ncols..];
                    c[base + (p + si) * width..base + (p + si + 1) * width]
                        .copy_from_slice(&row[col..col + width]);
                }
            }
        }
        c
    };
    let (kc, vc) = (cache(0, hd, hq), cache(1, hdv, hq + hk));
    let scale = if ctx.has_attr("scale") {
        ctx.float("scale")? as f32 as f64
    } else {
        1.0 / (hd as f64).sqrt()
    };
    let filter = ctx.float("mask_filter_value")? as f32 as f64;
    let causal = ctx.int("unidirectional")? != 0;
    let mask = attention_mask(ctx.opt_input(3), b, s, t)?;
    let bias = ctx.opt_input(5);
    let bias_v = opt_f64(bias);
    let bias_at = |bi: usize, hi: usize, i: usize, j: usize| -> f64 {
        match (bias, &bias_v) {
            (Some(bt), Some(bv)) => {
                let bb = if bt.shape[0] == 1 { 0 } else { bi };
                let hh = if bt.shape[1] == 1 { 0 } else { hi };
                bv[((bb * bt.shape[1].max(1) + hh) * s + i) * t + j]
            }
            _ => 0.0,
        }
    };
    if let Some(bt) = bias {
        if bt.rank() != 4
            || bt.shape[2] != s
            || bt.shape[3] != t
            || !(bt.shape[0] == 1 || bt.shape[0] == b)
            || !(bt.shape[1] == 1 || bt.shape[1] == nh)
        {
            return Err(format!(
                "attention_bias must be [B or 1, N or 1, {s}, {t}], got {:?}",
                bt.shape
            ));
        }
    }
    let mut out = vec![0f64; b * s * hv];
    for bi in 0..b {
        for hi in 0..nh {
            let kb = ((bi * nh + hi) * t) * hd;
            let vb = ((bi * nh + hi) * t) * hdv;
            let q = |i: usize, d: usize| proj[(bi * s + i) * ncols + hi * hd + d];
            let score = |i: usize, j: usize| -> Option<f64> {
                let dot: f64 = (0..hd).map(|d| q(i, d) * kc[kb + j * hd + d]).sum();
                // onnxruntime sets (does not add) the filter value for masked
                // or future positions, then adds the attention bias.
                let masked = causal && j > p + i || mask.as_ref().is_some_and(|m| m(bi, i, j));
                Some(dot * scale + if masked { filter } else { 0.0 } + bias_at(bi, hi, i, j))
            };
            let vf = |j: usize, d: usize| vc[vb + j * hdv + d];
            let o = attend_head(s, t, hdv, &vf, &score, None);
            for i in 0..s {
                out[(bi * s + i) * hv + hi * hdv..(bi * s + i) * hv + (hi + 1) * hdv]
                    .copy_from_slice(&o[i * hdv..(i + 1) * hdv]);
            }
        }
    }
    let mut outs = vec![Tensor::from_f64(x.dtype, vec![b, s, hv], &out)];
    if ctx.num_results > 1 {
        if hd != hdv {
            return Err("present needs equal key and value head sizes".into());
        }
        let present: Vec<f64> = kc.into_iter().chain(vc).collect();
        outs.push(Tensor::from_f64(x.dtype, vec![2, b, nh, t, hd], &present));
    }
    Ok(outs)
}

type MaskFn = Box<dyn Fn(usize, usize, usize) -> bool>;

/// The masked predicate (batch, query, key) of ms.Attention's mask_index:
/// raw 0/1 masks [B, T] or [B, S, T], right-padding lengths [B], or
/// end/start positions [2B].
fn attention_mask(
    m: Option<&Tensor>,
    b: usize,
    s: usize,
    t: usize,
) -> Result<Option<MaskFn>, String> {
    let Some(m) = m else { return Ok(None) };
    let v = m.to_i64_vec();
    let f: MaskFn = match m.shape[..] {
        [bb, tt] if bb == b && tt == t => Box::new(move |bi, _, j| v[bi * t + j] == 0),
        [bb, ss, tt] if bb == b && ss == s && tt == t => {
            Box::new(move |bi, i, j| v[(bi * s + i) * t + j] == 0)
        }
        [n] if n == b => Box::new(move |bi, _, j| j as i64 >= v[bi]),
        [n] if n == 2 * b => Box::new(move |bi, _, j| j as i64 >= v[bi] || (j as i64) < v[b + bi]),
        _ => {
            return Err(format!(
                "mask_index of shape {:?} is not supported (use [B, T], [B, S, T], [B] or [2B])",
                m.shape
            ))
        }
    };
    Ok(Some(f))
}

// ---------------------------------------------------------------------------
// GroupQueryAttention
// ---------------------------------------------------------------------------

pub static GROUP_QUERY_ATTENTION: OpDef = OpDef {
    mnemonic: "ms.group_query_attention",
    summary:
        "Grouped-query attention with a BNSH KV cache, rotary embedding, causal/local window masks",
    operands: &[
        req("query"),
        opt("key"),
        opt("value"),
        opt("past_key"),
        opt("past_value"),
        req("seqlens_k"),
        req("total_sequence_length"),
        opt("cos_cache"),
        opt("sin_cache"),
        opt("position_ids"),
        opt("attention_bias"),
        opt("head_sink"),
        opt("k_scale"),
        opt("v_scale"),
        opt("q_norm_weight"),
        opt("k_norm_weight"),
    ],
    results: Results::Range(1, 4),
    attrs: &[
        attr("causal", AttrKind::Int, Default::Int(1)),
        attr("do_rotary", AttrKind::Int, Default::Int(0)),
        attr("k_quant_type", AttrKind::Str, Default::Str("NONE")),
        attr("kv_cache_bit_width", AttrKind::Int, Default::Int(0)),
        attr("kv_num_heads", AttrKind::Int, Default::Required),
        attr("local_window_size", AttrKind::Int, Default::Int(-1)),
        attr("num_heads", AttrKind::Int, Default::Required),
        attr("qk_norm_epsilon", AttrKind::Float, Default::Float(1e-6)),
        attr("qk_output", AttrKind::Int, Default::Int(0)),
        attr("rotary_interleaved", AttrKind::Int, Default::Int(0)),
        attr("scale", AttrKind::Float, Default::Float(0.0)),
        attr("sliding_window_cache", AttrKind::Int, Default::Int(0)),
        attr("smooth_softmax", AttrKind::Int, Default::Int(-1)),
        attr("softcap", AttrKind::Float, Default::Float(0.0)),
        attr("v_quant_type", AttrKind::Str, Default::Str("NONE")),
    ],
    traits: &[],
    infer: infer_gqa,
    eval: Some(eval_gqa),
};

/// (num_heads, kv_num_heads, head_size) from the attributes and the query width.
fn gqa_heads(
    ctx: &dyn AttrAccess,
    qwidth: Option<i64>,
    packed: bool,
) -> Result<(i64, i64, Option<i64>), String> {
    let (nh, kvh) = (ctx.int("num_heads")?, ctx.int("kv_num_heads")?);
    if nh <= 0 || kvh <= 0 || nh % kvh != 0 {
        return Err(format!(
            "num_heads {nh} must be a positive multiple of kv_num_heads {kvh}"
        ));
    }
    let per = if packed { nh + 2 * kvh } else { nh };
    Ok((nh, kvh, qwidth.map(|w| w / per)))
}

fn infer_gqa(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let q = ctx.input(0)?;
    if q.rank() != 3 {
        return Err("query must be [batch, seq, hidden]".into());
    }
    let packed = ctx.opt_input(1).is_none();
    let (nh, kvh, hd) = gqa_heads(ctx, q.shape[2].as_fixed(), packed)?;
    let hd_dim = hd.map_or(Dim::Unknown, Dim::fixed);
    let out = TensorType::new(
        vec![
            q.shape[0].clone(),
            q.shape[1].clone(),
            hd_dim.mul(&Dim::fixed(nh)),
        ],
        q.dtype(),
    );
    // Present length: max(past buffer, total_sequence_length) when the total
    // is a constant; otherwise past + new tokens (the non-shared cache).
    let past = ctx
        .opt_input(3)
        .map(|p| p.shape.get(2).cloned().unwrap_or(Dim::Unknown));
    let total = ctx
        .const_input(6)
        .filter(|t| t.len() == 1)
        .map(|t| t.get_i64(0));
    let present_len = match (total, &past) {
        (Some(t), Some(p)) => p.as_fixed().map_or(Dim::Unknown, |p| Dim::fixed(p.max(t))),
        (Some(t), None) => Dim::fixed(t),
        (None, Some(p)) => p.add(&q.shape[1]),
        (None, None) => q.shape[1].clone(),
    };
    let kv_dtype = ctx.opt_input(3).map_or(q.dtype(), TensorType::dtype);
    let present = TensorType::new(
        vec![
            q.shape[0].clone(),
            Dim::fixed(kvh),
            present_len.clone(),
            hd_dim,
        ],
        kv_dtype,
    );
    let qk = TensorType::new(
        vec![
            q.shape[0].clone(),
            Dim::fixed(nh),
            q.shape[1].clone(),
            present_len,
        ],
        q.dtype(),
    );
    Ok([out, present.clone(), present, qk][..ctx.num_results.min(4)].to_vec())
}

/// Separate key and value inputs, as f64.
type KeyValue = (Vec<f64>, Vec<f64>);

fn eval_gqa(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let q = ctx.input(0)?;
    check_float("query", q)?;
    if q.rank() != 3 {
        return Err(format!(
            "query must be [batch, seq, hidden], got {:?}",
            q.shape
        ));
    }
    for (i, what) in [
        (12, "k_scale"),
        (13, "v_scale"),
        (14, "q_norm_weight"),
        (15, "k_norm_weight"),
    ] {
        if ctx.opt_input(i).is_some() {
            return Err(format!(
                "group_query_attention: {what} (quantized cache / QK norm) is not supported"
            ));
        }
    }
    if ctx.int("sliding_window_cache")? != 0 || ctx.int("qk_output")? != 0 || ctx.num_results > 3 {
        return Err(
            "group_query_attention: sliding_window_cache and output_qk are not supported".into(),
        );
    }
    let (b, s) = (q.shape[0], q.shape[1]);
    let packed = ctx.opt_input(1).is_none();
    let (nh, kvh, hd) = gqa_heads(ctx, Some(q.shape[2] as i64), packed)?;
    let (nh, kvh, hd) = (nh as usize, kvh as usize, hd.unwrap_or(0) as usize);
    let qv = q.to_f64_vec();
    let width = q.shape[2];
    // New q, k, v as [B, S, heads, hd] accessors over their source buffers.
    let (kv_src, kv_width, k_off, v_off): (Option<KeyValue>, usize, usize, usize) = if packed {
        if width != (nh + 2 * kvh) * hd || hd == 0 {
            return Err(format!(
                "packed QKV width {width} must be (num_heads + 2 kv_num_heads) * head_size"
            ));
        }
        (None, width, nh * hd, (nh + kvh) * hd)
    } else {
        let (k, v) = (
            ctx.input(1)?,
            ctx.input(2)
                .map_err(|_| "value is required with key".to_string())?,
        );
        if width != nh * hd || hd == 0 || k.shape != [b, s, kvh * hd] || v.shape != k.shape {
            return Err(format!(
                "query {:?}, key {:?}, value {:?} do not match the head counts",
                q.shape, k.shape, v.shape
            ));
        }
        (Some((k.to_f64_vec(), v.to_f64_vec())), kvh * hd, 0, 0)
    };
    let mut qn = vec![0f64; b * s * nh * hd];
    let mut kn = vec![0f64; b * s * kvh * hd];
    let mut vn = vec![0f64; b * s * kvh * hd];
    for t in 0..b * s {
        qn[t * nh * hd..(t + 1) * nh * hd].copy_from_slice(&qv[t * width..t * width + nh * hd]);
        let (ks, vs) = match &kv_src {
            Some((k, v)) => (
                &k[t * kv_width + k_off..t * kv_width + k_off + kvh * hd],
                &v[t * kv_width + v_off..t * kv_width + v_off + kvh * hd],
            ),
            None => (
                &qv[t * width + k_off..t * width + k_off + kvh * hd],
                &qv[t * width + v_off..t * width + v_off + kvh * hd],
            ),
        };
        kn[t * kvh * hd..(t + 1) * kvh * hd].copy_from_slice(ks);
        vn[t * kvh * hd..(t + 1) * kvh * hd].copy_from_slice(vs);
    }
    let seqlens = ctx.input(5)?.to_i64_vec();
    if seqlens.len() != b {
        return Err(format!("seqlens_k must have {b} values"));
    }
    let total = ctx
        .input(6)?
        .to_i64_vec()
        .first()
        .copied()
        .ok_or("total_sequence_length is empty")?;
    let (pk, pv) = (ctx.opt_input(3), ctx.opt_input(4));
    let past_len = match (pk, pv) {
        (Some(k), Some(v)) => {
            if k.dtype != q.dtype
                || k.rank() != 4
                || k.shape != v.shape
                || k.shape[0] != b
                || k.shape[1] != kvh
                || k.shape[3] != hd
            {
                return Err(format!(
                    "past_key/past_value must be {} [{b}, {kvh}, past, {hd}], got {:?}",
                    q.dtype, k.shape
                ));
            }
            k.shape[2]
        }
        (None, None) => 0,
        _ => return Err("past_key and past_value go together".into()),
    };
    let present_len =
        past_len.max(usize::try_from(total).map_err(|_| "negative total_sequence_length")?);
    let first_prompt = total as usize == s;
    // Per batch: total and past lengths, as onnxruntime derives them.
    let mut lens = Vec::with_capacity(b);
    for &sk in &seqlens {
        let tot = usize::try_from(sk + 1).map_err(|_| "negative seqlens_k")?;
        let past = if first_prompt {
            0
        } else {
            tot.checked_sub(s)
                .ok_or("seqlens_k is shorter than the new tokens")?
        };
        if past + s > present_len {
            return Err(format!(
                "seqlens_k {sk} exceeds the present length {present_len}"
            ));
        }
        lens.push((tot, past));
    }
    if ctx.int("do_rotary")? != 0 {
        let (cos, sin) = (ctx.input(7)?, ctx.input(8)?);
        let (cv, sv, half, max_pos) = rotary_tables(cos, sin, hd)?;
        let interleaved = ctx.int("rotary_interleaved")? != 0;
        let pids = ctx.opt_input(9).map(Tensor::to_i64_vec);
        for bi in 0..b {
            for si in 0..s {
                let (tot, past) = lens[bi];
                let pos = match &pids {
                    Some(p) if p.len() == b * s => p[bi * s + si],
                    Some(_) => return Err("position_ids must be [batch, seq]".into()),
                    // Padding tokens of a first prompt take position 1, as in onnxruntime.
                    None if first_prompt && si >= tot => 1,
                    None => (past + si) as i64,
                };
                let pos = usize::try_from(pos)
                    .ok()
                    .filter(|&p| p < max_pos)
                    .ok_or_else(|| format!("position {pos} is outside the rotary cache"))?;
                let t = bi * s + si;
                for hi in 0..nh {
                    rotate(
                        &mut qn[(t * nh + hi) * hd..(t * nh + hi + 1) * hd],
                        pos,
                        &cv,
                        &sv,
                        half,
                        interleaved,
                    );
                }
                for hi in 0..kvh {
                    rotate(
                        &mut kn[(t * kvh + hi) * hd..(t * kvh + hi + 1) * hd],
                        pos,
                        &cv,
                        &sv,
                        half,
                        interleaved,
                    );
                }
            }
        }
    }
    // Present caches [B, kvH, L, hd]: the past rows, then the new tokens.
    let (pkv, pvv) = (opt_f64(pk), opt_f64(pv));
    let mut present_k = vec![0f64; b * kvh * present_len * hd];
    let mut present_v = vec![0f64; b * kvh * present_len * hd];
    for (bi, &(_, past)) in lens.iter().enumerate() {
        for hi in 0..kvh {
            let dst = (bi * kvh + hi) * present_len * hd;
            if let (Some(pk), Some(pv)) = (&pkv, &pvv) {
                let src = (bi * kvh + hi) * past_len * hd;
                let n = past.min(past_len) * hd;
                present_k[dst..dst + n].copy_from_slice(&pk[src..src + n]);
                present_v[dst..dst + n].copy_from_slice(&pv[src..src + n]);
            }
            for si in 0..s {
                let src = ((bi * s + si) * kvh + hi) * hd;
                let d = dst + (past + si) * hd;
                present_k[d..d + hd].copy_from_slice(&kn[src..src + hd]);
                present_v[d..d + hd].copy_from_slice(&vn[src..src + hd]);
            }
        }
    }
    let scale = match ctx.float("scale")? {
        x if x != 0.0 => x as f32 as f64,
        _ => 1.0 / (hd as f64).sqrt(),
    };
    let softcap = ctx.float("softcap")? as f32 as f64;
    let window = ctx.int("local_window_size")?;
    let causal = ctx.int("causal")? != 0;
    let bias = ctx.opt_input(10);
    let bias_v = opt_f64(bias);
    if let Some(bt) = bias {
        if bt.rank() != 4
            || bt.shape[2] != s
            || !(bt.shape[0] == 1 || bt.shape[0] == b)
            || !(bt.shape[1] == 1 || bt.shape[1] == nh)
        {
            return Err(format!(
                "attention_bias must be [B or 1, N or 1, {s}, total], got {:?}",
                bt.shape
            ));
        }
    }
    let sinks = match (ctx.opt_input(11), ctx.int("smooth_softmax")?) {
        (Some(h), _) => {
            expect_len("head_sink", h, nh)?;
            Some(h.to_f64_vec())
        }
        (None, 1) => Some(vec![0.0; nh]),
        _ => None,
    };
    let group = nh / kvh;
    let mut out = vec![0f64; b * s * nh * hd];
    for bi in 0..b {
        let (tot, past) = lens[bi];
        for hi in 0..nh {
            let kvhi = hi / group;
            let base = (bi * kvh + kvhi) * present_len * hd;
            let score = |i: usize, j: usize| -> Option<f64> {
                let qpos = past + i;
                // Causal: keys up to the query's own position; bidirectional:
                // every key of this batch entry.
                let end = if causal {
                    (qpos + 1).min(present_len)
                } else {
                    tot
                };
                // A local window keeps the `window` most recent keys, the query's own included.
                let start = if window > 0 {
                    (qpos + 1).saturating_sub(window as usize)
                } else {
                    0
                };
                if j >= end || j < start {
                    return None;
                }
                let qr = &qn[((bi * s + i) * nh + hi) * hd..][..hd];
                let dot: f64 = qr
                    .iter()
                    .zip(&present_k[base + j * hd..base + (j + 1) * hd])
                    .map(|(a, b)| a * b)
                    .sum();
                let mut x = dot * scale;
                // onnxruntime caps the scaled scores before adding the bias.
                if softcap > 0.0 {
                    x = softcap * (x / softcap).tanh();
                }
                if let (Some(bt), Some(bv)) = (bias, &bias_v) {
                    let bb = if bt.shape[0] == 1 { 0 } else { bi };
                    let hh = if bt.shape[1] == 1 { 0 } else { hi };
                    let tt = bt.shape[3];
                    x += if j < tt {
                        bv[((bb * bt.shape[1] + hh) * s + i) * tt + j]
                    } else {
                        0.0
                    };
                }
                Some(x)
            };
            let vf = |j: usize, d: usize| present_v[base + j * hd + d];
            let o = attend_head(
                s,
                present_len,
                hd,
                &vf,
                &score,
                sinks.as_ref().map(|v| v[hi]),
            );
            for i in 0..s {
                let dst = ((bi * s + i) * nh + hi) * hd;
                out[dst..dst + hd].copy_from_slice(&o[i * hd..(i + 1) * hd]);
            }
        }
    }
    let mut outs = vec![Tensor::from_f64(q.dtype, vec![b, s, nh * hd], &out)];
    if ctx.num_results > 1 {
        outs.push(Tensor::from_f64(
            q.dtype,
            vec![b, kvh, present_len, hd],
            &present_k,
        ));
    }
    if ctx.num_results > 2 {
        outs.push(Tensor::from_f64(
            q.dtype,
            vec![b, kvh, present_len, hd],
            &present_v,
        ));
    }
    Ok(outs)
}

// ---------------------------------------------------------------------------
// Quantized elementwise and softmax
// ---------------------------------------------------------------------------

/// A per-tensor quantized operand: values minus zero point, and its scale.
fn qoperand(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>) -> Result<(Vec<i64>, f32), String> {
    if !matches!(x.dtype, DType::U8 | DType::I8) {
        return Err(format!(
            "quantized operands must be u8 or i8, got {}",
            x.dtype
        ));
    }
    if scale.len() != 1 || zp.is_some_and(|z| z.len() != 1 || z.dtype != x.dtype) {
        return Err(
            "scales and zero points must be per-tensor scalars of the operand's type".into(),
        );
    }
    let z = zp.map_or(0, |z| z.get_i64(0));
    Ok((
        x.to_i64_vec().into_iter().map(|v| v - z).collect(),
        scale.get_f64(0) as f32,
    ))
}

/// saturate(round_half_even(v) + zp) to u8 / i8.
fn requant8(v: f32, zp: i64, dt: DType) -> i64 {
    let (lo, hi) = if dt == DType::U8 {
        (0, 255)
    } else {
        (-128, 127)
    };
    let r = v.round_ties_even();
    if r.is_nan() {
        zp.clamp(lo, hi)
    } else {
        (r as i64 + zp).clamp(lo, hi)
    }
}

/// QLinearAdd / QLinearMul: `f(a, b, ratio_a, ratio_b)` gives the output in
/// units of the output scale, in f32 as onnxruntime's kernels compute it.
fn eval_qlinear_binary(
    ctx: &EvalCtx,
    f: fn(f32, f32, f32, f32, f32) -> f32,
) -> Result<Vec<Tensor>, String> {
    let (a, b) = (ctx.input(0)?, ctx.input(3)?);
    let (av, sa) = qoperand(a, ctx.input(1)?, ctx.opt_input(2))?;
    let (bv, sb) = qoperand(b, ctx.input(4)?, ctx.opt_input(5))?;
    if a.dtype != b.dtype {
        return Err(format!("operand types differ: {} vs {}", a.dtype, b.dtype));
    }
    let c_scale = ctx.input(6)?;
    let c_zp = ctx.opt_input(7);
    if c_scale.len() != 1 || c_zp.is_some_and(|z| z.len() != 1 || z.dtype != a.dtype) {
        return Err(
            "C_scale and C_zero_point must be per-tensor scalars of the operand's type".into(),
        );
    }
    let sc = c_scale.get_f64(0) as f32;
    let zc = c_zp.map_or(0, |z| z.get_i64(0));
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let (ia, ib) = (
        broadcast_index_map(&a.shape, &shape),
        broadcast_index_map(&b.shape, &shape),
    );
    let v: Vec<i64> = ia
        .iter()
        .zip(&ib)
        .map(|(&i, &j)| requant8(f(av[i] as f32, bv[j] as f32, sa, sb, sc), zc, a.dtype))
        .collect();
    Ok(vec![Tensor::from_i64(a.dtype, shape, &v)])
}

const QLINEAR_BINARY_OPERANDS: &[OperandSpec] = &[
    req("a"),
    req("a_scale"),
    opt("a_zero_point"),
    req("b"),
    req("b_scale"),
    opt("b_zero_point"),
    req("c_scale"),
    opt("c_zero_point"),
];

fn infer_qlinear_binary(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let (a, b) = (ctx.input(0)?, ctx.input(3)?);
    Ok(vec![TensorType::new(
        broadcast_all([a.shape.as_slice(), b.shape.as_slice()])?,
        a.dtype(),
    )])
}

pub static QLINEAR_ADD: OpDef = OpDef {
    mnemonic: "ms.qlinear_add",
    summary: "Quantized a + b: (sa (a - za) + sb (b - zb)) / sc + zc, broadcast",
    operands: QLINEAR_BINARY_OPERANDS,
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: infer_qlinear_binary,
    eval: Some(|ctx| eval_qlinear_binary(ctx, |a, b, sa, sb, sc| a * (sa / sc) + b * (sb / sc))),
};

pub static QLINEAR_MUL: OpDef = OpDef {
    mnemonic: "ms.qlinear_mul",
    summary: "Quantized a * b: (a - za)(b - zb) sa sb / sc + zc, broadcast",
    operands: QLINEAR_BINARY_OPERANDS,
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: infer_qlinear_binary,
    eval: Some(|ctx| eval_qlinear_binary(ctx, |a, b, sa, sb, sc| a * b * (sa * sb / sc))),
};

pub static QLINEAR_SOFTMAX: OpDef = OpDef {
    mnemonic: "ms.qlinear_softmax",
    summary: "Softmax on quantized data (opset < 13: over the dims from axis on; else along axis)",
    operands: &[
        req("x"),
        req("x_scale"),
        opt("x_zero_point"),
        req("y_scale"),
        req("y_zero_point"),
    ],
    results: Results::Fixed(1),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(-1)),
        attr("opset", AttrKind::Int, Default::Required),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        Ok(vec![x.with_dtype(ctx.input(4)?.dtype())])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let (xv, sx) = qoperand(x, ctx.input(1)?, ctx.opt_input(2))?;
        let (ys, yz) = (ctx.input(3)?, ctx.input(4)?);
        if ys.len() != 1 || yz.len() != 1 || !matches!(yz.dtype, DType::U8 | DType::I8) {
            return Err("y_scale and y_zero_point must be scalars (u8 or i8)".into());
        }
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        // (outer, reduced, inner) extents.
        let (outer, n, inner) = if ctx.int("opset")? < 13 {
            (
                x.shape[..axis].iter().product::<usize>(),
                x.shape[axis..].iter().product::<usize>(),
                1,
            )
        } else {
            (
                x.shape[..axis].iter().product(),
                x.shape[axis],
                x.shape[axis + 1..].iter().product(),
            )
        };
        let (sy, zy) = (ys.get_f64(0), yz.get_i64(0));
        let mut out = vec![0i64; x.len()];
        let mut row = vec![0f64; n];
        for o in 0..outer {
            for i in 0..inner {
                for (k, r) in row.iter_mut().enumerate() {
                    *r = xv[(o * n + k) * inner + i] as f64 * sx as f64;
                }
                softmax_range(&mut row, 0, n, None);
                for (k, &p) in row.iter().enumerate() {
                    out[(o * n + k) * inner + i] = requant8((p / sy) as f32, zy, yz.dtype);
                }
            }
        }
        Ok(vec![Tensor::from_i64(yz.dtype, x.shape.clone(), &out)])
    }),
};

// ---------------------------------------------------------------------------
// Integer matmuls with float results
// ---------------------------------------------------------------------------

/// `acc * (a_scale * b_scale[col]) + bias[col]` in f32, the i32 product of
/// the zero-point-shifted operands scaled back to floats.
fn scale_accumulators(
    acc: &[i32],
    shape: &[usize],
    a_scale: &[f64],
    b_scale: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Vec<f64>, String> {
    let n = shape.last().copied().unwrap_or(1);
    let bs = b_scale.to_f64_vec();
    if bs.len() != 1 && bs.len() != n {
        return Err(format!(
            "b_scale must be a scalar or have {n} values, got {:?}",
            b_scale.shape
        ));
    }
    let bias = match bias {
        Some(b) => {
            expect_len("bias", b, n)?;
            Some(b.to_f64_vec())
        }
        None => None,
    };
    if a_scale.len() != 1 {
        return Err("a_scale must be a scalar".into());
    }
    Ok(acc
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let col = i % n.max(1);
            let s = a_scale[0] as f32 * bs[if bs.len() == 1 { 0 } else { col }] as f32;
            let y = v as f32 * s;
            (bias.as_ref().map_or(y, |b| y + b[col] as f32)) as f64
        })
        .collect())
}

pub static DYNAMIC_QUANTIZE_MATMUL: OpDef = OpDef {
    mnemonic: "ms.dynamic_quantize_matmul",
    summary:
        "A (f32, quantized to u8 per tensor on the fly) @ B (8-bit) scaled back to f32, + bias",
    operands: &[
        req("a"),
        req("b"),
        req("b_scale"),
        opt("b_zero_point"),
        opt("bias"),
    ],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        Ok(vec![TensorType::new(
            super::linalg::matmul_shape(&a.shape, &b.shape)?,
            a.dtype(),
        )])
    },
    eval: Some(|ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        if a.dtype != DType::F32 || !matches!(b.dtype, DType::U8 | DType::I8) {
            return Err(format!(
                "A must be f32 and B 8-bit, got {} and {}",
                a.dtype, b.dtype
            ));
        }
        let av = a.to_f32_vec();
        let (sa, za) = dynamic_qparams_u8(&av);
        let aq: Vec<i32> = av
            .iter()
            .map(|&v| ((v / sa).round_ties_even() + za as f32).clamp(0.0, 255.0) as i32 - za as i32)
            .collect();
        let bv = sub_zero_point(b, ctx.opt_input(3), false)?;
        let (acc, shape) = matmul_i32(&aq, &a.shape, &bv, &b.shape)?;
        let y = scale_accumulators(&acc, &shape, &[sa as f64], ctx.input(2)?, ctx.opt_input(4))?;
        Ok(vec![Tensor::from_f64(DType::F32, shape, &y)])
    }),
};

pub static MATMUL_INTEGER_TO_FLOAT: OpDef = OpDef {
    mnemonic: "ms.matmul_integer_to_float",
    summary:
        "(A - a_zp) @ (B - b_zp) * a_scale * b_scale + bias, with 8-bit operands and a float result",
    operands: &[
        req("a"),
        req("b"),
        req("a_scale"),
        req("b_scale"),
        opt("a_zero_point"),
        opt("b_zero_point"),
        opt("bias"),
    ],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        Ok(vec![TensorType::new(
            super::linalg::matmul_shape(&a.shape, &b.shape)?,
            ctx.input(2)?.dtype(),
        )])
    },
    eval: Some(|ctx| {
        let (a, b, a_scale) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        for t in [a, b] {
            if !matches!(t.dtype, DType::U8 | DType::I8) {
                return Err(format!("A and B must be 8-bit, got {}", t.dtype));
            }
        }
        check_float("a_scale", a_scale)?;
        let av = sub_zero_point(a, ctx.opt_input(4), false)?;
        let bv = sub_zero_point(b, ctx.opt_input(5), false)?;
        let (acc, shape) = matmul_i32(&av, &a.shape, &bv, &b.shape)?;
        let y = scale_accumulators(
            &acc,
            &shape,
            &a_scale.to_f64_vec(),
            ctx.input(3)?,
            ctx.opt_input(6),
        )?;
        Ok(vec![Tensor::from_f64(a_scale.dtype, shape, &y)])
    }),
};

// ---------------------------------------------------------------------------
// com.microsoft QuantizeLinear / DequantizeLinear
// ---------------------------------------------------------------------------

pub static MS_QUANTIZE_LINEAR: OpDef = OpDef {
    mnemonic: "ms.quantize_linear",
    summary: "QuantizeLinear of the com.microsoft domain (per tensor or per axis)",
    operands: &[req("x"), req("y_scale"), opt("y_zero_point")],
    results: Results::Fixed(1),
    attrs: &[attr("axis", AttrKind::Int, Default::Int(1))],
    traits: &[],
    infer: |ctx| {
        let z = ctx.opt_input(2).map_or(DType::U8, TensorType::dtype);
        Ok(vec![ctx.input(0)?.with_dtype(z)])
    },
    eval: Some(eval_quantize),
};

pub static MS_DEQUANTIZE_LINEAR: OpDef = OpDef {
    mnemonic: "ms.dequantize_linear",
    summary: "DequantizeLinear of the com.microsoft domain (per tensor or per axis)",
    operands: &[req("x"), req("x_scale"), opt("x_zero_point")],
    results: Results::Fixed(1),
    attrs: &[attr("axis", AttrKind::Int, Default::Int(1))],
    traits: &[],
    infer: |ctx| Ok(vec![ctx.input(0)?.with_dtype(ctx.input(1)?.dtype())]),
    eval: Some(eval_dequantize),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::elementwise::erf;
    use crate::ops::testing::run;
    use crate::tensor::Data;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn erf_matches_known_values() {
        // scipy.special.erf
        close(
            &[erf(0.5), erf(-1.0), erf(2.4), erf(2.6), erf(4.0)],
            &[
                0.5204998778130465,
                -0.8427007929497149,
                0.9993114861033549,
                0.9997639655834707,
                0.9999999845827421,
            ],
            1e-14,
        );
    }

    #[test]
    fn gelus() {
        let x = Tensor::f32(vec![3], vec![-1.0, 0.5, 2.0]);
        // torch.nn.functional.gelu(x) and gelu(x, approximate='tanh')
        let y = run(&GELU, &[Some(&x)], &[], 1).unwrap();
        close(
            &y[0].to_f64_vec(),
            &[-0.15865525, 0.34573123, 1.9544997],
            1e-6,
        );
        let y = run(&FAST_GELU, &[Some(&x), None], &[], 1).unwrap();
        close(
            &y[0].to_f64_vec(),
            &[-0.15880801, 0.34571401, 1.9545977],
            1e-6,
        );
        let y = run(&QUICK_GELU, &[Some(&x)], &[], 1).unwrap();
        // x * sigmoid(1.702 x)
        close(
            &y[0].to_f64_vec(),
            &[-0.15420423, 0.35038844, 1.9356586],
            1e-6,
        );
    }

    #[test]
    fn matmul_nbits_4bit_default_zero_point() {
        // K = 16, N = 1, block 16: codes 0..15 (low nibble first), zero point 8, scale 0.5.
        let codes: Vec<u8> = (0..8)
            .map(|i| (2 * i) as u8 | ((2 * i + 1) as u8) << 4)
            .collect();
        let b = Tensor::new(DType::U8, vec![1, 1, 8], Data::U8(codes)).unwrap();
        let scales = Tensor::f32(vec![1, 1], vec![0.5]);
        let a = Tensor::f32(vec![1, 16], vec![1.0; 16]);
        let attrs = [
            ("K", Attr::Int(16)),
            ("N", Attr::Int(1)),
            ("block_size", Attr::Int(16)),
        ];
        let y = run(
            &MATMUL_NBITS,
            &[Some(&a), Some(&b), Some(&scales), None, None, None],
            &attrs,
            1,
        )
        .unwrap();
        // sum((c - 8) * 0.5) for c in 0..16 = 0.5 * (120 - 128) = -4
        assert_eq!(y[0].to_f64_vec(), vec![-4.0]);
        assert_eq!(y[0].shape, vec![1, 1]);
    }

    #[test]
    fn skip_layer_norm_outputs() {
        let x = Tensor::f32(vec![1, 1, 2], vec![1.0, 3.0]);
        let skip = Tensor::f32(vec![1, 1, 2], vec![1.0, 1.0]);
        let gamma = Tensor::f32(vec![2], vec![1.0, 2.0]);
        let beta = Tensor::f32(vec![2], vec![0.0, 1.0]);
        let y = run(
            &SKIP_LAYER_NORMALIZATION,
            &[Some(&x), Some(&skip), Some(&gamma), Some(&beta), None],
            &[("epsilon", Attr::Float(0.0))],
            4,
        )
        .unwrap();
        // sum [2, 4]: mean 3, std 1 -> [-1, 1] * gamma + beta = [-1, 3]
        close(&y[0].to_f64_vec(), &[-1.0, 3.0], 1e-7);
        assert_eq!(y[1].to_f64_vec(), vec![3.0]);
        assert_eq!(y[2].to_f64_vec(), vec![1.0]);
        assert_eq!(y[3].to_f64_vec(), vec![2.0, 4.0]);
    }

    #[test]
    fn rotary_rotates_pairs() {
        // One head of size 2 at position 1 with angle 90 degrees: (1, 0) -> (0, 1).
        let x = Tensor::f32(vec![1, 1, 2], vec![1.0, 0.0]);
        let pos = Tensor::i64(vec![1], vec![1]);
        let cos = Tensor::f32(vec![2, 1], vec![1.0, 0.0]);
        let sin = Tensor::f32(vec![2, 1], vec![0.0, 1.0]);
        let y = run(
            &ROTARY_EMBEDDING,
            &[Some(&x), Some(&pos), Some(&cos), Some(&sin)],
            &[],
            1,
        )
        .unwrap();
        close(&y[0].to_f64_vec(), &[0.0, 1.0], 1e-7);
    }

    #[test]
    fn qlinear_add_requantizes() {
        let a = Tensor::new(DType::U8, vec![2], Data::U8(vec![10, 20])).unwrap();
        let b = Tensor::new(DType::U8, vec![2], Data::U8(vec![4, 6])).unwrap();
        let one = Tensor::f32(vec![], vec![1.0]);
        let half = Tensor::f32(vec![], vec![0.5]);
        let zp = Tensor::new(DType::U8, vec![], Data::U8(vec![2])).unwrap();
        // (10-2)*1 + (4-2)*0.5 = 9, /0.5 = 18 (+2) = 20; (18 + 2) / 0.5 = 40 + 2 = 42
        let y = run(
            &QLINEAR_ADD,
            &[
                Some(&a),
                Some(&one),
                Some(&zp),
                Some(&b),
                Some(&half),
                Some(&zp),
                Some(&half),
                Some(&zp),
            ],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(y[0].to_i64_vec(), vec![20, 42]);
    }

    #[test]
    fn gqa_causal_prompt() {
        // One head of size 2, two tokens. Query 0 sees key 0 only; query 1 has a
        // zero query, so it weighs keys 0 and 1 equally.
        let q = Tensor::f32(vec![1, 2, 2], vec![1.0, 0.0, 0.0, 0.0]);
        let k = Tensor::f32(vec![1, 2, 2], vec![1.0, 1.0, 2.0, 2.0]);
        let v = Tensor::f32(vec![1, 2, 2], vec![1.0, 2.0, 3.0, 6.0]);
        let seqlens = Tensor::from_i64(DType::I32, vec![1], &[1]);
        let total = Tensor::from_i64(DType::I32, vec![], &[2]);
        let ins = [
            Some(&q),
            Some(&k),
            Some(&v),
            None,
            None,
            Some(&seqlens),
            Some(&total),
        ];
        let attrs = [("num_heads", Attr::Int(1)), ("kv_num_heads", Attr::Int(1))];
        let y = run(&GROUP_QUERY_ATTENTION, &ins, &attrs, 3).unwrap();
        close(&y[0].to_f64_vec(), &[1.0, 2.0, 2.0, 4.0], 1e-7);
        assert_eq!(y[1].shape, vec![1, 1, 2, 2]);
        assert_eq!(y[1].to_f64_vec(), k.to_f64_vec());
    }

    #[test]
    fn infer_keeps_symbolic_dims() {
        let attrs: Attrs = [("num_heads", Attr::Int(4)), ("kv_num_heads", Attr::Int(2))]
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let (b, s, p) = (Dim::sym("batch"), Dim::sym("seq"), Dim::sym("past"));
        let q = TensorType::new(vec![b.clone(), s.clone(), Dim::fixed(64)], DType::F32);
        let kv = TensorType::new(vec![b.clone(), s.clone(), Dim::fixed(32)], DType::F32);
        let past = TensorType::new(
            vec![b.clone(), Dim::fixed(2), p, Dim::fixed(16)],
            DType::F32,
        );
        let m = TensorType::new(vec![b.clone()], DType::I32);
        let t = TensorType::scalar(DType::I32);
        let ctx = InferCtx {
            def: &GROUP_QUERY_ATTENTION,
            attrs: &attrs,
            operands: vec![
                Some(&q),
                Some(&kv),
                Some(&kv),
                Some(&past),
                Some(&past),
                Some(&m),
                Some(&t),
            ],
            consts: vec![],
            syms: Vec::new(),
            num_results: 3,
        };
        let r = (GROUP_QUERY_ATTENTION.infer)(&ctx).unwrap();
        assert_eq!(r[0].to_string(), "tensor<[batch]x[seq]x64xf32>");
        assert_eq!(r[1].to_string(), "tensor<[batch]x2x[past+seq]x16xf32>");

        let attrs: Attrs = [
            ("K", Attr::Int(64)),
            ("N", Attr::Int(10)),
            ("block_size", Attr::Int(32)),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
        let ctx = InferCtx {
            def: &MATMUL_NBITS,
            attrs: &attrs,
            operands: vec![Some(&q)],
            consts: vec![],
            syms: Vec::new(),
            num_results: 1,
        };
        assert_eq!(
            (MATMUL_NBITS.infer)(&ctx).unwrap()[0].to_string(),
            "tensor<[batch]x[seq]x10xf32>"
        );
    }
}
