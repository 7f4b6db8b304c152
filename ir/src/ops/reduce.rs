//! Reductions and scans: Reduce*, ArgMax/ArgMin, TopK, CumSum/CumProd.
//!
//! Floats reduce in f64 and round once to the element type; integers reduce
//! exactly in i128 with wrapping, which equals the ONNX result in the element
//! type (including u64) after truncation.

use super::linalg::permute_data;
use super::util::norm_axis;
use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::tensor::Data;
use std::cmp::Ordering;

// ---------------------------------------------------------------------------
// Shared pieces

/// Every element as i128 (exact for all integer types, u64 included).
fn i128_values(t: &Tensor) -> Vec<i128> {
    match &t.data {
        Data::U64(v) => v.iter().map(|&x| x as i128).collect(),
        _ => t.to_i64_vec().into_iter().map(i128::from).collect(),
    }
}

/// Integer results wrapped into `dtype` (truncation keeps the low bits).
fn from_i128(dtype: DType, shape: Vec<usize>, v: &[i128]) -> Tensor {
    Tensor::from_i64(
        dtype,
        shape,
        &v.iter().map(|&x| x as i64).collect::<Vec<_>>(),
    )
}

/// The layout of a tensor around one axis: `outer` blocks of `len` slices of
/// `inner` elements; element (o, j, i) lies at `(o * len + j) * inner + i`.
#[derive(Copy, Clone)]
struct AxisLayout {
    outer: usize,
    len: usize,
    inner: usize,
}

