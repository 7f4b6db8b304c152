//! Convolution, transposed convolution and pooling over any number of
//! spatial axes (1-D, 2-D, 3-D, ...), as direct loop nests.
//!
//! The window geometry (auto_pad, pads, strides, dilations, ceil_mode) comes
//! from ir's `Window`, the code the reference runs. Every kernel runs one
//! `scf.parallel` over output rows (batch, channel and every output axis but
//! the last) and computes each output as one reduction in a fixed order, so
//! results do not depend on the thread count. Padding is never read: each
//! output's tap loops are clipped to the taps that land in the input.
//!
//! Convolutions with many taps per output copy x into a zero-padded f32
//! scratch first and then run edge-free, vectorized along the output row and
//! blocked over output channels; those with few taps (depthwise) clip each
//! output's taps instead and vectorize only a stride-1 row's interior.

use crate::emit::kernel::{Buf, KernelCtx};
use tessera_ir::ops::nn::conv::{AutoPad, Window};
use tessera_ir::{Attr, AttrAccess, DType};

use super::nn::{
    compute_ty, fconst, flat, for_close, for_open, iconst, is_half, load, mad, op, par_close,
    par_open, store,
};
use super::LowerFn;

/// Vector lanes of the conv paths (f32 compute: one AVX register).
const LANES: usize = 8;

/// Taps per output (input channels per group x kernel size) from which a
/// convolution pads a copy of its input: below, the copy costs more than the
/// edge handling it saves (depthwise convolutions).
const PAD_MIN_TAPS: usize = 32;

// ---------------------------------------------------------------------------
// Geometry

/// One spatial axis of a window op, for static sizes.
#[derive(Clone, Copy, Debug)]
struct Axis {
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    /// Leading padding; negative for a transposed convolution whose
    /// `output_shape` asks for more than the natural size.
    pad_begin: i64,
    pad_end: i64,
    out: usize,
}

impl Axis {
    /// Whether every output's window lies inside the input (no clipping).
    fn never_clipped(&self) -> bool {
        let last = (self.out as i64 - 1) * self.stride as i64 - self.pad_begin
            + ((self.kernel - 1) * self.dilation) as i64;
        self.pad_begin <= 0 && last < self.input as i64
    }
}

fn mnemonic<'a>(k: &KernelCtx<'a>) -> &'static str {
    k.op.kind.mnemonic()
}

/// Operand `i`, checked to be of a float type the backend computes in.
fn float_input(k: &KernelCtx, i: usize, what: &str) -> Result<Buf, String> {
    let b = k.operand(i)?.clone();
    if !matches!(b.dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return Err(format!(
            "tsr.{}: {what} of type {} is not supported by the cpu target (f32, f64, f16, bf16)",
            mnemonic(k),
            b.dtype
        ));
    }
    Ok(b)
}

/// X [N, C, spatial...] of a window op.
fn check_spatial(k: &KernelCtx, x: &Buf) -> Result<(), String> {
    if x.rank() < 3 {
        return Err(format!(
            "tsr.{} needs input [N, C, spatial...], got shape {:?}",
            mnemonic(k),
            x.shape
        ));
    }
    Ok(())
}

/// The axes of a Conv/Pool window over `x`, checked against the result.
fn window_axes(k: &KernelCtx, x: &Buf, kernel: Option<Vec<usize>>) -> Result<Vec<Axis>, String> {
    let spatial = x.rank() - 2;
    let win = Window::from_attrs(k.op, spatial, kernel)?;
    if win.ceil_mode && win.auto_pad != AutoPad::NotSet {
        return Err("ceil_mode cannot be combined with auto_pad".into());
    }
    let geom = win.geometry(&x.shape[2..])?;
    let axes: Vec<Axis> = (0..spatial)
        .map(|i| Axis {
            input: x.shape[2 + i],
            kernel: win.kernel[i],
            stride: win.strides[i],
            dilation: win.dilations[i],
            pad_begin: geom[i].pad_begin as i64,
            pad_end: geom[i].pad_end as i64,
            out: geom[i].out,
        })
        .collect();
    check_out(k, &axes)?;
    Ok(axes)
}

fn check_out(k: &KernelCtx, axes: &[Axis]) -> Result<(), String> {
    let out: Vec<usize> = axes.iter().map(|a| a.out).collect();
    if k.result(0).shape[2..] != out[..] {
        return Err(format!(
            "tsr.{}: result shape {:?} does not match the window's output {out:?}",
            mnemonic(k),
            k.result(0).shape
        ));
    }
    Ok(())
}

/// An optional list-of-integers attribute.
fn opt_ints(k: &KernelCtx, name: &str) -> Result<Option<Vec<i64>>, String> {
    match k.op.attr(name) {
        None => Ok(None),
        Some(Attr::Ints(v)) => Ok(Some(v)),
        Some(other) => Err(format!("{name} must be a list of integers, got {other:?}")),
    }
}

