//! Normalizations: LayerNormalization, RMSNormalization, GroupNormalization,
//! InstanceNormalization, BatchNormalization, LpNormalization,
//! MeanVarianceNormalization and LRN. All compute in f64 and round once.

use super::{float_dtype, float_values, for_each_lane, usize_list};
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::ops::util::{broadcast_index_map, broadcast_shapes, norm_axis};
use crate::ops::*;

/// Values of a parameter operand (scale, bias) laid out over `x_shape`
/// by unidirectional broadcasting.
fn param_over(p: &Tensor, x_shape: &[usize], what: &str) -> Result<Vec<f64>, String> {
    let v = float_values(p, what)?;
    if p.rank() > x_shape.len() || broadcast_shapes(&p.shape, x_shape)? != x_shape {
        return Err(format!(
            "{what} of shape {:?} does not broadcast to the input {:?}",
            p.shape, x_shape
        ));
    }
    Ok(broadcast_index_map(&p.shape, x_shape)
        .into_iter()
        .map(|i| v[i])
        .collect())
}

/// A per-channel parameter vector of length `c`.
fn per_channel(p: &Tensor, c: usize, what: &str) -> Result<Vec<f64>, String> {
    let v = float_values(p, what)?;
    if v.len() != c {
        return Err(format!(
            "{what} has {} elements, expected {c} (one per channel)",
            v.len()
        ));
    }
    Ok(v)
}

/// (N, C, spatial size) of an NC... tensor.
fn nc_layout(shape: &[usize]) -> Result<(usize, usize, usize), String> {
    if shape.len() < 2 {
        return Err(format!(
            "input must have rank >= 2 (N x C x ...), got shape {shape:?}"
        ));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

/// Mean and 1/sqrt(var + eps) of a slice (population variance).
fn moments(v: &[f64], eps: f64) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|&e| (e - mean) * (e - mean)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// The dtype of LayerNormalization's Mean and InvStdDev: f32 when the
/// statistics are stashed in f32 (stash_type 1), else the input type.
fn stash_dtype(x: DType, stash_type: i64) -> DType {
    match (x, stash_type) {
        (DType::F64, _) => DType::F64,
        (_, 1) => DType::F32,
        (d, _) => d,
    }
}

/// Shape of the statistics of a normalization over axes `axis..`.
fn stats_dims(shape: &[Dim], axis: usize) -> Vec<Dim> {
    shape
        .iter()
        .enumerate()
        .map(|(i, d)| if i < axis { d.clone() } else { Dim::fixed(1) })
        .collect()
}

pub static LAYER_NORMALIZATION: OpDef = OpDef {
    mnemonic: "layer_normalization",
    summary: "(x - mean) / sqrt(var + epsilon) * scale + bias over the axes from `axis` on",
    operands: &[req("x"), req("scale"), opt("bias")],
    results: Results::Range(1, 3),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(-1)),
        attr("epsilon", AttrKind::Float, Default::Float(1e-5)),
        attr("stash_type", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let d = float_dtype(x, "x")?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let stats = TensorType::new(
            stats_dims(&x.shape, axis),
            stash_dtype(d, ctx.int("stash_type")?),
        );
        let mut out = vec![x.clone(), stats.clone(), stats];
        out.truncate(ctx.num_results);
        Ok(out)
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let eps = ctx.float("epsilon")?;
        let scale = param_over(ctx.input(1)?, &x.shape, "scale")?;
        let bias = ctx
            .opt_input(2)
            .map(|b| param_over(b, &x.shape, "bias"))
            .transpose()?;
        let cols: usize = x.shape[axis..].iter().product();
        let rows = v.len().checked_div(cols).unwrap_or(0);
        let mut y = vec![0f64; v.len()];
        let (mut means, mut invs) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for r in 0..rows {
            let span = r * cols..(r + 1) * cols;
            let (mean, inv) = moments(&v[span.clone()], eps);
            for i in span {
                y[i] = (v[i] - mean) * inv * scale[i] + bias.as_ref().map_or(0.0, |b| b[i]);
            }
            means.push(mean);
            invs.push(inv);
        }
        let stat_shape: Vec<usize> = x
            .shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i < axis { d } else { 1 })
            .collect();
        let sd = stash_dtype(x.dtype, ctx.int("stash_type")?);
        let mut out = vec![
            Tensor::from_f64(x.dtype, x.shape.clone(), &y),
            Tensor::from_f64(sd, stat_shape.clone(), &means),
            Tensor::from_f64(sd, stat_shape, &invs),
        ];
        out.truncate(ctx.num_results);
        Ok(out)
    }),
};

