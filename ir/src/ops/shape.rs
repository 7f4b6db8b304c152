//! Data movement and shape ops: reshape, transpose, concat, split, slice,
//! gather/scatter, pad, tile, expand, squeeze/unsqueeze, shape/size...
//!
//! Most kernels here only move elements, so they are written once for every
//! element type: they compute, for each result element, the flat position it
//! comes from ([`take`]), and extra values (a pad constant, scatter updates)
//! are appended to the source first ([`concat_flat`]).

use super::quant::round_to;
use super::util::{broadcast_dims, broadcast_shapes, norm_axis, to_usize_shape};
use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::dtype::DType;
use crate::tensor::{strides_of, Data};

/// Slice bounds at or beyond this mean "to the end" (exporters write
/// INT64_MAX, older ones INT32_MAX).
const SLICE_TO_END: i64 = i32::MAX as i64;

/// Rebuilds a [`Data`] of the same variant: `$body` maps the vector `$v` of a
/// one-value-per-element variant, `$cbody` the interleaved pairs `$c` of a
/// complex one.
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr, complex $c:ident => $cbody:expr) => {
        match $data {
            Data::F64($v) => Data::F64($body),
            Data::F32($v) => Data::F32($body),
            Data::F16($v) => Data::F16($body),
            Data::BF16($v) => Data::BF16($body),
            Data::I64($v) => Data::I64($body),
            Data::I32($v) => Data::I32($body),
            Data::I16($v) => Data::I16($body),
            Data::I8($v) => Data::I8($body),
            Data::U64($v) => Data::U64($body),
            Data::U32($v) => Data::U32($body),
            Data::U16($v) => Data::U16($body),
            Data::U8($v) => Data::U8($body),
            Data::Bool($v) => Data::Bool($body),
            Data::Str($v) => Data::Str($body),
            Data::C64($c) => Data::C64($cbody),
            Data::C128($c) => Data::C128($cbody),
        }
    };
}

/// The elements of `t` at flat positions `idx`, as a tensor of `shape`. Works
/// for every element type (strings, sub-byte codes, complex pairs).
// One generic body covers Copy numbers and Strings alike.
#[allow(clippy::clone_on_copy)]
pub fn take(t: &Tensor, idx: &[usize], shape: Vec<usize>) -> Result<Tensor, String> {
    let n = t.len();
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(format!("element {bad} is out of range for {n} elements"));
    }
    let data = map_data!(&t.data,
        v => idx.iter().map(|&i| v[i].clone()).collect(),
        complex c => idx.iter().flat_map(|&i| [c[2 * i], c[2 * i + 1]]).collect());
    Tensor::new(t.dtype, shape, data)
}

/// The elements of all `parts` one after the other, as a 1-D tensor. The
/// parts must share an element type.
pub fn concat_flat(parts: &[&Tensor]) -> Result<Tensor, String> {
    let first = parts.first().ok_or("nothing to concatenate")?;
    if let Some(p) = parts.iter().find(|p| p.dtype != first.dtype) {
        return Err(format!(
            "element types differ: {} vs {}",
            first.dtype, p.dtype
        ));
    }
    macro_rules! join {
        ($($var:ident),*) => {
            match &first.data {
                $(Data::$var(_) => {
                    let mut out = Vec::new();
                    for p in parts {
                        match &p.data {
                            Data::$var(v) => out.extend_from_slice(v),
                            _ => return Err("storage does not match the element type".into()),
                        }
                    }
                    Data::$var(out)
                })*
            }
        };
    }
    let data =
        join!(F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, Bool, Str, C64, C128);
    let n = parts.iter().map(|p| p.len()).sum();
    Tensor::new(first.dtype, vec![n], data)
}

/// Calls `f` with every multi-index of `shape`, in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let n: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        f(&idx);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Flat source positions of an affine view: element `i` of `out_shape` reads
/// `offset + Σ i_k * strides[k]` (strides may be 0 or negative).
pub fn strided_map(out_shape: &[usize], offset: i64, strides: &[i64]) -> Vec<usize> {
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for_each_index(out_shape, |idx| {
        let off = idx
            .iter()
            .zip(strides)
            .fold(offset, |acc, (&i, &s)| acc + i as i64 * s);
        out.push(off as usize);
    });
    out
}

fn fixed_dims(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::fixed(d as i64)).collect()
}

fn dim_product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::fixed(1), |acc, d| acc.mul(d))
}

/// The values of integer operand `i` when they are all known numbers
/// (a constant, or a shape computation that folds to one).
fn const_ints(ctx: &InferCtx, i: usize) -> Option<Vec<i64>> {
    match ctx.sym_input(i) {
        Some(d) => d.iter().map(Dim::as_fixed).collect(),
        None => ctx.const_input(i).map(|t| t.to_i64_vec()),
    }
}

/// The values of a shape-like integer operand as dims (`[batch, seq, 4]`
/// when computed from symbolic shapes), when known.
fn dim_values(ctx: &InferCtx, i: usize) -> Option<Vec<Dim>> {
    ctx.sym_input(i)
}

/// The static length of a 1-D operand (how many axes, pads, ... it lists).
fn static_len(t: &TensorType, what: &str) -> Result<usize, String> {
    match t.static_shape().as_deref() {
        Some([n]) => Ok(*n as usize),
        Some([]) => Ok(1),
        _ => Err(format!("{what} must be a 1-D tensor of static length")),
    }
}

/// Normalizes a list of axes, rejecting duplicates.
fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if out.contains(&a) {
            return Err(format!("axis {a} is listed twice"));
        }
        out.push(a);
    }
    Ok(out)
}

/// Normalizes an index into a dim of size `n` (negative counts from the end).
fn norm_index(i: i64, n: usize) -> Result<usize, String> {
    let j = if i < 0 { i + n as i64 } else { i };
    if j < 0 || j >= n as i64 {
        return Err(format!("index {i} is out of range for a dim of size {n}"));
    }
    Ok(j as usize)
}

/// The slices `picks` of `x` along `axis`, in that order (repeats allowed).
pub fn take_along(x: &Tensor, axis: usize, picks: &[usize]) -> Result<Tensor, String> {
    let n = x.shape[axis];
    if let Some(&bad) = picks.iter().find(|&&k| k >= n) {
        return Err(format!("index {bad} is out of range for a dim of size {n}"));
    }
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    let mut idx = Vec::with_capacity(outer * picks.len() * inner);
    for o in 0..outer {
        for &k in picks {
            let base = (o * n + k) * inner;
            idx.extend(base..base + inner);
        }
    }
    let mut shape = x.shape.clone();
    shape[axis] = picks.len();
    take(x, &idx, shape)
}

/// The more informative of two dims that must be equal (fixed beats symbolic
/// beats unknown); an error when both are fixed and differ.
fn merge_dim(a: &Dim, b: &Dim) -> Result<Dim, String> {
    if !a.compatible(b) {
        return Err(format!("dims differ: {a} vs {b}"));
    }
    Ok(match (a, b) {
        (Dim::Unknown, _) => b.clone(),
        (_, _) if b.is_fixed() => b.clone(),
        _ => a.clone(),
    })
}

// ---------------------------------------------------------------- reshape

/// Output dims of a Reshape to `target` (ONNX rules: 0 copies the input dim
/// unless `allowzero`, one -1 is inferred), symbolic where the input or the
/// target is.
pub fn reshape_dims(input: &[Dim], target: &[Dim], allowzero: bool) -> Result<Vec<Dim>, String> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        match t.as_fixed() {
            Some(-1) => {
                if infer_at.replace(i).is_some() {
                    return Err("reshape target has more than one -1".into());
                }
                out.push(Dim::fixed(1));
            }
            Some(0) if !allowzero => out.push(
                input
                    .get(i)
                    .cloned()
                    .ok_or("reshape copies a dim the input lacks")?,
            ),
            Some(v) if v < 0 => return Err(format!("reshape target has invalid dim {v}")),
            _ => out.push(t.clone()),
        }
    }
    let total = dim_product(input);
    if let Some(i) = infer_at {
        let known = dim_product(&out);
        out[i] = if known.as_fixed() == Some(0) {
            Dim::fixed(0)
        } else {
            total.div_exact(&known)
        };
    } else {
        let prod = dim_product(&out);
        if let (Some(a), Some(b)) = (total.as_fixed(), prod.as_fixed()) {
            if a != b {
                return Err(format!("cannot reshape {a} elements into {b}"));
            }
        }
    }
    Ok(out)
}

pub static RESHAPE: OpDef = OpDef {
    mnemonic: "reshape",
    summary: "Same data, new shape (0 copies a dim, -1 is inferred)",
    operands: &[req("data"), req("shape")],
    results: Results::Fixed(1),
    attrs: &[attr("allowzero", AttrKind::Int, Default::Int(0))],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let rank = static_len(ctx.input(1)?, "reshape target")?;
        let dims = match dim_values(ctx, 1) {
            Some(t) => reshape_dims(&x.shape, &t, ctx.int("allowzero")? != 0)?,
            None => vec![Dim::Unknown; rank],
        };
        Ok(vec![x.with_shape(dims)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let target: Vec<Dim> = ctx
            .input(1)?
            .to_i64_vec()
            .into_iter()
            .map(Dim::fixed)
            .collect();
        let dims = reshape_dims(&fixed_dims(&x.shape), &target, ctx.int("allowzero")? != 0)?;
        let shape = dims
            .iter()
            .map(|d| d.as_fixed().map(|v| v as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or("reshape target does not divide the input")?;
        if shape.iter().product::<usize>() != x.len() {
            return Err(format!("cannot reshape {:?} into {:?}", x.shape, shape));
        }
        let mut t = x.clone();
        t.shape = shape;
        Ok(vec![t])
    }),
};

// ---------------------------------------------------------------- transpose

fn transpose_perm(perm: Option<Vec<i64>>, rank: usize) -> Result<Vec<usize>, String> {
    let Some(p) = perm else {
        return Ok((0..rank).rev().collect());
    };
    if p.len() != rank {
        return Err(format!("perm {p:?} does not have rank {rank} entries"));
    }
    let axes = norm_axes(&p, rank)?;
    Ok(axes)
}

fn perm_attr(ctx: &dyn AttrAccess) -> Result<Option<Vec<i64>>, String> {
    if ctx.has_attr("perm") {
        ctx.ints("perm").map(Some)
    } else {
        Ok(None)
    }
}

/// `x` with its axes permuted: result axis k is input axis `perm[k]`.
pub fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor, String> {
    let strides = x.strides();
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let st: Vec<i64> = perm.iter().map(|&p| strides[p] as i64).collect();
    take(x, &strided_map(&shape, 0, &st), shape)
}

pub static TRANSPOSE: OpDef = OpDef {
    mnemonic: "transpose",
    summary: "Permutes the axes (default: reverses them)",
    operands: &[req("data")],
    results: Results::Fixed(1),
    attrs: &[attr("perm", AttrKind::Ints, Default::Absent)],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let perm = transpose_perm(perm_attr(ctx)?, x.rank())?;
        Ok(vec![x.with_shape(
            perm.iter().map(|&p| x.shape[p].clone()).collect(),
        )])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let perm = transpose_perm(perm_attr(ctx)?, x.rank())?;
        Ok(vec![transpose(x, &perm)?])
    }),
};

// ---------------------------------------------------------------- concat / split

