//! Ops that make tensors from shapes or parameters: ConstantOfShape, Range,
//! EyeLike, OneHot, Trilu, random generators and signal windows.

use super::shape::{concat_flat, for_each_index, take};
use super::util::{norm_axis, to_usize_shape};
use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::dtype::DType;

/// A `Type` attribute, or `default` when absent.
fn dtype_or(ctx: &dyn AttrAccess, name: &str, default: DType) -> Result<DType, String> {
    if ctx.has_attr(name) {
        ctx.dtype_attr(name)
    } else {
        Ok(default)
    }
}

/// Dims from a 1-D shape operand whose value is known (constant or computed
/// from symbolic shapes), or Unknown dims of its static length.
fn shape_operand_dims(ctx: &InferCtx, i: usize) -> Result<Vec<Dim>, String> {
    match ctx.sym_input(i) {
        Some(v) => {
            if let Some(bad) = v.iter().find(|d| d.as_fixed().is_some_and(|d| d < 0)) {
                return Err(format!("negative dimension {bad}"));
            }
            Ok(v)
        }
        None => match ctx.input(i)?.static_shape().as_deref() {
            Some([n]) => Ok(vec![Dim::Unknown; *n as usize]),
            _ => Err("the shape operand must be 1-D with a static length".into()),
        },
    }
}

/// The value of a one-element integer operand as a dim, when known.
fn scalar_dim(ctx: &InferCtx, i: usize) -> Option<Dim> {
    match ctx.sym_input(i)?.as_slice() {
        [d] => Some(d.clone()),
        _ => None,
    }
}

/// The single value of a scalar (or one-element) operand.
fn scalar_of(t: &Tensor, what: &str) -> Result<Tensor, String> {
    if t.len() != 1 {
        return Err(format!(
            "{what} must hold exactly one value, got shape {:?}",
            t.shape
        ));
    }
    take(t, &[0], vec![])
}

// ---------------------------------------------------------------- constant_of_shape

fn fill_value(ctx: &dyn AttrAccess) -> Result<Tensor, String> {
    if !ctx.has_attr("value") {
        return Ok(Tensor::zeros(DType::F32, vec![]));
    }
    scalar_of(&*ctx.tensor_attr("value")?, "constant_of_shape value")
}

pub static CONSTANT_OF_SHAPE: OpDef = OpDef {
    mnemonic: "constant_of_shape",
    summary: "A tensor of the given shape filled with one value (default f32 0)",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[attr("value", AttrKind::Tensor, Default::Absent)],
    traits: &[],
    infer: |ctx| {
        Ok(vec![TensorType::new(
            shape_operand_dims(ctx, 0)?,
            fill_value(ctx)?.dtype,
        )])
    },
    eval: Some(|ctx| {
        let shape = to_usize_shape(&ctx.input(0)?.to_i64_vec())?;
        let n = shape.iter().product::<usize>();
        Ok(vec![take(&fill_value(ctx)?, &vec![0; n], shape)?])
    }),
};

// ---------------------------------------------------------------- range

/// Element count of Range: max(ceil((limit - start) / delta), 0).
fn range_len(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<usize, String> {
    let n = if start.dtype.is_float() {
        let (s, l, d) = (start.get_f64(0), limit.get_f64(0), delta.get_f64(0));
        if d == 0.0 || !d.is_finite() {
            return Err(format!("range delta {d} is invalid"));
        }
        ((l - s) / d).ceil().max(0.0) as i128
    } else {
        let (s, l, d) = (
            start.get_i64(0) as i128,
            limit.get_i64(0) as i128,
            delta.get_i64(0) as i128,
        );
        if d == 0 {
            return Err("range delta cannot be 0".into());
        }
        let (q, r) = ((l - s) / d, (l - s) % d);
        // `/` truncates toward zero: that is the ceiling unless the exact
        // quotient is positive and inexact.
        let q = if r != 0 && (r > 0) == (d > 0) {
            q + 1
        } else {
            q
        };
        q.max(0)
    };
    usize::try_from(n).map_err(|_| format!("range of {n} elements is too large"))
}

fn range_scalars<'a>(
    start: &'a Tensor,
    limit: &'a Tensor,
    delta: &'a Tensor,
) -> Result<[Tensor; 3], String> {
    if start.dtype != limit.dtype || start.dtype != delta.dtype {
        return Err(format!(
            "range operands differ in type: {} {} {}",
            start.dtype, limit.dtype, delta.dtype
        ));
    }
    Ok([
        scalar_of(start, "range start")?,
        scalar_of(limit, "range limit")?,
        scalar_of(delta, "range delta")?,
    ])
}

