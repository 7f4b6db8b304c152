//! Elementwise ops: arithmetic, math functions, activations, comparisons,
//! logic and bitwise ops, selection (Where), casts and Dropout. Binary and
//! variadic ops broadcast numpy-style.
//!
//! Numeric domains: floats are computed in f64 and rounded once to the result
//! type (exact for + - * / sqrt on f32, f16 and bf16, since f64 has more than
//! twice their precision; transcendental functions come out more accurate than
//! a native f32 kernel). Integers are computed in i128, which holds every value
//! of every integer type (u64 included), and wrapped to the result type in
//! two's complement, as C does.

use super::util::{broadcast_all, broadcast_index_map, broadcast_shapes};
use super::*;
use crate::attr::AttrKind;
use crate::minifloat;
use crate::tensor::Data;
use half::{bf16, f16};

// ---------------------------------------------------------------------------
// Element classes (what an operand accepts)

/// The element types an operand accepts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Class {
    Float,
    Int,
    Num,
    /// Floats and signed integers (Neg).
    SignedNum,
    Bool,
    Any,
}

impl Class {
    fn accepts(self, d: DType) -> bool {
        match self {
            Class::Float => d.is_float(),
            Class::Int => d.is_int(),
            Class::Num => d.is_numeric(),
            Class::SignedNum => d.is_float() || d.is_signed_int(),
            Class::Bool => d == DType::Bool,
            Class::Any => true,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Class::Float => "a float",
            Class::Int => "an integer",
            Class::Num => "a numeric",
            Class::SignedNum => "a float or signed integer",
            Class::Bool => "a bool",
            Class::Any => "a",
        }
    }
}

fn check_class(what: &str, d: DType, c: Class) -> Result<(), String> {
    if c.accepts(d) {
        Ok(())
    } else {
        Err(format!("{what} must be {} tensor, got {d}", c.describe()))
    }
}

fn same_dtype(a: DType, b: DType) -> Result<(), String> {
    if a == b {
        Ok(())
    } else {
        Err(format!("operand element types differ: {a} vs {b}"))
    }
}

// ---------------------------------------------------------------------------
// Inference helpers

/// A unary op whose result has its operand's type.
fn infer_unary(ctx: &InferCtx, c: Class) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    check_class("the operand", x.dtype(), c)?;
    Ok(vec![x.clone()])
}

/// A unary op with a bool result of the operand's shape.
fn infer_unary_pred(ctx: &InferCtx, c: Class) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    check_class("the operand", x.dtype(), c)?;
    Ok(vec![x.with_dtype(DType::Bool)])
}

/// Broadcasting op whose operands all share one element type of class `c`;
/// the result has that type, or `out` (bool for comparisons).
fn infer_nary(ctx: &InferCtx, c: Class, out: Option<DType>) -> Result<Vec<TensorType>, String> {
    let ts: Vec<&TensorType> = ctx.operands.iter().flatten().copied().collect();
    let first = ts.first().ok_or("needs at least one operand")?;
    check_class("the operands", first.dtype(), c)?;
    for t in &ts[1..] {
        same_dtype(first.dtype(), t.dtype())?;
    }
    let shape = broadcast_all(ts.iter().map(|t| t.shape.as_slice()))?;
    Ok(vec![TensorType::new(shape, out.unwrap_or(first.dtype()))])
}

// ---------------------------------------------------------------------------
// Integer values

/// Every element of an integer or bool tensor, exactly (u64 included).
pub fn int_values(t: &Tensor) -> Vec<i128> {
    match &t.data {
        Data::U64(v) => v.iter().map(|&x| x as i128).collect(),
        _ => t.to_i64_vec().into_iter().map(i128::from).collect(),
    }
}

/// Reduces `v` into the range of integer type `d` by keeping its low bits
/// (two's complement), as C conversions between integer types do. Bool is
/// `v != 0`; ternary, whose code -2 is invalid, is clamped to -1.
pub fn wrap_int(d: DType, v: i128) -> i128 {
    if d == DType::Bool {
        return (v != 0) as i128;
    }
    let bits = d.bits() as u32;
    if bits == 0 || bits >= 128 {
        return v;
    }
    let shift = 128 - bits;
    let w = if d.is_signed_int() {
        (v << shift) >> shift
    } else {
        (((v as u128) << shift) >> shift) as i128
    };
    if d == DType::Ternary {
        w.max(-1)
    } else {
        w
    }
}

/// An integer (or bool) tensor from i128 values, wrapped to `d`.
pub fn int_tensor(d: DType, shape: Vec<usize>, v: &[i128]) -> Tensor {
    // After wrapping, a u64 value's low 64 bits are its bit pattern, which
    // `from_i64` stores back unchanged.
    let w: Vec<i64> = v.iter().map(|&x| wrap_int(d, x) as i64).collect();
    Tensor::from_i64(d, shape, &w)
}

fn bool_tensor(shape: Vec<usize>, v: Vec<bool>) -> Result<Tensor, String> {
    Tensor::new(DType::Bool, shape, Data::Bool(v))
}

fn bools(t: &Tensor) -> Result<&[bool], String> {
    match &t.data {
        Data::Bool(v) => Ok(v),
        _ => Err(format!("expects a bool tensor, got {}", t.dtype)),
    }
}

// ---------------------------------------------------------------------------
// Broadcasting kernels

/// Broadcasts the shapes of `ts`; returns the result shape and, per operand,
/// the flat index of its element under each result element.
pub fn broadcast_maps(ts: &[&Tensor]) -> Result<(Vec<usize>, Vec<Vec<usize>>), String> {
    let shape = ts
        .iter()
        .try_fold(Vec::new(), |acc, t| broadcast_shapes(&acc, &t.shape))?;
    let maps = ts
        .iter()
        .map(|t| broadcast_index_map(&t.shape, &shape))
        .collect();
    Ok((shape, maps))
}

/// Applies `f` to the flat indices of each broadcast pair of elements.
fn zip_idx<T>(
    a: &Tensor,
    b: &Tensor,
    mut f: impl FnMut(usize, usize) -> Result<T, String>,
) -> Result<(Vec<usize>, Vec<T>), String> {
    let (shape, maps) = broadcast_maps(&[a, b])?;
    let v = maps[0]
        .iter()
        .zip(&maps[1])
        .map(|(&i, &j)| f(i, j))
        .collect::<Result<Vec<T>, String>>()?;
    Ok((shape, v))
}

/// Binary float kernel, computed in f64 and rounded once to `out`.
pub fn zip_float(
    a: &Tensor,
    b: &Tensor,
    out: DType,
    f: impl Fn(f64, f64) -> f64,
) -> Result<Tensor, String> {
    if let (Data::F32(x), Data::F32(y), DType::F32) = (&a.data, &b.data, out) {
        let (shape, v) = zip_idx(a, b, |i, j| Ok(f(x[i] as f64, y[j] as f64) as f32))?;
        return Tensor::new(DType::F32, shape, Data::F32(v));
    }
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let (shape, v) = zip_idx(a, b, |i, j| Ok(f(x[i], y[j])))?;
    Ok(float_tensor(out, shape, &v))
}

/// Binary integer kernel, computed in i128 and wrapped to `out`.
pub fn zip_int(
    a: &Tensor,
    b: &Tensor,
    out: DType,
    f: impl Fn(i128, i128) -> Result<i128, String>,
) -> Result<Tensor, String> {
    let (x, y) = (int_values(a), int_values(b));
    let (shape, v) = zip_idx(a, b, |i, j| f(x[i], y[j]))?;
    Ok(int_tensor(out, shape, &v))
}

/// A binary op on two operands of one numeric type: floats through `ff`,
/// integers through `fi`; the result has type `out`.
pub fn eval_binary_num(
    a: &Tensor,
    b: &Tensor,
    out: DType,
    ff: impl Fn(f64, f64) -> f64,
    fi: impl Fn(i128, i128) -> Result<i128, String>,
) -> Result<Tensor, String> {
    same_dtype(a.dtype, b.dtype)?;
    if a.dtype.is_float() {
        zip_float(a, b, out, ff)
    } else if a.dtype.is_int() {
        zip_int(a, b, out, fi)
    } else {
        Err(format!("expects numeric operands, got {}", a.dtype))
    }
}

/// A comparison of two operands of one numeric (or bool) type; bool result.
pub fn compare(
    a: &Tensor,
    b: &Tensor,
    ff: impl Fn(f64, f64) -> bool,
    fi: impl Fn(i128, i128) -> bool,
) -> Result<Tensor, String> {
    same_dtype(a.dtype, b.dtype)?;
    let (shape, v) = if a.dtype.is_float() {
        let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
        zip_idx(a, b, |i, j| Ok(ff(x[i], y[j])))?
    } else if a.dtype.is_int() || a.dtype == DType::Bool {
        let (x, y) = (int_values(a), int_values(b));
        zip_idx(a, b, |i, j| Ok(fi(x[i], y[j])))?
    } else {
        return Err(format!("cannot compare {} tensors", a.dtype));
    };
    bool_tensor(shape, v)
}

/// A unary kernel over floats (`ff`, via f64) and integers (`fi`, wrapped).
pub fn map_num(
    x: &Tensor,
    ff: impl Fn(f64) -> f64,
    fi: impl Fn(i128) -> i128,
) -> Result<Tensor, String> {
    if x.dtype.is_float() {
        map_float(x, ff)
    } else if x.dtype.is_int() {
        let v: Vec<i128> = int_values(x).into_iter().map(fi).collect();
        Ok(int_tensor(x.dtype, x.shape.clone(), &v))
    } else {
        Err(format!("expects a numeric tensor, got {}", x.dtype))
    }
}

/// Folds the operands of a variadic op pairwise with broadcasting, rounding to
/// the element type after each step (as a chain of binary ops would).
fn fold_operands(
    ctx: &EvalCtx,
    ff: impl Fn(f64, f64) -> f64,
    fi: impl Fn(i128, i128) -> Result<i128, String>,
) -> Result<Tensor, String> {
    let ins: Vec<&Tensor> = ctx.inputs.iter().flatten().copied().collect();
    let (first, rest) = ins.split_first().ok_or("needs at least one operand")?;
    check_class("the operands", first.dtype, Class::Num)?;
    let mut acc = (*first).clone();
    for t in rest {
        acc = eval_binary_num(&acc, t, acc.dtype, &ff, &fi)?;
    }
    Ok(acc)
}

