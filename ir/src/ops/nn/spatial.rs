//! Sampling and region ops: GridSample, AffineGrid, RoiAlign, Col2Im,
//! NonMaxSuppression and DeformConv, plus the opset-27 state-carrying
//! sequence ops CausalConvWithState and LinearAttention.
//!
//! Interpolating kernels compute in f64 and round once to the result type.
//! DeformConv, dominated by its matrix product, computes in the [`Real`]
//! type of its operands like Conv.

use super::conv::unravel;
use super::{float_dtype, float_values, gemm, opt_ints, real_dispatch, usize_list, Mat, Real};
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::dtype::DType;
use crate::ops::*;
use crate::tensor::strides_of;

/// Values of a numeric (non-complex) operand in f64.
fn numeric_values(t: &Tensor, what: &str) -> Result<Vec<f64>, String> {
    if !t.dtype.is_numeric() || matches!(t.dtype, DType::Complex64 | DType::Complex128) {
        return Err(format!(
            "{what} must be a real numeric tensor, got {}",
            t.dtype
        ));
    }
    Ok(t.to_f64_vec())
}

/// An operand of static shape values: the constant or symbolic value of
/// operand `i`, or None.
fn shape_operand(ctx: &InferCtx, i: usize) -> Option<Vec<Dim>> {
    ctx.sym_input(i)
}

// ---------------------------------------------------------------- GridSample

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SampleMode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PaddingMode {
    Zeros,
    Border,
    Reflection,
}