pub static CONCAT: OpDef = OpDef {
    mnemonic: "concat",
    summary: "Joins tensors along an axis",
    operands: &[variadic("inputs")],
    results: Results::Fixed(1),
    attrs: &[attr("axis", AttrKind::Int, Default::Required)],
    traits: &[],
    infer: |ctx| {
        let inputs: Vec<&TensorType> = ctx.operands.iter().flatten().copied().collect();
        let first = *inputs.first().ok_or("concat needs at least one operand")?;
        let axis = norm_axis(ctx.int("axis")?, first.rank())?;
        let mut shape = first.shape.clone();
        for t in &inputs[1..] {
            if t.dtype() != first.dtype() || t.rank() != first.rank() {
                return Err(format!("concat operands differ: {first} vs {t}"));
            }
            for (i, d) in t.shape.iter().enumerate() {
                shape[i] = if i == axis {
                    shape[i].add(d)
                } else {
                    merge_dim(&shape[i], d)?
                };
            }
        }
        Ok(vec![first.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let inputs: Vec<&Tensor> = ctx.inputs.iter().flatten().copied().collect();
        let first = *inputs.first().ok_or("concat needs at least one operand")?;
        let axis = norm_axis(ctx.int("axis")?, first.rank())?;
        let mut shape = first.shape.clone();
        shape[axis] = 0;
        for t in &inputs {
            let same = t.rank() == first.rank()
                && (0..t.rank()).all(|i| i == axis || t.shape[i] == first.shape[i]);
            if !same {
                return Err(format!(
                    "concat operand shapes differ: {:?} vs {:?}",
                    first.shape, t.shape
                ));
            }
            shape[axis] += t.shape[axis];
        }
        let outer: usize = first.shape[..axis].iter().product();
        let chunks: Vec<usize> = inputs
            .iter()
            .map(|t| t.shape[axis..].iter().product())
            .collect();
        let bases: Vec<usize> = inputs
            .iter()
            .scan(0, |acc, t| Some(std::mem::replace(acc, *acc + t.len())))
            .collect();
        let mut idx = Vec::with_capacity(shape.iter().product());
        for o in 0..outer {
            for (c, b) in chunks.iter().zip(&bases) {
                idx.extend(b + o * c..b + (o + 1) * c);
            }
        }
        Ok(vec![take(&concat_flat(&inputs)?, &idx, shape)?])
    }),
};

/// The sizes of Split's pieces along a dim: `split` when given, else equal
/// pieces (the last smaller when the dim does not divide).
fn split_sizes(
    dim: &Dim,
    split: Option<&[i64]>,
    num_outputs: Option<i64>,
    n: usize,
) -> Result<Vec<Dim>, String> {
    if let Some(k) = num_outputs {
        if k as usize != n {
            return Err(format!("num_outputs is {k} but the op has {n} results"));
        }
    }
    if let Some(s) = split {
        if s.len() != n {
            return Err(format!("split lists {} sizes for {n} results", s.len()));
        }
        if let Some(bad) = s.iter().find(|&&v| v < 0) {
            return Err(format!("negative split size {bad}"));
        }
        if let Some(d) = dim.as_fixed() {
            if s.iter().sum::<i64>() != d {
                return Err(format!("split sizes {s:?} do not add up to {d}"));
            }
        }
        return Ok(s.iter().map(|&v| Dim::fixed(v)).collect());
    }
    if n == 0 {
        return Err("split needs at least one result".into());
    }
    match dim.as_fixed() {
        Some(d) => {
            let chunk = (d + n as i64 - 1) / n as i64;
            let last = d - chunk * (n as i64 - 1);
            if last < 0 {
                return Err(format!("cannot split {d} into {n} pieces of {chunk}"));
            }
            Ok((0..n)
                .map(|i| Dim::fixed(if i + 1 == n { last } else { chunk }))
                .collect())
        }
        None => Ok(vec![dim.div_exact(&Dim::fixed(n as i64)); n]),
    }
}

fn opt_int(ctx: &dyn AttrAccess, name: &str) -> Result<Option<i64>, String> {
    if ctx.has_attr(name) {
        ctx.int(name).map(Some)
    } else {
        Ok(None)
    }
}

/// Slices `x` along `axis` into consecutive pieces of the given sizes.
fn split_along(x: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>, String> {
    let strides = x.strides();
    let st: Vec<i64> = strides.iter().map(|&s| s as i64).collect();
    let mut start = 0usize;
    sizes
        .iter()
        .map(|&len| {
            let mut shape = x.shape.clone();
            shape[axis] = len;
            let idx = strided_map(&shape, (start * strides[axis]) as i64, &st);
            start += len;
            take(x, &idx, shape)
        })
        .collect()
}

pub static SPLIT: OpDef = OpDef {
    mnemonic: "split",
    summary: "Splits a tensor along an axis (by sizes, or into equal pieces)",
    operands: &[req("input"), opt("split")],
    results: Results::Range(1, usize::MAX),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(0)),
        attr("num_outputs", AttrKind::Int, Default::Absent),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let n = ctx.num_results;
        let sizes = match (ctx.opt_input(1), const_ints(ctx, 1)) {
            (Some(_), Some(split)) => split_sizes(
                &x.shape[axis],
                Some(&split),
                opt_int(ctx, "num_outputs")?,
                n,
            )?,
            (Some(_), None) => match dim_values(ctx, 1) {
                Some(d) if d.len() == n => d,
                _ => vec![Dim::Unknown; n],
            },
            (None, _) => split_sizes(&x.shape[axis], None, opt_int(ctx, "num_outputs")?, n)?,
        };
        Ok(sizes
            .into_iter()
            .map(|d| {
                let mut s = x.shape.clone();
                s[axis] = d;
                x.with_shape(s)
            })
            .collect())
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let split = ctx.opt_input(1).map(|t| t.to_i64_vec());
        let dim = Dim::fixed(x.shape[axis] as i64);
        let sizes = split_sizes(
            &dim,
            split.as_deref(),
            opt_int(ctx, "num_outputs")?,
            ctx.num_results,
        )?;
        let sizes: Vec<usize> = sizes
            .iter()
            .map(|d| d.as_fixed().unwrap_or(0) as usize)
            .collect();
        split_along(x, axis, &sizes)
    }),
};

// ---------------------------------------------------------------- slice

/// One axis of a Slice after clamping: first index, step and length.
#[derive(Debug, PartialEq)]
struct SliceRange {
    start: i64,
    step: i64,
    len: i64,
}

/// ONNX Slice bounds on a dim of static size `d` (numpy semantics: negative
/// bounds count from the end, out-of-range bounds are clamped).
fn slice_range(d: i64, start: i64, end: i64, step: i64) -> Result<SliceRange, String> {
    if step == 0 {
        return Err("slice step cannot be 0".into());
    }
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (norm(start), norm(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(0, d - 1), e.clamp(-1, d - 1))
    };
    let span = if step > 0 { e - s } else { s - e };
    let len = if span <= 0 {
        0
    } else {
        (span + step.abs() - 1) / step.abs()
    };
    Ok(SliceRange {
        start: s,
        step,
        len,
    })
}

/// The sliced size of a dim, where the dim or the bounds may be symbolic.
/// Symbolic bounds are taken to lie inside the dim (as every exporter's
/// shape inference does); what no polynomial expresses is Unknown.
fn slice_dim(d: &Dim, start: &Dim, end: &Dim, step: i64) -> Result<Dim, String> {
    if let (Some(n), Some(s), Some(e)) = (d.as_fixed(), start.as_fixed(), end.as_fixed()) {
        return Ok(Dim::fixed(slice_range(n, s, e, step)?.len));
    }
    if step == 0 {
        return Err("slice step cannot be 0".into());
    }
    let norm = |b: &Dim| match b.as_fixed() {
        Some(v) if v >= SLICE_TO_END => {
            if step > 0 {
                d.clone()
            } else {
                d.sub(&Dim::fixed(1))
            }
        }
        Some(v) if v <= -SLICE_TO_END => Dim::fixed(if step > 0 { 0 } else { -1 }),
        Some(v) if v < 0 => d.add(&Dim::fixed(v)),
        _ => b.clone(),
    };
    let (s, e) = (norm(start), norm(end));
    let span = if step > 0 { e.sub(&s) } else { s.sub(&e) };
    let k = step.abs();
    Ok(match span.as_fixed() {
        Some(v) => Dim::fixed(if v <= 0 { 0 } else { (v + k - 1) / k }),
        None if k == 1 => span,
        None => span.div_exact(&Dim::fixed(k)),
    })
}

/// Per-axis (start, end, step) of a Slice, from its operand values.
fn slice_params<T: Clone>(
    rank: usize,
    starts: &[T],
    ends: &[T],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(usize, T, T, i64)>, String> {
    let n = starts.len();
    if ends.len() != n {
        return Err(format!("slice has {n} starts but {} ends", ends.len()));
    }
    let axes = match axes {
        Some(a) if a.len() != n => {
            return Err(format!("slice has {n} starts but {} axes", a.len()))
        }
        Some(a) => norm_axes(a, rank)?,
        None if n > rank => return Err(format!("slice has {n} starts for rank {rank}")),
        None => (0..n).collect(),
    };
    if let Some(s) = steps {
        if s.len() != n {
            return Err(format!("slice has {n} starts but {} steps", s.len()));
        }
    }
    Ok((0..n)
        .map(|i| {
            (
                axes[i],
                starts[i].clone(),
                ends[i].clone(),
                steps.map_or(1, |s| s[i]),
            )
        })
        .collect())
}

pub static SLICE: OpDef = OpDef {
    mnemonic: "slice",
    summary: "Strided slice along some axes (numpy semantics, clamped bounds)",
    operands: &[
        req("data"),
        req("starts"),
        req("ends"),
        opt("axes"),
        opt("steps"),
    ],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let (starts, ends) = (dim_values(ctx, 1), dim_values(ctx, 2));
        let axes = const_ints(ctx, 3);
        let steps = const_ints(ctx, 4);
        let axes_known = ctx.opt_input(3).is_none() || axes.is_some();
        let steps_known = ctx.opt_input(4).is_none() || steps.is_some();
        let mut shape = x.shape.clone();
        match (starts, ends) {
            (Some(s), Some(e)) if axes_known && steps_known => {
                for (a, s, e, st) in
                    slice_params(x.rank(), &s, &e, axes.as_deref(), steps.as_deref())?
                {
                    shape[a] = slice_dim(&x.shape[a], &s, &e, st)?;
                }
            }
            _ if axes_known => {
                // Bounds unknown: only the listed axes change.
                let n = static_len(ctx.input(1)?, "slice starts")?;
                let listed = match &axes {
                    Some(a) => norm_axes(a, x.rank())?,
                    None => (0..n.min(x.rank())).collect(),
                };
                for a in listed {
                    shape[a] = Dim::Unknown;
                }
            }
            _ => shape = vec![Dim::Unknown; x.rank()],
        }
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let ints = |i: usize| ctx.opt_input(i).map(|t| t.to_i64_vec());
        let (starts, ends) = (ctx.input(1)?.to_i64_vec(), ctx.input(2)?.to_i64_vec());
        let (axes, steps) = (ints(3), ints(4));
        let strides = x.strides();
        let mut shape = x.shape.clone();
        let mut st: Vec<i64> = strides.iter().map(|&s| s as i64).collect();
        let mut offset = 0i64;
        for (a, s, e, step) in
            slice_params(x.rank(), &starts, &ends, axes.as_deref(), steps.as_deref())?
        {
            let r = slice_range(x.shape[a] as i64, s, e, step)?;
            shape[a] = r.len as usize;
            if r.len > 0 {
                offset += r.start * strides[a] as i64;
            }
            st[a] = r.step * strides[a] as i64;
        }
        Ok(vec![take(x, &strided_map(&shape, offset, &st), shape)?])
    }),
};

// ---------------------------------------------------------------- gather

