//! Pooling: AveragePool, MaxPool (with Indices), LpPool, their global forms,
//! and MaxUnpool. Windows follow the Conv geometry (pads, auto_pad,
//! dilations, ceil_mode); values are computed in f64.

use super::conv::{window_taps, AutoPad, Tap, Window};
use super::{float_dtype, float_values, opt_ints, usize_list};
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::ops::*;

/// Input layout of a pooling op: (N*C planes, spatial shape).
fn planes(x: &Tensor) -> Result<(usize, Vec<usize>), String> {
    if x.rank() < 3 {
        return Err(format!(
            "pooling needs input [N, C, spatial...], got shape {:?}",
            x.shape
        ));
    }
    Ok((x.shape[0] * x.shape[1], x.shape[2..].to_vec()))
}

/// Runs `reduce(plane, taps of one output)` for every plane and output
/// position; returns the outputs and the output spatial shape.
fn pool_windows<T>(
    ctx: &EvalCtx,
    x: &Tensor,
    mut reduce: impl FnMut(usize, &mut dyn Iterator<Item = Tap>) -> T,
) -> Result<(Vec<T>, Vec<usize>), String> {
    let (nplanes, sp) = planes(x)?;
    let win = Window::from_attrs(ctx, sp.len(), None)?;
    if win.ceil_mode && win.auto_pad != AutoPad::NotSet {
        return Err("ceil_mode cannot be combined with auto_pad".into());
    }
    let geom = win.geometry(&sp)?;
    let taps = window_taps(&sp, &win, &geom);
    let out: Vec<usize> = geom.iter().map(|g| g.out).collect();
    let (np, nk): (usize, usize) = (out.iter().product(), win.kernel.iter().product());
    let mut res = Vec::with_capacity(nplanes * np);
    for plane in 0..nplanes {
        for p in 0..np {
            let mut it = (0..nk).map(|k| taps[k * np + p]);
            res.push(reduce(plane, &mut it));
        }
    }
    Ok((res, out))
}

fn out_shape(x: &Tensor, spatial: Vec<usize>) -> Vec<usize> {
    let mut s = x.shape[..2].to_vec();
    s.extend(spatial);
    s
}

/// Result types of a windowed pool: [N, C, out...], plus i64 indices.
fn infer_pool(ctx: &InferCtx, allow_int: bool) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    if !(x.dtype().is_float() || allow_int && x.dtype().is_int()) {
        return Err(format!("pooling does not accept {}", x.dtype()));
    }
    if x.rank() < 3 {
        return Err(format!(
            "pooling needs input [N, C, spatial...], got rank {}",
            x.rank()
        ));
    }
    let win = Window::from_attrs(ctx, x.rank() - 2, None)?;
    let mut dims = x.shape[..2].to_vec();
    dims.extend(win.out_dims(&x.shape[2..])?);
    let y = x.with_shape(dims.clone());
    let mut out = vec![y, TensorType::new(dims, DType::I64)];
    out.truncate(ctx.num_results);
    Ok(out)
}

const WINDOW_ATTRS_AVG: &[AttrSpec] = &[
    attr("auto_pad", AttrKind::Str, Default::Str("NOTSET")),
    attr("ceil_mode", AttrKind::Int, Default::Int(0)),
    attr("count_include_pad", AttrKind::Int, Default::Int(0)),
    attr("dilations", AttrKind::Ints, Default::Absent),
    attr("kernel_shape", AttrKind::Ints, Default::Required),
    attr("pads", AttrKind::Ints, Default::Absent),
    attr("strides", AttrKind::Ints, Default::Absent),
];

pub static AVERAGE_POOL: OpDef = OpDef {
    mnemonic: "average_pool",
    summary: "Mean over sliding windows (padding counted if count_include_pad)",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: WINDOW_ATTRS_AVG,
    traits: &[],
    infer: |ctx| infer_pool(ctx, false),
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let nin: usize = x.shape[2..].iter().product();
        let include_pad = ctx.int("count_include_pad")? != 0;
        let (y, sp) = pool_windows(ctx, x, |plane, taps| {
            let (mut sum, mut count) = (0.0, 0usize);
            for t in taps {
                match t {
                    Tap::In(i) => {
                        sum += v[plane * nin + i];
                        count += 1;
                    }
                    Tap::Pad if include_pad => count += 1,
                    _ => {}
                }
            }
            sum / count as f64
        })?;
        Ok(vec![Tensor::from_f64(x.dtype, out_shape(x, sp), &y)])
    }),
};

