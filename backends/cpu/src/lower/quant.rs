//! Quantization ops: quantize_linear / dequantize_linear (per tensor, per
//! axis, blocked), dynamic_quantize_linear, matmul_integer and the 2/4/8-bit
//! weight-only `ms.matmul_nbits` (weights dequantized on the fly).
//!
//! Integer results are bit-exact with the reference: the float steps run in
//! the same precision (f32) with the same rounding (half to even) and
//! saturation; integer sums wrap in i32 like the ONNX contract.

use crate::emit::kernel::{elem, Buf, KernelCtx};
use tessera_ir::{AttrAccess, DType};

use super::nn::{
    fconst, flat, for_close, for_open, for_range, is_half, mad, norm_axis, op, par_close, par_open,
};
use super::LowerFn;

/// Loads an element of any float or integer type as f32 (integers convert
/// with their signedness, rounding to nearest like `as f32`).
fn load_f32(k: &mut KernelCtx, mem: &str, ty: &str, idx: &str, d: DType) -> Result<String, String> {
    let v = op(k, format!("memref.load {mem}[{idx}] : {ty}"));
    let e = elem(d)?;
    Ok(match d {
        DType::F32 => v,
        DType::F16 | DType::BF16 => op(k, format!("arith.extf {v} : {e} to f32")),
        DType::F64 => op(k, format!("arith.truncf {v} : f64 to f32")),
        d if d.is_signed_int() => op(k, format!("arith.sitofp {v} : {e} to f32")),
        d if d.is_int() => op(k, format!("arith.uitofp {v} : {e} to f32")),
        d => return Err(format!("{d} cannot convert to f32 here")),
    })
}

/// Stores an f32 into a float buffer of type `d`.
fn store_f32(
    k: &mut KernelCtx,
    v: &str,
    mem: &str,
    ty: &str,
    idx: &str,
    d: DType,
) -> Result<(), String> {
    let e = elem(d)?;
    let v = match d {
        DType::F32 => v.to_string(),
        DType::F64 => op(k, format!("arith.extf {v} : f32 to f64")),
        d if is_half(d) => op(k, format!("arith.truncf {v} : f32 to {e}")),
        d => return Err(format!("cannot store f32 into {d}")),
    };
    k.line(format!("memref.store {v}, {mem}[{idx}] : {ty}"));
    Ok(())
}

/// Saturating conversion of an already rounded f32 into integer type `d`.
fn saturate_to(k: &mut KernelCtx, r: &str, d: DType) -> Result<String, String> {
    let (lo, hi) = d
        .int_range()
        .ok_or_else(|| format!("{d} is not an integer type"))?;
    let e = elem(d)?;
    let (l, h) = (fconst(k, lo as f64, "f32"), fconst(k, hi as f64, "f32"));
    let c = op(k, format!("arith.maximumf {r}, {l} : f32"));
    let c = op(k, format!("arith.minimumf {c}, {h} : f32"));
    // Through i32 (exact for every 8/16-bit value), then truncate.
    let conv = if d.is_signed_int() {
        "arith.fptosi"
    } else {
        "arith.fptoui"
    };
    let i = op(k, format!("{conv} {c} : f32 to i32"));
    Ok(if e == "i32" {
        i
    } else {
        op(k, format!("arith.trunci {i} : i32 to {e}"))
    })
}

// ---------------------------------------------------------------------------
// Quantization parameter layout

/// Where the parameter of element (outer o, axis index a, inner n) lives.
enum Layout {
    PerTensor,
    PerAxis,
    Blocked { block: usize, nblocks: usize },
}

