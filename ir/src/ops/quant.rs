//! Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
//! MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv.
//!
//! The shared pieces are public so that the com.microsoft forms of these ops
//! (`contrib`) reuse them: [`quantize_linear`], [`dequantize_linear`],
//! [`matmul_i32`], the conv geometry and the integer im2col convolution.

use super::nn::conv::{unravel, CONV_ATTRS};
use super::util::{broadcast_index_map, broadcast_shapes, norm_axis};
use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;
use half::{bf16, f16};

// ---------------------------------------------------------------------------
// Scalar helpers
// ---------------------------------------------------------------------------

/// Rounds `v` to the precision of the float type `dt` (f64 and non-floats
/// unchanged). Computing one `+ - * /` of two narrower floats in f64 and
/// rounding once gives the correctly rounded result of that narrower type.
pub fn round_to(dt: DType, v: f64) -> f64 {
    match dt {
        DType::F32 => v as f32 as f64,
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// The type numpy computes `a / b` in, for the float (and int32) operand types
/// the quantization ops accept: the common type when equal, else f32, and f64
/// as soon as an integer or f64 takes part.
fn promote_float(a: DType, b: DType) -> DType {
    if a == b && a.is_float() {
        a
    } else if a == DType::F64 || b == DType::F64 || !a.is_float() || !b.is_float() {
        DType::F64
    } else {
        DType::F32
    }
}

/// Round half to even, then clamp into the integer type's range. NaN becomes 0
/// (before adding any zero point, which callers do first).
fn saturate_int(dt: DType, v: f64) -> Result<i64, String> {
    let (lo, hi) = dt
        .int_range()
        .ok_or_else(|| format!("{dt} is not an integer type"))?;
    let r = v.round_ties_even();
    Ok(if r.is_nan() {
        0
    } else {
        r.clamp(lo as f64, hi as f64) as i64
    })
}

fn is_float8(dt: DType) -> bool {
    matches!(
        dt,
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ
    )
}

/// The element types QuantizeLinear produces.
fn is_quant_target(dt: DType) -> bool {
    matches!(
        dt,
        DType::U8
            | DType::I8
            | DType::U16
            | DType::I16
            | DType::U4
            | DType::I4
            | DType::U2
            | DType::I2
    ) || is_float8(dt)
        || dt == DType::F4E2M1
}

/// The element types DequantizeLinear reads (the quantized types plus int32).
fn is_dequant_source(dt: DType) -> bool {
    is_quant_target(dt) || dt == DType::I32
}

fn is_8bit_int(dt: DType) -> bool {
    matches!(dt, DType::U8 | DType::I8)
}

/// An optional element type attribute (`output_dtype`, `precision`), where
/// the ONNX code 0 (UNDEFINED) or absence mean unset.
pub fn opt_dtype_attr(ctx: &dyn AttrAccess, name: &str) -> Result<Option<DType>, String> {
    match ctx.attr(name) {
        None | Some(Attr::Int(0)) => Ok(None),
        Some(Attr::Type(d)) => Ok(Some(d)),
        other => Err(ctx.attr_err(name, "an element type", other)),
    }
}

// ---------------------------------------------------------------------------
// Quantization parameter layout
// ---------------------------------------------------------------------------

/// Where the scale and zero point of each element of `x` live: one for the
/// whole tensor, one per slice along an axis, or one per block of `block`
/// consecutive elements along an axis.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamLayout {
    PerTensor,
    PerAxis {
        dim: usize,
        inner: usize,
    },
    Blocked {
        dim: usize,
        inner: usize,
        block: usize,
        nblocks: usize,
    },
}

impl ParamLayout {
    /// The granularity from the parameter's shape (ONNX rules: a one-element
    /// parameter is per tensor, a 1-D one per axis, a same-rank one blocked
    /// when `block_size > 0`).
    pub fn new(
        x_shape: &[usize],
        p_shape: &[usize],
        axis: i64,
        block_size: i64,
    ) -> Result<ParamLayout, String> {
        let plen: usize = p_shape.iter().product();
        if plen == 1 && (block_size == 0 || p_shape.len() <= 1) {
            return Ok(ParamLayout::PerTensor);
        }
        if block_size < 0 {
            return Err(format!("block_size must be non-negative, got {block_size}"));
        }
        let ax = norm_axis(axis, x_shape.len())?;
        let dim = x_shape[ax];
        let inner: usize = x_shape[ax + 1..].iter().product();
        if block_size == 0 {
            if p_shape.len() != 1 || p_shape[0] != dim {
                return Err(format!(
                    "per-axis scale must be 1-D of length {dim} (axis {axis} of {x_shape:?}), got shape {p_shape:?}"
                ));
            }
            return Ok(ParamLayout::PerAxis { dim, inner });
        }
        let block = block_size as usize;
        let nblocks = dim.div_ceil(block);
        let ok = p_shape.len() == x_shape.len()
            && p_shape
                .iter()
                .zip(x_shape)
                .enumerate()
                .all(|(d, (&p, &x))| if d == ax { p == nblocks } else { p == x });
        if !ok {
            return Err(format!(
                "blocked scale for {x_shape:?} (axis {axis}, block {block}) must have {nblocks} blocks on the axis and the \
                 input's other dims, got shape {p_shape:?}"
            ));
        }
        Ok(ParamLayout::Blocked {
            dim,
            inner,
            block,
            nblocks,
        })
    }

    /// Flat index into the parameter tensor for flat element `i` of `x`.
    #[inline]
    pub fn index(&self, i: usize) -> usize {
        match *self {
            ParamLayout::PerTensor => 0,
            ParamLayout::PerAxis { dim, inner } => (i / inner) % dim,
            ParamLayout::Blocked {
                dim,
                inner,
                block,
                nblocks,
            } => {
                let outer = i / (dim * inner);
                let d = (i / inner) % dim;
                (outer * nblocks + d / block) * inner + i % inner
            }
        }
    }
}

fn check_same_shape(scale: &Tensor, zp: Option<&Tensor>) -> Result<(), String> {
    match zp {
        Some(z) if z.shape != scale.shape && !(z.len() == 1 && scale.len() == 1) => Err(format!(
            "zero point shape {:?} differs from scale shape {:?}",
            z.shape, scale.shape
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear
// ---------------------------------------------------------------------------

/// The element type QuantizeLinear produces: the zero point's, else
/// `output_dtype`, else u8.
pub fn quantize_result_dtype(
    zp: Option<DType>,
    output_dtype: Option<DType>,
) -> Result<DType, String> {
    let dt = match (zp, output_dtype) {
        (Some(z), Some(o)) if z != o => {
            return Err(format!(
                "output_dtype {o} differs from the zero point type {z}"
            ));
        }
        (Some(z), _) => z,
        (None, Some(o)) => o,
        (None, None) => DType::U8,
    };
    if !is_quant_target(dt) {
        return Err(format!(
            "{dt} is not a quantized type QuantizeLinear produces"
        ));
    }
    Ok(dt)
}

/// `y = saturate(round_half_even(x / scale) + zero_point)` for integer
/// targets; float8 / float4 targets are rounded by the format's own
/// round-to-nearest-even (saturating to the largest finite value when
/// `saturate`). The division runs in the precision of `precision`, else in the
/// common type of `x` and `scale`, as in the ONNX reference.
#[allow(clippy::too_many_arguments)]
pub fn quantize_linear(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    axis: i64,
    block_size: i64,
    out: DType,
    saturate: bool,
    precision: Option<DType>,
) -> Result<Tensor, String> {
    if !matches!(
        x.dtype,
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 | DType::I32
    ) {
        return Err(format!(
            "QuantizeLinear input must be float or int32, got {}",
            x.dtype
        ));
    }
    if !scale.dtype.is_float() {
        return Err(format!(
            "QuantizeLinear scale must be a float tensor, got {}",
            scale.dtype
        ));
    }
    if let Some(z) = zp {
        if z.dtype != out {
            return Err(format!(
                "zero point type {} differs from the result type {out}",
                z.dtype
            ));
        }
    }
    check_same_shape(scale, zp)?;
    let layout = ParamLayout::new(&x.shape, &scale.shape, axis, block_size)?;
    let compute = precision.unwrap_or_else(|| promote_float(x.dtype, scale.dtype));
    let xs = x.to_f64_vec();
    let ss = scale.to_f64_vec();
    let zs = zp.map(Tensor::to_f64_vec);
    let q = |i: usize| -> (f64, f64) {
        let p = layout.index(i);
        let v = round_to(compute, round_to(compute, xs[i]) / round_to(compute, ss[p]));
        (v, zs.as_ref().map_or(0.0, |z| z[p]))
    };
    if out.is_int() {
        let v = (0..xs.len())
            .map(|i| {
                let (v, z) = q(i);
                let r = v.round_ties_even();
                saturate_int(out, if r.is_nan() { z } else { r + z })
            })
            .collect::<Result<Vec<i64>, String>>()?;
        return Ok(Tensor::from_i64(out, x.shape.clone(), &v));
    }
    // Float targets: the zero point is only meaningful (and only added by the
    // reference) for float4; float8 zero points must be 0.
    let codes: Vec<u8> = (0..xs.len())
        .map(|i| {
            let (v, z) = q(i);
            let v = if out == DType::F4E2M1 { v + z } else { v };
            crate::minifloat::encode(out, v as f32, saturate || out == DType::F4E2M1)
        })
        .collect();
    Tensor::new(out, x.shape.clone(), crate::tensor::Data::U8(codes))
}

/// `y = (x - zero_point) * scale`, computed in f32 as the ONNX reference does
/// and rounded to `out`. Float8 and float4 inputs ignore the zero point (it
/// must be zero for float8).
pub fn dequantize_linear(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    axis: i64,
    block_size: i64,
    out: DType,
) -> Result<Tensor, String> {
    if !is_dequant_source(x.dtype) {
        return Err(format!("DequantizeLinear does not take {} input", x.dtype));
    }
    if !scale.dtype.is_float() {
        return Err(format!(
            "DequantizeLinear scale must be a float tensor, got {}",
            scale.dtype
        ));
    }
    if !matches!(out, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
        return Err(format!(
            "DequantizeLinear produces f32, f16 or bf16, not {out}"
        ));
    }
    check_same_shape(scale, zp)?;
    let layout = ParamLayout::new(&x.shape, &scale.shape, axis, block_size)?;
    let float_input = x.dtype.is_float();
    let zs = match zp {
        Some(z) if !float_input => {
            if z.dtype != x.dtype {
                return Err(format!(
                    "zero point type {} differs from the input type {}",
                    z.dtype, x.dtype
                ));
            }
            Some(z.to_f64_vec())
        }
        Some(z) if is_float8(x.dtype) && z.to_f64_vec().iter().any(|&v| v != 0.0) => {
            return Err("a float8 zero point must be zero".into());
        }
        _ => None,
    };
    let ss = scale.to_f64_vec();
    let v: Vec<f64> = (0..x.len())
        .map(|i| {
            let p = layout.index(i);
            let xv = x.get_f64(i) as f32;
            let dx = zs.as_ref().map_or(xv, |z| xv - z[p] as f32);
            (dx * ss[p] as f32) as f64
        })
        .collect();
    Ok(Tensor::from_f64(out, x.shape.clone(), &v))
}

fn infer_quantize(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    let out = quantize_result_dtype(
        ctx.opt_input(2).map(TensorType::dtype),
        opt_dtype_attr(ctx, "output_dtype")?,
    )?;
    Ok(vec![x.with_dtype(out)])
}

fn infer_dequantize(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    let scale = ctx.input(1)?;
    let out = match opt_dtype_attr(ctx, "output_dtype")? {
        Some(d) => d,
        None if scale.dtype() == DType::F8E8M0 => {
            return Err("output_dtype is required when the scale is f8e8m0".into());
        }
        None => scale.dtype(),
    };
    Ok(vec![x.with_dtype(out)])
}

pub fn eval_quantize(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x, scale, zp) = (ctx.input(0)?, ctx.input(1)?, ctx.opt_input(2));
    let out = quantize_result_dtype(zp.map(|z| z.dtype), opt_dtype_attr(ctx, "output_dtype")?)?;
    let block = if ctx.def.attr_spec("block_size").is_some() {
        ctx.int("block_size")?
    } else {
        0
    };
    let saturate = if ctx.def.attr_spec("saturate").is_some() {
        ctx.int("saturate")? != 0
    } else {
        true
    };
    let precision = if ctx.def.attr_spec("precision").is_some() {
        opt_dtype_attr(ctx, "precision")?
    } else {
        None
    };
    Ok(vec![quantize_linear(
        x,
        scale,
        zp,
        ctx.int("axis")?,
        block,
        out,
        saturate,
        precision,
    )?])
}

pub fn eval_dequantize(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x, scale, zp) = (ctx.input(0)?, ctx.input(1)?, ctx.opt_input(2));
    let out = match opt_dtype_attr(ctx, "output_dtype")? {
        Some(d) => d,
        None if scale.dtype == DType::F8E8M0 => {
            return Err("output_dtype is required when the scale is f8e8m0".into());
        }
        None => scale.dtype,
    };
    let block = if ctx.def.attr_spec("block_size").is_some() {
        ctx.int("block_size")?
    } else {
        0
    };
    Ok(vec![dequantize_linear(
        x,
        scale,
        zp,
        ctx.int("axis")?,
        block,
        out,
    )?])
}

pub static QUANTIZE_LINEAR: OpDef = OpDef {
    mnemonic: "quantize_linear",
    summary: "y = saturate(round_half_even(x / y_scale) + y_zero_point), per tensor, axis or block",
    operands: &[req("x"), req("y_scale"), opt("y_zero_point")],
    results: Results::Fixed(1),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(1)),
        attr("block_size", AttrKind::Int, Default::Int(0)),
        attr("output_dtype", AttrKind::Type, Default::Absent),
        attr("precision", AttrKind::Type, Default::Absent),
        attr("saturate", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[],
    infer: infer_quantize,
    eval: Some(eval_quantize),
};

pub static DEQUANTIZE_LINEAR: OpDef = OpDef {
    mnemonic: "dequantize_linear",
    summary: "y = (x - x_zero_point) * x_scale, per tensor, axis or block",
    operands: &[req("x"), req("x_scale"), opt("x_zero_point")],
    results: Results::Fixed(1),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(1)),
        attr("block_size", AttrKind::Int, Default::Int(0)),
        attr("output_dtype", AttrKind::Type, Default::Absent),
    ],
    traits: &[],
    infer: infer_dequantize,
    eval: Some(eval_dequantize),
};

// ---------------------------------------------------------------------------
// DynamicQuantizeLinear
// ---------------------------------------------------------------------------

/// Scale and zero point DynamicQuantizeLinear derives from the data range
/// (extended to include 0), in f32 as onnxruntime computes them. A constant
/// input (range 0) gets scale 1, as in onnxruntime.
pub fn dynamic_qparams_u8(x: &[f32]) -> (f32, u8) {
    let (mut lo, mut hi) = (0f32, 0f32);
    for &v in x {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even();
    (scale, zp as u8)
}

pub static DYNAMIC_QUANTIZE_LINEAR: OpDef = OpDef {
    mnemonic: "dynamic_quantize_linear",
    summary: "Quantizes to u8 with a scale and zero point computed from the data range",
    operands: &[req("x")],
    results: Results::Fixed(3),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        if x.dtype() != DType::F32 {
            return Err(format!(
                "DynamicQuantizeLinear takes f32 input, got {}",
                x.dtype()
            ));
        }
        Ok(vec![
            x.with_dtype(DType::U8),
            TensorType::scalar(DType::F32),
            TensorType::scalar(DType::U8),
        ])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        if x.dtype != DType::F32 {
            return Err(format!(
                "DynamicQuantizeLinear takes f32 input, got {}",
                x.dtype
            ));
        }
        let xs = x.to_f32_vec();
        let (scale, zp) = dynamic_qparams_u8(&xs);
        let y: Vec<u8> = xs
            .iter()
            .map(|&v| ((v / scale).round_ties_even() + zp as f32).clamp(0.0, 255.0) as u8)
            .collect();
        Ok(vec![
            Tensor::new(DType::U8, x.shape.clone(), crate::tensor::Data::U8(y))?,
            Tensor::f32(vec![], vec![scale]),
            Tensor::new(DType::U8, vec![], crate::tensor::Data::U8(vec![zp]))?,
        ])
    }),
};