// ---------------------------------------------------------------------------
// Scalar kernels shared with fused ops

/// The error function, to about 1e-15 relative: a series of positive terms
/// below 2.5 (no cancellation), the continued fraction of erfc above.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        // erf(a) = 2/sqrt(pi) * exp(-a^2) * sum 2^n a^(2n+1) / (1*3*...*(2n+1))
        let a2 = a * a;
        let (mut term, mut sum, mut n) = (a, a, 0u32);
        while term > sum * 1e-17 {
            n += 1;
            term *= 2.0 * a2 / f64::from(2 * n + 1);
            sum += term;
        }
        std::f64::consts::FRAC_2_SQRT_PI * (-a2).exp() * sum
    } else if a < 6.0 {
        1.0 - erfc_large(a)
    } else {
        1.0 // erfc(6) < 2.2e-17: below half an ulp of 1
    };
    r.copysign(x)
}

/// erfc(a) for a >= 2.5: exp(-a^2)/sqrt(pi) / (a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))),
/// evaluated backwards; 60 terms converge to f64 precision at a = 2.5.
fn erfc_large(a: f64) -> f64 {
    let mut f = a;
    for k in (1..=60).rev() {
        f = a + f64::from(k) / 2.0 / f;
    }
    (-a * a).exp() / std::f64::consts::PI.sqrt() / f
}

/// The logistic function, without overflow for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln(1 + e^x), without overflow for large x.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// GELU with the exact erf: x/2 * (1 + erf(x/sqrt(2))).
pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))
}

/// GELU, tanh approximation: x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
pub fn gelu_tanh(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

/// x * sigmoid(alpha * x) (SiLU for alpha = 1).
pub fn swish(x: f64, alpha: f64) -> f64 {
    x * sigmoid(alpha * x)
}

pub fn softsign(x: f64) -> f64 {
    x / (1.0 + x.abs())
}

pub fn mish(x: f64) -> f64 {
    x * softplus(x).tanh()
}

/// max(0, min(1, alpha * x + beta)).
pub fn hard_sigmoid(x: f64, alpha: f64, beta: f64) -> f64 {
    (alpha * x + beta).clamp(0.0, 1.0)
}

/// ONNX Sign: -1, 0 or 1; NaN stays NaN (numpy).
fn sign_f(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x * 0.0 // zeros and NaN
    }
}

fn max_f(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn min_f(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Integer `base^exp` with wrapping; negative exponents give the truncated
/// reciprocal (0 unless |base| = 1).
fn int_pow(base: i128, exp: i128) -> Result<i128, String> {
    if exp < 0 {
        return match base {
            0 => Err("integer 0 raised to a negative power".into()),
            1 => Ok(1),
            -1 => Ok(if exp % 2 == 0 { 1 } else { -1 }),
            _ => Ok(0),
        };
    }
    let (mut acc, mut b, mut e) = (1i128, base, exp);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    Ok(acc)
}

// ---------------------------------------------------------------------------
// Arithmetic

/// A broadcasting binary arithmetic op, defined by its float and integer scalar functions.
macro_rules! binary_arith {
    ($name:ident, $mn:literal, $summary:literal, [$($tr:expr),*], $ff:expr, $fi:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("lhs"), req("rhs")],
            results: Results::Fixed(1),
            attrs: &[],
            traits: &[Trait::Elementwise $(, $tr)*],
            infer: |ctx| infer_nary(ctx, Class::Num, None),
            eval: Some(|ctx| {
                let (a, b) = (ctx.input(0)?, ctx.input(1)?);
                Ok(vec![eval_binary_num(a, b, a.dtype, $ff, $fi)?])
            }),
        };
    };
}

binary_arith!(
    ADD,
    "add",
    "Elementwise a + b",
    [Trait::Commutative],
    |a, b| a + b,
    |a, b| Ok(a.wrapping_add(b))
);
binary_arith!(
    SUB,
    "sub",
    "Elementwise a - b",
    [],
    |a, b| a - b,
    |a, b| Ok(a.wrapping_sub(b))
);
binary_arith!(
    MUL,
    "mul",
    "Elementwise a * b",
    [Trait::Commutative],
    |a, b| a * b,
    |a, b| Ok(a.wrapping_mul(b))
);
binary_arith!(
    DIV,
    "div",
    "Elementwise a / b (integers truncate toward zero)",
    [],
    |a, b| a / b,
    |a, b| {
        if b == 0 {
            Err("integer division by zero".to_string())
        } else {
            Ok(a / b)
        }
    }
);

pub static MOD: OpDef = OpDef {
    mnemonic: "mod",
    summary:
        "Remainder: sign of the divisor (fmod = 0, Python %) or of the dividend (fmod = 1, C fmod)",
    operands: &[req("lhs"), req("rhs")],
    results: Results::Fixed(1),
    attrs: &[attr("fmod", AttrKind::Int, Default::Int(0))],
    traits: &[Trait::Elementwise],
    infer: |ctx| infer_nary(ctx, Class::Num, None),
    eval: Some(|ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        let nonzero = |b: i128| {
            if b == 0 {
                Err("integer modulo by zero".to_string())
            } else {
                Ok(b)
            }
        };
        // Rust's `%` is C's fmod on floats (including its inf/NaN/zero cases)
        // and truncated remainder on integers.
        let out = match ctx.int("fmod")? {
            1 => eval_binary_num(a, b, a.dtype, |x, y| x % y, |x, y| Ok(x % nonzero(y)?))?,
            0 => eval_binary_num(a, b, a.dtype, floor_mod_f, |x, y| {
                let r = x % nonzero(y)?;
                Ok(if r != 0 && (r < 0) != (y < 0) {
                    r + y
                } else {
                    r
                })
            })?,
            f => return Err(format!("fmod must be 0 or 1, got {f}")),
        };
        Ok(vec![out])
    }),
};

/// numpy.mod on floats: the remainder takes the divisor's sign; a zero result
/// is a zero of the divisor's sign.
fn floor_mod_f(x: f64, y: f64) -> f64 {
    let r = x % y;
    if r == 0.0 {
        0f64.copysign(y)
    } else if (r < 0.0) != (y < 0.0) && !r.is_nan() {
        r + y
    } else {
        r
    }
}

pub static POW: OpDef = OpDef {
    mnemonic: "pow",
    summary:
        "base ^ exponent; the exponent may have another numeric type, the result has the base's",
    operands: &[req("base"), req("exponent")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let (x, y) = (ctx.input(0)?, ctx.input(1)?);
        check_class("the base", x.dtype(), Class::Num)?;
        check_class("the exponent", y.dtype(), Class::Num)?;
        let shape = broadcast_all([x.shape.as_slice(), y.shape.as_slice()])?;
        Ok(vec![TensorType::new(shape, x.dtype())])
    },
    eval: Some(|ctx| {
        let (x, y) = (ctx.input(0)?, ctx.input(1)?);
        check_class("the exponent", y.dtype, Class::Num)?;
        let out = x.dtype;
        let t = if out.is_float() {
            let (b, e) = (x.to_f64_vec(), y.to_f64_vec());
            let (shape, v) = zip_idx(x, y, |i, j| Ok(b[i].powf(e[j])))?;
            float_tensor(out, shape, &v)
        } else if out.is_int() && y.dtype.is_float() {
            // An integer base with a float exponent is computed in floating
            // point and converted back (truncation), as onnxruntime does.
            let (b, e) = (int_values(x), y.to_f64_vec());
            let (shape, v) = zip_idx(x, y, |i, j| Ok(float_to_int(out, (b[i] as f64).powf(e[j]))))?;
            int_tensor(out, shape, &v)
        } else if out.is_int() {
            let (b, e) = (int_values(x), int_values(y));
            let (shape, v) = zip_idx(x, y, |i, j| int_pow(b[i], e[j]))?;
            int_tensor(out, shape, &v)
        } else {
            return Err(format!("the base must be numeric, got {out}"));
        };
        Ok(vec![t])
    }),
};

/// A variadic broadcasting op folded pairwise from its binary scalar functions.
macro_rules! variadic {
    ($name:ident, $mn:literal, $summary:literal, $class:ident, $ff:expr, $fi:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[variadic("inputs")],
            results: Results::Fixed(1),
            attrs: &[],
            traits: &[Trait::Elementwise, Trait::Commutative],
            infer: |ctx| infer_nary(ctx, Class::$class, None),
            eval: Some(|ctx| Ok(vec![fold_operands(ctx, $ff, $fi)?])),
        };
    };
}

variadic!(
    MAX,
    "max",
    "Elementwise maximum of the operands (NaN propagates)",
    Num,
    max_f,
    |a, b| Ok(a.max(b))
);
variadic!(
    MIN,
    "min",
    "Elementwise minimum of the operands (NaN propagates)",
    Num,
    min_f,
    |a, b| Ok(a.min(b))
);
variadic!(
    SUM,
    "sum",
    "Elementwise sum of the operands",
    Num,
    |a, b| a + b,
    |a, b| Ok(a.wrapping_add(b))
);

pub static MEAN: OpDef = OpDef {
    mnemonic: "mean",
    summary: "Elementwise mean of the operands",
    operands: &[variadic("inputs")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise, Trait::Commutative],
    infer: |ctx| infer_nary(ctx, Class::Float, None),
    eval: Some(|ctx| {
        let sum = fold_operands(
            ctx,
            |a, b| a + b,
            |_, _| Err("mean takes float operands".to_string()),
        )?;
        let n = ctx.inputs.iter().flatten().count() as f64;
        Ok(vec![map_float(&sum, |s| s / n)?])
    }),
};

// ---------------------------------------------------------------------------
// Unary math and activations

