//! Data movement: transpose, concat, split, slice, expand, tile, pad, gather,
//! gather_elements, trilu, shape and size (range is folded before lowering:
//! its operands are constants once shapes are specialized).
//!
//! Static layouts become affine maps read by one parallel `linalg.generic`
//! (`d0*-2 + 9` for a reversed strided slice, `d1 mod 3` for a tile); concat
//! writes each operand into a strided subview of the result; gathers load
//! from the data inside the generic's body at indices computed from
//! `linalg.index` and the index operand.
//!
//! Out-of-range run-time indices are an error, as in the reference: the
//! kernel reports it through the run's status (`KernelCtx::fail_if`) and
//! the run fails naming the node. Indices are wrapped once (negative count
//! from the end) and clamped into the axis so that every load stays in
//! bounds while the kernel finishes. Constant indices are checked at compile
//! time instead.

use super::generic::{affine_map, elementwise, generic, Region};
use super::matmul::gemm::text::{flat, Emit, FLAT};
use super::LowerFn;
use crate::emit::kernel::{memref_type, Buf, KernelCtx};
use tessera_ir::ops::util::norm_axis;
use tessera_ir::{AttrAccess, DType, Tensor};

/// The integer values of a compile-time constant operand.
fn const_ints(k: &KernelCtx, i: usize, what: &str) -> Result<Vec<i64>, String> {
    let b = k.operand(i)?;
    let t = b
        .constant
        .as_ref()
        .ok_or_else(|| format!("the {what} operand must be a constant on the cpu target"))?;
    Ok(t.to_i64_vec())
}

fn opt_const_ints(k: &KernelCtx, i: usize, what: &str) -> Result<Option<Vec<i64>>, String> {
    match k.opt_operand(i) {
        Some(_) => const_ints(k, i, what).map(Some),
        None => Ok(None),
    }
}

/// A copy of `src` into `out` where input element = `exprs` of the output's
/// dims.
fn copy_mapped(k: &mut KernelCtx, src: &Buf, exprs: &[String], out: &Buf) -> Result<(), String> {
    let map = affine_map(out.rank(), exprs);
    generic(k, std::slice::from_ref(src), &[map], out, |_, a| {
        Ok(a[0].clone())
    })
}

fn dims(rank: usize) -> Vec<String> {
    (0..rank).map(|d| format!("d{d}")).collect()
}

/// `d * step + start` as an affine expression.
fn strided(d: &str, start: i64, step: i64) -> String {
    match (start, step) {
        (0, 1) => d.to_string(),
        (s, 1) => format!("{d} + {s}"),
        (s, t) => format!("{d} * {t} + {s}"),
    }
}

fn lower_transpose(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let rank = x.rank();
    let perm: Vec<usize> = if k.op.has_attr("perm") {
        let p = k.op.ints("perm")?;
        if p.len() != rank {
            return Err(format!("perm {p:?} does not have {rank} entries"));
        }
        p.iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<Result<_, _>>()?
    } else {
        (0..rank).rev().collect()
    };
    // Output dim i is input dim perm[i]: input dim perm[i] reads d_i.
    let mut exprs = vec![String::new(); rank];
    for (i, &p) in perm.iter().enumerate() {
        exprs[p] = format!("d{i}");
    }
    if exprs.iter().any(String::is_empty) {
        return Err(format!("perm {perm:?} is not a permutation"));
    }
    copy_mapped(k, &x, &exprs, &out)
}

/// A strided window of `b`: per dim an offset, a size and a (positive)
/// step. Loop bounds of a `linalg.generic` are inferred from every operand,
/// so a partial read must be a view of the right shape, not an offset map.
fn subview(
    k: &mut KernelCtx,
    b: &Buf,
    offsets: &[usize],
    sizes: &[usize],
    steps: &[usize],
) -> Result<Buf, String> {
    let rank = b.rank();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * b.shape[i + 1];
    }
    let offset: usize = offsets.iter().zip(&strides).map(|(o, s)| o * s).sum();
    let layout: Vec<String> = strides
        .iter()
        .zip(steps)
        .map(|(s, t)| (s * t).to_string())
        .collect();
    let base = memref_type(sizes, b.dtype)?;
    let ty = format!(
        "{}, strided<[{}], offset: {offset}>>",
        base.trim_end_matches('>'),
        layout.join(", ")
    );
    let list = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = k.fresh("win");
    k.line(format!(
        "{name} = memref.subview {}[{}] [{}] [{}] : {} to {ty}",
        b.name,
        list(offsets),
        list(sizes),
        list(steps),
        b.ty
    ));
    Ok(Buf {
        name,
        ty,
        shape: sizes.to_vec(),
        dtype: b.dtype,
        value: None,
        constant: None,
    })
}

