//! SkipLayerNormalization, SkipSimplifiedLayerNormalization,
//! SimplifiedLayerNormalization and EmbedLayerNormalization: adds (or
//! embedding gathers) feeding the core layer / RMS normalization, plus the
//! statistics outputs the core ops do not give.

use super::rewriter::{attrs, Rewriter};
use tessera_ir::{Attr, DType, Dim, OpKind, Tensor, ValueId};

/// The contrib ops read epsilon as the model's f32.
fn epsilon(rw: &Rewriter) -> Result<f64, String> {
    Ok(rw.float("epsilon")? as f32 as f64)
}

/// Operand `i` as an `[h]` vector (it must have `h` elements).
fn vector(rw: &mut Rewriter, i: usize, name: &str, h: usize) -> Result<Option<ValueId>, String> {
    let Some(v) = rw.opt(i) else { return Ok(None) };
    let n: usize = rw.shape(v)?.iter().product();
    if n != h {
        return Err(format!(
            "{name} must have {h} elements, got shape {:?}",
            rw.shape(v)?
        ));
    }
    rw.reshape(v, &[h]).map(Some)
}

/// Whether `small` (leading 1s aside) is a suffix of `big`: then numpy
/// broadcasting repeats it exactly as the contrib kernels' cyclic indexing.
fn repeats_as_suffix<D: PartialEq>(small: &[D], big: &[D], one: &D) -> bool {
    let first = small.iter().position(|d| d != one).unwrap_or(small.len());
    let core = &small[first..];
    core.len() <= big.len() && big.ends_with(core)
}

/// `1 / sqrt(mean(v^2 over axes) + eps)` in `stash`, the axes kept as 1s.
fn inv_rms(
    rw: &mut Rewriter,
    v: ValueId,
    axes: &[i64],
    eps: f64,
    stash: DType,
) -> Result<ValueId, String> {
    let vf = rw.cast(v, stash)?;
    let sq = rw.bin(OpKind::Mul, vf, vf)?;
    let ms = rw.reduce(OpKind::ReduceMean, sq, axes, true)?;
    let e = rw.scalar(stash, eps);
    let var = rw.bin(OpKind::Add, ms, e)?;
    let sd = rw.emit(OpKind::Sqrt, &[var], Default::default())?;
    rw.emit(OpKind::Reciprocal, &[sd], Default::default())
}

/// `input + skip (+ bias)` and the width of the normalized rows.
fn skip_sum(rw: &mut Rewriter, bias_at: usize) -> Result<(ValueId, usize), String> {
    let (x, skip) = (rw.req(0, "input")?, rw.req(1, "skip")?);
    if !rw.dtype(x).is_float() {
        return Err(format!("input must be a float tensor, got {}", rw.dtype(x)));
    }
    // Dims compare symbolically: the pass may run before shapes are bound.
    let (xs, ss) = (rw.dims(x), rw.dims(skip));
    let h = xs
        .last()
        .and_then(Dim::as_fixed)
        .ok_or("input must end in a static hidden size")? as usize;
    let unknown = xs.iter().chain(&ss).any(|d| *d == Dim::Unknown);
    // skip is [B,S,H], [1,S,H] or [S,H]: it repeats over the batch.
    if unknown || ss.last() != xs.last() || !repeats_as_suffix(&ss, &xs, &Dim::fixed(1)) {
        return Err(format!(
            "skip of shape {} does not match input {}",
            rw.type_text(skip),
            rw.type_text(x)
        ));
    }
    let mut sum = rw.bin(OpKind::Add, x, skip)?;
    if let Some(b) = vector(rw, bias_at, "bias", h)? {
        sum = rw.bin(OpKind::Add, sum, b)?;
    }
    Ok((sum, h))
}

pub fn skip_layer_norm(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let (sum, h) = skip_sum(rw, 4)?;
    let gamma = vector(rw, 2, "gamma", h)?.ok_or("operand gamma is required")?;
    let beta = vector(rw, 3, "beta", h)?;
    let n = rw.results();
    let mut outs = rw.emit_n(
        OpKind::LayerNormalization,
        &[Some(sum), Some(gamma), beta],
        attrs(&[
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(epsilon(rw)?)),
        ]),
        n.min(3),
    )?;
    if n > 3 {
        outs.push(sum);
    }
    Ok(outs)
}

pub fn skip_simplified_layer_norm(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let (sum, h) = skip_sum(rw, 3)?;
    let gamma = vector(rw, 2, "gamma", h)?.ok_or("operand gamma is required")?;
    let eps = epsilon(rw)?;
    let y = rw.emit(
        OpKind::RmsNormalization,
        &[sum, gamma],
        attrs(&[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))]),
    )?;
    let mut outs = vec![y];
    let n = rw.results();
    if n > 1 {
        // RMSNorm subtracts no mean: the mean output is all zeros.
        let mut stat = rw.shape(sum)?;
        if let Some(l) = stat.last_mut() {
            *l = 1;
        }
        let count = stat.iter().product();
        outs.push(rw.tensor(Tensor::from_f64(DType::F32, stat, &vec![0.0; count])));
    }
    if n > 2 {
        outs.push(inv_rms(rw, sum, &[-1], eps, DType::F32)?);
    }
    if n > 3 {
        outs.push(sum);
    }
    Ok(outs)
}