pub static RANGE: OpDef = OpDef {
    mnemonic: "range",
    summary: "start, start+delta, ... up to limit (exclusive)",
    operands: &[req("start"), req("limit"), req("delta")],
    results: Results::Fixed(1),
    attrs: &[attr("stash_type", AttrKind::Int, Default::Int(1))],
    traits: &[],
    infer: |ctx| {
        let t = ctx.input(0)?;
        let len = match (ctx.const_input(0), ctx.const_input(1), ctx.const_input(2)) {
            (Some(s), Some(l), Some(d)) => {
                let [s, l, d] = range_scalars(s, l, d)?;
                Dim::fixed(range_len(&s, &l, &d)? as i64)
            }
            // Integer bounds computed from symbolic shapes: Range(0, seq, 1) is [seq].
            _ => match (
                scalar_dim(ctx, 0),
                scalar_dim(ctx, 1),
                scalar_dim(ctx, 2).and_then(|d| d.as_fixed()),
            ) {
                (Some(s), Some(l), Some(1)) => l.sub(&s),
                (Some(s), Some(l), Some(-1)) => s.sub(&l),
                (Some(s), Some(l), Some(k)) if k > 0 => l.sub(&s).div_exact(&Dim::fixed(k)),
                _ => Dim::Unknown,
            },
        };
        Ok(vec![TensorType::new(vec![len], t.dtype())])
    },
    eval: Some(|ctx| {
        let [s, l, d] = range_scalars(ctx.input(0)?, ctx.input(1)?, ctx.input(2)?)?;
        let n = range_len(&s, &l, &d)?;
        let dtype = s.dtype;
        if dtype.is_float() {
            // f16/bf16 are computed in f32 (stash_type 1) or f64, as the
            // spec asks; every float value is start + i*delta, rounded once.
            let (s, d) = (s.get_f64(0), d.get_f64(0));
            let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
            let v: Vec<f64> = match (dtype, ctx.int("stash_type")?) {
                (DType::F32 | DType::F16 | DType::BF16, 1) => {
                    v.iter().map(|&x| x as f32 as f64).collect()
                }
                _ => v,
            };
            return Ok(vec![Tensor::from_f64(dtype, vec![n], &v)]);
        }
        let (s, d) = (s.get_i64(0), d.get_i64(0));
        let v: Vec<i64> = (0..n as i64)
            .map(|i| s.wrapping_add(i.wrapping_mul(d)))
            .collect();
        Ok(vec![Tensor::from_i64(dtype, vec![n], &v)])
    }),
};

// ---------------------------------------------------------------- eye_like / trilu

pub static EYE_LIKE: OpDef = OpDef {
    mnemonic: "eye_like",
    summary: "A 2-D tensor shaped like the input with ones on diagonal k",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[
        attr("dtype", AttrKind::Type, Default::Absent),
        attr("k", AttrKind::Int, Default::Int(0)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        if x.rank() != 2 {
            return Err(format!("eye_like expects a 2-D input, got {x}"));
        }
        Ok(vec![TensorType::new(
            x.shape.clone(),
            dtype_or(ctx, "dtype", x.dtype())?,
        )])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let [r, c]: [usize; 2] = x
            .shape
            .clone()
            .try_into()
            .map_err(|_| "eye_like expects a 2-D input")?;
        let k = ctx.int("k")?;
        let v: Vec<i64> = (0..r * c)
            .map(|i| i64::from((i % c) as i64 - (i / c) as i64 == k))
            .collect();
        Ok(vec![Tensor::from_i64(
            dtype_or(ctx, "dtype", x.dtype)?,
            vec![r, c],
            &v,
        )])
    }),
};

