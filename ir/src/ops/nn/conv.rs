//! Conv (im2col + matrix product) and ConvTranspose (matrix product +
//! col2im), 1-D to 3-D (any spatial rank), with groups, strides, dilations
//! and explicit or automatic padding. Also the sliding-window geometry that
//! pooling shares.

use super::{float_dtype, gemm, opt_ints, real_dispatch, usize_list, Mat, Real};
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::ops::*;

/// How the window is placed along one spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisGeometry {
    pub pad_begin: usize,
    pub pad_end: usize,
    pub out: usize,
}

/// The `auto_pad` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub fn parse(s: &str) -> Result<AutoPad, String> {
        match s {
            "NOTSET" | "" => Ok(AutoPad::NotSet),
            "SAME_UPPER" => Ok(AutoPad::SameUpper),
            "SAME_LOWER" => Ok(AutoPad::SameLower),
            "VALID" => Ok(AutoPad::Valid),
            other => Err(format!("unknown auto_pad '{other}'")),
        }
    }
}

/// Output size and padding of a window of `kernel` taps (dilated by
/// `dilation`) sliding by `stride` over `input` (the ONNX Conv/Pool rules).
pub fn axis_geometry(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> Result<AxisGeometry, String> {
    let eff = (kernel - 1) * dilation + 1;
    match auto_pad {
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = input.div_ceil(stride);
            let total = ((out.max(1) - 1) * stride + eff).saturating_sub(input);
            let small = total / 2;
            let (pad_begin, pad_end) = if auto_pad == AutoPad::SameUpper {
                (small, total - small)
            } else {
                (total - small, small)
            };
            Ok(AxisGeometry {
                pad_begin,
                pad_end,
                out,
            })
        }
        AutoPad::NotSet | AutoPad::Valid => {
            let (pb, pe) = if auto_pad == AutoPad::Valid {
                (0, 0)
            } else {
                pads
            };
            let span = input + pb + pe;
            if span < eff {
                return Err(format!(
                    "window of extent {eff} does not fit the padded input of size {span}"
                ));
            }
            let mut out = if ceil_mode {
                (span - eff).div_ceil(stride) + 1
            } else {
                (span - eff) / stride + 1
            };
            // In ceil mode the last window must start inside the input or its
            // leading padding.
            if ceil_mode && (out - 1) * stride >= input + pb {
                out -= 1;
            }
            Ok(AxisGeometry {
                pad_begin: pb,
                pad_end: pe,
                out,
            })
        }
    }
}

/// The window attributes of a Conv/Pool op instance, resolved for `spatial` axes.
#[derive(Clone, Debug)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<(usize, usize)>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

impl Window {
    /// Reads kernel_shape (or `kernel` when the op derives it from a weight),
    /// strides, dilations, pads, auto_pad and ceil_mode.
    pub fn from_attrs(
        ctx: &impl AttrAccess,
        spatial: usize,
        kernel: Option<Vec<usize>>,
    ) -> Result<Window, String> {
        let kernel = match kernel {
            Some(k) => {
                if ctx.has_attr("kernel_shape")
                    && usize_list(
                        Some(ctx.ints("kernel_shape")?),
                        spatial,
                        1,
                        1,
                        "kernel_shape",
                    )? != k
                {
                    return Err(format!(
                        "kernel_shape does not match the weight's spatial dims {k:?}"
                    ));
                }
                k
            }
            None => {
                let k = ctx.ints("kernel_shape")?;
                if k.len() != spatial {
                    return Err(format!(
                        "kernel_shape has {} values for {spatial} spatial dims",
                        k.len()
                    ));
                }
                usize_list(Some(k), spatial, 1, 1, "kernel_shape")?
            }
        };
        let strides = usize_list(opt_ints(ctx, "strides")?, spatial, 1, 1, "strides")?;
        let dilations = usize_list(opt_ints(ctx, "dilations")?, spatial, 1, 1, "dilations")?;
        let flat = usize_list(opt_ints(ctx, "pads")?, 2 * spatial, 0, 0, "pads")?;
        let pads = (0..spatial).map(|i| (flat[i], flat[spatial + i])).collect();
        let auto_pad = AutoPad::parse(&ctx.string("auto_pad").unwrap_or_default())?;
        let ceil_mode = ctx.def().attr_spec("ceil_mode").is_some() && ctx.int("ceil_mode")? != 0;
        Ok(Window {
            kernel,
            strides,
            dilations,
            pads,
            auto_pad,
            ceil_mode,
        })
    }

