//! Elementwise ops: arithmetic, math functions and activations, comparisons,
//! logic and bitwise ops, selection, clipping and casts. Every op is one
//! broadcasting `linalg.generic` (see [`super::generic::elementwise`]) whose
//! scalar body is written here.
//!
//! Numerics follow the reference (`ir/src/ops/elementwise.rs`): f16/bf16 are
//! computed in f32 and rounded once; f32 and f64 compute natively (within the
//! reference's tolerance: it computes in f64); integers wrap in two's
//! complement. Transcendental functions use the `math` dialect; those without
//! an LLVM intrinsic (erf, tanh, tan, the inverse and hyperbolic functions)
//! become libm calls (`convert-math-to-libm` in the pipeline).
//!
//! Known divergence: integer division or remainder by zero is an error in the
//! reference, which a kernel cannot report; here it gives 0 (rather than the
//! hardware trap). `MIN / -1` wraps to MIN as in the reference.

use super::generic::{elementwise, Region};
use super::LowerFn;
use crate::emit::kernel::{Buf, KernelCtx};
use tessera_ir::{AttrAccess, DType};

// ---------------------------------------------------------------------------
// Scalar building blocks

/// A float literal of compute type `t` (`f32`/`f64`), as its exact bit pattern.
pub fn fconst(r: &mut Region, v: f64, t: &str) -> String {
    // Only compute types reach here: f64, or f32 for every other float.
    let lit = match t {
        "f64" => format!("0x{:016X}", v.to_bits()),
        _ => format!("0x{:08X}", (v as f32).to_bits()),
    };
    r.op(format!("arith.constant {lit} : {t}"))
}

/// An integer literal of MLIR type `t` (`i1` takes 0/1).
pub fn iconst(r: &mut Region, v: i64, t: &str) -> String {
    if t == "i1" {
        return r.op(format!("arith.constant {}", v & 1 != 0));
    }
    r.op(format!("arith.constant {v} : {t}"))
}

fn arith2(r: &mut Region, op: &str, a: &str, b: &str, t: &str) -> String {
    r.op(format!("arith.{op} {a}, {b} : {t}"))
}

fn math1(r: &mut Region, op: &str, x: &str, t: &str) -> String {
    r.op(format!("math.{op} {x} : {t}"))
}

fn cmpf(r: &mut Region, pred: &str, a: &str, b: &str, t: &str) -> String {
    r.op(format!("arith.cmpf {pred}, {a}, {b} : {t}"))
}

fn cmpi(r: &mut Region, pred: &str, a: &str, b: &str, t: &str) -> String {
    r.op(format!("arith.cmpi {pred}, {a}, {b} : {t}"))
}

fn select(r: &mut Region, c: &str, a: &str, b: &str, t: &str) -> String {
    r.op(format!("arith.select {c}, {a}, {b} : {t}"))
}

/// The float type a float element type computes in: f64 for f64, else f32.
pub fn compute_type(d: DType) -> &'static str {
    if d == DType::F64 {
        "f64"
    } else {
        "f32"
    }
}

/// `x` of float element type `d`, in [`compute_type`] (exact).
pub fn widen(r: &mut Region, x: &str, d: DType) -> String {
    match d {
        DType::F16 => r.op(format!("arith.extf {x} : f16 to f32")),
        // bf16 is the top half of an f32: a shift, with no libcall on targets
        // without native bf16.
        DType::BF16 => {
            let b = r.op(format!("arith.bitcast {x} : bf16 to i16"));
            let w = r.op(format!("arith.extui {b} : i16 to i32"));
            let s = iconst(r, 16, "i32");
            let h = arith2(r, "shli", &w, &s, "i32");
            r.op(format!("arith.bitcast {h} : i32 to f32"))
        }
        _ => x.to_string(),
    }
}

/// `y` of the compute type of `d` rounded once (to nearest even) to `d`.
pub fn narrow(r: &mut Region, y: &str, d: DType) -> String {
    match d {
        DType::F16 => r.op(format!("arith.truncf {y} : f32 to f16")),
        DType::BF16 => f32_to_bf16(r, y),
        _ => y.to_string(),
    }
}

/// f32 → bf16, nearest even, NaN kept quiet (as `half::bf16::from_f32`), in
/// integer ops so that no target needs a bf16 libcall.
fn f32_to_bf16(r: &mut Region, y: &str) -> String {
    let b = r.op(format!("arith.bitcast {y} : f32 to i32"));
    let c16 = iconst(r, 16, "i32");
    let one = iconst(r, 1, "i32");
    let hi = arith2(r, "shrui", &b, &c16, "i32");
    let lsb = arith2(r, "andi", &hi, &one, "i32");
    let half = iconst(r, 0x7FFF, "i32");
    let bias = arith2(r, "addi", &lsb, &half, "i32");
    let rb = arith2(r, "addi", &b, &bias, "i32");
    let rounded = arith2(r, "shrui", &rb, &c16, "i32");
    let quiet = iconst(r, 0x40, "i32");
    let nan_bits = arith2(r, "ori", &hi, &quiet, "i32");
    let is_nan = cmpf(r, "uno", y, y, "f32");
    let h = select(r, &is_nan, &nan_bits, &rounded, "i32");
    let h16 = r.op(format!("arith.trunci {h} : i32 to i16"));
    r.op(format!("arith.bitcast {h16} : i16 to bf16"))
}

/// f64 → f32 rounded to odd (truncate, then set the last bit when inexact):
/// a later rounding to a narrower type then rounds once, as the reference
/// does (`minifloat::f64_to_f32_odd`).
fn f64_to_f32_odd(r: &mut Region, x: &str) -> String {
    let t = r.op(format!("arith.truncf {x} : f64 to f32"));
    let back = r.op(format!("arith.extf {t} : f32 to f64"));
    let exact = cmpf(r, "ueq", &back, x, "f64");
    let tb = r.op(format!("arith.bitcast {t} : f32 to i32"));
    let (ab, ax) = (math1(r, "absf", &back, "f64"), math1(r, "absf", x, "f64"));
    let over = cmpf(r, "ogt", &ab, &ax, "f64");
    let one = iconst(r, 1, "i32");
    let dec = arith2(r, "subi", &tb, &one, "i32");
    let toward_zero = select(r, &over, &dec, &tb, "i32");
    let odd = arith2(r, "ori", &toward_zero, &one, "i32");
    let of = r.op(format!("arith.bitcast {odd} : i32 to f32"));
    select(r, &exact, &t, &of, "f32")
}

fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16)
}

fn mlir_int(bits: usize) -> &'static str {
    match bits {
        64 => "i64",
        32 => "i32",
        16 => "i16",
        _ => "i8",
    }
}

// ---------------------------------------------------------------------------
// Casts

/// Converts scalar `x` of element type `from` to `to` with the reference's
/// Cast rules: floats round to nearest even once, integers wrap, floats
/// truncate into integers (out of range and NaN: the intermediate's minimum,
/// as x86 C casts), bool is `!= 0` (NaN is true).
pub fn cast_scalar(r: &mut Region, x: &str, from: DType, to: DType) -> Result<String, String> {
    let supported = |d: DType| {
        d == DType::Bool
            || matches!(d, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
            || (d.is_int() && d.bits() >= 8)
    };
    if !supported(from) || !supported(to) {
        return Err(format!(
            "cast from {from} to {to} is not supported by the cpu target"
        ));
    }
    if from == to {
        return Ok(x.to_string());
    }
    if to == DType::Bool {
        return Ok(if from.is_float() {
            let ct = compute_type(from);
            let w = widen(r, x, from);
            let z = fconst(r, 0.0, ct);
            cmpf(r, "une", &w, &z, ct)
        } else {
            let t = mlir_int(from.bits());
            let z = iconst(r, 0, t);
            cmpi(r, "ne", x, &z, t)
        });
    }
    if from == DType::Bool {
        return Ok(if to.is_float() {
            let f = r.op(format!("arith.uitofp {x} : i1 to {}", compute_type(to)));
            narrow(r, &f, to)
        } else {
            r.op(format!("arith.extui {x} : i1 to {}", mlir_int(to.bits())))
        });
    }
    if from.is_int() && to.is_int() {
        let (tf, tt) = (mlir_int(from.bits()), mlir_int(to.bits()));
        return Ok(match from.bits().cmp(&to.bits()) {
            std::cmp::Ordering::Equal => x.to_string(),
            std::cmp::Ordering::Greater => r.op(format!("arith.trunci {x} : {tf} to {tt}")),
            std::cmp::Ordering::Less if from.is_signed_int() => {
                r.op(format!("arith.extsi {x} : {tf} to {tt}"))
            }
            std::cmp::Ordering::Less => r.op(format!("arith.extui {x} : {tf} to {tt}")),
        });
    }
    if from.is_int() {
        let tf = mlir_int(from.bits());
        let conv = if from.is_signed_int() {
            "sitofp"
        } else {
            "uitofp"
        };
        return Ok(match to {
            DType::F32 | DType::F64 => {
                r.op(format!("arith.{conv} {x} : {tf} to {}", compute_type(to)))
            }
            // Integers of up to 16 bits are exact in f32; wider ones go
            // through f64 (exact to 53 bits) rounded to odd, then once to
            // the half type.
            _ if from.bits() <= 16 => {
                let f = r.op(format!("arith.{conv} {x} : {tf} to f32"));
                narrow(r, &f, to)
            }
            _ => {
                let f = r.op(format!("arith.{conv} {x} : {tf} to f64"));
                let o = f64_to_f32_odd(r, &f);
                narrow(r, &o, to)
            }
        });
    }
    if to.is_float() {
        // float → float
        return Ok(match (from, to) {
            (DType::F64, DType::F32) => r.op(format!("arith.truncf {x} : f64 to f32")),
            (DType::F64, _) => {
                let o = f64_to_f32_odd(r, x);
                narrow(r, &o, to)
            }
            (_, DType::F64) => {
                let w = widen(r, x, from);
                r.op(format!("arith.extf {w} : f32 to f64"))
            }
            _ => {
                let w = widen(r, x, from);
                narrow(r, &w, to)
            }
        });
    }
    Ok(float_to_int(r, x, from, to))
}

/// The reference's `float_to_int`: truncate toward zero into a 32-bit
/// integer (64-bit for i64/u32/u64), keep the low bits; values outside the
/// intermediate's range and NaN become its minimum.
fn float_to_int(r: &mut Region, x: &str, from: DType, to: DType) -> String {
    let ct = compute_type(from);
    let w = widen(r, x, from);
    let t = math1(r, "trunc", &w, ct);
    let wide = matches!(to, DType::I64 | DType::U64 | DType::U32);
    let (bits, it) = if wide { (63, "i64") } else { (31, "i32") };
    let lo = fconst(r, -(2f64.powi(bits)), ct);
    let hi_s = fconst(r, 2f64.powi(bits), ct);
    let ge_lo = cmpf(r, "oge", &t, &lo, ct);
    let lt_hi = cmpf(r, "olt", &t, &hi_s, ct);
    let in_signed = arith2(r, "andi", &ge_lo, &lt_hi, "i1");
    let zero = fconst(r, 0.0, ct);
    let safe = select(r, &in_signed, &t, &zero, ct);
    let sv = r.op(format!("arith.fptosi {safe} : {ct} to {it}"));
    let min = iconst(r, if wide { i64::MIN } else { i32::MIN as i64 }, it);
    let mut v = select(r, &in_signed, &sv, &min, it);
    if to == DType::U64 {
        // [2^63, 2^64) is in range too, through the unsigned conversion.
        let hi_u = fconst(r, 2f64.powi(64), ct);
        let ge_hi = cmpf(r, "oge", &t, &hi_s, ct);
        let lt_top = cmpf(r, "olt", &t, &hi_u, ct);
        let upper = arith2(r, "andi", &ge_hi, &lt_top, "i1");
        let safe_u = select(r, &upper, &t, &zero, ct);
        let uv = r.op(format!("arith.fptoui {safe_u} : {ct} to i64"));
        v = select(r, &upper, &uv, &v, "i64");
    }
    let tt = mlir_int(to.bits());
    if tt == it {
        v
    } else {
        r.op(format!("arith.trunci {v} : {it} to {tt}"))
    }
}

fn lower_cast(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let (from, to) = (x.dtype, out.dtype);
    elementwise(k, &[x], &out, |r, a| cast_scalar(r, &a[0], from, to))
}

fn lower_bit_cast(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    if x.elem() == "i1" || out.elem() == "i1" {
        return Err("tsr.bit_cast of bool is not supported by the cpu target".into());
    }
    let (from, to) = (x.elem(), out.elem());
    elementwise(k, &[x], &out, |r, a| {
        Ok(if from == to {
            a[0].clone()
        } else {
            r.op(format!("arith.bitcast {} : {from} to {to}", a[0]))
        })
    })
}

// ---------------------------------------------------------------------------
// Unary float ops

/// A float scalar function of `x` in compute type `t`.
type FloatBody = fn(&mut Region, &str, &str, &Attrs) -> String;

/// The float attributes an activation reads (with their OpDef defaults).
#[derive(Default)]
struct Attrs {
    alpha: f64,
    beta: f64,
    gamma: f64,
    bias: f64,
    lambd: f64,
    tanh: bool,
}

fn read_attrs(k: &KernelCtx) -> Result<Attrs, String> {
    let op = k.op;
    let f = |n: &str| {
        if op.attr(n).is_some() {
            op.float(n)
        } else {
            Ok(0.0)
        }
    };
    Ok(Attrs {
        alpha: f("alpha")?,
        beta: f("beta")?,
        gamma: f("gamma")?,
        bias: f("bias")?,
        lambd: f("lambd")?,
        tanh: match op.attr("approximate") {
            None => false,
            Some(_) => match op.string("approximate")?.as_str() {
                "none" => false,
                "tanh" => true,
                a => {
                    return Err(format!(
                        "approximate must be \"none\" or \"tanh\", got \"{a}\""
                    ))
                }
            },
        },
    })
}

fn sigmoid(r: &mut Region, x: &str, t: &str) -> String {
    let n = r.op(format!("arith.negf {x} : {t}"));
    let e = math1(r, "exp", &n, t);
    let one = fconst(r, 1.0, t);
    let d = arith2(r, "addf", &one, &e, t);
    arith2(r, "divf", &one, &d, t)
}

/// max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|.
fn softplus(r: &mut Region, x: &str, t: &str) -> String {
    let z = fconst(r, 0.0, t);
    let m = arith2(r, "maximumf", x, &z, t);
    let a = math1(r, "absf", x, t);
    let na = r.op(format!("arith.negf {a} : {t}"));
    let e = math1(r, "exp", &na, t);
    let l = math1(r, "log1p", &e, t);
    arith2(r, "addf", &m, &l, t)
}

/// clamp(alpha x + beta, 0, 1), NaN propagating.
fn hard_sigmoid(r: &mut Region, x: &str, t: &str, alpha: f64, beta: f64) -> String {
    let (a, b) = (fconst(r, alpha, t), fconst(r, beta, t));
    let ax = arith2(r, "mulf", &a, x, t);
    let y = arith2(r, "addf", &ax, &b, t);
    let (z, one) = (fconst(r, 0.0, t), fconst(r, 1.0, t));
    let lo = arith2(r, "maximumf", &y, &z, t);
    arith2(r, "minimumf", &lo, &one, t)
}

/// alpha * (e^x - 1).
fn scaled_expm1(r: &mut Region, x: &str, t: &str, alpha: f64) -> String {
    let e = math1(r, "expm1", x, t);
    let a = fconst(r, alpha, t);
    arith2(r, "mulf", &a, &e, t)
}

fn gelu(r: &mut Region, x: &str, t: &str, tanh: bool) -> String {
    let inner = if tanh {
        // tanh(sqrt(2/pi) (x + 0.044715 x^3))
        let x2 = arith2(r, "mulf", x, x, t);
        let x3 = arith2(r, "mulf", &x2, x, t);
        let c = fconst(r, 0.044715, t);
        let cx3 = arith2(r, "mulf", &c, &x3, t);
        let s = arith2(r, "addf", x, &cx3, t);
        let k = fconst(r, (2.0 / std::f64::consts::PI).sqrt(), t);
        let ks = arith2(r, "mulf", &k, &s, t);
        math1(r, "tanh", &ks, t)
    } else {
        let k = fconst(r, std::f64::consts::FRAC_1_SQRT_2, t);
        let xs = arith2(r, "mulf", x, &k, t);
        math1(r, "erf", &xs, t)
    };
    let one = fconst(r, 1.0, t);
    let p = arith2(r, "addf", &one, &inner, t);
    let h = fconst(r, 0.5, t);
    let hx = arith2(r, "mulf", &h, x, t);
    arith2(r, "mulf", &hx, &p, t)
}

/// Float unary ops by mnemonic. Functions whose math op has no LLVM
/// intrinsic become libm calls in the pipeline.
const FLOAT_UNARY: &[(&str, FloatBody)] = &[
    ("exp", |r, x, t, _| math1(r, "exp", x, t)),
    ("log", |r, x, t, _| math1(r, "log", x, t)),
    ("sqrt", |r, x, t, _| math1(r, "sqrt", x, t)),
    ("erf", |r, x, t, _| math1(r, "erf", x, t)),
    ("sin", |r, x, t, _| math1(r, "sin", x, t)),
    ("cos", |r, x, t, _| math1(r, "cos", x, t)),
    ("tan", |r, x, t, _| math1(r, "tan", x, t)),
    ("asin", |r, x, t, _| math1(r, "asin", x, t)),
    ("acos", |r, x, t, _| math1(r, "acos", x, t)),
    ("atan", |r, x, t, _| math1(r, "atan", x, t)),
    ("sinh", |r, x, t, _| math1(r, "sinh", x, t)),
    ("cosh", |r, x, t, _| math1(r, "cosh", x, t)),
    ("tanh", |r, x, t, _| math1(r, "tanh", x, t)),
    ("asinh", |r, x, t, _| math1(r, "asinh", x, t)),
    ("acosh", |r, x, t, _| math1(r, "acosh", x, t)),
    ("atanh", |r, x, t, _| math1(r, "atanh", x, t)),
    ("floor", |r, x, t, _| math1(r, "floor", x, t)),
    ("ceil", |r, x, t, _| math1(r, "ceil", x, t)),
    ("round", |r, x, t, _| math1(r, "roundeven", x, t)),
    ("reciprocal", |r, x, t, _| {
        let one = fconst(r, 1.0, t);
        arith2(r, "divf", &one, x, t)
    }),
    ("sigmoid", |r, x, t, _| sigmoid(r, x, t)),
    ("softplus", |r, x, t, _| softplus(r, x, t)),
    ("softsign", |r, x, t, _| {
        let a = math1(r, "absf", x, t);
        let one = fconst(r, 1.0, t);
        let d = arith2(r, "addf", &one, &a, t);
        arith2(r, "divf", x, &d, t)
    }),
    ("mish", |r, x, t, _| {
        let s = softplus(r, x, t);
        let th = math1(r, "tanh", &s, t);
        arith2(r, "mulf", x, &th, t)
    }),
    ("swish", |r, x, t, a| {
        let al = fconst(r, a.alpha, t);
        let ax = arith2(r, "mulf", &al, x, t);
        let s = sigmoid(r, &ax, t);
        arith2(r, "mulf", x, &s, t)
    }),
    ("gelu", |r, x, t, a| gelu(r, x, t, a.tanh)),
    ("hard_sigmoid", |r, x, t, a| {
        hard_sigmoid(r, x, t, a.alpha, a.beta)
    }),
    ("hard_swish", |r, x, t, _| {
        let h = hard_sigmoid(r, x, t, 1.0 / 6.0, 0.5);
        arith2(r, "mulf", x, &h, t)
    }),
    ("leaky_relu", |r, x, t, a| {
        let z = fconst(r, 0.0, t);
        let neg = cmpf(r, "olt", x, &z, t);
        let al = fconst(r, a.alpha, t);
        let ax = arith2(r, "mulf", &al, x, t);
        select(r, &neg, &ax, x, t)
    }),
    ("elu", |r, x, t, a| {
        let z = fconst(r, 0.0, t);
        let neg = cmpf(r, "olt", x, &z, t);
        let e = scaled_expm1(r, x, t, a.alpha);
        select(r, &neg, &e, x, t)
    }),
    ("selu", |r, x, t, a| {
        let z = fconst(r, 0.0, t);
        let pos = cmpf(r, "ogt", x, &z, t);
        let e = scaled_expm1(r, x, t, a.alpha);
        let v = select(r, &pos, x, &e, t);
        let g = fconst(r, a.gamma, t);
        arith2(r, "mulf", &g, &v, t)
    }),
    ("celu", |r, x, t, a| {
        // maxnum/minnum: the reference's f64::max/min ignore NaN.
        let z = fconst(r, 0.0, t);
        let p = arith2(r, "maxnumf", x, &z, t);
        let al = fconst(r, a.alpha, t);
        let xa = arith2(r, "divf", x, &al, t);
        let e = scaled_expm1(r, &xa, t, a.alpha);
        let n = arith2(r, "minnumf", &e, &z, t);
        arith2(r, "addf", &p, &n, t)
    }),
    ("thresholded_relu", |r, x, t, a| {
        let al = fconst(r, a.alpha, t);
        let gt = cmpf(r, "ogt", x, &al, t);
        let z = fconst(r, 0.0, t);
        select(r, &gt, x, &z, t)
    }),
    ("shrink", |r, x, t, a| {
        let (l, nl, b) = (
            fconst(r, a.lambd, t),
            fconst(r, -a.lambd, t),
            fconst(r, a.bias, t),
        );
        let below = cmpf(r, "olt", x, &nl, t);
        let above = cmpf(r, "ogt", x, &l, t);
        let plus = arith2(r, "addf", x, &b, t);
        let minus = arith2(r, "subf", x, &b, t);
        let z = fconst(r, 0.0, t);
        let hi = select(r, &above, &minus, &z, t);
        select(r, &below, &plus, &hi, t)
    }),
];

fn lower_float_unary(k: &mut KernelCtx) -> Result<(), String> {
    let m = k.op.kind.mnemonic();
    let body = FLOAT_UNARY
        .iter()
        .find(|(n, _)| *n == m)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("tsr.{m} is not a float unary op"))?;
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let d = x.dtype;
    if !d.is_float() {
        return Err(format!("tsr.{m} on {d} is not supported by the cpu target"));
    }
    let attrs = read_attrs(k)?;
    let t = compute_type(d);
    elementwise(k, &[x], &out, |r, a| {
        let w = widen(r, &a[0], d);
        let y = body(r, &w, t, &attrs);
        Ok(narrow(r, &y, d))
    })
}

