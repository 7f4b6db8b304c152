//! Reductions (`reduce_*`) and `arg_max` / `arg_min` as loop nests: parallel
//! over the kept elements, sequential (fixed order) over the reduced ones,
//! so the result never depends on the thread count.
//!
//! Floats accumulate in f32 (f64 for f64 data; half types load through f32
//! and round once). Integers accumulate in i64 and wrap, which equals the
//! reference's wrapped result in the element type.

use crate::emit::kernel::KernelCtx;
use tessera_ir::{AttrAccess, DType};

use super::nn::{
    compute_ty, fconst, flat, for_close, for_open, iconst, is_half, load, mad, norm_axis, op,
    par_close, par_open, store,
};
use super::LowerFn;

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Kind {
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

impl Kind {
    fn of(mnemonic: &str) -> Option<Kind> {
        Some(match mnemonic {
            "reduce_sum" => Kind::Sum,
            "reduce_mean" => Kind::Mean,
            "reduce_max" => Kind::Max,
            "reduce_min" => Kind::Min,
            "reduce_prod" => Kind::Prod,
            "reduce_l1" => Kind::L1,
            "reduce_l2" => Kind::L2,
            "reduce_log_sum" => Kind::LogSum,
            "reduce_log_sum_exp" => Kind::LogSumExp,
            "reduce_sum_square" => Kind::SumSquare,
            _ => return None,
        })
    }
}

/// How the accumulator looks for one element type.
struct Acc {
    /// MLIR type of the accumulator (f32, f64, i64 or i1).
    ty: &'static str,
    float: bool,
    signed: bool,
}

fn acc_for(d: DType) -> Acc {
    if d.is_float() {
        Acc {
            ty: compute_ty(d),
            float: true,
            signed: true,
        }
    } else if d == DType::Bool {
        Acc {
            ty: "i1",
            float: false,
            signed: false,
        }
    } else {
        Acc {
            ty: "i64",
            float: false,
            signed: d.is_signed_int(),
        }
    }
}

/// Loads one input element as the accumulator type.
fn load_acc(k: &mut KernelCtx, mem: &str, ty: &str, idx: &str, d: DType, acc: &Acc) -> String {
    if acc.float || d == DType::Bool || acc.ty == crate::emit::kernel::elem(d).unwrap_or("") {
        return load(k, mem, ty, idx, d);
    }
    let v = op(k, format!("memref.load {mem}[{idx}] : {ty}"));
    let e = crate::emit::kernel::elem(d).unwrap_or("i64");
    let ext = if acc.signed {
        "arith.extsi"
    } else {
        "arith.extui"
    };
    op(k, format!("{ext} {v} : {e} to i64"))
}

/// The reduction's starting value.
fn init(k: &mut KernelCtx, kind: Kind, d: DType, acc: &Acc) -> Result<String, String> {
    if acc.float {
        let v = match kind {
            Kind::Max | Kind::LogSumExp => f64::NEG_INFINITY,
            Kind::Min => f64::INFINITY,
            Kind::Prod => 1.0,
            _ => 0.0,
        };
        return Ok(fconst(k, v, acc.ty));
    }
    let (lo, hi) = if d == DType::Bool {
        (0, 1)
    } else {
        d.int_range()
            .ok_or_else(|| format!("{d} has no integer range"))?
    };
    let v: i128 = match kind {
        Kind::Max => lo,
        Kind::Min => hi,
        Kind::Prod => 1,
        _ => 0,
    };
    // u64's maximum wraps to -1 in i64, the same bits.
    Ok(iconst(k, v as i64, acc.ty))
}

/// `acc (+) x` for one element.
fn combine(k: &mut KernelCtx, kind: Kind, a: &str, x: &str, acc: &Acc) -> String {
    let t = acc.ty;
    if acc.float {
        return match kind {
            Kind::Sum | Kind::Mean | Kind::LogSum => op(k, format!("arith.addf {a}, {x} : {t}")),
            Kind::Max => op(k, format!("arith.maximumf {a}, {x} : {t}")),
            Kind::Min => op(k, format!("arith.minimumf {a}, {x} : {t}")),
            Kind::Prod => op(k, format!("arith.mulf {a}, {x} : {t}")),
            Kind::L1 => {
                let ab = op(k, format!("math.absf {x} : {t}"));
                op(k, format!("arith.addf {a}, {ab} : {t}"))
            }
            Kind::L2 | Kind::SumSquare => op(k, format!("math.fma {x}, {x}, {a} : {t}")),
            // The first pass of log-sum-exp: the maximum (NaN wins).
            Kind::LogSumExp => op(k, format!("arith.maximumf {a}, {x} : {t}")),
        };
    }
    let (max, min) = if acc.signed {
        ("arith.maxsi", "arith.minsi")
    } else {
        ("arith.maxui", "arith.minui")
    };
    match kind {
        Kind::Max => op(k, format!("{max} {a}, {x} : {t}")),
        Kind::Min => op(k, format!("{min} {a}, {x} : {t}")),
        Kind::Prod => op(k, format!("arith.muli {a}, {x} : {t}")),
        Kind::L1 => {
            let ab = op(k, format!("math.absi {x} : {t}"));
            op(k, format!("arith.addi {a}, {ab} : {t}"))
        }
        Kind::SumSquare => {
            let sq = op(k, format!("arith.muli {x}, {x} : {t}"));
            op(k, format!("arith.addi {a}, {sq} : {t}"))
        }
        _ => op(k, format!("arith.addi {a}, {x} : {t}")),
    }
}

/// Sorted distinct reduced axes (empty: all, or none with `noop`).
fn reduced_axes(k: &KernelCtx, rank: usize) -> Result<Vec<usize>, String> {
    let noop = k.op.int("noop_with_empty_axes")? != 0;
    let axes: Option<Vec<i64>> = match k.opt_operand(1) {
        None => None,
        Some(b) => Some(
            b.constant
                .as_ref()
                .ok_or("axes known only at run time are not supported by the cpu target")?
                .to_i64_vec(),
        ),
    };
    tessera_ir::ops::reduce::reduced_axes(axes.as_deref(), rank, noop)
}

fn lower_reduce(k: &mut KernelCtx) -> Result<(), String> {
    let m = k.op.kind.mnemonic();
    let kind = Kind::of(m).ok_or_else(|| format!("tsr.{m} is not a reduction"))?;
    let x = k.operand(0)?.clone();
    let y = k.result(0).clone();
    let d = x.dtype;
    let acc = acc_for(d);
    if !acc.float && matches!(kind, Kind::L2 | Kind::LogSum | Kind::LogSumExp) {
        return Err(format!("tsr.{m} on {d} is not supported by the cpu target"));
    }
    if d == DType::Bool && !matches!(kind, Kind::Max | Kind::Min) {
        return Err(format!("tsr.{m} does not accept bool"));
    }
    if y.is_empty() {
        return Ok(());
    }
    // A scalar is one element along a dim of size 1.
    let (xm, xt, shape) = if x.rank() == 0 {
        let (m, t) = flat(k, &x)?;
        (m, t, vec![1])
    } else {
        (x.name.clone(), x.ty.clone(), x.shape.clone())
    };
    let axes = if x.rank() == 0 {
        Vec::new()
    } else {
        reduced_axes(k, x.rank())?
    };
    let kept: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).collect();
    let group: usize = axes.iter().map(|&a| shape[a]).product();
    let (ym, yt) = flat(k, &y)?;

    let mut ivs: Vec<String> = vec![String::new(); shape.len()];
    let parallel = !kept.is_empty() && kept.iter().any(|&a| shape[a] > 1);
    if parallel {
        let p = par_open(k, &kept.iter().map(|&a| shape[a]).collect::<Vec<_>>());
        for (&a, iv) in kept.iter().zip(p) {
            ivs[a] = iv;
        }
    } else {
        for &a in &kept {
            ivs[a] = k.idx(0);
        }
    }
    let mut out_idx: Option<String> = None;
    for &a in &kept {
        out_idx = Some(match out_idx {
            None => ivs[a].clone(),
            Some(o) => mad(k, &o, shape[a], Some(&ivs[a])),
        });
    }
    let out_idx = out_idx.unwrap_or_else(|| k.idx(0));

    // One sequential nest over the reduced axes, combining into `start`.
    let nest = |k: &mut KernelCtx,
                ivs: &mut Vec<String>,
                start: &str,
                body: &dyn Fn(&mut KernelCtx, &str, &str) -> String|
     -> String {
        let mut cur = start.to_string();
        let mut results = Vec::new();
        for &a in &axes {
            let (lo, hi) = (k.idx(0), k.idx(shape[a] as i64));
            let (iv, args, res) = for_open(k, &lo, &hi, 1, &[(&cur, acc.ty)]);
            ivs[a] = iv;
            cur = args[0].clone();
            results.push(res[0].clone());
        }
        let idx = ivs.join(", ");
        let v = op(k, format!("memref.load {xm}[{idx}] : {xt}"));
        let v = if acc.float && is_half(d) {
            let e = crate::emit::kernel::elem(d).unwrap_or("f16");
            op(k, format!("arith.extf {v} : {e} to f32"))
        } else if !acc.float && d != DType::Bool && crate::emit::kernel::elem(d) != Ok("i64") {
            let e = crate::emit::kernel::elem(d).unwrap_or("i64");
            let ext = if acc.signed {
                "arith.extsi"
            } else {
                "arith.extui"
            };
            op(k, format!("{ext} {v} : {e} to i64"))
        } else {
            v
        };
        let mut next = body(k, &cur, &v);
        for r in results.into_iter().rev() {
            for_close(k, &[(&next, acc.ty)]);
            next = r;
        }
        next
    };

    let start = init(k, kind, d, &acc)?;
    let t = acc.ty;
    let folded = nest(k, &mut ivs, &start, &|k, a, v| combine(k, kind, a, v, &acc));
    let result = match kind {
        Kind::Mean if acc.float => {
            let n = fconst(k, group as f64, t);
            op(k, format!("arith.divf {folded}, {n} : {t}"))
        }
        Kind::Mean if group > 0 => {
            let n = iconst(k, group as i64, t);
            let div = if acc.signed {
                "arith.divsi"
            } else {
                "arith.divui"
            };
            op(k, format!("{div} {folded}, {n} : {t}"))
        }
        Kind::L2 => op(k, format!("math.sqrt {folded} : {t}")),
        Kind::LogSum => op(k, format!("math.log {folded} : {t}")),
        Kind::LogSumExp => {
            // Shift by the maximum when it is finite, like the reference;
            // otherwise the direct sum gives the expected inf / NaN.
            let ab = op(k, format!("math.absf {folded} : {t}"));
            let inf = fconst(k, f64::INFINITY, t);
            let finite = op(k, format!("arith.cmpf olt, {ab}, {inf} : {t}"));
            let zero = fconst(k, 0.0, t);
            let shift = op(k, format!("arith.select {finite}, {folded}, {zero} : {t}"));
            let z2 = fconst(k, 0.0, t);
            let sum = nest(k, &mut ivs, &z2, &|k, a, v| {
                let s = op(k, format!("arith.subf {v}, {shift} : {t}"));
                let e = op(k, format!("math.exp {s} : {t}"));
                op(k, format!("arith.addf {a}, {e} : {t}"))
            });
            let l = op(k, format!("math.log {sum} : {t}"));
            op(k, format!("arith.addf {shift}, {l} : {t}"))
        }
        _ => folded,
    };
    let result = if !acc.float && d != DType::Bool && crate::emit::kernel::elem(d) != Ok("i64") {
        let e = crate::emit::kernel::elem(d)?;
        op(k, format!("arith.trunci {result} : i64 to {e}"))
    } else {
        result
    };
    store(k, &result, &ym, &yt, &out_idx, d);
    if parallel {
        par_close(k);
    }
    Ok(())
}