    pub fn geometry(&self, input: &[usize]) -> Result<Vec<AxisGeometry>, String> {
        (0..input.len())
            .map(|i| {
                axis_geometry(
                    input[i],
                    self.kernel[i],
                    self.strides[i],
                    self.dilations[i],
                    self.pads[i],
                    self.auto_pad,
                    self.ceil_mode,
                )
            })
            .collect()
    }

    /// Output dims for symbolic input dims: computed where the input dim is
    /// static, kept where SAME padding with stride 1 preserves it.
    pub fn out_dims(&self, input: &[Dim]) -> Result<Vec<Dim>, String> {
        input
            .iter()
            .enumerate()
            .map(|(i, d)| match d.as_fixed() {
                Some(n) => {
                    let n = usize::try_from(n).map_err(|_| format!("negative dimension {n}"))?;
                    let g = axis_geometry(
                        n,
                        self.kernel[i],
                        self.strides[i],
                        self.dilations[i],
                        self.pads[i],
                        self.auto_pad,
                        self.ceil_mode,
                    )?;
                    Ok(Dim::fixed(g.out as i64))
                }
                None if matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower)
                    && self.strides[i] == 1 =>
                {
                    Ok(d.clone())
                }
                None => Ok(Dim::Unknown),
            })
            .collect()
    }
}

/// Where one kernel tap of one output position lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// Flat spatial index into the input.
    In(usize),
    /// In the explicit/automatic padding.
    Pad,
    /// Past the padded input (the extra room ceil mode makes).
    Beyond,
}

/// Row-major multi-index of `flat` in `shape`, written into `out`.
pub fn unravel(mut flat: usize, shape: &[usize], out: &mut [usize]) {
    for i in (0..shape.len()).rev() {
        out[i] = flat % shape[i].max(1);
        flat /= shape[i].max(1);
    }
}

/// For every (kernel tap, output position), the input element it reads:
/// `taps[k * out_size + p]`.
pub fn window_taps(input: &[usize], w: &Window, geom: &[AxisGeometry]) -> Vec<Tap> {
    let out_shape: Vec<usize> = geom.iter().map(|g| g.out).collect();
    let (nk, np): (usize, usize) = (w.kernel.iter().product(), out_shape.iter().product());
    let rank = input.len();
    let (mut kc, mut oc) = (vec![0; rank], vec![0; rank]);
    let mut taps = Vec::with_capacity(nk * np);
    for k in 0..nk {
        unravel(k, &w.kernel, &mut kc);
        for p in 0..np {
            unravel(p, &out_shape, &mut oc);
            let (mut flat, mut pad, mut beyond) = (0usize, false, false);
            for a in 0..rank {
                let pos = (oc[a] * w.strides[a] + kc[a] * w.dilations[a]) as i64
                    - geom[a].pad_begin as i64;
                beyond |= pos >= (input[a] + geom[a].pad_end) as i64;
                pad |= pos < 0 || pos >= input[a] as i64;
                flat = flat * input[a] + pos.clamp(0, input[a].max(1) as i64 - 1) as usize;
            }
            taps.push(if beyond {
                Tap::Beyond
            } else if pad {
                Tap::Pad
            } else {
                Tap::In(flat)
            });
        }
    }
    taps
}