pub static RMS_NORMALIZATION: OpDef = OpDef {
    mnemonic: "rms_normalization",
    summary: "x / sqrt(mean(x^2) + epsilon) * scale over the axes from `axis` on",
    operands: &[req("x"), req("scale")],
    results: Results::Fixed(1),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(-1)),
        attr("epsilon", AttrKind::Float, Default::Float(1e-5)),
        attr("stash_type", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        float_dtype(x, "x")?;
        norm_axis(ctx.int("axis")?, x.rank())?;
        Ok(vec![x.clone()])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let eps = ctx.float("epsilon")?;
        let scale = param_over(ctx.input(1)?, &x.shape, "scale")?;
        let cols: usize = x.shape[axis..].iter().product();
        let mut y = vec![0f64; v.len()];
        if cols > 0 {
            for (r, row) in v.chunks(cols).enumerate() {
                let ms = row.iter().map(|&e| e * e).sum::<f64>() / cols as f64;
                let inv = 1.0 / (ms + eps).sqrt();
                for (i, &e) in row.iter().enumerate() {
                    y[r * cols + i] = e * inv * scale[r * cols + i];
                }
            }
        }
        Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &y)])
    }),
};

/// Normalizes contiguous chunks of `chunk` elements and applies per-channel
/// scale and bias, where channel `c` covers `spatial` consecutive elements.
fn normalize_chunks(
    v: &[f64],
    chunk: usize,
    spatial: usize,
    channels: usize,
    eps: f64,
    scale: impl Fn(usize) -> f64,
    bias: impl Fn(usize) -> f64,
) -> Vec<f64> {
    let mut y = vec![0f64; v.len()];
    if chunk == 0 || spatial == 0 {
        return y;
    }
    for (k, part) in v.chunks(chunk).enumerate() {
        let (mean, inv) = moments(part, eps);
        for (i, &e) in part.iter().enumerate() {
            let flat = k * chunk + i;
            let c = (flat / spatial) % channels;
            y[flat] = (e - mean) * inv * scale(c) + bias(c);
        }
    }
    y
}

fn infer_same_float(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    float_dtype(x, "x")?;
    if x.rank() < 2 {
        return Err(format!(
            "x must have rank >= 2 (N x C x ...), got rank {}",
            x.rank()
        ));
    }
    Ok(vec![x.clone()])
}

pub static GROUP_NORMALIZATION: OpDef = OpDef {
    mnemonic: "group_normalization",
    summary: "Normalizes each group of channels, then applies per-channel scale and bias",
    operands: &[req("x"), req("scale"), req("bias")],
    results: Results::Fixed(1),
    attrs: &[
        attr("num_groups", AttrKind::Int, Default::Required),
        attr("epsilon", AttrKind::Float, Default::Float(1e-5)),
        attr("stash_type", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[],
    infer: infer_same_float,
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let (_, c, spatial) = nc_layout(&x.shape)?;
        let g = usize::try_from(ctx.int("num_groups")?)
            .ok()
            .filter(|&g| g > 0 && c % g == 0)
            .ok_or_else(|| format!("num_groups must divide the {c} channels"))?;
        // Opset 21 takes one scale/bias per channel; opset 18 took one per
        // group, which is accepted too (expanded to its channels).
        let expand = |t: &Tensor, what: &str| -> Result<Vec<f64>, String> {
            let p = float_values(t, what)?;
            match p.len() {
                n if n == c => Ok(p),
                n if n == g => Ok((0..c).map(|ch| p[ch / (c / g)]).collect()),
                n => Err(format!("{what} has {n} elements, expected {c} (channels)")),
            }
        };
        let (scale, bias) = (
            expand(ctx.input(1)?, "scale")?,
            expand(ctx.input(2)?, "bias")?,
        );
        let chunk = c / g * spatial;
        let y = normalize_chunks(
            &v,
            chunk,
            spatial,
            c,
            ctx.float("epsilon")?,
            |i| scale[i],
            |i| bias[i],
        );
        Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &y)])
    }),
};