pub static TRILU: OpDef = OpDef {
    mnemonic: "trilu",
    summary:
        "Keeps the upper (or lower) triangle of the last two dims from diagonal k; zeros the rest",
    operands: &[req("input"), opt("k")],
    results: Results::Fixed(1),
    attrs: &[attr("upper", AttrKind::Int, Default::Int(1))],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        if x.rank() < 2 {
            return Err(format!("trilu expects rank >= 2, got {x}"));
        }
        Ok(vec![x.clone()])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        if x.rank() < 2 {
            return Err(format!("trilu expects rank >= 2, got shape {:?}", x.shape));
        }
        let k = match ctx.opt_input(1) {
            Some(t) => scalar_of(t, "trilu k")?.get_i64(0),
            None => 0,
        };
        let upper = ctx.int("upper")? != 0;
        let (r, c) = (x.shape[x.rank() - 2], x.shape[x.rank() - 1]);
        let n = x.len();
        // Dropped elements read the zero appended after the data.
        let idx: Vec<usize> = (0..n)
            .map(|i| {
                let d = ((i % c) as i64) - ((i / c % r.max(1)) as i64);
                if (upper && d >= k) || (!upper && d <= k) {
                    i
                } else {
                    n
                }
            })
            .collect();
        let src = concat_flat(&[x, &Tensor::zeros(x.dtype, vec![1])])?;
        Ok(vec![take(&src, &idx, x.shape.clone())?])
    }),
};

// ---------------------------------------------------------------- one_hot

pub static ONE_HOT: OpDef = OpDef {
    mnemonic: "one_hot",
    summary: "values[1] where the index hits, values[0] elsewhere, along a new axis of size depth",
    operands: &[req("indices"), req("depth"), req("values")],
    results: Results::Fixed(1),
    attrs: &[attr("axis", AttrKind::Int, Default::Int(-1))],
    traits: &[],
    infer: |ctx| {
        let (ind, vals) = (ctx.input(0)?, ctx.input(2)?);
        let axis = norm_axis(ctx.int("axis")?, ind.rank() + 1)?;
        let depth = match (ctx.const_input(1), scalar_dim(ctx, 1)) {
            (Some(d), _) => Dim::fixed(scalar_of(d, "one_hot depth")?.get_f64(0) as i64),
            (None, Some(d)) => d,
            (None, None) => Dim::Unknown,
        };
        let mut shape = ind.shape.clone();
        shape.insert(axis, depth);
        Ok(vec![TensorType::new(shape, vals.dtype())])
    },
    eval: Some(|ctx| {
        let (ind, vals) = (ctx.input(0)?, ctx.input(2)?);
        let depth = scalar_of(ctx.input(1)?, "one_hot depth")?.get_f64(0) as i64;
        if depth < 1 {
            return Err(format!("one_hot depth must be positive, got {depth}"));
        }
        if vals.len() != 2 {
            return Err(format!(
                "one_hot values must hold [off, on], got shape {:?}",
                vals.shape
            ));
        }
        let axis = norm_axis(ctx.int("axis")?, ind.rank() + 1)?;
        let hot: Vec<i64> = (0..ind.len())
            .map(|i| {
                let v = if ind.dtype.is_float() {
                    ind.get_f64(i) as i64
                } else {
                    ind.get_i64(i)
                };
                if v < 0 {
                    v + depth
                } else {
                    v
                }
            })
            .collect();
        let mut shape = ind.shape.clone();
        shape.insert(axis, depth as usize);
        let inner: usize = ind.shape[axis..].iter().product();
        let mut idx = Vec::with_capacity(shape.iter().product());
        for_each_index(&shape, |o| {
            let outer: usize = o[..axis]
                .iter()
                .zip(&shape[..axis])
                .fold(0, |acc, (&i, &d)| acc * d + i);
            let rest: usize = o[axis + 1..]
                .iter()
                .zip(&shape[axis + 1..])
                .fold(0, |acc, (&i, &d)| acc * d + i);
            idx.push(usize::from(hot[outer * inner + rest] == o[axis] as i64));
        });
        Ok(vec![take(vals, &idx, shape)?])
    }),
};