// ---------------------------------------------------------------------------
// Numeric unary ops (floats and integers)

fn lower_num_unary(k: &mut KernelCtx) -> Result<(), String> {
    let m = k.op.kind.mnemonic();
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let d = x.dtype;
    if d.is_float() {
        let t = compute_type(d);
        return elementwise(k, &[x], &out, |r, a| {
            let v = widen(r, &a[0], d);
            let z = fconst(r, 0.0, t);
            let y = match m {
                "abs" => math1(r, "absf", &v, t),
                "neg" => r.op(format!("arith.negf {v} : {t}")),
                "relu" => {
                    let neg = cmpf(r, "olt", &v, &z, t);
                    select(r, &neg, &z, &v, t)
                }
                _ => {
                    // sign: ±1, and x * 0 for zeros and NaN.
                    let (one, mone) = (fconst(r, 1.0, t), fconst(r, -1.0, t));
                    let pos = cmpf(r, "ogt", &v, &z, t);
                    let neg = cmpf(r, "olt", &v, &z, t);
                    let zx = arith2(r, "mulf", &v, &z, t);
                    let lo = select(r, &neg, &mone, &zx, t);
                    select(r, &pos, &one, &lo, t)
                }
            };
            Ok(narrow(r, &y, d))
        });
    }
    if !d.is_int() {
        return Err(format!("tsr.{m} on {d} is not supported by the cpu target"));
    }
    let t = x.elem();
    let signed = d.is_signed_int();
    elementwise(k, &[x], &out, |r, a| {
        let v = &a[0];
        let z = iconst(r, 0, t);
        Ok(match (m, signed) {
            ("abs", true) => math1(r, "absi", v, t),
            ("abs", false) | ("relu", false) => v.clone(),
            ("neg", _) => arith2(r, "subi", &z, v, t),
            ("relu", true) => arith2(r, "maxsi", v, &z, t),
            (_, true) => {
                let pos = cmpi(r, "sgt", v, &z, t);
                let neg = cmpi(r, "slt", v, &z, t);
                let p = r.op(format!("arith.extui {pos} : i1 to {t}"));
                let n = r.op(format!("arith.extui {neg} : i1 to {t}"));
                arith2(r, "subi", &p, &n, t)
            }
            (_, false) => {
                let nz = cmpi(r, "ne", v, &z, t);
                r.op(format!("arith.extui {nz} : i1 to {t}"))
            }
        })
    })
}