/// Reflects `x` into `[lo, hi]` by folding at the borders as often as needed.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    let fold = |d: f64| {
        let n = (d / range).floor();
        (d - n * range, n as i64 % 2 == 0)
    };
    if x < lo {
        let (r, even) = fold(lo - x);
        if even {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let (r, even) = fold(x - hi);
        if even {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

/// Keys' cubic convolution weights (a = -0.75) for taps at -1, 0, 1, 2
/// around a point at fractional offset `t` in [0, 1).
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Geometry of one spatial axis of a GridSample input.
#[derive(Clone, Copy, Debug)]
struct SampleAxis {
    size: usize,
    align_corners: bool,
    padding: PaddingMode,
}

impl SampleAxis {
    /// The sample range the padding mode folds or clamps into.
    fn bounds(&self) -> (f64, f64) {
        if self.align_corners {
            (0.0, self.size as f64 - 1.0)
        } else {
            (-0.5, self.size as f64 - 0.5)
        }
    }

    /// Normalized [-1, 1] coordinate to a pixel coordinate.
    fn denormalize(&self, n: f64) -> f64 {
        let d = self.size as f64;
        if self.align_corners {
            (n + 1.0) / 2.0 * (d - 1.0)
        } else {
            ((n + 1.0) * d - 1.0) / 2.0
        }
    }

    /// Applies the padding mode to a sample coordinate outside the bounds.
    fn fold_coordinate(&self, x: f64) -> f64 {
        let (lo, hi) = self.bounds();
        if x >= lo && x <= hi {
            return x;
        }
        match self.padding {
            PaddingMode::Zeros => x,
            PaddingMode::Border => x.clamp(0.0, self.size as f64 - 1.0),
            PaddingMode::Reflection => reflect(x, lo, hi),
        }
    }

    /// The element an integer tap reads, None for a zero pad.
    fn tap(&self, i: i64) -> Option<usize> {
        let last = self.size as i64 - 1;
        match self.padding {
            PaddingMode::Zeros => (0..=last).contains(&i).then_some(i as usize),
            PaddingMode::Border => Some(i.clamp(0, last.max(0)) as usize),
            PaddingMode::Reflection => {
                let (lo, hi) = self.bounds();
                // truncation toward zero, as the reference's int()
                Some((reflect(i as f64, lo, hi) as i64).clamp(0, last.max(0)) as usize)
            }
        }
    }

    /// (element, weight) pairs that interpolate at pixel coordinate `x`.
    fn taps(&self, x: f64, mode: SampleMode, out: &mut Vec<(Option<usize>, f64)>) {
        out.clear();
        let x = self.fold_coordinate(x);
        match mode {
            SampleMode::Nearest => out.push((self.tap(x as i64), 1.0)),
            SampleMode::Linear => {
                let x0 = x.floor();
                let t = x - x0;
                out.push((self.tap(x0 as i64), 1.0 - t));
                out.push((self.tap(x0 as i64 + 1), t));
            }
            SampleMode::Cubic => {
                let x0 = x.floor();
                let w = cubic_weights(x - x0);
                for (k, wk) in w.iter().enumerate() {
                    out.push((self.tap(x0 as i64 - 1 + k as i64), *wk));
                }
            }
        }
    }
}

fn parse_sample_mode(s: &str) -> Result<SampleMode, String> {
    // opset 16 spelled the modes bilinear/bicubic
    match s {
        "nearest" => Ok(SampleMode::Nearest),
        "linear" | "bilinear" => Ok(SampleMode::Linear),
        "cubic" | "bicubic" => Ok(SampleMode::Cubic),
        other => Err(format!(
            "GridSample mode must be linear, nearest or cubic, got '{other}'"
        )),
    }
}

fn parse_padding_mode(s: &str) -> Result<PaddingMode, String> {
    match s {
        "zeros" => Ok(PaddingMode::Zeros),
        "border" => Ok(PaddingMode::Border),
        "reflection" => Ok(PaddingMode::Reflection),
        other => Err(format!(
            "padding_mode must be zeros, border or reflection, got '{other}'"
        )),
    }
}

fn eval_grid_sample(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x_t, g_t) = (ctx.input(0)?, ctx.input(1)?);
    let r = x_t.rank().saturating_sub(2);
    if x_t.rank() < 3
        || g_t.rank() != x_t.rank()
        || g_t.shape[r + 1] != r
        || g_t.shape[0] != x_t.shape[0]
    {
        return Err(format!(
            "GridSample needs X [N,C,D1..Dr] and grid [N,O1..Or,{r}], got {:?} and {:?}",
            x_t.shape, g_t.shape
        ));
    }
    let mode = parse_sample_mode(&ctx.string("mode")?)?;
    let padding = parse_padding_mode(&ctx.string("padding_mode")?)?;
    let align_corners = ctx.int("align_corners")? != 0;
    let x = numeric_values(x_t, "X")?;
    let grid = float_values(g_t, "grid")?;
    let (n, c, in_sp) = (x_t.shape[0], x_t.shape[1], &x_t.shape[2..]);
    let out_sp = &g_t.shape[1..=r];
    let (nin, nout): (usize, usize) = (in_sp.iter().product(), out_sp.iter().product());
    if nin == 0 && nout > 0 && n * c > 0 {
        return Err(format!(
            "GridSample cannot sample an empty input {:?}",
            x_t.shape
        ));
    }
    let axes: Vec<SampleAxis> = in_sp
        .iter()
        .map(|&size| SampleAxis {
            size,
            align_corners,
            padding,
        })
        .collect();
    let in_strides = strides_of(in_sp);
    let mut y = vec![0f64; n * c * nout];
    let mut per_axis: Vec<Vec<(Option<usize>, f64)>> = vec![Vec::new(); r];
    // For each output point, the flat input offsets and weights it reads.
    let mut taps: Vec<(usize, f64)> = Vec::new();
    for b in 0..n {
        for p in 0..nout {
            let g = &grid[(b * nout + p) * r..(b * nout + p + 1) * r];
            for (a, ax) in axes.iter().enumerate() {
                // the grid's last axis lists coordinates innermost-first (x, y, z)
                let mut coord = ax.denormalize(g[r - 1 - a]);
                if mode == SampleMode::Nearest {
                    coord = coord.round_ties_even();
                }
                ax.taps(coord, mode, &mut per_axis[a]);
            }
            taps.clear();
            tensor_product(&per_axis, &in_strides, &mut taps);
            for ch in 0..c {
                let plane = &x[(b * c + ch) * nin..(b * c + ch + 1) * nin];
                y[(b * c + ch) * nout + p] = taps.iter().map(|&(i, w)| w * plane[i]).sum();
            }
        }
    }
    let mut shape = vec![n, c];
    shape.extend_from_slice(out_sp);
    Ok(vec![Tensor::from_f64(x_t.dtype, shape, &y)])
}

/// All combinations of one tap per axis: flat offsets and product weights,
/// skipping combinations that touch a zero pad.
fn tensor_product(
    per_axis: &[Vec<(Option<usize>, f64)>],
    strides: &[usize],
    out: &mut Vec<(usize, f64)>,
) {
    fn rec(
        a: usize,
        off: usize,
        w: f64,
        per_axis: &[Vec<(Option<usize>, f64)>],
        strides: &[usize],
        out: &mut Vec<(usize, f64)>,
    ) {
        if a == per_axis.len() {
            out.push((off, w));
            return;
        }
        for &(i, wi) in &per_axis[a] {
            if let Some(i) = i {
                rec(a + 1, off + i * strides[a], w * wi, per_axis, strides, out);
            }
        }
    }
    rec(0, 0, 1.0, per_axis, strides, out);
}

fn infer_grid_sample(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let (x, g) = (ctx.input(0)?, ctx.input(1)?);
    float_dtype(g, "grid")?;
    let r = x.rank().saturating_sub(2);
    if x.rank() < 3 || g.rank() != x.rank() || !g.shape[r + 1].compatible(&Dim::fixed(r as i64)) {
        return Err(format!(
            "GridSample needs X [N,C,D1..Dr] and grid [N,O1..Or,{r}], got {x} and {g}"
        ));
    }
    parse_sample_mode(&ctx.string("mode")?)?;
    parse_padding_mode(&ctx.string("padding_mode")?)?;
    let mut dims = vec![x.shape[0].clone(), x.shape[1].clone()];
    dims.extend(g.shape[1..=r].iter().cloned());
    Ok(vec![x.with_shape(dims)])
}

pub static GRID_SAMPLE: OpDef = OpDef {
    mnemonic: "grid_sample",
    summary: "samples X at normalized grid coordinates (nearest, linear or cubic, N-D)",
    operands: &[req("x"), req("grid")],
    results: Results::Fixed(1),
    attrs: &[
        attr("align_corners", AttrKind::Int, Default::Int(0)),
        attr("mode", AttrKind::Str, Default::Str("linear")),
        attr("padding_mode", AttrKind::Str, Default::Str("zeros")),
    ],
    traits: &[],
    infer: infer_grid_sample,
    eval: Some(eval_grid_sample),
};

// ---------------------------------------------------------------- AffineGrid

/// The normalized base coordinate of pixel `i` of an axis of `d` pixels.
fn base_coordinate(i: usize, d: usize, align_corners: bool) -> f64 {
    if align_corners {
        if d <= 1 {
            -1.0
        } else {
            -1.0 + 2.0 * i as f64 / (d - 1) as f64
        }
    } else {
        -1.0 + (2 * i + 1) as f64 / d as f64
    }
}

fn eval_affine_grid(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (th_t, size_t) = (ctx.input(0)?, ctx.input(1)?);
    let theta = float_values(th_t, "theta")?;
    let size = size_t.to_i64_vec();
    let r = size.len().saturating_sub(2);
    if !(r == 2 || r == 3) || th_t.shape != [size[0].max(0) as usize, r, r + 1] {
        return Err(format!(
            "AffineGrid needs size [N,C,H,W] or [N,C,D,H,W] and theta [N,{r},{}], got size {size:?} and theta {:?}",
            r + 1,
            th_t.shape
        ));
    }
    let dims = crate::ops::util::to_usize_shape(&size)?;
    let (n, sp) = (dims[0], &dims[2..]);
    let align = ctx.int("align_corners")? != 0;
    let np: usize = sp.iter().product();
    let mut out = Vec::with_capacity(n * np * r);
    let mut idx = vec![0usize; r];
    let mut homo = vec![1.0f64; r + 1];
    for b in 0..n {
        let th = &theta[b * r * (r + 1)..(b + 1) * r * (r + 1)];
        for p in 0..np {
            unravel(p, sp, &mut idx);
            // homogeneous (x, y[, z], 1): innermost spatial axis first
            for a in 0..r {
                homo[a] = base_coordinate(idx[r - 1 - a], sp[r - 1 - a], align);
            }
            for k in 0..r {
                out.push((0..=r).map(|j| th[k * (r + 1) + j] * homo[j]).sum());
            }
        }
    }
    let mut shape = vec![n];
    shape.extend_from_slice(sp);
    shape.push(r);
    Ok(vec![Tensor::from_f64(th_t.dtype, shape, &out)])
}

fn infer_affine_grid(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let th = ctx.input(0)?;
    let dt = float_dtype(th, "theta")?;
    let size = ctx.input(1)?;
    let r = match (
        size.shape.first().and_then(Dim::as_fixed),
        th.shape.get(1).and_then(Dim::as_fixed),
    ) {
        (Some(4), _) | (None, Some(2)) => 2,
        (Some(5), _) | (None, Some(3)) => 3,
        _ => {
            return Err(format!(
                "AffineGrid size must have 4 or 5 values, theta is {th}"
            ))
        }
    };
    let dims = match shape_operand(ctx, 1) {
        Some(v) if v.len() == r + 2 => v,
        _ => vec![Dim::Unknown; r + 2],
    };
    let mut out = vec![th.shape[0].clone()];
    out.extend(dims[2..].iter().cloned());
    out.push(Dim::fixed(r as i64));
    Ok(vec![TensorType::new(out, dt)])
}

pub static AFFINE_GRID: OpDef = OpDef {
    mnemonic: "affine_grid",
    summary: "sampling grid of affine transforms theta over an output size (2-D and 3-D)",
    operands: &[req("theta"), req("size")],
    results: Results::Fixed(1),
    attrs: &[attr("align_corners", AttrKind::Int, Default::Int(0))],
    traits: &[],
    infer: infer_affine_grid,
    eval: Some(eval_affine_grid),
};

// ---------------------------------------------------------------- RoiAlign

/// One bilinear sample of RoiAlign: four corner offsets and weights.
#[derive(Clone, Copy, Debug, Default)]
struct Corners {
    pos: [usize; 4],
    w: [f64; 4],
}

/// The bilinear corners of sample point (y, x) in an h×w plane; all-zero
/// weights for points more than one pixel outside it.
fn roi_corners(y: f64, x: f64, h: usize, w: usize) -> Corners {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 || h == 0 || w == 0 {
        return Corners::default();
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut y0, mut x0) = (y as usize, x as usize);
    let (y1, x1);
    if y0 >= h - 1 {
        y0 = h - 1;
        y1 = h - 1;
        y = y0 as f64;
    } else {
        y1 = y0 + 1;
    }
    if x0 >= w - 1 {
        x0 = w - 1;
        x1 = w - 1;
        x = x0 as f64;
    } else {
        x1 = x0 + 1;
    }
    let (ly, lx) = (y - y0 as f64, x - x0 as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Corners {
        pos: [y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1],
        w: [hy * hx, hy * lx, ly * hx, ly * lx],
    }
}

fn eval_roi_align(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x_t, rois_t, bi_t) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    if x_t.rank() != 4
        || rois_t.rank() != 2
        || rois_t.shape[1] != 4
        || bi_t.shape != [rois_t.shape[0]]
    {
        return Err(format!(
            "RoiAlign needs X [N,C,H,W], rois [R,4] and batch_indices [R], got {:?}, {:?} and {:?}",
            x_t.shape, rois_t.shape, bi_t.shape
        ));
    }
    let x = float_values(x_t, "X")?;
    let rois = float_values(rois_t, "rois")?;
    let batch_idx = bi_t.to_i64_vec();
    let (n, c, h, w) = (x_t.shape[0], x_t.shape[1], x_t.shape[2], x_t.shape[3]);
    let positive = |name: &str| -> Result<usize, String> {
        let v = ctx.int(name)?;
        usize::try_from(v)
            .ok()
            .filter(|&u| u > 0)
            .ok_or_else(|| format!("{name} must be positive, got {v}"))
    };
    let (oh, ow) = (positive("output_height")?, positive("output_width")?);
    let sampling = ctx.int("sampling_ratio")?;
    if sampling < 0 {
        return Err(format!("sampling_ratio must be >= 0, got {sampling}"));
    }
    let scale = ctx.float("spatial_scale")?;
    let max_mode = match ctx.string("mode")?.as_str() {
        "avg" => false,
        "max" => true,
        m => return Err(format!("RoiAlign mode must be avg or max, got '{m}'")),
    };
    let half_pixel = match ctx.string("coordinate_transformation_mode")?.as_str() {
        "half_pixel" => true,
        "output_half_pixel" => false,
        m => return Err(format!("unknown coordinate_transformation_mode '{m}'")),
    };
    let nr = rois_t.shape[0];
    if (h == 0 || w == 0) && nr * c > 0 {
        return Err(format!(
            "RoiAlign cannot pool an empty input {:?}",
            x_t.shape
        ));
    }
    let mut y = vec![0f64; nr * c * oh * ow];
    let mut samples: Vec<Corners> = Vec::new();
    for ri in 0..nr {
        let b = usize::try_from(batch_idx[ri])
            .ok()
            .filter(|&b| b < n)
            .ok_or_else(|| format!("batch index {} is outside [0, {n})", batch_idx[ri]))?;
        let off = if half_pixel { 0.5 } else { 0.0 };
        let roi = &rois[ri * 4..ri * 4 + 4];
        let (x0, y0) = (roi[0] * scale - off, roi[1] * scale - off);
        let (x1, y1) = (roi[2] * scale - off, roi[3] * scale - off);
        let (mut rw, mut rh) = (x1 - x0, y1 - y0);
        if !half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bin_h, bin_w) = (rh / oh as f64, rw / ow as f64);
        let grid = |extent: f64, bins: usize| {
            if sampling > 0 {
                sampling as usize
            } else {
                (extent / bins as f64).ceil().max(0.0) as usize
            }
        };
        let (gh, gw) = (grid(rh, oh), grid(rw, ow));
        let count = (gh * gw).max(1) as f64;
        samples.clear();
        for ph in 0..oh {
            for pw in 0..ow {
                for iy in 0..gh {
                    let sy = y0 + ph as f64 * bin_h + (iy as f64 + 0.5) * bin_h / gh as f64;
                    for ix in 0..gw {
                        let sx = x0 + pw as f64 * bin_w + (ix as f64 + 0.5) * bin_w / gw as f64;
                        samples.push(roi_corners(sy, sx, h, w));
                    }
                }
            }
        }
        let per_bin = gh * gw;
        for ch in 0..c {
            let plane = &x[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
            for bin in 0..oh * ow {
                let pts = &samples[bin * per_bin..(bin + 1) * per_bin];
                let terms = pts.iter().map(|s| {
                    let v = |k: usize| s.w[k] * plane[s.pos[k]];
                    (v(0), v(1), v(2), v(3))
                });
                y[(ri * c + ch) * oh * ow + bin] = if max_mode {
                    // onnxruntime's max mode: the largest weighted corner
                    terms
                        .map(|(a, b, c, d)| a.max(b).max(c).max(d))
                        .reduce(f64::max)
                        .unwrap_or(0.0)
                } else {
                    terms.map(|(a, b, c, d)| a + b + c + d).sum::<f64>() / count
                };
            }
        }
    }
    Ok(vec![Tensor::from_f64(x_t.dtype, vec![nr, c, oh, ow], &y)])
}

fn infer_roi_align(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let (x, rois) = (ctx.input(0)?, ctx.input(1)?);
    let dt = float_dtype(x, "X")?;
    if x.rank() != 4 || rois.rank() != 2 {
        return Err(format!(
            "RoiAlign needs X [N,C,H,W] and rois [R,4], got {x} and {rois}"
        ));
    }
    Ok(vec![TensorType::new(
        vec![
            rois.shape[0].clone(),
            x.shape[1].clone(),
            Dim::fixed(ctx.int("output_height")?),
            Dim::fixed(ctx.int("output_width")?),
        ],
        dt,
    )])
}

pub static ROI_ALIGN: OpDef = OpDef {
    mnemonic: "roi_align",
    summary: "bilinear region-of-interest pooling (avg or max) to a fixed output size",
    operands: &[req("x"), req("rois"), req("batch_indices")],
    results: Results::Fixed(1),
    attrs: &[
        attr(
            "coordinate_transformation_mode",
            AttrKind::Str,
            Default::Str("half_pixel"),
        ),
        attr("mode", AttrKind::Str, Default::Str("avg")),
        attr("output_height", AttrKind::Int, Default::Int(1)),
        attr("output_width", AttrKind::Int, Default::Int(1)),
        attr("sampling_ratio", AttrKind::Int, Default::Int(0)),
        attr("spatial_scale", AttrKind::Float, Default::Float(1.0)),
    ],
    traits: &[],
    infer: infer_roi_align,
    eval: Some(eval_roi_align),
};

// ---------------------------------------------------------------- Col2Im

/// The sliding-block geometry of Col2Im, resolved for `r` spatial axes.
struct BlockGeometry {
    image: Vec<usize>,
    block: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pad_begin: Vec<usize>,
    /// Block positions per axis.
    blocks: Vec<usize>,
}

impl BlockGeometry {
    fn new(ctx: &EvalCtx, image: &[i64], block: &[i64]) -> Result<BlockGeometry, String> {
        let r = image.len();
        if block.len() != r || r == 0 {
            return Err(format!(
                "image_shape {image:?} and block_shape {block:?} must have the same non-zero length"
            ));
        }
        let image = usize_list(Some(image.to_vec()), r, 1, 1, "image_shape")?;
        let block = usize_list(Some(block.to_vec()), r, 1, 1, "block_shape")?;
        let strides = usize_list(opt_ints(ctx, "strides")?, r, 1, 1, "strides")?;
        let dilations = usize_list(opt_ints(ctx, "dilations")?, r, 1, 1, "dilations")?;
        let pads = usize_list(opt_ints(ctx, "pads")?, 2 * r, 0, 0, "pads")?;
        let blocks = (0..r)
            .map(|a| {
                let span = image[a] + pads[a] + pads[r + a];
                let eff = (block[a] - 1) * dilations[a] + 1;
                if span < eff {
                    return Err(format!(
                        "block of extent {eff} does not fit the padded image ({span})"
                    ));
                }
                Ok((span - eff) / strides[a] + 1)
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(BlockGeometry {
            image,
            block,
            strides,
            dilations,
            pad_begin: pads[..r].to_vec(),
            blocks,
        })
    }

    /// For every (block element, block position), the image element it
    /// adds to, or None where it falls into the padding.
    fn targets(&self) -> Vec<Option<usize>> {
        let r = self.image.len();
        let nk: usize = self.block.iter().product();
        let nl: usize = self.blocks.iter().product();
        let (mut k, mut l) = (vec![0; r], vec![0; r]);
        let mut out = Vec::with_capacity(nk * nl);
        for kf in 0..nk {
            unravel(kf, &self.block, &mut k);
            for lf in 0..nl {
                unravel(lf, &self.blocks, &mut l);
                let mut flat = Some(0usize);
                for a in 0..r {
                    let pos = (l[a] * self.strides[a] + k[a] * self.dilations[a]) as i64
                        - self.pad_begin[a] as i64;
                    flat = flat
                        .filter(|_| pos >= 0 && pos < self.image[a] as i64)
                        .map(|f| f * self.image[a] + pos as usize);
                }
                out.push(flat);
            }
        }
        out
    }
}

/// Sums the columns into the image planes (`cols` is [N, C·K, L]).
fn col2im_sum<T: Copy + std::default::Default + std::ops::AddAssign>(
    cols: &[T],
    planes: usize,
    targets: &[Option<usize>],
    image_size: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); planes * image_size];
    let per_plane = targets.len();
    for p in 0..planes {
        let src = &cols[p * per_plane..(p + 1) * per_plane];
        let dst = &mut out[p * image_size..(p + 1) * image_size];
        for (v, t) in src.iter().zip(targets) {
            if let Some(i) = t {
                dst[*i] += *v;
            }
        }
    }
    out
}

fn eval_col2im(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    let geo = BlockGeometry::new(
        ctx,
        &ctx.input(1)?.to_i64_vec(),
        &ctx.input(2)?.to_i64_vec(),
    )?;
    let nk: usize = geo.block.iter().product();
    let nl: usize = geo.blocks.iter().product();
    if x.rank() != 3 || x.shape[1] % nk != 0 || x.shape[2] != nl {
        return Err(format!(
            "Col2Im input must be [N, C*{nk}, {nl}] for block {:?} over image {:?}, got {:?}",
            geo.block, geo.image, x.shape
        ));
    }
    let (n, c) = (x.shape[0], x.shape[1] / nk);
    let targets = geo.targets();
    let image_size: usize = geo.image.iter().product();
    let mut shape = vec![n, c];
    shape.extend_from_slice(&geo.image);
    let planes = n * c;
    if x.dtype.is_float() {
        let v = col2im_sum(&x.to_f64_vec(), planes, &targets, image_size);
        Ok(vec![Tensor::from_f64(x.dtype, shape, &v)])
    } else if x.dtype.is_int() {
        let v = col2im_sum(&x.to_i64_vec(), planes, &targets, image_size);
        Ok(vec![Tensor::from_i64(x.dtype, shape, &v)])
    } else {
        Err(format!(
            "Col2Im expects a real numeric tensor, got {}",
            x.dtype
        ))
    }
}

fn infer_col2im(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    if x.rank() != 3 {
        return Err(format!("Col2Im input must be rank 3, got {x}"));
    }
    let r = match ctx.input(1)?.shape.first().and_then(Dim::as_fixed) {
        Some(r) if r > 0 => r as usize,
        _ => return Err("Col2Im image_shape must be a 1-D tensor of static length".into()),
    };
    let image = shape_operand(ctx, 1).unwrap_or_else(|| vec![Dim::Unknown; r]);
    let channels = match ctx.const_input(2) {
        Some(b) => {
            let k: i64 = b.to_i64_vec().iter().product();
            x.shape[1].div_exact(&Dim::fixed(k))
        }
        None => Dim::Unknown,
    };
    let mut dims = vec![x.shape[0].clone(), channels];
    dims.extend(image);
    Ok(vec![x.with_shape(dims)])
}

pub static COL2IM: OpDef = OpDef {
    mnemonic: "col2im",
    summary: "sums sliding blocks [N, C·K, L] back into images [N, C, ...] (inverse of im2col)",
    operands: &[req("input"), req("image_shape"), req("block_shape")],
    results: Results::Fixed(1),
    attrs: &[
        attr("dilations", AttrKind::Ints, Default::Absent),
        attr("pads", AttrKind::Ints, Default::Absent),
        attr("strides", AttrKind::Ints, Default::Absent),
    ],
    traits: &[],
    infer: infer_col2im,
    eval: Some(eval_col2im),
};

// ---------------------------------------------------------------- NonMaxSuppression

/// A box as (x_min, y_min, x_max, y_max), in f32 like onnxruntime so that
/// threshold comparisons at the boundary agree.
fn box_extent(b: &[f32], center_point: bool) -> [f32; 4] {
    if center_point {
        let (hw, hh) = (b[2] / 2.0, b[3] / 2.0);
        [b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh]
    } else {
        // corners as [y1, x1, y2, x2], in either order
        [
            b[1].min(b[3]),
            b[0].min(b[2]),
            b[1].max(b[3]),
            b[0].max(b[2]),
        ]
    }
}

/// Whether two boxes overlap by more than `threshold` (intersection over union).
fn overlaps(a: &[f32; 4], b: &[f32; 4], threshold: f32) -> bool {
    let (ix0, ix1) = (a[0].max(b[0]), a[2].min(b[2]));
    let (iy0, iy1) = (a[1].max(b[1]), a[3].min(b[3]));
    if ix1 <= ix0 || iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let area = |x: &[f32; 4]| (x[2] - x[0]) * (x[3] - x[1]);
    let (a1, a2) = (area(a), area(b));
    let union = a1 + a2 - inter;
    if inter <= 0.0 || a1 <= 0.0 || a2 <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > threshold
}

fn eval_nms(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (boxes_t, scores_t) = (ctx.input(0)?, ctx.input(1)?);
    if boxes_t.rank() != 3
        || boxes_t.shape[2] != 4
        || scores_t.rank() != 3
        || scores_t.shape[0] != boxes_t.shape[0]
        || scores_t.shape[2] != boxes_t.shape[1]
    {
        return Err(format!(
            "NonMaxSuppression needs boxes [B,n,4] and scores [B,classes,n], got {:?} and {:?}",
            boxes_t.shape, scores_t.shape
        ));
    }
    if !boxes_t.dtype.is_float() || !scores_t.dtype.is_float() {
        return Err("NonMaxSuppression boxes and scores must be float tensors".into());
    }
    let boxes = boxes_t.to_f32_vec();
    let scores = scores_t.to_f32_vec();
    let scalar = |i: usize| ctx.opt_input(i).filter(|t| !t.is_empty());
    let max_per_class = scalar(2).map_or(0, |t| t.get_i64(0).max(0)) as usize;
    let iou = scalar(3).map_or(0.0, |t| t.get_f64(0) as f32);
    if !(0.0..=1.0).contains(&iou) {
        return Err(format!("iou_threshold must be in [0, 1], got {iou}"));
    }
    let score_min = scalar(4).map(|t| t.get_f64(0) as f32);
    let center = ctx.int("center_point_box")? != 0;
    let (nb, nboxes, ncls) = (boxes_t.shape[0], boxes_t.shape[1], scores_t.shape[1]);
    let mut selected: Vec<i64> = Vec::new();
    let mut kept: Vec<[f32; 4]> = Vec::new();
    for b in 0..nb {
        let extents: Vec<[f32; 4]> = (0..nboxes)
            .map(|i| {
                box_extent(
                    &boxes[(b * nboxes + i) * 4..(b * nboxes + i + 1) * 4],
                    center,
                )
            })
            .collect();
        for cl in 0..ncls {
            let s = &scores[(b * ncls + cl) * nboxes..(b * ncls + cl + 1) * nboxes];
            let mut order: Vec<usize> = (0..nboxes)
                .filter(|&i| score_min.is_none_or(|m| s[i] > m))
                .collect();
            // highest score first; ties keep the lower index first
            order.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
            kept.clear();
            for i in order {
                if kept.len() >= max_per_class {
                    break;
                }
                if kept.iter().all(|k| !overlaps(&extents[i], k, iou)) {
                    kept.push(extents[i]);
                    selected.extend([b as i64, cl as i64, i as i64]);
                }
            }
        }
    }
    let n = selected.len() / 3;
    Ok(vec![Tensor::i64(vec![n, 3], selected)])
}

pub static NON_MAX_SUPPRESSION: OpDef = OpDef {
    mnemonic: "non_max_suppression",
    summary: "greedy per-class box selection by score, suppressing overlaps above an IoU threshold",
    operands: &[
        req("boxes"),
        req("scores"),
        opt("max_output_boxes_per_class"),
        opt("iou_threshold"),
        opt("score_threshold"),
    ],
    results: Results::Fixed(1),
    attrs: &[attr("center_point_box", AttrKind::Int, Default::Int(0))],
    traits: &[],
    infer: |ctx| {
        let (b, s) = (ctx.input(0)?, ctx.input(1)?);
        if b.rank() != 3 || s.rank() != 3 {
            return Err(format!(
                "NonMaxSuppression needs boxes [B,n,4] and scores [B,classes,n], got {b} and {s}"
            ));
        }
        Ok(vec![TensorType::new(
            vec![Dim::Unknown, Dim::fixed(3)],
            DType::I64,
        )])
    },
    eval: Some(eval_nms),
};

// ---------------------------------------------------------------- DeformConv

/// DeformConv geometry for `r` spatial axes.
struct DeformGeometry {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pad_begin: Vec<usize>,
    pad_end: Vec<usize>,
}

impl DeformGeometry {
    fn new(ctx: &impl AttrAccess, kernel: Vec<usize>) -> Result<DeformGeometry, String> {
        let r = kernel.len();
        if kernel.contains(&0) {
            return Err(format!("W has an empty kernel {kernel:?}"));
        }
        if let Some(k) = opt_ints(ctx, "kernel_shape")? {
            if usize_list(Some(k.clone()), r, 1, 1, "kernel_shape")? != kernel {
                return Err(format!(
                    "kernel_shape {k:?} does not match W's spatial dims {kernel:?}"
                ));
            }
        }
        let pads = usize_list(opt_ints(ctx, "pads")?, 2 * r, 0, 0, "pads")?;
        Ok(DeformGeometry {
            strides: usize_list(opt_ints(ctx, "strides")?, r, 1, 1, "strides")?,
            dilations: usize_list(opt_ints(ctx, "dilations")?, r, 1, 1, "dilations")?,
            pad_begin: pads[..r].to_vec(),
            pad_end: pads[r..].to_vec(),
            kernel,
        })
    }

    fn out_size(&self, a: usize, input: usize) -> Result<usize, String> {
        let span = input + self.pad_begin[a] + self.pad_end[a];
        let eff = (self.kernel[a] - 1) * self.dilations[a] + 1;
        if span < eff {
            return Err(format!(
                "kernel of extent {eff} does not fit the padded input ({span})"
            ));
        }
        Ok((span - eff) / self.strides[a] + 1)
    }
}

/// Multilinear interpolation of a plane at fractional position `pos`,
/// reading zeros outside it.
fn sample_zero_padded<R: Real>(plane: &[R], dims: &[usize], strides: &[usize], pos: &[f64]) -> R {
    let r = dims.len();
    let mut acc = 0f64;
    'corner: for corner in 0..(1usize << r) {
        let (mut off, mut w) = (0usize, 1f64);
        for a in 0..r {
            let f = pos[a].floor();
            let t = pos[a] - f;
            let (i, wa) = if corner >> a & 1 == 1 {
                (f as i64 + 1, t)
            } else {
                (f as i64, 1.0 - t)
            };
            if i < 0 || i >= dims[a] as i64 || wa == 0.0 {
                continue 'corner;
            }
            off += i as usize * strides[a];
            w *= wa;
        }
        acc += w * plane[off].to_f64();
    }
    R::of(acc)
}

fn deform_conv_kernel<R: Real>(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x_t, w_t, off_t) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    if x_t.rank() < 3 || w_t.rank() != x_t.rank() || off_t.rank() != x_t.rank() {
        return Err(format!(
            "DeformConv needs X, W and offset of equal rank >= 3, got {:?}, {:?} and {:?}",
            x_t.shape, w_t.shape, off_t.shape
        ));
    }
    let r = x_t.rank() - 2;
    let (n, c, in_sp) = (x_t.shape[0], x_t.shape[1], &x_t.shape[2..]);
    let (m, cg) = (w_t.shape[0], w_t.shape[1]);
    let positive = |name: &str| -> Result<usize, String> {
        let v = ctx.int(name)?;
        usize::try_from(v)
            .ok()
            .filter(|&u| u > 0)
            .ok_or_else(|| format!("{name} must be positive, got {v}"))
    };
    let (group, og) = (positive("group")?, positive("offset_group")?);
    if c != cg * group || m % group != 0 || c % og != 0 {
        return Err(format!(
            "channels: X has {c}, W expects {cg} per group x {group} groups and {m} outputs, offset_group {og}"
        ));
    }
    let geo = DeformGeometry::new(ctx, w_t.shape[2..].to_vec())?;
    let out_sp = (0..r)
        .map(|a| geo.out_size(a, in_sp[a]))
        .collect::<Result<Vec<_>, _>>()?;
    let (nk, np, nin): (usize, usize, usize) = (
        geo.kernel.iter().product(),
        out_sp.iter().product(),
        in_sp.iter().product(),
    );
    let mut want_off = vec![n, og * nk * r];
    want_off.extend_from_slice(&out_sp);
    if off_t.shape != want_off {
        return Err(format!(
            "offset has shape {:?}, expected {want_off:?}",
            off_t.shape
        ));
    }
    let mask = match ctx.opt_input(4) {
        Some(t) => {
            let mut want = vec![n, og * nk];
            want.extend_from_slice(&out_sp);
            if t.shape != want {
                return Err(format!("mask has shape {:?}, expected {want:?}", t.shape));
            }
            Some(R::load(t))
        }
        None => None,
    };
    let bias = ctx.opt_input(3).map(R::load);
    if bias.as_ref().is_some_and(|b| b.len() != m) {
        return Err(format!("B must have {m} elements"));
    }
    let (x, w, offset) = (R::load(x_t), R::load(w_t), R::load(off_t));
    let in_strides = strides_of(in_sp);
    let (mg, rows) = (m / group, cg * nk);
    let cpo = c / og;
    let mut col = vec![R::ZERO; c * nk * np];
    let mut y = vec![R::ZERO; n * m * np];
    let (mut kidx, mut oidx, mut pos) = (vec![0; r], vec![0; r], vec![0f64; r]);
    for b in 0..n {
        for ci in 0..c {
            let g = ci / cpo;
            let plane = &x[(b * c + ci) * nin..(b * c + ci + 1) * nin];
            for k in 0..nk {
                unravel(k, &geo.kernel, &mut kidx);
                for p in 0..np {
                    unravel(p, &out_sp, &mut oidx);
                    for a in 0..r {
                        let o = offset[((b * og + g) * nk * r + k * r + a) * np + p].to_f64();
                        pos[a] = (oidx[a] * geo.strides[a] + kidx[a] * geo.dilations[a]) as f64
                            - geo.pad_begin[a] as f64
                            + o;
                    }
                    let mut v = sample_zero_padded(plane, in_sp, &in_strides, &pos);
                    if let Some(mk) = &mask {
                        v *= mk[((b * og + g) * nk + k) * np + p];
                    }
                    col[(ci * nk + k) * np + p] = v;
                }
            }
        }
        for g in 0..group {
            gemm(
                &w,
                Mat::dense(g * mg * rows, mg, rows),
                &col,
                Mat::dense(g * rows * np, rows, np),
                R::ZERO,
                &mut y,
                Mat::dense((b * m + g * mg) * np, mg, np),
            )?;
        }
    }
    if let Some(bias) = bias {
        for (i, plane) in y.chunks_mut(np.max(1)).enumerate() {
            let bv = bias[i % m];
            plane.iter_mut().for_each(|e| *e += bv);
        }
    }
    let mut shape = vec![n, m];
    shape.extend_from_slice(&out_sp);
    Ok(vec![R::store(x_t.dtype, shape, y)])
}