/// ConvTranspose's leading pad per axis. The output size is known (static
/// result shape), so only the split of the total padding is derived here, by
/// ONNX's rule as in ir's `transpose_axis`: with `output_shape` or SAME
/// padding the total is what yields that size, SAME_UPPER putting the odd
/// pad at the end and everything else at the beginning.
fn transpose_axes(k: &KernelCtx, x: &Buf, kernel: Vec<usize>) -> Result<Vec<Axis>, String> {
    let spatial = x.rank() - 2;
    let win = Window::from_attrs(k.op, spatial, Some(kernel))?;
    let out_pad = opt_ints(k, "output_padding")?.unwrap_or_else(|| vec![0; spatial]);
    if out_pad.len() != spatial {
        return Err(format!(
            "output_padding has {} values for {spatial} spatial dims",
            out_pad.len()
        ));
    }
    let sized = opt_ints(k, "output_shape")?.is_some_and(|v| !v.is_empty())
        || matches!(win.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
    let y = k.result(0);
    let axes: Vec<Axis> = (0..spatial)
        .map(|i| {
            let (input, kernel) = (x.shape[2 + i], win.kernel[i]);
            let (stride, dilation, out) = (win.strides[i], win.dilations[i], y.shape[2 + i]);
            let full =
                (stride * (input.max(1) - 1) + out_pad[i] as usize + (kernel - 1) * dilation + 1)
                    as i64;
            let pad_begin = if sized {
                let total = full - out as i64;
                let small = total.div_euclid(2);
                if win.auto_pad == AutoPad::SameUpper {
                    small
                } else {
                    total - small
                }
            } else if win.auto_pad == AutoPad::Valid {
                0
            } else {
                win.pads[i].0 as i64
            };
            Axis {
                input,
                kernel,
                stride,
                dilation,
                pad_begin,
                pad_end: full - out as i64 - pad_begin,
                out,
            }
        })
        .collect();
    Ok(axes)
}

// ---------------------------------------------------------------------------
// Emission helpers

/// The taps of one axis that land in the input for one output position:
/// input position `base + t * dilation` for `t` in `lo..hi`.
struct Span {
    base: String,
    lo: String,
    hi: String,
}

/// `max(v, 0)` on an index.
fn nonneg(k: &mut KernelCtx, v: &str) -> String {
    let z = k.idx(0);
    op(k, format!("arith.maxsi {v}, {z} : index"))
}

/// `ceil(v / d)` for a non-negative index `v`.
fn ceil_div(k: &mut KernelCtx, v: &str, d: usize) -> String {
    if d == 1 {
        return v.to_string();
    }
    let (dm1, dc) = (k.idx(d as i64 - 1), k.idx(d as i64));
    let s = op(k, format!("arith.addi {v}, {dm1} : index"));
    op(k, format!("arith.divui {s}, {dc} : index"))
}

/// `o * s + c` on indices (`c` may be negative).
fn affine(k: &mut KernelCtx, o: &str, s: usize, c: i64) -> String {
    let p = mad(k, o, s, None);
    if c == 0 {
        return p;
    }
    let cc = k.idx(c);
    op(k, format!("arith.addi {p}, {cc} : index"))
}

/// The in-input taps of `ax` for output position `o`:
/// `0 <= o*stride - pad_begin + t*dilation < input`.
fn span(k: &mut KernelCtx, ax: &Axis, o: &str) -> Span {
    let base = affine(k, o, ax.stride, -ax.pad_begin);
    if ax.never_clipped() {
        return Span {
            base,
            lo: k.idx(0),
            hi: k.idx(ax.kernel as i64),
        };
    }
    let z = k.idx(0);
    let neg = op(k, format!("arith.subi {z}, {base} : index"));
    let neg = nonneg(k, &neg);
    let lo = ceil_div(k, &neg, ax.dilation);
    let inc = k.idx(ax.input as i64);
    let room = op(k, format!("arith.subi {inc}, {base} : index"));
    let room = nonneg(k, &room);
    let hi = ceil_div(k, &room, ax.dilation);
    let kc = k.idx(ax.kernel as i64);
    let hi = op(k, format!("arith.minsi {hi}, {kc} : index"));
    Span { base, lo, hi }
}

/// `((lead * dims[0] + idx[0]) * dims[1] + idx[1]) ...`: the row-major
/// offset of `idx` in a stack of `dims`-shaped blocks, block `lead`.
fn linear(k: &mut KernelCtx, lead: &str, idx: &[String], dims: &[usize]) -> String {
    let mut acc = lead.to_string();
    for (i, &d) in idx.iter().zip(dims) {
        acc = mad(k, &acc, d, Some(i));
    }
    acc
}

/// A loop body in a nest: (ctx, induction variables outermost first, carried
/// values) -> next carried values.
type Body<'b> = dyn FnMut(&mut KernelCtx, &[String], &[String]) -> Vec<String> + 'b;

/// Nested `scf.for` loops over `bounds` (outermost first) carrying `accs`
/// (value, type); returns the carried values after the nest.
fn nest(
    k: &mut KernelCtx,
    bounds: &[(String, String)],
    accs: &[(String, String)],
    body: &mut Body,
) -> Vec<String> {
    fn go(
        k: &mut KernelCtx,
        bounds: &[(String, String)],
        ivs: &mut Vec<String>,
        accs: &[(String, String)],
        body: &mut Body,
    ) -> Vec<String> {
        let Some(((lo, hi), rest)) = bounds.split_first() else {
            let vals: Vec<String> = accs.iter().map(|a| a.0.clone()).collect();
            return body(k, ivs, &vals);
        };
        let iters: Vec<(&str, &str)> = accs.iter().map(|(v, t)| (v.as_str(), t.as_str())).collect();
        let (iv, args, results) = for_open(k, lo, hi, 1, &iters);
        ivs.push(iv);
        let inner: Vec<(String, String)> = args
            .iter()
            .zip(accs)
            .map(|(a, (_, t))| (a.clone(), t.clone()))
            .collect();
        let next = go(k, rest, ivs, &inner, body);
        ivs.pop();
        let yields: Vec<(&str, &str)> = next
            .iter()
            .zip(accs)
            .map(|(v, (_, t))| (v.as_str(), t.as_str()))
            .collect();
        for_close(k, &yields);
        results
    }
    go(k, bounds, &mut Vec::new(), accs, body)
}

/// `scf.for` over `lo..hi` (constants) with no carried values, skipped when
/// empty.
fn row_loop(k: &mut KernelCtx, lo: usize, hi: usize, body: &mut dyn FnMut(&mut KernelCtx, &str)) {
    if lo >= hi {
        return;
    }
    let (l, h) = (k.idx(lo as i64), k.idx(hi as i64));
    let (iv, _, _) = for_open(k, &l, &h, 1, &[]);
    body(k, &iv);
    for_close(k, &[]);
}

/// The MLIR element type of a half dtype's storage.
fn half_ty(d: DType) -> &'static str {
    if d == DType::F16 {
        "f16"
    } else {
        "bf16"
    }
}

// ---------------------------------------------------------------------------
// Conv

/// The operands, result, element type and group count shared by conv and
/// conv_transpose (`w_layout` names w's expected layout in the error).
#[allow(clippy::type_complexity)]
fn conv_operands(
    k: &mut KernelCtx,
    w_layout: &str,
) -> Result<(Buf, Buf, Option<Buf>, Buf, DType, usize), String> {
    let name = format!("tsr.{}", k.op.kind.mnemonic());
    let x = float_input(k, 0, "x")?;
    let w = float_input(k, 1, "w")?;
    let bias = k.opt_operand(2).cloned();
    let y = k.result(0).clone();
    check_spatial(k, &x)?;
    if w.rank() != x.rank() {
        return Err(format!(
            "{name} needs w {w_layout} of x's rank, got x {:?} and w {:?}",
            x.shape, w.shape
        ));
    }
    let d = x.dtype;
    if w.dtype != d || bias.as_ref().is_some_and(|b| b.dtype != d) {
        return Err(format!(
            "{name}: x, w and b of different element types are not supported"
        ));
    }
    let group = usize::try_from(k.op.int("group")?)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| format!("{name}: group must be positive"))?;
    Ok((x, w, bias, y, d, group))
}