/// X, W and the optional bias of a convolution, in `R`.
type Operands<R> = (Vec<R>, Vec<R>, Option<Vec<R>>);

/// Loads X, W and the optional bias (checked to hold `m` values).
fn load_operands<R: Real>(
    ctx: &EvalCtx,
    x: &Tensor,
    w: &Tensor,
    m: usize,
) -> Result<Operands<R>, String> {
    let bias = ctx.opt_input(2).map(R::load);
    if bias.as_ref().is_some_and(|b| b.len() != m) {
        return Err(format!("bias must have {m} elements"));
    }
    Ok((R::load(x), R::load(w), bias))
}

/// Adds the per-channel bias to `y` [N, M, spatial...] and stores it as `dtype`.
fn finish<R: Real>(
    dtype: DType,
    mut y: Vec<R>,
    bias: Option<Vec<R>>,
    n: usize,
    m: usize,
    out_sp: &[usize],
) -> Tensor {
    if let Some(bias) = bias {
        let plane: usize = out_sp.iter().product();
        for (i, p) in y.chunks_mut(plane.max(1)).enumerate() {
            let bv = bias[i % m];
            p.iter_mut().for_each(|e| *e += bv);
        }
    }
    let mut shape = vec![n, m];
    shape.extend(out_sp);
    R::store(dtype, shape, y)
}

fn conv_kernel<R: Real>(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x_t, w_t) = (ctx.input(0)?, ctx.input(1)?);
    if x_t.rank() < 3 || w_t.rank() != x_t.rank() {
        return Err(format!(
            "Conv needs X [N,C,...] and W [M,C/group,...] of equal rank >= 3, got {:?} and {:?}",
            x_t.shape, w_t.shape
        ));
    }
    let (n, c, in_sp) = (x_t.shape[0], x_t.shape[1], &x_t.shape[2..]);
    let (m, cg) = (w_t.shape[0], w_t.shape[1]);
    let group = usize::try_from(ctx.int("group")?)
        .ok()
        .filter(|&g| g > 0)
        .ok_or("group must be positive")?;
    if c != cg * group || m % group != 0 {
        return Err(format!(
            "channels: X has {c}, W expects {cg} per group x {group} groups and {m} outputs"
        ));
    }
    let mg = m / group;
    let win = Window::from_attrs(ctx, in_sp.len(), Some(w_t.shape[2..].to_vec()))?;
    let geom = win.geometry(in_sp)?;
    let taps = window_taps(in_sp, &win, &geom);
    let (nk, np, nin): (usize, usize, usize) = (
        win.kernel.iter().product(),
        geom.iter().map(|g| g.out).product(),
        in_sp.iter().product(),
    );
    let (x, w, bias) = load_operands::<R>(ctx, x_t, w_t, m)?;
    let rows = cg * nk;
    let mut col = vec![R::ZERO; rows * np];
    let mut y = vec![R::ZERO; n * m * np];
    for b in 0..n {
        for g in 0..group {
            for ci in 0..cg {
                let xbase = (b * c + g * cg + ci) * nin;
                for k in 0..nk {
                    let dst = &mut col[(ci * nk + k) * np..(ci * nk + k + 1) * np];
                    for (o, t) in dst.iter_mut().zip(&taps[k * np..(k + 1) * np]) {
                        *o = match t {
                            Tap::In(i) => x[xbase + i],
                            _ => R::ZERO,
                        };
                    }
                }
            }
            gemm(
                &w,
                Mat::dense(g * mg * rows, mg, rows),
                &col,
                Mat::dense(0, rows, np),
                R::ZERO,
                &mut y,
                Mat::dense((b * m + g * mg) * np, mg, np),
            )?;
        }
    }
    let out_sp: Vec<usize> = geom.iter().map(|g| g.out).collect();
    Ok(vec![finish(x_t.dtype, y, bias, n, m, &out_sp)])
}

