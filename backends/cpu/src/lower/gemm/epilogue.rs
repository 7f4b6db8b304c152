//! What happens to an accumulated product on its way to memory:
//! `y = act(alpha * acc + sum(scale_i * pre_i)) + post`, covering Gemm's
//! `alpha * AB + beta * C` and `linear`'s `act(AB + bias) + residual`.
//! The formulas are written once over a scalar or vector type, so the
//! microkernel applies them to its registers and the plain loops to scalars.

use super::text::{fconst, Emit};
use super::Operand;

/// An epilogue activation (`linear`'s `activation` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    Gelu,
    GeluTanh,
    Silu,
    Sigmoid,
    Tanh,
}

impl Act {
    pub const ALL: &'static [(&'static str, Act)] = &[
        ("none", Act::None),
        ("relu", Act::Relu),
        ("gelu", Act::Gelu),
        ("gelu_tanh", Act::GeluTanh),
        ("silu", Act::Silu),
        ("sigmoid", Act::Sigmoid),
        ("tanh", Act::Tanh),
    ];

    pub fn from_name(s: &str) -> Result<Act, String> {
        Act::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, a)| *a)
            .ok_or_else(|| format!("unknown activation \"{s}\""))
    }

    pub fn name(self) -> &'static str {
        Act::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("none")
    }
}

/// A tensor added to the product, optionally scaled.
#[derive(Clone, Debug)]
pub struct Addend {
    pub op: Operand,
    pub scale: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Epilogue {
    pub alpha: Option<f64>,
    /// Added before the activation.
    pub pre: Vec<Addend>,
    pub act: Act,
    /// Added after the activation.
    pub post: Option<Addend>,
}

impl Epilogue {
    pub fn none() -> Epilogue {
        Epilogue {
            alpha: None,
            pre: Vec::new(),
            act: Act::None,
            post: None,
        }
    }

    /// Every addend, `pre` first then `post`.
    pub fn addends(&self) -> impl Iterator<Item = &Addend> {
        self.pre.iter().chain(self.post.iter())
    }

    pub fn operands(&self) -> impl Iterator<Item = &Operand> {
        self.addends().map(|a| &a.op)
    }

    pub fn operands_mut(&mut self) -> impl Iterator<Item = &mut Operand> {
        self.pre
            .iter_mut()
            .chain(self.post.iter_mut())
            .map(|a| &mut a.op)
    }
}

/// What [`apply`] needs to know of an epilogue besides its values.
#[derive(Clone, Copy, Debug)]
pub struct EpiShape {
    pub pre: usize,
    pub act: Act,
    pub post: bool,
}

impl Epilogue {
    pub fn shape(&self) -> EpiShape {
        EpiShape {
            pre: self.pre.len(),
            act: self.act,
            post: self.post.is_some(),
        }
    }
}

/// How values of the compute type add and multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Float,
    Int,
}

/// SSA values an epilogue needs, already in the compute type: `alpha` and
/// one optional scale per addend (in [`Epilogue::addends`] order).
pub struct Params {
    pub alpha: Option<String>,
    pub scales: Vec<Option<String>>,
}

/// Applies `epi` to `y` (of type `ty`); `load(e, i)` yields addend `i` at
/// the current position in `ty`. Returns the final value.
pub fn apply(
    e: &mut dyn Emit,
    epi: &EpiShape,
    ty: &str,
    arith: Arith,
    mut y: String,
    params: &Params,
    load: &mut dyn FnMut(&mut dyn Emit, usize) -> String,
) -> Result<String, String> {
    let (add, mul) = match arith {
        Arith::Float => ("arith.addf", "arith.mulf"),
        Arith::Int => ("arith.addi", "arith.muli"),
    };
    if let Some(a) = &params.alpha {
        y = e.op(format!("{mul} {y}, {a} : {ty}"));
    }
    let add_one = |e: &mut dyn Emit,
                   y: String,
                   i: usize,
                   load: &mut dyn FnMut(&mut dyn Emit, usize) -> String| {
        let v = load(e, i);
        match (&params.scales[i], arith) {
            (Some(s), Arith::Float) => e.op(format!("math.fma {v}, {s}, {y} : {ty}")),
            (Some(s), Arith::Int) => {
                let t = e.op(format!("{mul} {v}, {s} : {ty}"));
                e.op(format!("{add} {y}, {t} : {ty}"))
            }
            (None, _) => e.op(format!("{add} {y}, {v} : {ty}")),
        }
    };
    for i in 0..epi.pre {
        y = add_one(e, y, i, load);
    }
    if epi.act != Act::None {
        if arith == Arith::Int {
            return Err(format!("activation {} on integers", epi.act.name()));
        }
        y = activation(e, epi.act, &y, ty)?;
    }
    if epi.post {
        y = add_one(e, y, epi.pre, load);
    }
    Ok(y)
}