fn infer_deform_conv(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let (x, w, off) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let dt = float_dtype(x, "X")?;
    if x.rank() < 3 || w.rank() != x.rank() || off.rank() != x.rank() {
        return Err(format!(
            "DeformConv needs X, W and offset of equal rank >= 3, got {x}, {w} and {off}"
        ));
    }
    // The offset operand already has the output's spatial dims.
    let mut dims = vec![x.shape[0].clone(), w.shape[0].clone()];
    dims.extend(off.shape[2..].iter().cloned());
    Ok(vec![TensorType::new(dims, dt)])
}

pub static DEFORM_CONV: OpDef = OpDef {
    mnemonic: "deform_conv",
    summary: "deformable convolution: taps moved by learned offsets, optionally masked",
    operands: &[req("x"), req("w"), req("offset"), opt("b"), opt("mask")],
    results: Results::Fixed(1),
    attrs: &[
        attr("dilations", AttrKind::Ints, Default::Absent),
        attr("group", AttrKind::Int, Default::Int(1)),
        attr("kernel_shape", AttrKind::Ints, Default::Absent),
        attr("offset_group", AttrKind::Int, Default::Int(1)),
        attr("pads", AttrKind::Ints, Default::Absent),
        attr("strides", AttrKind::Ints, Default::Absent),
    ],
    traits: &[],
    infer: infer_deform_conv,
    eval: Some(|ctx| real_dispatch!(ctx.input(0)?.dtype, deform_conv_kernel(ctx))),
};