pub static GATHER: OpDef = OpDef {
    mnemonic: "gather",
    summary: "Takes slices along an axis at the given indices (negative count from the end)",
    operands: &[req("data"), req("indices")],
    results: Results::Fixed(1),
    attrs: &[attr("axis", AttrKind::Int, Default::Int(0))],
    traits: &[],
    infer: |ctx| {
        let (x, ind) = (ctx.input(0)?, ctx.input(1)?);
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let mut shape = x.shape[..axis].to_vec();
        shape.extend(ind.shape.iter().cloned());
        shape.extend(x.shape[axis + 1..].iter().cloned());
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let (x, ind) = (ctx.input(0)?, ctx.input(1)?);
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let n = x.shape[axis];
        let indices = ind
            .to_i64_vec()
            .into_iter()
            .map(|i| norm_index(i, n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut t = take_along(x, axis, &indices)?;
        let mut shape = x.shape[..axis].to_vec();
        shape.extend(&ind.shape);
        shape.extend(&x.shape[axis + 1..]);
        t.shape = shape;
        Ok(vec![t])
    }),
};

/// For each element of `indices` (ScatterElements/GatherElements layout), the
/// flat position in a tensor of `shape` it addresses along `axis`.
fn element_positions(shape: &[usize], ind: &Tensor, axis: usize) -> Result<Vec<usize>, String> {
    if ind.rank() != shape.len() {
        return Err(format!(
            "indices have rank {} but data has rank {}",
            ind.rank(),
            shape.len()
        ));
    }
    let strides = strides_of(shape);
    let values = ind.to_i64_vec();
    let mut out = Vec::with_capacity(values.len());
    let mut err = None;
    let mut k = 0;
    for_each_index(&ind.shape, |idx| {
        let mut pos = 0;
        for (d, &i) in idx.iter().enumerate() {
            let i = if d == axis {
                match norm_index(values[k], shape[d]) {
                    Ok(j) => j,
                    Err(e) => {
                        err.get_or_insert(e);
                        0
                    }
                }
            } else if i < shape[d] {
                i
            } else {
                err.get_or_insert(format!(
                    "indices shape {:?} exceeds data shape {shape:?}",
                    ind.shape
                ));
                0
            };
            pos += i * strides[d];
        }
        out.push(pos);
        k += 1;
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

pub static GATHER_ELEMENTS: OpDef = OpDef {
    mnemonic: "gather_elements",
    summary: "out[i][j] = data[index[i][j]][j] (along axis); result has the indices' shape",
    operands: &[req("data"), req("indices")],
    results: Results::Fixed(1),
    attrs: &[attr("axis", AttrKind::Int, Default::Int(0))],
    traits: &[],
    infer: |ctx| {
        let (x, ind) = (ctx.input(0)?, ctx.input(1)?);
        norm_axis(ctx.int("axis")?, x.rank())?;
        if ind.rank() != x.rank() {
            return Err(format!(
                "indices rank {} differs from data rank {}",
                ind.rank(),
                x.rank()
            ));
        }
        Ok(vec![x.with_shape(ind.shape.clone())])
    },
    eval: Some(|ctx| {
        let (x, ind) = (ctx.input(0)?, ctx.input(1)?);
        let axis = norm_axis(ctx.int("axis")?, x.rank())?;
        let pos = element_positions(&x.shape, ind, axis)?;
        Ok(vec![take(x, &pos, ind.shape.clone())?])
    }),
};

/// GatherND/ScatterND addressing: for each index tuple (the last dim of
/// `indices`, after `batch_dims` leading batch dims), the flat start of the
/// addressed slice of `data_shape`, and that slice's size.
fn nd_positions(
    data_shape: &[usize],
    ind: &Tensor,
    batch_dims: usize,
) -> Result<(Vec<usize>, usize), String> {
    let k = *ind.shape.last().ok_or("indices must have rank >= 1")?;
    if batch_dims >= ind.rank() || batch_dims + k > data_shape.len() {
        return Err(format!(
            "indices shape {:?} does not fit data shape {data_shape:?}",
            ind.shape
        ));
    }
    if data_shape[..batch_dims] != ind.shape[..batch_dims] {
        return Err("batch dims of data and indices differ".into());
    }
    let strides = strides_of(data_shape);
    let slice: usize = data_shape[batch_dims + k..].iter().product();
    let batch_stride: usize = data_shape[batch_dims..].iter().product();
    let per_batch: usize = ind.shape[batch_dims..ind.rank() - 1].iter().product();
    let values = ind.to_i64_vec();
    let tuples: usize = ind.shape[..ind.rank() - 1].iter().product();
    let mut out = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut pos = (t / per_batch.max(1)) * batch_stride;
        for j in 0..k {
            let d = batch_dims + j;
            pos += norm_index(values[t * k + j], data_shape[d])? * strides[d];
        }
        out.push(pos);
    }
    Ok((out, slice))
}

fn gather_nd_dims(data: &[Dim], ind: &[Dim], b: usize) -> Result<Vec<Dim>, String> {
    let k = ind.last().ok_or("indices must have rank >= 1")?;
    let k = k
        .as_fixed()
        .ok_or("the last dim of gather_nd indices must be static")? as usize;
    if b >= ind.len() || b + k > data.len() {
        return Err("gather_nd indices do not fit the data".into());
    }
    let mut shape = ind[..ind.len() - 1].to_vec();
    shape.extend(data[b + k..].iter().cloned());
    Ok(shape)
}

pub static GATHER_ND: OpDef = OpDef {
    mnemonic: "gather_nd",
    summary: "Gathers slices addressed by index tuples (last dim of indices)",
    operands: &[req("data"), req("indices")],
    results: Results::Fixed(1),
    attrs: &[attr("batch_dims", AttrKind::Int, Default::Int(0))],
    traits: &[],
    infer: |ctx| {
        let (x, ind) = (ctx.input(0)?, ctx.input(1)?);
        let b = ctx.int("batch_dims")?.max(0) as usize;
        Ok(vec![x.with_shape(gather_nd_dims(&x.shape, &ind.shape, b)?)])
    },
    eval: Some(|ctx| {
        let (x, ind) = (ctx.input(0)?, ctx.input(1)?);
        let b = usize::try_from(ctx.int("batch_dims")?).map_err(|_| "batch_dims must be >= 0")?;
        let (starts, slice) = nd_positions(&x.shape, ind, b)?;
        let idx: Vec<usize> = starts.iter().flat_map(|&s| s..s + slice).collect();
        let dims = gather_nd_dims(&fixed_dims(&x.shape), &fixed_dims(&ind.shape), b)?;
        let shape = dims
            .iter()
            .map(|d| d.as_fixed().unwrap_or(0) as usize)
            .collect();
        Ok(vec![take(x, &idx, shape)?])
    }),
};

// ---------------------------------------------------------------- scatter

/// Writes `updates` element `src` into `data` element `dst` for each pair, in
/// order, combining with `reduction` (none/add/mul/max/min).
pub fn scatter(
    data: &Tensor,
    updates: &Tensor,
    pairs: &[(usize, usize)],
    reduction: &str,
) -> Result<Tensor, String> {
    if data.dtype != updates.dtype {
        return Err(format!(
            "updates are {} but data is {}",
            updates.dtype, data.dtype
        ));
    }
    let n = data.len();
    if reduction == "none" {
        let mut map: Vec<usize> = (0..n).collect();
        for &(d, s) in pairs {
            map[d] = n + s;
        }
        return take(&concat_flat(&[data, updates])?, &map, data.shape.clone());
    }
    if !data.dtype.is_numeric() && data.dtype != DType::Bool {
        return Err(format!(
            "scatter reduction '{reduction}' on {} tensors",
            data.dtype
        ));
    }
    if data.dtype.is_float() {
        let f: fn(f64, f64) -> f64 = match reduction {
            "add" => |a, b| a + b,
            "mul" => |a, b| a * b,
            "max" => f64::max,
            "min" => f64::min,
            r => return Err(format!("unknown scatter reduction '{r}'")),
        };
        let (mut v, u) = (data.to_f64_vec(), updates.to_f64_vec());
        for &(d, s) in pairs {
            v[d] = round_to(data.dtype, f(v[d], u[s]));
        }
        return Ok(Tensor::from_f64(data.dtype, data.shape.clone(), &v));
    }
    let f: fn(i64, i64) -> i64 = match reduction {
        "add" => i64::wrapping_add,
        "mul" => i64::wrapping_mul,
        "max" => i64::max,
        "min" => i64::min,
        r => return Err(format!("unknown scatter reduction '{r}'")),
    };
    let (mut v, u) = (data.to_i64_vec(), updates.to_i64_vec());
    for &(d, s) in pairs {
        v[d] = f(v[d], u[s]);
    }
    Ok(Tensor::from_i64(data.dtype, data.shape.clone(), &v))
}

fn infer_scatter(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let (x, u) = (ctx.input(0)?, ctx.input(2)?);
    if x.dtype() != u.dtype() {
        return Err(format!(
            "updates are {} but data is {}",
            u.dtype(),
            x.dtype()
        ));
    }
    Ok(vec![x.clone()])
}

fn eval_scatter_elements(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (x, ind, upd) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    if ind.shape != upd.shape {
        return Err(format!(
            "indices shape {:?} differs from updates shape {:?}",
            ind.shape, upd.shape
        ));
    }
    let axis = norm_axis(ctx.int("axis")?, x.rank())?;
    let pos = element_positions(&x.shape, ind, axis)?;
    let pairs: Vec<(usize, usize)> = pos.into_iter().enumerate().map(|(s, d)| (d, s)).collect();
    Ok(vec![scatter(x, upd, &pairs, &ctx.string("reduction")?)?])
}

pub static SCATTER_ELEMENTS: OpDef = OpDef {
    mnemonic: "scatter_elements",
    summary: "Writes updates at per-element indices along an axis (optional reduction)",
    operands: &[req("data"), req("indices"), req("updates")],
    results: Results::Fixed(1),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(0)),
        attr("reduction", AttrKind::Str, Default::Str("none")),
    ],
    traits: &[],
    infer: infer_scatter,
    eval: Some(eval_scatter_elements),
};

pub static SCATTER_ND: OpDef = OpDef {
    mnemonic: "scatter_nd",
    summary: "Writes update slices at index tuples (optional reduction)",
    operands: &[req("data"), req("indices"), req("updates")],
    results: Results::Fixed(1),
    attrs: &[attr("reduction", AttrKind::Str, Default::Str("none"))],
    traits: &[],
    infer: infer_scatter,
    eval: Some(|ctx| {
        let (x, ind, upd) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        let (starts, slice) = nd_positions(&x.shape, ind, 0)?;
        if upd.len() != starts.len() * slice {
            return Err(format!(
                "updates shape {:?} does not match the indexed slices",
                upd.shape
            ));
        }
        let pairs: Vec<(usize, usize)> = starts
            .iter()
            .enumerate()
            .flat_map(|(t, &s)| (0..slice).map(move |j| (s + j, t * slice + j)))
            .collect();
        Ok(vec![scatter(x, upd, &pairs, &ctx.string("reduction")?)?])
    }),
};

/// KV-cache update: writes `update` into `past_cache` along `axis`, at a
/// per-batch write index (linear, or circular modulo the cache length).
pub static TENSOR_SCATTER: OpDef = OpDef {
    mnemonic: "tensor_scatter",
    summary: "Writes a sequence update into a cache along an axis at per-batch offsets",
    operands: &[req("past_cache"), req("update"), opt("write_indices")],
    results: Results::Fixed(1),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Int(-2)),
        attr("mode", AttrKind::Str, Default::Str("linear")),
    ],
    traits: &[],
    infer: |ctx| {
        let (c, u) = (ctx.input(0)?, ctx.input(1)?);
        if c.dtype() != u.dtype() || c.rank() != u.rank() {
            return Err(format!("update {u} does not fit cache {c}"));
        }
        Ok(vec![c.clone()])
    },
    eval: Some(|ctx| {
        let (c, u) = (ctx.input(0)?, ctx.input(1)?);
        let axis = norm_axis(ctx.int("axis")?, c.rank())?;
        if axis == 0 {
            return Err("tensor_scatter axis cannot be the batch axis".into());
        }
        let circular = match ctx.string("mode")?.as_str() {
            "linear" => false,
            "circular" => true,
            m => return Err(format!("unknown tensor_scatter mode '{m}'")),
        };
        let fits = u.rank() == c.rank()
            && (0..c.rank()).all(|i| {
                if i == axis {
                    u.shape[i] <= c.shape[i]
                } else {
                    u.shape[i] == c.shape[i]
                }
            });
        if !fits {
            return Err(format!(
                "update shape {:?} does not fit cache shape {:?}",
                u.shape, c.shape
            ));
        }
        let writes = match ctx.opt_input(2) {
            Some(w) => w.to_i64_vec(),
            None => vec![0; c.shape[0]],
        };
        let max_len = c.shape[axis] as i64;
        let strides = c.strides();
        let mut pairs = Vec::with_capacity(u.len());
        let mut err = None;
        let mut src = 0;
        for_each_index(&u.shape, |idx| {
            let w = writes.get(idx[0]).copied().unwrap_or(0);
            let mut s = w + idx[axis] as i64;
            if circular {
                s = s.rem_euclid(max_len.max(1));
            }
            if s < 0 || s >= max_len {
                err.get_or_insert(format!(
                    "write position {s} is outside the cache of length {max_len}"
                ));
            } else {
                let pos: usize = idx
                    .iter()
                    .enumerate()
                    .map(|(d, &i)| if d == axis { s as usize } else { i } * strides[d])
                    .sum();
                pairs.push((pos, src));
            }
            src += 1;
        });
        if let Some(e) = err {
            return Err(e);
        }
        Ok(vec![scatter(c, u, &pairs, "none")?])
    }),
};

// ---------------------------------------------------------------- squeeze / unsqueeze / flatten