/// A unary op on floats, one line each: float attributes become locals of the
/// scalar function (defaults are ONNX's, which are f32 values).
macro_rules! unary_float {
    ($name:ident, $mn:literal, $summary:literal, [$($a:ident = $def:expr),*], |$x:ident| $body:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("x")],
            results: Results::Fixed(1),
            attrs: &[$(attr(stringify!($a), AttrKind::Float, Default::Float($def as f32 as f64))),*],
            traits: &[Trait::Elementwise],
            infer: |ctx| infer_unary(ctx, Class::Float),
            eval: Some(|ctx| {
                $(let $a = ctx.float(stringify!($a))?;)*
                Ok(vec![map_float(ctx.input(0)?, |$x| $body)?])
            }),
        };
    };
}

unary_float!(RECIPROCAL, "reciprocal", "1 / x", [], |x| 1.0 / x);
unary_float!(FLOOR, "floor", "Largest integer <= x", [], |x| x.floor());
unary_float!(CEIL, "ceil", "Smallest integer >= x", [], |x| x.ceil());
unary_float!(ROUND, "round", "Ties to even", [], |x| x.round_ties_even());
unary_float!(SQRT, "sqrt", "Square root (NaN below 0)", [], |x| x.sqrt());
unary_float!(EXP, "exp", "e^x", [], |x| x.exp());
unary_float!(LOG, "log", "Natural logarithm", [], |x| x.ln());
unary_float!(ERF, "erf", "Error function", [], |x| erf(x));
unary_float!(SIN, "sin", "Sine", [], |x| x.sin());
unary_float!(COS, "cos", "Cosine", [], |x| x.cos());
unary_float!(TAN, "tan", "Tangent", [], |x| x.tan());
unary_float!(ASIN, "asin", "Arcsine", [], |x| x.asin());
unary_float!(ACOS, "acos", "Arccosine", [], |x| x.acos());
unary_float!(ATAN, "atan", "Arctangent", [], |x| x.atan());
unary_float!(SINH, "sinh", "Hyperbolic sine", [], |x| x.sinh());
unary_float!(COSH, "cosh", "Hyperbolic cosine", [], |x| x.cosh());
unary_float!(TANH, "tanh", "Hyperbolic tangent", [], |x| x.tanh());
unary_float!(ASINH, "asinh", "Inverse sinh", [], |x| x.asinh());
unary_float!(ACOSH, "acosh", "Inverse cosh", [], |x| x.acosh());
unary_float!(ATANH, "atanh", "Inverse tanh", [], |x| x.atanh());
unary_float!(SIGMOID, "sigmoid", "1 / (1 + e^-x)", [], |x| sigmoid(x));
unary_float!(
    HARD_SIGMOID,
    "hard_sigmoid",
    "max(0, min(1, alpha x + beta))",
    [alpha = 0.2, beta = 0.5],
    |x| hard_sigmoid(x, alpha, beta)
);
unary_float!(
    HARD_SWISH,
    "hard_swish",
    "x * max(0, min(1, x/6 + 1/2))",
    [],
    |x| x * hard_sigmoid(x, 1.0 / 6.0, 0.5)
);
unary_float!(
    LEAKY_RELU,
    "leaky_relu",
    "x if x >= 0 else alpha x",
    [alpha = 0.01],
    |x| if x < 0.0 { alpha * x } else { x }
);
unary_float!(
    ELU,
    "elu",
    "x if x >= 0 else alpha (e^x - 1)",
    [alpha = 1.0],
    |x| if x < 0.0 { alpha * x.exp_m1() } else { x }
);
unary_float!(
    SELU,
    "selu",
    "gamma * (x if x > 0 else alpha (e^x - 1))",
    [alpha = 1.673_263_2, gamma = 1.050_701],
    |x| gamma * if x > 0.0 { x } else { alpha * x.exp_m1() }
);
unary_float!(
    CELU,
    "celu",
    "max(0, x) + min(0, alpha (e^(x/alpha) - 1))",
    [alpha = 1.0],
    |x| x.max(0.0) + (alpha * (x / alpha).exp_m1()).min(0.0)
);
unary_float!(MISH, "mish", "x * tanh(softplus(x))", [], |x| mish(x));
unary_float!(SOFTPLUS, "softplus", "ln(1 + e^x)", [], |x| softplus(x));
unary_float!(SOFTSIGN, "softsign", "x / (1 + |x|)", [], |x| softsign(x));
unary_float!(
    THRESHOLDED_RELU,
    "thresholded_relu",
    "x if x > alpha else 0",
    [alpha = 1.0],
    |x| if x > alpha { x } else { 0.0 }
);
unary_float!(SWISH, "swish", "x * sigmoid(alpha x)", [alpha = 1.0], |x| {
    swish(x, alpha)
});

pub static GELU: OpDef = OpDef {
    mnemonic: "gelu",
    summary: "x * Phi(x), exact (approximate = \"none\") or with the tanh approximation",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[attr("approximate", AttrKind::Str, Default::Str("none"))],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        gelu_kernel(&ctx.string("approximate")?)?;
        infer_unary(ctx, Class::Float)
    },
    eval: Some(|ctx| {
        let f = gelu_kernel(&ctx.string("approximate")?)?;
        Ok(vec![map_float(ctx.input(0)?, f)?])
    }),
};

fn gelu_kernel(approximate: &str) -> Result<fn(f64) -> f64, String> {
    match approximate {
        "none" => Ok(gelu_erf),
        "tanh" => Ok(gelu_tanh),
        a => Err(format!(
            "approximate must be \"none\" or \"tanh\", got \"{a}\""
        )),
    }
}

/// A unary op on floats and integers, with a float and an integer scalar function.
macro_rules! unary_num {
    ($name:ident, $mn:literal, $summary:literal, $class:ident, |$x:ident| $ff:expr, |$i:ident| $fi:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("x")],
            results: Results::Fixed(1),
            attrs: &[],
            traits: &[Trait::Elementwise],
            infer: |ctx| infer_unary(ctx, Class::$class),
            eval: Some(|ctx| Ok(vec![map_num(ctx.input(0)?, |$x: f64| $ff, |$i: i128| $fi)?])),
        };
    };
}

unary_num!(
    ABS,
    "abs",
    "|x| (integers wrap: |MIN| = MIN)",
    Num,
    |x| x.abs(),
    |i| i.abs()
);
unary_num!(NEG, "neg", "-x (integers wrap)", SignedNum, |x| -x, |i| -i);
unary_num!(
    SIGN,
    "sign",
    "-1, 0 or 1 by the sign of x (NaN stays NaN)",
    Num,
    |x| sign_f(x),
    |i| i.signum()
);
unary_num!(
    RELU,
    "relu",
    "max(x, 0)",
    SignedNum,
    |x| if x < 0.0 { 0.0 } else { x },
    |i| i.max(0)
);

pub static SHRINK: OpDef = OpDef {
    mnemonic: "shrink",
    summary: "x + bias if x < -lambd, x - bias if x > lambd, else 0",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[
        attr("bias", AttrKind::Float, Default::Float(0.0)),
        attr("lambd", AttrKind::Float, Default::Float(0.5)),
    ],
    traits: &[Trait::Elementwise],
    infer: |ctx| infer_unary(ctx, Class::Num),
    eval: Some(|ctx| {
        let (bias, lambd) = (ctx.float("bias")?, ctx.float("lambd")?);
        let f = |x: f64| {
            if x < -lambd {
                x + bias
            } else if x > lambd {
                x - bias
            } else {
                0.0
            }
        };
        let x = ctx.input(0)?;
        if x.dtype.is_int() {
            // Integer inputs go through the float formula and back.
            let v: Vec<i128> = int_values(x)
                .into_iter()
                .map(|i| float_to_int(x.dtype, f(i as f64)))
                .collect();
            return Ok(vec![int_tensor(x.dtype, x.shape.clone(), &v)]);
        }
        Ok(vec![map_float(x, f)?])
    }),
};

pub static PRELU: OpDef = OpDef {
    mnemonic: "prelu",
    summary: "x if x >= 0 else slope * x (slope broadcasts to x)",
    operands: &[req("x"), req("slope")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: |ctx| infer_nary(ctx, Class::Num, None),
    eval: Some(|ctx| {
        let (x, s) = (ctx.input(0)?, ctx.input(1)?);
        let out = eval_binary_num(
            x,
            s,
            x.dtype,
            |v, a| if v < 0.0 { a * v } else { v },
            |v, a| Ok(if v < 0 { a.wrapping_mul(v) } else { v }),
        )?;
        Ok(vec![out])
    }),
};

pub static CLIP: OpDef = OpDef {
    mnemonic: "clip",
    summary: "Limits x to [min, max] (absent bounds: unbounded; min > max gives max)",
    operands: &[req("x"), opt("min"), opt("max")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let x = ctx.input(0)?;
        check_class("the operand", x.dtype(), Class::Num)?;
        for b in [ctx.opt_input(1), ctx.opt_input(2)].into_iter().flatten() {
            same_dtype(x.dtype(), b.dtype())?;
            if b.num_elements().is_some_and(|n| n != 1) {
                return Err(format!("clip bounds must be scalars, got {b}"));
            }
        }
        Ok(vec![x.clone()])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let bound = |i: usize| -> Result<Option<&Tensor>, String> {
            let Some(b) = ctx.opt_input(i) else {
                return Ok(None);
            };
            same_dtype(x.dtype, b.dtype)?;
            if b.len() != 1 {
                return Err(format!(
                    "clip bounds must be scalars, got shape {:?}",
                    b.shape
                ));
            }
            Ok(Some(b))
        };
        let (lo, hi) = (bound(1)?, bound(2)?);
        let t = if x.dtype.is_float() {
            let lo = lo.map_or(f64::NEG_INFINITY, |t| t.get_f64(0));
            let hi = hi.map_or(f64::INFINITY, |t| t.get_f64(0));
            // NaN propagates; `if`s rather than f64::clamp, which rejects lo > hi.
            map_float(x, |v| {
                let v = if v < lo { lo } else { v };
                if v > hi {
                    hi
                } else {
                    v
                }
            })?
        } else {
            let lo = lo.map_or(i128::MIN, |t| int_values(t)[0]);
            let hi = hi.map_or(i128::MAX, |t| int_values(t)[0]);
            map_num(x, |v| v, |v| v.max(lo).min(hi))?
        };
        Ok(vec![t])
    }),
};