/// (layout, outer, dim, inner) of `x` for a parameter of `p_shape`.
fn param_layout(
    x: &[usize],
    p: &[usize],
    axis: i64,
    block: i64,
) -> Result<(Layout, usize, usize, usize), String> {
    let total: usize = x.iter().product();
    let plen: usize = p.iter().product();
    if plen == 1 && (block == 0 || p.len() <= 1) {
        return Ok((Layout::PerTensor, 1, total, 1));
    }
    let ax = norm_axis(axis, x.len())?;
    let (outer, dim, inner) = (
        x[..ax].iter().product(),
        x[ax],
        x[ax + 1..].iter().product(),
    );
    if block == 0 {
        if p != [dim] {
            return Err(format!(
                "per-axis scale must be 1-D of length {dim}, got shape {p:?}"
            ));
        }
        return Ok((Layout::PerAxis, outer, dim, inner));
    }
    if block < 0 {
        return Err(format!("block_size must be non-negative, got {block}"));
    }
    let block = block as usize;
    let nblocks = dim.div_ceil(block);
    let ok = p.len() == x.len()
        && p.iter()
            .zip(x)
            .enumerate()
            .all(|(d, (&a, &b))| if d == ax { a == nblocks } else { a == b });
    if !ok {
        return Err(format!(
            "blocked scale for {x:?} (axis {axis}, block {block}) has shape {p:?}"
        ));
    }
    Ok((Layout::Blocked { block, nblocks }, outer, dim, inner))
}

/// Opens the (outer, dim, inner) parallel nest; returns (flat element index,
/// flat parameter index).
fn param_nest(
    k: &mut KernelCtx,
    layout: &Layout,
    outer: usize,
    dim: usize,
    inner: usize,
) -> (String, String) {
    let p = par_open(k, &[outer, dim, inner]);
    let oa = mad(k, &p[0], dim, Some(&p[1]));
    let i = mad(k, &oa, inner, Some(&p[2]));
    let pi = match layout {
        Layout::PerTensor => k.idx(0),
        Layout::PerAxis => p[1].clone(),
        Layout::Blocked { block, nblocks } => {
            let b = k.idx(*block as i64);
            let blk = op(k, format!("arith.divui {}, {b} : index", p[1]));
            let ob = mad(k, &p[0], *nblocks, Some(&blk));
            mad(k, &ob, inner, Some(&p[2]))
        }
    };
    (i, pi)
}

fn block_size(k: &KernelCtx) -> Result<i64, String> {
    if k.op.kind.def().attr_spec("block_size").is_some() {
        k.op.int("block_size")
    } else {
        Ok(0)
    }
}

/// The flat views and the opened (outer, dim, inner) nest of a
/// QuantizeLinear / DequantizeLinear kernel.
struct Nest {
    x: (String, String),
    scale: (String, String),
    zp: Option<(String, String)>,
    y: (String, String),
    /// Flat element index and flat parameter index.
    i: String,
    pi: String,
}

/// Checks the zero point (type `zp_dtype`, the scale's shape), lays out the
/// parameters along `axis` / `block_size` and opens the loop nest; `None`
/// when the result is empty (nothing to emit).
fn open_nest(
    k: &mut KernelCtx,
    name: &str,
    x: &Buf,
    scale: &Buf,
    zp: Option<&Buf>,
    zp_dtype: DType,
    y: &Buf,
) -> Result<Option<Nest>, String> {
    if let Some(z) = zp {
        if z.dtype != zp_dtype || (z.shape != scale.shape && !(z.len() == 1 && scale.len() == 1)) {
            return Err(format!(
                "tsr.{name}: zero point must be {zp_dtype} and match the scale shape"
            ));
        }
    }
    let (layout, outer, dim, inner) =
        param_layout(&x.shape, &scale.shape, k.op.int("axis")?, block_size(k)?)?;
    if y.is_empty() {
        return Ok(None);
    }
    let xf = flat(k, x)?;
    let sf = flat(k, scale)?;
    let zf = match zp {
        Some(z) => Some(flat(k, z)?),
        None => None,
    };
    let yf = flat(k, y)?;
    let (i, pi) = param_nest(k, &layout, outer, dim, inner);
    Ok(Some(Nest {
        x: xf,
        scale: sf,
        zp: zf,
        y: yf,
        i,
        pi,
    }))
}