pub static SQUEEZE: OpDef = OpDef {
    mnemonic: "squeeze",
    summary: "Removes size-1 axes (the listed ones, or all)",
    operands: &[req("data"), opt("axes")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let shape = match (ctx.opt_input(1), const_ints(ctx, 1)) {
            // Without axes only dims known to be 1 go: symbolic dims are
            // taken to be other than 1 (the rank must be decided statically).
            (None, _) => x
                .shape
                .iter()
                .filter(|d| d.as_fixed() != Some(1))
                .cloned()
                .collect(),
            (Some(_), Some(axes)) => {
                let axes = norm_axes(&axes, x.rank())?;
                if let Some(&a) = axes
                    .iter()
                    .find(|&&a| !x.shape[a].compatible(&Dim::fixed(1)))
                {
                    return Err(format!("cannot squeeze axis {a} of size {}", x.shape[a]));
                }
                x.shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, d)| d.clone())
                    .collect()
            }
            (Some(t), None) => {
                let n = static_len(t, "squeeze axes")?;
                vec![
                    Dim::Unknown;
                    x.rank()
                        .checked_sub(n)
                        .ok_or("more squeeze axes than dims")?
                ]
            }
        };
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let shape = match ctx.opt_input(1) {
            None => x.shape.iter().copied().filter(|&d| d != 1).collect(),
            Some(a) => {
                let axes = norm_axes(&a.to_i64_vec(), x.rank())?;
                if let Some(&a) = axes.iter().find(|&&a| x.shape[a] != 1) {
                    return Err(format!("cannot squeeze axis {a} of size {}", x.shape[a]));
                }
                x.shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect()
            }
        };
        let mut t = x.clone();
        t.shape = shape;
        Ok(vec![t])
    }),
};

/// Inserts size-1 dims at `axes` (positions in the result).
fn unsqueeze_dims<T: Clone>(shape: &[T], axes: &[i64], one: T) -> Result<Vec<T>, String> {
    let rank = shape.len() + axes.len();
    let axes = norm_axes(axes, rank)?;
    let mut rest = shape.iter();
    Ok((0..rank)
        .map(|i| {
            if axes.contains(&i) {
                one.clone()
            } else {
                rest.next().cloned().unwrap_or(one.clone())
            }
        })
        .collect())
}

pub static UNSQUEEZE: OpDef = OpDef {
    mnemonic: "unsqueeze",
    summary: "Inserts size-1 axes at the given result positions",
    operands: &[req("data"), req("axes")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let shape = match const_ints(ctx, 1) {
            Some(axes) => unsqueeze_dims(&x.shape, &axes, Dim::fixed(1))?,
            None => vec![Dim::Unknown; x.rank() + static_len(ctx.input(1)?, "unsqueeze axes")?],
        };
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let mut t = x.clone();
        t.shape = unsqueeze_dims(&x.shape, &ctx.input(1)?.to_i64_vec(), 1)?;
        Ok(vec![t])
    }),
};

fn flatten_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis > r {
        return Err(format!(
            "flatten axis {axis} is out of range for rank {rank}"
        ));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

pub static FLATTEN: OpDef = OpDef {
    mnemonic: "flatten",
    summary: "Reshapes to 2-D: dims before axis, and from axis on",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[attr("axis", AttrKind::Int, Default::Int(1))],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let a = flatten_axis(ctx.int("axis")?, x.rank())?;
        Ok(vec![x.with_shape(vec![
            dim_product(&x.shape[..a]),
            dim_product(&x.shape[a..]),
        ])])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let a = flatten_axis(ctx.int("axis")?, x.rank())?;
        let mut t = x.clone();
        t.shape = vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()];
        Ok(vec![t])
    }),
};

// ---------------------------------------------------------------- expand / tile

pub static EXPAND: OpDef = OpDef {
    mnemonic: "expand",
    summary: "Broadcasts to a shape (bidirectionally: 1s in the shape keep the input dim)",
    operands: &[req("input"), req("shape")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let shape = match dim_values(ctx, 1) {
            Some(s) => {
                if let Some(bad) = s.iter().find(|d| d.as_fixed().is_some_and(|v| v < 0)) {
                    return Err(format!("expand shape has negative dim {bad}"));
                }
                broadcast_dims(&x.shape, &s)?
            }
            None => {
                // A target dim of 1 keeps the input dim, so only input dims
                // other than 1 are known to survive.
                let n = static_len(ctx.input(1)?, "expand shape")?;
                let rank = n.max(x.rank());
                (0..rank)
                    .map(
                        |i| match (i + x.rank()).checked_sub(rank).map(|j| &x.shape[j]) {
                            Some(d) if !matches!(d, Dim::Unknown) && d.as_fixed() != Some(1) => {
                                d.clone()
                            }
                            _ => Dim::Unknown,
                        },
                    )
                    .collect()
            }
        };
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let target = to_usize_shape(&ctx.input(1)?.to_i64_vec())?;
        let shape = broadcast_shapes(&x.shape, &target)?;
        Ok(vec![take(
            x,
            &util::broadcast_index_map(&x.shape, &shape),
            shape,
        )?])
    }),
};

pub static TILE: OpDef = OpDef {
    mnemonic: "tile",
    summary: "Repeats the tensor along each axis",
    operands: &[req("input"), req("repeats")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let shape = match dim_values(ctx, 1) {
            Some(r) if r.len() != x.rank() => {
                return Err(format!(
                    "tile has {} repeats for rank {}",
                    r.len(),
                    x.rank()
                ))
            }
            Some(r) if r.iter().any(|d| d.as_fixed().is_some_and(|v| v < 0)) => {
                return Err("negative tile repeats".into())
            }
            Some(r) => x.shape.iter().zip(&r).map(|(d, k)| d.mul(k)).collect(),
            None => vec![Dim::Unknown; x.rank()],
        };
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let reps = to_usize_shape(&ctx.input(1)?.to_i64_vec())?;
        if reps.len() != x.rank() {
            return Err(format!(
                "tile has {} repeats for rank {}",
                reps.len(),
                x.rank()
            ));
        }
        let shape: Vec<usize> = x.shape.iter().zip(&reps).map(|(d, r)| d * r).collect();
        let strides = x.strides();
        let mut idx = Vec::with_capacity(shape.iter().product());
        for_each_index(&shape, |o| {
            idx.push(
                o.iter()
                    .zip(&x.shape)
                    .zip(&strides)
                    .map(|((&i, &d), &s)| (i % d) * s)
                    .sum(),
            );
        });
        Ok(vec![take(x, &idx, shape)?])
    }),
};

// ---------------------------------------------------------------- pad / crop

/// Builds the result of a per-axis remapping: `maps[a][j]` is the input
/// coordinate that result coordinate `j` of axis `a` reads, or None where the
/// result takes `fill` (a one-element tensor of the input's type).
pub fn remap_axes(
    x: &Tensor,
    maps: &[Vec<Option<usize>>],
    fill: &Tensor,
) -> Result<Tensor, String> {
    if maps.len() != x.rank() {
        return Err("one map per axis is needed".into());
    }
    let shape: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    let strides = x.strides();
    let n = x.len();
    let mut idx = Vec::with_capacity(shape.iter().product());
    for_each_index(&shape, |o| {
        let mut pos = Some(0);
        for (a, &j) in o.iter().enumerate() {
            pos = pos.zip(maps[a][j]).map(|(p, i)| p + i * strides[a]);
        }
        idx.push(pos.unwrap_or(n));
    });
    take(&concat_flat(&[x, fill])?, &idx, shape)
}

/// The identity map of an axis of size `d`.
fn identity_map(d: usize) -> Vec<Option<usize>> {
    (0..d).map(Some).collect()
}

/// Result coordinates of one padded axis: `before`/`after` may be negative
/// (cropping, done first); `mode` says what the padding reads.
fn pad_map(d: usize, before: i64, after: i64, mode: &str) -> Result<Vec<Option<usize>>, String> {
    let (crop_lo, crop_hi) = ((-before).max(0) as usize, (-after).max(0) as usize);
    let kept = d
        .checked_sub(crop_lo + crop_hi)
        .ok_or_else(|| format!("pads crop more than the dim of size {d}"))? as i64;
    let (lo, hi) = (before.max(0), after.max(0));
    if kept == 0 && (lo > 0 || hi > 0) && mode != "constant" {
        return Err(format!("{mode} padding of an empty axis"));
    }
    let src = |i: i64| -> Option<i64> {
        if (0..kept).contains(&i) {
            return Some(i);
        }
        match mode {
            "edge" => Some(i.clamp(0, kept - 1)),
            "wrap" => Some(i.rem_euclid(kept)),
            "reflect" if kept == 1 => Some(0),
            "reflect" => {
                let period = 2 * (kept - 1);
                let m = i.rem_euclid(period);
                Some(if m >= kept { period - m } else { m })
            }
            _ => None,
        }
    };
    Ok((-lo..kept + hi)
        .map(|i| src(i).map(|s| (s as usize) + crop_lo))
        .collect())
}

/// Pads as per-axis (before, after), from ONNX's `pads` layout (all befores,
/// then all afters) over `axes`.
fn pad_amounts<T: Clone>(
    rank: usize,
    pads: &[T],
    axes: Option<&[i64]>,
    zero: T,
) -> Result<Vec<(T, T)>, String> {
    let axes = match axes {
        Some(a) => norm_axes(a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut out = vec![(zero.clone(), zero); rank];
    for (i, &a) in axes.iter().enumerate() {
        out[a] = (pads[i].clone(), pads[axes.len() + i].clone());
    }
    Ok(out)
}

pub static PAD: OpDef = OpDef {
    mnemonic: "pad",
    summary: "Pads (or crops, with negative pads): constant, reflect, edge or wrap",
    operands: &[req("data"), req("pads"), opt("constant_value"), opt("axes")],
    results: Results::Fixed(1),
    attrs: &[attr("mode", AttrKind::Str, Default::Str("constant"))],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let axes = const_ints(ctx, 3);
        let axes_known = ctx.opt_input(3).is_none() || axes.is_some();
        let shape = match dim_values(ctx, 1) {
            Some(p) if axes_known => pad_amounts(x.rank(), &p, axes.as_deref(), Dim::fixed(0))?
                .iter()
                .zip(&x.shape)
                .map(|((b, a), d)| d.add(b).add(a))
                .collect(),
            _ if axes_known && axes.is_some() => {
                let axes = norm_axes(axes.as_deref().unwrap_or(&[]), x.rank())?;
                x.shape
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        if axes.contains(&i) {
                            Dim::Unknown
                        } else {
                            d.clone()
                        }
                    })
                    .collect()
            }
            _ => vec![Dim::Unknown; x.rank()],
        };
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let axes = ctx.opt_input(3).map(|t| t.to_i64_vec());
        let pads = pad_amounts(x.rank(), &ctx.input(1)?.to_i64_vec(), axes.as_deref(), 0)?;
        let mode = ctx.string("mode")?;
        if !["constant", "reflect", "edge", "wrap"].contains(&mode.as_str()) {
            return Err(format!("unknown pad mode '{mode}'"));
        }
        let maps = x
            .shape
            .iter()
            .zip(&pads)
            .map(|(&d, &(b, a))| pad_map(d, b, a, &mode))
            .collect::<Result<Vec<_>, _>>()?;
        let fill = match ctx.opt_input(2) {
            Some(c) if !c.is_empty() => take(c, &[0], vec![1])?,
            _ => Tensor::zeros(x.dtype, vec![1]),
        };
        Ok(vec![remap_axes(x, &maps, &fill)?])
    }),
};

/// The axes CenterCropPad works on (all by default).
fn crop_axes(ctx: &dyn AttrAccess, rank: usize) -> Result<Vec<usize>, String> {
    if ctx.has_attr("axes") {
        norm_axes(&ctx.ints("axes")?, rank)
    } else {
        Ok((0..rank).collect())
    }
}

pub static CENTER_CROP_PAD: OpDef = OpDef {
    mnemonic: "center_crop_pad",
    summary: "Center-crops or zero-pads the given axes to a shape",
    operands: &[req("input_data"), req("shape")],
    results: Results::Fixed(1),
    attrs: &[attr("axes", AttrKind::Ints, Default::Absent)],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let axes = crop_axes(ctx, x.rank())?;
        let target = dim_values(ctx, 1);
        let mut shape = x.shape.clone();
        for (i, &a) in axes.iter().enumerate() {
            shape[a] = match &target {
                Some(t) => t
                    .get(i)
                    .cloned()
                    .ok_or("center_crop_pad shape has fewer entries than axes")?,
                None => Dim::Unknown,
            };
        }
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let axes = crop_axes(ctx, x.rank())?;
        let target = to_usize_shape(&ctx.input(1)?.to_i64_vec())?;
        if target.len() != axes.len() {
            return Err(format!(
                "center_crop_pad has {} sizes for {} axes",
                target.len(),
                axes.len()
            ));
        }
        let mut maps: Vec<_> = x.shape.iter().map(|&d| identity_map(d)).collect();
        for (&a, &t) in axes.iter().zip(&target) {
            let d = x.shape[a];
            maps[a] = if t <= d {
                (0..t).map(|j| Some(j + (d - t) / 2)).collect()
            } else {
                let off = (t - d) / 2;
                (0..t)
                    .map(|j| j.checked_sub(off).filter(|&i| i < d))
                    .collect()
            };
        }
        Ok(vec![remap_axes(
            x,
            &maps,
            &Tensor::zeros(x.dtype, vec![1]),
        )?])
    }),
};