pub static INSTANCE_NORMALIZATION: OpDef = OpDef {
    mnemonic: "instance_normalization",
    summary: "Normalizes each channel of each sample over its spatial dims, then scale and bias",
    operands: &[req("x"), req("scale"), req("bias")],
    results: Results::Fixed(1),
    attrs: &[attr("epsilon", AttrKind::Float, Default::Float(1e-5))],
    traits: &[],
    infer: infer_same_float,
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let (_, c, spatial) = nc_layout(&x.shape)?;
        let scale = per_channel(ctx.input(1)?, c, "scale")?;
        let bias = per_channel(ctx.input(2)?, c, "bias")?;
        let y = normalize_chunks(
            &v,
            spatial,
            spatial,
            c,
            ctx.float("epsilon")?,
            |i| scale[i],
            |i| bias[i],
        );
        Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &y)])
    }),
};

pub static BATCH_NORMALIZATION: OpDef = OpDef {
    mnemonic: "batch_normalization",
    summary:
        "scale * (x - mean) / sqrt(var + epsilon) + bias per channel (running or batch statistics)",
    operands: &[
        req("x"),
        req("scale"),
        req("bias"),
        req("input_mean"),
        req("input_var"),
    ],
    results: Results::Range(1, 3),
    attrs: &[
        attr("epsilon", AttrKind::Float, Default::Float(1e-5)),
        attr("momentum", AttrKind::Float, Default::Float(0.9)),
        attr("training_mode", AttrKind::Int, Default::Int(0)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        float_dtype(x, "x")?;
        if x.rank() < 1 {
            return Err("x must have rank >= 1".into());
        }
        if ctx.num_results > 1 && ctx.int("training_mode")? == 0 {
            return Err("running_mean and running_var outputs need training_mode = 1".into());
        }
        let mean = ctx.input(3)?;
        let stat = TensorType::new(
            vec![x.shape.get(1).cloned().unwrap_or(Dim::fixed(1))],
            mean.dtype(),
        );
        let mut out = vec![x.clone(), stat.clone(), stat];
        out.truncate(ctx.num_results);
        Ok(out)
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let (n, c, spatial) = match x.rank() {
            1 => (x.shape[0], 1, 1),
            _ => nc_layout(&x.shape)?,
        };
        let scale = per_channel(ctx.input(1)?, c, "scale")?;
        let bias = per_channel(ctx.input(2)?, c, "bias")?;
        let mean_t = ctx.input(3)?;
        let mut mean = per_channel(mean_t, c, "input_mean")?;
        let mut var = per_channel(ctx.input(4)?, c, "input_var")?;
        let eps = ctx.float("epsilon")?;
        let training = ctx.int("training_mode")? != 0;
        let mut running = None;
        if training {
            // Batch statistics (population variance) normalize the batch; the
            // running statistics are blended with `momentum`.
            let count = (n * spatial).max(1) as f64;
            let at = |b: usize, ch: usize, s: usize| v[(b * c + ch) * spatial + s];
            let bmean: Vec<f64> = (0..c)
                .map(|ch| {
                    (0..n)
                        .flat_map(|b| (0..spatial).map(move |s| (b, s)))
                        .map(|(b, s)| at(b, ch, s))
                        .sum::<f64>()
                        / count
                })
                .collect();
            let bvar: Vec<f64> = (0..c)
                .map(|ch| {
                    (0..n)
                        .flat_map(|b| (0..spatial).map(move |s| (b, s)))
                        .map(|(b, s)| (at(b, ch, s) - bmean[ch]).powi(2))
                        .sum::<f64>()
                        / count
                })
                .collect();
            let m = ctx.float("momentum")?;
            let blend = |old: &[f64], new: &[f64]| -> Vec<f64> {
                old.iter()
                    .zip(new)
                    .map(|(o, b)| o * m + b * (1.0 - m))
                    .collect()
            };
            running = Some((blend(&mean, &bmean), blend(&var, &bvar)));
            mean = bmean;
            var = bvar;
        }
        let y: Vec<f64> = v
            .iter()
            .enumerate()
            .map(|(i, &e)| {
                let ch = (i / spatial) % c;
                scale[ch] * (e - mean[ch]) / (var[ch] + eps).sqrt() + bias[ch]
            })
            .collect();
        let mut out = vec![Tensor::from_f64(x.dtype, x.shape.clone(), &y)];
        if ctx.num_results > 1 {
            let (rm, rv) =
                running.ok_or("running_mean and running_var outputs need training_mode = 1")?;
            out.push(Tensor::from_f64(mean_t.dtype, vec![c], &rm));
            out.push(Tensor::from_f64(mean_t.dtype, vec![c], &rv));
            out.truncate(ctx.num_results);
        }
        Ok(out)
    }),
};