/// The window of `b` at `offset` along `axis` of `size` elements.
fn axis_window(
    k: &mut KernelCtx,
    b: &Buf,
    axis: usize,
    offset: usize,
    size: usize,
) -> Result<Buf, String> {
    let mut offsets = vec![0; b.rank()];
    offsets[axis] = offset;
    let mut sizes = b.shape.clone();
    sizes[axis] = size;
    subview(k, b, &offsets, &sizes, &vec![1; b.rank()])
}

/// Split and concat of a row-major tensor along `axis` move, per index of
/// the dims before the axis, one contiguous run per piece: copied with
/// 16-lane vector loads and stores, parallel over those outer indices, all
/// pieces in one parallel region. (The generic strided copy runs a scalar
/// loop per element; this is the Q/K/V split after the merged projection.)
/// `to_pieces`: split (whole → pieces) rather than concat.
fn axis_runs_copy(
    k: &mut KernelCtx,
    whole: &Buf,
    pieces: &[(Buf, usize)],
    axis: usize,
    to_pieces: bool,
) -> Result<(), String> {
    let outer: usize = whole.shape[..axis].iter().product();
    let inner: usize = whole.shape[axis + 1..].iter().product();
    let row = whole.shape[axis] * inner;
    let ty = whole.elem();
    let vty = format!("vector<{LANES}x{ty}>");
    let fl = format!("memref<{FLAT}x{ty}>");
    let w = flat(k, whole, FLAT);
    let flats: Vec<String> = pieces.iter().map(|(b, _)| flat(k, b, FLAT)).collect();
    let (c0, c1) = (k.idx(0), k.idx(1));
    let o = k.fresh("o");
    let no = k.idx(outer as i64);
    k.line(format!(
        "scf.parallel ({o}) = ({c0}) to ({no}) step ({c1}) {{"
    ));
    let wrow = k.mul_c(&o, row);
    for ((b, off), fb) in pieces.iter().zip(&flats) {
        let run = b.shape[axis] * inner;
        if run == 0 {
            continue;
        }
        let wbase = k.add_c(&wrow, off * inner);
        let pbase = k.mul_c(&o, run);
        let (src, sbase, dst, dbase) = if to_pieces {
            (&w, wbase, fb, pbase)
        } else {
            (fb, pbase, &w, wbase)
        };
        let vend = run / LANES * LANES;
        for (lo, hi, step, vector) in [(0, vend, LANES, true), (vend, run, 1, false)] {
            if lo == hi {
                continue;
            }
            let (lo, hi, st) = (k.idx(lo as i64), k.idx(hi as i64), k.idx(step as i64));
            let c = k.fresh("run");
            k.line(format!("scf.for {c} = {lo} to {hi} step {st} {{"));
            let s_at = k.add(&sbase, &c);
            let d_at = k.add(&dbase, &c);
            if vector {
                let x = k.op(format!("vector.load {src}[{s_at}] : {fl}, {vty}"));
                k.line(format!("vector.store {x}, {dst}[{d_at}] : {fl}, {vty}"));
            } else {
                let x = k.op(format!("memref.load {src}[{s_at}] : {fl}"));
                k.line(format!("memref.store {x}, {dst}[{d_at}] : {fl}"));
            }
            k.line("}");
        }
    }
    k.line("}");
    Ok(())
}

const LANES: usize = 16;

/// Whether [`axis_runs_copy`] handles this element type (booleans are
/// bytes in memory but `i1` vectors are bit-packed).
fn runs_copyable(b: &Buf) -> bool {
    b.dtype != DType::Bool
}