// ---------------------------------------------------------------- shape / size

fn shape_range(rank: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    (s, e.max(s))
}

pub static SHAPE: OpDef = OpDef {
    mnemonic: "shape",
    summary: "The operand's shape as a 1-D i64 tensor (dims start..end)",
    operands: &[req("data")],
    results: Results::Fixed(1),
    attrs: &[
        attr("start", AttrKind::Int, Default::Int(0)),
        attr("end", AttrKind::Int, Default::Absent),
    ],
    traits: &[Trait::ShapeOnly],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let (s, e) = shape_range(x.rank(), ctx.int("start")?, opt_int(ctx, "end")?);
        Ok(vec![TensorType::fixed(&[(e - s) as i64], DType::I64)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let (s, e) = shape_range(x.rank(), ctx.int("start")?, opt_int(ctx, "end")?);
        let v: Vec<i64> = x.shape[s..e].iter().map(|&d| d as i64).collect();
        Ok(vec![Tensor::i64(vec![v.len()], v)])
    }),
};

pub static SIZE: OpDef = OpDef {
    mnemonic: "size",
    summary: "The operand's element count as an i64 scalar",
    operands: &[req("data")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::ShapeOnly],
    infer: |_| Ok(vec![TensorType::scalar(DType::I64)]),
    eval: Some(|ctx| Ok(vec![Tensor::scalar_i64(ctx.input(0)?.len() as i64)])),
};

// ---------------------------------------------------------------- depth / space

fn block_mode(ctx: &dyn AttrAccess) -> Result<(usize, bool), String> {
    let b = ctx.int("blocksize")?;
    if b <= 0 {
        return Err(format!("blocksize must be positive, got {b}"));
    }
    let crd = match ctx.string("mode")?.as_str() {
        "DCR" => false,
        "CRD" => true,
        m => return Err(format!("unknown mode '{m}' (DCR or CRD)")),
    };
    Ok((b as usize, crd))
}

fn nchw(shape: &[usize]) -> Result<[usize; 4], String> {
    shape
        .try_into()
        .map_err(|_| format!("expects a 4-D NCHW tensor, got shape {shape:?}"))
}

/// A reshape of `x` to `shape6`, transposed by `perm`, reshaped to `out`.
fn regroup(
    x: &Tensor,
    shape6: &[usize],
    perm: &[usize],
    out: Vec<usize>,
) -> Result<Tensor, String> {
    let mut t = x.clone();
    t.shape = shape6.to_vec();
    let mut r = transpose(&t, perm)?;
    r.shape = out;
    Ok(r)
}

pub static DEPTH_TO_SPACE: OpDef = OpDef {
    mnemonic: "depth_to_space",
    summary: "Moves channel blocks into spatial blocks (DCR or CRD order)",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[
        attr("blocksize", AttrKind::Int, Default::Required),
        attr("mode", AttrKind::Str, Default::Str("DCR")),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let (b, _) = block_mode(ctx)?;
        let [n, c, h, w]: [Dim; 4] = x
            .shape
            .clone()
            .try_into()
            .map_err(|_| "depth_to_space expects a 4-D tensor")?;
        let bb = Dim::fixed((b * b) as i64);
        if c.as_fixed().is_some_and(|c| c % (b * b) as i64 != 0) {
            return Err(format!(
                "channels {c} are not divisible by blocksize^2 = {}",
                b * b
            ));
        }
        let bd = Dim::fixed(b as i64);
        Ok(vec![x.with_shape(vec![
            n,
            c.div_exact(&bb),
            h.mul(&bd),
            w.mul(&bd),
        ])])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let (b, crd) = block_mode(ctx)?;
        let [n, c, h, w] = nchw(&x.shape)?;
        if c % (b * b) != 0 {
            return Err(format!(
                "channels {c} are not divisible by blocksize^2 = {}",
                b * b
            ));
        }
        let c2 = c / (b * b);
        let out = vec![n, c2, h * b, w * b];
        if crd {
            regroup(x, &[n, c2, b, b, h, w], &[0, 1, 4, 2, 5, 3], out)
        } else {
            regroup(x, &[n, b, b, c2, h, w], &[0, 3, 4, 1, 5, 2], out)
        }
        .map(|t| vec![t])
    }),
};

pub static SPACE_TO_DEPTH: OpDef = OpDef {
    mnemonic: "space_to_depth",
    summary: "Moves spatial blocks into channels (DCR or CRD order)",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[
        attr("blocksize", AttrKind::Int, Default::Required),
        attr("mode", AttrKind::Str, Default::Str("DCR")),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let (b, _) = block_mode(ctx)?;
        let [n, c, h, w]: [Dim; 4] = x
            .shape
            .clone()
            .try_into()
            .map_err(|_| "space_to_depth expects a 4-D tensor")?;
        let bd = Dim::fixed(b as i64);
        for d in [&h, &w] {
            if d.as_fixed().is_some_and(|v| v % b as i64 != 0) {
                return Err(format!("spatial dim {d} is not divisible by blocksize {b}"));
            }
        }
        Ok(vec![x.with_shape(vec![
            n,
            c.mul(&Dim::fixed((b * b) as i64)),
            h.div_exact(&bd),
            w.div_exact(&bd),
        ])])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let (b, crd) = block_mode(ctx)?;
        let [n, c, h, w] = nchw(&x.shape)?;
        if h % b != 0 || w % b != 0 {
            return Err(format!(
                "spatial dims {h}x{w} are not divisible by blocksize {b}"
            ));
        }
        let six = [n, c, h / b, b, w / b, b];
        let out = vec![n, c * b * b, h / b, w / b];
        let perm = if crd {
            [0, 1, 3, 5, 2, 4]
        } else {
            [0, 3, 5, 1, 2, 4]
        };
        Ok(vec![regroup(x, &six, &perm, out)?])
    }),
};

// ---------------------------------------------------------------- selection

/// Whether element `i` counts as true (nonzero; non-empty for strings).
fn is_nonzero(t: &Tensor, i: usize) -> bool {
    match &t.data {
        Data::Str(v) => !v[i].is_empty(),
        Data::C64(v) => v[2 * i] != 0.0 || v[2 * i + 1] != 0.0,
        Data::C128(v) => v[2 * i] != 0.0 || v[2 * i + 1] != 0.0,
        Data::Bool(v) => v[i],
        _ if t.dtype.is_float() => t.get_f64(i) != 0.0,
        _ => t.get_i64(i) != 0,
    }
}

fn compress_axis(ctx: &dyn AttrAccess, rank: usize) -> Result<Option<usize>, String> {
    opt_int(ctx, "axis")?
        .map(|a| norm_axis(a, rank))
        .transpose()
}

pub static COMPRESS: OpDef = OpDef {
    mnemonic: "compress",
    summary: "Keeps the slices (or flattened elements) where the condition is true",
    operands: &[req("input"), req("condition")],
    results: Results::Fixed(1),
    attrs: &[attr("axis", AttrKind::Int, Default::Absent)],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let kept = ctx
            .const_input(1)
            .map(|c| Dim::fixed((0..c.len()).filter(|&i| is_nonzero(c, i)).count() as i64));
        let kept = kept.unwrap_or(Dim::Unknown);
        let shape = match compress_axis(ctx, x.rank())? {
            Some(a) => {
                let mut s = x.shape.clone();
                s[a] = kept;
                s
            }
            None => vec![kept],
        };
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let (x, cond) = (ctx.input(0)?, ctx.input(1)?);
        let axis = compress_axis(ctx, x.rank())?;
        let n = axis.map_or(x.len(), |a| x.shape[a]);
        if cond.len() > n {
            return Err(format!(
                "condition has {} entries for {n} slices",
                cond.len()
            ));
        }
        let keep: Vec<usize> = (0..cond.len()).filter(|&i| is_nonzero(cond, i)).collect();
        Ok(vec![match axis {
            None => take(x, &keep, vec![keep.len()])?,
            Some(a) => take_along(x, a, &keep)?,
        }])
    }),
};

pub static NON_ZERO: OpDef = OpDef {
    mnemonic: "non_zero",
    summary: "Indices of the nonzero elements, one row per axis (i64 [rank, count])",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let count = ctx.const_input(0).map_or(Dim::Unknown, |c| {
            Dim::fixed((0..c.len()).filter(|&i| is_nonzero(c, i)).count() as i64)
        });
        Ok(vec![TensorType::new(
            vec![Dim::fixed(x.rank() as i64), count],
            DType::I64,
        )])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let mut coords: Vec<Vec<i64>> = vec![Vec::new(); x.rank()];
        let mut k = 0;
        for_each_index(&x.shape, |idx| {
            if is_nonzero(x, k) {
                for (c, &i) in coords.iter_mut().zip(idx) {
                    c.push(i as i64);
                }
            }
            k += 1;
        });
        let count = if x.rank() == 0 {
            usize::from(is_nonzero(x, 0))
        } else {
            coords[0].len()
        };
        Ok(vec![Tensor::i64(vec![x.rank(), count], coords.concat())])
    }),
};

pub static REVERSE_SEQUENCE: OpDef = OpDef {
    mnemonic: "reverse_sequence",
    summary: "Reverses the first sequence_lens[b] steps of each batch entry along the time axis",
    operands: &[req("input"), req("sequence_lens")],
    results: Results::Fixed(1),
    attrs: &[
        attr("batch_axis", AttrKind::Int, Default::Int(1)),
        attr("time_axis", AttrKind::Int, Default::Int(0)),
    ],
    traits: &[],
    infer: util::infer_same,
    eval: Some(|ctx| {
        let (x, lens) = (ctx.input(0)?, ctx.input(1)?.to_i64_vec());
        let (b, t) = (
            norm_axis(ctx.int("batch_axis")?, x.rank())?,
            norm_axis(ctx.int("time_axis")?, x.rank())?,
        );
        if b == t {
            return Err("batch_axis and time_axis must differ".into());
        }
        if lens.len() != x.shape[b] {
            return Err(format!(
                "{} sequence lengths for a batch of {}",
                lens.len(),
                x.shape[b]
            ));
        }
        if let Some(bad) = lens.iter().find(|&&l| l < 0 || l as usize > x.shape[t]) {
            return Err(format!("sequence length {bad} is out of range"));
        }
        let strides = x.strides();
        let mut idx = Vec::with_capacity(x.len());
        for_each_index(&x.shape, |o| {
            let len = lens[o[b]] as usize;
            idx.push(
                o.iter()
                    .enumerate()
                    .map(|(d, &i)| if d == t && i < len { len - 1 - i } else { i } * strides[d])
                    .sum(),
            );
        });
        Ok(vec![take(x, &idx, x.shape.clone())?])
    }),
};

// ---------------------------------------------------------------- unique