// ---------------------------------------------------------------- CausalConvWithState

fn eval_causal_conv(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x_t, w_t) = (ctx.input(0)?, ctx.input(1)?);
    if x_t.rank() != 3
        || w_t.rank() != 3
        || w_t.shape[0] != x_t.shape[1]
        || w_t.shape[1] != 1
        || w_t.shape[2] == 0
    {
        return Err(format!(
            "CausalConvWithState needs input [B,C,L] and weight [C,1,k>0], got {:?} and {:?}",
            x_t.shape, w_t.shape
        ));
    }
    let silu = match ctx.string("activation")?.as_str() {
        "none" => false,
        "silu" | "swish" => true,
        a => return Err(format!("activation must be none, silu or swish, got '{a}'")),
    };
    let (nb, c, len, k) = (x_t.shape[0], x_t.shape[1], x_t.shape[2], w_t.shape[2]);
    let x = float_values(x_t, "input")?;
    let w = float_values(w_t, "weight")?;
    let bias = match ctx.opt_input(2) {
        Some(t) if t.shape == [c] => float_values(t, "bias")?,
        Some(t) => return Err(format!("bias has shape {:?}, expected [{c}]", t.shape)),
        None => vec![0.0; c],
    };
    let past = match ctx.opt_input(3) {
        Some(t) if t.shape == [nb, c, k - 1] => float_values(t, "past_state")?,
        Some(t) => {
            return Err(format!(
                "past_state has shape {:?}, expected [{nb}, {c}, {}]",
                t.shape,
                k - 1
            ))
        }
        None => vec![0.0; nb * c * (k - 1)],
    };
    let span = len + k - 1;
    let mut out = vec![0f64; nb * c * len];
    let mut present = Vec::with_capacity(nb * c * (k - 1));
    let mut padded = vec![0f64; span];
    for b in 0..nb {
        for ch in 0..c {
            let plane = b * c + ch;
            padded[..k - 1].copy_from_slice(&past[plane * (k - 1)..(plane + 1) * (k - 1)]);
            padded[k - 1..].copy_from_slice(&x[plane * len..(plane + 1) * len]);
            let taps = &w[ch * k..(ch + 1) * k];
            for t in 0..len {
                out[plane * len + t] = bias[ch]
                    + taps
                        .iter()
                        .zip(&padded[t..t + k])
                        .map(|(a, b)| a * b)
                        .sum::<f64>();
            }
            present.extend_from_slice(&padded[len..]);
        }
    }
    let shape = x_t.shape.clone();
    let mut y = Tensor::from_f64(x_t.dtype, shape.clone(), &out);
    if silu {
        // The convolution result is rounded to the element type before the
        // activation, as the ONNX function body does.
        let v: Vec<f64> = y
            .to_f64_vec()
            .into_iter()
            .map(|v| v / (1.0 + (-v).exp()))
            .collect();
        y = Tensor::from_f64(x_t.dtype, shape, &v);
    }
    let state_dtype = ctx.opt_input(3).map_or(x_t.dtype, |t| t.dtype);
    Ok(vec![
        y,
        Tensor::from_f64(state_dtype, vec![nb, c, k - 1], &present),
    ][..ctx.num_results.clamp(1, 2)]
        .to_vec())
}