impl AxisLayout {
    fn new(shape: &[usize], axis: usize) -> AxisLayout {
        AxisLayout {
            outer: shape[..axis].iter().product(),
            len: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }

    /// Flat index of element `j` along the axis in lane `lane` (lanes are the
    /// outer × inner positions in row-major order).
    fn index(&self, lane: usize, j: usize) -> usize {
        let (o, i) = (lane / self.inner.max(1), lane % self.inner.max(1));
        (o * self.len + j) * self.inner + i
    }

    fn lanes(&self) -> usize {
        self.outer * self.inner
    }
}

/// Rejects element types that have no numeric order (ArgMax, TopK, scans).
fn check_numeric(d: DType, op: &str) -> Result<(), String> {
    if d.is_numeric() {
        Ok(())
    } else {
        Err(format!("{op} does not accept element type {d}"))
    }
}

/// A total order on floats with NaN placed above (or below) every number.
fn cmp_nan(a: f64, b: f64, nan_greatest: bool) -> Ordering {
    let nan_order = if nan_greatest {
        Ordering::Greater
    } else {
        Ordering::Less
    };
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => nan_order,
        (false, true) => nan_order.reverse(),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Element values as a sortable key vector: f64 for floats, i128 for ints.
enum Keys {
    F(Vec<f64>),
    I(Vec<i128>),
}

impl Keys {
    fn of(t: &Tensor) -> Keys {
        if t.dtype.is_float() {
            Keys::F(t.to_f64_vec())
        } else {
            Keys::I(i128_values(t))
        }
    }

    fn cmp(&self, i: usize, j: usize, nan_greatest: bool) -> Ordering {
        match self {
            Keys::F(v) => cmp_nan(v[i], v[j], nan_greatest),
            Keys::I(v) => v[i].cmp(&v[j]),
        }
    }
}

/// Gathers elements by flat index into new storage of the same type.
fn gather(t: &Tensor, idx: &[usize], shape: Vec<usize>) -> Result<Tensor, String> {
    macro_rules! pick {
        ($($var:ident),*) => {
            match &t.data {
                $(Data::$var(v) => Data::$var(idx.iter().map(|&i| v[i].clone()).collect()),)*
                Data::C64(_) | Data::C128(_) => return Err("complex tensors are not supported here".into()),
            }
        };
    }
    let data = pick!(F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, Bool, Str);
    Tensor::new(t.dtype, shape, data)
}

// ---------------------------------------------------------------------------
// Reduce*

/// The maximum, -inf when empty; NaN wins as in numpy.
fn nan_max(v: &[f64]) -> f64 {
    v.iter().fold(f64::NEG_INFINITY, |m, &x| {
        if m.is_nan() || x.is_nan() {
            f64::NAN
        } else {
            m.max(x)
        }
    })
}

/// `f` applied to each consecutive group of `group` values, `n` results (an
/// empty group still yields its identity).
fn per_group<T, R>(vals: &[T], group: usize, n: usize, mut f: impl FnMut(&[T]) -> R) -> Vec<R> {
    if group == 0 {
        (0..n).map(|_| f(&[])).collect()
    } else {
        vals.chunks_exact(group).map(f).collect()
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

impl Reduction {
    fn accepts(self, d: DType) -> bool {
        match self {
            Reduction::Max | Reduction::Min => d.is_numeric() || d == DType::Bool,
            _ => d.is_numeric(),
        }
    }

    /// One group of values reduced in f64 (an empty group gives the identity).
    fn fold_f64(self, v: &[f64]) -> f64 {
        let sum = |f: fn(f64) -> f64| v.iter().map(|&x| f(x)).sum::<f64>();
        match self {
            Reduction::Sum => sum(|x| x),
            Reduction::Mean => sum(|x| x) / v.len() as f64,
            Reduction::Max => nan_max(v),
            Reduction::Min => -nan_max(&v.iter().map(|&x| -x).collect::<Vec<_>>()),
            Reduction::Prod => v.iter().product(),
            Reduction::L1 => sum(f64::abs),
            Reduction::L2 => sum(|x| x * x).sqrt(),
            Reduction::LogSum => sum(|x| x).ln(),
            Reduction::SumSquare => sum(|x| x * x),
            Reduction::LogSumExp => {
                // Shift by the largest finite value so exp cannot overflow;
                // infinities and NaN take the direct path and give the
                // mathematically expected inf / NaN.
                let m = nan_max(v);
                if m.is_finite() {
                    m + v.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
                } else {
                    sum(f64::exp).ln()
                }
            }
        }
    }

    /// One group reduced exactly in i128, wrapping (the element type's
    /// identities bound Max/Min of an empty group). Kinds that go through
    /// logarithms or roots return None and are computed in f64.
    fn fold_int(self, v: &[i128], (lo, hi): (i128, i128)) -> Option<i128> {
        let wsum = |f: fn(i128) -> i128| v.iter().fold(0i128, |a, &x| a.wrapping_add(f(x)));
        Some(match self {
            Reduction::Sum => wsum(|x| x),
            Reduction::Mean => {
                let s = wsum(|x| x);
                if v.is_empty() {
                    0
                } else {
                    s / v.len() as i128
                }
            }
            Reduction::Max => v.iter().copied().fold(lo, i128::max),
            Reduction::Min => v.iter().copied().fold(hi, i128::min),
            Reduction::Prod => v.iter().fold(1i128, |a, &x| a.wrapping_mul(x)),
            Reduction::L1 => wsum(i128::wrapping_abs),
            Reduction::SumSquare => wsum(|x| x.wrapping_mul(x)),
            Reduction::L2 | Reduction::LogSum | Reduction::LogSumExp => return None,
        })
    }
}

/// The reduced axes (sorted, distinct). Absent or empty axes reduce all
/// dims, or none with `noop_with_empty_axes`. Backends use it too.
pub fn reduced_axes(axes: Option<&[i64]>, rank: usize, noop: bool) -> Result<Vec<usize>, String> {
    match axes {
        Some(a) if !a.is_empty() => {
            let mut v = a
                .iter()
                .map(|&x| norm_axis(x, rank))
                .collect::<Result<Vec<_>, _>>()?;
            v.sort_unstable();
            v.dedup();
            Ok(v)
        }
        _ if noop => Ok(Vec::new()),
        _ => Ok((0..rank).collect()),
    }
}

fn reduce_dims<D: Clone>(shape: &[D], axes: &[usize], keepdims: bool, one: D) -> Vec<D> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(one.clone()),
            (true, false) => None,
        })
        .collect()
}

fn infer_reduce(ctx: &InferCtx, kind: Reduction) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    if !kind.accepts(x.dtype()) {
        return Err(format!(
            "{:?} reduction does not accept element type {}",
            kind,
            x.dtype()
        ));
    }
    let keepdims = ctx.int("keepdims")? != 0;
    let noop = ctx.int("noop_with_empty_axes")? != 0;
    let known_axes = ctx
        .sym_input(1)
        .and_then(|v| v.iter().map(Dim::as_fixed).collect::<Option<Vec<i64>>>());
    let axes: Option<Vec<i64>> = match (ctx.opt_input(1), known_axes) {
        (None, _) => None,
        (Some(_), Some(a)) => Some(a),
        (Some(t), None) => {
            // Axes known only at run time: the rank may still follow.
            let count = t.shape.first().and_then(Dim::as_fixed);
            return match count {
                Some(0) => infer_reduce_known(x, None, keepdims, noop),
                _ if keepdims => Ok(vec![x.with_shape(vec![Dim::Unknown; x.rank()])]),
                Some(n) if (n as usize) <= x.rank() => {
                    Ok(vec![x.with_shape(vec![Dim::Unknown; x.rank() - n as usize])])
                }
                _ => Err("reduction with run-time axes of unknown count and keepdims=0 has no static rank".into()),
            };
        }
    };
    infer_reduce_known(x, axes.as_deref(), keepdims, noop)
}