/// Compares floats with NaNs equal to each other and after every number
/// (numpy's sort order), and -0 equal to 0.
fn cmp_f64(a: f64, b: f64) -> std::cmp::Ordering {
    a.partial_cmp(&b)
        .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

/// Orders slice `i` against slice `j`, lexicographically by element.
type SliceCmp<'a> = Box<dyn Fn(&[usize], &[usize]) -> std::cmp::Ordering + 'a>;

fn element_cmp(x: &Tensor) -> SliceCmp<'_> {
    fn lex<T: 'static>(v: Vec<T>, f: fn(&T, &T) -> std::cmp::Ordering) -> SliceCmp<'static> {
        Box::new(move |a: &[usize], b: &[usize]| {
            a.iter()
                .zip(b)
                .map(|(&i, &j)| f(&v[i], &v[j]))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    }
    match &x.data {
        Data::Str(s) => Box::new(move |a: &[usize], b: &[usize]| {
            a.iter()
                .zip(b)
                .map(|(&i, &j)| s[i].cmp(&s[j]))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        }),
        Data::U64(v) => lex(v.clone(), |a, b| a.cmp(b)),
        _ if x.dtype.is_float() => lex(x.to_f64_vec(), |a, b| cmp_f64(*a, *b)),
        _ => lex(x.to_i64_vec(), |a, b| a.cmp(b)),
    }
}

pub static UNIQUE: OpDef = OpDef {
    mnemonic: "unique",
    summary: "Unique elements or slices, with first indices, inverse indices and counts",
    operands: &[req("x")],
    results: Results::Range(1, 4),
    attrs: &[
        attr("axis", AttrKind::Int, Default::Absent),
        attr("sorted", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let axis = compress_axis(ctx, x.rank())?;
        if let Some(c) = ctx.const_input(0) {
            let r = unique(c, axis, ctx.int("sorted")? != 0, ctx.num_results)?;
            return Ok(r
                .iter()
                .map(|t| TensorType::new(fixed_dims(&t.shape), t.dtype))
                .collect());
        }
        let (y, n) = match axis {
            Some(a) => {
                let mut s = x.shape.clone();
                s[a] = Dim::Unknown;
                (s, x.shape[a].clone())
            }
            None => (vec![Dim::Unknown], dim_product(&x.shape)),
        };
        let i64_of = |d: Dim| TensorType::new(vec![d], DType::I64);
        let all = vec![
            x.with_shape(y),
            i64_of(Dim::Unknown),
            i64_of(n),
            i64_of(Dim::Unknown),
        ];
        Ok(all.into_iter().take(ctx.num_results).collect())
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        unique(
            x,
            compress_axis(ctx, x.rank())?,
            ctx.int("sorted")? != 0,
            ctx.num_results,
        )
    }),
};

/// Unique's results (the first `num_results` of: unique values or slices,
/// their first indices, the inverse indices, the counts).
fn unique(
    x: &Tensor,
    axis: Option<usize>,
    sorted: bool,
    num_results: usize,
) -> Result<Vec<Tensor>, String> {
    // The flat positions of each slice along the axis (single elements when
    // flattened).
    let (n, slices): (usize, Vec<Vec<usize>>) = match axis {
        None => (x.len(), (0..x.len()).map(|i| vec![i]).collect()),
        Some(a) => {
            let n = x.shape[a];
            let (outer, inner) = (
                x.shape[..a].iter().product::<usize>(),
                x.shape[a + 1..].iter().product::<usize>(),
            );
            let s = (0..n)
                .map(|k| {
                    (0..outer)
                        .flat_map(|o| (0..inner).map(move |i| (o * n + k) * inner + i))
                        .collect()
                })
                .collect();
            (n, s)
        }
    };
    let cmp = element_cmp(x);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(&slices[a], &slices[b]));
    // Groups of equal slices in sorted order; the stable sort puts each
    // group's first occurrence first.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &k in &order {
        match groups.last_mut() {
            Some(g) if cmp(&slices[g[0]], &slices[k]).is_eq() => g.push(k),
            _ => groups.push(vec![k]),
        }
    }
    if !sorted {
        groups.sort_by_key(|g| g[0]);
    }
    let mut inverse = vec![0i64; n];
    for (gi, g) in groups.iter().enumerate() {
        for &k in g {
            inverse[k] = gi as i64;
        }
    }
    let firsts: Vec<usize> = groups.iter().map(|g| g[0]).collect();
    let y = match axis {
        None => take(x, &firsts, vec![firsts.len()])?,
        Some(a) => take_along(x, a, &firsts)?,
    };
    let m = groups.len();
    let all = vec![
        y,
        Tensor::i64(vec![m], firsts.iter().map(|&f| f as i64).collect()),
        Tensor::i64(vec![n], inverse),
        Tensor::i64(vec![m], groups.iter().map(|g| g.len() as i64).collect()),
    ];
    Ok(all.into_iter().take(num_results).collect())
}

// ---------------------------------------------------------------- resize