fn lower_is_nan(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let d = x.dtype;
    elementwise(k, &[x], &out, |r, a| {
        let v = widen(r, &a[0], d);
        Ok(cmpf(r, "uno", &v, &v, compute_type(d)))
    })
}

fn lower_is_inf(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let d = x.dtype;
    let (neg, pos) = (
        k.op.int("detect_negative")? != 0,
        k.op.int("detect_positive")? != 0,
    );
    elementwise(k, &[x], &out, |r, a| {
        let t = compute_type(d);
        let v = widen(r, &a[0], d);
        let mut acc = iconst(r, 0, "i1");
        for (on, inf) in [(pos, f64::INFINITY), (neg, f64::NEG_INFINITY)] {
            if on {
                let c = fconst(r, inf, t);
                let e = cmpf(r, "oeq", &v, &c, t);
                acc = arith2(r, "ori", &acc, &e, "i1");
            }
        }
        Ok(acc)
    })
}

fn lower_not(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let t = x.elem();
    elementwise(k, &[x], &out, |r, a| {
        let ones = iconst(r, -1, t);
        Ok(arith2(r, "xori", &a[0], &ones, t))
    })
}

// ---------------------------------------------------------------------------
// Binary ops

/// Integer a / b truncating toward zero, with 0 for b = 0 (see the module
/// doc) and `MIN / -1` wrapping to MIN instead of trapping.
fn int_div(r: &mut Region, a: &str, b: &str, t: &str, signed: bool) -> String {
    let (z, one) = (iconst(r, 0, t), iconst(r, 1, t));
    let is_zero = cmpi(r, "eq", b, &z, t);
    if !signed {
        let safe = select(r, &is_zero, &one, b, t);
        let q = arith2(r, "divui", a, &safe, t);
        return select(r, &is_zero, &z, &q, t);
    }
    let m1 = iconst(r, -1, t);
    let is_m1 = cmpi(r, "eq", b, &m1, t);
    let risky = arith2(r, "ori", &is_zero, &is_m1, "i1");
    let safe = select(r, &risky, &one, b, t);
    let q = arith2(r, "divsi", a, &safe, t);
    let na = arith2(r, "subi", &z, a, t);
    let q = select(r, &is_m1, &na, &q, t);
    select(r, &is_zero, &z, &q, t)
}