fn lower_conv(k: &mut KernelCtx) -> Result<(), String> {
    let (x, w, bias, y, d, group) = conv_operands(k, "[M, C/group, kernel...]")?;
    let (n, c, m, cg) = (x.shape[0], x.shape[1], w.shape[0], w.shape[1]);
    if c != cg * group || m % group != 0 {
        return Err(format!(
            "tsr.conv: w {:?} does not match x {:?} with group {group}",
            w.shape, x.shape
        ));
    }
    if bias.as_ref().is_some_and(|b| b.len() != m) {
        return Err(format!("tsr.conv: b must have {m} elements"));
    }
    let axes = window_axes(k, &x, Some(w.shape[2..].to_vec()))?;
    if y.is_empty() {
        return Ok(());
    }
    let taps = cg * w.shape[2..].iter().product::<usize>();
    if d != DType::F64 && taps >= PAD_MIN_TAPS {
        return PaddedConv::new(&x, &w, &y, &axes, group).emit(k, bias.as_ref());
    }
    // Few taps per output (depthwise), or f64 (whose tolerance asks for f64
    // compute): each output's taps clipped to the input, a stride-1 row's
    // interior in vectors.
    let ct = compute_ty(d);
    let xm = flat(k, &x)?;
    let wm = flat(k, &w)?;
    let ym = flat(k, &y)?;
    let bm = match &bias {
        Some(b) => Some(flat(k, b)?),
        None => None,
    };
    let zero = fconst(k, 0.0, ct);

    let sp = axes.len();
    let (outer, last) = (&axes[..sp - 1], axes[sp - 1]);
    let mut ubs = vec![n, m];
    ubs.extend(outer.iter().map(|a| a.out));
    let p = par_open(k, &ubs);
    let (pn, pm, po) = (p[0].clone(), p[1].clone(), p[2..].to_vec());
    let mg = k.idx((m / group) as i64);
    let g = op(k, format!("arith.divui {pm}, {mg} : index"));
    let ch0 = mad(k, &g, cg, None);
    let plane0 = mad(k, &pn, c, Some(&ch0));
    let init = match &bm {
        Some((bm, bt)) => load(k, bm, bt, &pm, d),
        None => zero.clone(),
    };
    let spans: Vec<Span> = outer.iter().zip(&po).map(|(a, o)| span(k, a, o)).collect();
    let nm = mad(k, &pn, m, Some(&pm));
    let outer_dims: Vec<usize> = outer.iter().map(|a| a.out).collect();
    let yrow = linear(k, &nm, &po, &outer_dims);
    let conv = ConvRow {
        axes: &axes,
        spans: &spans,
        x: &xm,
        w: &wm,
        y: &ym,
        d,
        cg,
        plane0: &plane0,
        pm: &pm,
        yrow: &yrow,
        init: &init,
    };
    let (lo, hi) = conv.interior();
    let vec_end = lo + (hi - lo) / LANES * LANES;
    if d != DType::F64 && vec_end > lo {
        row_loop(k, 0, lo, &mut |k, ow| conv.scalar(k, ow));
        let (l, h) = (k.idx(lo as i64), k.idx(vec_end as i64));
        let (ow, _, _) = for_open(k, &l, &h, LANES, &[]);
        conv.vector(k, &ow);
        for_close(k, &[]);
        row_loop(k, vec_end, last.out, &mut |k, ow| conv.scalar(k, ow));
    } else {
        row_loop(k, 0, last.out, &mut |k, ow| conv.scalar(k, ow));
    }
    par_close(k);
    Ok(())
}

/// One output row of a convolution: batch, output channel and outer output
/// positions fixed (by the enclosing parallel loop), the last axis free.
struct ConvRow<'r> {
    axes: &'r [Axis],
    /// Taps of the outer axes (all but the last).
    spans: &'r [Span],
    x: &'r (String, String),
    w: &'r (String, String),
    y: &'r (String, String),
    d: DType,
    cg: usize,
    /// Input plane of the group's first channel.
    plane0: &'r str,
    /// Output channel.
    pm: &'r str,
    /// Row index into y viewed as [rows, last.out].
    yrow: &'r str,
    init: &'r str,
}

impl ConvRow<'_> {
    fn last(&self) -> Axis {
        self.axes[self.axes.len() - 1]
    }

    /// The outputs `lo..hi` of the row (stride 1) whose taps all land in the
    /// input; empty for other strides.
    fn interior(&self) -> (usize, usize) {
        let a = self.last();
        if a.stride != 1 {
            return (0, 0);
        }
        let lo = a.pad_begin.clamp(0, a.out as i64);
        let hi = (a.input as i64 + a.pad_begin - ((a.kernel - 1) * a.dilation) as i64)
            .clamp(lo, a.out as i64);
        (lo as usize, hi as usize)
    }

    /// Outputs `ow .. ow + LANES` of the row's interior (stride 1, f32
    /// compute): every tap is one contiguous vector load.
    fn vector(&self, k: &mut KernelCtx, ow: &str) {
        let vt = format!("vector<{LANES}xf32>");
        let a = self.last();
        let base = affine(k, ow, 1, -a.pad_begin);
        let init = op(k, format!("vector.broadcast {} : f32 to {vt}", self.init));
        let (x, w, d) = (self.x, self.w, self.d);
        let vt2 = vt.clone();
        let mut step = |k: &mut KernelCtx, xi: &str, wi: &str, acc: &str| {
            let xv = if is_half(d) {
                let h = format!("vector<{LANES}x{}>", half_ty(d));
                let v = op(k, format!("vector.load {}[{xi}] : {}, {h}", x.0, x.1));
                op(k, format!("arith.extf {v} : {h} to {vt2}"))
            } else {
                op(k, format!("vector.load {}[{xi}] : {}, {vt2}", x.0, x.1))
            };
            let wv = load(k, &w.0, &w.1, wi, d);
            let wb = op(k, format!("vector.broadcast {wv} : f32 to {vt2}"));
            op(k, format!("vector.fma {xv}, {wb}, {acc} : {vt2}"))
        };
        let taps = (k.idx(0), k.idx(a.kernel as i64));
        let r = self.reduce(k, taps, &base, (init, vt.clone()), &mut step);
        let yi = mad(k, self.yrow, a.out, Some(ow));
        let (ym, yt) = self.y;
        if is_half(d) {
            let h = format!("vector<{LANES}x{}>", half_ty(d));
            let v = op(k, format!("arith.truncf {r} : {vt} to {h}"));
            k.line(format!("vector.store {v}, {ym}[{yi}] : {yt}, {h}"));
        } else {
            k.line(format!("vector.store {r}, {ym}[{yi}] : {yt}, {vt}"));
        }
    }

    /// Loops (input channel, outer taps, last-axis taps `last`) and the
    /// input/weight offsets of one tap for `last_base` on the last axis.
    fn reduce(
        &self,
        k: &mut KernelCtx,
        last: (String, String),
        last_base: &str,
        acc: (String, String),
        step: &mut dyn FnMut(&mut KernelCtx, &str, &str, &str) -> String,
    ) -> String {
        let cgc = k.idx(self.cg as i64);
        let mut bounds = vec![(k.idx(0), cgc)];
        bounds.extend(self.spans.iter().map(|s| (s.lo.clone(), s.hi.clone())));
        bounds.push(last);
        let in_dims: Vec<usize> = self.axes.iter().map(|a| a.input).collect();
        let k_dims: Vec<usize> = self.axes.iter().map(|a| a.kernel).collect();
        let mut body = |k: &mut KernelCtx, ivs: &[String], accs: &[String]| {
            let ci = &ivs[0];
            let taps = &ivs[1..];
            let mut pos: Vec<String> = Vec::with_capacity(taps.len());
            for (i, t) in taps.iter().enumerate() {
                let base = match self.spans.get(i) {
                    Some(s) => s.base.as_str(),
                    None => last_base,
                };
                pos.push(mad(k, t, self.axes[i].dilation, Some(base)));
            }
            let plane = op(k, format!("arith.addi {}, {ci} : index", self.plane0));
            let xi = linear(k, &plane, &pos, &in_dims);
            let wrow = mad(k, self.pm, self.cg, Some(ci));
            let wi = linear(k, &wrow, taps, &k_dims);
            vec![step(k, &xi, &wi, &accs[0])]
        };
        nest(k, &bounds, &[acc], &mut body).remove(0)
    }

    /// Output `ow` of the row, each tap clipped to the input.
    fn scalar(&self, k: &mut KernelCtx, ow: &str) {
        let ct = compute_ty(self.d);
        let s = span(k, &self.last(), ow);
        let (x, w, d) = (self.x, self.w, self.d);
        let mut step = |k: &mut KernelCtx, xi: &str, wi: &str, acc: &str| {
            let xv = load(k, &x.0, &x.1, xi, d);
            let wv = load(k, &w.0, &w.1, wi, d);
            op(k, format!("math.fma {xv}, {wv}, {acc} : {ct}"))
        };
        let r = self.reduce(
            k,
            (s.lo, s.hi),
            &s.base,
            (self.init.to_string(), ct.to_string()),
            &mut step,
        );
        let yi = mad(k, self.yrow, self.last().out, Some(ow));
        store(k, &r, &self.y.0, &self.y.1, &yi, d);
    }
}