fn infer_conv(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let dt = float_dtype(x, "X")?;
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(format!(
            "Conv needs X and W of equal rank >= 3, got {} and {}",
            x.rank(),
            w.rank()
        ));
    }
    let kernel = weight_kernel(ctx, w)?;
    let win = Window::from_attrs(ctx, x.rank() - 2, kernel)?;
    let mut dims = vec![x.shape[0].clone(), w.shape[0].clone()];
    dims.extend(win.out_dims(&x.shape[2..])?);
    Ok(vec![TensorType::new(dims, dt)])
}

/// The kernel size from W's static spatial dims; None when they are
/// symbolic (then `kernel_shape` must say it).
fn weight_kernel(ctx: &InferCtx, w: &TensorType) -> Result<Option<Vec<usize>>, String> {
    let fixed: Option<Vec<i64>> = w.shape[2..].iter().map(Dim::as_fixed).collect();
    match fixed {
        Some(k) => Ok(Some(usize_list(
            Some(k.clone()),
            k.len(),
            1,
            1,
            "kernel size",
        )?)),
        None if ctx.has_attr("kernel_shape") => Ok(None),
        None => Err("the kernel size must be static or given by kernel_shape".into()),
    }
}

/// Conv's attributes, shared by the integer and quantized convolutions.
pub const CONV_ATTRS: &[AttrSpec] = &[
    attr("auto_pad", AttrKind::Str, Default::Str("NOTSET")),
    attr("dilations", AttrKind::Ints, Default::Absent),
    attr("group", AttrKind::Int, Default::Int(1)),
    attr("kernel_shape", AttrKind::Ints, Default::Absent),
    attr("pads", AttrKind::Ints, Default::Absent),
    attr("strides", AttrKind::Ints, Default::Absent),
];

pub static CONV: OpDef = OpDef {
    mnemonic: "conv",
    summary: "N-D convolution with groups, strides, dilations and padding",
    operands: &[req("x"), req("w"), opt("b")],
    results: Results::Fixed(1),
    attrs: CONV_ATTRS,
    traits: &[],
    infer: infer_conv,
    eval: Some(|ctx| real_dispatch!(ctx.input(0)?.dtype, conv_kernel(ctx))),
};

/// (pad_begin, pad_end, out) of ConvTranspose along one axis.
#[allow(clippy::too_many_arguments)]
fn transpose_axis(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    out_pad: usize,
    pads: (usize, usize),
    output_shape: Option<usize>,
    auto_pad: AutoPad,
) -> Result<(i64, i64, usize), String> {
    let full = (stride * (input.max(1) - 1) + out_pad + (kernel - 1) * dilation + 1) as i64;
    let target = match (output_shape, auto_pad) {
        (Some(o), _) => Some(o),
        (None, AutoPad::SameUpper | AutoPad::SameLower) => Some(input * stride),
        _ => None,
    };
    match target {
        Some(o) => {
            // Padding that yields the requested size; SAME_UPPER puts the
            // odd pad at the end, everything else at the beginning.
            let total = full - o as i64;
            let (small, big) = (total.div_euclid(2), total - total.div_euclid(2));
            let (pb, pe) = if auto_pad == AutoPad::SameUpper {
                (small, big)
            } else {
                (big, small)
            };
            Ok((pb, pe, o))
        }
        None => {
            let (pb, pe) = if auto_pad == AutoPad::Valid {
                (0, 0)
            } else {
                (pads.0 as i64, pads.1 as i64)
            };
            let out = full - pb - pe;
            usize::try_from(out)
                .map(|o| (pb, pe, o))
                .map_err(|_| format!("ConvTranspose output size {out} is negative"))
        }
    }
}

/// Resolved ConvTranspose geometry: per axis (pad_begin, out).
struct TransposeGeometry {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pad_begin: Vec<i64>,
    out: Vec<usize>,
}

