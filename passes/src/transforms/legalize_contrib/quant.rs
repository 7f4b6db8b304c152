//! The com.microsoft quantized ops: QuantizeLinear / DequantizeLinear (the
//! core ops), QLinearAdd / QLinearMul / QLinearSoftmax (dequantize, compute,
//! requantize), DynamicQuantizeMatMul and MatMulIntegerToFloat (the core
//! integer matmul, then the scales). Each follows the arithmetic of the
//! contrib kernel: the same precision and the same order of operations.

use super::rewriter::{attrs, Rewriter};
use tessera_ir::{Attr, DType, OpKind, Tensor, ValueId};

/// The core op of the same name: same operands, same axis.
fn core_qdq(rw: &mut Rewriter, kind: OpKind) -> Result<Vec<ValueId>, String> {
    let ops: Vec<Option<ValueId>> = (0..3).map(|i| rw.opt(i)).collect();
    let axis = rw.int("axis")?;
    rw.emit_n(kind, &ops, attrs(&[("axis", Attr::Int(axis))]), 1)
}

pub fn quantize_linear(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    core_qdq(rw, OpKind::QuantizeLinear)
}

pub fn dequantize_linear(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    core_qdq(rw, OpKind::DequantizeLinear)
}

fn check_8bit(rw: &Rewriter, v: ValueId, what: &str) -> Result<DType, String> {
    match rw.dtype(v) {
        d @ (DType::U8 | DType::I8) => Ok(d),
        d => Err(format!("{what} must be u8 or i8, got {d}")),
    }
}

/// A per-tensor zero point of type `dt` (or none).
fn zero_point(
    rw: &mut Rewriter,
    i: usize,
    what: &str,
    dt: DType,
) -> Result<Option<ValueId>, String> {
    let Some(z) = rw.opt(i) else { return Ok(None) };
    if rw.dtype(z) != dt {
        return Err(format!("{what} must be {dt}, got {}", rw.dtype(z)));
    }
    rw.as_scalar(z, what, dt).map(Some)
}

/// `x - zero_point` as exact f32 values (8-bit codes are small integers).
fn centered(rw: &mut Rewriter, x: ValueId, zp: Option<ValueId>) -> Result<ValueId, String> {
    let one = rw.scalar(DType::F32, 1.0);
    let mut ops = vec![Some(x), Some(one)];
    ops.extend(zp.map(Some));
    Ok(rw.emit_n(OpKind::DequantizeLinear, &ops, Default::default(), 1)?[0])
}

/// `saturate(round_half_even(y) + zp)` in the type `dt`.
fn requantize(
    rw: &mut Rewriter,
    y: ValueId,
    zp: Option<ValueId>,
    dt: DType,
) -> Result<ValueId, String> {
    let one = rw.scalar(DType::F32, 1.0);
    // Without a zero point the core op would produce u8.
    let zp = match zp {
        Some(z) => z,
        None => rw.tensor(Tensor::from_i64(dt, vec![], &[0])),
    };
    rw.emit(OpKind::QuantizeLinear, &[y, one, zp], Default::default())
}

/// The operands of QLinearAdd / QLinearMul: centered a and b, their scales
/// and the output's scale (f32 scalars), the output zero point and type.
struct QBinary {
    a: ValueId,
    b: ValueId,
    sa: ValueId,
    sb: ValueId,
    sc: ValueId,
    zc: Option<ValueId>,
    dt: DType,
}

fn qbinary(rw: &mut Rewriter) -> Result<QBinary, String> {
    let (a, b) = (rw.req(0, "A")?, rw.req(3, "B")?);
    let dt = check_8bit(rw, a, "A")?;
    if check_8bit(rw, b, "B")? != dt {
        return Err(format!("operand types differ: {dt} vs {}", rw.dtype(b)));
    }
    let za = zero_point(rw, 2, "A_zero_point", dt)?;
    let zb = zero_point(rw, 5, "B_zero_point", dt)?;
    let zc = zero_point(rw, 7, "C_zero_point", dt)?;
    let mut scale = |i: usize, what: &str| -> Result<ValueId, String> {
        let s = rw.req(i, what)?;
        rw.as_scalar(s, what, DType::F32)
    };
    let (sa, sb, sc) = (
        scale(1, "A_scale")?,
        scale(4, "B_scale")?,
        scale(6, "C_scale")?,
    );
    Ok(QBinary {
        a: centered(rw, a, za)?,
        b: centered(rw, b, zb)?,
        sa,
        sb,
        sc,
        zc,
        dt,
    })
}

/// `a * (sa / sc) + b * (sb / sc)` in f32.
pub fn qlinear_add(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let q = qbinary(rw)?;
    let ra = rw.bin(OpKind::Div, q.sa, q.sc)?;
    let rb = rw.bin(OpKind::Div, q.sb, q.sc)?;
    let ya = rw.bin(OpKind::Mul, q.a, ra)?;
    let yb = rw.bin(OpKind::Mul, q.b, rb)?;
    let y = rw.bin(OpKind::Add, ya, yb)?;
    Ok(vec![requantize(rw, y, q.zc, q.dt)?])
}

/// `a * b * (sa * sb / sc)` in f32.
pub fn qlinear_mul(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let q = qbinary(rw)?;
    let sab = rw.bin(OpKind::Mul, q.sa, q.sb)?;
    let r = rw.bin(OpKind::Div, sab, q.sc)?;
    let ab = rw.bin(OpKind::Mul, q.a, q.b)?;
    let y = rw.bin(OpKind::Mul, ab, r)?;
    Ok(vec![requantize(rw, y, q.zc, q.dt)?])
}