fn lower_arg(k: &mut KernelCtx) -> Result<(), String> {
    let m = k.op.kind.mnemonic();
    let max = m == "arg_max";
    let x = k.operand(0)?.clone();
    let y = k.result(0).clone();
    let d = x.dtype;
    if !d.is_numeric() || !(d.is_float() || d.is_int()) {
        return Err(format!("tsr.{m} does not accept element type {d}"));
    }
    let _ = crate::emit::kernel::elem(d)?;
    let shape = if x.rank() == 0 {
        vec![1]
    } else {
        x.shape.clone()
    };
    let axis = norm_axis(k.op.int("axis")?, shape.len())?;
    let last = k.op.int("select_last_index")? != 0;
    let (outer, len, inner) = (
        shape[..axis].iter().product::<usize>(),
        shape[axis],
        shape[axis + 1..].iter().product::<usize>(),
    );
    if outer * inner == 0 {
        return Ok(());
    }
    if len == 0 {
        return Err(format!("tsr.{m} over an empty axis"));
    }
    let acc = acc_for(d);
    let (xm, xt) = flat(k, &x)?;
    let (ym, yt) = flat(k, &y)?;
    let p = par_open(k, &[outer, inner]);
    let b0 = mad(k, &p[0], len * inner, None);
    let base = op(k, format!("arith.addi {b0}, {} : index", p[1]));
    let first = load_acc(k, &xm, &xt, &base, d, &acc);
    let (lo, hi) = (k.idx(1), k.idx(len as i64));
    let c0 = k.idx(0);
    let t = acc.ty;
    let (j, a, r) = for_open(k, &lo, &hi, 1, &[(&first, t), (&c0, "index")]);
    let i = mad(k, &j, inner, Some(&base));
    let v = load_acc(k, &xm, &xt, &i, d, &acc);
    let take = if acc.float {
        // Ties keep the first index (or the last with select_last_index);
        // NaN wins, as in numpy.
        let pred = match (max, last) {
            (true, false) => "ogt",
            (true, true) => "oge",
            (false, false) => "olt",
            (false, true) => "ole",
        };
        let better = op(k, format!("arith.cmpf {pred}, {v}, {} : {t}", a[0]));
        let xnan = op(k, format!("arith.cmpf uno, {v}, {v} : {t}"));
        let nan_take = if last {
            xnan
        } else {
            let bnan = op(k, format!("arith.cmpf uno, {}, {} : {t}", a[0], a[0]));
            let tru = iconst(k, 1, "i1");
            let bok = op(k, format!("arith.xori {bnan}, {tru} : i1"));
            op(k, format!("arith.andi {xnan}, {bok} : i1"))
        };
        op(k, format!("arith.ori {better}, {nan_take} : i1"))
    } else {
        let s = if acc.signed { "s" } else { "u" };
        let pred = match (max, last) {
            (true, false) => format!("{s}gt"),
            (true, true) => format!("{s}ge"),
            (false, false) => format!("{s}lt"),
            (false, true) => format!("{s}le"),
        };
        op(k, format!("arith.cmpi {pred}, {v}, {} : {t}", a[0]))
    };
    let nv = op(k, format!("arith.select {take}, {v}, {} : {t}", a[0]));
    let ni = op(k, format!("arith.select {take}, {j}, {} : index", a[1]));
    for_close(k, &[(&nv, t), (&ni, "index")]);
    let o0 = mad(k, &p[0], inner, Some(&p[1]));
    let idx = op(k, format!("arith.index_cast {} : index to i64", r[1]));
    k.line(format!("memref.store {idx}, {ym}[{o0}] : {yt}"));
    par_close(k);
    Ok(())
}

pub const LOWERINGS: &[(&str, LowerFn)] = &[
    ("reduce_sum", lower_reduce),
    ("reduce_mean", lower_reduce),
    ("reduce_max", lower_reduce),
    ("reduce_min", lower_reduce),
    ("reduce_prod", lower_reduce),
    ("reduce_l1", lower_reduce),
    ("reduce_l2", lower_reduce),
    ("reduce_log_sum", lower_reduce),
    ("reduce_log_sum_exp", lower_reduce),
    ("reduce_sum_square", lower_reduce),
    ("arg_max", lower_arg),
    ("arg_min", lower_arg),
];