// ---------------------------------------------------------------- random

/// SplitMix64: a small, well-mixed generator. Random ops only promise the
/// distribution, not onnxruntime's exact stream; a seed makes runs repeatable.
struct Rng(u64);

impl Rng {
    fn new(ctx: &dyn AttrAccess) -> Rng {
        let seed = if ctx.has_attr("seed") {
            ctx.float("seed").map(f64::to_bits).unwrap_or(0)
        } else {
            0x5EED_7E55_E7A0_0001
        };
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn float_dtype(d: DType) -> Result<DType, String> {
    if d.is_float() {
        Ok(d)
    } else {
        Err(format!("random values must be a float type, got {d}"))
    }
}

/// The result type of a `*Like` op: the input's shape, `dtype` or the input's type.
fn infer_like(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    Ok(vec![TensorType::new(
        x.shape.clone(),
        float_dtype(dtype_or(ctx, "dtype", x.dtype())?)?,
    )])
}

fn infer_random(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let shape = ctx.ints("shape")?;
    if let Some(bad) = shape.iter().find(|&&d| d < 0) {
        return Err(format!("negative dimension {bad}"));
    }
    Ok(vec![TensorType::fixed(
        &shape,
        float_dtype(dtype_or(ctx, "dtype", DType::F32)?)?,
    )])
}

fn sample(ctx: &EvalCtx, dtype: DType, shape: Vec<usize>, normal: bool) -> Result<Tensor, String> {
    let mut rng = Rng::new(ctx);
    let n = shape.iter().product::<usize>();
    let v: Vec<f64> = if normal {
        let (mean, scale) = (ctx.float("mean")?, ctx.float("scale")?);
        (0..n).map(|_| mean + scale * rng.normal()).collect()
    } else {
        let (lo, hi) = (ctx.float("low")?, ctx.float("high")?);
        (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect()
    };
    Ok(Tensor::from_f64(float_dtype(dtype)?, shape, &v))
}

const NORMAL_ATTRS: &[AttrSpec] = &[
    attr("dtype", AttrKind::Type, Default::Absent),
    attr("mean", AttrKind::Float, Default::Float(0.0)),
    attr("scale", AttrKind::Float, Default::Float(1.0)),
    attr("seed", AttrKind::Float, Default::Absent),
    attr("shape", AttrKind::Ints, Default::Required),
];
const UNIFORM_ATTRS: &[AttrSpec] = &[
    attr("dtype", AttrKind::Type, Default::Absent),
    attr("high", AttrKind::Float, Default::Float(1.0)),
    attr("low", AttrKind::Float, Default::Float(0.0)),
    attr("seed", AttrKind::Float, Default::Absent),
    attr("shape", AttrKind::Ints, Default::Required),
];

fn eval_random(ctx: &EvalCtx, normal: bool) -> Result<Vec<Tensor>, String> {
    let shape = to_usize_shape(&ctx.ints("shape")?)?;
    Ok(vec![sample(
        ctx,
        dtype_or(ctx, "dtype", DType::F32)?,
        shape,
        normal,
    )?])
}

fn eval_random_like(ctx: &EvalCtx, normal: bool) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    Ok(vec![sample(
        ctx,
        dtype_or(ctx, "dtype", x.dtype)?,
        x.shape.clone(),
        normal,
    )?])
}

pub static RANDOM_NORMAL: OpDef = OpDef {
    mnemonic: "random_normal",
    summary: "Samples N(mean, scale^2) of a given shape",
    operands: &[],
    results: Results::Fixed(1),
    attrs: NORMAL_ATTRS,
    traits: &[Trait::Random],
    infer: infer_random,
    eval: Some(|ctx| eval_random(ctx, true)),
};

pub static RANDOM_UNIFORM: OpDef = OpDef {
    mnemonic: "random_uniform",
    summary: "Samples U[low, high) of a given shape",
    operands: &[],
    results: Results::Fixed(1),
    attrs: UNIFORM_ATTRS,
    traits: &[Trait::Random],
    infer: infer_random,
    eval: Some(|ctx| eval_random(ctx, false)),
};

pub static RANDOM_NORMAL_LIKE: OpDef = OpDef {
    mnemonic: "random_normal_like",
    summary: "Samples N(mean, scale^2) shaped like the input",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[
        attr("dtype", AttrKind::Type, Default::Absent),
        attr("mean", AttrKind::Float, Default::Float(0.0)),
        attr("scale", AttrKind::Float, Default::Float(1.0)),
        attr("seed", AttrKind::Float, Default::Absent),
    ],
    traits: &[Trait::Random],
    infer: infer_like,
    eval: Some(|ctx| eval_random_like(ctx, true)),
};

pub static RANDOM_UNIFORM_LIKE: OpDef = OpDef {
    mnemonic: "random_uniform_like",
    summary: "Samples U[low, high) shaped like the input",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[
        attr("dtype", AttrKind::Type, Default::Absent),
        attr("high", AttrKind::Float, Default::Float(1.0)),
        attr("low", AttrKind::Float, Default::Float(0.0)),
        attr("seed", AttrKind::Float, Default::Absent),
    ],
    traits: &[Trait::Random],
    infer: infer_like,
    eval: Some(|ctx| eval_random_like(ctx, false)),
};

pub static BERNOULLI: OpDef = OpDef {
    mnemonic: "bernoulli",
    summary: "1 with the input's probability, else 0 (per element)",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[
        attr("dtype", AttrKind::Type, Default::Absent),
        attr("seed", AttrKind::Float, Default::Absent),
    ],
    traits: &[Trait::Random],
    infer: |ctx| {
        let x = ctx.input(0)?;
        Ok(vec![TensorType::new(
            x.shape.clone(),
            dtype_or(ctx, "dtype", x.dtype())?,
        )])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let mut rng = Rng::new(ctx);
        let v: Vec<i64> = x
            .to_f64_vec()
            .into_iter()
            .map(|p| i64::from(rng.uniform() < p))
            .collect();
        Ok(vec![Tensor::from_i64(
            dtype_or(ctx, "dtype", x.dtype)?,
            x.shape.clone(),
            &v,
        )])
    }),
};

// ---------------------------------------------------------------- windows

/// A window of `size` points: `f(2πn/N)` with N = size (periodic) or size-1.
fn eval_window(ctx: &EvalCtx, f: fn(f64) -> f64) -> Result<Vec<Tensor>, String> {
    let size = scalar_of(ctx.input(0)?, "window size")?.get_i64(0);
    let n = usize::try_from(size).map_err(|_| format!("window size {size} is negative"))?;
    let denom = if ctx.int("periodic")? != 0 {
        size
    } else {
        size - 1
    } as f64;
    let v: Vec<f64> = (0..n)
        .map(|i| f(2.0 * std::f64::consts::PI * i as f64 / denom))
        .collect();
    let dtype = dtype_or(ctx, "output_datatype", DType::F32)?;
    Ok(vec![Tensor::from_f64(dtype, vec![n], &v)])
}

fn infer_window(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let len = match (ctx.const_input(0), scalar_dim(ctx, 0)) {
        (Some(t), _) => Dim::fixed(scalar_of(t, "window size")?.get_i64(0).max(0)),
        (None, Some(d)) => d,
        (None, None) => Dim::Unknown,
    };
    Ok(vec![TensorType::new(
        vec![len],
        dtype_or(ctx, "output_datatype", DType::F32)?,
    )])
}

const WINDOW_ATTRS: &[AttrSpec] = &[
    attr("output_datatype", AttrKind::Type, Default::Absent),
    attr("periodic", AttrKind::Int, Default::Int(1)),
];

pub static HANN_WINDOW: OpDef = OpDef {
    mnemonic: "hann_window",
    summary: "Hann window: 0.5 - 0.5 cos(2πn/N)",
    operands: &[req("size")],
    results: Results::Fixed(1),
    attrs: WINDOW_ATTRS,
    traits: &[],
    infer: infer_window,
    eval: Some(|ctx| eval_window(ctx, |t| 0.5 - 0.5 * t.cos())),
};

pub static HAMMING_WINDOW: OpDef = OpDef {
    mnemonic: "hamming_window",
    summary: "Hamming window: 25/46 - 21/46 cos(2πn/N)",
    operands: &[req("size")],
    results: Results::Fixed(1),
    attrs: WINDOW_ATTRS,
    traits: &[],
    infer: infer_window,
    eval: Some(|ctx| eval_window(ctx, |t| 25.0 / 46.0 - 21.0 / 46.0 * t.cos())),
};

pub static BLACKMAN_WINDOW: OpDef = OpDef {
    mnemonic: "blackman_window",
    summary: "Blackman window: 0.42 - 0.5 cos(2πn/N) + 0.08 cos(4πn/N)",
    operands: &[req("size")],
    results: Results::Fixed(1),
    attrs: WINDOW_ATTRS,
    traits: &[],
    infer: infer_window,
    eval: Some(|ctx| eval_window(ctx, |t| 0.42 - 0.5 * t.cos() + 0.08 * (2.0 * t).cos())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{Attr, Attrs};
    use crate::ops::testing::{attrs, eval, f32s, infer};
    use std::sync::Arc;

    fn none() -> Attrs {
        Attrs::new()
    }
    fn ints(v: &[i64]) -> Tensor {
        Tensor::i64(vec![v.len()], v.to_vec())
    }

    #[test]
    fn constant_of_shape_fills_and_keeps_symbols() {
        let r = eval(&CONSTANT_OF_SHAPE, &none(), &[Some(ints(&[2, 1]))], 1).unwrap();
        assert_eq!(r[0], Tensor::f32(vec![2, 1], vec![0.0, 0.0]));
        let seven = Attr::Tensor(Arc::new(Tensor::from_i64(DType::I32, vec![1], &[7])));
        let r = eval(
            &CONSTANT_OF_SHAPE,
            &attrs(&[("value", seven.clone())]),
            &[Some(ints(&[3]))],
            1,
        )
        .unwrap();
        assert_eq!((r[0].dtype, r[0].to_i64_vec()), (DType::I32, vec![7, 7, 7]));
        let shape = TensorType::fixed(&[2], DType::I64);
        let r = infer(
            &CONSTANT_OF_SHAPE,
            &attrs(&[("value", seven)]),
            &[shape],
            &[],
            &[Some(vec![Dim::sym("b"), Dim::fixed(4)])],
            1,
        )
        .unwrap();
        assert_eq!(
            r[0],
            TensorType::new(vec![Dim::sym("b"), Dim::fixed(4)], DType::I32)
        );
    }

    #[test]
    fn range_lengths_and_values() {
        let s = |v: i64| Tensor::from_i64(DType::I32, vec![], &[v]);
        // np.arange(10, -3, -4) == [10, 6, 2, -2]
        let r = eval(&RANGE, &none(), &[Some(s(10)), Some(s(-3)), Some(s(-4))], 1).unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![10, 6, 2, -2]);
        let r = eval(&RANGE, &none(), &[Some(s(3)), Some(s(9)), Some(s(3))], 1).unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![3, 6]);
        let r = eval(&RANGE, &none(), &[Some(s(5)), Some(s(1)), Some(s(1))], 1).unwrap();
        assert!(r[0].is_empty());
        let f = |v: f32| Tensor::f32(vec![], vec![v]);
        let r = eval(
            &RANGE,
            &none(),
            &[Some(f(1.0)), Some(f(2.0)), Some(f(0.25))],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![1.0, 1.25, 1.5, 1.75]);
        let scalar = TensorType::scalar(DType::I64);
        let syms = [
            Some(vec![Dim::fixed(0)]),
            Some(vec![Dim::sym("seq")]),
            Some(vec![Dim::fixed(1)]),
        ];
        let r = infer(
            &RANGE,
            &none(),
            &[scalar.clone(), scalar.clone(), scalar],
            &[],
            &syms,
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![Dim::sym("seq")]);
    }