pub static LP_NORMALIZATION: OpDef = OpDef {
    mnemonic: "lp_normalization",
    summary: "x / ||x||_p along `axis` (p is 1 or 2)",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(-1)),
        attr("p", AttrKind::Int, Default::Int(2)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        float_dtype(x, "input")?;
        norm_axis(ctx.int("axis")?, x.rank())?;
        if !matches!(ctx.int("p")?, 1 | 2) {
            return Err("p must be 1 or 2".into());
        }
        Ok(vec![x.clone()])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let mut v = float_values(x, "input")?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let p = ctx.int("p")?;
        if !matches!(p, 1 | 2) {
            return Err("p must be 1 or 2".into());
        }
        for_each_lane(&mut v, &x.shape, axis, |lane| {
            let norm = if p == 1 {
                lane.iter().map(|e| e.abs()).sum::<f64>()
            } else {
                lane.iter().map(|e| e * e).sum::<f64>().sqrt()
            };
            // An all-zero lane stays zero rather than becoming 0/0.
            if norm != 0.0 {
                lane.iter_mut().for_each(|e| *e /= norm);
            }
        });
        Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &v)])
    }),
};

pub static MEAN_VARIANCE_NORMALIZATION: OpDef = OpDef {
    mnemonic: "mean_variance_normalization",
    summary: "(x - mean) / (sqrt(var) + 1e-9) over `axes`",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[attr("axes", AttrKind::Ints, Default::Ints(&[0, 2, 3]))],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        float_dtype(x, "x")?;
        for a in ctx.ints("axes")? {
            norm_axis(a, x.rank())?;
        }
        Ok(vec![x.clone()])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let mut kept = x.shape.clone();
        for a in ctx.ints("axes")? {
            kept[norm_axis(a, x.rank())?] = 1;
        }
        // Each element's group is its index in the reduced (kept) shape.
        let group = broadcast_index_map(&kept, &x.shape);
        let groups: usize = kept.iter().product();
        let mut count = vec![0f64; groups];
        let mut mean = vec![0f64; groups];
        for (&g, &e) in group.iter().zip(&v) {
            count[g] += 1.0;
            mean[g] += e;
        }
        mean.iter_mut()
            .zip(&count)
            .for_each(|(m, &n)| *m /= n.max(1.0));
        let mut var = vec![0f64; groups];
        for (&g, &e) in group.iter().zip(&v) {
            var[g] += (e - mean[g]).powi(2);
        }
        var.iter_mut()
            .zip(&count)
            .for_each(|(s, &n)| *s /= n.max(1.0));
        let y: Vec<f64> = group
            .iter()
            .zip(&v)
            .map(|(&g, &e)| (e - mean[g]) / (var[g].sqrt() + 1e-9))
            .collect();
        Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &y)])
    }),
};