pub static MAX_POOL: OpDef = OpDef {
    mnemonic: "max_pool",
    summary: "Maximum over sliding windows, optionally with the flat indices of the maxima",
    operands: &[req("x")],
    results: Results::Range(1, 2),
    attrs: &[
        attr("auto_pad", AttrKind::Str, Default::Str("NOTSET")),
        attr("ceil_mode", AttrKind::Int, Default::Int(0)),
        attr("dilations", AttrKind::Ints, Default::Absent),
        attr("kernel_shape", AttrKind::Ints, Default::Required),
        attr("pads", AttrKind::Ints, Default::Absent),
        attr("storage_order", AttrKind::Int, Default::Int(0)),
        attr("strides", AttrKind::Ints, Default::Absent),
    ],
    traits: &[],
    infer: |ctx| infer_pool(ctx, true),
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        if !(x.dtype.is_float() || x.dtype.is_int()) {
            return Err(format!("max_pool does not accept {}", x.dtype));
        }
        // Exact for every accepted type (8-bit integers and floats up to f64).
        let v = x.to_f64_vec();
        let sp = x.shape[2..].to_vec();
        let nin: usize = sp.iter().product();
        let (res, out) = pool_windows(ctx, x, |plane, taps| {
            let mut best: Option<(f64, usize)> = None;
            for t in taps {
                if let Tap::In(i) = t {
                    let e = v[plane * nin + i];
                    if best.is_none_or(|(b, _)| e > b) {
                        best = Some((e, i));
                    }
                }
            }
            (
                best.map_or(f64::NEG_INFINITY, |b| b.0),
                best.map(|b| (plane, b.1)),
            )
        })?;
        let shape = out_shape(x, out);
        let y: Vec<f64> = res.iter().map(|r| r.0).collect();
        let mut outs = vec![Tensor::from_f64(x.dtype, shape.clone(), &y)];
        if ctx.num_results > 1 {
            let col_major = ctx.int("storage_order")? != 0;
            let idx: Vec<i64> = res
                .iter()
                .map(|r| match r.1 {
                    None => -1,
                    Some((plane, i)) => {
                        (plane * nin + if col_major { column_major(i, &sp) } else { i }) as i64
                    }
                })
                .collect();
            outs.push(Tensor::i64(shape, idx));
        }
        Ok(outs)
    }),
};

/// The column-major flat index of the element at row-major `flat` in `shape`.
fn column_major(mut flat: usize, shape: &[usize]) -> usize {
    let mut coords = vec![0; shape.len()];
    for i in (0..shape.len()).rev() {
        coords[i] = flat % shape[i];
        flat /= shape[i];
    }
    let (mut idx, mut stride) = (0, 1);
    for (c, d) in coords.iter().zip(shape) {
        idx += c * stride;
        stride *= d;
    }
    idx
}

fn lp_p(ctx: &impl AttrAccess) -> Result<f64, String> {
    let p = ctx.int("p")?;
    if p <= 0 {
        return Err(format!("p must be positive, got {p}"));
    }
    Ok(p as f64)
}

/// (sum |x|^p)^(1/p), with the integer powers of the usual p done exactly.
fn lp_norm(vals: impl Iterator<Item = f64>, p: f64) -> f64 {
    let s: f64 = vals
        .map(|e| if p == 2.0 { e * e } else { e.abs().powf(p) })
        .sum();
    if p == 2.0 {
        s.sqrt()
    } else {
        s.powf(1.0 / p)
    }
}

pub static LP_POOL: OpDef = OpDef {
    mnemonic: "lp_pool",
    summary: "p-norm over sliding windows",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[
        attr("auto_pad", AttrKind::Str, Default::Str("NOTSET")),
        attr("ceil_mode", AttrKind::Int, Default::Int(0)),
        attr("dilations", AttrKind::Ints, Default::Absent),
        attr("kernel_shape", AttrKind::Ints, Default::Required),
        attr("p", AttrKind::Int, Default::Int(2)),
        attr("pads", AttrKind::Ints, Default::Absent),
        attr("strides", AttrKind::Ints, Default::Absent),
    ],
    traits: &[],
    infer: |ctx| infer_pool(ctx, false),
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "x")?;
        let p = lp_p(ctx)?;
        let nin: usize = x.shape[2..].iter().product();
        let (y, sp) = pool_windows(ctx, x, |plane, taps| {
            lp_norm(
                taps.filter_map(|t| {
                    if let Tap::In(i) = t {
                        Some(v[plane * nin + i])
                    } else {
                        None
                    }
                }),
                p,
            )
        })?;
        Ok(vec![Tensor::from_f64(x.dtype, out_shape(x, sp), &y)])
    }),
};

/// [N, C, 1, ..., 1] for the global pools.
fn infer_global(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    float_dtype(x, "x")?;
    if x.rank() < 2 {
        return Err(format!(
            "global pooling needs input [N, C, ...], got rank {}",
            x.rank()
        ));
    }
    let dims = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, d)| if i < 2 { d.clone() } else { Dim::fixed(1) })
        .collect();
    Ok(vec![x.with_shape(dims)])
}