fn infer_reduce_known(
    x: &TensorType,
    axes: Option<&[i64]>,
    keepdims: bool,
    noop: bool,
) -> Result<Vec<TensorType>, String> {
    let axes = reduced_axes(axes, x.rank(), noop)?;
    Ok(vec![x.with_shape(reduce_dims(
        &x.shape,
        &axes,
        keepdims,
        Dim::fixed(1),
    ))])
}

fn eval_reduce(ctx: &EvalCtx, kind: Reduction) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    if !kind.accepts(x.dtype) {
        return Err(format!(
            "{:?} reduction does not accept element type {}",
            kind, x.dtype
        ));
    }
    let axes_v = ctx.opt_input(1).map(Tensor::to_i64_vec);
    let axes = reduced_axes(
        axes_v.as_deref(),
        x.rank(),
        ctx.int("noop_with_empty_axes")? != 0,
    )?;
    let out_shape = reduce_dims(&x.shape, &axes, ctx.int("keepdims")? != 0, 1);
    // Move the reduced axes last: each output element is then one contiguous group.
    let perm: Vec<usize> = (0..x.rank())
        .filter(|i| !axes.contains(i))
        .chain(axes.iter().copied())
        .collect();
    let group: usize = axes.iter().map(|&a| x.shape[a]).product();
    let n_out: usize = out_shape.iter().product();

    if let Some(range) = x.dtype.int_range() {
        let vals = i128_values(x);
        let vals = permute_data(&vals, &x.shape, &perm);
        let ints: Option<Vec<i128>> = per_group(&vals, group, n_out, |g| kind.fold_int(g, range))
            .into_iter()
            .collect();
        if let Some(v) = ints {
            return Ok(vec![from_i128(x.dtype, out_shape, &v)]);
        }
    }
    let vals = x.to_f64_vec();
    let vals = permute_data(&vals, &x.shape, &perm);
    let v = per_group(&vals, group, n_out, |g| kind.fold_f64(g));
    Ok(vec![Tensor::from_f64(x.dtype, out_shape, &v)])
}

const REDUCE_ATTRS: &[AttrSpec] = &[
    attr("keepdims", AttrKind::Int, Default::Int(1)),
    attr("noop_with_empty_axes", AttrKind::Int, Default::Int(0)),
];

macro_rules! reduce_op {
    ($name:ident, $mn:literal, $kind:ident, $summary:literal) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("data"), opt("axes")],
            results: Results::Fixed(1),
            attrs: REDUCE_ATTRS,
            traits: &[],
            infer: |ctx| infer_reduce(ctx, Reduction::$kind),
            eval: Some(|ctx| eval_reduce(ctx, Reduction::$kind)),
        };
    };
}

reduce_op!(REDUCE_SUM, "reduce_sum", Sum, "Sum over the axes");
reduce_op!(REDUCE_MEAN, "reduce_mean", Mean, "Mean over the axes");
reduce_op!(
    REDUCE_MAX,
    "reduce_max",
    Max,
    "Maximum over the axes (-inf / the type's minimum when empty)"
);
reduce_op!(
    REDUCE_MIN,
    "reduce_min",
    Min,
    "Minimum over the axes (+inf / the type's maximum when empty)"
);
reduce_op!(REDUCE_PROD, "reduce_prod", Prod, "Product over the axes");
reduce_op!(
    REDUCE_L1,
    "reduce_l1",
    L1,
    "Sum of absolute values over the axes"
);
reduce_op!(REDUCE_L2, "reduce_l2", L2, "Euclidean norm over the axes");
reduce_op!(
    REDUCE_LOG_SUM,
    "reduce_log_sum",
    LogSum,
    "log(sum) over the axes"
);
reduce_op!(
    REDUCE_LOG_SUM_EXP,
    "reduce_log_sum_exp",
    LogSumExp,
    "log(sum(exp)) over the axes, computed stably"
);
reduce_op!(
    REDUCE_SUM_SQUARE,
    "reduce_sum_square",
    SumSquare,
    "Sum of squares over the axes"
);

// ---------------------------------------------------------------------------
// ArgMax / ArgMin

fn infer_arg(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    check_numeric(x.dtype(), ctx.def.mnemonic)?;
    let axis = norm_axis(ctx.int("axis")?, x.rank())?;
    let dims = reduce_dims(&x.shape, &[axis], ctx.int("keepdims")? != 0, Dim::fixed(1));
    Ok(vec![TensorType::new(dims, DType::I64)])
}