fn lower_dequantize(k: &mut KernelCtx) -> Result<(), String> {
    let x = k.operand(0)?.clone();
    let scale = k.operand(1)?.clone();
    let zp = k.opt_operand(2).cloned();
    let y = k.result(0).clone();
    if !(x.dtype.is_int() && elem(x.dtype).is_ok()) {
        return Err(format!(
            "tsr.dequantize_linear of {} is not supported by the cpu target",
            x.dtype
        ));
    }
    if !scale.dtype.is_float() {
        return Err(format!(
            "tsr.dequantize_linear: scale must be float, got {}",
            scale.dtype
        ));
    }
    let Some(Nest {
        x: (xm, xt),
        scale: (sm, st),
        zp: zf,
        y: (ym, yt),
        i,
        pi,
    }) = open_nest(k, "dequantize_linear", &x, &scale, zp.as_ref(), x.dtype, &y)?
    else {
        return Ok(());
    };
    let xv = load_f32(k, &xm, &xt, &i, x.dtype)?;
    let dx = match &zf {
        Some((zm, zt)) => {
            let z = load_f32(k, zm, zt, &pi, x.dtype)?;
            op(k, format!("arith.subf {xv}, {z} : f32"))
        }
        None => xv,
    };
    let s = load_f32(k, &sm, &st, &pi, scale.dtype)?;
    let v = op(k, format!("arith.mulf {dx}, {s} : f32"));
    store_f32(k, &v, &ym, &yt, &i, y.dtype)?;
    par_close(k);
    Ok(())
}

fn lower_quantize(k: &mut KernelCtx) -> Result<(), String> {
    let x = k.operand(0)?.clone();
    let scale = k.operand(1)?.clone();
    let zp = k.opt_operand(2).cloned();
    let y = k.result(0).clone();
    let out = y.dtype;
    if !matches!(out, DType::U8 | DType::I8 | DType::U16 | DType::I16) {
        return Err(format!(
            "tsr.quantize_linear to {out} is not supported by the cpu target"
        ));
    }
    if k.op.has_attr("precision") {
        return Err(
            "tsr.quantize_linear: the precision attribute is not supported by the cpu target"
                .into(),
        );
    }
    // The division runs in the common type of x and scale (numpy's rule);
    // f64 is not supported here, half types round the quotient once.
    let compute = match (x.dtype, scale.dtype) {
        (a, b) if a == b && matches!(a, DType::F32 | DType::F16 | DType::BF16) => a,
        (a, b) if a.is_float() && b.is_float() && a != DType::F64 && b != DType::F64 => DType::F32,
        (a, b) => {
            return Err(format!(
                "tsr.quantize_linear of {a} by a {b} scale is not supported by the cpu target"
            ))
        }
    };
    let Some(Nest {
        x: (xm, xt),
        scale: (sm, st),
        zp: zf,
        y: (ym, yt),
        i,
        pi,
    }) = open_nest(k, "quantize_linear", &x, &scale, zp.as_ref(), out, &y)?
    else {
        return Ok(());
    };
    let xv = load_f32(k, &xm, &xt, &i, x.dtype)?;
    let s = load_f32(k, &sm, &st, &pi, scale.dtype)?;
    let mut q = op(k, format!("arith.divf {xv}, {s} : f32"));
    if is_half(compute) {
        let e = elem(compute)?;
        let t = op(k, format!("arith.truncf {q} : f32 to {e}"));
        q = op(k, format!("arith.extf {t} : {e} to f32"));
    }
    let r = op(k, format!("math.roundeven {q} : f32"));
    let z = match &zf {
        Some((zm, zt)) => load_f32(k, zm, zt, &pi, out)?,
        None => fconst(k, 0.0, "f32"),
    };
    let sum = op(k, format!("arith.addf {r}, {z} : f32"));
    // NaN quantizes to the zero point.
    let nan = op(k, format!("arith.cmpf uno, {r}, {r} : f32"));
    let v = op(k, format!("arith.select {nan}, {z}, {sum} : f32"));
    let q = saturate_to(k, &v, out)?;
    k.line(format!("memref.store {q}, {ym}[{i}] : {yt}"));
    par_close(k);
    Ok(())
}