/// Integer remainder with the dividend's sign (C `%`); 0 for b = 0 and b = -1.
fn int_rem(r: &mut Region, a: &str, b: &str, t: &str, signed: bool) -> String {
    let (z, one) = (iconst(r, 0, t), iconst(r, 1, t));
    let mut risky = cmpi(r, "eq", b, &z, t);
    if signed {
        let m1 = iconst(r, -1, t);
        let is_m1 = cmpi(r, "eq", b, &m1, t);
        risky = arith2(r, "ori", &risky, &is_m1, "i1");
    }
    let safe = select(r, &risky, &one, b, t);
    let rem = arith2(r, if signed { "remsi" } else { "remui" }, a, &safe, t);
    select(r, &risky, &z, &rem, t)
}

/// The scalar body of a binary op on operands of element type `d` (already
/// widened to the compute type for floats).
fn binary_scalar(
    r: &mut Region,
    m: &str,
    a: &str,
    b: &str,
    d: DType,
    fmod: bool,
) -> Result<String, String> {
    if d.is_float() {
        let t = compute_type(d);
        let op = match m {
            "add" | "sum" | "mean" => "addf",
            "sub" => "subf",
            "mul" => "mulf",
            "div" => "divf",
            "max" => "maximumf",
            "min" => "minimumf",
            "mod" if fmod => "remf",
            "mod" => {
                // numpy mod: the remainder takes the divisor's sign; a zero
                // result is a zero of the divisor's sign.
                let rem = arith2(r, "remf", a, b, t);
                let z = fconst(r, 0.0, t);
                let is_zero = cmpf(r, "oeq", &rem, &z, t);
                let sz = r.op(format!("math.copysign {z}, {b} : {t}"));
                let rneg = cmpf(r, "olt", &rem, &z, t);
                let bneg = cmpf(r, "olt", b, &z, t);
                let differ = arith2(r, "xori", &rneg, &bneg, "i1");
                let shifted = arith2(r, "addf", &rem, b, t);
                let adj = select(r, &differ, &shifted, &rem, t);
                return Ok(select(r, &is_zero, &sz, &adj, t));
            }
            "prelu" => {
                let z = fconst(r, 0.0, t);
                let neg = cmpf(r, "olt", a, &z, t);
                let p = arith2(r, "mulf", b, a, t);
                return Ok(select(r, &neg, &p, a, t));
            }
            _ => return Err(format!("tsr.{m} on {d} is not supported by the cpu target")),
        };
        return Ok(arith2(r, op, a, b, t));
    }
    if d == DType::Bool {
        let op = match m {
            "and" => "andi",
            "or" => "ori",
            "xor" => "xori",
            _ => {
                return Err(format!(
                    "tsr.{m} on bool is not supported by the cpu target"
                ))
            }
        };
        return Ok(arith2(r, op, a, b, "i1"));
    }
    if !d.is_int() || d.bits() < 8 {
        return Err(format!("tsr.{m} on {d} is not supported by the cpu target"));
    }
    let t = mlir_int(d.bits());
    let s = d.is_signed_int();
    let op = match m {
        "add" | "sum" => "addi",
        "sub" => "subi",
        "mul" => "muli",
        "div" => return Ok(int_div(r, a, b, t, s)),
        "mod" if fmod => return Ok(int_rem(r, a, b, t, s)),
        "mod" => {
            // Python %: the remainder takes the divisor's sign.
            let rem = int_rem(r, a, b, t, s);
            if !s {
                return Ok(rem);
            }
            let z = iconst(r, 0, t);
            let nz = cmpi(r, "ne", &rem, &z, t);
            let rneg = cmpi(r, "slt", &rem, &z, t);
            let bneg = cmpi(r, "slt", b, &z, t);
            let differ = arith2(r, "xori", &rneg, &bneg, "i1");
            let fix = arith2(r, "andi", &nz, &differ, "i1");
            let shifted = arith2(r, "addi", &rem, b, t);
            return Ok(select(r, &fix, &shifted, &rem, t));
        }
        "max" if s => "maxsi",
        "max" => "maxui",
        "min" if s => "minsi",
        "min" => "minui",
        "bitwise_and" => "andi",
        "bitwise_or" => "ori",
        "bitwise_xor" => "xori",
        "prelu" if !s => return Ok(a.to_string()),
        "prelu" => {
            let z = iconst(r, 0, t);
            let neg = cmpi(r, "slt", a, &z, t);
            let p = arith2(r, "muli", b, a, t);
            return Ok(select(r, &neg, &p, a, t));
        }
        _ => return Err(format!("tsr.{m} on {d} is not supported by the cpu target")),
    };
    Ok(arith2(r, op, a, b, t))
}