/// The index of the largest (`want` = Greater) or smallest (`want` = Less)
/// element along the axis; ties go to the first index, or the last with
/// `select_last_index`. NaN wins, as in numpy.
fn eval_arg(ctx: &EvalCtx, want: Ordering) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    check_numeric(x.dtype, ctx.def.mnemonic)?;
    let axis = norm_axis(ctx.int("axis")?, x.rank())?;
    let last = ctx.int("select_last_index")? != 0;
    let lay = AxisLayout::new(&x.shape, axis);
    if lay.len == 0 && lay.lanes() > 0 {
        return Err(format!("{} over an empty axis", ctx.def.mnemonic));
    }
    let keys = Keys::of(x);
    let nan_greatest = want == Ordering::Greater;
    let out: Vec<i64> = (0..lay.lanes())
        .map(|lane| {
            let mut best = 0;
            for j in 1..lay.len {
                match keys.cmp(lay.index(lane, j), lay.index(lane, best), nan_greatest) {
                    o if o == want => best = j,
                    Ordering::Equal if last => best = j,
                    _ => {}
                }
            }
            best as i64
        })
        .collect();
    let shape = reduce_dims(&x.shape, &[axis], ctx.int("keepdims")? != 0, 1);
    Ok(vec![Tensor::i64(shape, out)])
}

const ARG_ATTRS: &[AttrSpec] = &[
    attr("axis", AttrKind::Int, Default::Int(0)),
    attr("keepdims", AttrKind::Int, Default::Int(1)),
    attr("select_last_index", AttrKind::Int, Default::Int(0)),
];

pub static ARG_MAX: OpDef = OpDef {
    mnemonic: "arg_max",
    summary: "Index (i64) of the largest element along an axis",
    operands: &[req("data")],
    results: Results::Fixed(1),
    attrs: ARG_ATTRS,
    traits: &[],
    infer: infer_arg,
    eval: Some(|ctx| eval_arg(ctx, Ordering::Greater)),
};

pub static ARG_MIN: OpDef = OpDef {
    mnemonic: "arg_min",
    summary: "Index (i64) of the smallest element along an axis",
    operands: &[req("data")],
    results: Results::Fixed(1),
    attrs: ARG_ATTRS,
    traits: &[],
    infer: infer_arg,
    eval: Some(|ctx| eval_arg(ctx, Ordering::Less)),
};

// ---------------------------------------------------------------------------
// TopK

/// The single value of K, checked against the axis length when known.
fn topk_k(k: &Tensor, len: Option<i64>) -> Result<i64, String> {
    if k.len() != 1 {
        return Err(format!(
            "TopK's K must hold one value, got shape {:?}",
            k.shape
        ));
    }
    let v = k.get_i64(0);
    match len {
        _ if v < 0 => Err(format!("TopK's K must be non-negative, got {v}")),
        Some(n) if v > n => Err(format!("TopK's K = {v} exceeds the axis length {n}")),
        _ => Ok(v),
    }
}

pub static TOP_K: OpDef = OpDef {
    mnemonic: "top_k",
    summary: "The K largest (or smallest) elements along an axis and their i64 indices",
    operands: &[req("x"), req("k")],
    results: Results::Fixed(2),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(-1)),
        attr("largest", AttrKind::Int, Default::Int(1)),
        attr("sorted", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        check_numeric(x.dtype(), "top_k")?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let mut shape = x.shape.clone();
        // K may be a constant, or computed from (possibly symbolic) shapes.
        shape[axis] = match (ctx.const_input(1), ctx.sym_input(1)) {
            (Some(k), _) => Dim::fixed(topk_k(k, x.shape[axis].as_fixed())?),
            (None, Some(k)) if k.len() == 1 => k[0].clone(),
            _ => Dim::Unknown,
        };
        Ok(vec![
            x.with_shape(shape.clone()),
            TensorType::new(shape, DType::I64),
        ])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        check_numeric(x.dtype, "top_k")?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let largest = ctx.int("largest")? != 0;
        let lay = AxisLayout::new(&x.shape, axis);
        let k = topk_k(ctx.input(1)?, Some(lay.len as i64))? as usize;
        let keys = Keys::of(x);
        let out_lay = AxisLayout { len: k, ..lay };
        let mut flat = vec![0usize; lay.outer * k * lay.inner];
        let mut indices = vec![0i64; flat.len()];
        let mut order: Vec<usize> = Vec::with_capacity(lay.len);
        for lane in 0..lay.lanes() {
            // Best first; equal values keep the lower index first.
            let by_rank = |&a: &usize, &b: &usize| {
                let c = keys.cmp(lay.index(lane, a), lay.index(lane, b), true);
                (if largest { c.reverse() } else { c }).then(a.cmp(&b))
            };
            order.clear();
            order.extend(0..lay.len);
            if k > 0 && k < lay.len {
                order.select_nth_unstable_by(k - 1, by_rank);
            }
            order[..k].sort_unstable_by(by_rank);
            for (j, &src) in order[..k].iter().enumerate() {
                let o = out_lay.index(lane, j);
                flat[o] = lay.index(lane, src);
                indices[o] = src as i64;
            }
        }
        let mut shape = x.shape.clone();
        shape[axis] = k;
        Ok(vec![
            gather(x, &flat, shape.clone())?,
            Tensor::i64(shape, indices),
        ])
    }),
};