/// The f32/f16/bf16 convolution. x is first copied, as f32, into a
/// zero-padded scratch tensor large enough that every tap of every output
/// (a last vector block running past the row's end included) is in bounds,
/// so the loop nest has no edge cases. Each parallel iteration computes one
/// output row of `mb` output channels, `LANES` outputs at a time in `mb`
/// vector accumulators: every input vector load feeds `mb` FMAs. A stride
/// `s` along the row loads `LANES * s` contiguous inputs and keeps every
/// s-th.
struct PaddedConv<'a> {
    x: &'a Buf,
    w: &'a Buf,
    y: &'a Buf,
    axes: &'a [Axis],
    group: usize,
    /// The scratch's spatial extents.
    ext: Vec<usize>,
    /// Output channels per parallel iteration (divides the group's).
    mb: usize,
}

impl<'a> PaddedConv<'a> {
    fn new(x: &'a Buf, w: &'a Buf, y: &'a Buf, axes: &'a [Axis], group: usize) -> Self {
        let sp = axes.len();
        let blocks = axes[sp - 1].out.div_ceil(LANES);
        let ext = axes
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let reach = if i + 1 == sp {
                    (blocks - 1) * LANES * a.stride + (a.kernel - 1) * a.dilation + LANES * a.stride
                } else {
                    (a.out - 1) * a.stride + (a.kernel - 1) * a.dilation + 1
                };
                reach.max(a.pad_begin as usize + a.input)
            })
            .collect();
        let mg = y.shape[1] / group;
        let mb = [4, 3, 2]
            .into_iter()
            .find(|b| mg.is_multiple_of(*b))
            .unwrap_or(1);
        PaddedConv {
            x,
            w,
            y,
            axes,
            group,
            ext,
            mb,
        }
    }

    /// Allocates the scratch, zeroes it and copies x into its interior;
    /// returns (flat view, its type, the allocation, its type).
    fn pad_input(&self, k: &mut KernelCtx) -> Result<[String; 4], String> {
        let x = self.x;
        let mut shape = x.shape[..2].to_vec();
        shape.extend(&self.ext);
        let pty = crate::emit::kernel::memref_type(&shape, DType::F32)?;
        let pad = op(
            k,
            format!("memref.alloc() {{alignment = 64 : i64}} : {pty}"),
        );
        let zero = fconst(k, 0.0, "f32");
        k.line(format!("linalg.fill ins({zero} : f32) outs({pad} : {pty})"));
        let mut strides = vec![1usize; shape.len()];
        for i in (0..shape.len() - 1).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        let mut offs = vec![0usize; 2];
        offs.extend(self.axes.iter().map(|a| a.pad_begin as usize));
        let offset: usize = offs.iter().zip(&strides).map(|(o, s)| o * s).sum();
        let join = |v: &[usize], sep: &str| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(sep)
        };
        let svty = format!(
            "memref<{}xf32, strided<[{}], offset: {offset}>>",
            join(&x.shape, "x"),
            join(&strides, ", ")
        );
        let sv = op(
            k,
            format!(
                "memref.subview {pad}[{}] [{}] [{}] : {pty} to {svty}",
                join(&offs, ", "),
                join(&x.shape, ", "),
                join(&vec![1; x.rank()], ", ")
            ),
        );
        let dims: Vec<String> = (0..x.rank()).map(|i| format!("d{i}")).collect();
        let map = format!("affine_map<({0}) -> ({0})>", dims.join(", "));
        let iters = vec!["\"parallel\""; x.rank()].join(", ");
        k.line(format!(
            "linalg.generic {{indexing_maps = [{map}, {map}], iterator_types = [{iters}]}} ins({} : {}) outs({sv} : {svty}) {{",
            x.name, x.ty
        ));
        let e = x.elem();
        k.line(format!("^bb0(%pad_in: {e}, %pad_out: f32):"));
        if is_half(x.dtype) {
            k.line(format!("%pad_w = arith.extf %pad_in : {e} to f32"));
            k.line("linalg.yield %pad_w : f32");
        } else {
            k.line("linalg.yield %pad_in : f32");
        }
        k.line("}");
        let len: usize = shape.iter().product();
        let fty = format!("memref<{len}xf32>");
        let all: Vec<String> = (0..shape.len()).map(|i| i.to_string()).collect();
        let flat = op(
            k,
            format!(
                "memref.collapse_shape {pad} [[{}]] : {pty} into {fty}",
                all.join(", ")
            ),
        );
        Ok([flat, fty, pad, pty])
    }

    fn emit(&self, k: &mut KernelCtx, bias: Option<&Buf>) -> Result<(), String> {
        let (x, w, y, axes) = (self.x, self.w, self.y, self.axes);
        let d = x.dtype;
        let sp = axes.len();
        let (n, c, m, cg) = (x.shape[0], x.shape[1], y.shape[1], w.shape[1]);
        let (mg, mb) = (m / self.group, self.mb);
        let [xm, xt, pad, pty] = self.pad_input(k)?;
        let (wm, wt) = flat(k, w)?;
        let (ym, yt) = flat(k, y)?;
        let bm = match bias {
            Some(b) => Some(flat(k, b)?),
            None => None,
        };
        let vt = format!("vector<{LANES}xf32>");
        let zero = fconst(k, 0.0, "f32");
        let (outer, last) = (&axes[..sp - 1], axes[sp - 1]);
        let mut ubs = vec![n, m / mb];
        ubs.extend(outer.iter().map(|a| a.out));
        let p = par_open(k, &ubs);
        let (pn, pblk, po) = (p[0].clone(), p[1].clone(), p[2..].to_vec());
        let m0 = mad(k, &pblk, mb, None);
        let mgc = k.idx(mg as i64);
        let g = op(k, format!("arith.divui {m0}, {mgc} : index"));
        let ch0 = mad(k, &g, cg, None);
        let plane0 = mad(k, &pn, c, Some(&ch0));
        let mut inits = Vec::new();
        for j in 0..mb {
            let s = match &bm {
                Some((bm, bt)) => {
                    let mj = affine(k, &m0, 1, j as i64);
                    load(k, bm, bt, &mj, d)
                }
                None => zero.clone(),
            };
            inits.push(op(k, format!("vector.broadcast {s} : f32 to {vt}")));
        }
        let outer_dims: Vec<usize> = outer.iter().map(|a| a.out).collect();
        let nm = mad(k, &pn, m, Some(&m0));
        let yrow = linear(k, &nm, &po, &outer_dims);
        let nout: usize = axes.iter().map(|a| a.out).product();
        let k_dims: Vec<usize> = axes.iter().map(|a| a.kernel).collect();
        let nk: usize = k_dims.iter().product();
        let block = |k: &mut KernelCtx, ow0: &str, tail: Option<usize>| {
            let cgc = k.idx(cg as i64);
            let mut bounds = vec![(k.idx(0), cgc)];
            for a in axes {
                bounds.push((k.idx(0), k.idx(a.kernel as i64)));
            }
            let accs: Vec<(String, String)> =
                inits.iter().map(|v| (v.clone(), vt.clone())).collect();
            let mut body = |k: &mut KernelCtx, ivs: &[String], acc: &[String]| {
                let (ci, taps) = (&ivs[0], &ivs[1..]);
                let ch = op(k, format!("arith.addi {plane0}, {ci} : index"));
                let mut pos = Vec::with_capacity(sp);
                for (i, (a, t)) in axes.iter().zip(taps).enumerate() {
                    let o = if i + 1 == sp { ow0 } else { po[i].as_str() };
                    let os = mad(k, o, a.stride, None);
                    pos.push(mad(k, t, a.dilation, Some(&os)));
                }
                let xi = linear(k, &pos[0], &pos[1..], &self.ext[1..]);
                let xi = mad(k, &ch, self.ext.iter().product(), Some(&xi));
                let xv = if last.stride == 1 {
                    op(k, format!("vector.load {xm}[{xi}] : {xt}, {vt}"))
                } else {
                    let wide = format!("vector<{}xf32>", LANES * last.stride);
                    let v = op(k, format!("vector.load {xm}[{xi}] : {xt}, {wide}"));
                    let lanes: Vec<String> =
                        (0..LANES).map(|l| (l * last.stride).to_string()).collect();
                    op(
                        k,
                        format!(
                            "vector.shuffle {v}, {v} [{}] : {wide}, {wide}",
                            lanes.join(", ")
                        ),
                    )
                };
                let wrow = mad(k, &m0, cg, Some(ci));
                let wi0 = linear(k, &wrow, taps, &k_dims);
                (0..mb)
                    .map(|j| {
                        let wi = affine(k, &wi0, 1, (j * cg * nk) as i64);
                        let wv = load(k, &wm, &wt, &wi, d);
                        let wb = op(k, format!("vector.broadcast {wv} : f32 to {vt}"));
                        op(k, format!("vector.fma {xv}, {wb}, {} : {vt}", acc[j]))
                    })
                    .collect()
            };
            let r = nest(k, &bounds, &accs, &mut body);
            let yi0 = mad(k, &yrow, last.out, Some(ow0));
            for (j, v) in r.iter().enumerate() {
                let yi = affine(k, &yi0, 1, (j * nout) as i64);
                let (v, st) = if is_half(d) {
                    let h = format!("vector<{LANES}x{}>", half_ty(d));
                    (op(k, format!("arith.truncf {v} : {vt} to {h}")), h)
                } else {
                    (v.clone(), vt.clone())
                };
                match tail {
                    None => k.line(format!("vector.store {v}, {ym}[{yi}] : {yt}, {st}")),
                    Some(r) => {
                        let mask = op(
                            k,
                            format!("vector.constant_mask [{r}] : vector<{LANES}xi1>"),
                        );
                        k.line(format!(
                            "vector.maskedstore {ym}[{yi}], {mask}, {v} : {yt}, vector<{LANES}xi1>, {st}"
                        ));
                    }
                }
            }
        };
        let full = last.out / LANES * LANES;
        if full > 0 {
            let (lo, hi) = (k.idx(0), k.idx(full as i64));
            let (ow0, _, _) = for_open(k, &lo, &hi, LANES, &[]);
            block(k, &ow0, None);
            for_close(k, &[]);
        }
        if full < last.out {
            let ow0 = k.idx(full as i64);
            block(k, &ow0, Some(last.out - full));
        }
        par_close(k);
        k.line(format!("memref.dealloc {pad} : {pty}"));
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// ConvTranspose: each output gathers the (input position, tap) pairs that
// scatter to it, `o = i*stride + t*dilation - pad_begin` on every axis.

fn lower_conv_transpose(k: &mut KernelCtx) -> Result<(), String> {
    let (x, w, bias, y, d, group) = conv_operands(k, "[C, M/group, kernel...]")?;
    let (n, c, mg) = (x.shape[0], x.shape[1], w.shape[1]);
    if w.shape[0] != c || c % group != 0 || y.shape[1] != mg * group {
        return Err(format!(
            "tsr.conv_transpose: w {:?} does not match x {:?} with group {group}",
            w.shape, x.shape
        ));
    }
    let (cg, m) = (c / group, mg * group);
    if bias.as_ref().is_some_and(|b| b.len() != m) {
        return Err(format!("tsr.conv_transpose: b must have {m} elements"));
    }
    let axes = transpose_axes(k, &x, w.shape[2..].to_vec())?;
    if y.is_empty() {
        return Ok(());
    }
    let ct = compute_ty(d);
    let (xm, xt) = flat(k, &x)?;
    let (wm, wt) = flat(k, &w)?;
    let (ym, yt) = flat(k, &y)?;
    let bm = match &bias {
        Some(b) => Some(flat(k, b)?),
        None => None,
    };
    let zero = fconst(k, 0.0, ct);
    let sp = axes.len();
    let mut ubs = vec![n, m];
    ubs.extend(axes[..sp - 1].iter().map(|a| a.out));
    let p = par_open(k, &ubs);
    let (pn, pm, po) = (p[0].clone(), p[1].clone(), p[2..].to_vec());
    let mgc = k.idx(mg as i64);
    let g = op(k, format!("arith.divui {pm}, {mgc} : index"));
    let mi = op(k, format!("arith.remui {pm}, {mgc} : index"));
    let ch0 = mad(k, &g, cg, None);
    let plane0 = mad(k, &pn, c, Some(&ch0));
    let init = match &bm {
        Some((bm, bt)) => load(k, bm, bt, &pm, d),
        None => zero,
    };
    let nm = mad(k, &pn, m, Some(&pm));
    let out_dims: Vec<usize> = axes.iter().map(|a| a.out).collect();
    let yrow = linear(k, &nm, &po, &out_dims[..sp - 1]);
    let in_dims: Vec<usize> = axes.iter().map(|a| a.input).collect();
    let k_dims: Vec<usize> = axes.iter().map(|a| a.kernel).collect();
    let nin: usize = in_dims.iter().product();
    let nk: usize = k_dims.iter().product();
    row_loop(k, 0, axes[sp - 1].out, &mut |k, ow| {
        let mut outs = po.clone();
        outs.push(ow.to_string());
        // Taps with 0 <= t_o - tap*dilation <= (input-1)*stride, where
        // t_o = o + pad_begin; the stride then has to divide the difference.
        let mut t = Vec::new();
        let mut bounds = Vec::new();
        for (a, o) in axes.iter().zip(&outs) {
            let to = affine(k, o, 1, a.pad_begin);
            let last = k.idx(((a.input.max(1) - 1) * a.stride) as i64);
            let under = op(k, format!("arith.subi {to}, {last} : index"));
            let under = nonneg(k, &under);
            let lo = ceil_div(k, &under, a.dilation);
            let dc = k.idx(a.dilation as i64);
            let room = op(k, format!("arith.addi {to}, {dc} : index"));
            let room = nonneg(k, &room);
            let hi = op(k, format!("arith.divui {room}, {dc} : index"));
            let kc = k.idx(a.kernel as i64);
            let hi = op(k, format!("arith.minsi {hi}, {kc} : index"));
            t.push(to);
            bounds.push((lo, hi));
        }
        let mut body = |k: &mut KernelCtx, taps: &[String], accs: &[String]| {
            let mut ins = Vec::new();
            let mut ok: Option<String> = None;
            for ((a, to), tap) in axes.iter().zip(&t).zip(taps) {
                let td = mad(k, tap, a.dilation, None);
                let pos = op(k, format!("arith.subi {to}, {td} : index"));
                if a.stride == 1 {
                    ins.push(pos);
                    continue;
                }
                let sc = k.idx(a.stride as i64);
                let rem = op(k, format!("arith.remui {pos}, {sc} : index"));
                let z = k.idx(0);
                let hit = op(k, format!("arith.cmpi eq, {rem}, {z} : index"));
                ok = Some(match ok.take() {
                    Some(prev) => op(k, format!("arith.andi {prev}, {hit} : i1")),
                    None => hit,
                });
                ins.push(op(k, format!("arith.divui {pos}, {sc} : index")));
            }
            let acc = accs[0].clone();
            let r = ok.as_ref().map(|cond| {
                let r = k.fresh("hit");
                k.line(format!("{r} = scf.if {cond} -> ({ct}) {{"));
                r
            });
            // Input channels innermost: one validity test per tap.
            let xoff = linear(k, &ins[0], &ins[1..], &in_dims[1..]);
            let woff = linear(k, &mi, taps, &k_dims);
            let cgc = k.idx(cg as i64);
            let bounds = [(k.idx(0), cgc)];
            let mut inner = |k: &mut KernelCtx, ci: &[String], a: &[String]| {
                let ch = op(k, format!("arith.addi {plane0}, {} : index", ci[0]));
                let xi = mad(k, &ch, nin, Some(&xoff));
                let wc = op(k, format!("arith.addi {ch0}, {} : index", ci[0]));
                let wrow = mad(k, &wc, mg * nk, Some(&woff));
                let xv = load(k, &xm, &xt, &xi, d);
                let wv = load(k, &wm, &wt, &wrow, d);
                vec![op(k, format!("math.fma {xv}, {wv}, {} : {ct}", a[0]))]
            };
            let sum = nest(k, &bounds, &[(acc.clone(), ct.to_string())], &mut inner).remove(0);
            match r {
                Some(r) => {
                    k.line(format!("scf.yield {sum} : {ct}"));
                    k.line("} else {");
                    k.line(format!("scf.yield {acc} : {ct}"));
                    k.line("}");
                    vec![r]
                }
                None => vec![sum],
            }
        };
        let acc = nest(k, &bounds, &[(init.clone(), ct.to_string())], &mut body).remove(0);
        let yi = mad(k, &yrow, axes[sp - 1].out, Some(ow));
        store(k, &acc, &ym, &yt, &yi, d);
    });
    par_close(k);
    Ok(())
}

// ---------------------------------------------------------------------------
// Pooling

/// What a windowed or global pool computes.
#[derive(Clone, Copy, Debug)]
enum Pool {
    Max,
    Average { include_pad: bool },
    Lp { p: i64 },
}

impl Pool {
    fn of(k: &KernelCtx) -> Result<Pool, String> {
        Ok(match mnemonic(k) {
            "max_pool" | "global_max_pool" => Pool::Max,
            "average_pool" => Pool::Average {
                include_pad: k.op.int("count_include_pad")? != 0,
            },
            "global_average_pool" => Pool::Average { include_pad: false },
            _ => {
                let p = k.op.int("p")?;
                if p <= 0 {
                    return Err(format!("tsr.{}: p must be positive, got {p}", mnemonic(k)));
                }
                Pool::Lp { p }
            }
        })
    }
}

/// The type sums of a pool accumulate in: f64 like the reference for f32
/// and f64 data (the window or plane may be long), f32 for the half types
/// (whose tolerance f32 meets).
fn acc_ty(d: DType) -> &'static str {
    if is_half(d) {
        "f32"
    } else {
        "f64"
    }
}