fn lower_concat(k: &mut KernelCtx) -> Result<(), String> {
    let ins: Vec<Buf> = k.operands.iter().flatten().cloned().collect();
    let out = k.result(0).clone();
    let axis = norm_axis(k.op.int("axis")?, out.rank())?;
    if runs_copyable(&out) && !out.is_empty() {
        let mut pieces = Vec::new();
        let mut offset = 0;
        for b in &ins {
            pieces.push((b.clone(), offset));
            offset += b.shape[axis];
        }
        return axis_runs_copy(k, &out, &pieces, axis, false);
    }
    let mut offset = 0;
    for b in &ins {
        let n = b.shape[axis];
        if n > 0 && !out.is_empty() {
            let win = axis_window(k, &out, axis, offset, n)?;
            copy_mapped(k, b, &dims(out.rank()), &win)?;
        }
        offset += n;
    }
    Ok(())
}

fn lower_split(k: &mut KernelCtx) -> Result<(), String> {
    let x = k.operand(0)?.clone();
    let axis = norm_axis(k.op.int("axis")?, x.rank())?;
    let covered: usize = k.results.iter().map(|b| b.shape[axis]).sum();
    if covered != x.shape[axis] {
        return Err(format!(
            "split pieces cover {covered} of the axis of size {}",
            x.shape[axis]
        ));
    }
    if runs_copyable(&x) && !x.is_empty() {
        let mut pieces = Vec::new();
        let mut offset = 0;
        for b in k.results.clone() {
            pieces.push((b.clone(), offset));
            offset += b.shape[axis];
        }
        return axis_runs_copy(k, &x, &pieces, axis, true);
    }
    // The result types carry the sizes (split operand or equal pieces).
    let mut offset = 0i64;
    for out in k.results.clone() {
        let n = out.shape[axis];
        if !out.is_empty() {
            let win = axis_window(k, &x, axis, offset as usize, n)?;
            copy_mapped(k, &win, &dims(x.rank()), &out)?;
        }
        offset += n as i64;
    }
    if offset != x.shape[axis] as i64 {
        return Err(format!(
            "split pieces cover {offset} of the axis of size {}",
            x.shape[axis]
        ));
    }
    Ok(())
}

/// ONNX Slice bounds on a dim of size `d`: the first index read (numpy
/// clamping; negative bounds count from the end).
fn slice_start(d: i64, start: i64, step: i64) -> i64 {
    let s = if start < 0 {
        start.saturating_add(d)
    } else {
        start
    };
    if step > 0 {
        s.clamp(0, d)
    } else {
        s.clamp(0, d - 1)
    }
}