// ---------------------------------------------------------------------------
// Integer matmul
// ---------------------------------------------------------------------------

/// Batched integer matmul with numpy.matmul broadcasting and promotion of 1-D
/// operands. Sums wrap in 32 bits (the ONNX contract: accumulation may
/// overflow only in 32 bits).
pub fn matmul_i32(
    a: &[i32],
    a_shape: &[usize],
    b: &[i32],
    b_shape: &[usize],
) -> Result<(Vec<i32>, Vec<usize>), String> {
    if a_shape.is_empty() || b_shape.is_empty() {
        return Err("matmul operands must have rank >= 1".into());
    }
    let ash: Vec<usize> = if a_shape.len() == 1 {
        vec![1, a_shape[0]]
    } else {
        a_shape.to_vec()
    };
    let bsh: Vec<usize> = if b_shape.len() == 1 {
        vec![b_shape[0], 1]
    } else {
        b_shape.to_vec()
    };
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(format!("matmul contraction dims differ: {k} vs {k2}"));
    }
    let batch = broadcast_shapes(&ash[..ash.len() - 2], &bsh[..bsh.len() - 2])?;
    let nb: usize = batch.iter().product();
    let amap = broadcast_index_map(&ash[..ash.len() - 2], &batch);
    let bmap = broadcast_index_map(&bsh[..bsh.len() - 2], &batch);
    let mut out = vec![0i32; nb * m * n];
    for bi in 0..nb {
        let (ao, bo, oo) = (amap[bi] * m * k, bmap[bi] * k * n, bi * m * n);
        for i in 0..m {
            let row = &mut out[oo + i * n..oo + (i + 1) * n];
            for p in 0..k {
                let av = a[ao + i * k + p];
                if av == 0 {
                    continue;
                }
                let brow = &b[bo + p * n..bo + (p + 1) * n];
                for (o, &bv) in row.iter_mut().zip(brow) {
                    *o = o.wrapping_add(av.wrapping_mul(bv));
                }
            }
        }
    }
    let mut shape = batch;
    if a_shape.len() > 1 {
        shape.push(m);
    }
    if b_shape.len() > 1 {
        shape.push(n);
    }
    Ok((out, shape))
}