fn lower_dynamic_quantize(k: &mut KernelCtx) -> Result<(), String> {
    let x = k.operand(0)?.clone();
    if x.dtype != DType::F32 {
        return Err(format!(
            "tsr.dynamic_quantize_linear takes f32 input, got {}",
            x.dtype
        ));
    }
    let (y, sc, zp) = (
        k.result(0).clone(),
        k.result(1).clone(),
        k.result(2).clone(),
    );
    let (xm, xt) = flat(k, &x)?;
    let (ym, yt) = flat(k, &y)?;
    let zero = fconst(k, 0.0, "f32");
    // The data range, extended to include 0 (min/max are exact in any order).
    let (lo, hi) = (k.idx(0), k.idx(x.len() as i64));
    let (j, a, r) = for_open(k, &lo, &hi, 1, &[(&zero, "f32"), (&zero, "f32")]);
    let v = op(k, format!("memref.load {xm}[{j}] : {xt}"));
    let mn = op(k, format!("arith.minnumf {}, {v} : f32", a[0]));
    let mx = op(k, format!("arith.maxnumf {}, {v} : f32", a[1]));
    for_close(k, &[(&mn, "f32"), (&mx, "f32")]);
    let (mn, mx) = (r[0].clone(), r[1].clone());
    let one = fconst(k, 1.0, "f32");
    let c255 = fconst(k, 255.0, "f32");
    let range = op(k, format!("arith.subf {mx}, {mn} : f32"));
    let q = op(k, format!("arith.divf {range}, {c255} : f32"));
    let flat_range = op(k, format!("arith.cmpf oeq, {mx}, {mn} : f32"));
    let scale = op(k, format!("arith.select {flat_range}, {one}, {q} : f32"));
    let t = op(k, format!("arith.divf {mn}, {scale} : f32"));
    let t = op(k, format!("arith.subf {zero}, {t} : f32"));
    let t = op(k, format!("arith.maximumf {t}, {zero} : f32"));
    let t = op(k, format!("arith.minimumf {t}, {c255} : f32"));
    let zpf = op(k, format!("math.roundeven {t} : f32"));
    k.line(format!("memref.store {scale}, {}[] : {}", sc.name, sc.ty));
    let zpi = saturate_to(k, &zpf, DType::U8)?;
    k.line(format!("memref.store {zpi}, {}[] : {}", zp.name, zp.ty));
    if x.is_empty() {
        return Ok(());
    }
    let p = par_open(k, &[x.len()]);
    let v = op(k, format!("memref.load {xm}[{}] : {xt}", p[0]));
    let d = op(k, format!("arith.divf {v}, {scale} : f32"));
    let r = op(k, format!("math.roundeven {d} : f32"));
    let s = op(k, format!("arith.addf {r}, {zpf} : f32"));
    let q = saturate_to(k, &s, DType::U8)?;
    k.line(format!("memref.store {q}, {ym}[{}] : {yt}", p[0]));
    par_close(k);
    Ok(())
}

// ---------------------------------------------------------------------------
// MatMulInteger

/// An 8-bit operand element widened to i32.
fn load_i32(k: &mut KernelCtx, mem: &str, ty: &str, idx: &str, d: DType) -> String {
    let v = op(k, format!("memref.load {mem}[{idx}] : {ty}"));
    let ext = if d.is_signed_int() {
        "arith.extsi"
    } else {
        "arith.extui"
    };
    op(k, format!("{ext} {v} : i8 to i32"))
}