    #[test]
    fn eye_like_trilu_one_hot() {
        let x = Tensor::zeros(DType::F32, vec![2, 3]);
        let r = eval(
            &EYE_LIKE,
            &attrs(&[("k", Attr::Int(1)), ("dtype", Attr::Type(DType::I64))]),
            &[Some(x)],
            1,
        )
        .unwrap();
        assert_eq!(
            (r[0].dtype, r[0].to_i64_vec()),
            (DType::I64, vec![0, 1, 0, 0, 0, 1])
        );
        // np.tril(np.arange(1, 7).reshape(2, 3), -0) and np.triu(..., 1)
        let x = Tensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = eval(
            &TRILU,
            &attrs(&[("upper", Attr::Int(0))]),
            &[Some(x.clone()), None],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![1.0, 0.0, 0.0, 4.0, 5.0, 0.0]);
        let r = eval(&TRILU, &none(), &[Some(x), Some(Tensor::scalar_i64(1))], 1).unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 2.0, 3.0, 0.0, 0.0, 6.0]);
        // indices [1, -1, 5] with depth 3: -1 wraps to 2, 5 is out of range.
        let vals = Tensor::f32(vec![2], vec![0.0, 1.0]);
        let r = eval(
            &ONE_HOT,
            &none(),
            &[
                Some(ints(&[1, -1, 5])),
                Some(Tensor::scalar_i64(3)),
                Some(vals.clone()),
            ],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![3, 3]);
        assert_eq!(
            f32s(&r[0]),
            vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        );
        let r = eval(
            &ONE_HOT,
            &attrs(&[("axis", Attr::Int(0))]),
            &[Some(ints(&[1, 0])), Some(Tensor::scalar_i64(2)), Some(vals)],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn windows_match_their_formulas() {
        let size = Some(Tensor::scalar_i64(4));
        let r = eval(&HANN_WINDOW, &none(), std::slice::from_ref(&size), 1).unwrap();
        let want = [0.0, 0.5, 1.0, 0.5];
        assert!(
            f32s(&r[0])
                .iter()
                .zip(want)
                .all(|(a, b)| (a - b).abs() < 1e-6),
            "{:?}",
            r[0]
        );
        // symmetric Hamming of 3 points: 0.54 - 0.46 cos(πn) with alpha = 25/46.
        let r = eval(
            &HAMMING_WINDOW,
            &attrs(&[("periodic", Attr::Int(0))]),
            &[Some(Tensor::scalar_i64(3))],
            1,
        )
        .unwrap();
        let a = 25.0 / 46.0;
        let want = [a - (1.0 - a), 1.0, a - (1.0 - a)];
        assert!(f32s(&r[0])
            .iter()
            .zip(want)
            .all(|(x, y)| (*x as f64 - y).abs() < 1e-6));
        let r = eval(
            &BLACKMAN_WINDOW,
            &attrs(&[("output_datatype", Attr::Type(DType::F64))]),
            &[size],
            1,
        )
        .unwrap();
        assert_eq!(r[0].dtype, DType::F64);
        assert!((r[0].get_f64(2) - 1.0).abs() < 1e-12 && r[0].get_f64(0).abs() < 1e-12);
    }

    #[test]
    fn random_ops_have_types_and_repeat_with_a_seed() {
        let a = attrs(&[
            ("shape", Attr::Ints(vec![2, 3])),
            ("seed", Attr::Float(3.0)),
            ("dtype", Attr::Type(DType::F16)),
        ]);
        let r = infer(&RANDOM_NORMAL, &a, &[], &[], &[], 1).unwrap();
        assert_eq!(r[0], TensorType::fixed(&[2, 3], DType::F16));
        let x = eval(&RANDOM_UNIFORM, &a, &[], 1).unwrap();
        let y = eval(&RANDOM_UNIFORM, &a, &[], 1).unwrap();
        assert_eq!(x, y);
        assert!(x[0].to_f64_vec().iter().all(|v| (0.0..=1.0).contains(v)));
        let p = Tensor::f32(vec![4], vec![0.0, 1.0, 0.0, 1.0]);
        let r = eval(
            &BERNOULLI,
            &attrs(&[("dtype", Attr::Type(DType::Bool))]),
            &[Some(p)],
            1,
        )
        .unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![0, 1, 0, 1]);
        assert!(RANDOM_NORMAL_LIKE.has_trait(Trait::Random) && BERNOULLI.has_trait(Trait::Random));
    }
}