/// Loads a float element widened to `at`.
fn load_wide(k: &mut KernelCtx, (mem, ty): (&str, &str), idx: &str, d: DType, at: &str) -> String {
    let v = op(k, format!("memref.load {mem}[{idx}] : {ty}"));
    let e = crate::emit::kernel::elem(d).expect("checked float dtype");
    if e == at {
        v
    } else {
        op(k, format!("arith.extf {v} : {e} to {at}"))
    }
}

/// Stores an `at` value rounded once to the element type.
fn store_narrow(
    k: &mut KernelCtx,
    v: &str,
    (mem, ty): (&str, &str),
    idx: &str,
    d: DType,
    at: &str,
) {
    let e = crate::emit::kernel::elem(d).expect("checked float dtype");
    let v = if e == at {
        v.to_string()
    } else {
        op(k, format!("arith.truncf {v} : {at} to {e}"))
    };
    k.line(format!("memref.store {v}, {mem}[{idx}] : {ty}"));
}

/// Element types MaxPool accepts: floats and the integers the reference
/// handles; `Some(signed)` for integers.
fn max_pool_int(k: &KernelCtx, d: DType) -> Result<Option<bool>, String> {
    Ok(match d {
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => None,
        DType::I8 | DType::I16 | DType::I32 | DType::I64 => Some(true),
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => Some(false),
        other => {
            return Err(format!(
                "tsr.{}: x of type {other} is not supported by the cpu target",
                mnemonic(k)
            ))
        }
    })
}