fn infer_causal_conv(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    float_dtype(x, "input")?;
    if x.rank() != 3 || w.rank() != 3 {
        return Err(format!(
            "CausalConvWithState needs input [B,C,L] and weight [C,1,k], got {x} and {w}"
        ));
    }
    let km1 = w.shape[2].sub(&Dim::fixed(1));
    let state = ctx.opt_input(3).map_or(x.dtype(), |t| t.dtype());
    let present = TensorType::new(vec![x.shape[0].clone(), x.shape[1].clone(), km1], state);
    let mut out = vec![x.clone(), present];
    out.truncate(ctx.num_results.clamp(1, 2));
    Ok(out)
}

pub static CAUSAL_CONV_WITH_STATE: OpDef = OpDef {
    mnemonic: "causal_conv_with_state",
    summary: "causal depthwise 1-D convolution carrying the last k-1 inputs as state",
    operands: &[req("input"), req("weight"), opt("bias"), opt("past_state")],
    results: Results::Range(1, 2),
    attrs: &[attr("activation", AttrKind::Str, Default::Str("none"))],
    traits: &[],
    infer: infer_causal_conv,
    eval: Some(eval_causal_conv),
};

// ---------------------------------------------------------------- LinearAttention

/// The recurrence LinearAttention's `update_rule` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UpdateRule {
    gated: bool,
    delta: bool,
}