// ---------------------------------------------------------------------------
// Predicates, comparisons, logic

pub static IS_INF: OpDef = OpDef {
    mnemonic: "is_inf",
    summary: "Whether x is infinite (of the signs selected by the attributes)",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[
        attr("detect_negative", AttrKind::Int, Default::Int(1)),
        attr("detect_positive", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[Trait::Elementwise],
    infer: |ctx| infer_unary_pred(ctx, Class::Float),
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        check_class("the operand", x.dtype, Class::Float)?;
        let (neg, pos) = (
            ctx.int("detect_negative")? != 0,
            ctx.int("detect_positive")? != 0,
        );
        let v = x
            .to_f64_vec()
            .iter()
            .map(|&v| v.is_infinite() && if v > 0.0 { pos } else { neg })
            .collect();
        Ok(vec![bool_tensor(x.shape.clone(), v)?])
    }),
};

pub static IS_NAN: OpDef = OpDef {
    mnemonic: "is_nan",
    summary: "Whether x is NaN",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: |ctx| infer_unary_pred(ctx, Class::Float),
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        check_class("the operand", x.dtype, Class::Float)?;
        let v = x.to_f64_vec().iter().map(|v| v.is_nan()).collect();
        Ok(vec![bool_tensor(x.shape.clone(), v)?])
    }),
};

/// A broadcasting comparison with a bool result, one line each. `strings`
/// says whether string operands are accepted.
macro_rules! comparison {
    ($name:ident, $mn:literal, $summary:literal, $op:tt, [$($tr:expr),*], strings: $s:literal) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("lhs"), req("rhs")],
            results: Results::Fixed(1),
            attrs: &[],
            traits: &[Trait::Elementwise $(, $tr)*],
            infer: |ctx| {
                let a = ctx.input(0)?.dtype();
                if !($s && (a == DType::Str || a == DType::Bool)) {
                    check_class("the operands", a, Class::Num)?;
                }
                infer_nary(ctx, Class::Any, Some(DType::Bool))
            },
            eval: Some(|ctx| {
                let (a, b) = (ctx.input(0)?, ctx.input(1)?);
                if let (true, Data::Str(x), Data::Str(y)) = ($s, &a.data, &b.data) {
                    let (shape, v) = zip_idx(a, b, |i, j| Ok(x[i] $op y[j]))?;
                    return Ok(vec![bool_tensor(shape, v)?]);
                }
                Ok(vec![compare(a, b, |x, y| x $op y, |x, y| x $op y)?])
            }),
        };
    };
}

comparison!(EQUAL, "equal", "a == b (numbers, bools, strings)", ==, [Trait::Commutative], strings: true);
comparison!(GREATER, "greater", "a > b", >, [], strings: false);
comparison!(GREATER_OR_EQUAL, "greater_or_equal", "a >= b", >=, [], strings: false);
comparison!(LESS, "less", "a < b", <, [], strings: false);
comparison!(LESS_OR_EQUAL, "less_or_equal", "a <= b", <=, [], strings: false);

/// A broadcasting binary op on bools.
macro_rules! logic {
    ($name:ident, $mn:literal, $summary:literal, $f:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("lhs"), req("rhs")],
            results: Results::Fixed(1),
            attrs: &[],
            traits: &[Trait::Elementwise, Trait::Commutative],
            infer: |ctx| infer_nary(ctx, Class::Bool, None),
            eval: Some(|ctx| {
                let (a, b) = (ctx.input(0)?, ctx.input(1)?);
                let (x, y) = (bools(a)?, bools(b)?);
                let f: fn(bool, bool) -> bool = $f;
                let (shape, v) = zip_idx(a, b, |i, j| Ok(f(x[i], y[j])))?;
                Ok(vec![bool_tensor(shape, v)?])
            }),
        };
    };
}

logic!(AND, "and", "Logical a AND b", |a, b| a & b);
logic!(OR, "or", "Logical a OR b", |a, b| a | b);
logic!(XOR, "xor", "Logical a XOR b", |a, b| a ^ b);

pub static NOT: OpDef = OpDef {
    mnemonic: "not",
    summary: "Logical NOT",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: |ctx| infer_unary(ctx, Class::Bool),
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        Ok(vec![bool_tensor(
            x.shape.clone(),
            bools(x)?.iter().map(|b| !b).collect(),
        )?])
    }),
};

/// A broadcasting bitwise op on integers.
macro_rules! bitwise {
    ($name:ident, $mn:literal, $summary:literal, $f:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("lhs"), req("rhs")],
            results: Results::Fixed(1),
            attrs: &[],
            traits: &[Trait::Elementwise, Trait::Commutative],
            infer: |ctx| infer_nary(ctx, Class::Int, None),
            eval: Some(|ctx| {
                let (a, b) = (ctx.input(0)?, ctx.input(1)?);
                same_dtype(a.dtype, b.dtype)?;
                check_class("the operands", a.dtype, Class::Int)?;
                let f: fn(i128, i128) -> i128 = $f;
                Ok(vec![zip_int(a, b, a.dtype, |x, y| Ok(f(x, y)))?])
            }),
        };
    };
}

bitwise!(BITWISE_AND, "bitwise_and", "Bitwise a AND b", |a, b| a & b);
bitwise!(BITWISE_OR, "bitwise_or", "Bitwise a OR b", |a, b| a | b);
bitwise!(BITWISE_XOR, "bitwise_xor", "Bitwise a XOR b", |a, b| a ^ b);

pub static BITWISE_NOT: OpDef = OpDef {
    mnemonic: "bitwise_not",
    summary: "Bitwise NOT",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: |ctx| infer_unary(ctx, Class::Int),
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        check_class("the operand", x.dtype, Class::Int)?;
        Ok(vec![map_num(x, |v| v, |v| !v)?])
    }),
};

pub static BIT_SHIFT: OpDef = OpDef {
    mnemonic: "bit_shift",
    summary: "x << y or x >> y (direction LEFT/RIGHT); shifts outside [0, width) give 0 (or -1 for negative x shifted right)",
    operands: &[req("x"), req("y")],
    results: Results::Fixed(1),
    attrs: &[attr("direction", AttrKind::Str, Default::Required)],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        shift_right(&ctx.string("direction")?)?;
        infer_nary(ctx, Class::Int, None)
    },
    eval: Some(|ctx| {
        let right = shift_right(&ctx.string("direction")?)?;
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        same_dtype(a.dtype, b.dtype)?;
        check_class("the operands", a.dtype, Class::Int)?;
        let width = a.dtype.bits() as i128;
        // i128 holds every value: `>>` is arithmetic for negative (signed)
        // values and logical for unsigned ones; `<<` keeps the low bits, which
        // the final wrap to the element type needs.
        let t = zip_int(a, b, a.dtype, |x, s| {
            Ok(match (s < 0 || s >= width, right) {
                (true, true) => -((x < 0) as i128),
                (true, false) => 0,
                (false, true) => x >> s,
                (false, false) => x << s,
            })
        })?;
        Ok(vec![t])
    }),
};

fn shift_right(direction: &str) -> Result<bool, String> {
    match direction {
        "RIGHT" => Ok(true),
        "LEFT" => Ok(false),
        d => Err(format!(
            "direction must be \"LEFT\" or \"RIGHT\", got \"{d}\""
        )),
    }
}

// ---------------------------------------------------------------------------
// Selection

pub static WHERE: OpDef = OpDef {
    mnemonic: "where",
    summary: "x where condition else y (three-way broadcast, any element type)",
    operands: &[req("condition"), req("x"), req("y")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let (c, x, y) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        check_class("the condition", c.dtype(), Class::Bool)?;
        same_dtype(x.dtype(), y.dtype())?;
        let shape = broadcast_all([c.shape.as_slice(), x.shape.as_slice(), y.shape.as_slice()])?;
        Ok(vec![TensorType::new(shape, x.dtype())])
    },
    eval: Some(|ctx| {
        let (c, x, y) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        same_dtype(x.dtype, y.dtype)?;
        let cond = bools(c)?;
        let (shape, maps) = broadcast_maps(&[c, x, y])?;
        let data = select(&x.data, &y.data, cond, &maps)?;
        Ok(vec![Tensor::new(x.dtype, shape, data)?])
    }),
};

/// Element k of the result: x[maps[1][k]] where cond[maps[0][k]], else y[maps[2][k]].
fn select(x: &Data, y: &Data, cond: &[bool], maps: &[Vec<usize>]) -> Result<Data, String> {
    // `width` is the number of stored scalars per element (2 for complex).
    fn pick<T: Clone>(
        x: &[T],
        y: &[T],
        cond: &[bool],
        maps: &[Vec<usize>],
        width: usize,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(maps[0].len() * width);
        for k in 0..maps[0].len() {
            let (src, i) = if cond[maps[0][k]] {
                (x, maps[1][k])
            } else {
                (y, maps[2][k])
            };
            out.extend_from_slice(&src[i * width..(i + 1) * width]);
        }
        out
    }
    macro_rules! by_variant {
        ($($v:ident),*) => {
            match (x, y) {
                $((Data::$v(a), Data::$v(b)) => Data::$v(pick(a, b, cond, maps, 1)),)*
                (Data::C64(a), Data::C64(b)) => Data::C64(pick(a, b, cond, maps, 2)),
                (Data::C128(a), Data::C128(b)) => Data::C128(pick(a, b, cond, maps, 2)),
                _ => return Err("x and y have different element types".into()),
            }
        };
    }
    Ok(by_variant!(
        F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, Bool, Str
    ))
}

// ---------------------------------------------------------------------------
// Casts

/// How a value is rounded to a power of two for f8e8m0 (Cast's `round_mode`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum E8m0Round {
    Up,
    Down,
    Nearest,
}

impl E8m0Round {
    pub fn parse(s: &str) -> Result<E8m0Round, String> {
        match s {
            "up" => Ok(E8m0Round::Up),
            "down" => Ok(E8m0Round::Down),
            "nearest" => Ok(E8m0Round::Nearest),
            m => Err(format!(
                "round_mode must be \"up\", \"down\" or \"nearest\", got \"{m}\""
            )),
        }
    }
}