/// libm functions the f64 activations call, as module-level declarations.
pub fn libm_decls(act: Act) -> &'static [(&'static str, &'static str)] {
    match act {
        Act::Gelu => &[("erf", "  func.func private @erf(f64) -> f64\n")],
        Act::GeluTanh | Act::Tanh => &[("tanh", "  func.func private @tanh(f64) -> f64\n")],
        _ => &[],
    }
}

/// `act(x)` in type `ty`: f32 scalars or vectors use branch-free rational
/// approximations (a few ulp, no libm calls, so they vectorize); f64 calls
/// libm (declared through [`libm_decls`]).
pub fn activation(e: &mut dyn Emit, act: Act, x: &str, ty: &str) -> Result<String, String> {
    let c = |e: &mut dyn Emit, v: f64| fconst(e, ty, v);
    let f64_scalar = ty == "f64";
    Ok(match act {
        Act::None => x.to_string(),
        Act::Relu => {
            let z = c(e, 0.0);
            e.op(format!("arith.maximumf {x}, {z} : {ty}"))
        }
        Act::Tanh => tanh(e, x, ty, f64_scalar),
        Act::Sigmoid => sigmoid(e, x, ty, f64_scalar),
        Act::Silu => {
            let s = sigmoid(e, x, ty, f64_scalar);
            e.op(format!("arith.mulf {x}, {s} : {ty}"))
        }
        Act::Gelu => {
            // 0.5 x (1 + erf(x / sqrt 2))
            let r = c(e, std::f64::consts::FRAC_1_SQRT_2);
            let u = e.op(format!("arith.mulf {x}, {r} : {ty}"));
            let er = if f64_scalar {
                e.op(format!("func.call @erf({u}) : (f64) -> f64"))
            } else {
                erf_f32(e, &u, ty)
            };
            half_x_one_plus(e, x, &er, ty)
        }
        Act::GeluTanh => {
            // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            let x2 = e.op(format!("arith.mulf {x}, {x} : {ty}"));
            let k = c(e, 0.044715);
            let one = c(e, 1.0);
            let p = e.op(format!("math.fma {x2}, {k}, {one} : {ty}"));
            let inner = e.op(format!("arith.mulf {x}, {p} : {ty}"));
            let s = c(e, (2.0 / std::f64::consts::PI).sqrt());
            let u = e.op(format!("arith.mulf {inner}, {s} : {ty}"));
            let t = tanh(e, &u, ty, f64_scalar);
            half_x_one_plus(e, x, &t, ty)
        }
    })
}

/// `0.5 * x * (1 + t)`.
fn half_x_one_plus(e: &mut dyn Emit, x: &str, t: &str, ty: &str) -> String {
    let one = fconst(e, ty, 1.0);
    let half = fconst(e, ty, 0.5);
    let s = e.op(format!("arith.addf {t}, {one} : {ty}"));
    let hx = e.op(format!("arith.mulf {x}, {half} : {ty}"));
    e.op(format!("arith.mulf {hx}, {s} : {ty}"))
}

/// `1 / (1 + exp(-x))` as `0.5 + 0.5 tanh(x / 2)`, which needs no exp.
fn sigmoid(e: &mut dyn Emit, x: &str, ty: &str, f64_scalar: bool) -> String {
    let half = fconst(e, ty, 0.5);
    let hx = e.op(format!("arith.mulf {x}, {half} : {ty}"));
    let t = tanh(e, &hx, ty, f64_scalar);
    e.op(format!("math.fma {t}, {half}, {half} : {ty}"))
}