/// Binary and variadic ops whose operands and result share one element type:
/// folded left to right, rounding to the element type after each step (as
/// the reference's pairwise fold does); `mean` divides at the end.
fn lower_nary(k: &mut KernelCtx) -> Result<(), String> {
    let m = k.op.kind.mnemonic();
    let ins: Vec<Buf> = k.operands.iter().flatten().cloned().collect();
    let out = k.result(0).clone();
    let d = ins
        .first()
        .ok_or_else(|| format!("tsr.{m} has no operands"))?
        .dtype;
    let fmod = m == "mod" && k.op.int("fmod")? == 1;
    if m == "mean" && !d.is_float() {
        return Err(format!("tsr.mean on {d} is not supported"));
    }
    let n = ins.len();
    elementwise(k, &ins, &out, |r, a| {
        let mut acc = widen(r, &a[0], d);
        for b in &a[1..] {
            let w = widen(r, b, d);
            let y = binary_scalar(r, m, &acc, &w, d, fmod)?;
            // Round each step like the pairwise fold; a no-op for f32/f64.
            acc = if is_half(d) {
                let h = narrow(r, &y, d);
                widen(r, &h, d)
            } else {
                y
            };
        }
        if m == "mean" {
            let t = compute_type(d);
            let c = fconst(r, n as f64, t);
            acc = arith2(r, "divf", &acc, &c, t);
        }
        Ok(narrow(r, &acc, d))
    })
}

fn lower_compare(k: &mut KernelCtx) -> Result<(), String> {
    let m = k.op.kind.mnemonic();
    let (a, b, out) = (
        k.operand(0)?.clone(),
        k.operand(1)?.clone(),
        k.result(0).clone(),
    );
    let d = a.dtype;
    let (fp, sp, up) = match m {
        "equal" => ("oeq", "eq", "eq"),
        "less" => ("olt", "slt", "ult"),
        "less_or_equal" => ("ole", "sle", "ule"),
        "greater" => ("ogt", "sgt", "ugt"),
        _ => ("oge", "sge", "uge"),
    };
    if !(d.is_float() || d.is_int() || d == DType::Bool) || (d.is_int() && d.bits() < 8) {
        return Err(format!("tsr.{m} on {d} is not supported by the cpu target"));
    }
    let ty = a.elem();
    elementwise(k, &[a, b], &out, |r, x| {
        Ok(if d.is_float() {
            let (p, q) = (widen(r, &x[0], d), widen(r, &x[1], d));
            cmpf(r, fp, &p, &q, compute_type(d))
        } else {
            cmpi(r, if d.is_signed_int() { sp } else { up }, &x[0], &x[1], ty)
        })
    })
}

fn lower_bit_shift(k: &mut KernelCtx) -> Result<(), String> {
    let (a, b, out) = (
        k.operand(0)?.clone(),
        k.operand(1)?.clone(),
        k.result(0).clone(),
    );
    let right = match k.op.string("direction")?.as_str() {
        "RIGHT" => true,
        "LEFT" => false,
        d => {
            return Err(format!(
                "direction must be \"LEFT\" or \"RIGHT\", got \"{d}\""
            ))
        }
    };
    let d = a.dtype;
    if !d.is_int() || d.bits() < 8 {
        return Err(format!(
            "tsr.bit_shift on {d} is not supported by the cpu target"
        ));
    }
    let t = a.elem();
    let width = d.bits() as i64;
    elementwise(k, &[a, b], &out, |r, x| {
        // Shifts outside [0, width) (negative ones are huge unsigned) give
        // 0, or the sign fill for a signed right shift.
        let w = iconst(r, width, t);
        let oob = cmpi(r, "uge", &x[1], &w, t);
        let z = iconst(r, 0, t);
        let (y, fill) = if right && d.is_signed_int() {
            let top = iconst(r, width - 1, t);
            let amt = select(r, &oob, &top, &x[1], t);
            return Ok(arith2(r, "shrsi", &x[0], &amt, t));
        } else {
            let amt = select(r, &oob, &z, &x[1], t);
            (
                arith2(r, if right { "shrui" } else { "shli" }, &x[0], &amt, t),
                z,
            )
        };
        Ok(select(r, &oob, &fill, &y, t))
    })
}