/// Encodes `x` (through its f32 bits, as ONNX defines it) as f8e8m0: the
/// exponent, rounded by `round`; NaN and inf become the NaN code 0xFF;
/// `saturate` keeps a rounding at the top exponent from overflowing to NaN.
pub fn e8m0_encode(x: f32, saturate: bool, round: E8m0Round) -> u8 {
    let bits = x.to_bits();
    let exp = (bits >> 23) & 0xFF;
    if exp == 0xFF {
        return 0xFF;
    }
    let up = match round {
        E8m0Round::Up => bits & 0x7F_FFFF != 0,
        E8m0Round::Down => false,
        E8m0Round::Nearest => {
            let guard = bits & 0x40_0000 != 0;
            let round_bit = bits & 0x20_0000 != 0;
            let sticky = bits & 0x1F_FFFF != 0;
            guard && (round_bit || sticky || exp > 0)
        }
    };
    if up && !(saturate && exp == 0xFE) {
        (exp + 1) as u8
    } else {
        exp as u8
    }
}

/// Float → integer conversion as onnxruntime does it on x86 (C casts):
/// truncation toward zero into a 32-bit (64-bit for i64/u32/u64) integer,
/// then its low bits. Values that the intermediate cannot hold, and NaN,
/// become its minimum (the "integer indefinite"); ONNX leaves them undefined.
pub fn float_to_int(d: DType, x: f64) -> i128 {
    let t = x.trunc();
    let wide = matches!(d, DType::I64 | DType::U64 | DType::U32);
    let bits = if wide { 63 } else { 31 };
    let lo = -(2f64.powi(bits));
    let hi = if d == DType::U64 {
        2f64.powi(64)
    } else {
        2f64.powi(bits)
    };
    let v = if t >= lo && t < hi {
        t as i128
    } else {
        -(1i128 << bits)
    };
    wrap_int(d, v)
}

/// Float values into a float tensor of `d` with Cast's rounding rules:
/// nearest-even, once; fp8 saturates when `saturate`; fp4 always saturates.
fn floats_to_float(
    d: DType,
    shape: Vec<usize>,
    v: &[f64],
    saturate: bool,
    round: E8m0Round,
) -> Tensor {
    let codes = |f: &dyn Fn(f32) -> u8| Data::U8(v.iter().map(|&x| f(f64_to_f32_odd(x))).collect());
    let data = match d {
        DType::F64 => Data::F64(v.to_vec()),
        DType::F32 => Data::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F16 => Data::F16(
            v.iter()
                .map(|&x| f16::from_f32(f64_to_f32_odd(x)))
                .collect(),
        ),
        DType::BF16 => Data::BF16(
            v.iter()
                .map(|&x| bf16::from_f32(f64_to_f32_odd(x)))
                .collect(),
        ),
        DType::F8E8M0 => codes(&|x| e8m0_encode(x, saturate, round)),
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ => {
            codes(&|x| minifloat::encode(d, x, saturate))
        }
        DType::F4E2M1 => codes(&|x| minifloat::encode(d, x, true)),
        _ => return Tensor::from_f64(d, shape, v),
    };
    Tensor {
        dtype: d,
        shape,
        data,
    }
}

pub use crate::minifloat::f64_to_f32_odd;

/// Float values (rounded once, to nearest-even) into a tensor of `d`; what
/// every float kernel here produces. Narrow floats saturate.
pub fn float_tensor(d: DType, shape: Vec<usize>, v: &[f64]) -> Tensor {
    floats_to_float(d, shape, v, true, E8m0Round::Up)
}

/// A unary float kernel: computed in f64, rounded once to the element type.
pub fn map_float(x: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor, String> {
    if let Data::F32(v) = &x.data {
        let out = v.iter().map(|&e| f(e as f64) as f32).collect();
        return Tensor::new(DType::F32, x.shape.clone(), Data::F32(out));
    }
    if !x.dtype.is_float() {
        return Err(format!("expects a float tensor, got {}", x.dtype));
    }
    let v: Vec<f64> = x.to_f64_vec().into_iter().map(f).collect();
    Ok(float_tensor(x.dtype, x.shape.clone(), &v))
}

/// `%.8g`, onnxruntime's format for floats cast to strings, with its words
/// for the special values ("NaN", "INF", "-INF").
pub fn format_float(x: f64) -> String {
    const PREC: i32 = 8;
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-INF" } else { "INF" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    fn strip_zeros(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    let sci = format!("{:.*e}", (PREC - 1) as usize, x);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..PREC).contains(&exp) {
        format!(
            "{}e{}{:02}",
            strip_zeros(mant),
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        strip_zeros(&format!("{:.*}", (PREC - 1 - exp) as usize, x)).to_string()
    }
}

/// The numeric prefix of `s` after leading whitespace, as strtod reads it:
/// a decimal literal or one of the words inf, infinity, nan (any case, signed).
fn float_prefix(s: &str) -> Option<&str> {
    let t = s.trim_start();
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let rest = t[i..].to_ascii_lowercase();
    for w in ["infinity", "inf", "nan"] {
        if rest.starts_with(w) {
            return Some(&t[..i + w.len()]);
        }
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let mut n = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        n += digits(&mut i);
    }
    if n == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if digits(&mut j) > 0 {
            i = j;
        }
    }
    Some(&t[..i])
}

fn parse_float<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    float_prefix(s)
        .and_then(|p| p.parse::<T>().ok())
        .ok_or_else(|| format!("cannot cast string \"{s}\" to a number"))
}

/// The integer prefix of `s` (after whitespace, optionally signed), as strtoll reads it.
fn parse_int(s: &str) -> Result<i128, String> {
    let t = s.trim_start();
    let sign = usize::from(matches!(t.as_bytes().first(), Some(b'+' | b'-')));
    let end = sign + t[sign..].bytes().take_while(u8::is_ascii_digit).count();
    let v: i128 = t[..end]
        .parse()
        .map_err(|_| format!("cannot cast string \"{s}\" to an integer"))?;
    if v < i64::MIN as i128 || v > u64::MAX as i128 {
        return Err(format!("string \"{s}\" is out of the 64-bit integer range"));
    }
    Ok(v)
}