/// Softmax of the dequantized input in f64 (as the contrib kernel), the
/// probabilities divided by the output scale, rounded to f32, requantized.
pub fn qlinear_softmax(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let x = rw.req(0, "X")?;
    let dt = check_8bit(rw, x, "X")?;
    let zx = zero_point(rw, 2, "X_zero_point", dt)?;
    let y_zp = rw.req(4, "Y_zero_point")?;
    let ydt = check_8bit(rw, y_zp, "Y_zero_point")?;
    let zy = rw.as_scalar(y_zp, "Y_zero_point", ydt)?;
    let sx = rw.req(1, "X_scale")?;
    let sx = rw.as_scalar(sx, "X_scale", DType::F32)?;
    let sx = rw.cast(sx, DType::F64)?;
    let sy = rw.req(3, "Y_scale")?;
    let sy = rw.as_scalar(sy, "Y_scale", DType::F64)?;

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
    let c = centered(rw, x, zx)?;
    let c = rw.cast(c, DType::F64)?;
    let v = rw.bin(OpKind::Mul, c, sx)?;
    let p = if rw.int("opset")? < 13 {
        // Before opset 13 the softmax runs over all the dims from axis on.
        let outer: usize = xs[..axis as usize].iter().product();
        let inner: usize = xs[axis as usize..].iter().product();
        let flat = rw.reshape(v, &[outer, inner])?;
        let p = rw.emit(OpKind::Softmax, &[flat], attrs(&[("axis", Attr::Int(1))]))?;
        rw.reshape(p, &xs)?
    } else {
        rw.emit(OpKind::Softmax, &[v], attrs(&[("axis", Attr::Int(axis))]))?
    };
    let q = rw.bin(OpKind::Div, p, sy)?;
    let q = rw.cast(q, DType::F32)?;
    Ok(vec![requantize(rw, q, Some(zy), ydt)?])
}

/// `acc * (a_scale * b_scale) + bias` in f32, the scales multiplied first
/// as the contrib kernels do; the result cast to `out`.
fn scale_accumulators(
    rw: &mut Rewriter,
    acc: ValueId,
    a_scale: ValueId,
    b_scale: ValueId,
    bias: Option<ValueId>,
    out: DType,
) -> Result<ValueId, String> {
    let n = *rw
        .shape(acc)?
        .last()
        .ok_or("the product must have rank >= 1")?;
    let bs = rw.shape(b_scale)?;
    let bn: usize = bs.iter().product();
    if bn != 1 && bn != n {
        return Err(format!(
            "b_scale must be a scalar or have {n} values, got {bs:?}"
        ));
    }
    let b_scale = rw.cast(b_scale, DType::F32)?;
    let scale_shape: &[usize] = if bn == 1 { &[] } else { &[n] };
    let b_scale = rw.reshape(b_scale, scale_shape)?;
    let s = rw.bin(OpKind::Mul, a_scale, b_scale)?;
    let accf = rw.cast(acc, DType::F32)?;
    let mut y = rw.bin(OpKind::Mul, accf, s)?;
    if let Some(b) = bias {
        let bsh = rw.shape(b)?;
        if bsh.iter().product::<usize>() != n {
            return Err(format!("bias must have {n} elements, got shape {bsh:?}"));
        }
        let b = rw.cast(b, DType::F32)?;
        let b = rw.reshape(b, &[n])?;
        y = rw.bin(OpKind::Add, y, b)?;
    }
    rw.cast(y, out)
}

pub fn dynamic_quantize_matmul(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let (a, b) = (rw.req(0, "A")?, rw.req(1, "B")?);
    if rw.dtype(a) != DType::F32 {
        return Err(format!("A must be f32, got {}", rw.dtype(a)));
    }
    check_8bit(rw, b, "B")?;
    let q = rw.emit_n(
        OpKind::DynamicQuantizeLinear,
        &[Some(a)],
        Default::default(),
        3,
    )?;
    let acc = rw.emit_n(
        OpKind::MatMulInteger,
        &[Some(q[0]), Some(b), Some(q[2]), rw.opt(3)],
        Default::default(),
        1,
    )?[0];
    let bs = rw.req(2, "b_scale")?;
    let y = scale_accumulators(rw, acc, q[1], bs, rw.opt(4), DType::F32)?;
    Ok(vec![y])
}

pub fn matmul_integer_to_float(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let (a, b) = (rw.req(0, "A")?, rw.req(1, "B")?);
    check_8bit(rw, a, "A")?;
    check_8bit(rw, b, "B")?;
    let a_scale = rw.req(2, "a_scale")?;
    let out = rw.dtype(a_scale);
    if !out.is_float() {
        return Err(format!("a_scale must be a float tensor, got {out}"));
    }
    let sa = rw.as_scalar(a_scale, "a_scale", DType::F32)?;
    let acc = rw.emit_n(
        OpKind::MatMulInteger,
        &[Some(a), Some(b), rw.opt(4), rw.opt(5)],
        Default::default(),
        1,
    )?[0];
    let bs = rw.req(3, "b_scale")?;
    let y = scale_accumulators(rw, acc, sa, bs, rw.opt(6), out)?;
    Ok(vec![y])
}