fn transpose_geometry(
    ctx: &impl AttrAccess,
    input: &[usize],
    kernel: Vec<usize>,
) -> Result<TransposeGeometry, String> {
    let spatial = input.len();
    let win = Window::from_attrs(ctx, spatial, Some(kernel))?;
    let out_pad = usize_list(
        opt_ints(ctx, "output_padding")?,
        spatial,
        0,
        0,
        "output_padding",
    )?;
    // output_shape may list only the spatial dims or the whole shape.
    let output_shape = match opt_ints(ctx, "output_shape")? {
        Some(v) if !v.is_empty() => {
            let sp = &v[v.len().saturating_sub(spatial)..];
            Some(usize_list(
                Some(sp.to_vec()),
                spatial,
                0,
                0,
                "output_shape",
            )?)
        }
        _ => None,
    };
    let mut g = TransposeGeometry {
        kernel: win.kernel.clone(),
        strides: win.strides.clone(),
        dilations: win.dilations.clone(),
        pad_begin: vec![],
        out: vec![],
    };
    for i in 0..spatial {
        let (pb, _, o) = transpose_axis(
            input[i],
            win.kernel[i],
            win.strides[i],
            win.dilations[i],
            out_pad[i],
            win.pads[i],
            output_shape.as_ref().map(|s| s[i]),
            win.auto_pad,
        )?;
        g.pad_begin.push(pb);
        g.out.push(o);
    }
    Ok(g)
}

fn conv_transpose_kernel<R: Real>(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x_t, w_t) = (ctx.input(0)?, ctx.input(1)?);
    if x_t.rank() < 3 || w_t.rank() != x_t.rank() {
        return Err(format!("ConvTranspose needs X [N,C,...] and W [C,M/group,...] of equal rank >= 3, got {:?} and {:?}", x_t.shape, w_t.shape));
    }
    let (n, c, in_sp) = (x_t.shape[0], x_t.shape[1], &x_t.shape[2..]);
    let group = usize::try_from(ctx.int("group")?)
        .ok()
        .filter(|&g| g > 0)
        .ok_or("group must be positive")?;
    if w_t.shape[0] != c || c % group != 0 {
        return Err(format!(
            "W's first dim ({}) must equal the {c} input channels, divisible by group {group}",
            w_t.shape[0]
        ));
    }
    let (cg, mg) = (c / group, w_t.shape[1]);
    let m = mg * group;
    let geo = transpose_geometry(ctx, in_sp, w_t.shape[2..].to_vec())?;
    let (nk, nin, nout): (usize, usize, usize) = (
        geo.kernel.iter().product(),
        in_sp.iter().product(),
        geo.out.iter().product(),
    );
    // Where (kernel tap, input position) scatters to in the output.
    let rank = in_sp.len();
    let (mut kc, mut ic) = (vec![0; rank], vec![0; rank]);
    let mut dest: Vec<Option<usize>> = Vec::with_capacity(nk * nin);
    for k in 0..nk {
        unravel(k, &geo.kernel, &mut kc);
        for p in 0..nin {
            unravel(p, in_sp, &mut ic);
            let mut flat = Some(0usize);
            for a in 0..rank {
                let pos =
                    (ic[a] * geo.strides[a] + kc[a] * geo.dilations[a]) as i64 - geo.pad_begin[a];
                flat = flat
                    .filter(|_| pos >= 0 && (pos as usize) < geo.out[a])
                    .map(|f| f * geo.out[a] + pos as usize);
            }
            dest.push(flat);
        }
    }
    let (x, w, bias) = load_operands::<R>(ctx, x_t, w_t, m)?;
    let rows = mg * nk;
    let mut col = vec![R::ZERO; rows * nin];
    let mut y = vec![R::ZERO; n * m * nout];
    for b in 0..n {
        for g in 0..group {
            // col [Mg*K, in] = W_g^T [Mg*K, Cg] · X_g [Cg, in]
            gemm(
                &w,
                Mat::dense(g * cg * rows, cg, rows).t(),
                &x,
                Mat::dense((b * c + g * cg) * nin, cg, nin),
                R::ZERO,
                &mut col,
                Mat::dense(0, rows, nin),
            )?;
            for mi in 0..mg {
                let ybase = (b * m + g * mg + mi) * nout;
                for k in 0..nk {
                    let src = &col[(mi * nk + k) * nin..(mi * nk + k + 1) * nin];
                    for (v, d) in src.iter().zip(&dest[k * nin..(k + 1) * nin]) {
                        if let Some(d) = d {
                            y[ybase + d] += *v;
                        }
                    }
                }
            }
        }
    }
    Ok(vec![finish(x_t.dtype, y, bias, n, m, &geo.out)])
}