/// ONNX Cast of `x` to `to`: numbers to numbers (floats round to nearest-even,
/// integers wrap, floats truncate into integers, fp8 saturates per
/// `saturate`), bools to and from 0/1, strings parsed and formatted like
/// onnxruntime.
pub fn cast(x: &Tensor, to: DType, saturate: bool, round: E8m0Round) -> Result<Tensor, String> {
    if x.dtype == to {
        return Ok(x.clone());
    }
    let complex = |d: DType| matches!(d, DType::Complex64 | DType::Complex128);
    if complex(x.dtype) || complex(to) {
        return Err(format!("cast from {} to {to} is not supported", x.dtype));
    }
    let shape = x.shape.clone();
    if let Data::Str(s) = &x.data {
        return Ok(match to {
            DType::F32 => {
                let v = s
                    .iter()
                    .map(|e| parse_float::<f32>(e))
                    .collect::<Result<Vec<_>, _>>()?;
                Tensor {
                    dtype: to,
                    shape,
                    data: Data::F32(v),
                }
            }
            d if d.is_float() => {
                let v = s
                    .iter()
                    .map(|e| parse_float::<f64>(e))
                    .collect::<Result<Vec<_>, _>>()?;
                floats_to_float(d, shape, &v, saturate, round)
            }
            d => int_tensor(
                d,
                shape,
                &s.iter()
                    .map(|e| parse_int(e))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        });
    }
    if x.dtype.is_float() {
        let v = x.to_f64_vec();
        return Ok(match to {
            DType::Str => Tensor {
                dtype: to,
                shape,
                data: Data::Str(v.iter().map(|&e| format_float(e)).collect()),
            },
            // NaN is true, as in C and numpy.
            DType::Bool => Tensor {
                dtype: to,
                shape,
                data: Data::Bool(v.iter().map(|&e| e != 0.0).collect()),
            },
            d if d.is_float() => floats_to_float(d, shape, &v, saturate, round),
            d => int_tensor(
                d,
                shape,
                &v.iter().map(|&e| float_to_int(d, e)).collect::<Vec<_>>(),
            ),
        });
    }
    let v = int_values(x);
    Ok(match to {
        DType::Str => Tensor {
            dtype: to,
            shape,
            data: Data::Str(v.iter().map(|e| e.to_string()).collect()),
        },
        // i128 → f32 directly: one rounding.
        DType::F32 => Tensor {
            dtype: to,
            shape,
            data: Data::F32(v.iter().map(|&e| e as f32).collect()),
        },
        d if d.is_float() => {
            let f: Vec<f64> = v.iter().map(|&e| e as f64).collect();
            floats_to_float(d, shape, &f, saturate, round)
        }
        d => int_tensor(d, shape, &v),
    })
}

fn cast_params(ctx: &EvalCtx) -> Result<(bool, E8m0Round), String> {
    Ok((
        ctx.int("saturate")? != 0,
        E8m0Round::parse(&ctx.string("round_mode")?)?,
    ))
}

pub static CAST: OpDef = OpDef {
    mnemonic: "cast",
    summary: "Converts elements to type `to` (numbers, bools, strings, narrow floats)",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[
        attr("to", AttrKind::Type, Default::Required),
        attr("saturate", AttrKind::Int, Default::Int(1)),
        attr("round_mode", AttrKind::Str, Default::Str("up")),
    ],
    traits: &[Trait::Elementwise],
    infer: |ctx| Ok(vec![ctx.input(0)?.with_dtype(ctx.dtype_attr("to")?)]),
    eval: Some(|ctx| {
        let (saturate, round) = cast_params(ctx)?;
        Ok(vec![cast(
            ctx.input(0)?,
            ctx.dtype_attr("to")?,
            saturate,
            round,
        )?])
    }),
};

pub static CAST_LIKE: OpDef = OpDef {
    mnemonic: "cast_like",
    summary: "Converts elements to the element type of `target_type`",
    operands: &[req("input"), req("target_type")],
    results: Results::Fixed(1),
    attrs: &[
        attr("saturate", AttrKind::Int, Default::Int(1)),
        attr("round_mode", AttrKind::Str, Default::Str("up")),
    ],
    traits: &[Trait::Elementwise],
    infer: |ctx| Ok(vec![ctx.input(0)?.with_dtype(ctx.input(1)?.dtype())]),
    eval: Some(|ctx| {
        let (saturate, round) = cast_params(ctx)?;
        Ok(vec![cast(
            ctx.input(0)?,
            ctx.input(1)?.dtype,
            saturate,
            round,
        )?])
    }),
};

pub static BIT_CAST: OpDef = OpDef {
    mnemonic: "bit_cast",
    summary: "Reinterprets the bits of each element as another type of the same width",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[attr("to", AttrKind::Type, Default::Required)],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let (x, to) = (ctx.input(0)?, ctx.dtype_attr("to")?);
        if x.dtype() == DType::Str || to == DType::Str || x.dtype().bits() != to.bits() {
            return Err(format!(
                "cannot reinterpret {} as {to}: bit widths differ",
                x.dtype()
            ));
        }
        Ok(vec![x.with_dtype(to)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        // to_bytes/from_bytes are the little-endian storage form, so this is
        // exactly the ONNX definition.
        Ok(vec![Tensor::from_bytes(
            ctx.dtype_attr("to")?,
            x.shape.clone(),
            &x.to_bytes(),
        )?])
    }),
};

// ---------------------------------------------------------------------------
// Dropout

pub static DROPOUT: OpDef = OpDef {
    mnemonic: "dropout",
    summary: "Identity in inference (mask all true); in training zeroes elements with probability ratio and scales the rest",
    operands: &[req("data"), opt("ratio"), opt("training_mode")],
    results: Results::Range(1, 2),
    attrs: &[attr("seed", AttrKind::Int, Default::Absent)],
    traits: &[Trait::Elementwise, Trait::Random],
    infer: |ctx| {
        let x = ctx.input(0)?;
        check_class("the data", x.dtype(), Class::Float)?;
        if let Some(t) = ctx.opt_input(2) {
            check_class("training_mode", t.dtype(), Class::Bool)?;
        }
        let mut out = vec![x.clone()];
        if ctx.num_results == 2 {
            out.push(x.with_dtype(DType::Bool));
        }
        Ok(out)
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let ratio = match ctx.opt_input(1) {
            Some(r) if r.len() == 1 && r.dtype.is_float() => r.get_f64(0),
            Some(r) => return Err(format!("ratio must be a float scalar, got {} of shape {:?}", r.dtype, r.shape)),
            None => 0.5,
        };
        let training = match ctx.opt_input(2) {
            Some(t) => *bools(t)?.first().ok_or("training_mode is empty")?,
            None => false,
        };
        if !(0.0..1.0).contains(&ratio) {
            return Err(format!("ratio must be in [0, 1), got {ratio}"));
        }
        let dropping = training && ratio > 0.0;
        let mask: Vec<bool> = if dropping {
            // The ONNX reference draws numpy's RandomState(seed).uniform, so
            // a seeded dropout reproduces its masks exactly.
            let seed = if ctx.has_attr("seed") { ctx.int("seed")? } else { 0 };
            let mut rng = Mt19937::new(seed as u32);
            (0..x.len()).map(|_| rng.next_f64() >= ratio).collect()
        } else {
            vec![true; x.len()]
        };
        let out = if dropping {
            // numpy scales in the element type: the factor is rounded to it first.
            let scale = float_tensor(x.dtype, vec![1], &[1.0 / (1.0 - ratio)]).get_f64(0);
            let v: Vec<f64> = x.to_f64_vec().iter().zip(&mask).map(|(&e, &k)| if k { e * scale } else { 0.0 }).collect();
            float_tensor(x.dtype, x.shape.clone(), &v)
        } else {
            x.clone()
        };
        let mut res = vec![out];
        if ctx.num_results == 2 {
            res.push(bool_tensor(x.shape.clone(), mask)?);
        }
        Ok(res)
    }),
};