/// Shape a per-row parameter of the left matmul operand (1-D of length M)
/// takes to broadcast against `[..., M, K]` / `[..., M, N]`: `[M, 1]`.
fn row_param_shape(p: &Tensor, lhs_rank: usize, m: usize) -> Vec<usize> {
    if p.rank() == 1 && lhs_rank >= 2 && p.shape[0] == m && m != 1 {
        vec![m, 1]
    } else {
        p.shape.clone()
    }
}

/// `x - zero_point` as i32, the zero point broadcast (scalar, per row of the
/// left operand when `row_wise`, per column of the right one, or N-D).
pub fn sub_zero_point(x: &Tensor, zp: Option<&Tensor>, row_wise: bool) -> Result<Vec<i32>, String> {
    let xs: Vec<i32> = x.to_i64_vec().into_iter().map(|v| v as i32).collect();
    let Some(z) = zp else { return Ok(xs) };
    if z.dtype != x.dtype {
        return Err(format!(
            "zero point type {} differs from the operand type {}",
            z.dtype, x.dtype
        ));
    }
    let zs = z.to_i64_vec();
    if zs.len() == 1 {
        return Ok(xs.iter().map(|&v| v - zs[0] as i32).collect());
    }
    let zshape = if row_wise && x.rank() >= 2 {
        row_param_shape(z, x.rank(), x.shape[x.rank() - 2])
    } else {
        z.shape.clone()
    };
    if broadcast_shapes(&zshape, &x.shape)? != x.shape {
        return Err(format!(
            "zero point of shape {:?} does not broadcast to {:?}",
            z.shape, x.shape
        ));
    }
    let map = broadcast_index_map(&zshape, &x.shape);
    Ok(xs
        .iter()
        .zip(&map)
        .map(|(&v, &j)| v - zs[j] as i32)
        .collect())
}