fn eval_global(ctx: &EvalCtx, f: impl Fn(&[f64]) -> f64) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    let v = float_values(x, "x")?;
    if x.rank() < 2 {
        return Err(format!(
            "global pooling needs input [N, C, ...], got shape {:?}",
            x.shape
        ));
    }
    let nin: usize = x.shape[2..].iter().product();
    let y: Vec<f64> = (0..x.shape[0] * x.shape[1])
        .map(|p| f(&v[p * nin..(p + 1) * nin]))
        .collect();
    let shape = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < 2 { d } else { 1 })
        .collect();
    Ok(vec![Tensor::from_f64(x.dtype, shape, &y)])
}

pub static GLOBAL_AVERAGE_POOL: OpDef = OpDef {
    mnemonic: "global_average_pool",
    summary: "Mean over all spatial positions",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: infer_global,
    eval: Some(|ctx| eval_global(ctx, |s| s.iter().sum::<f64>() / s.len() as f64)),
};

pub static GLOBAL_MAX_POOL: OpDef = OpDef {
    mnemonic: "global_max_pool",
    summary: "Maximum over all spatial positions",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: infer_global,
    eval: Some(|ctx| eval_global(ctx, |s| s.iter().copied().fold(f64::NEG_INFINITY, f64::max))),
};

pub static GLOBAL_LP_POOL: OpDef = OpDef {
    mnemonic: "global_lp_pool",
    summary: "p-norm over all spatial positions",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[attr("p", AttrKind::Int, Default::Int(2))],
    traits: &[],
    infer: infer_global,
    eval: Some(|ctx| {
        let p = lp_p(ctx)?;
        eval_global(ctx, |s| lp_norm(s.iter().copied(), p))
    }),
};

/// MaxUnpool's default output spatial size: (in - 1) * stride + kernel - pads.
fn unpool_dims(ctx: &impl AttrAccess, input: &[usize]) -> Result<Vec<usize>, String> {
    let n = input.len();
    let kernel = usize_list(Some(ctx.ints("kernel_shape")?), n, 1, 1, "kernel_shape")?;
    let strides = usize_list(opt_ints(ctx, "strides")?, n, 1, 1, "strides")?;
    let pads = usize_list(opt_ints(ctx, "pads")?, 2 * n, 0, 0, "pads")?;
    (0..n)
        .map(|i| {
            ((input[i].max(1) - 1) * strides[i] + kernel[i])
                .checked_sub(pads[i] + pads[n + i])
                .ok_or_else(|| "pads exceed the unpooled size".to_string())
        })
        .collect()
}