/// The Mersenne Twister MT19937 with numpy's legacy `RandomState` seeding and
/// 53-bit doubles, so that seeded random ops reproduce the ONNX reference.
pub struct Mt19937 {
    state: [u32; 624],
    pos: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, pos: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7FFF_FFFF);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_B0DF;
            }
            self.state[i] = v;
        }
        self.pos = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9D2C_5680;
        y ^= (y << 15) & 0xEFC6_0000;
        y ^ (y >> 18)
    }

    /// A uniform double in [0, 1), as numpy's `random_sample`.
    pub fn next_f64(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::dim::Dim;
    use crate::ops::testing;

    fn run_n(
        def: &'static OpDef,
        attrs: &[(&str, Attr)],
        ins: &[Option<&Tensor>],
        n: usize,
    ) -> Result<Vec<Tensor>, String> {
        testing::run(def, ins, attrs, n)
    }

    fn run(def: &'static OpDef, attrs: &[(&str, Attr)], ins: &[&Tensor]) -> Result<Tensor, String> {
        Ok(run_n(def, attrs, &testing::some(ins), 1)?.remove(0))
    }

    fn f32s(v: &[f32]) -> Tensor {
        Tensor::f32(vec![v.len()], v.to_vec())
    }

    fn ints(d: DType, v: &[i128]) -> Tensor {
        int_tensor(d, vec![v.len()], v)
    }

    fn strs(v: &[&str]) -> Tensor {
        Tensor::new(
            DType::Str,
            vec![v.len()],
            Data::Str(v.iter().map(|s| s.to_string()).collect()),
        )
        .unwrap()
    }

    fn bits_eq(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn mod_follows_divisor_or_dividend_sign() {
        let a = ints(DType::I8, &[-4, 7, 5, 4, -7, 8]);
        let b = ints(DType::I8, &[2, -3, 8, -2, 3, 5]);
        // numpy.mod and numpy.fmod
        assert_eq!(
            run(&MOD, &[], &[&a, &b]).unwrap().to_i64_vec(),
            vec![0, -2, 5, 0, 2, 3]
        );
        assert_eq!(
            run(&MOD, &[("fmod", Attr::Int(1))], &[&a, &b])
                .unwrap()
                .to_i64_vec(),
            vec![0, 1, 5, 0, -1, 3]
        );
        assert!(run(&MOD, &[], &[&a, &ints(DType::I8, &[0])]).is_err());
    }

    #[test]
    fn float_mod_edge_cases() {
        // ONNX test_mod_float_edge_cases_fmod_0
        let inf = f32::INFINITY;
        let a = f32s(&[
            0.,
            -0.,
            0.,
            -0.,
            -3.,
            3.,
            -1.,
            1.,
            inf,
            -inf,
            1.,
            1.,
            f32::NAN,
            1.,
        ]);
        let b = f32s(&[
            -2.,
            2.,
            2.,
            -2.,
            inf,
            inf,
            -inf,
            -inf,
            2.,
            2.,
            0.,
            -0.,
            2.,
            f32::NAN,
        ]);
        let want = [
            -0.,
            0.,
            0.,
            -0.,
            inf,
            3.,
            -1.,
            -inf,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
        ];
        let got = run(&MOD, &[], &[&a, &b]).unwrap().to_f64_vec();
        assert!(bits_eq(&got, &want.map(f64::from)), "{got:?}");
    }

    #[test]
    fn integer_division_truncates_and_checks_zero() {
        let q = run(
            &DIV,
            &[],
            &[
                &ints(DType::I32, &[-7, 7, 7]),
                &ints(DType::I32, &[2, -2, 2]),
            ],
        )
        .unwrap();
        assert_eq!(q.to_i64_vec(), vec![-3, -3, 3]);
        assert!(run(
            &DIV,
            &[],
            &[&ints(DType::I32, &[1]), &ints(DType::I32, &[0])]
        )
        .is_err());
        let big = ints(DType::U64, &[u64::MAX as i128]);
        let q = run(&DIV, &[], &[&big, &ints(DType::U64, &[2])]).unwrap();
        assert_eq!(q.data, Data::U64(vec![u64::MAX / 2]));
        let s = run(
            &ADD,
            &[],
            &[&ints(DType::U8, &[250]), &ints(DType::U8, &[10])],
        )
        .unwrap();
        assert_eq!(s.data, Data::U8(vec![4]));
    }

    #[test]
    fn erf_matches_libm() {
        // Python math.erf
        let cases = [
            (0.1, 0.1124629160182849),
            (-0.5, -0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.4, 0.999311486103355),
            (3.0, 0.9999779095030014),
            (5.0, 0.9999999999984626),
        ];
        for (x, want) in cases {
            assert!(
                (erf(x) - want).abs() <= 4e-16 * want.abs(),
                "erf({x}) = {}",
                erf(x)
            );
        }
        assert_eq!(erf(-0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(erf(f64::INFINITY), 1.0);
    }

    #[test]
    fn gelu_both_forms() {
        let x = f32s(&[1.5, -1.0]);
        let exact = run(&GELU, &[], &[&x]).unwrap().to_f64_vec();
        // x/2 (1 + erf(x/sqrt 2)) with Python's math.erf
        assert!(
            (exact[0] - 1.399_789_2).abs() < 1e-6 && (exact[1] + 0.158_655_25).abs() < 1e-6,
            "{exact:?}"
        );
        let approx = run(&GELU, &[("approximate", Attr::Str("tanh".into()))], &[&x]).unwrap();
        assert_eq!(approx.to_f32_vec()[0], 1.399_571_5);
        assert!(run(&GELU, &[("approximate", Attr::Str("fast".into()))], &[&x]).is_err());
    }

    #[test]
    fn integer_unary_ops_wrap() {
        assert_eq!(
            run(&ABS, &[], &[&ints(DType::I8, &[-128, -5])])
                .unwrap()
                .to_i64_vec(),
            vec![-128, 5]
        );
        assert_eq!(
            run(&NEG, &[], &[&ints(DType::I8, &[-128, 3])])
                .unwrap()
                .to_i64_vec(),
            vec![-128, -3]
        );
        assert_eq!(
            run(&BITWISE_NOT, &[], &[&ints(DType::U8, &[5])])
                .unwrap()
                .to_i64_vec(),
            vec![250]
        );
        assert_eq!(
            run(&SIGN, &[], &[&ints(DType::I32, &[-9, 0, 4])])
                .unwrap()
                .to_i64_vec(),
            vec![-1, 0, 1]
        );
        let s = run(&SIGN, &[], &[&f32s(&[-2.5, 0.0, f32::NAN])])
            .unwrap()
            .to_f64_vec();
        assert!(s[0] == -1.0 && s[1] == 0.0 && s[2].is_nan());
    }

    #[test]
    fn bit_shifts() {
        let left = [("direction", Attr::Str("LEFT".into()))];
        let right = [("direction", Attr::Str("RIGHT".into()))];
        let r = run(
            &BIT_SHIFT,
            &left,
            &[&ints(DType::U8, &[1, 64, 1]), &ints(DType::U8, &[3, 2, 8])],
        )
        .unwrap();
        assert_eq!(r.to_i64_vec(), vec![8, 0, 0]);
        let r = run(
            &BIT_SHIFT,
            &right,
            &[
                &ints(DType::I8, &[-16, -16, 16]),
                &ints(DType::I8, &[2, 9, -1]),
            ],
        )
        .unwrap();
        assert_eq!(r.to_i64_vec(), vec![-4, -1, 0]);
        let big = ints(DType::U64, &[1 << 63]);
        let r = run(&BIT_SHIFT, &right, &[&big, &ints(DType::U64, &[63])]).unwrap();
        assert_eq!(r.to_i64_vec(), vec![1]);
        assert!(run(
            &BIT_SHIFT,
            &[("direction", Attr::Str("UP".into()))],
            &[&big, &big]
        )
        .is_err());
    }

    #[test]
    fn comparisons() {
        let a = ints(DType::U64, &[u64::MAX as i128, 3]);
        let b = ints(DType::U64, &[1, 3]);
        assert_eq!(
            run(&GREATER, &[], &[&a, &b]).unwrap().data,
            Data::Bool(vec![true, false])
        );
        assert_eq!(
            run(&LESS_OR_EQUAL, &[], &[&a, &b]).unwrap().data,
            Data::Bool(vec![false, true])
        );
        let e = run(&EQUAL, &[], &[&strs(&["a", "b"]), &strs(&["b"])]).unwrap();
        assert_eq!(e.data, Data::Bool(vec![false, true]));
        assert!(run(&GREATER, &[], &[&strs(&["a"]), &strs(&["b"])]).is_err());
        let n = run(
            &EQUAL,
            &[],
            &[&f32s(&[f32::NAN, 1.0]), &f32s(&[f32::NAN, 1.0])],
        )
        .unwrap();
        assert_eq!(n.data, Data::Bool(vec![false, true]));
        assert!(run(&EQUAL, &[], &[&f32s(&[1.0]), &ints(DType::I32, &[1])]).is_err());
    }

    #[test]
    fn where_broadcasts_any_type() {
        let c = Tensor::new(DType::Bool, vec![2, 1], Data::Bool(vec![true, false])).unwrap();
        let r = run(&WHERE, &[], &[&c, &strs(&["x0", "x1"]), &strs(&["y"])]).unwrap();
        assert_eq!(r.shape, vec![2, 2]);
        assert_eq!(
            r.data,
            Data::Str(vec!["x0".into(), "x1".into(), "y".into(), "y".into()])
        );
        let r = run(
            &WHERE,
            &[],
            &[&c, &ints(DType::I64, &[1]), &ints(DType::I64, &[2])],
        )
        .unwrap();
        assert_eq!(r.to_i64_vec(), vec![1, 2]);
    }

    #[test]
    fn logic_and_bitwise() {
        let t = Tensor::new(
            DType::Bool,
            vec![4],
            Data::Bool(vec![true, true, false, false]),
        )
        .unwrap();
        let u = Tensor::new(
            DType::Bool,
            vec![4],
            Data::Bool(vec![true, false, true, false]),
        )
        .unwrap();
        assert_eq!(
            run(&XOR, &[], &[&t, &u]).unwrap().data,
            Data::Bool(vec![false, true, true, false])
        );
        assert_eq!(
            run(&AND, &[], &[&t, &u]).unwrap().data,
            Data::Bool(vec![true, false, false, false])
        );
        assert_eq!(
            run(&NOT, &[], &[&u]).unwrap().data,
            Data::Bool(vec![false, true, false, true])
        );
        let x = run(
            &BITWISE_XOR,
            &[],
            &[&ints(DType::I16, &[-1, 12]), &ints(DType::I16, &[5, 10])],
        )
        .unwrap();
        assert_eq!(x.to_i64_vec(), vec![-6, 6]);
    }

    #[test]
    fn cast_numbers_like_onnxruntime() {
        let up = E8m0Round::Up;
        // ONNX test_cast_FLOAT_to_INT4: wraps
        let x = f32s(&[-9.0, -8.0, 7.0, 8.0, 15.0]);
        assert_eq!(
            cast(&x, DType::I4, true, up).unwrap().to_i64_vec(),
            vec![7, -8, 7, -8, -1]
        );
        // onnxruntime on x86: 200.7 → -56, 1e10 and NaN → 0 (via int32); 3e9 → INT32_MIN
        let x = f32s(&[200.7, -3.9, 1e10, f32::NAN]);
        assert_eq!(
            cast(&x, DType::I8, true, up).unwrap().to_i64_vec(),
            vec![-56, -3, 0, 0]
        );
        assert_eq!(
            cast(&f32s(&[3e9]), DType::I32, true, up)
                .unwrap()
                .to_i64_vec(),
            vec![i32::MIN as i64]
        );
        assert_eq!(
            cast(&f32s(&[-1.0, 300.0]), DType::U8, true, up)
                .unwrap()
                .to_i64_vec(),
            vec![255, 44]
        );
        assert_eq!(
            cast(&ints(DType::I16, &[200]), DType::I8, true, up)
                .unwrap()
                .to_i64_vec(),
            vec![-56]
        );
        let b = cast(&f32s(&[0.0, -0.0, f32::NAN, 2.0]), DType::Bool, true, up).unwrap();
        assert_eq!(b.data, Data::Bool(vec![false, false, true, true]));
        // i64 → f32 rounds once: 2^24 + 1 is a tie, to even
        let r = cast(
            &ints(DType::I64, &[(1 << 24) + 1, (1 << 24) + 3]),
            DType::F32,
            true,
            up,
        )
        .unwrap();
        assert_eq!(r.data, Data::F32(vec![16777216.0, 16777220.0]));
    }

    #[test]
    fn cast_to_narrow_floats() {
        let up = E8m0Round::Up;
        // ONNX test_cast_e8m0_FLOAT_to_FLOAT8E8M0 (round up, saturate)
        let x = f32s(&[0.0, 0.124, 0.25, 0.5, 1.1, 2.0, 4.0, 8.0]);
        let r = cast(&x, DType::F8E8M0, true, up).unwrap();
        let want = [2f64.powi(-127), 0.125, 0.25, 0.5, 2.0, 2.0, 4.0, 8.0];
        assert_eq!(r.to_f64_vec(), want);
        assert_eq!(e8m0_encode(1.1, true, E8m0Round::Down), 127);
        assert_eq!(e8m0_encode(f32::MAX, true, up), 0xFE);
        assert_eq!(e8m0_encode(f32::MAX, false, up), 0xFF);
        // e4m3fn: 1000 saturates to 448, or is NaN without saturation
        let r = cast(&f32s(&[1000.0]), DType::F8E4M3FN, true, up).unwrap();
        assert_eq!(r.to_f64_vec(), vec![448.0]);
        let r = cast(&f32s(&[1000.0]), DType::F8E4M3FN, false, up).unwrap();
        assert!(r.to_f64_vec()[0].is_nan());
        // fp4 always saturates
        let r = cast(&f32s(&[1e6, -3.5, 0.25]), DType::F4E2M1, false, up).unwrap();
        assert_eq!(r.to_f64_vec(), vec![6.0, -4.0, 0.0]);
    }

    #[test]
    fn f64_to_narrow_floats_rounds_once() {
        // 1 + 2^-11 + 2^-40 is just above the f16 tie between 1 and 1 + 2^-10:
        // it must round up, though its top 32 bits look like an exact tie.
        let x = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        let t = cast(
            &Tensor::new(DType::F64, vec![1], Data::F64(vec![x])).unwrap(),
            DType::F16,
            true,
            E8m0Round::Up,
        );
        assert_eq!(t.unwrap().to_f64_vec(), vec![1.0 + 2f64.powi(-10)]);
        let y = 1.0 + 2f64.powi(-8) + 2f64.powi(-45);
        assert_eq!(
            float_tensor(DType::BF16, vec![1], &[y]).to_f64_vec(),
            vec![1.0 + 2f64.powi(-7)]
        );
        assert_eq!(f64_to_f32_odd(1.0), 1.0);
        assert_eq!(
            f64_to_f32_odd(1e300),
            f32::from_bits(f32::MAX.to_bits() | 1)
        );
        assert_eq!(
            f64_to_f32_odd(-1.0 - 2f64.powi(-30)),
            -f32::from_bits(1.0f32.to_bits() | 1)
        );
    }

    #[test]
    fn cast_strings() {
        let up = E8m0Round::Up;
        // onnxruntime's "%.8g" formatting
        let x = f32s(&[
            0.1,
            1e-5,
            1e20,
            3.0,
            f32::NAN,
            f32::NEG_INFINITY,
            -0.0,
            123456789.0,
            1234567.0,
        ]);
        let s = cast(&x, DType::Str, true, up).unwrap();
        let want = [
            "0.1",
            "9.9999997e-06",
            "1e+20",
            "3",
            "NaN",
            "-INF",
            "-0",
            "1.2345679e+08",
            "1234567",
        ];
        assert_eq!(
            s.data,
            Data::Str(want.iter().map(|s| s.to_string()).collect())
        );
        assert_eq!(format_float(99999999.5), "1e+08");
        assert_eq!(format_float(0.0001), "0.0001");
        let s = strs(&[
            "2.75", "1e-5", "+INF", "-Inf", "nan", " 2", "1.5abc", "infinity",
        ]);
        let f = cast(&s, DType::F64, true, up).unwrap().to_f64_vec();
        assert_eq!(f[..3], [2.75, 1e-5, f64::INFINITY]);
        assert!(
            f[3] == f64::NEG_INFINITY
                && f[4].is_nan()
                && f[5] == 2.0
                && f[6] == 1.5
                && f[7] == f64::INFINITY
        );
        assert!(cast(&strs(&["abc"]), DType::F32, true, up).is_err());
        assert_eq!(
            cast(&strs(&["3", "-7", "+5", "3.7"]), DType::I32, true, up)
                .unwrap()
                .to_i64_vec(),
            vec![3, -7, 5, 3]
        );
        assert!(cast(&strs(&["x1"]), DType::I32, true, up).is_err());
        let s = cast(&ints(DType::Bool, &[1, 0]), DType::Str, true, up).unwrap();
        assert_eq!(s.data, Data::Str(vec!["1".into(), "0".into()]));
    }

    #[test]
    fn clip_bounds() {
        let x = f32s(&[-2.0, 0.5, 3.0, f32::NAN]);
        let (lo, hi) = (
            Tensor::f32(vec![], vec![-1.0]),
            Tensor::f32(vec![], vec![1.0]),
        );
        let r = run_n(&CLIP, &[], &[Some(&x), Some(&lo), Some(&hi)], 1)
            .unwrap()
            .remove(0)
            .to_f64_vec();
        assert!(r[..3] == [-1.0, 0.5, 1.0] && r[3].is_nan());
        // min > max: everything is max (numpy.clip)
        let r = run_n(&CLIP, &[], &[Some(&x), Some(&hi), Some(&lo)], 1)
            .unwrap()
            .remove(0)
            .to_f64_vec();
        assert_eq!(r[..3], [-1.0, -1.0, -1.0]);
        let xi = ints(DType::I8, &[-128, 0, 127]);
        let m = ints(DType::I8, &[100]);
        let r = run_n(&CLIP, &[], &[Some(&xi), None, Some(&m)], 1)
            .unwrap()
            .remove(0);
        assert_eq!(r.to_i64_vec(), vec![-128, 0, 100]);
    }

    #[test]
    fn variadic_ops() {
        let a = Tensor::f32(vec![2, 1], vec![1.0, f32::NAN]);
        let b = f32s(&[0.0, 3.0]);
        let m = run(&MAX, &[], &[&a, &b]).unwrap();
        assert_eq!(m.shape, vec![2, 2]);
        let v = m.to_f64_vec();
        assert!(v[..2] == [1.0, 3.0] && v[2].is_nan() && v[3].is_nan());
        assert_eq!(run(&MIN, &[], &[&b]).unwrap(), b);
        let mean = run(
            &MEAN,
            &[],
            &[&f32s(&[1.0, 2.0]), &f32s(&[2.0, 2.0]), &f32s(&[0.0, 5.0])],
        )
        .unwrap();
        assert_eq!(mean.to_f64_vec(), vec![1.0, 3.0]);
        let mx = run(
            &MAX,
            &[],
            &[
                &ints(DType::U64, &[u64::MAX as i128]),
                &ints(DType::U64, &[1]),
            ],
        )
        .unwrap();
        assert_eq!(mx.data, Data::U64(vec![u64::MAX]));
        assert!(run_n(&SUM, &[], &[], 1).is_err());
    }

    #[test]
    fn pow_mixed_types() {
        let r = run(
            &POW,
            &[],
            &[
                &ints(DType::I32, &[2, 2, -1, 3]),
                &ints(DType::I32, &[10, -1, -3, 0]),
            ],
        )
        .unwrap();
        assert_eq!(r.to_i64_vec(), vec![1024, 0, -1, 1]);
        let r = run(&POW, &[], &[&ints(DType::I64, &[2, 9]), &f32s(&[0.5, 0.5])]).unwrap();
        assert_eq!((r.dtype, r.to_i64_vec()), (DType::I64, vec![1, 3]));
        let r = run(
            &POW,
            &[],
            &[&f32s(&[2.0, -2.0]), &ints(DType::I64, &[3, 2])],
        )
        .unwrap();
        assert_eq!((r.dtype, r.to_f64_vec()), (DType::F32, vec![8.0, 4.0]));
        assert!(run(
            &POW,
            &[],
            &[&ints(DType::I32, &[0]), &ints(DType::I32, &[-1])]
        )
        .is_err());
    }

    #[test]
    fn activations_with_attributes() {
        // Selu's defaults are the f32 constants ONNX stores.
        let r = run(&SELU, &[], &[&f32s(&[-1.0, 2.0])])
            .unwrap()
            .to_f32_vec();
        assert_eq!(r[1], 2.101_402);
        assert!((r[0] - (-1.111_330_7)).abs() < 1e-6);
        let r = run(
            &LEAKY_RELU,
            &[("alpha", Attr::Float(0.5))],
            &[&f32s(&[-4.0, 3.0])],
        )
        .unwrap();
        assert_eq!(r.to_f64_vec(), vec![-2.0, 3.0]);
        let r = run(&HARD_SIGMOID, &[], &[&f32s(&[-10.0, 0.0, 10.0])]).unwrap();
        assert_eq!(r.to_f64_vec(), vec![0.0, 0.5, 1.0]);
        let r = run(
            &SHRINK,
            &[("bias", Attr::Float(1.5)), ("lambd", Attr::Float(1.5))],
            &[&ints(DType::I32, &[-3, 1, 3])],
        )
        .unwrap();
        // onnxruntime: the float results -1.5 and 1.5 truncate
        assert_eq!(r.to_i64_vec(), vec![-1, 0, 1]);
        let r = run(&ROUND, &[], &[&f32s(&[0.5, 1.5, 2.5, -2.5])]).unwrap();
        assert_eq!(r.to_f64_vec(), vec![0.0, 2.0, 2.0, -2.0]);
        let p = run(
            &PRELU,
            &[],
            &[
                &Tensor::f32(vec![2, 2], vec![-1.0, -1.0, 2.0, -4.0]),
                &f32s(&[0.5, 0.25]),
            ],
        )
        .unwrap();
        assert_eq!(p.to_f64_vec(), vec![-0.5, -0.25, 2.0, -1.0]);
        let r = run(
            &IS_INF,
            &[("detect_negative", Attr::Int(0))],
            &[&f32s(&[f32::INFINITY, f32::NEG_INFINITY, 1.0])],
        )
        .unwrap();
        assert_eq!(r.data, Data::Bool(vec![true, false, false]));
    }

    #[test]
    fn mt19937_matches_numpy() {
        // numpy.random.RandomState(0).uniform(0, 1, 3) and RandomState(5489).randint(2**32)
        let mut r = Mt19937::new(0);
        let v: Vec<f64> = (0..3).map(|_| r.next_f64()).collect();
        assert_eq!(
            v,
            vec![0.5488135039273248, 0.7151893663724195, 0.6027633760716439]
        );
        assert_eq!(Mt19937::new(5489).next_u32(), 3499211612);
    }

    #[test]
    fn dropout_inference_and_training() {
        let x = f32s(&[1.0; 1000]);
        let out = run_n(&DROPOUT, &[], &[Some(&x)], 2).unwrap();
        assert_eq!(out[0], x);
        assert_eq!(out[1].data, Data::Bool(vec![true; 1000]));
        let ratio = Tensor::f32(vec![], vec![0.25]);
        let training = Tensor::new(DType::Bool, vec![], Data::Bool(vec![true])).unwrap();
        let out = run_n(
            &DROPOUT,
            &[("seed", Attr::Int(7))],
            &[Some(&x), Some(&ratio), Some(&training)],
            2,
        )
        .unwrap();
        let kept = out[0].to_f64_vec().iter().filter(|&&v| v != 0.0).count();
        assert!((700..800).contains(&kept), "{kept} kept");
        assert!(out[0]
            .to_f64_vec()
            .iter()
            .all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
        let again = run_n(
            &DROPOUT,
            &[("seed", Attr::Int(7))],
            &[Some(&x), Some(&ratio), Some(&training)],
            2,
        )
        .unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn inference_rules() {
        let attrs = Attrs::new();
        let b = Dim::sym("batch");
        let a = TensorType::new(vec![b.clone(), Dim::fixed(1)], DType::F32);
        let c = TensorType::new(vec![Dim::fixed(4)], DType::F32);
        fn ctx<'a>(
            def: &'static OpDef,
            attrs: &'a Attrs,
            ops: Vec<Option<&'a TensorType>>,
        ) -> InferCtx<'a> {
            InferCtx {
                def,
                attrs,
                consts: vec![None; ops.len()],
                syms: Vec::new(),
                operands: ops,
                num_results: 1,
            }
        }
        let r = (GREATER.infer)(&ctx(&GREATER, &attrs, vec![Some(&a), Some(&c)])).unwrap();
        assert_eq!(
            r[0],
            TensorType::new(vec![b.clone(), Dim::fixed(4)], DType::Bool)
        );
        let i = TensorType::new(vec![Dim::fixed(4)], DType::I32);
        assert!((SQRT.infer)(&ctx(&SQRT, &attrs, vec![Some(&i)])).is_err());
        assert!((ADD.infer)(&ctx(&ADD, &attrs, vec![Some(&a), Some(&i)])).is_err());
        let r = (POW.infer)(&ctx(&POW, &attrs, vec![Some(&a), Some(&i)])).unwrap();
        assert_eq!(r[0].dtype(), DType::F32);
        let cond = TensorType::new(vec![Dim::fixed(4)], DType::Bool);
        let r = (WHERE.infer)(&ctx(&WHERE, &attrs, vec![Some(&cond), Some(&a), Some(&c)])).unwrap();
        assert_eq!(r[0].shape, vec![b, Dim::fixed(4)]);
    }
}