fn lower_slice(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let starts = const_ints(k, 1, "starts")?;
    let rank = x.rank();
    let axes: Vec<usize> = match opt_const_ints(k, 3, "axes")? {
        Some(a) => a
            .iter()
            .map(|&v| norm_axis(v, rank))
            .collect::<Result<_, _>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = opt_const_ints(k, 4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("slice starts, axes and steps differ in length".into());
    }
    // Positive steps are a strided view; negative ones an affine map
    // (`d * step + start`, never a bare dim, so it leaves the loop bounds to
    // the result) over the full axis.
    let (mut offsets, mut sizes, mut view_steps) = (vec![0; rank], x.shape.clone(), vec![1; rank]);
    let mut exprs = dims(rank);
    for ((&a, &s), &st) in axes.iter().zip(&starts).zip(&steps) {
        if st == 0 {
            return Err("slice step cannot be 0".into());
        }
        // The result's static shape already holds the clamped length.
        let start = slice_start(x.shape[a] as i64, s, st);
        if st > 0 {
            (offsets[a], sizes[a], view_steps[a]) = (start as usize, out.shape[a], st as usize);
        } else {
            exprs[a] = strided(&format!("d{a}"), start, st);
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    let src = if offsets.iter().any(|&o| o != 0)
        || sizes != x.shape
        || view_steps.iter().any(|&t| t != 1)
    {
        subview(k, &x, &offsets, &sizes, &view_steps)?
    } else {
        x
    };
    copy_mapped(k, &src, &exprs, &out)
}

fn lower_expand(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    elementwise(k, &[x], &out, |_, a| Ok(a[0].clone()))
}

fn lower_tile(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let exprs: Vec<String> = x
        .shape
        .iter()
        .zip(&out.shape)
        .enumerate()
        .map(|(i, (&n, &m))| {
            if n == m {
                format!("d{i}")
            } else {
                format!("d{i} mod {n}")
            }
        })
        .collect();
    copy_mapped(k, &x, &exprs, &out)
}

/// `i` (an `index`) wrapped once for negatives and clamped into `[0, n)`;
/// an index outside `[-n, n)` fails the run (see the module doc).
fn wrap_clamp(r: &mut Region, i: &str, n: usize) -> String {
    let (c0, cn, last) = (r.k.idx(0), r.k.idx(n as i64), r.k.idx(n as i64 - 1));
    let neg = r.op(format!("arith.cmpi slt, {i}, {c0} : index"));
    let up = r.op(format!("arith.addi {i}, {cn} : index"));
    let w = r.op(format!("arith.select {neg}, {up}, {i} : index"));
    // Negative after wrapping reads as huge unsigned: one compare.
    let bad = r.op(format!("arith.cmpi uge, {w}, {cn} : index"));
    let fail = r.k.fail_if_text(
        &bad,
        &format!(
            "an index is out of range for the axis of size {n} (valid: -{n} to {})",
            n as i64 - 1
        ),
    );
    r.raw(fail);
    let lo = r.op(format!("arith.maxsi {w}, {c0} : index"));
    r.op(format!("arith.minsi {lo}, {last} : index"))
}

/// Rejects constant indices outside `[-n, n)`, as the reference does.
fn check_const_indices(b: &Buf, n: usize) -> Result<(), String> {
    if let Some(t) = &b.constant {
        if let Some(bad) = t
            .to_i64_vec()
            .into_iter()
            .find(|&i| i < -(n as i64) || i >= n as i64)
        {
            return Err(format!(
                "index {bad} is out of range for an axis of size {n}"
            ));
        }
    }
    Ok(())
}

fn index_of(r: &mut Region, v: &str, b: &Buf) -> Result<String, String> {
    if !b.dtype.is_int() {
        return Err(format!("indices must be integers, got {}", b.dtype));
    }
    Ok(r.op(format!("arith.index_cast {v} : {} to index", b.elem())))
}

fn lower_gather(k: &mut KernelCtx) -> Result<(), String> {
    let (x, ind, out) = (
        k.operand(0)?.clone(),
        k.operand(1)?.clone(),
        k.result(0).clone(),
    );
    let axis = norm_axis(k.op.int("axis")?, x.rank())?;
    let n = x.shape[axis];
    check_const_indices(&ind, n)?;
    if n == 0 && !out.is_empty() {
        return Err("gather from an empty axis".into());
    }
    let q = ind.rank();
    let exprs: Vec<String> = (axis..axis + q).map(|d| format!("d{d}")).collect();
    let map = affine_map(out.rank(), &exprs);
    generic(k, std::slice::from_ref(&ind), &[map], &out, |r, a| {
        let i = index_of(r, &a[0], &ind)?;
        let i = wrap_clamp(r, &i, n);
        let mut at = Vec::new();
        for d in 0..x.rank() {
            at.push(match d.cmp(&axis) {
                std::cmp::Ordering::Less => r.op(format!("linalg.index {d} : index")),
                std::cmp::Ordering::Equal => i.clone(),
                std::cmp::Ordering::Greater => r.op(format!("linalg.index {} : index", d - 1 + q)),
            });
        }
        Ok(r.op(format!(
            "memref.load {}[{}] : {}",
            x.name,
            at.join(", "),
            x.ty
        )))
    })
}

fn lower_gather_elements(k: &mut KernelCtx) -> Result<(), String> {
    let (x, ind, out) = (
        k.operand(0)?.clone(),
        k.operand(1)?.clone(),
        k.result(0).clone(),
    );
    let axis = norm_axis(k.op.int("axis")?, x.rank())?;
    let n = x.shape[axis];
    check_const_indices(&ind, n)?;
    if ind.rank() != x.rank()
        || ind
            .shape
            .iter()
            .zip(&x.shape)
            .enumerate()
            .any(|(d, (&i, &s))| d != axis && i > s)
    {
        return Err(format!(
            "indices shape {:?} does not fit data shape {:?}",
            ind.shape, x.shape
        ));
    }
    if n == 0 && !out.is_empty() {
        return Err("gather_elements from an empty axis".into());
    }
    let map = affine_map(out.rank(), &dims(out.rank()));
    generic(k, std::slice::from_ref(&ind), &[map], &out, |r, a| {
        let i = index_of(r, &a[0], &ind)?;
        let i = wrap_clamp(r, &i, n);
        let mut at = Vec::new();
        for d in 0..x.rank() {
            at.push(if d == axis {
                i.clone()
            } else {
                r.op(format!("linalg.index {d} : index"))
            });
        }
        Ok(r.op(format!(
            "memref.load {}[{}] : {}",
            x.name,
            at.join(", "),
            x.ty
        )))
    })
}

/// Loads the single element of a scalar-like buffer before the kernel loop.
fn load_scalar(k: &mut KernelCtx, b: &Buf) -> Result<String, String> {
    if b.len() != 1 {
        return Err(format!("expected a scalar, got shape {:?}", b.shape));
    }
    let zeros: Vec<String> = (0..b.rank()).map(|_| k.idx(0)).collect();
    let v = k.fresh("sc");
    k.line(format!(
        "{v} = memref.load {}[{}] : {}",
        b.name,
        zeros.join(", "),
        b.ty
    ));
    Ok(v)
}

fn zero_of(r: &mut Region, d: DType, ty: &str) -> String {
    if d.is_float() {
        r.op(format!("arith.constant 0.0 : {ty}"))
    } else if d == DType::Bool {
        r.op("arith.constant false")
    } else {
        r.op(format!("arith.constant 0 : {ty}"))
    }
}

fn lower_trilu(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let rank = x.rank();
    if rank < 2 {
        return Err(format!("trilu expects rank >= 2, got shape {:?}", x.shape));
    }
    let upper = k.op.int("upper")? != 0;
    let diag = match k.opt_operand(1).cloned() {
        Some(b) => {
            let v = load_scalar(k, &b)?;
            let kk = k.fresh("k");
            k.line(format!(
                "{kk} = arith.index_cast {v} : {} to index",
                b.elem()
            ));
            kk
        }
        None => k.idx(0),
    };
    let (ty, dt) = (x.elem(), x.dtype);
    elementwise(k, &[x], &out, |r, a| {
        let row = r.op(format!("linalg.index {} : index", rank - 2));
        let col = r.op(format!("linalg.index {} : index", rank - 1));
        let d = r.op(format!("arith.subi {col}, {row} : index"));
        let keep = r.op(format!(
            "arith.cmpi {}, {d}, {diag} : index",
            if upper { "sge" } else { "sle" }
        ));
        let z = zero_of(r, dt, ty);
        Ok(r.op(format!("arith.select {keep}, {}, {z} : {ty}", a[0])))
    })
}

/// Shape and size are known once shapes are specialized: stored as constants.
fn store_constants(k: &mut KernelCtx, values: &[i64]) -> Result<(), String> {
    let out = k.result(0).clone();
    if out.dtype != DType::I64 {
        return Err(format!("expected an i64 result, got {}", out.dtype));
    }
    let t = Tensor::from_i64(DType::I64, out.shape.clone(), values);
    let src = k.derived_constant(t)?;
    copy_mapped(k, &src, &dims(out.rank()), &out)
}

fn lower_shape(k: &mut KernelCtx) -> Result<(), String> {
    let x = k.operand(0)?.clone();
    let r = x.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let s = clamp(k.op.int("start")?);
    let e = if k.op.has_attr("end") {
        clamp(k.op.int("end")?)
    } else {
        r as usize
    };
    let v: Vec<i64> = x.shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
    store_constants(k, &v)
}

fn lower_size(k: &mut KernelCtx) -> Result<(), String> {
    let n = k.operand(0)?.len() as i64;
    store_constants(k, &[n])
}

/// Per axis, the input coordinate each output coordinate reads, or -1 for
/// the fill value (the reference's `pad_map`: crop first, then pad).
fn pad_map(d: usize, before: i64, after: i64, mode: &str) -> Result<Vec<i32>, String> {
    let (crop_lo, crop_hi) = ((-before).max(0) as usize, (-after).max(0) as usize);
    let kept = d
        .checked_sub(crop_lo + crop_hi)
        .ok_or_else(|| format!("pads crop more than the dim of size {d}"))? as i64;
    let (lo, hi) = (before.max(0), after.max(0));
    if kept == 0 && (lo > 0 || hi > 0) && mode != "constant" {
        return Err(format!("{mode} padding of an empty axis"));
    }
    let src = |i: i64| -> i64 {
        if (0..kept).contains(&i) {
            return i;
        }
        match mode {
            "edge" => i.clamp(0, kept - 1),
            "wrap" => i.rem_euclid(kept),
            "reflect" if kept == 1 => 0,
            "reflect" => {
                let period = 2 * (kept - 1);
                let m = i.rem_euclid(period);
                if m >= kept {
                    period - m
                } else {
                    m
                }
            }
            _ => -1 - crop_lo as i64,
        }
    };
    Ok((-lo..kept + hi)
        .map(|i| (src(i) + crop_lo as i64) as i32)
        .collect())
}

fn lower_pad(k: &mut KernelCtx) -> Result<(), String> {
    let (x, out) = (k.operand(0)?.clone(), k.result(0).clone());
    let rank = x.rank();
    let mode = k.op.string("mode")?;
    if !["constant", "reflect", "edge", "wrap"].contains(&mode.as_str()) {
        return Err(format!("unknown pad mode '{mode}'"));
    }
    let pads = const_ints(k, 1, "pads")?;
    let axes: Vec<usize> = match opt_const_ints(k, 3, "axes")? {
        Some(a) => a
            .iter()
            .map(|&v| norm_axis(v, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut amounts = vec![(0i64, 0i64); rank];
    for (i, &a) in axes.iter().enumerate() {
        amounts[a] = (pads[i], pads[axes.len() + i]);
    }
    // One table per padded axis, in the weights; other axes read in place.
    let mut tables: Vec<Option<Buf>> = Vec::new();
    for (a, &(b, e)) in amounts.iter().enumerate() {
        if b == 0 && e == 0 {
            tables.push(None);
            continue;
        }
        let m = pad_map(x.shape[a], b, e, &mode)?;
        if m.len() != out.shape[a] {
            return Err(format!(
                "padded axis {a} has {} entries, the result {}",
                m.len(),
                out.shape[a]
            ));
        }
        let v: Vec<i64> = m.iter().map(|&i| i as i64).collect();
        tables.push(Some(k.derived_constant(Tensor::from_i64(
            DType::I32,
            vec![v.len()],
            &v,
        ))?));
    }
    let fill = match k.opt_operand(2).cloned() {
        Some(c) if !c.is_empty() => Some(load_scalar(k, &c)?),
        _ => None,
    };
    let ty = x.elem();
    let needs_fill = mode == "constant" && amounts.iter().any(|&(b, e)| b > 0 || e > 0);
    if x.is_empty() && !out.is_empty() && !needs_fill {
        return Err("padding an empty tensor needs constant mode".into());
    }
    elementwise(k, &[], &out, |r, _| {
        let mut at = Vec::new();
        let mut outside: Option<String> = None;
        let c0 = r.k.idx(0);
        for (a, t) in tables.iter().enumerate() {
            let i = r.op(format!("linalg.index {a} : index"));
            let Some(t) = t else {
                at.push(i);
                continue;
            };
            let s = r.op(format!("memref.load {}[{i}] : {}", t.name, t.ty));
            let si = r.op(format!("arith.index_cast {s} : i32 to index"));
            let neg = r.op(format!("arith.cmpi slt, {si}, {c0} : index"));
            outside = Some(match outside {
                Some(o) => r.op(format!("arith.ori {o}, {neg} : i1")),
                None => neg.clone(),
            });
            // Fill positions still load in bounds (at 0) and select the fill.
            at.push(r.op(format!("arith.maxsi {si}, {c0} : index")));
        }
        let fill = match &fill {
            Some(f) => f.clone(),
            None => zero_of(r, x.dtype, ty),
        };
        if x.is_empty() {
            return Ok(fill);
        }
        let v = r.op(format!(
            "memref.load {}[{}] : {}",
            x.name,
            at.join(", "),
            x.ty
        ));
        Ok(match outside {
            Some(o) => r.op(format!("arith.select {o}, {fill}, {v} : {ty}")),
            None => v,
        })
    })
}

pub const LOWERINGS: &[(&str, LowerFn)] = &[
    ("transpose", lower_transpose),
    ("concat", lower_concat),
    ("split", lower_split),
    ("slice", lower_slice),
    ("expand", lower_expand),
    ("tile", lower_tile),
    ("pad", lower_pad),
    ("gather", lower_gather),
    ("gather_elements", lower_gather_elements),
    ("trilu", lower_trilu),
    ("shape", lower_shape),
    ("size", lower_size),
];