/// How Resize interpolates.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Interp {
    Nearest(NearestMode),
    Linear,
    Cubic(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Everything about a Resize but the sizes.
struct ResizeCfg {
    interp: Interp,
    coord: String,
    antialias: bool,
    exclude_outside: bool,
    extrapolation: f64,
}

fn resize_cfg(ctx: &dyn AttrAccess) -> Result<ResizeCfg, String> {
    let nearest = match ctx.string("nearest_mode")?.as_str() {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        m => return Err(format!("unknown nearest_mode '{m}'")),
    };
    let interp = match ctx.string("mode")?.as_str() {
        "nearest" => Interp::Nearest(nearest),
        "linear" => Interp::Linear,
        "cubic" => Interp::Cubic(ctx.float("cubic_coeff_a")?),
        m => return Err(format!("unknown resize mode '{m}'")),
    };
    let coord = ctx.string("coordinate_transformation_mode")?;
    const COORDS: [&str; 6] = [
        "half_pixel",
        "half_pixel_symmetric",
        "pytorch_half_pixel",
        "align_corners",
        "asymmetric",
        "tf_crop_and_resize",
    ];
    if !COORDS.contains(&coord.as_str()) {
        return Err(format!("unknown coordinate_transformation_mode '{coord}'"));
    }
    let antialias = ctx.int("antialias")? != 0;
    if antialias && matches!(interp, Interp::Nearest(_)) {
        return Err("antialias is not defined for nearest resize".into());
    }
    Ok(ResizeCfg {
        interp,
        coord,
        antialias,
        exclude_outside: ctx.int("exclude_outside")? != 0,
        extrapolation: ctx.float("extrapolation_value")?,
    })
}

/// Where output coordinate `j` of an axis lies in the input (ONNX
/// coordinate_transformation_mode), for input width `iw`, output width `ow`,
/// `scale` and the axis' region of interest.
fn source_coord(coord: &str, j: usize, scale: f64, iw: usize, ow: usize, roi: (f64, f64)) -> f64 {
    let (x, iw_f) = (j as f64, iw as f64);
    let out_f = scale * iw_f;
    match coord {
        "align_corners" if out_f == 1.0 => 0.0,
        "align_corners" => x * (iw_f - 1.0) / (out_f - 1.0),
        "asymmetric" => x / scale,
        "tf_crop_and_resize" => {
            let span = (roi.1 - roi.0) * (iw_f - 1.0);
            let x = if out_f == 1.0 {
                span / 2.0
            } else {
                x * span / (out_f - 1.0)
            };
            x + roi.0 * (iw_f - 1.0)
        }
        "pytorch_half_pixel" if out_f == 1.0 => -0.5,
        "half_pixel_symmetric" => {
            let offset = iw_f / 2.0 * (1.0 - ow as f64 / out_f);
            offset + (x + 0.5) / scale - 0.5
        }
        // half_pixel, pytorch_half_pixel
        _ => (x + 0.5) / scale - 0.5,
    }
}

/// The cubic convolution kernel with coefficient `a` (Keys).
fn cubic_kernel(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// The taps (input index, weight) of output coordinate at source position
/// `x` for linear/cubic interpolation; None when the position is
/// extrapolated (tf_crop_and_resize outside the input).
fn interp_taps(cfg: &ResizeCfg, x: f64, scale: f64, iw: usize) -> Option<Vec<(usize, f64)>> {
    if cfg.coord == "tf_crop_and_resize" && (x < 0.0 || x > iw as f64 - 1.0) {
        return None;
    }
    // The pixel left of x, with the ratio in (0, 1] (an exact hit counts as
    // ratio 1 from the pixel before), as the ONNX reference does.
    let left = x.ceil() - 1.0;
    let ratio = x - left;
    // Antialiasing widens the kernel by 1/scale when downsampling.
    let s = if cfg.antialias { scale.min(1.0) } else { 1.0 };
    let (support, kernel): (f64, Box<dyn Fn(f64) -> f64>) = match cfg.interp {
        Interp::Cubic(a) => (2.0, Box::new(move |d| cubic_kernel(d, a))),
        _ => (1.0, Box::new(|d: f64| (1.0 - d.abs()).clamp(0.0, 1.0))),
    };
    let start = (-support / s).floor() as i64 + 1;
    let mut taps: Vec<(i64, f64)> = (start..2 - start)
        .map(|i| (left as i64 + i, kernel(s * (i as f64 - ratio))))
        .collect();
    if cfg.antialias {
        let sum: f64 = taps.iter().map(|t| t.1).sum();
        taps.iter_mut().for_each(|t| t.1 /= sum);
    }
    if cfg.exclude_outside {
        taps.iter_mut()
            .filter(|t| t.0 < 0 || t.0 >= iw as i64)
            .for_each(|t| t.1 = 0.0);
        let sum: f64 = taps.iter().map(|t| t.1).sum();
        if sum != 0.0 {
            taps.iter_mut().for_each(|t| t.1 /= sum);
        }
    }
    Some(
        taps.into_iter()
            .map(|(i, w)| (i.clamp(0, iw as i64 - 1) as usize, w))
            .collect(),
    )
}

/// The input index nearest output coordinate at source position `x`; None
/// when extrapolated.
fn nearest_index(cfg: &ResizeCfg, mode: NearestMode, x: f64, iw: usize) -> Option<usize> {
    if cfg.coord == "tf_crop_and_resize" && (x < 0.0 || x > iw as f64 - 1.0) {
        return None;
    }
    let (fl, frac) = (x.floor(), x - x.floor());
    let i = if frac == 0.0 {
        fl
    } else {
        match mode {
            NearestMode::RoundPreferFloor if frac <= 0.5 => fl,
            NearestMode::RoundPreferCeil if frac < 0.5 => fl,
            NearestMode::Floor => fl,
            _ => fl + 1.0,
        }
    };
    Some((i as i64).clamp(0, iw as i64 - 1) as usize)
}

/// Full-rank scales and output shape of a Resize over `axes`, from `sizes`
/// (with the aspect-ratio policy) or `scales`.
fn resize_targets(
    shape: &[usize],
    axes: &[usize],
    scales: Option<&[f64]>,
    sizes: Option<&[i64]>,
    policy: &str,
) -> Result<(Vec<f64>, Vec<usize>), String> {
    let mut sc = vec![1.0; shape.len()];
    let mut out = shape.to_vec();
    match (sizes, scales) {
        (Some(sz), _) => {
            if sz.len() != axes.len() {
                return Err(format!("{} sizes for {} axes", sz.len(), axes.len()));
            }
            let sz = to_usize_shape(sz)?;
            for (&a, &s) in axes.iter().zip(&sz) {
                sc[a] = s as f64 / shape[a] as f64;
                out[a] = s;
            }
            let pick = match policy {
                "stretch" => None,
                "not_larger" => Some(axes.iter().map(|&a| sc[a]).fold(f64::INFINITY, f64::min)),
                "not_smaller" => Some(
                    axes.iter()
                        .map(|&a| sc[a])
                        .fold(f64::NEG_INFINITY, f64::max),
                ),
                p => return Err(format!("unknown keep_aspect_ratio_policy '{p}'")),
            };
            if let Some(s) = pick {
                for &a in axes {
                    sc[a] = s;
                    out[a] = (s * shape[a] as f64 + 0.5) as usize;
                }
            }
        }
        (None, Some(s)) => {
            if s.len() != axes.len() {
                return Err(format!("{} scales for {} axes", s.len(), axes.len()));
            }
            for (&a, &s) in axes.iter().zip(s) {
                if s <= 0.0 || !s.is_finite() {
                    return Err(format!("resize scale {s} must be positive"));
                }
                sc[a] = s;
                out[a] = (s * shape[a] as f64) as usize;
            }
        }
        (None, None) => return Err("resize needs scales or sizes".into()),
    }
    Ok((sc, out))
}

fn resize_axes(ctx: &dyn AttrAccess, rank: usize) -> Result<Vec<usize>, String> {
    crop_axes(ctx, rank)
}

/// A present, non-empty operand (Resize marks absent roi/scales/sizes with
/// empty tensors too).
fn nonempty(t: Option<&Tensor>) -> Option<&Tensor> {
    t.filter(|t| !t.is_empty())
}

/// Resizes `x` along `axes` to `out` with per-axis `scales`.
fn resize(
    x: &Tensor,
    cfg: &ResizeCfg,
    axes: &[usize],
    scales: &[f64],
    out: &[usize],
    roi: &[(f64, f64)],
) -> Result<Tensor, String> {
    if let Some(&a) = axes.iter().find(|&&a| x.shape[a] == 0 && out[a] > 0) {
        return Err(format!("cannot resize an empty axis {a}"));
    }
    if let Interp::Nearest(mode) = cfg.interp {
        let maps = (0..x.rank())
            .map(|a| {
                if !axes.contains(&a) {
                    return identity_map(x.shape[a]);
                }
                (0..out[a])
                    .map(|j| {
                        nearest_index(
                            cfg,
                            mode,
                            source_coord(&cfg.coord, j, scales[a], x.shape[a], out[a], roi[a]),
                            x.shape[a],
                        )
                    })
                    .collect()
            })
            .collect::<Vec<_>>();
        let fill = Tensor::from_f64(x.dtype, vec![1], &[cfg.extrapolation]);
        return remap_axes(x, &maps, &fill);
    }
    if !x.dtype.is_numeric() {
        return Err(format!("linear/cubic resize of {} tensors", x.dtype));
    }
    // Separable: one 1-D interpolation pass per resized axis, in f64.
    let mut shape = x.shape.clone();
    let mut v = x.to_f64_vec();
    for &a in axes {
        let (iw, ow) = (shape[a], out[a]);
        if iw == ow && scales[a] == 1.0 && roi[a] == (0.0, 1.0) {
            continue;
        }
        let taps: Vec<_> = (0..ow)
            .map(|j| {
                interp_taps(
                    cfg,
                    source_coord(&cfg.coord, j, scales[a], iw, ow, roi[a]),
                    scales[a],
                    iw,
                )
            })
            .collect();
        let outer: usize = shape[..a].iter().product();
        let inner: usize = shape[a + 1..].iter().product();
        let mut next = Vec::with_capacity(outer * ow * inner);
        for o in 0..outer {
            for t in &taps {
                for i in 0..inner {
                    next.push(match t {
                        Some(t) => t
                            .iter()
                            .map(|&(k, w)| w * v[(o * iw + k) * inner + i])
                            .sum(),
                        None => cfg.extrapolation,
                    });
                }
            }
        }
        shape[a] = ow;
        v = next;
    }
    if let Some((lo, hi)) = x.dtype.int_range() {
        // Integer results round half to even and saturate, like the reference.
        v.iter_mut()
            .for_each(|e| *e = e.round_ties_even().clamp(lo as f64, hi as f64));
    }
    Ok(Tensor::from_f64(x.dtype, shape, &v))
}

/// A resized dim in `infer`: exact for static dims, symbolic for integer
/// scales, Unknown otherwise.
fn resized_dim(d: &Dim, scale: f64) -> Dim {
    match d.as_fixed() {
        Some(n) => Dim::fixed((scale * n as f64) as i64),
        None if scale.fract() == 0.0 && scale >= 1.0 => d.mul(&Dim::fixed(scale as i64)),
        None => Dim::Unknown,
    }
}

pub static RESIZE: OpDef = OpDef {
    mnemonic: "resize",
    summary: "Resizes by scales or to sizes: nearest, linear or cubic interpolation",
    operands: &[req("x"), opt("roi"), opt("scales"), opt("sizes")],
    results: Results::Fixed(1),
    attrs: &[
        attr("mode", AttrKind::Str, Default::Str("nearest")),
        attr(
            "coordinate_transformation_mode",
            AttrKind::Str,
            Default::Str("half_pixel"),
        ),
        attr(
            "nearest_mode",
            AttrKind::Str,
            Default::Str("round_prefer_floor"),
        ),
        attr("cubic_coeff_a", AttrKind::Float, Default::Float(-0.75)),
        attr("exclude_outside", AttrKind::Int, Default::Int(0)),
        attr("extrapolation_value", AttrKind::Float, Default::Float(0.0)),
        attr("antialias", AttrKind::Int, Default::Int(0)),
        attr("axes", AttrKind::Ints, Default::Absent),
        attr(
            "keep_aspect_ratio_policy",
            AttrKind::Str,
            Default::Str("stretch"),
        ),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        resize_cfg(ctx)?;
        let axes = resize_axes(ctx, x.rank())?;
        let policy = ctx.string("keep_aspect_ratio_policy")?;
        let known = |i: usize| ctx.const_input(i).filter(|t| !t.is_empty());
        let mut shape = x.shape.clone();
        let static_in = axes
            .iter()
            .map(|&a| x.shape[a].as_fixed().map(|v| v as usize))
            .collect::<Option<Vec<_>>>();
        let sizes = dim_values(ctx, 3).filter(|v| !v.is_empty());
        match (known(3), known(2)) {
            _ if sizes.is_some() && policy == "stretch" => {
                let sizes = sizes.unwrap_or_default();
                if sizes.len() != axes.len() {
                    return Err(format!("{} sizes for {} axes", sizes.len(), axes.len()));
                }
                for (&a, d) in axes.iter().zip(sizes) {
                    shape[a] = d;
                }
            }
            (Some(sz), _) if static_in.is_some() => {
                let full: Vec<usize> = x
                    .shape
                    .iter()
                    .map(|d| d.as_fixed().unwrap_or(1) as usize)
                    .collect();
                let (_, out) = resize_targets(&full, &axes, None, Some(&sz.to_i64_vec()), &policy)?;
                for &a in &axes {
                    shape[a] = Dim::fixed(out[a] as i64);
                }
            }
            (None, Some(sc)) => {
                let sc = sc.to_f64_vec();
                if sc.len() != axes.len() {
                    return Err(format!("{} scales for {} axes", sc.len(), axes.len()));
                }
                for (&a, &s) in axes.iter().zip(&sc) {
                    shape[a] = resized_dim(&x.shape[a], s);
                }
            }
            _ => axes.iter().for_each(|&a| shape[a] = Dim::Unknown),
        }
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let cfg = resize_cfg(ctx)?;
        let axes = resize_axes(ctx, x.rank())?;
        let scales = nonempty(ctx.opt_input(2)).map(|t| {
            t.to_f32_vec()
                .into_iter()
                .map(f64::from)
                .collect::<Vec<_>>()
        });
        let sizes = nonempty(ctx.opt_input(3)).map(|t| t.to_i64_vec());
        let (sc, out) = resize_targets(
            &x.shape,
            &axes,
            scales.as_deref(),
            sizes.as_deref(),
            &ctx.string("keep_aspect_ratio_policy")?,
        )?;
        let mut roi = vec![(0.0, 1.0); x.rank()];
        if let Some(r) = nonempty(ctx.opt_input(1)) {
            let r = r.to_f64_vec();
            if r.len() != 2 * axes.len() {
                return Err(format!(
                    "roi has {} values for {} axes",
                    r.len(),
                    axes.len()
                ));
            }
            for (i, &a) in axes.iter().enumerate() {
                roi[a] = (r[i], r[axes.len() + i]);
            }
        }
        Ok(vec![resize(x, &cfg, &axes, &sc, &out, &roi)?])
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{Attr, Attrs};
    use crate::ops::testing::{attrs, eval, f32s, infer};

    fn sym(n: &str) -> Dim {
        Dim::sym(n)
    }
    fn ty(dims: &[Dim]) -> TensorType {
        TensorType::new(dims.to_vec(), DType::F32)
    }
    fn ints(v: &[i64]) -> Tensor {
        Tensor::i64(vec![v.len()], v.to_vec())
    }
    fn iota(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::f32(shape.to_vec(), (0..n).map(|i| i as f32).collect())
    }
    fn none() -> Attrs {
        Attrs::new()
    }

    #[test]
    fn concat_of_kv_cache_adds_symbolic_dims() {
        let a = ty(&[sym("batch"), sym("past_seq"), Dim::fixed(8)]);
        let b = ty(&[sym("batch"), sym("seq"), Dim::fixed(8)]);
        let r = infer(
            &CONCAT,
            &attrs(&[("axis", Attr::Int(-2))]),
            &[a, b],
            &[],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(
            r[0].shape,
            vec![
                sym("batch"),
                sym("past_seq").add(&sym("seq")),
                Dim::fixed(8)
            ]
        );
        let bad = infer(
            &CONCAT,
            &attrs(&[("axis", Attr::Int(0))]),
            &[
                ty(&[Dim::fixed(2), Dim::fixed(3)]),
                ty(&[Dim::fixed(2), Dim::fixed(4)]),
            ],
            &[],
            &[],
            1,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn slice_keeps_symbolic_dims() {
        let x = ty(&[sym("batch"), sym("seq"), Dim::fixed(64)]);
        let i64ty = TensorType::fixed(&[1], DType::I64);
        let run = |s: Tensor, e: Tensor, syms: Vec<Option<Vec<Dim>>>| {
            let ops = [x.clone(), i64ty.clone(), i64ty.clone(), i64ty.clone()];
            let consts = [None, Some(s), Some(e), Some(ints(&[1]))];
            infer(&SLICE, &none(), &ops, &consts, &syms, 1).unwrap()[0].shape[1].clone()
        };
        assert_eq!(
            run(ints(&[1]), ints(&[i64::MAX]), vec![]),
            sym("seq").sub(&Dim::fixed(1))
        );
        assert_eq!(run(ints(&[-1]), ints(&[i64::MAX]), vec![]), Dim::fixed(1));
        assert_eq!(
            run(ints(&[0]), ints(&[-2]), vec![]),
            sym("seq").sub(&Dim::fixed(2))
        );
        // Bounds computed from shapes: x[:, past : past+seq].
        let (past, new) = (sym("past"), sym("new"));
        let syms = vec![
            None,
            Some(vec![past.clone()]),
            Some(vec![past.add(&new)]),
            None,
        ];
        let ops = [x.clone(), i64ty.clone(), i64ty.clone(), i64ty.clone()];
        let r = infer(
            &SLICE,
            &none(),
            &ops,
            &[None, None, None, Some(ints(&[1]))],
            &syms,
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape[1], new);
        // Unknown bounds: only the sliced axis becomes unknown.
        let r = infer(
            &SLICE,
            &none(),
            &ops,
            &[None, None, None, Some(ints(&[2]))],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![sym("batch"), sym("seq"), Dim::Unknown]);
    }

    #[test]
    fn gather_scalar_index_removes_the_axis() {
        let x = ty(&[sym("batch"), sym("seq"), Dim::fixed(8)]);
        let r = infer(
            &GATHER,
            &attrs(&[("axis", Attr::Int(1))]),
            &[x, TensorType::scalar(DType::I64)],
            &[],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![sym("batch"), Dim::fixed(8)]);
    }

    #[test]
    fn expand_and_reshape_keep_symbols() {
        let x = ty(&[sym("batch"), sym("seq"), Dim::fixed(1)]);
        let shape_ty = TensorType::fixed(&[3], DType::I64);
        let r = infer(
            &EXPAND,
            &none(),
            &[x.clone(), shape_ty.clone()],
            &[None, Some(ints(&[1, 1, 4]))],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![sym("batch"), sym("seq"), Dim::fixed(4)]);
        // Target unknown: dims other than 1 survive.
        let r = infer(
            &EXPAND,
            &none(),
            &[x.clone(), shape_ty.clone()],
            &[],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![sym("batch"), sym("seq"), Dim::Unknown]);
        let x = ty(&[sym("batch"), sym("seq"), Dim::fixed(4), Dim::fixed(32)]);
        let r = infer(
            &RESHAPE,
            &none(),
            &[x.clone(), shape_ty.clone()],
            &[None, Some(ints(&[0, 0, -1]))],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![sym("batch"), sym("seq"), Dim::fixed(128)]);
        let target = Some(vec![sym("batch").mul(&sym("seq")), Dim::fixed(-1)]);
        let r = infer(
            &RESHAPE,
            &none(),
            &[x, TensorType::fixed(&[2], DType::I64)],
            &[],
            &[None, target],
            1,
        )
        .unwrap();
        assert_eq!(
            r[0].shape,
            vec![sym("batch").mul(&sym("seq")), Dim::fixed(128)]
        );
    }

    #[test]
    fn split_transpose_squeeze_unsqueeze_infer() {
        let qkv = ty(&[sym("batch"), sym("h").mul(&Dim::fixed(3))]);
        let r = infer(
            &SPLIT,
            &attrs(&[("axis", Attr::Int(1)), ("num_outputs", Attr::Int(3))]),
            &[qkv],
            &[],
            &[],
            3,
        )
        .unwrap();
        assert!(r.iter().all(|t| t.shape == vec![sym("batch"), sym("h")]));
        let x = ty(&[sym("b"), Dim::fixed(1), sym("s")]);
        let r = infer(
            &TRANSPOSE,
            &attrs(&[("perm", Attr::Ints(vec![2, 0, 1]))]),
            std::slice::from_ref(&x),
            &[],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![sym("s"), sym("b"), Dim::fixed(1)]);
        let axes_ty = TensorType::fixed(&[1], DType::I64);
        let r = infer(
            &SQUEEZE,
            &none(),
            &[x.clone(), axes_ty.clone()],
            &[None, Some(ints(&[1]))],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![sym("b"), sym("s")]);
        assert!(infer(
            &SQUEEZE,
            &none(),
            &[x.clone(), axes_ty.clone()],
            &[None, Some(ints(&[3]))],
            &[],
            1
        )
        .is_err());
        let r = infer(
            &UNSQUEEZE,
            &none(),
            &[x.clone(), axes_ty.clone()],
            &[None, Some(ints(&[-1]))],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(
            r[0].shape,
            vec![sym("b"), Dim::fixed(1), sym("s"), Dim::fixed(1)]
        );
        let r = infer(&UNSQUEEZE, &none(), &[x, axes_ty], &[], &[], 1).unwrap();
        assert_eq!(r[0].shape, vec![Dim::Unknown; 4]);
    }

    #[test]
    fn slice_eval_negative_steps_and_clamping() {
        // numpy: np.arange(10)[8:1:-3] == [8, 5, 2]; [-100:3] == [0, 1, 2]
        let x = iota(&[10]);
        let r = eval(
            &SLICE,
            &none(),
            &[
                Some(x.clone()),
                Some(ints(&[8])),
                Some(ints(&[1])),
                None,
                Some(ints(&[-3])),
            ],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![8.0, 5.0, 2.0]);
        let r = eval(
            &SLICE,
            &none(),
            &[
                Some(x.clone()),
                Some(ints(&[-100])),
                Some(ints(&[3])),
                None,
                None,
            ],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 1.0, 2.0]);
        let r = eval(
            &SLICE,
            &none(),
            &[
                Some(x),
                Some(ints(&[-1])),
                Some(ints(&[i64::MIN])),
                None,
                Some(ints(&[-4])),
            ],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![9.0, 5.0, 1.0]);
    }

    #[test]
    fn gather_moves_strings_and_negative_indices() {
        let words: Vec<String> = ["a", "bb", "", "ccc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let x = Tensor::new(DType::Str, vec![2, 2], Data::Str(words)).unwrap();
        let r = eval(
            &GATHER,
            &none(),
            &[Some(x), Some(Tensor::i64(vec![3], vec![-1, 0, 1]))],
            1,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![3, 2]);
        let want: Vec<String> = ["", "ccc", "a", "bb", "", "ccc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(r[0].data, Data::Str(want));
        assert!(eval(&GATHER, &none(), &[Some(iota(&[2])), Some(ints(&[2]))], 1).is_err());
    }

    #[test]
    fn pad_modes_match_numpy() {
        let x = Tensor::f32(vec![4], vec![1.0, 2.0, 3.0, 4.0]);
        let pad = |mode: &str, pads: &[i64]| {
            let a = attrs(&[("mode", Attr::Str(mode.into()))]);
            f32s(
                &eval(
                    &PAD,
                    &a,
                    &[
                        Some(x.clone()),
                        Some(ints(pads)),
                        Some(Tensor::f32(vec![], vec![9.0])),
                    ],
                    1,
                )
                .unwrap()[0],
            )
        };
        // np.pad([1,2,3,4], (2,3), mode=...)
        assert_eq!(
            pad("constant", &[2, 3]),
            vec![9.0, 9.0, 1.0, 2.0, 3.0, 4.0, 9.0, 9.0, 9.0]
        );
        assert_eq!(
            pad("reflect", &[2, 3]),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
        );
        assert_eq!(
            pad("edge", &[2, 3]),
            vec![1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0]
        );
        assert_eq!(
            pad("wrap", &[2, 3]),
            vec![3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0]
        );
        // Negative pads crop first: [2, 3, 4] then one edge value.
        assert_eq!(pad("edge", &[-1, 1]), vec![2.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn scatter_reductions_accumulate_duplicates() {
        let data = Tensor::f32(vec![3], vec![1.0, 2.0, 3.0]);
        let ind = Tensor::i64(vec![3, 1], vec![0, 2, 0]);
        let upd = Tensor::f32(vec![3], vec![10.0, 20.0, 30.0]);
        let run = |red: &str| {
            let a = attrs(&[("reduction", Attr::Str(red.into()))]);
            f32s(
                &eval(
                    &SCATTER_ND,
                    &a,
                    &[Some(data.clone()), Some(ind.clone()), Some(upd.clone())],
                    1,
                )
                .unwrap()[0],
            )
        };
        assert_eq!(run("add"), vec![41.0, 2.0, 23.0]);
        assert_eq!(run("mul"), vec![300.0, 2.0, 60.0]);
        assert_eq!(run("none"), vec![30.0, 2.0, 20.0]);
        let a = attrs(&[
            ("axis", Attr::Int(1)),
            ("reduction", Attr::Str("max".into())),
        ]);
        let d = Tensor::i64(vec![1, 3], vec![5, 5, 5]);
        let r = eval(
            &SCATTER_ELEMENTS,
            &a,
            &[
                Some(d),
                Some(Tensor::i64(vec![1, 2], vec![-1, 0])),
                Some(Tensor::i64(vec![1, 2], vec![9, 1])),
            ],
            1,
        )
        .unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![5, 5, 9]);
    }

    #[test]
    fn unique_sorted_and_first_occurrence_order() {
        // np.unique([2, 1, 1, 3, 2], return_index/inverse/counts)
        let x = Tensor::i64(vec![5], vec![2, 1, 1, 3, 2]);
        let r = eval(&UNIQUE, &none(), &[Some(x.clone())], 4).unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![1, 2, 3]);
        assert_eq!(r[1].to_i64_vec(), vec![1, 0, 3]);
        assert_eq!(r[2].to_i64_vec(), vec![1, 0, 0, 2, 1]);
        assert_eq!(r[3].to_i64_vec(), vec![2, 2, 1]);
        let r = eval(&UNIQUE, &attrs(&[("sorted", Attr::Int(0))]), &[Some(x)], 4).unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![2, 1, 3]);
        assert_eq!(r[2].to_i64_vec(), vec![0, 1, 1, 2, 0]);
    }

    #[test]
    fn resize_nearest_and_linear() {
        let x = Tensor::f32(vec![1, 2], vec![0.0, 3.0]);
        let scales = Tensor::f32(vec![2], vec![1.0, 2.0]);
        // Upsample's form: asymmetric + floor repeats elements.
        let a = attrs(&[
            ("nearest_mode", Attr::Str("floor".into())),
            (
                "coordinate_transformation_mode",
                Attr::Str("asymmetric".into()),
            ),
        ]);
        let r = eval(
            &RESIZE,
            &a,
            &[Some(x.clone()), None, Some(scales.clone()), None],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 0.0, 3.0, 3.0]);
        // half_pixel sources -0.25, 0.25, 0.75, 1.25 round (prefer floor) to 0, 0, 1, 1.
        let r = eval(
            &RESIZE,
            &none(),
            &[Some(x.clone()), None, Some(scales), None],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 0.0, 3.0, 3.0]);
        // align_corners maps the ends onto each other: 0, 1, 2, 3.
        let a = attrs(&[
            ("mode", Attr::Str("linear".into())),
            (
                "coordinate_transformation_mode",
                Attr::Str("align_corners".into()),
            ),
        ]);
        let r = eval(
            &RESIZE,
            &a,
            &[Some(x.clone()), None, None, Some(ints(&[1, 4]))],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 1.0, 2.0, 3.0]);
        // half_pixel: source positions -0.25, 0.25, 0.75, 1.25 (edges clamp).
        let a = attrs(&[("mode", Attr::Str("linear".into()))]);
        let r = eval(&RESIZE, &a, &[Some(x), None, None, Some(ints(&[1, 4]))], 1).unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 0.75, 2.25, 3.0]);
        let sym_x = ty(&[sym("n"), Dim::fixed(3)]);
        let r = infer(
            &RESIZE,
            &none(),
            &[
                sym_x,
                TensorType::fixed(&[0], DType::F32),
                TensorType::fixed(&[2], DType::F32),
            ],
            &[None, None, Some(Tensor::f32(vec![2], vec![2.0, 1.5]))],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(
            r[0].shape,
            vec![sym("n").mul(&Dim::fixed(2)), Dim::fixed(4)]
        );
    }

    #[test]
    fn depth_to_space_round_trips_space_to_depth() {
        let x = iota(&[1, 2, 4, 6]);
        for mode in ["DCR", "CRD"] {
            let a = attrs(&[
                ("blocksize", Attr::Int(2)),
                ("mode", Attr::Str(mode.into())),
            ]);
            let d = eval(&SPACE_TO_DEPTH, &a, &[Some(x.clone())], 1).unwrap();
            assert_eq!(d[0].shape, vec![1, 8, 2, 3]);
            let back = eval(&DEPTH_TO_SPACE, &a, &[Some(d[0].clone())], 1).unwrap();
            assert_eq!(back[0], x, "{mode}");
        }
        // DCR: channel c*4 + (i*2 + j) goes to pixel (2h+i, 2w+j); first row of the result is [0, 6, 1, 7, 2, 8].
        let a = attrs(&[("blocksize", Attr::Int(2))]);
        let d = eval(&SPACE_TO_DEPTH, &a, &[Some(iota(&[1, 1, 2, 6]))], 1).unwrap();
        assert_eq!(f32s(&d[0])[..3], [0.0, 2.0, 4.0]);
    }

    #[test]
    fn shape_size_and_data_dependent_ops() {
        let x = ty(&[sym("b"), Dim::fixed(3), Dim::fixed(4)]);
        let r = infer(
            &SHAPE,
            &attrs(&[("start", Attr::Int(-2))]),
            std::slice::from_ref(&x),
            &[],
            &[],
            1,
        )
        .unwrap();
        assert_eq!(r[0], TensorType::fixed(&[2], DType::I64));
        let r = eval(
            &SHAPE,
            &attrs(&[("end", Attr::Int(-1))]),
            &[Some(iota(&[2, 3, 4]))],
            1,
        )
        .unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![2, 3]);
        assert_eq!(
            eval(&SIZE, &none(), &[Some(iota(&[2, 3, 4]))], 1).unwrap()[0].to_i64_vec(),
            vec![24]
        );
        let r = infer(&NON_ZERO, &none(), &[x], &[], &[], 1).unwrap();
        assert_eq!(r[0].shape, vec![Dim::fixed(3), Dim::Unknown]);
        let r = eval(
            &NON_ZERO,
            &none(),
            &[Some(Tensor::i64(vec![2, 2], vec![0, 5, 7, 0]))],
            1,
        )
        .unwrap();
        assert_eq!(
            (r[0].shape.clone(), r[0].to_i64_vec()),
            (vec![2, 2], vec![0, 1, 1, 0])
        );
    }

    #[test]
    fn tile_expand_center_crop_pad_and_reverse_sequence() {
        let x = Tensor::f32(vec![2], vec![1.0, 2.0]);
        assert_eq!(
            f32s(&eval(&TILE, &none(), &[Some(x.clone()), Some(ints(&[3]))], 1).unwrap()[0]),
            vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
        );
        let r = eval(
            &EXPAND,
            &none(),
            &[
                Some(Tensor::f32(vec![2, 1], vec![1.0, 2.0])),
                Some(ints(&[2, 3])),
            ],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        // [0..5) cropped to 2 keeps [1, 2]; padded to 8 gets 1 zero before, 2 after.
        let x = iota(&[5]);
        assert_eq!(
            f32s(
                &eval(
                    &CENTER_CROP_PAD,
                    &none(),
                    &[Some(x.clone()), Some(ints(&[2]))],
                    1
                )
                .unwrap()[0]
            ),
            vec![1.0, 2.0]
        );
        let r = eval(&CENTER_CROP_PAD, &none(), &[Some(x), Some(ints(&[8]))], 1).unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0]);
        // time-major [3, 2]: batch 0 reverses 3 steps, batch 1 reverses 2.
        let r = eval(
            &REVERSE_SEQUENCE,
            &none(),
            &[Some(iota(&[3, 2])), Some(ints(&[3, 2]))],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![4.0, 3.0, 2.0, 1.0, 0.0, 5.0]);
    }

    #[test]
    fn compress_and_tensor_scatter() {
        let cond = Tensor::new(DType::Bool, vec![3], Data::Bool(vec![false, true, true])).unwrap();
        let r = eval(
            &COMPRESS,
            &attrs(&[("axis", Attr::Int(1))]),
            &[Some(iota(&[2, 3])), Some(cond)],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![1.0, 2.0, 4.0, 5.0]);
        // Cache [2 batches, 4 slots, 1], writing 2 steps at slot 1 (batch 0) and 3 (batch 1, circular).
        let cache = Tensor::zeros(DType::F32, vec![2, 4, 1]);
        let upd = Tensor::f32(vec![2, 2, 1], vec![1.0, 2.0, 3.0, 4.0]);
        let a = attrs(&[
            ("axis", Attr::Int(1)),
            ("mode", Attr::Str("circular".into())),
        ]);
        let r = eval(
            &TENSOR_SCATTER,
            &a,
            &[Some(cache), Some(upd), Some(ints(&[1, 3]))],
            1,
        )
        .unwrap();
        assert_eq!(f32s(&r[0]), vec![0.0, 1.0, 2.0, 0.0, 4.0, 0.0, 0.0, 3.0]);
    }
}