fn lower_pow(k: &mut KernelCtx) -> Result<(), String> {
    let (x, e, out) = (
        k.operand(0)?.clone(),
        k.operand(1)?.clone(),
        k.result(0).clone(),
    );
    let (bd, ed) = (x.dtype, e.dtype);
    let ok = |d: DType| {
        matches!(d, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
            || (d.is_int() && d.bits() >= 8)
    };
    if !ok(bd) || !ok(ed) {
        return Err(format!(
            "tsr.pow of {bd} by {ed} is not supported by the cpu target"
        ));
    }
    if bd.is_int() && ed.is_int() {
        k.helper("tsr_ipow", ipow_helper);
        return elementwise(k, &[x, e], &out, |r, v| {
            let b = cast_scalar(r, &v[0], bd, DType::I64)?;
            let p = cast_scalar(r, &v[1], ed, DType::I64)?;
            let y = r.op(format!("func.call @tsr_ipow({b}, {p}) : (i64, i64) -> i64"));
            cast_scalar(r, &y, DType::I64, bd)
        });
    }
    // Float math: in f64 when either side is f64 or the result is an integer
    // (the reference converts an integer power back by truncation).
    let wide = bd == DType::F64 || ed == DType::F64 || bd.is_int();
    let cd = if wide { DType::F64 } else { DType::F32 };
    let t = compute_type(cd);
    elementwise(k, &[x, e], &out, |r, v| {
        let b = cast_scalar(r, &v[0], bd, cd)?;
        let p = cast_scalar(r, &v[1], ed, cd)?;
        let y = r.op(format!("math.powf {b}, {p} : {t}"));
        cast_scalar(r, &y, cd, bd)
    })
}

/// `base^exp` on i64 with wrapping (binary exponentiation); negative
/// exponents give the truncated reciprocal: 1 for base 1, ±1 for base -1,
/// else 0 (the reference errors for base 0; 0 here, see the module doc).
fn ipow_helper() -> String {
    "  func.func private @tsr_ipow(%b: i64, %e: i64) -> i64 {
    %c0 = arith.constant 0 : i64
    %c1 = arith.constant 1 : i64
    %m1 = arith.constant -1 : i64
    %r:3 = scf.while (%acc = %c1, %x = %b, %n = %e) : (i64, i64, i64) -> (i64, i64, i64) {
      %more = arith.cmpi sgt, %n, %c0 : i64
      scf.condition(%more) %acc, %x, %n : i64, i64, i64
    } do {
    ^bb0(%acc: i64, %x: i64, %n: i64):
      %bit = arith.andi %n, %c1 : i64
      %odd = arith.cmpi ne, %bit, %c0 : i64
      %m = arith.muli %acc, %x : i64
      %acc2 = arith.select %odd, %m, %acc : i64
      %x2 = arith.muli %x, %x : i64
      %n2 = arith.shrsi %n, %c1 : i64
      scf.yield %acc2, %x2, %n2 : i64, i64, i64
    }
    %ebit = arith.andi %e, %c1 : i64
    %eodd = arith.cmpi ne, %ebit, %c0 : i64
    %sgn = arith.select %eodd, %m1, %c1 : i64
    %is1 = arith.cmpi eq, %b, %c1 : i64
    %ism1 = arith.cmpi eq, %b, %m1 : i64
    %neg1 = arith.select %ism1, %sgn, %c0 : i64
    %negr = arith.select %is1, %c1, %neg1 : i64
    %eneg = arith.cmpi slt, %e, %c0 : i64
    %res = arith.select %eneg, %negr, %r#0 : i64
    return %res : i64
  }
"
    .to_string()
}

fn lower_where(k: &mut KernelCtx) -> Result<(), String> {
    let (c, x, y, out) = (
        k.operand(0)?.clone(),
        k.operand(1)?.clone(),
        k.operand(2)?.clone(),
        k.result(0).clone(),
    );
    let t = x.elem();
    elementwise(k, &[c, x, y], &out, |r, v| {
        Ok(select(r, &v[0], &v[1], &v[2], t))
    })
}

/// Loads the single element of a scalar-like buffer before the kernel loop.
fn load_scalar(k: &mut KernelCtx, b: &Buf) -> String {
    let zeros: Vec<String> = (0..b.rank()).map(|_| k.idx(0)).collect();
    let v = k.fresh("sc");
    k.line(format!(
        "{v} = memref.load {}[{}] : {}",
        b.name,
        zeros.join(", "),
        b.ty
    ));
    v
}

fn lower_clip(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let d = x.dtype;
    if !(d.is_float() || (d.is_int() && d.bits() >= 8)) {
        return Err(format!(
            "tsr.clip on {d} is not supported by the cpu target"
        ));
    }
    let mut bound = |i: usize| -> Result<Option<String>, String> {
        match k.opt_operand(i).cloned() {
            Some(b) if b.len() != 1 => Err(format!(
                "clip bounds must be scalars, got shape {:?}",
                b.shape
            )),
            Some(b) => Ok(Some(load_scalar(k, &b))),
            None => Ok(None),
        }
    };
    let (lo, hi) = (bound(1)?, bound(2)?);
    elementwise(k, &[x], &out, |r, a| {
        if d.is_float() {
            // `if`s, not min/max: NaN propagates and lo > hi gives hi.
            let t = compute_type(d);
            let mut v = widen(r, &a[0], d);
            for (b, pred) in [(&lo, "olt"), (&hi, "ogt")] {
                if let Some(b) = b {
                    let bw = widen(r, b, d);
                    let c = cmpf(r, pred, &v, &bw, t);
                    v = select(r, &c, &bw, &v, t);
                }
            }
            return Ok(narrow(r, &v, d));
        }
        let t = mlir_int(d.bits());
        let s = d.is_signed_int();
        let mut v = a[0].clone();
        if let Some(b) = &lo {
            v = arith2(r, if s { "maxsi" } else { "maxui" }, &v, b, t);
        }
        if let Some(b) = &hi {
            v = arith2(r, if s { "minsi" } else { "minui" }, &v, b, t);
        }
        Ok(v)
    })
}