pub static MAX_UNPOOL: OpDef = OpDef {
    mnemonic: "max_unpool",
    summary: "Scatters pooled maxima back to their indices in a zero tensor",
    operands: &[req("x"), req("indices"), opt("output_shape")],
    results: Results::Fixed(1),
    attrs: &[
        attr("kernel_shape", AttrKind::Ints, Default::Required),
        attr("pads", AttrKind::Ints, Default::Absent),
        attr("strides", AttrKind::Ints, Default::Absent),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        float_dtype(x, "x")?;
        if x.rank() < 3 {
            return Err(format!(
                "max_unpool needs input [N, C, spatial...], got rank {}",
                x.rank()
            ));
        }
        if let Some(shape_t) = ctx.opt_input(2) {
            let dims = match ctx.const_input(2) {
                Some(c) => c.to_i64_vec().into_iter().map(Dim::fixed).collect(),
                None => vec![
                    Dim::Unknown;
                    shape_t
                        .static_shape()
                        .and_then(|s| s.first().copied())
                        .unwrap_or(x.rank() as i64) as usize
                ],
            };
            return Ok(vec![x.with_shape(dims)]);
        }
        let mut dims = x.shape[..2].to_vec();
        let input: Option<Vec<usize>> = x.shape[2..]
            .iter()
            .map(|d| d.as_fixed().and_then(|v| usize::try_from(v).ok()))
            .collect();
        match input {
            Some(input) => dims.extend(
                unpool_dims(ctx, &input)?
                    .into_iter()
                    .map(|d| Dim::fixed(d as i64)),
            ),
            None => dims.extend(std::iter::repeat_n(Dim::Unknown, x.rank() - 2)),
        }
        Ok(vec![x.with_shape(dims)])
    },
    eval: Some(|ctx| {
        let (x, idx) = (ctx.input(0)?, ctx.input(1)?);
        let v = float_values(x, "x")?;
        if idx.shape != x.shape {
            return Err(format!(
                "indices shape {:?} differs from x {:?}",
                idx.shape, x.shape
            ));
        }
        if x.rank() < 3 {
            return Err(format!(
                "max_unpool needs input [N, C, spatial...], got shape {:?}",
                x.shape
            ));
        }
        // Indices address the unpooled shape the attributes imply; a larger
        // output_shape holds that result in its leading corner.
        let natural = out_shape(x, unpool_dims(ctx, &x.shape[2..])?);
        let total: usize = natural.iter().product();
        let mut y = vec![0f64; total];
        for (i, &e) in v.iter().enumerate() {
            let j = idx.get_i64(i);
            let slot = usize::try_from(j)
                .ok()
                .filter(|&j| j < total)
                .ok_or_else(|| format!("index {j} is outside the output of {total} elements"))?;
            y[slot] = e;
        }
        let Some(shape_t) = ctx.opt_input(2) else {
            return Ok(vec![Tensor::from_f64(x.dtype, natural, &y)]);
        };
        let shape = crate::ops::util::to_usize_shape(&shape_t.to_i64_vec())?;
        if shape.len() != natural.len() || shape.iter().zip(&natural).any(|(o, n)| o < n) {
            return Err(format!(
                "output_shape {shape:?} is smaller than the unpooled shape {natural:?}"
            ));
        }
        let mut out = vec![0f64; shape.iter().product()];
        let (src_strides, dst_strides) = (
            crate::tensor::strides_of(&natural),
            crate::tensor::strides_of(&shape),
        );
        for (i, &e) in y.iter().enumerate() {
            let dst: usize = src_strides
                .iter()
                .zip(&natural)
                .zip(&dst_strides)
                .map(|((st, n), dt)| (i / st) % n * dt)
                .sum();
            out[dst] = e;
        }
        Ok(vec![Tensor::from_f64(x.dtype, shape, &out)])
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::ops::testing::run_all as run;

    fn grid() -> Tensor {
        Tensor::f32(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect())
    }

    #[test]
    fn average_pool_padding_counts() {
        let k = ("kernel_shape", Attr::Ints(vec![2, 2]));
        let pads = ("pads", Attr::Ints(vec![1, 1, 0, 0]));
        // Top-left window holds only x[0,0] = 1 plus three pad cells.
        let y = run(&AVERAGE_POOL, &[&grid()], &[k.clone(), pads.clone()], 1);
        assert_eq!(y[0].shape, vec![1, 1, 3, 3]);
        assert_eq!(y[0].to_f64_vec()[0], 1.0);
        let y = run(
            &AVERAGE_POOL,
            &[&grid()],
            &[k, pads, ("count_include_pad", Attr::Int(1))],
            1,
        );
        assert_eq!(y[0].to_f64_vec()[0], 0.25);
    }

    #[test]
    fn max_pool_with_indices_and_ceil() {
        let attrs = [
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("ceil_mode", Attr::Int(1)),
        ];
        let y = run(&MAX_POOL, &[&grid()], &attrs, 2);
        assert_eq!(y[0].to_f64_vec(), vec![5., 6., 8., 9.]);
        assert_eq!(y[1].to_i64_vec(), vec![4, 5, 7, 8]);
        let y = run(
            &MAX_POOL,
            &[&grid()],
            &[
                attrs[0].clone(),
                attrs[1].clone(),
                attrs[2].clone(),
                ("storage_order", Attr::Int(1)),
            ],
            2,
        );
        assert_eq!(y[1].to_i64_vec(), vec![4, 7, 5, 8]);
    }

    #[test]
    fn lp_and_global_pools() {
        let y = run(
            &LP_POOL,
            &[&grid()],
            &[
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("p", Attr::Int(1)),
            ],
            1,
        );
        assert_eq!(y[0].to_f64_vec(), vec![45.]);
        assert_eq!(
            run(&GLOBAL_AVERAGE_POOL, &[&grid()], &[], 1)[0].to_f64_vec(),
            vec![5.]
        );
        assert_eq!(
            run(&GLOBAL_MAX_POOL, &[&grid()], &[], 1)[0].shape,
            vec![1, 1, 1, 1]
        );
        let y = run(
            &GLOBAL_LP_POOL,
            &[&Tensor::f32(vec![1, 1, 2], vec![3., 4.])],
            &[],
            1,
        );
        assert_eq!(y[0].to_f64_vec(), vec![5.]);
    }

    #[test]
    fn max_unpool_scatters() {
        let x = Tensor::f32(vec![1, 1, 1, 2], vec![7., 8.]);
        let i = Tensor::i64(vec![1, 1, 1, 2], vec![1, 2]);
        let y = run(
            &MAX_UNPOOL,
            &[&x, &i],
            &[
                ("kernel_shape", Attr::Ints(vec![1, 2])),
                ("strides", Attr::Ints(vec![1, 2])),
            ],
            1,
        );
        assert_eq!(y[0].shape, vec![1, 1, 1, 4]);
        assert_eq!(y[0].to_f64_vec(), vec![0., 7., 8., 0.]);
    }
}