impl UpdateRule {
    fn parse(s: &str) -> Result<UpdateRule, String> {
        let (gated, delta) = match s {
            "linear" => (false, false),
            "gated" => (true, false),
            "delta" => (false, true),
            "gated_delta" => (true, true),
            other => {
                return Err(format!(
                    "update_rule must be linear, gated, delta or gated_delta, got '{other}'"
                ))
            }
        };
        Ok(UpdateRule { gated, delta })
    }
}

fn head_counts(ctx: &impl AttrAccess) -> Result<(usize, usize), String> {
    let (q, kv) = (ctx.int("q_num_heads")?, ctx.int("kv_num_heads")?);
    if q <= 0 || kv <= 0 || q % kv != 0 {
        return Err(format!(
            "q_num_heads ({q}) must be a positive multiple of kv_num_heads ({kv})"
        ));
    }
    Ok((q as usize, kv as usize))
}

fn eval_linear_attention(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let rule = UpdateRule::parse(&ctx.string("update_rule")?)?;
    let (hq, hkv) = head_counts(ctx)?;
    let (q_t, k_t, v_t) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    if q_t.rank() != 3 || k_t.rank() != 3 || v_t.rank() != 3 {
        return Err("query, key and value must be rank 3 [B, T, H*D]".into());
    }
    let (b, t) = (q_t.shape[0], q_t.shape[1]);
    if q_t.shape[2] % hq != 0 || v_t.shape[2] % hkv != 0 {
        return Err(format!(
            "query/value last dims {} and {} do not split into {hq} and {hkv} heads",
            q_t.shape[2], v_t.shape[2]
        ));
    }
    let (dk, dv) = (q_t.shape[2] / hq, v_t.shape[2] / hkv);
    if k_t.shape != [b, t, hkv * dk] || v_t.shape[..2] != [b, t] {
        return Err(format!(
            "key must be [{b}, {t}, {}] and value [{b}, {t}, _], got {:?} and {:?}",
            hkv * dk,
            k_t.shape,
            v_t.shape
        ));
    }
    let (decay_t, beta_t) = (ctx.opt_input(4), ctx.opt_input(5));
    if rule.gated != decay_t.is_some() {
        return Err(format!(
            "update_rule {} decay",
            if rule.gated { "requires" } else { "forbids" }
        ));
    }
    if rule.delta != beta_t.is_some() {
        return Err(format!(
            "update_rule {} beta",
            if rule.delta { "requires" } else { "forbids" }
        ));
    }
    // decay per (b, t, kv head) or per (b, t, kv head, key dim)
    let decay = match decay_t {
        Some(d) if d.shape == [b, t, hkv] => Some((float_values(d, "decay")?, false)),
        Some(d) if d.shape == [b, t, hkv * dk] => Some((float_values(d, "decay")?, true)),
        Some(d) => {
            return Err(format!(
                "decay must be [{b}, {t}, {hkv}] or [{b}, {t}, {}], got {:?}",
                hkv * dk,
                d.shape
            ))
        }
        None => None,
    };
    let beta = match beta_t {
        Some(x) if x.shape == [b, t, hkv] => Some((float_values(x, "beta")?, hkv)),
        Some(x) if x.shape == [b, t, 1] => Some((float_values(x, "beta")?, 1)),
        Some(x) => {
            return Err(format!(
                "beta must be [{b}, {t}, {hkv}] or [{b}, {t}, 1], got {:?}",
                x.shape
            ))
        }
        None => None,
    };
    let state_len = b * hkv * dk * dv;
    let mut state = match ctx.opt_input(3) {
        Some(s) if s.shape == [b, hkv, dk, dv] => float_values(s, "past_state")?,
        Some(s) => {
            return Err(format!(
                "past_state must be [{b}, {hkv}, {dk}, {dv}], got {:?}",
                s.shape
            ))
        }
        None => vec![0.0; state_len],
    };
    // 0 (the default) asks for 1/sqrt(d_k)
    let scale = match ctx.float("scale")? {
        0.0 => 1.0 / (dk as f64).sqrt(),
        s => s,
    };
    let (q, k, v) = (
        float_values(q_t, "query")?,
        float_values(k_t, "key")?,
        float_values(v_t, "value")?,
    );
    let group = hq / hkv;
    let mut out = vec![0f64; b * t * hq * dv];
    let mut vt = vec![0f64; dv];
    for bi in 0..b {
        for ti in 0..t {
            let row = bi * t + ti;
            for h in 0..hkv {
                let s = &mut state[(bi * hkv + h) * dk * dv..(bi * hkv + h + 1) * dk * dv];
                let kt = &k[(row * hkv + h) * dk..(row * hkv + h + 1) * dk];
                if let Some((g, per_dim)) = &decay {
                    for d in 0..dk {
                        let at = if *per_dim {
                            (row * hkv + h) * dk + d
                        } else {
                            row * hkv + h
                        };
                        let gd = g[at].exp();
                        s[d * dv..(d + 1) * dv].iter_mut().for_each(|e| *e *= gd);
                    }
                }
                vt.copy_from_slice(&v[(row * hkv + h) * dv..(row * hkv + h + 1) * dv]);
                if let Some((bv, width)) = &beta {
                    let bt = bv[row * width + if *width == 1 { 0 } else { h }];
                    for (m, e) in vt.iter_mut().enumerate() {
                        let retrieved: f64 = (0..dk).map(|d| s[d * dv + m] * kt[d]).sum();
                        *e = bt * (*e - retrieved);
                    }
                }
                for d in 0..dk {
                    s[d * dv..(d + 1) * dv]
                        .iter_mut()
                        .zip(&vt)
                        .for_each(|(e, &x)| *e += kt[d] * x);
                }
                // query heads h*group .. (h+1)*group share this state
                for hqi in h * group..(h + 1) * group {
                    let qt = &q[(row * hq + hqi) * dk..(row * hq + hqi + 1) * dk];
                    let o = &mut out[(row * hq + hqi) * dv..(row * hq + hqi + 1) * dv];
                    for (m, e) in o.iter_mut().enumerate() {
                        *e = scale * (0..dk).map(|d| qt[d] * s[d * dv + m]).sum::<f64>();
                    }
                }
            }
        }
    }
    let state_dtype = ctx.opt_input(3).map_or(q_t.dtype, |s| s.dtype);
    let outs = [
        Tensor::from_f64(q_t.dtype, vec![b, t, hq * dv], &out),
        Tensor::from_f64(state_dtype, vec![b, hkv, dk, dv], &state),
    ];
    Ok(outs[..ctx.num_results.clamp(1, 2)].to_vec())
}

fn infer_linear_attention(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    UpdateRule::parse(&ctx.string("update_rule")?)?;
    let (hq, hkv) = head_counts(ctx)?;
    let (q, v) = (ctx.input(0)?, ctx.input(2)?);
    let dt = float_dtype(q, "query")?;
    if q.rank() != 3 || v.rank() != 3 {
        return Err(format!("query and value must be rank 3, got {q} and {v}"));
    }
    let dk = q.shape[2].div_exact(&Dim::fixed(hq as i64));
    let dv = v.shape[2].div_exact(&Dim::fixed(hkv as i64));
    let out = TensorType::new(
        vec![
            q.shape[0].clone(),
            q.shape[1].clone(),
            dv.mul(&Dim::fixed(hq as i64)),
        ],
        dt,
    );
    let state_dt = ctx.opt_input(3).map_or(dt, |s| s.dtype());
    let state = TensorType::new(
        vec![q.shape[0].clone(), Dim::fixed(hkv as i64), dk, dv],
        state_dt,
    );
    let mut outs = vec![out, state];
    outs.truncate(ctx.num_results.clamp(1, 2));
    Ok(outs)
}