fn check_8bit(name: &str, t: &Tensor) -> Result<(), String> {
    if is_8bit_int(t.dtype) {
        Ok(())
    } else {
        Err(format!("{name} must be int8 or uint8, got {}", t.dtype))
    }
}

/// numpy.matmul shape for the integer matmul ops.
fn infer_int_matmul(
    ctx: &InferCtx,
    a: usize,
    b: usize,
    dtype: DType,
) -> Result<TensorType, String> {
    let (a, b) = (ctx.input(a)?, ctx.input(b)?);
    for t in [a, b] {
        if !is_8bit_int(t.dtype()) {
            return Err(format!(
                "integer matmul operands must be int8 or uint8, got {}",
                t.dtype()
            ));
        }
    }
    Ok(TensorType::new(
        super::linalg::matmul_shape(&a.shape, &b.shape)?,
        dtype,
    ))
}

pub static MATMUL_INTEGER: OpDef = OpDef {
    mnemonic: "matmul_integer",
    summary: "Integer matmul (A - a_zero_point) @ (B - b_zero_point) with an i32 result",
    operands: &[req("a"), req("b"), opt("a_zero_point"), opt("b_zero_point")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| Ok(vec![infer_int_matmul(ctx, 0, 1, DType::I32)?]),
    eval: Some(|ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        check_8bit("A", a)?;
        check_8bit("B", b)?;
        let av = sub_zero_point(a, ctx.opt_input(2), true)?;
        let bv = sub_zero_point(b, ctx.opt_input(3), false)?;
        let (v, shape) = matmul_i32(&av, &a.shape, &bv, &b.shape)?;
        Ok(vec![Tensor::new(
            DType::I32,
            shape,
            crate::tensor::Data::I32(v),
        )?])
    }),
};

/// Requantizes i32 accumulators: `saturate(round_half_even(acc * multiplier) + zp)`,
/// with the product in f64 as in the ONNX reference.
fn requantize(acc: i32, multiplier: f64, zp: f64, out: DType) -> Result<i64, String> {
    saturate_int(out, (acc as f64 * multiplier).round_ties_even() + zp)
}

pub static QLINEAR_MATMUL: OpDef = OpDef {
    mnemonic: "qlinear_matmul",
    summary: "Quantized matmul: integer product of (a - a_zp) and (b - b_zp) requantized to y_scale, y_zp",
    operands: &[
        req("a"),
        req("a_scale"),
        req("a_zero_point"),
        req("b"),
        req("b_scale"),
        req("b_zero_point"),
        req("y_scale"),
        req("y_zero_point"),
    ],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| Ok(vec![infer_int_matmul(ctx, 0, 3, ctx.input(7)?.dtype())?]),
    eval: Some(|ctx| {
        let (a, a_s, a_zp) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        let (b, b_s, b_zp) = (ctx.input(3)?, ctx.input(4)?, ctx.input(5)?);
        let (y_s, y_zp) = (ctx.input(6)?, ctx.input(7)?);
        for (n, t) in [("a", a), ("b", b), ("y_zero_point", y_zp)] {
            if !is_8bit_int(t.dtype) {
                return Err(format!("qlinear_matmul: {n} must be int8 or uint8 (float8 forms are not supported), got {}", t.dtype));
            }
        }
        let av = sub_zero_point(a, Some(a_zp), true)?;
        let bv = sub_zero_point(b, Some(b_zp), false)?;
        let (acc, shape) = matmul_i32(&av, &a.shape, &bv, &b.shape)?;
        let m = if a.rank() >= 2 { a.shape[a.rank() - 2] } else { 1 };
        // Each parameter broadcast over the result; the multiplier is
        // a_scale * b_scale / y_scale rounded in the scales' type per step.
        let param = |t: &Tensor, row: bool| -> Result<(Vec<f64>, Vec<usize>), String> {
            let sh = if row { row_param_shape(t, a.rank(), m) } else { t.shape.clone() };
            if broadcast_shapes(&sh, &shape)? != shape {
                return Err(format!("parameter of shape {:?} does not broadcast to the result {shape:?}", t.shape));
            }
            Ok((t.to_f64_vec(), broadcast_index_map(&sh, &shape)))
        };
        let st = promote_float(promote_float(a_s.dtype, b_s.dtype), y_s.dtype);
        let (asv, ami) = param(a_s, true)?;
        let (bsv, bmi) = param(b_s, false)?;
        let (ysv, ymi) = param(y_s, false)?;
        let (yzv, yzi) = param(y_zp, false)?;
        let out = y_zp.dtype;
        let v = (0..acc.len())
            .map(|i| {
                let mult = round_to(st, round_to(st, asv[ami[i]] * bsv[bmi[i]]) / ysv[ymi[i]]);
                requantize(acc[i], mult, yzv[yzi[i]], out)
            })
            .collect::<Result<Vec<i64>, String>>()?;
        Ok(vec![Tensor::from_i64(out, shape, &v)])
    }),
};