// ---------------------------------------------------------------------------
// CumSum / CumProd

fn infer_scan(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    check_numeric(x.dtype(), ctx.def.mnemonic)?;
    let a = ctx.input(1)?;
    if !a.dtype().is_int() || a.rank() > 1 {
        return Err(format!(
            "{}'s axis must be an integer scalar, got {a}",
            ctx.def.mnemonic
        ));
    }
    Ok(vec![x.clone()])
}

/// A running sum or product along the axis operand's axis, optionally
/// exclusive (each output omits its own element) and reversed.
fn eval_scan(ctx: &EvalCtx, product: bool) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    check_numeric(x.dtype, ctx.def.mnemonic)?;
    let a = ctx.input(1)?;
    if a.len() != 1 {
        return Err(format!(
            "{}'s axis must hold one value, got shape {:?}",
            ctx.def.mnemonic, a.shape
        ));
    }
    let axis = norm_axis(a.get_i64(0), x.rank())?;
    let (exclusive, reverse) = (ctx.int("exclusive")? != 0, ctx.int("reverse")? != 0);
    let lay = AxisLayout::new(&x.shape, axis);
    fn scan<T: Copy>(
        v: &[T],
        lay: AxisLayout,
        (exclusive, reverse): (bool, bool),
        init: T,
        op: impl Fn(T, T) -> T,
    ) -> Vec<T> {
        let mut out = vec![init; v.len()];
        for lane in 0..lay.lanes() {
            let mut acc = init;
            for step in 0..lay.len {
                let i = lay.index(lane, if reverse { lay.len - 1 - step } else { step });
                let next = op(acc, v[i]);
                out[i] = if exclusive { acc } else { next };
                acc = next;
            }
        }
        out
    }
    let flags = (exclusive, reverse);
    let y = if x.dtype.is_float() {
        let v = x.to_f64_vec();
        let r = if product {
            scan(&v, lay, flags, 1.0, |a, b| a * b)
        } else {
            scan(&v, lay, flags, 0.0, |a, b| a + b)
        };
        Tensor::from_f64(x.dtype, x.shape.clone(), &r)
    } else {
        let v = i128_values(x);
        let r = if product {
            scan(&v, lay, flags, 1, i128::wrapping_mul)
        } else {
            scan(&v, lay, flags, 0, i128::wrapping_add)
        };
        from_i128(x.dtype, x.shape.clone(), &r)
    };
    Ok(vec![y])
}

const SCAN_ATTRS: &[AttrSpec] = &[
    attr("exclusive", AttrKind::Int, Default::Int(0)),
    attr("reverse", AttrKind::Int, Default::Int(0)),
];

pub static CUM_SUM: OpDef = OpDef {
    mnemonic: "cum_sum",
    summary: "Cumulative sum along an axis (inclusive or exclusive, forward or reverse)",
    operands: &[req("x"), req("axis")],
    results: Results::Fixed(1),
    attrs: SCAN_ATTRS,
    traits: &[],
    infer: infer_scan,
    eval: Some(|ctx| eval_scan(ctx, false)),
};