pub fn simplified_layer_norm(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let (x, scale) = (rw.req(0, "x")?, rw.req(1, "scale")?);
    let dt = rw.dtype(x);
    if !dt.is_float() {
        return Err(format!("x must be a float tensor, got {dt}"));
    }
    let xs = rw.shape(x)?;
    let rank = xs.len() as i64;
    let axis = rw.int("axis")?;
    let axis = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&axis) {
        return Err(format!(
            "axis {} is out of range for rank {rank}",
            rw.int("axis")?
        ));
    }
    let normalized = &xs[axis as usize..];
    if !repeats_as_suffix(&rw.shape(scale)?, normalized, &1) {
        return Err(format!(
            "scale of shape {:?} does not broadcast over the normalized dims {normalized:?}",
            rw.shape(scale)?
        ));
    }
    let eps = rw.float("epsilon")? as f32 as f64;
    let y = rw.emit(
        OpKind::RmsNormalization,
        &[x, scale],
        attrs(&[("axis", Attr::Int(axis)), ("epsilon", Attr::Float(eps))]),
    )?;
    let mut outs = vec![y];
    if rw.results() > 1 {
        let stash = if dt == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let axes: Vec<i64> = (axis..rank).collect();
        outs.push(inv_rms(rw, x, &axes, eps, stash)?);
    }
    Ok(outs)
}

/// Rows of `table` ([rows, h]) at `ids`.
fn lookup(
    rw: &mut Rewriter,
    table: ValueId,
    ids: ValueId,
    what: &str,
    h: usize,
) -> Result<ValueId, String> {
    let ts = rw.shape(table)?;
    if ts.len() != 2 || ts[1] != h {
        return Err(format!("{what} table must be [rows, {h}], got {ts:?}"));
    }
    rw.emit(
        OpKind::Gather,
        &[table, ids],
        attrs(&[("axis", Attr::Int(0))]),
    )
}

pub fn embed_layer_norm(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let ids = rw.req(0, "input_ids")?;
    let (word, pos) = (
        rw.req(2, "word_embedding")?,
        rw.req(3, "position_embedding")?,
    );
    let is = rw.shape(ids)?;
    let ws = rw.shape(word)?;
    if is.len() != 2 || ws.len() != 2 {
        return Err("input_ids and the embedding tables must be 2-D".into());
    }
    if !rw.dtype(word).is_float() {
        return Err(format!(
            "word_embedding must be a float tensor, got {}",
            rw.dtype(word)
        ));
    }
    let (b, s, h) = (is[0], is[1], ws[1]);
    let gamma = vector(rw, 5, "gamma", h)?.ok_or("operand gamma is required")?;
    let beta = vector(rw, 6, "beta", h)?.ok_or("operand beta is required")?;
    let w = lookup(rw, word, ids, "word", h)?;
    let pids = match rw.opt(8) {
        Some(p) => {
            let ps = rw.shape(p)?;
            if ps != [b, s] && ps != [1, s] && ps != [s] {
                return Err(format!(
                    "position_ids of shape {ps:?} must be [batch, seq] or [1, seq]"
                ));
            }
            p
        }
        None => {
            let r: Vec<i64> = (0..s as i64).collect();
            rw.i64s(&[s], &r)
        }
    };
    let p = lookup(rw, pos, pids, "position", h)?;
    let mut sum = rw.bin(OpKind::Add, w, p)?;
    // Segments count only when both their ids and their table are given.
    if let (Some(si), Some(se)) = (rw.opt(1), rw.opt(4)) {
        if rw.shape(si)? != is {
            return Err(format!(
                "segment_ids must be [{b}, {s}], got {:?}",
                rw.shape(si)?
            ));
        }
        let e = lookup(rw, se, si, "segment", h)?;
        sum = rw.bin(OpKind::Add, sum, e)?;
    }
    let y = rw.emit(
        OpKind::LayerNormalization,
        &[sum, gamma, beta],
        attrs(&[
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(epsilon(rw)?)),
        ]),
    )?;
    let mut outs = vec![y];
    if rw.results() > 1 {
        // mask_index: the number of nonzero mask entries of each row.
        outs.push(match rw.opt(7) {
            Some(m) => {
                if rw.shape(m)?.iter().product::<usize>() != b * s {
                    return Err(format!(
                        "mask must have {} elements, got shape {:?}",
                        b * s,
                        rw.shape(m)?
                    ));
                }
                let m = rw.reshape(m, &[b, s])?;
                let nz = rw.cast(m, DType::Bool)?;
                let ones = rw.cast(nz, DType::I32)?;
                rw.reduce(OpKind::ReduceSum, ones, &[1], false)?
            }
            None => rw.tensor(Tensor::from_i64(DType::I32, vec![b], &vec![0; b])),
        });
    }
    if rw.results() > 2 {
        outs.push(sum);
    }
    Ok(outs)
}