// ---------------------------------------------------------------------------
// Integer convolution
// ---------------------------------------------------------------------------

/// Resolved spatial geometry of a convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGeometry {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub out: Vec<usize>,
}

/// Per-spatial-dim attributes of a conv op with their ONNX defaults.
struct ConvAttrs {
    kernel: Option<Vec<i64>>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    pads: Vec<i64>,
    auto_pad: String,
    group: i64,
}

// Not nn::conv::Window::from_attrs: this rejects empty lists and keeps contrib's error texts.
fn conv_attrs(ctx: &dyn AttrAccess, nspatial: usize) -> Result<ConvAttrs, String> {
    let list = |name: &str, default: i64, len: usize| -> Result<Vec<i64>, String> {
        if !ctx.has_attr(name) {
            return Ok(vec![default; len]);
        }
        let v = ctx.ints(name)?;
        if v.len() != len {
            return Err(format!(
                "attribute '{name}' has {} values, expected {len}",
                v.len()
            ));
        }
        Ok(v)
    };
    let kernel = if ctx.has_attr("kernel_shape") {
        Some(list("kernel_shape", 1, nspatial)?)
    } else {
        None
    };
    let strides = list("strides", 1, nspatial)?;
    let dilations = list("dilations", 1, nspatial)?;
    let pads = list("pads", 0, 2 * nspatial)?;
    if strides.iter().chain(&dilations).any(|&v| v < 1) || pads.iter().any(|&p| p < 0) {
        return Err("strides and dilations must be >= 1 and pads >= 0".into());
    }
    let auto_pad = ctx.string("auto_pad")?;
    if !matches!(
        auto_pad.as_str(),
        "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER"
    ) {
        return Err(format!("unknown auto_pad '{auto_pad}'"));
    }
    let group = ctx.int("group")?;
    if group < 1 {
        return Err(format!("group must be >= 1, got {group}"));
    }
    Ok(ConvAttrs {
        kernel,
        strides,
        dilations,
        pads,
        auto_pad,
        group,
    })
}

/// One output spatial dim, symbolic when the input dim is and the stride
/// keeps it a polynomial.
fn conv_out_dim(input: &Dim, k: i64, s: i64, d: i64, pad_sum: i64, auto_pad: &str) -> Dim {
    let ek = (k - 1) * d + 1;
    let same = auto_pad.starts_with("SAME");
    let pad_sum = if auto_pad == "NOTSET" { pad_sum } else { 0 };
    match input.as_fixed() {
        Some(n) if same => Dim::fixed((n + s - 1) / s),
        Some(n) => Dim::fixed((n + pad_sum - ek).div_euclid(s) + 1),
        None if s == 1 && same => input.clone(),
        None if s == 1 => input.add(&Dim::fixed(pad_sum - ek + 1)),
        None => Dim::Unknown,
    }
}

/// Output geometry with ONNX auto_pad rules (SAME_UPPER puts the extra pad at
/// the end, SAME_LOWER at the beginning).
fn conv_geometry(input: &[usize], kernel: &[usize], a: &ConvAttrs) -> Result<ConvGeometry, String> {
    let n = input.len();
    let mut g = ConvGeometry {
        kernel: kernel.to_vec(),
        strides: a.strides.iter().map(|&v| v as usize).collect(),
        dilations: a.dilations.iter().map(|&v| v as usize).collect(),
        pads_begin: vec![0; n],
        out: vec![0; n],
    };
    for i in 0..n {
        let (inp, s, ek) = (
            input[i] as i64,
            a.strides[i],
            (kernel[i] as i64 - 1) * a.dilations[i] + 1,
        );
        let (pb, out) = match a.auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let out = (inp + s - 1) / s;
                let total = ((out - 1) * s + ek - inp).max(0);
                let pb = if a.auto_pad == "SAME_UPPER" {
                    total / 2
                } else {
                    total - total / 2
                };
                (pb, out)
            }
            "VALID" => (0, (inp - ek).div_euclid(s) + 1),
            _ => (
                a.pads[i],
                (inp + a.pads[i] + a.pads[i + n] - ek).div_euclid(s) + 1,
            ),
        };
        if out < 0 {
            return Err(format!(
                "kernel of extent {ek} does not fit spatial dim {inp}"
            ));
        }
        g.pads_begin[i] = pb as usize;
        g.out[i] = out as usize;
    }
    Ok(g)
}