/// a * sigmoid(alpha a) * b (operands of one shape and float type).
fn lower_swiglu(k: &mut KernelCtx) -> Result<(), String> {
    let (a, b, out) = (
        k.operand(0)?.clone(),
        k.operand(1)?.clone(),
        k.result(0).clone(),
    );
    let d = a.dtype;
    if !matches!(d, DType::F64 | DType::F32 | DType::F16 | DType::BF16) {
        return Err(format!(
            "tsr.swiglu on {d} is not supported by the cpu target"
        ));
    }
    let alpha = k.op.float("alpha")?;
    let t = compute_type(d);
    elementwise(k, &[a, b], &out, |r, v| {
        let (x, y) = (widen(r, &v[0], d), widen(r, &v[1], d));
        let al = fconst(r, alpha, t);
        let ax = arith2(r, "mulf", &al, &x, t);
        let s = sigmoid(r, &ax, t);
        let g = arith2(r, "mulf", &x, &s, t);
        let o = arith2(r, "mulf", &g, &y, t);
        Ok(narrow(r, &o, d))
    })
}

/// Dropout in inference: the data unchanged and an all-true mask. Training
/// mode (a random mask) is rejected unless `training_mode` is a constant
/// false.
fn lower_dropout(k: &mut KernelCtx) -> Result<(), String> {
    if let Some(t) = k.opt_operand(2) {
        match &t.constant {
            Some(v) if v.to_i64_vec().iter().all(|&b| b == 0) => {}
            Some(_) => {
                return Err(
                    "tsr.dropout in training mode is not supported by the cpu target".into(),
                )
            }
            None => {
                return Err(
                    "tsr.dropout with a runtime training_mode is not supported by the cpu target"
                        .into(),
                )
            }
        }
    }
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    elementwise(k, std::slice::from_ref(&x), &out, |_, v| Ok(v[0].clone()))?;
    if k.results.len() == 2 {
        let mask = k.result(1).clone();
        elementwise(k, &[], &mask, |r, _| Ok(iconst(r, 1, "i1")))?;
    }
    Ok(())
}

pub const LOWERINGS: &[(&str, LowerFn)] = &[
    ("swiglu", lower_swiglu),
    ("dropout", lower_dropout),
    ("add", lower_nary),
    ("sub", lower_nary),
    ("mul", lower_nary),
    ("div", lower_nary),
    ("mod", lower_nary),
    ("max", lower_nary),
    ("min", lower_nary),
    ("sum", lower_nary),
    ("mean", lower_nary),
    ("prelu", lower_nary),
    ("and", lower_nary),
    ("or", lower_nary),
    ("xor", lower_nary),
    ("bitwise_and", lower_nary),
    ("bitwise_or", lower_nary),
    ("bitwise_xor", lower_nary),
    ("bitwise_not", lower_not),
    ("not", lower_not),
    ("bit_shift", lower_bit_shift),
    ("pow", lower_pow),
    ("equal", lower_compare),
    ("less", lower_compare),
    ("less_or_equal", lower_compare),
    ("greater", lower_compare),
    ("greater_or_equal", lower_compare),
    ("where", lower_where),
    ("clip", lower_clip),
    ("cast", lower_cast),
    ("cast_like", lower_cast),
    ("bit_cast", lower_bit_cast),
    ("is_nan", lower_is_nan),
    ("is_inf", lower_is_inf),
    ("abs", lower_num_unary),
    ("neg", lower_num_unary),
    ("sign", lower_num_unary),
    ("relu", lower_num_unary),
    ("exp", lower_float_unary),
    ("log", lower_float_unary),
    ("sqrt", lower_float_unary),
    ("erf", lower_float_unary),
    ("sin", lower_float_unary),
    ("cos", lower_float_unary),
    ("tan", lower_float_unary),
    ("asin", lower_float_unary),
    ("acos", lower_float_unary),
    ("atan", lower_float_unary),
    ("sinh", lower_float_unary),
    ("cosh", lower_float_unary),
    ("tanh", lower_float_unary),
    ("asinh", lower_float_unary),
    ("acosh", lower_float_unary),
    ("atanh", lower_float_unary),
    ("floor", lower_float_unary),
    ("ceil", lower_float_unary),
    ("round", lower_float_unary),
    ("reciprocal", lower_float_unary),
    ("sigmoid", lower_float_unary),
    ("softplus", lower_float_unary),
    ("softsign", lower_float_unary),
    ("mish", lower_float_unary),
    ("swish", lower_float_unary),
    ("gelu", lower_float_unary),
    ("hard_sigmoid", lower_float_unary),
    ("hard_swish", lower_float_unary),
    ("leaky_relu", lower_float_unary),
    ("elu", lower_float_unary),
    ("selu", lower_float_unary),
    ("celu", lower_float_unary),
    ("thresholded_relu", lower_float_unary),
    ("shrink", lower_float_unary),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every float unary formula is reachable through the dispatch table.
    #[test]
    fn float_unary_table_is_dispatched() {
        for (m, _) in FLOAT_UNARY {
            let f = LOWERINGS.iter().find(|(n, _)| n == m);
            assert!(
                f.is_some_and(|(_, f)| std::ptr::fn_addr_eq(*f, lower_float_unary as LowerFn)),
                "{m}"
            );
        }
    }
}