fn lower_matmul_integer(k: &mut KernelCtx) -> Result<(), String> {
    let a = k.operand(0)?.clone();
    let b = k.operand(1)?.clone();
    let (za, zb) = (k.opt_operand(2).cloned(), k.opt_operand(3).cloned());
    let y = k.result(0).clone();
    for t in [&a, &b] {
        if !matches!(t.dtype, DType::U8 | DType::I8) {
            return Err(format!(
                "tsr.matmul_integer operands must be int8 or uint8, got {}",
                t.dtype
            ));
        }
    }
    if a.rank() < 2 || b.rank() < 2 {
        return Err(
            "tsr.matmul_integer with 1-D operands is not supported by the cpu target".into(),
        );
    }
    let (m, kk) = (a.shape[a.rank() - 2], a.shape[a.rank() - 1]);
    let n = b.shape[b.rank() - 1];
    let batch: usize = a.shape[..a.rank() - 2].iter().product();
    let b_batched = b.rank() > 2 && b.shape[..b.rank() - 2].iter().product::<usize>() > 1;
    if b_batched && (b.rank() != a.rank() || b.shape[..b.rank() - 2] != a.shape[..a.rank() - 2]) {
        return Err(format!(
            "tsr.matmul_integer: batched B {:?} must match A's batch dims {:?} on the cpu target",
            b.shape, a.shape
        ));
    }
    // Zero points: a scalar, one per row of A or one per column of B.
    let zp_ok = |z: &Option<Buf>, len: usize, t: DType| {
        z.as_ref()
            .is_none_or(|z| z.dtype == t && (z.len() == 1 || (z.rank() == 1 && z.len() == len)))
    };
    if !zp_ok(&za, m, a.dtype) || !zp_ok(&zb, n, b.dtype) {
        return Err("tsr.matmul_integer: zero points must be scalars, per row of A or per column of B on the cpu target".into());
    }
    if y.is_empty() {
        return Ok(());
    }
    let (am, at) = flat(k, &a)?;
    let (bm, bt) = flat(k, &b)?;
    let (ym, yt) = flat(k, &y)?;
    let zaf = match &za {
        Some(z) => Some((flat(k, z)?, z.len() > 1)),
        None => None,
    };
    let zbf = match &zb {
        Some(z) => Some((flat(k, z)?, z.len() > 1)),
        None => None,
    };
    let zero = "%mmi_zero";
    k.line(format!("{zero} = arith.constant 0 : i32"));
    let p = par_open(k, &[batch, m]);
    let row = mad(k, &p[0], m, Some(&p[1]));
    let arow = mad(k, &row, kk, None);
    let yrow = mad(k, &row, n, None);
    let bbase = if b_batched {
        mad(k, &p[0], kk * n, None)
    } else {
        k.idx(0)
    };
    let zav = match &zaf {
        Some(((zm, zt), per_row)) => {
            let zi = if *per_row { p[1].clone() } else { k.idx(0) };
            load_i32(k, zm, zt, &zi, a.dtype)
        }
        None => zero.to_string(),
    };
    // The output row accumulates over k; its inner loop over n is
    // contiguous in B and y, and integer sums are exact in any order.
    let c = for_range(k, n);
    let yi = op(k, format!("arith.addi {yrow}, {c} : index"));
    k.line(format!("memref.store {zero}, {ym}[{yi}] : {yt}"));
    for_close(k, &[]);
    let kv = for_range(k, kk);
    let ai = op(k, format!("arith.addi {arow}, {kv} : index"));
    let av = load_i32(k, &am, &at, &ai, a.dtype);
    let av = op(k, format!("arith.subi {av}, {zav} : i32"));
    let brow = mad(k, &kv, n, Some(&bbase));
    let c = for_range(k, n);
    let bi = op(k, format!("arith.addi {brow}, {c} : index"));
    let bv = load_i32(k, &bm, &bt, &bi, b.dtype);
    let bv = match &zbf {
        Some(((zm, zt), per_col)) => {
            let zi = if *per_col { c.clone() } else { k.idx(0) };
            let z = load_i32(k, zm, zt, &zi, b.dtype);
            op(k, format!("arith.subi {bv}, {z} : i32"))
        }
        None => bv,
    };
    let yi = op(k, format!("arith.addi {yrow}, {c} : index"));
    let prod = op(k, format!("arith.muli {av}, {bv} : i32"));
    let old = op(k, format!("memref.load {ym}[{yi}] : {yt}"));
    let sum = op(k, format!("arith.addi {old}, {prod} : i32"));
    k.line(format!("memref.store {sum}, {ym}[{yi}] : {yt}"));
    for_close(k, &[]);
    for_close(k, &[]);
    par_close(k);
    Ok(())
}