pub static LINEAR_ATTENTION: OpDef = OpDef {
    mnemonic: "linear_attention",
    summary: "recurrent linear attention (linear, gated, delta, gated_delta rules) with state",
    operands: &[
        req("query"),
        req("key"),
        req("value"),
        opt("past_state"),
        opt("decay"),
        opt("beta"),
    ],
    results: Results::Range(1, 2),
    attrs: &[
        attr("chunk_size", AttrKind::Int, Default::Int(64)),
        attr("kv_num_heads", AttrKind::Int, Default::Required),
        attr("q_num_heads", AttrKind::Int, Default::Required),
        attr("scale", AttrKind::Float, Default::Float(0.0)),
        attr("update_rule", AttrKind::Str, Default::Str("gated_delta")),
    ],
    traits: &[],
    infer: infer_linear_attention,
    eval: Some(eval_linear_attention),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::ops::testing::run;

    fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::f32(shape.to_vec(), v.iter().map(|&x| x as f32).collect())
    }

    fn close(t: &Tensor, shape: &[usize], want: &[f64], tol: f64) {
        assert_eq!(t.shape, shape);
        let got = t.to_f64_vec();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "element {i}: got {g}, want {w}\n{got:?}"
            );
        }
    }

    fn s(v: &str) -> Attr {
        Attr::Str(v.into())
    }

    // Expected values marked "onnxruntime" come from onnxruntime 1.31 (CPU).

    #[test]
    fn grid_sample_modes_and_padding() {
        let x: Vec<f64> = (0..12).map(|i| i as f64 * 0.5 - 1.0).collect();
        let x = f32t(&[1, 1, 3, 4], &x);
        let g = f32t(&[1, 2, 2, 2], &[-1.3, -0.9, 0.2, 0.45, 1.2, 1.7, 0.6, -0.2]);
        // onnxruntime
        let cases: [(&str, &str, i64, [f64; 4]); 4] = [
            (
                "cubic",
                "reflection",
                0,
                [-1.303625, 3.427337, 3.625563, 1.605627],
            ),
            ("nearest", "border", 1, [-1.0, 2.0, 4.5, 2.0]),
            ("linear", "zeros", 0, [0.0, 3.300001, 0.0, 1.75]),
            (
                "bicubic",
                "zeros",
                1,
                [-0.560417, 3.291579, 0.988729, 1.851648],
            ),
        ];
        for (mode, pad, ac, want) in cases {
            let y = run(
                &GRID_SAMPLE,
                &[Some(&x), Some(&g)],
                &[
                    ("mode", s(mode)),
                    ("padding_mode", s(pad)),
                    ("align_corners", Attr::Int(ac)),
                ],
                1,
            )
            .unwrap();
            close(&y[0], &[1, 1, 2, 2], &want, 2e-5);
        }
        assert!(run(
            &GRID_SAMPLE,
            &[Some(&x), Some(&g)],
            &[("mode", s("area"))],
            1
        )
        .is_err());
    }

    #[test]
    fn reflection_folds_repeatedly() {
        assert_eq!(reflect(-0.25, 0.0, 2.0), 0.25);
        assert_eq!(reflect(2.5, 0.0, 2.0), 1.5);
        // two folds: 5 -> past hi by 3 = one range + 1 -> lo + 1
        assert_eq!(reflect(5.0, 0.0, 2.0), 1.0);
        assert_eq!(reflect(-4.5, -0.5, 3.5), 3.5);
    }

    #[test]
    fn affine_grid_by_hand() {
        let theta = f32t(&[1, 2, 3], &[2.0, 0.0, 0.1, 0.0, 1.0, -0.2]);
        let size = Tensor::i64(vec![4], vec![1, 1, 2, 3]);
        let y = run(&AFFINE_GRID, &[Some(&theta), Some(&size)], &[], 1).unwrap();
        // x over W=3: -2/3, 0, 2/3; y over H=2: -1/2, 1/2; grid = (2x + 0.1, y - 0.2)
        let mut want = Vec::new();
        for yv in [-0.5, 0.5] {
            for xv in [-2.0 / 3.0, 0.0, 2.0 / 3.0] {
                want.extend([2.0 * xv + 0.1, yv - 0.2]);
            }
        }
        close(&y[0], &[1, 2, 3, 2], &want, 1e-6);
        let y = run(
            &AFFINE_GRID,
            &[Some(&theta), Some(&size)],
            &[("align_corners", Attr::Int(1))],
            1,
        )
        .unwrap();
        let v = y[0].to_f64_vec();
        // corners map to -1 and 1 exactly
        assert!((v[0] - (-2.0 + 0.1)).abs() < 1e-6 && (v[1] - (-1.2)).abs() < 1e-6);
        assert!((v[10] - 2.1).abs() < 1e-6 && (v[11] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn roi_align_avg_and_max() {
        let x: Vec<f64> = (0..50).map(|i| (i % 7) as f64 * 0.25).collect();
        let x = f32t(&[1, 2, 5, 5], &x);
        let rois = f32t(&[2, 4], &[0.5, 0.2, 3.7, 4.1, 1.0, 1.0, 2.0, 2.5]);
        let bi = Tensor::i64(vec![2], vec![0, 0]);
        let attrs = |mode: &str, ctm: &str| {
            vec![
                ("mode", s(mode)),
                ("coordinate_transformation_mode", s(ctm)),
                ("output_height", Attr::Int(2)),
                ("output_width", Attr::Int(3)),
                ("sampling_ratio", Attr::Int(2)),
                ("spatial_scale", Attr::Float(0.9)),
            ]
        };
        // onnxruntime
        let y = run(
            &ROI_ALIGN,
            &[Some(&x), Some(&rois), Some(&bi)],
            &attrs("max", "output_half_pixel"),
            1,
        )
        .unwrap();
        close(
            &y[0],
            &[2, 2, 2, 3],
            &[
                0.770344, 0.539672, 0.677381, 0.519788, 0.681047, 0.854832, 0.395547, 0.538313,
                0.703828, 0.932194, 0.393094, 0.427416, 1.373594, 0.954531, 0.488906, 0.903437,
                0.627812, 0.93789, 0.686797, 0.477266, 0.760521, 0.225859, 0.222031, 0.375156,
            ],
            2e-5,
        );
        let y = run(
            &ROI_ALIGN,
            &[Some(&x), Some(&rois), Some(&bi)],
            &attrs("avg", "half_pixel"),
            1,
        )
        .unwrap();
        close(
            &y[0],
            &[2, 2, 2, 3],
            &[
                0.804375, 0.663881, 0.30875, 0.70125, 0.898167, 1.070781, 0.82875, 1.06875,
                1.037719, 0.608594, 0.59223, 0.43125, 1.059375, 1.134375, 1.015781, 1.18125,
                1.25625, 1.177031, 0.76875, 0.84375, 0.91875, 0.43125, 0.50625, 0.58125,
            ],
            2e-5,
        );
        let bad = Tensor::i64(vec![2], vec![0, 3]);
        assert!(run(&ROI_ALIGN, &[Some(&x), Some(&rois), Some(&bad)], &[], 1).is_err());
    }

    #[test]
    fn col2im_sums_overlaps_in_integers() {
        // 1-D image of 5, block 2, stride 1: four positions
        let x = Tensor::new(
            DType::I32,
            vec![1, 2, 4],
            crate::tensor::Data::I32(vec![1, 2, 3, 4, 10, 20, 30, 40]),
        )
        .unwrap();
        let image = Tensor::i64(vec![1], vec![5]);
        let block = Tensor::i64(vec![1], vec![2]);
        let y = run(&COL2IM, &[Some(&x), Some(&image), Some(&block)], &[], 1).unwrap();
        assert_eq!(y[0].dtype, DType::I32);
        assert_eq!(y[0].shape, vec![1, 1, 5]);
        assert_eq!(y[0].to_i64_vec(), vec![1, 12, 23, 34, 40]);
        // pad 1 each side, stride 2: positions -1, 1, 3 (the -1 tap is dropped)
        let x = f32t(&[1, 2, 3], &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
        let y = run(
            &COL2IM,
            &[Some(&x), Some(&image), Some(&block)],
            &[
                ("pads", Attr::Ints(vec![1, 1])),
                ("strides", Attr::Ints(vec![2])),
            ],
            1,
        )
        .unwrap();
        close(&y[0], &[1, 1, 5], &[10.0, 2.0, 20.0, 3.0, 30.0], 0.0);
        let short = f32t(&[1, 2, 3], &[0.0; 6]);
        let no_stride: &[(&str, Attr)] = &[];
        assert!(run(
            &COL2IM,
            &[Some(&short), Some(&image), Some(&block)],
            no_stride,
            1
        )
        .is_err());
    }

    #[test]
    fn nms_by_hand() {
        let boxes = f32t(
            &[1, 3, 4],
            &[0.0, 0.0, 1.0, 1.0, 0.0, 0.1, 1.0, 1.1, 0.0, 2.0, 1.0, 3.0],
        );
        let scores = f32t(&[1, 1, 3], &[0.9, 0.8, 0.85]);
        let max = Tensor::i64(vec![1], vec![3]);
        let iou = f32t(&[1], &[0.5]);
        let y = run(
            &NON_MAX_SUPPRESSION,
            &[Some(&boxes), Some(&scores), Some(&max), Some(&iou)],
            &[],
            1,
        )
        .unwrap();
        // box 1 overlaps box 0 with IoU 0.9/1.1 and is suppressed
        assert_eq!(y[0].shape, vec![2, 3]);
        assert_eq!(y[0].to_i64_vec(), vec![0, 0, 0, 0, 0, 2]);
        let thr = f32t(&[1], &[0.86]);
        let y = run(
            &NON_MAX_SUPPRESSION,
            &[
                Some(&boxes),
                Some(&scores),
                Some(&max),
                Some(&iou),
                Some(&thr),
            ],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(y[0].to_i64_vec(), vec![0, 0, 0]);
        // no max_output_boxes_per_class selects nothing
        let y = run(&NON_MAX_SUPPRESSION, &[Some(&boxes), Some(&scores)], &[], 1).unwrap();
        assert_eq!(y[0].shape, vec![0, 3]);
    }

    #[test]
    fn deform_conv_groups_offsets_mask() {
        let x: Vec<f64> = (0..18).map(|i| (i as f64 - 5.0) * 0.3).collect();
        let x = f32t(&[1, 2, 3, 3], &x);
        let w = f32t(&[2, 1, 2, 2], &[0.5, -1.0, 0.25, 2.0, 1.0, 1.0, -0.5, 0.75]);
        let off = f32t(
            &[1, 16, 2, 2],
            &[
                0.03, 1.08, -0.85, 1.08, -0.45, -0.18, 0.79, -0.22, 0.12, -1.13, 0.61, 0.09, -0.41,
                0.69, -0.47, -0.11, -0.88, -0.23, -0.71, -0.57, 0.6, -0.53, -0.04, 1.15, 1.11,
                0.54, 0.1, -0.54, -0.81, 1.13, 0.04, -0.92, 0.3, 0.66, 0.27, 1.0, -1.1, 0.07, -0.1,
                -1.05, 0.34, 0.85, 0.22, -0.58, 0.82, 0.02, 0.03, 0.61, -0.84, 0.77, 0.44, 0.69,
                -0.74, 0.73, -0.74, -1.0, 0.85, 0.87, 0.9, -0.07, -0.54, -1.18, 0.35, 0.53,
            ],
        );
        let mask = f32t(
            &[1, 8, 2, 2],
            &[
                0.84, 0.28, 0.22, 0.64, 0.81, 0.96, 0.15, 0.48, 0.89, 0.42, 0.59, 0.02, 0.67, 0.92,
                0.83, 0.89, 0.66, 0.25, 0.77, 0.21, 0.83, 0.06, 0.83, 0.16, 0.38, 0.32, 0.69, 0.18,
                0.4, 0.01, 0.26, 0.42,
            ],
        );
        let b = f32t(&[2], &[0.1, -0.2]);
        let y = run(
            &DEFORM_CONV,
            &[Some(&x), Some(&w), Some(&off), Some(&b), Some(&mask)],
            &[("group", Attr::Int(2)), ("offset_group", Attr::Int(2))],
            1,
        )
        .unwrap();
        // onnxruntime
        close(
            &y[0],
            &[1, 2, 2, 2],
            &[
                0.899975, -0.00941, 0.826046, 0.481454, 2.337667, -0.026881, 3.503211, 0.97436,
            ],
            2e-5,
        );
        // zero offsets and no mask reduce to a plain convolution
        let zero = f32t(&[1, 16, 2, 2], &[0.0; 64]);
        let y = run(
            &DEFORM_CONV,
            &[Some(&x), Some(&w), Some(&zero)],
            &[("group", Attr::Int(2)), ("offset_group", Attr::Int(2))],
            1,
        )
        .unwrap();
        let xv = x.to_f64_vec();
        let conv = |c: usize, i: usize, j: usize| {
            let wv = &w.to_f64_vec()[c * 4..c * 4 + 4];
            let at = |di: usize, dj: usize| xv[c * 9 + (i + di) * 3 + j + dj];
            wv[0] * at(0, 0) + wv[1] * at(0, 1) + wv[2] * at(1, 0) + wv[3] * at(1, 1)
        };
        let want: Vec<f64> = (0..2)
            .flat_map(|c| (0..2).flat_map(move |i| (0..2).map(move |j| (c, i, j))))
            .map(|(c, i, j)| conv(c, i, j))
            .collect();
        close(&y[0], &[1, 2, 2, 2], &want, 1e-5);
    }

    #[test]
    fn causal_conv_state_by_hand() {
        let x = f32t(&[1, 1, 3], &[1.0, 2.0, 3.0]);
        let w = f32t(&[1, 1, 3], &[1.0, 10.0, 100.0]);
        let b = f32t(&[1], &[0.5]);
        let past = f32t(&[1, 1, 2], &[4.0, 5.0]);
        let y = run(
            &CAUSAL_CONV_WITH_STATE,
            &[Some(&x), Some(&w), Some(&b), Some(&past)],
            &[],
            2,
        )
        .unwrap();
        // padded = [4, 5, 1, 2, 3]
        close(&y[0], &[1, 1, 3], &[154.5, 215.5, 321.5], 0.0);
        close(&y[1], &[1, 1, 2], &[2.0, 3.0], 0.0);
        // an input shorter than k-1 keeps part of the zero padding in the state
        let x = f32t(&[1, 1, 1], &[7.0]);
        let y = run(
            &CAUSAL_CONV_WITH_STATE,
            &[Some(&x), Some(&w)],
            &[("activation", s("silu"))],
            2,
        )
        .unwrap();
        let v = 700.0f64;
        close(&y[0], &[1, 1, 1], &[v / (1.0 + (-v).exp())], 1e-3);
        close(&y[1], &[1, 1, 2], &[0.0, 7.0], 0.0);
    }

    #[test]
    fn linear_attention_delta_gated_gqa_by_hand() {
        // one kv head shared by two query heads, d_k = 2, d_v = 1, scale 1
        let q = f32t(&[1, 2, 4], &[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        let k = f32t(&[1, 2, 2], &[1.0, 0.0, 0.6, 0.8]);
        let v = f32t(&[1, 2, 1], &[2.0, 1.0]);
        let heads = |rule: &str| {
            vec![
                ("q_num_heads", Attr::Int(2)),
                ("kv_num_heads", Attr::Int(1)),
                ("scale", Attr::Float(1.0)),
                ("update_rule", s(rule)),
            ]
        };
        // delta: v' = beta (v - Sᵀk); S += k v'
        // t0: v' = 0.5·2 = 1, S = [1, 0]; t1: v' = 1 - 0.6 = 0.4, S = [1.24, 0.32]
        let beta = f32t(&[1, 2, 1], &[0.5, 1.0]);
        let y = run(
            &LINEAR_ATTENTION,
            &[Some(&q), Some(&k), Some(&v), None, None, Some(&beta)],
            &heads("delta"),
            2,
        )
        .unwrap();
        close(&y[0], &[1, 2, 2], &[1.0, 1.0, 0.32, 1.56], 1e-6);
        close(&y[1], &[1, 1, 2, 1], &[1.24, 0.32], 1e-6);
        // gated with a per-head decay of 1/2: t0 S = [2, 0]; t1 S = [1 + 0.6, 0.8]
        let decay = f32t(&[1, 2, 1], &[0.5f64.ln(), 0.5f64.ln()]);
        let y = run(
            &LINEAR_ATTENTION,
            &[Some(&q), Some(&k), Some(&v), None, Some(&decay)],
            &heads("gated"),
            2,
        )
        .unwrap();
        close(&y[0], &[1, 2, 2], &[2.0, 2.0, 0.8, 2.4], 1e-6);
        close(&y[1], &[1, 1, 2, 1], &[1.6, 0.8], 1e-6);
        // the rule decides which gates must be present
        assert!(run(
            &LINEAR_ATTENTION,
            &[Some(&q), Some(&k), Some(&v)],
            &heads("gated_delta"),
            2
        )
        .is_err());
        assert!(run(
            &LINEAR_ATTENTION,
            &[Some(&q), Some(&k), Some(&v), None, Some(&decay)],
            &heads("linear"),
            2
        )
        .is_err());
    }

    #[test]
    fn infer_shapes() {
        let x = TensorType::new(
            vec![Dim::sym("n"), Dim::fixed(3), Dim::fixed(8), Dim::fixed(8)],
            DType::F32,
        );
        let g = TensorType::new(
            vec![Dim::sym("n"), Dim::sym("h"), Dim::fixed(5), Dim::fixed(2)],
            DType::F32,
        );
        let attrs = Attrs::new();
        let ctx = InferCtx {
            def: &GRID_SAMPLE,
            attrs: &attrs,
            operands: vec![Some(&x), Some(&g)],
            consts: vec![],
            syms: vec![],
            num_results: 1,
        };
        let out = (GRID_SAMPLE.infer)(&ctx).unwrap();
        assert_eq!(
            out[0].shape,
            vec![Dim::sym("n"), Dim::fixed(3), Dim::sym("h"), Dim::fixed(5)]
        );

        let q = TensorType::new(
            vec![Dim::sym("b"), Dim::sym("t"), Dim::fixed(64)],
            DType::F16,
        );
        let v = TensorType::new(
            vec![Dim::sym("b"), Dim::sym("t"), Dim::fixed(48)],
            DType::F16,
        );
        let attrs: Attrs = [
            ("q_num_heads".to_string(), Attr::Int(4)),
            ("kv_num_heads".to_string(), Attr::Int(2)),
        ]
        .into_iter()
        .collect();
        let ctx = InferCtx {
            def: &LINEAR_ATTENTION,
            attrs: &attrs,
            operands: vec![Some(&q), Some(&q), Some(&v)],
            consts: vec![],
            syms: vec![],
            num_results: 2,
        };
        let out = (LINEAR_ATTENTION.infer)(&ctx).unwrap();
        assert_eq!(
            out[0].shape,
            vec![Dim::sym("b"), Dim::sym("t"), Dim::fixed(96)]
        );
        assert_eq!(
            out[1].shape,
            vec![Dim::sym("b"), Dim::fixed(2), Dim::fixed(16), Dim::fixed(24)]
        );
    }
}