/// Integer convolution (NC[spatial] layout, grouped) over operands that had
/// their zero points subtracted, so padding contributes 0. Returns the i32
/// accumulators (wrapping) of shape [N, M, out...]; `bias` (length M) is added.
pub fn conv_i32(
    x: &[i32],
    x_shape: &[usize],
    w: &[i32],
    w_shape: &[usize],
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    group: usize,
) -> Result<(Vec<i32>, Vec<usize>), String> {
    let (n, c) = (x_shape[0], x_shape[1]);
    let m = w_shape[0];
    let cg = w_shape[1];
    if group == 0 || c != cg * group || !m.is_multiple_of(group) {
        return Err(format!(
            "channels do not match: input {c}, weight {w_shape:?}, group {group}"
        ));
    }
    let mg = m / group;
    let in_sp = &x_shape[2..];
    let nsp = in_sp.len();
    let ksize: usize = g.kernel.iter().product();
    let osize: usize = g.out.iter().product();
    let isize: usize = in_sp.iter().product();
    let rows = cg * ksize;
    let mut out = vec![0i32; n * m * osize];
    let mut col = vec![0i32; rows * osize];
    let mut kidx = vec![0usize; nsp];
    let mut oidx = vec![0usize; nsp];
    for b in 0..n {
        for gi in 0..group {
            // im2col: row (channel, kernel offset), column output position. Not nn::conv's
            // window taps: ConvGeometry (shared with contrib) validates attributes differently.
            for ci in 0..cg {
                let xbase = (b * c + gi * cg + ci) * isize;
                for kf in 0..ksize {
                    unravel(kf, &g.kernel, &mut kidx);
                    let row = &mut col[(ci * ksize + kf) * osize..(ci * ksize + kf + 1) * osize];
                    for (of, slot) in row.iter_mut().enumerate() {
                        unravel(of, &g.out, &mut oidx);
                        let mut off = 0usize;
                        let mut inside = true;
                        for d in 0..nsp {
                            let pos = (oidx[d] * g.strides[d] + kidx[d] * g.dilations[d]) as i64
                                - g.pads_begin[d] as i64;
                            if pos < 0 || pos >= in_sp[d] as i64 {
                                inside = false;
                                break;
                            }
                            off = off * in_sp[d] + pos as usize;
                        }
                        *slot = if inside { x[xbase + off] } else { 0 };
                    }
                }
            }
            for mi in 0..mg {
                let oc = gi * mg + mi;
                let wrow = &w[oc * rows..(oc + 1) * rows];
                let orow = &mut out[(b * m + oc) * osize..(b * m + oc + 1) * osize];
                if let Some(bv) = bias {
                    orow.fill(bv[oc]);
                }
                for (r, &wv) in wrow.iter().enumerate() {
                    if wv == 0 {
                        continue;
                    }
                    for (o, &cv) in orow.iter_mut().zip(&col[r * osize..(r + 1) * osize]) {
                        *o = o.wrapping_add(wv.wrapping_mul(cv));
                    }
                }
            }
        }
    }
    let mut shape = vec![n, m];
    shape.extend(&g.out);
    Ok((out, shape))
}

/// Result type of ConvInteger / QLinearConv: [N, M, out...].
fn infer_conv(ctx: &InferCtx, x: usize, w: usize, dtype: DType) -> Result<TensorType, String> {
    let (xt, wt) = (ctx.input(x)?, ctx.input(w)?);
    if xt.rank() < 3 || wt.rank() != xt.rank() {
        return Err(format!(
            "conv input must have rank >= 3 and the weight the same rank, got {} and {}",
            xt.rank(),
            wt.rank()
        ));
    }
    let nsp = xt.rank() - 2;
    let a = conv_attrs(ctx, nsp)?;
    let kernel: Vec<Option<i64>> = match &a.kernel {
        Some(k) => k.iter().map(|&v| Some(v)).collect(),
        None => wt.shape[2..].iter().map(Dim::as_fixed).collect(),
    };
    let mut shape = vec![xt.shape[0].clone(), wt.shape[0].clone()];
    for (i, k) in kernel.iter().enumerate() {
        shape.push(match *k {
            Some(k) => conv_out_dim(
                &xt.shape[2 + i],
                k,
                a.strides[i],
                a.dilations[i],
                a.pads[i] + a.pads[i + nsp],
                &a.auto_pad,
            ),
            None => Dim::Unknown,
        });
    }
    Ok(TensorType::new(shape, dtype))
}

/// Runs the integer convolution of a ConvInteger / QLinearConv op.
fn eval_conv_core(
    ctx: &EvalCtx,
    x: &Tensor,
    x_zp: Option<&Tensor>,
    w: &Tensor,
    w_zp: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<(Vec<i32>, Vec<usize>), String> {
    check_8bit("x", x)?;
    check_8bit("w", w)?;
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(format!(
            "conv input must have rank >= 3 and the weight the same rank, got {:?} and {:?}",
            x.shape, w.shape
        ));
    }
    let nsp = x.rank() - 2;
    let a = conv_attrs(ctx, nsp)?;
    let kernel = &w.shape[2..];
    if let Some(k) = &a.kernel {
        if k.iter().zip(kernel).any(|(&a, &b)| a as usize != b) {
            return Err(format!(
                "kernel_shape {k:?} differs from the weight shape {:?}",
                w.shape
            ));
        }
    }
    if x_zp.is_some_and(|z| z.len() != 1) {
        return Err("the input zero point must be a scalar".into());
    }
    let xv = sub_zero_point(x, x_zp, false)?;
    // The weight zero point is a scalar or one per output channel.
    let wv = match w_zp {
        Some(z) if z.len() != 1 => {
            if z.rank() != 1 || z.len() != w.shape[0] {
                return Err(format!(
                    "weight zero point must be a scalar or have {} values, got {:?}",
                    w.shape[0], z.shape
                ));
            }
            if z.dtype != w.dtype {
                return Err(format!(
                    "zero point type {} differs from the weight type {}",
                    z.dtype, w.dtype
                ));
            }
            let per = w.len() / w.shape[0].max(1);
            let zs = z.to_i64_vec();
            w.to_i64_vec()
                .iter()
                .enumerate()
                .map(|(i, &v)| (v - zs[i / per]) as i32)
                .collect()
        }
        _ => sub_zero_point(w, w_zp, false)?,
    };
    let bv: Option<Vec<i32>> = match bias {
        Some(b) if b.dtype != DType::I32 || b.len() != w.shape[0] => {
            return Err(format!(
                "bias must be i32 of length {}, got {} {:?}",
                w.shape[0], b.dtype, b.shape
            ));
        }
        Some(b) => Some(b.to_i64_vec().into_iter().map(|v| v as i32).collect()),
        None => None,
    };
    let geom = conv_geometry(&x.shape[2..], kernel, &a)?;
    conv_i32(
        &xv,
        &x.shape,
        &wv,
        &w.shape,
        bv.as_deref(),
        &geom,
        a.group as usize,
    )
}