/// The value of an empty window (all taps in padding): the reference's
/// -infinity converted to the element type (`as` casts: i64::MIN for i64,
/// 0 for the narrower integers and u64).
fn max_identity(k: &mut KernelCtx, d: DType) -> String {
    let e = crate::emit::kernel::elem(d).expect("checked dtype");
    match d {
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => fconst(k, f64::NEG_INFINITY, e),
        DType::I64 => iconst(k, i64::MIN, e),
        _ => iconst(k, 0, e),
    }
}

/// `a > b` for the element type (floats: ordered, so NaN never wins later).
fn greater(k: &mut KernelCtx, a: &str, b: &str, d: DType, signed: Option<bool>) -> String {
    let e = crate::emit::kernel::elem(d).expect("checked dtype");
    match signed {
        None => op(k, format!("arith.cmpf ogt, {a}, {b} : {e}")),
        Some(true) => op(k, format!("arith.cmpi sgt, {a}, {b} : {e}")),
        Some(false) => op(k, format!("arith.cmpi ugt, {a}, {b} : {e}")),
    }
}

/// The contribution of `v` to an Lp sum, and the final root of the sum.
fn lp_term(k: &mut KernelCtx, v: &str, p: i64, at: &str) -> String {
    match p {
        1 => op(k, format!("math.absf {v} : {at}")),
        2 => op(k, format!("arith.mulf {v}, {v} : {at}")),
        _ => {
            let a = op(k, format!("math.absf {v} : {at}"));
            let pc = fconst(k, p as f64, at);
            op(k, format!("math.powf {a}, {pc} : {at}"))
        }
    }
}

fn lp_root(k: &mut KernelCtx, s: &str, p: i64, at: &str) -> String {
    match p {
        1 => s.to_string(),
        2 => op(k, format!("math.sqrt {s} : {at}")),
        _ => {
            let r = fconst(k, 1.0 / p as f64, at);
            op(k, format!("math.powf {s}, {r} : {at}"))
        }
    }
}

/// An index count as an `at` float.
fn count_to_float(k: &mut KernelCtx, n: &str, at: &str) -> String {
    let i = op(k, format!("arith.index_cast {n} : index to i64"));
    op(k, format!("arith.sitofp {i} : i64 to {at}"))
}