// ---------------------------------------------------------------------------
// MatMulNBits

fn lower_matmul_nbits(k: &mut KernelCtx) -> Result<(), String> {
    let a = k.operand(0)?.clone();
    let b = k.operand(1)?.clone();
    let scales = k.operand(2)?.clone();
    let zp = k.opt_operand(3).cloned();
    let bias = k.opt_operand(5).cloned();
    let y = k.result(0).clone();
    if k.opt_operand(4).is_some() {
        return Err("tsr.ms.matmul_nbits: g_idx is not supported by the cpu target".into());
    }
    if k.op.int("weight_prepacked")? != 0 {
        return Err("tsr.ms.matmul_nbits: prepacked weights have no defined layout".into());
    }
    if a.dtype != DType::F32 {
        return Err(format!(
            "tsr.ms.matmul_nbits on {} is not supported by the cpu target (f32)",
            a.dtype
        ));
    }
    let (kk, n, bits, block) = (
        k.op.int("K")? as usize,
        k.op.int("N")? as usize,
        k.op.int("bits")? as usize,
        k.op.int("block_size")? as usize,
    );
    if !matches!(bits, 2 | 4 | 8) || block < 16 || !block.is_power_of_two() {
        return Err(format!(
            "tsr.ms.matmul_nbits: bits {bits} / block_size {block} are invalid"
        ));
    }
    let kb = kk.div_ceil(block);
    let blob = block * bits / 8;
    if b.dtype != DType::U8
        || b.len() != n * kb * blob
        || scales.len() != n * kb
        || a.shape.last() != Some(&kk)
    {
        return Err(format!(
            "tsr.ms.matmul_nbits: B {:?} / scales {:?} / A {:?} do not match K={kk} N={n}",
            b.shape, scales.shape, a.shape
        ));
    }
    let zrow = (kb * bits).div_ceil(8);
    if let Some(z) = &zp {
        let ok = (z.dtype == DType::U8 && z.len() == n * zrow)
            || (z.dtype.is_float() && z.len() == n * kb);
        if !ok {
            return Err(format!(
                "tsr.ms.matmul_nbits: zero_points {} {:?} do not match",
                z.dtype, z.shape
            ));
        }
    }
    if let Some(bb) = &bias {
        if bb.len() != n {
            return Err(format!(
                "tsr.ms.matmul_nbits: bias has {} values for N = {n}",
                bb.len()
            ));
        }
    }
    let m = a.len() / kk.max(1);
    if y.is_empty() {
        return Ok(());
    }
    let (am, at) = flat(k, &a)?;
    let (bm, bt) = flat(k, &b)?;
    let (sm, st) = flat(k, &scales)?;
    let (ym, yt) = flat(k, &y)?;
    let zf = match &zp {
        Some(z) => Some(flat(k, z)?),
        None => None,
    };
    let biasf = match &bias {
        Some(bb) => Some(flat(k, bb)?),
        None => None,
    };
    let mask = "%nb_mask";
    k.line(format!(
        "{mask} = arith.constant {} : i8",
        (1u32 << bits) - 1
    ));
    let zero = fconst(k, 0.0, "f32");
    let default_zp = fconst(k, (1u32 << (bits - 1)) as f64, "f32");

    let p = par_open(k, &[n, m]);
    let (pn, pm) = (p[0].clone(), p[1].clone());
    let arow = mad(k, &pm, kk, None);
    let (c0, ckb) = (k.idx(0), k.idx(kb as i64));
    let (bi, acc_o, acc_r) = for_open(k, &c0, &ckb, 1, &[(&zero, "f32")]);
    let pidx = mad(k, &pn, kb, Some(&bi));
    let s = load_f32(k, &sm, &st, &pidx, scales.dtype)?;
    let z = match (&zf, &zp) {
        (Some((zm, zt)), Some(zb)) if zb.dtype == DType::U8 => {
            let bit = mad(k, &bi, bits, None);
            let c8 = k.idx(8);
            let byte = op(k, format!("arith.divui {bit}, {c8} : index"));
            let sh = op(k, format!("arith.remui {bit}, {c8} : index"));
            let zi = mad(k, &pn, zrow, Some(&byte));
            let raw = op(k, format!("memref.load {zm}[{zi}] : {zt}"));
            let sh = op(k, format!("arith.index_cast {sh} : index to i8"));
            let v = op(k, format!("arith.shrui {raw}, {sh} : i8"));
            let v = op(k, format!("arith.andi {v}, {mask} : i8"));
            op(k, format!("arith.uitofp {v} : i8 to f32"))
        }
        (Some((zm, zt)), Some(zb)) => load_f32(k, zm, zt, &pidx, zb.dtype)?,
        _ => default_zp.clone(),
    };
    let k0 = mad(k, &bi, block, None);
    let kmax = k.idx(kk as i64);
    let rem = op(k, format!("arith.subi {kmax}, {k0} : index"));
    let cb = k.idx(block as i64);
    let jn = op(k, format!("arith.minsi {rem}, {cb} : index"));
    let bbase = mad(k, &pidx, blob, None);
    let (j, acc_i, acc_jr) = for_open(k, &c0, &jn, 1, &[(&acc_o[0], "f32")]);
    let bit = mad(k, &j, bits, None);
    let c8 = k.idx(8);
    let byte = op(k, format!("arith.divui {bit}, {c8} : index"));
    let sh = op(k, format!("arith.remui {bit}, {c8} : index"));
    let bidx = op(k, format!("arith.addi {bbase}, {byte} : index"));
    let raw = op(k, format!("memref.load {bm}[{bidx}] : {bt}"));
    let sh = op(k, format!("arith.index_cast {sh} : index to i8"));
    let code = op(k, format!("arith.shrui {raw}, {sh} : i8"));
    let code = op(k, format!("arith.andi {code}, {mask} : i8"));
    let cf = op(k, format!("arith.uitofp {code} : i8 to f32"));
    let dq = op(k, format!("arith.subf {cf}, {z} : f32"));
    let w = op(k, format!("arith.mulf {dq}, {s} : f32"));
    let kidx = op(k, format!("arith.addi {k0}, {j} : index"));
    let ai = op(k, format!("arith.addi {arow}, {kidx} : index"));
    let av = op(k, format!("memref.load {am}[{ai}] : {at}"));
    let acc = op(k, format!("math.fma {av}, {w}, {} : f32", acc_i[0]));
    for_close(k, &[(&acc, "f32")]);
    for_close(k, &[(&acc_jr[0], "f32")]);
    let mut out = acc_r[0].clone();
    if let (Some((bmm, btt)), Some(bb)) = (&biasf, &bias) {
        let bv = load_f32(k, bmm, btt, &pn, bb.dtype)?;
        out = op(k, format!("arith.addf {out}, {bv} : f32"));
    }
    let yi = mad(k, &pm, n, Some(&pn));
    k.line(format!("memref.store {out}, {ym}[{yi}] : {yt}"));
    par_close(k);
    Ok(())
}

pub const LOWERINGS: &[(&str, LowerFn)] = &[
    ("dequantize_linear", lower_dequantize),
    ("quantize_linear", lower_quantize),
    ("dynamic_quantize_linear", lower_dynamic_quantize),
    ("matmul_integer", lower_matmul_integer),
    ("ms.matmul_nbits", lower_matmul_nbits),
];