pub static CONV_INTEGER: OpDef = OpDef {
    mnemonic: "conv_integer",
    summary: "Integer convolution of (x - x_zero_point) and (w - w_zero_point) with an i32 result",
    operands: &[req("x"), req("w"), opt("x_zero_point"), opt("w_zero_point")],
    results: Results::Fixed(1),
    attrs: CONV_ATTRS,
    traits: &[],
    infer: |ctx| Ok(vec![infer_conv(ctx, 0, 1, DType::I32)?]),
    eval: Some(|ctx| {
        let (x, w) = (ctx.input(0)?, ctx.input(1)?);
        let (v, shape) = eval_conv_core(ctx, x, ctx.opt_input(2), w, ctx.opt_input(3), None)?;
        Ok(vec![Tensor::new(
            DType::I32,
            shape,
            crate::tensor::Data::I32(v),
        )?])
    }),
};

pub static QLINEAR_CONV: OpDef = OpDef {
    mnemonic: "qlinear_conv",
    summary: "Quantized convolution requantized to y_scale, y_zero_point (per-tensor or per-channel weights)",
    operands: &[
        req("x"),
        req("x_scale"),
        req("x_zero_point"),
        req("w"),
        req("w_scale"),
        req("w_zero_point"),
        req("y_scale"),
        req("y_zero_point"),
        opt("b"),
    ],
    results: Results::Fixed(1),
    attrs: CONV_ATTRS,
    traits: &[],
    infer: |ctx| Ok(vec![infer_conv(ctx, 0, 3, ctx.input(7)?.dtype())?]),
    eval: Some(|ctx| {
        let (x, x_s, x_zp) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        let (w, w_s, w_zp) = (ctx.input(3)?, ctx.input(4)?, ctx.input(5)?);
        let (y_s, y_zp) = (ctx.input(6)?, ctx.input(7)?);
        check_8bit("y_zero_point", y_zp)?;
        let (acc, shape) = eval_conv_core(ctx, x, Some(x_zp), w, Some(w_zp), ctx.opt_input(8))?;
        let m = shape[1];
        let ws = w_s.to_f64_vec();
        if ws.len() != 1 && ws.len() != m {
            return Err(format!("w_scale must be a scalar or have {m} values, got {}", ws.len()));
        }
        if x_s.len() != 1 || y_s.len() != 1 || y_zp.len() != 1 {
            return Err("x_scale, y_scale and y_zero_point must be scalars".into());
        }
        let (xs, ys, yz) = (x_s.get_f64(0), y_s.get_f64(0), y_zp.get_f64(0));
        let per_channel: usize = shape[2..].iter().product();
        // The f32 multiplier of the reference: x_scale * w_scale / y_scale.
        let mults: Vec<f64> = (0..m)
            .map(|c| round_to(DType::F32, round_to(DType::F32, xs * ws[if ws.len() == 1 { 0 } else { c }]) / ys))
            .collect();
        let out = y_zp.dtype;
        let v = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| requantize(a, mults[(i / per_channel.max(1)) % m], yz, out))
            .collect::<Result<Vec<i64>, String>>()?;
        Ok(vec![Tensor::from_i64(out, shape, &v)])
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attrs;
    use crate::ops::testing::eval_with;
    use crate::tensor::Data;

    fn run(
        def: &'static OpDef,
        inputs: &[Option<&Tensor>],
        attrs: Attrs,
        n: usize,
    ) -> Result<Vec<Tensor>, String> {
        eval_with(def, &attrs, inputs, n)
    }

    fn u8t(shape: Vec<usize>, v: Vec<u8>) -> Tensor {
        Tensor::new(DType::U8, shape, Data::U8(v)).unwrap()
    }
    fn i8t(shape: Vec<usize>, v: Vec<i8>) -> Tensor {
        Tensor::new(DType::I8, shape, Data::I8(v)).unwrap()
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        // numpy: clip(rint(x / 2) + 128, 0, 255)
        let x = Tensor::f32(vec![6], vec![0.0, 1.0, 3.0, 5.0, -300.0, 1000.0]);
        let s = Tensor::f32(vec![], vec![2.0]);
        let zp = u8t(vec![], vec![128]);
        let y = run(
            &QUANTIZE_LINEAR,
            &[Some(&x), Some(&s), Some(&zp)],
            Attrs::new(),
            1,
        )
        .unwrap();
        assert_eq!(y[0].to_i64_vec(), vec![128, 128, 130, 130, 0, 255]);
        // No zero point: u8 with zero point 0.
        let y = run(
            &QUANTIZE_LINEAR,
            &[Some(&x), Some(&s), None],
            Attrs::new(),
            1,
        )
        .unwrap();
        assert_eq!(y[0].dtype, DType::U8);
        assert_eq!(y[0].to_i64_vec(), vec![0, 0, 2, 2, 0, 255]);
    }

    #[test]
    fn quantize_blocked_int4() {
        // x [2, 4] blocked along axis 1 with block 2: scales [2, 2].
        let x = Tensor::f32(vec![2, 4], vec![1.0, 2.0, 3.0, 40.0, -1.0, -2.0, 6.0, 9.0]);
        let s = Tensor::f32(vec![2, 2], vec![1.0, 4.0, 0.5, 3.0]);
        let zp = Tensor::from_i64(DType::I4, vec![2, 2], &[0, 1, 0, -1]);
        let mut a = Attrs::new();
        a.insert("block_size".into(), Attr::Int(2));
        let y = run(&QUANTIZE_LINEAR, &[Some(&x), Some(&s), Some(&zp)], a, 1).unwrap();
        // [1, 2 | rint(0.75)+1=2, rint(10)+1 -> 7] [-2, -4 | rint(2)-1=1, rint(3)-1=2]
        assert_eq!(y[0].to_i64_vec(), vec![1, 2, 2, 7, -2, -4, 1, 2]);
    }

    #[test]
    fn dequantize_per_axis_and_fp8() {
        let x = i8t(vec![2, 2], vec![10, -10, 4, 0]);
        let s = Tensor::f32(vec![2], vec![0.5, 2.0]);
        let zp = i8t(vec![2], vec![2, -1]);
        let mut a = Attrs::new();
        a.insert("axis".into(), Attr::Int(0));
        let y = run(&DEQUANTIZE_LINEAR, &[Some(&x), Some(&s), Some(&zp)], a, 1).unwrap();
        assert_eq!(y[0].to_f64_vec(), vec![4.0, -6.0, 10.0, 2.0]);
        // e4m3 code 0x38 = 1.0, 0xC0 = -2.0
        let x8 = Tensor::new(DType::F8E4M3FN, vec![2], Data::U8(vec![0x38, 0xC0])).unwrap();
        let s = Tensor::f32(vec![], vec![3.0]);
        let y = run(
            &DEQUANTIZE_LINEAR,
            &[Some(&x8), Some(&s), None],
            Attrs::new(),
            1,
        )
        .unwrap();
        assert_eq!(y[0].to_f64_vec(), vec![3.0, -6.0]);
    }

    #[test]
    fn dynamic_quantize_matches_onnx_example() {
        // The ONNX doc example: x = [0, 2, -3, -2.5, 1.34, 0.5]
        // -> scale 5/255 = 0.019607844, zp 153, y [153, 255, 0, 26, 221, 179].
        let x = Tensor::f32(vec![6], vec![0.0, 2.0, -3.0, -2.5, 1.34, 0.5]);
        let r = run(&DYNAMIC_QUANTIZE_LINEAR, &[Some(&x)], Attrs::new(), 3).unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![153, 255, 0, 26, 221, 179]);
        assert_eq!(r[1].to_f32_vec(), vec![0.019607844]);
        assert_eq!(r[2].to_i64_vec(), vec![153]);
    }

    #[test]
    fn matmul_integer_with_zero_points() {
        // (A - 1) @ (B - (-1)) with A [2,2] u8, B [2,2] i8.
        let a = u8t(vec![2, 2], vec![1, 2, 3, 4]);
        let b = i8t(vec![2, 2], vec![0, 1, -1, 2]);
        let azp = u8t(vec![], vec![1]);
        let bzp = i8t(vec![], vec![-1]);
        let y = run(
            &MATMUL_INTEGER,
            &[Some(&a), Some(&b), Some(&azp), Some(&bzp)],
            Attrs::new(),
            1,
        )
        .unwrap();
        // A' = [[0,1],[2,3]], B' = [[1,2],[0,3]] -> [[0,3],[2,13]]
        assert_eq!(y[0].dtype, DType::I32);
        assert_eq!(y[0].to_i64_vec(), vec![0, 3, 2, 13]);
        // Per-row zero point of A: [1, 3] -> A' = [[0,1],[0,1]]
        let azp = u8t(vec![2], vec![1, 3]);
        let y = run(
            &MATMUL_INTEGER,
            &[Some(&a), Some(&b), Some(&azp), Some(&bzp)],
            Attrs::new(),
            1,
        )
        .unwrap();
        assert_eq!(y[0].to_i64_vec(), vec![0, 3, 0, 3]);
    }

    #[test]
    fn qlinear_matmul_requantizes() {
        let a = u8t(vec![1, 2], vec![10, 20]);
        let b = u8t(vec![2, 1], vec![3, 5]);
        let (sa, sb, sy) = (
            Tensor::f32(vec![], vec![0.5]),
            Tensor::f32(vec![], vec![1.0]),
            Tensor::f32(vec![], vec![4.0]),
        );
        let zero = u8t(vec![], vec![0]);
        let yz = u8t(vec![], vec![1]);
        let ins = [
            Some(&a),
            Some(&sa),
            Some(&zero),
            Some(&b),
            Some(&sb),
            Some(&zero),
            Some(&sy),
            Some(&yz),
        ];
        let y = run(&QLINEAR_MATMUL, &ins, Attrs::new(), 1).unwrap();
        // acc = 130, * 0.125 = 16.25 -> 16 + 1
        assert_eq!(y[0].to_i64_vec(), vec![17]);
    }

    #[test]
    fn conv_integer_padding() {
        // The ONNX test_convinteger_with_padding example: x = 2..10 (3x3),
        // x_zp 1, w all ones (2x2), pads 1 -> 4x4 sums of the 2x2 windows.
        let x = u8t(vec![1, 1, 3, 3], (2..11).collect());
        let w = u8t(vec![1, 1, 2, 2], vec![1; 4]);
        let zp = u8t(vec![], vec![1]);
        let mut a = Attrs::new();
        a.insert("pads".into(), Attr::Ints(vec![1, 1, 1, 1]));
        let y = run(&CONV_INTEGER, &[Some(&x), Some(&w), Some(&zp), None], a, 1).unwrap();
        assert_eq!(y[0].shape, vec![1, 1, 4, 4]);
        assert_eq!(
            y[0].to_i64_vec(),
            vec![1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9]
        );
    }

    #[test]
    fn conv_shape_stays_symbolic() {
        let x = TensorType::new(
            vec![Dim::sym("n"), Dim::fixed(1), Dim::sym("h"), Dim::fixed(8)],
            DType::U8,
        );
        let w = TensorType::fixed(&[4, 1, 3, 3], DType::U8);
        let attrs = Attrs::new();
        let ctx = InferCtx {
            def: &CONV_INTEGER,
            attrs: &attrs,
            operands: vec![Some(&x), Some(&w)],
            consts: vec![],
            syms: Vec::new(),
            num_results: 1,
        };
        let t = (CONV_INTEGER.infer)(&ctx).unwrap();
        assert_eq!(t[0].to_string(), "tensor<[n]x4x[h-2]x6xi32>");
    }

    #[test]
    fn bad_scale_shape_is_an_error() {
        let x = Tensor::f32(vec![2, 3], vec![0.0; 6]);
        let s = Tensor::f32(vec![2], vec![1.0, 1.0]);
        assert!(run(
            &QUANTIZE_LINEAR,
            &[Some(&x), Some(&s), None],
            Attrs::new(),
            1
        )
        .is_err());
    }
}