/// Horner evaluation of `coeffs` (highest degree first) at `x`.
fn horner(e: &mut dyn Emit, x: &str, coeffs: &[f64], ty: &str) -> String {
    let mut acc = fconst(e, ty, coeffs[0]);
    for &cf in &coeffs[1..] {
        let c = fconst(e, ty, cf);
        acc = e.op(format!("math.fma {x}, {acc}, {c} : {ty}"));
    }
    acc
}

fn clamp(e: &mut dyn Emit, x: &str, lim: f64, ty: &str) -> String {
    let hi = fconst(e, ty, lim);
    let lo = fconst(e, ty, -lim);
    let t = e.op(format!("arith.minimumf {x}, {hi} : {ty}"));
    e.op(format!("arith.maximumf {t}, {lo} : {ty}"))
}

fn tanh(e: &mut dyn Emit, x: &str, ty: &str, f64_scalar: bool) -> String {
    if f64_scalar {
        return e.op(format!("func.call @tanh({x}) : (f64) -> f64"));
    }
    // Rational minimax approximation on [-7.9, 7.9] (beyond it tanh rounds
    // to +-1 in f32); odd numerator, even denominator. Near 0 the identity
    // is more accurate than the ratio of two tiny numbers.
    let xc = clamp(e, x, 7.905_311_107_635_498, ty);
    let x2 = e.op(format!("arith.mulf {xc}, {xc} : {ty}"));
    let p = horner(
        e,
        &x2,
        &[
            -2.760_768_477_423_55e-16,
            2.000_187_904_824_77e-13,
            -8.604_671_522_137_35e-11,
            5.122_297_090_371_14e-08,
            1.485_722_357_179_79e-05,
            6.372_619_288_754_36e-04,
            4.893_524_558_917_86e-03,
        ],
        ty,
    );
    let p = e.op(format!("arith.mulf {xc}, {p} : {ty}"));
    let q = horner(
        e,
        &x2,
        &[
            1.198_258_394_667_02e-06,
            1.185_347_056_866_54e-04,
            2.268_434_632_439_00e-03,
            4.893_525_185_543_85e-03,
        ],
        ty,
    );
    let r = e.op(format!("arith.divf {p}, {q} : {ty}"));
    let ax = e.op(format!("math.absf {x} : {ty}"));
    let tiny = fconst(e, ty, 0.0004);
    let small = e.op(format!("arith.cmpf olt, {ax}, {tiny} : {ty}"));
    e.op(format!(
        "arith.select {small}, {x}, {r} : {}",
        mask_type(ty)
    ))
}

/// The i1 type (or vector of i1) a comparison in `ty` yields.
fn mask_type(ty: &str) -> String {
    match ty.strip_prefix("vector<") {
        Some(rest) => {
            let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            format!("vector<{n}xi1>, {ty}")
        }
        None => format!("i1, {ty}"),
    }
}

/// erf on f32 (scalar or vector): rational approximation on [-4, 4], where
/// erf saturates to +-1 in f32.
fn erf_f32(e: &mut dyn Emit, x: &str, ty: &str) -> String {
    let xc = clamp(e, x, 4.0, ty);
    let x2 = e.op(format!("arith.mulf {xc}, {xc} : {ty}"));
    let p = horner(
        e,
        &x2,
        &[
            -2.726_142_258_013_06e-10,
            2.770_681_424_959_02e-08,
            -2.101_024_020_825_08e-06,
            -5.692_506_394_623_46e-05,
            -7.349_906_303_268_55e-04,
            -2.954_599_808_540_25e-03,
            -1.609_603_332_624_15e-02,
        ],
        ty,
    );
    let p = e.op(format!("arith.mulf {xc}, {p} : {ty}"));
    let q = horner(
        e,
        &x2,
        &[
            -1.456_607_184_649_96e-05,
            -2.133_740_552_789_05e-04,
            -1.682_826_974_382_03e-03,
            -7.373_329_167_204_68e-03,
            -1.426_473_905_141_89e-02,
        ],
        ty,
    );
    e.op(format!("arith.divf {p}, {q} : {ty}"))
}