fn lower_pool(k: &mut KernelCtx) -> Result<(), String> {
    let kind = Pool::of(k)?;
    let x = match kind {
        Pool::Max => k.operand(0)?.clone(),
        _ => float_input(k, 0, "x")?,
    };
    let d = x.dtype;
    let signed = max_pool_int(k, d)?;
    check_spatial(k, &x)?;
    let axes = window_axes(k, &x, None)?;
    let y = k.result(0).clone();
    if y.is_empty() {
        return Ok(());
    }
    let col_major = matches!(kind, Pool::Max) && k.op.int("storage_order")? != 0;
    let xm = flat(k, &x)?;
    let ym = flat(k, &y)?;
    let indices = match k.results.get(1).cloned() {
        Some(b) if !b.is_empty() => Some(flat(k, &b)?),
        _ => None,
    };
    let sp = axes.len();
    let in_dims: Vec<usize> = axes.iter().map(|a| a.input).collect();
    let nin: usize = in_dims.iter().product();
    let mut ubs = vec![x.shape[0] * x.shape[1]];
    ubs.extend(axes[..sp - 1].iter().map(|a| a.out));
    let p = par_open(k, &ubs);
    let (plane, po) = (p[0].clone(), p[1..].to_vec());
    let outer: Vec<Span> = axes.iter().zip(&po).map(|(a, o)| span(k, a, o)).collect();
    let outer_dims: Vec<usize> = axes[..sp - 1].iter().map(|a| a.out).collect();
    let yrow = linear(k, &plane, &po, &outer_dims);
    let pbase = mad(k, &plane, nin, None);
    let xview = (xm.0.as_str(), xm.1.as_str());
    let yview = (ym.0.as_str(), ym.1.as_str());
    let e = crate::emit::kernel::elem(d)?;
    row_loop(k, 0, axes[sp - 1].out, &mut |k, ow| {
        let last = span(k, &axes[sp - 1], ow);
        let spans: Vec<&Span> = outer.iter().chain([&last]).collect();
        let bounds: Vec<(String, String)> =
            spans.iter().map(|s| (s.lo.clone(), s.hi.clone())).collect();
        let positions = |k: &mut KernelCtx, taps: &[String]| -> Vec<String> {
            taps.iter()
                .zip(&spans)
                .zip(&axes)
                .map(|((t, s), a)| mad(k, t, a.dilation, Some(&s.base)))
                .collect()
        };
        let yi = mad(k, &yrow, axes[sp - 1].out, Some(ow));
        match kind {
            Pool::Max => {
                let init = max_identity(k, d);
                let none = k.idx(-1);
                let mut body = |k: &mut KernelCtx, taps: &[String], acc: &[String]| {
                    let pos = positions(k, taps);
                    let off = linear_row(k, &pos, &in_dims);
                    // storage_order 1 numbers the elements column-major.
                    let at = if col_major {
                        let rp: Vec<String> = pos.iter().rev().cloned().collect();
                        let rd: Vec<usize> = in_dims.iter().rev().copied().collect();
                        linear_row(k, &rp, &rd)
                    } else {
                        off.clone()
                    };
                    let xi = op(k, format!("arith.addi {pbase}, {off} : index"));
                    let v = op(k, format!("memref.load {}[{xi}] : {}", xview.0, xview.1));
                    let z = k.idx(0);
                    let first = op(k, format!("arith.cmpi slt, {}, {z} : index", acc[1]));
                    let gt = greater(k, &v, &acc[0], d, signed);
                    let take = op(k, format!("arith.ori {first}, {gt} : i1"));
                    vec![
                        op(k, format!("arith.select {take}, {v}, {} : {e}", acc[0])),
                        op(k, format!("arith.select {take}, {at}, {} : index", acc[1])),
                    ]
                };
                let r = nest(
                    k,
                    &bounds,
                    &[(init, e.to_string()), (none.clone(), "index".into())],
                    &mut body,
                );
                k.line(format!(
                    "memref.store {}, {}[{yi}] : {}",
                    r[0], yview.0, yview.1
                ));
                if let Some((im, it)) = &indices {
                    let z = k.idx(0);
                    let found = op(k, format!("arith.cmpi sge, {}, {z} : index", r[1]));
                    let abs = op(k, format!("arith.addi {pbase}, {} : index", r[1]));
                    let sel = op(k, format!("arith.select {found}, {abs}, {none} : index"));
                    let i = op(k, format!("arith.index_cast {sel} : index to i64"));
                    k.line(format!("memref.store {i}, {im}[{yi}] : {it}"));
                }
            }
            Pool::Average { include_pad } => {
                let at = acc_ty(d);
                let zero = fconst(k, 0.0, at);
                let mut body = |k: &mut KernelCtx, taps: &[String], acc: &[String]| {
                    let pos = positions(k, taps);
                    let off = linear_row(k, &pos, &in_dims);
                    let xi = op(k, format!("arith.addi {pbase}, {off} : index"));
                    let v = load_wide(k, xview, &xi, d, at);
                    vec![op(k, format!("arith.addf {}, {v} : {at}", acc[0]))]
                };
                let sum = nest(k, &bounds, &[(zero, at.to_string())], &mut body).remove(0);
                let mut count = k.idx(1);
                for (a, s) in axes.iter().zip(&spans) {
                    let n = if include_pad {
                        // Taps short of the end padding (the extra room
                        // ceil mode makes is not counted).
                        let end = k.idx(a.input as i64 + a.pad_end);
                        let room = op(k, format!("arith.subi {end}, {} : index", s.base));
                        let room = nonneg(k, &room);
                        let n = ceil_div(k, &room, a.dilation);
                        let kc = k.idx(a.kernel as i64);
                        op(k, format!("arith.minsi {n}, {kc} : index"))
                    } else {
                        let n = op(k, format!("arith.subi {}, {} : index", s.hi, s.lo));
                        nonneg(k, &n)
                    };
                    count = op(k, format!("arith.muli {count}, {n} : index"));
                }
                let cf = count_to_float(k, &count, at);
                let mean = op(k, format!("arith.divf {sum}, {cf} : {at}"));
                store_narrow(k, &mean, yview, &yi, d, at);
            }
            Pool::Lp { p } => {
                let at = acc_ty(d);
                let zero = fconst(k, 0.0, at);
                let mut body = |k: &mut KernelCtx, taps: &[String], acc: &[String]| {
                    let pos = positions(k, taps);
                    let off = linear_row(k, &pos, &in_dims);
                    let xi = op(k, format!("arith.addi {pbase}, {off} : index"));
                    let v = load_wide(k, xview, &xi, d, at);
                    let t = lp_term(k, &v, p, at);
                    vec![op(k, format!("arith.addf {}, {t} : {at}", acc[0]))]
                };
                let sum = nest(k, &bounds, &[(zero, at.to_string())], &mut body).remove(0);
                let r = lp_root(k, &sum, p, at);
                store_narrow(k, &r, yview, &yi, d, at);
            }
        }
    });
    par_close(k);
    Ok(())
}

/// The row-major offset of `pos` inside one `dims`-shaped plane.
fn linear_row(k: &mut KernelCtx, pos: &[String], dims: &[usize]) -> String {
    linear(k, &pos[0], &pos[1..], &dims[1..])
}