pub static CUM_PROD: OpDef = OpDef {
    mnemonic: "cum_prod",
    summary: "Cumulative product along an axis (inclusive or exclusive, forward or reverse)",
    operands: &[req("x"), req("axis")],
    results: Results::Fixed(1),
    attrs: SCAN_ATTRS,
    traits: &[],
    infer: infer_scan,
    eval: Some(|ctx| eval_scan(ctx, true)),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{Attr, Attrs};
    use crate::ops::testing::eval_with;

    fn run_all(
        def: &'static OpDef,
        attrs: &[(&str, i64)],
        inputs: &[Option<&Tensor>],
    ) -> Result<Vec<Tensor>, String> {
        let attrs: Attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), Attr::Int(*v)))
            .collect();
        eval_with(def, &attrs, inputs, 1)
    }

    fn run(def: &'static OpDef, attrs: &[(&str, i64)], inputs: &[Option<&Tensor>]) -> Tensor {
        run_all(def, attrs, inputs).unwrap().remove(0)
    }

    fn axes(v: &[i64]) -> Tensor {
        Tensor::i64(vec![v.len()], v.to_vec())
    }

    fn x3() -> Tensor {
        Tensor::f32(
            vec![3, 2, 2],
            vec![
                1.0, -2.0, 3.0, 4.0, 5.0, 6.0, -7.0, 8.0, 9.0, 10.0, 11.0, -12.0,
            ],
        )
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }

    // Expected values from numpy.
    #[test]
    fn float_reductions_match_numpy() {
        let x = x3();
        let y = run(&REDUCE_SUM, &[], &[Some(&x), Some(&axes(&[1]))]);
        assert_eq!(
            (y.shape.clone(), y.to_f64_vec()),
            (vec![3, 1, 2], vec![4.0, 2.0, -2.0, 14.0, 20.0, -2.0])
        );
        let y = run(
            &REDUCE_MEAN,
            &[("keepdims", 0)],
            &[Some(&x), Some(&axes(&[0, -1]))],
        );
        close(&y.to_f64_vec(), &[4.833333492279053, 1.1666666269302368]);
        let y = run(&REDUCE_L2, &[("keepdims", 0)], &[Some(&x), None]);
        assert_eq!(y.shape, Vec::<usize>::new());
        close(&y.to_f64_vec(), &[25.495098114013672]);
        let y = run(&REDUCE_LOG_SUM_EXP, &[], &[Some(&x), Some(&axes(&[-1]))]);
        close(
            &y.to_f64_vec(),
            &[
                1.048587351573742,
                4.313261687518223,
                6.313261687518223,
                8.000000305902274,
                10.313261687518223,
                11.000000000102618,
            ],
        );
        let y = run(
            &REDUCE_PROD,
            &[("keepdims", 0)],
            &[Some(&x), Some(&axes(&[2]))],
        );
        assert_eq!(y.to_f64_vec(), vec![-2.0, 12.0, 30.0, -56.0, 90.0, -132.0]);
        let y = run(
            &REDUCE_MAX,
            &[("keepdims", 0)],
            &[Some(&x), Some(&axes(&[0, 1]))],
        );
        assert_eq!(y.to_f64_vec(), vec![11.0, 10.0]);
        let y = run(
            &REDUCE_MIN,
            &[("keepdims", 0)],
            &[Some(&x), Some(&axes(&[1, 0]))],
        );
        assert_eq!(y.to_f64_vec(), vec![-7.0, -12.0]);
        let y = run(
            &REDUCE_L1,
            &[("keepdims", 0)],
            &[Some(&x), Some(&axes(&[1]))],
        );
        assert_eq!(y.to_f64_vec(), vec![4.0, 6.0, 12.0, 14.0, 20.0, 22.0]);
        let y = run(&REDUCE_SUM_SQUARE, &[], &[Some(&x), None]);
        assert_eq!(
            (y.shape.clone(), y.to_f64_vec()),
            (vec![1, 1, 1], vec![650.0])
        );
    }

    #[test]
    fn noop_and_empty_sets() {
        let x = Tensor::f32(vec![2, 2], vec![-2.0, 3.0, 4.0, 5.0]);
        // Reducing over no axes maps each element on its own (as onnxruntime does).
        let noop = [("noop_with_empty_axes", 1)];
        assert_eq!(
            run(&REDUCE_SUM_SQUARE, &noop, &[Some(&x), Some(&axes(&[]))]).to_f64_vec(),
            vec![4.0, 9.0, 16.0, 25.0]
        );
        assert_eq!(
            run(&REDUCE_L1, &noop, &[Some(&x), None]).to_f64_vec(),
            vec![2.0, 3.0, 4.0, 5.0]
        );
        // Empty reduced dims give each reduction's identity.
        let e = Tensor::f32(vec![2, 0, 4], vec![]);
        let a = axes(&[1]);
        let ident = |def: &'static OpDef| run(def, &[], &[Some(&e), Some(&a)]);
        assert_eq!(ident(&REDUCE_SUM).shape, vec![2, 1, 4]);
        assert_eq!(ident(&REDUCE_SUM).to_f64_vec(), vec![0.0; 8]);
        assert_eq!(ident(&REDUCE_PROD).to_f64_vec(), vec![1.0; 8]);
        assert_eq!(ident(&REDUCE_MAX).to_f64_vec(), vec![f64::NEG_INFINITY; 8]);
        assert_eq!(ident(&REDUCE_MIN).to_f64_vec(), vec![f64::INFINITY; 8]);
        assert_eq!(
            ident(&REDUCE_LOG_SUM).to_f64_vec(),
            vec![f64::NEG_INFINITY; 8]
        );
        assert_eq!(
            ident(&REDUCE_LOG_SUM_EXP).to_f64_vec(),
            vec![f64::NEG_INFINITY; 8]
        );
        let ei = Tensor::from_i64(DType::I32, vec![0], &[]);
        assert_eq!(
            run(&REDUCE_MAX, &[], &[Some(&ei), None]).to_i64_vec(),
            vec![i32::MIN as i64]
        );
        let eb = Tensor::new(DType::Bool, vec![0], Data::Bool(vec![])).unwrap();
        assert_eq!(
            run(&REDUCE_MAX, &[], &[Some(&eb), None]).data,
            Data::Bool(vec![false])
        );
    }

    #[test]
    fn integer_reductions_are_exact() {
        let i = Tensor::from_i64(DType::I32, vec![2, 2], &[3, -7, 2, 9]);
        assert_eq!(
            run(
                &REDUCE_MEAN,
                &[("keepdims", 0)],
                &[Some(&i), Some(&axes(&[1]))]
            )
            .to_i64_vec(),
            vec![-2, 5]
        );
        let big =
            Tensor::new(DType::U64, vec![2], Data::U64(vec![u64::MAX, u64::MAX - 1])).unwrap();
        assert_eq!(
            run(&REDUCE_MAX, &[], &[Some(&big), None]).data,
            Data::U64(vec![u64::MAX])
        );
        // Wrapping like the element type: (2^64 - 1) + (2^64 - 2) = 2^64 - 3 (mod 2^64)
        assert_eq!(
            run(&REDUCE_SUM, &[], &[Some(&big), None]).data,
            Data::U64(vec![u64::MAX - 2])
        );
        let b = Tensor::new(DType::Bool, vec![3], Data::Bool(vec![false, true, false])).unwrap();
        assert_eq!(
            run(&REDUCE_MIN, &[], &[Some(&b), None]).data,
            Data::Bool(vec![false])
        );
        assert!(run_all(&REDUCE_SUM, &[], &[Some(&b), None]).is_err());
    }

    #[test]
    fn arg_max_min() {
        let a = Tensor::f32(vec![2, 4], vec![2.0, 1.0, 3.0, 3.0, 0.0, 5.0, 5.0, 1.0]);
        let y = run(&ARG_MAX, &[("axis", 1), ("keepdims", 0)], &[Some(&a)]);
        assert_eq!((y.shape.clone(), y.to_i64_vec()), (vec![2], vec![2, 1]));
        let y = run(
            &ARG_MAX,
            &[("axis", -1), ("select_last_index", 1)],
            &[Some(&a)],
        );
        assert_eq!((y.shape.clone(), y.to_i64_vec()), (vec![2, 1], vec![3, 2]));
        let y = run(&ARG_MIN, &[], &[Some(&a)]);
        assert_eq!(
            (y.shape.clone(), y.to_i64_vec()),
            (vec![1, 4], vec![1, 0, 0, 1])
        );
        let n = Tensor::f32(vec![3], vec![1.0, f32::NAN, 2.0]);
        assert_eq!(run(&ARG_MAX, &[], &[Some(&n)]).to_i64_vec(), vec![1]);
        assert_eq!(run(&ARG_MIN, &[], &[Some(&n)]).to_i64_vec(), vec![1]);
    }

    #[test]
    fn top_k_orders_ties_by_index() {
        let t = Tensor::f32(
            vec![2, 5],
            vec![0.0, 3.0, 1.0, 3.0, 2.0, 4.0, 4.0, 1.0, 0.0, 4.0],
        );
        let r = run_all(
            &TOP_K,
            &[],
            &[Some(&t), Some(&Tensor::i64(vec![1], vec![3]))],
        )
        .unwrap();
        assert_eq!(r[0].to_f64_vec(), vec![3.0, 3.0, 2.0, 4.0, 4.0, 4.0]);
        assert_eq!(r[1].to_i64_vec(), vec![1, 3, 4, 0, 1, 4]);
        let r = run_all(
            &TOP_K,
            &[("largest", 0)],
            &[Some(&t), Some(&Tensor::i64(vec![1], vec![2]))],
        )
        .unwrap();
        assert_eq!(r[0].to_f64_vec(), vec![0.0, 1.0, 0.0, 1.0]);
        assert_eq!(r[1].to_i64_vec(), vec![0, 2, 3, 2]);
        // along axis 0, int data keeps its type
        let u = Tensor::from_i64(DType::U64, vec![3, 2], &[5, 1, 7, 1, 6, 0]);
        let r = run_all(
            &TOP_K,
            &[("axis", 0)],
            &[Some(&u), Some(&Tensor::i64(vec![1], vec![2]))],
        )
        .unwrap();
        assert_eq!(r[0].data, Data::U64(vec![7, 1, 6, 1]));
        assert_eq!(r[1].to_i64_vec(), vec![1, 0, 2, 1]);
        assert!(run_all(
            &TOP_K,
            &[],
            &[Some(&t), Some(&Tensor::i64(vec![1], vec![6]))]
        )
        .is_err());
    }

    #[test]
    fn scans() {
        let c = Tensor::from_f64(DType::F64, vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let ax = |a| Tensor::scalar_i64(a);
        assert_eq!(
            run(&CUM_SUM, &[], &[Some(&c), Some(&ax(0))]).to_f64_vec(),
            vec![1.0, 2.0, 3.0, 5.0, 7.0, 9.0]
        );
        assert_eq!(
            run(&CUM_PROD, &[], &[Some(&c), Some(&ax(-1))]).to_f64_vec(),
            vec![1.0, 2.0, 6.0, 4.0, 20.0, 120.0]
        );
        let y = run(
            &CUM_SUM,
            &[("exclusive", 1), ("reverse", 1)],
            &[Some(&c), Some(&ax(1))],
        );
        assert_eq!(y.to_f64_vec(), vec![5.0, 3.0, 0.0, 11.0, 6.0, 0.0]);
        let y = run(&CUM_PROD, &[("exclusive", 1)], &[Some(&c), Some(&ax(1))]);
        assert_eq!(y.to_f64_vec(), vec![1.0, 1.0, 2.0, 1.0, 4.0, 20.0]);
        let i = Tensor::from_i64(DType::I32, vec![3], &[i32::MAX as i64, 1, 1]);
        assert_eq!(
            run(&CUM_SUM, &[], &[Some(&i), Some(&ax(0))]).to_i64_vec(),
            vec![i32::MAX as i64, i32::MIN as i64, i32::MIN as i64 + 1]
        );
    }

    fn infer(
        def: &'static OpDef,
        attrs: &[(&str, i64)],
        ops: &[Option<&TensorType>],
        consts: &[Option<&crate::tensor::SharedTensor>],
    ) -> Result<Vec<TensorType>, String> {
        let attrs: Attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), Attr::Int(*v)))
            .collect();
        let ctx = InferCtx {
            def,
            attrs: &attrs,
            operands: ops.to_vec(),
            consts: consts.to_vec(),
            syms: Vec::new(),
            num_results: 2,
        };
        (def.infer)(&ctx)
    }

    #[test]
    fn inference_keeps_symbols() {
        let x = TensorType::new(
            vec![Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(8)],
            DType::F32,
        );
        let at = TensorType::fixed(&[1], DType::I64);
        let a = std::sync::Arc::new(axes(&[-1]));
        let r = infer(&REDUCE_MEAN, &[], &[Some(&x), Some(&at)], &[None, Some(&a)]).unwrap();
        assert_eq!(
            r[0].shape,
            vec![Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(1)]
        );
        let r = infer(
            &REDUCE_SUM,
            &[("keepdims", 0)],
            &[Some(&x), Some(&at)],
            &[None, Some(&a)],
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![Dim::sym("batch"), Dim::sym("seq")]);
        // run-time axes: rank known, sizes not
        let r = infer(
            &REDUCE_SUM,
            &[("keepdims", 0)],
            &[Some(&x), Some(&at)],
            &[None, None],
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![Dim::Unknown, Dim::Unknown]);
        let r = infer(
            &ARG_MAX,
            &[("axis", 1), ("keepdims", 0)],
            &[Some(&x)],
            &[None],
        )
        .unwrap();
        assert_eq!(
            (r[0].shape.clone(), r[0].dtype()),
            (vec![Dim::sym("batch"), Dim::fixed(8)], DType::I64)
        );
        let kt = TensorType::fixed(&[1], DType::I64);
        let r = infer(&TOP_K, &[], &[Some(&x), Some(&kt)], &[None, None]).unwrap();
        assert_eq!(
            r[0].shape,
            vec![Dim::sym("batch"), Dim::sym("seq"), Dim::Unknown]
        );
        let k = std::sync::Arc::new(Tensor::i64(vec![1], vec![3]));
        let r = infer(&TOP_K, &[], &[Some(&x), Some(&kt)], &[None, Some(&k)]).unwrap();
        assert_eq!(
            (r[1].shape[2].clone(), r[1].dtype()),
            (Dim::fixed(3), DType::I64)
        );
    }
}