pub static LRN: OpDef = OpDef {
    mnemonic: "lrn",
    summary: "Local response normalization across channels",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[
        attr("alpha", AttrKind::Float, Default::Float(1e-4)),
        attr("beta", AttrKind::Float, Default::Float(0.75)),
        attr("bias", AttrKind::Float, Default::Float(1.0)),
        attr("size", AttrKind::Int, Default::Required),
    ],
    traits: &[],
    infer: infer_same_float,
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let (n, c, spatial) = nc_layout(&x.shape)?;
        let size = usize_list(Some(vec![ctx.int("size")?]), 1, 1, 1, "size")?[0];
        let (alpha, beta, bias) = (ctx.float("alpha")?, ctx.float("beta")?, ctx.float("bias")?);
        // The window covers channels [ch - floor((size-1)/2), ch + ceil((size-1)/2)].
        let (lo, hi) = ((size - 1) / 2, size / 2);
        let mut y = vec![0f64; v.len()];
        for b in 0..n {
            for ch in 0..c {
                for s in 0..spatial {
                    let sq: f64 = (ch.saturating_sub(lo)..(ch + hi + 1).min(c))
                        .map(|k| v[(b * c + k) * spatial + s].powi(2))
                        .sum();
                    let i = (b * c + ch) * spatial + s;
                    y[i] = v[i] / (bias + alpha / size as f64 * sq).powf(beta);
                }
            }
        }
        Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &y)])
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::ops::testing::run_all as run;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn layer_norm_rows() {
        // Row [1,2,3]: mean 2, var 2/3 -> inv 1/sqrt(2/3 + 0) = 1.2247449.
        let x = Tensor::f32(vec![2, 3], vec![1., 2., 3., 0., 0., 6.]);
        let s = Tensor::f32(vec![3], vec![1., 1., 2.]);
        let b = Tensor::f32(vec![3], vec![0., 1., 0.]);
        let out = run(
            &LAYER_NORMALIZATION,
            &[&x, &s, &b],
            &[("epsilon", Attr::Float(0.0))],
            3,
        );
        close(
            &out[0].to_f64_vec(),
            &[
                -1.2247449,
                1.0,
                2.4494897,
                -std::f64::consts::FRAC_1_SQRT_2,
                0.29289322,
                2.8284271,
            ],
            1e-6,
        );
        close(&out[1].to_f64_vec(), &[2.0, 2.0], 1e-6);
        assert_eq!(out[1].shape, vec![2, 1]);
        close(&out[2].to_f64_vec(), &[1.2247449, 1.0 / 8f64.sqrt()], 1e-6);
    }

    #[test]
    fn rms_norm_and_group_norm() {
        let x = Tensor::f32(vec![1, 2], vec![3., 4.]);
        let s = Tensor::f32(vec![2], vec![1., 2.]);
        // rms = sqrt(12.5)
        let y = run(
            &RMS_NORMALIZATION,
            &[&x, &s],
            &[("epsilon", Attr::Float(0.0))],
            1,
        );
        close(
            &y[0].to_f64_vec(),
            &[3. / 12.5f64.sqrt(), 8. / 12.5f64.sqrt()],
            1e-6,
        );

        // Two channels of two pixels in one group: mean 2.5, var 1.25.
        let x = Tensor::f32(vec![1, 2, 2], vec![1., 2., 3., 4.]);
        let one = Tensor::f32(vec![2], vec![1., 1.]);
        let zero = Tensor::f32(vec![2], vec![0., 10.]);
        let y = run(
            &GROUP_NORMALIZATION,
            &[&x, &one, &zero],
            &[("num_groups", Attr::Int(1)), ("epsilon", Attr::Float(0.0))],
            1,
        );
        let k = 1.0 / 1.25f64.sqrt();
        close(
            &y[0].to_f64_vec(),
            &[-1.5 * k, -0.5 * k, 0.5 * k + 10., 1.5 * k + 10.],
            1e-6,
        );
    }

    #[test]
    fn batch_norm_training_updates_running_stats() {
        // One channel, values 1 and 3: batch mean 2, var 1.
        let x = Tensor::f32(vec![2, 1], vec![1., 3.]);
        let one = Tensor::f32(vec![1], vec![1.]);
        let zero = Tensor::f32(vec![1], vec![0.]);
        let out = run(
            &BATCH_NORMALIZATION,
            &[&x, &one, &zero, &zero, &one],
            &[
                ("training_mode", Attr::Int(1)),
                ("epsilon", Attr::Float(0.0)),
            ],
            3,
        );
        close(&out[0].to_f64_vec(), &[-1., 1.], 1e-6);
        close(&out[1].to_f64_vec(), &[0.2], 1e-6); // 0*0.9 + 2*0.1
        close(&out[2].to_f64_vec(), &[1.0], 1e-6); // 1*0.9 + 1*0.1
    }

    #[test]
    fn lrn_window_across_channels() {
        // size 2: channel c sums squares of channels [c, c+1].
        let x = Tensor::f32(vec![1, 2, 1, 1], vec![1., 2.]);
        let y = run(
            &LRN,
            &[&x],
            &[
                ("size", Attr::Int(2)),
                ("alpha", Attr::Float(2.0)),
                ("beta", Attr::Float(1.0)),
            ],
            1,
        );
        close(
            &y[0].to_f64_vec(),
            &[1. / (1. + 1. * 5.), 2. / (1. + 1. * 4.)],
            1e-6,
        );
    }
}