pub static CONV_TRANSPOSE: OpDef = OpDef {
    mnemonic: "conv_transpose",
    summary: "N-D transposed convolution (gradient of Conv w.r.t. its input)",
    operands: &[req("x"), req("w"), opt("b")],
    results: Results::Fixed(1),
    attrs: &[
        attr("auto_pad", AttrKind::Str, Default::Str("NOTSET")),
        attr("dilations", AttrKind::Ints, Default::Absent),
        attr("group", AttrKind::Int, Default::Int(1)),
        attr("kernel_shape", AttrKind::Ints, Default::Absent),
        attr("output_padding", AttrKind::Ints, Default::Absent),
        attr("output_shape", AttrKind::Ints, Default::Absent),
        attr("pads", AttrKind::Ints, Default::Absent),
        attr("strides", AttrKind::Ints, Default::Absent),
    ],
    traits: &[],
    infer: |ctx| {
        let (x, w) = (ctx.input(0)?, ctx.input(1)?);
        let dt = float_dtype(x, "X")?;
        if x.rank() < 3 || w.rank() != x.rank() {
            return Err(format!(
                "ConvTranspose needs X and W of equal rank >= 3, got {} and {}",
                x.rank(),
                w.rank()
            ));
        }
        let group = ctx.int("group")?;
        let mut dims = vec![x.shape[0].clone(), w.shape[1].mul(&Dim::fixed(group))];
        let input: Option<Vec<usize>> = x.shape[2..]
            .iter()
            .map(|d| d.as_fixed().and_then(|v| usize::try_from(v).ok()))
            .collect();
        let kernel = weight_kernel(ctx, w)?;
        match (input, kernel) {
            (Some(input), Some(kernel)) => dims.extend(
                transpose_geometry(ctx, &input, kernel)?
                    .out
                    .iter()
                    .map(|&o| Dim::fixed(o as i64)),
            ),
            _ => dims.extend(std::iter::repeat_n(Dim::Unknown, x.rank() - 2)),
        }
        Ok(vec![TensorType::new(dims, dt)])
    },
    eval: Some(|ctx| real_dispatch!(ctx.input(0)?.dtype, conv_transpose_kernel(ctx))),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::ops::testing::run_all;

    fn run(def: &'static OpDef, inputs: &[&Tensor], attrs: &[(&str, Attr)]) -> Tensor {
        run_all(def, inputs, attrs, 1).remove(0)
    }

    #[test]
    fn geometry_rules() {
        // floor((5 + 2 - 3) / 2) + 1 = 3
        assert_eq!(
            axis_geometry(5, 3, 2, 1, (1, 1), AutoPad::NotSet, false).unwrap(),
            AxisGeometry {
                pad_begin: 1,
                pad_end: 1,
                out: 3
            }
        );
        // SAME_UPPER, in 5, k 3, s 2: out 3, total pad 2
        assert_eq!(
            axis_geometry(5, 3, 2, 1, (0, 0), AutoPad::SameUpper, false).unwrap(),
            AxisGeometry {
                pad_begin: 1,
                pad_end: 1,
                out: 3
            }
        );
        // SAME_LOWER with odd total padding puts the extra pad first.
        assert_eq!(
            axis_geometry(4, 2, 1, 1, (0, 0), AutoPad::SameLower, false).unwrap(),
            AxisGeometry {
                pad_begin: 1,
                pad_end: 0,
                out: 4
            }
        );
        // ceil mode: in 4, k 3, s 2 -> ceil(1/2)+1 = 2
        assert_eq!(
            axis_geometry(4, 3, 2, 1, (0, 0), AutoPad::NotSet, true)
                .unwrap()
                .out,
            2
        );
    }

    #[test]
    fn conv_3x3_with_padding() {
        // The ONNX basic_conv example: 5x5 ramp, 3x3 ones, pads 1.
        let x = Tensor::f32(vec![1, 1, 5, 5], (0..25).map(|v| v as f32).collect());
        let w = Tensor::f32(vec![1, 1, 3, 3], vec![1.0; 9]);
        let y = run(&CONV, &[&x, &w], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
        assert_eq!(y.shape, vec![1, 1, 5, 5]);
        let v = y.to_f64_vec();
        assert_eq!(&v[..5], &[12., 21., 27., 33., 24.]);
        assert_eq!(v[12], 108.);
        let y = run(&CONV, &[&x, &w], &[("strides", Attr::Ints(vec![2, 2]))]);
        assert_eq!(y.to_f64_vec(), vec![54., 72., 144., 162.]);
    }

    #[test]
    fn grouped_conv_with_bias() {
        // Depthwise 1x1: each channel scaled by its own weight plus bias.
        let x = Tensor::f32(vec![1, 2, 1, 2], vec![1., 2., 3., 4.]);
        let w = Tensor::f32(vec![2, 1, 1, 1], vec![10., 100.]);
        let b = Tensor::f32(vec![2], vec![1., -1.]);
        let y = run(&CONV, &[&x, &w, &b], &[("group", Attr::Int(2))]);
        assert_eq!(y.to_f64_vec(), vec![11., 21., 299., 399.]);
    }

    #[test]
    fn conv_infer_keeps_batch_symbolic() {
        let x = TensorType::new(
            vec![
                Dim::sym("n"),
                Dim::fixed(3),
                Dim::fixed(224),
                Dim::fixed(224),
            ],
            DType::F32,
        );
        let w = TensorType::fixed(&[768, 3, 8, 8], DType::F32);
        let attrs: Attrs = [("strides".to_string(), Attr::Ints(vec![8, 8]))]
            .into_iter()
            .collect();
        let ctx = InferCtx {
            def: &CONV,
            attrs: &attrs,
            operands: vec![Some(&x), Some(&w)],
            consts: vec![None; 2],
            syms: vec![None; 2],
            num_results: 1,
        };
        let out = (CONV.infer)(&ctx).unwrap();
        assert_eq!(
            out[0].shape,
            vec![
                Dim::sym("n"),
                Dim::fixed(768),
                Dim::fixed(28),
                Dim::fixed(28)
            ]
        );
    }

    #[test]
    fn conv_transpose_1d() {
        // x = [1, 2], w = [1, 1, 1], stride 2: [1, 1, 1+2, 2, 2]
        let x = Tensor::f32(vec![1, 1, 2], vec![1., 2.]);
        let w = Tensor::f32(vec![1, 1, 3], vec![1., 1., 1.]);
        let y = run(
            &CONV_TRANSPOSE,
            &[&x, &w],
            &[("strides", Attr::Ints(vec![2]))],
        );
        assert_eq!(y.to_f64_vec(), vec![1., 1., 3., 2., 2.]);
        let y = run(
            &CONV_TRANSPOSE,
            &[&x, &w],
            &[
                ("strides", Attr::Ints(vec![2])),
                ("pads", Attr::Ints(vec![1, 1])),
            ],
        );
        assert_eq!(y.to_f64_vec(), vec![1., 3., 2.]);
    }
}