/// GlobalAveragePool / GlobalMaxPool / GlobalLpPool: one reduction over each
/// [N, C] plane, planes in parallel.
fn lower_global_pool(k: &mut KernelCtx) -> Result<(), String> {
    let kind = Pool::of(k)?;
    let x = float_input(k, 0, "x")?;
    let d = x.dtype;
    if x.rank() < 2 {
        return Err(format!(
            "tsr.{} needs input [N, C, ...], got shape {:?}",
            mnemonic(k),
            x.shape
        ));
    }
    let y = k.result(0).clone();
    if y.is_empty() {
        return Ok(());
    }
    let nin: usize = x.shape[2..].iter().product();
    let planes = x.shape[0] * x.shape[1];
    let ym = flat(k, &y)?;
    let yview = (ym.0.as_str(), ym.1.as_str());
    if nin == 0 {
        // Nothing to read: the empty reduction's value for every plane.
        let e = crate::emit::kernel::elem(d)?;
        let v = match kind {
            Pool::Max => f64::NEG_INFINITY,
            Pool::Average { .. } => f64::NAN,
            Pool::Lp { .. } => 0.0,
        };
        let c = fconst(k, v, e);
        k.line(format!(
            "linalg.fill ins({c} : {e}) outs({} : {})",
            y.name, y.ty
        ));
        return Ok(());
    }
    let xm = flat(k, &x)?;
    let xview = (xm.0.as_str(), xm.1.as_str());
    let at = match kind {
        Pool::Max => crate::emit::kernel::elem(d)?,
        _ => acc_ty(d),
    };
    let init = match kind {
        Pool::Max => fconst(k, f64::NEG_INFINITY, at),
        _ => fconst(k, 0.0, at),
    };
    let p = par_open(k, &[planes]);
    let base = mad(k, &p[0], nin, None);
    let bounds = [(k.idx(0), k.idx(nin as i64))];
    let mut body = |k: &mut KernelCtx, i: &[String], acc: &[String]| {
        let xi = op(k, format!("arith.addi {base}, {} : index", i[0]));
        let a = &acc[0];
        vec![match kind {
            // NaN-ignoring maximum, like the reference's f64::max fold.
            Pool::Max => {
                let v = op(k, format!("memref.load {}[{xi}] : {}", xview.0, xview.1));
                op(k, format!("arith.maxnumf {a}, {v} : {at}"))
            }
            Pool::Average { .. } => {
                let v = load_wide(k, xview, &xi, d, at);
                op(k, format!("arith.addf {a}, {v} : {at}"))
            }
            Pool::Lp { p } => {
                let v = load_wide(k, xview, &xi, d, at);
                let t = lp_term(k, &v, p, at);
                op(k, format!("arith.addf {a}, {t} : {at}"))
            }
        }]
    };
    let r = nest(k, &bounds, &[(init, at.to_string())], &mut body).remove(0);
    let v = match kind {
        Pool::Max => r,
        Pool::Average { .. } => {
            let n = fconst(k, nin as f64, at);
            op(k, format!("arith.divf {r}, {n} : {at}"))
        }
        Pool::Lp { p } => lp_root(k, &r, p, at),
    };
    store_narrow(k, &v, yview, &p[0], d, at);
    par_close(k);
    Ok(())
}

// ---------------------------------------------------------------------------
// MaxUnpool

/// MaxUnpool's unpooled spatial size per axis, `(in - 1) * stride + kernel -
/// pads` (ONNX's default output shape, which the indices address).
fn unpooled_dims(k: &KernelCtx, input: &[usize]) -> Result<Vec<usize>, String> {
    let n = input.len();
    let kernel = k.op.ints("kernel_shape")?;
    let strides = opt_ints(k, "strides")?.unwrap_or_else(|| vec![1; n]);
    let pads = opt_ints(k, "pads")?.unwrap_or_else(|| vec![0; 2 * n]);
    if kernel.len() != n || strides.len() != n || pads.len() != 2 * n {
        return Err(format!(
            "tsr.max_unpool: kernel_shape, strides and pads must describe {n} spatial dims"
        ));
    }
    (0..n)
        .map(|i| {
            let v = (input[i].max(1) as i64 - 1) * strides[i] + kernel[i] - pads[i] - pads[n + i];
            usize::try_from(v).map_err(|_| "tsr.max_unpool: pads exceed the unpooled size".into())
        })
        .collect()
}

/// Scatters x into a zero tensor at its indices, in element order (a later
/// duplicate index wins, as in the reference). Indices outside the unpooled
/// tensor, which the reference reports as an error, are skipped: a kernel
/// cannot fail at run time.
fn lower_max_unpool(k: &mut KernelCtx) -> Result<(), String> {
    let x = float_input(k, 0, "x")?;
    let idx = k.operand(1)?.clone();
    let y = k.result(0).clone();
    check_spatial(k, &x)?;
    if idx.dtype != DType::I64 || idx.shape != x.shape {
        return Err(format!(
            "tsr.max_unpool: indices must be i64 of x's shape {:?}, got {} {:?}",
            x.shape, idx.dtype, idx.shape
        ));
    }
    let mut natural = x.shape[..2].to_vec();
    natural.extend(unpooled_dims(k, &x.shape[2..])?);
    if y.rank() != natural.len() || y.shape.iter().zip(&natural).any(|(o, n)| o < n) {
        return Err(format!(
            "tsr.max_unpool: output shape {:?} is smaller than the unpooled shape {natural:?}",
            y.shape
        ));
    }
    if y.is_empty() {
        return Ok(());
    }
    let e = y.elem();
    let zero = fconst(k, 0.0, e);
    k.line(format!(
        "linalg.fill ins({zero} : {e}) outs({} : {})",
        y.name, y.ty
    ));
    if x.is_empty() {
        return Ok(());
    }
    let (xm, xt) = flat(k, &x)?;
    let (im, it) = flat(k, &idx)?;
    let (ym, yt) = flat(k, &y)?;
    let total: usize = natural.iter().product();
    let (lo, hi) = (k.idx(0), k.idx(x.len() as i64));
    let (i, _, _) = for_open(k, &lo, &hi, 1, &[]);
    let j = op(k, format!("memref.load {im}[{i}] : {it}"));
    let (z, t) = (iconst(k, 0, "i64"), iconst(k, total as i64, "i64"));
    let ge = op(k, format!("arith.cmpi sge, {j}, {z} : i64"));
    let lt = op(k, format!("arith.cmpi slt, {j}, {t} : i64"));
    let inside = op(k, format!("arith.andi {ge}, {lt} : i1"));
    k.line(format!("scf.if {inside} {{"));
    let j = op(k, format!("arith.index_cast {j} : i64 to index"));
    // A larger output holds the unpooled tensor in its leading corner.
    let dst = if y.shape == natural {
        j
    } else {
        let mut dst = k.idx(0);
        let mut rest = j;
        for a in (0..natural.len()).rev() {
            let nc = k.idx(natural[a] as i64);
            let coord = op(k, format!("arith.remui {rest}, {nc} : index"));
            rest = op(k, format!("arith.divui {rest}, {nc} : index"));
            let stride: usize = y.shape[a + 1..].iter().product();
            dst = mad(k, &coord, stride, Some(&dst));
        }
        dst
    };
    let v = op(k, format!("memref.load {xm}[{i}] : {xt}"));
    k.line(format!("memref.store {v}, {ym}[{dst}] : {yt}"));
    k.line("}");
    for_close(k, &[]);
    Ok(())
}

pub const LOWERINGS: &[(&str, LowerFn)] = &[
    ("max_unpool", lower_max_unpool),
    ("conv", lower_conv),
    ("conv_transpose", lower_conv_transpose),
    ("max_pool", lower_pool),
    ("average_pool", lower_pool),
    ("lp_pool", lower_pool),
    ("global_max_pool", lower_global_pool),
    ("global_average_pool", lower_global_pool),
    ("global_lp_pool", lower_global_pool),
];
