//! Transformer "nn" ops as hand-written loop nests: softmax / log_softmax,
//! layer and RMS normalization, rotary embedding and fused attention.
//!
//! Every kernel parallelizes (`scf.parallel`, hence OpenMP) only over
//! independent rows and keeps each row's reductions sequential in a fixed
//! order, so results do not depend on the thread count. Half types load
//! through f32 and round once on store, like the reference.
//!
//! Scratch buffers are allocated once per kernel, outside the parallel loop,
//! with one slice per parallel iteration: an allocation inside an
//! `scf.parallel` body makes `convert-scf-to-openmp` wrap the body in a
//! `memref.alloca_scope` that the later `convert-scf-to-cf` breaks.

use crate::emit::kernel::{Buf, KernelCtx};
use tessera_ir::ops::nn::attention::Dims as AttnDims;
use tessera_ir::{AttrAccess, DType};

use super::LowerFn;

// ---------------------------------------------------------------------------
// Text helpers shared by the nn, reduce and quant families.

/// The type a float kernel computes in: f64 for f64 data, else f32.
pub(super) fn compute_ty(d: DType) -> &'static str {
    if d == DType::F64 {
        "f64"
    } else {
        "f32"
    }
}

pub(super) fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16)
}

/// A float constant of MLIR type `ty` (f32 / f64 / f16 / bf16), written as its
/// bit pattern so every value (infinities, NaN) round-trips exactly.
pub(super) fn fconst(k: &mut KernelCtx, v: f64, ty: &str) -> String {
    let bits = match ty {
        "f64" => format!("0x{:016X}", v.to_bits()),
        "f16" => format!("0x{:04X}", half_bits(v, false)),
        "bf16" => format!("0x{:04X}", half_bits(v, true)),
        _ => format!("0x{:08X}", (v as f32).to_bits()),
    };
    let n = k.fresh("cf");
    k.line(format!("{n} = arith.constant {bits} : {ty}"));
    n
}

fn half_bits(v: f64, bf: bool) -> u16 {
    let t = tessera_ir::Tensor::from_f64(if bf { DType::BF16 } else { DType::F16 }, vec![1], &[v]);
    let b = t.to_bytes();
    u16::from_le_bytes([b[0], b[1]])
}

/// An integer constant of MLIR type `ty`.
pub(super) fn iconst(k: &mut KernelCtx, v: i64, ty: &str) -> String {
    let n = k.fresh("ci");
    k.line(format!("{n} = arith.constant {v} : {ty}"));
    n
}

/// Emits `%r = <rhs>` and returns `%r`.
pub(super) fn op(k: &mut KernelCtx, rhs: impl AsRef<str>) -> String {
    let n = k.fresh("v");
    k.line(format!("{n} = {}", rhs.as_ref()));
    n
}

/// A 1-D view of a buffer (row-major flattening; rank 0 becomes 1 element).
pub(super) fn flat(k: &mut KernelCtx, b: &Buf) -> Result<(String, String), String> {
    let ty = format!("memref<{}x{}>", b.len(), b.elem());
    match b.rank() {
        1 => Ok((b.name.clone(), ty)),
        0 => {
            let n = k.fresh("flat");
            k.line(format!(
                "{n} = memref.expand_shape {} [] output_shape [1] : {} into {ty}",
                b.name, b.ty
            ));
            Ok((n, ty))
        }
        r => {
            let n = k.fresh("flat");
            let dims: Vec<String> = (0..r).map(|d| d.to_string()).collect();
            k.line(format!(
                "{n} = memref.collapse_shape {} [[{}]] : {} into {ty}",
                b.name,
                dims.join(", "),
                b.ty
            ));
            Ok((n, ty))
        }
    }
}

/// `a * b + c` on index values, folding the trivial cases.
pub(super) fn mad(k: &mut KernelCtx, a: &str, b: usize, c: Option<&str>) -> String {
    let p = match b {
        0 => k.idx(0),
        1 => a.to_string(),
        _ => {
            let bb = k.idx(b as i64);
            op(k, format!("arith.muli {a}, {bb} : index"))
        }
    };
    match c {
        Some(c) => op(k, format!("arith.addi {p}, {c} : index")),
        None => p,
    }
}

/// Loads element `idx` of `mem` (element type of `d`) as the compute type.
pub(super) fn load(k: &mut KernelCtx, mem: &str, ty: &str, idx: &str, d: DType) -> String {
    let v = op(k, format!("memref.load {mem}[{idx}] : {ty}"));
    if is_half(d) {
        let e = if d == DType::F16 { "f16" } else { "bf16" };
        op(k, format!("arith.extf {v} : {e} to f32"))
    } else {
        v
    }
}

/// Stores a compute-type value into element `idx` of `mem`.
pub(super) fn store(k: &mut KernelCtx, v: &str, mem: &str, ty: &str, idx: &str, d: DType) {
    let v = if is_half(d) {
        let e = if d == DType::F16 { "f16" } else { "bf16" };
        op(k, format!("arith.truncf {v} : f32 to {e}"))
    } else {
        v.to_string()
    };
    k.line(format!("memref.store {v}, {mem}[{idx}] : {ty}"));
}

/// Opens `scf.parallel` over `0..ubs[i]` and returns the induction variables;
/// close with [`par_close`].
pub(super) fn par_open(k: &mut KernelCtx, ubs: &[usize]) -> Vec<String> {
    let ivs: Vec<String> = ubs.iter().map(|_| k.fresh("p")).collect();
    let zeros: Vec<String> = ubs.iter().map(|_| k.idx(0)).collect();
    let ones: Vec<String> = ubs.iter().map(|_| k.idx(1)).collect();
    let hs: Vec<String> = ubs.iter().map(|&u| k.idx(u as i64)).collect();
    k.line(format!(
        "scf.parallel ({}) = ({}) to ({}) step ({}) {{",
        ivs.join(", "),
        zeros.join(", "),
        hs.join(", "),
        ones.join(", ")
    ));
    ivs
}

pub(super) fn par_close(k: &mut KernelCtx) {
    k.line("scf.reduce");
    k.line("}");
}

/// Opens `scf.for %iv = lo to hi step step` carrying `iters` (initial value,
/// type). Returns (iv, iter arg names, result names). Close with
/// [`for_close`] yielding the next values.
pub(super) fn for_open(
    k: &mut KernelCtx,
    lo: &str,
    hi: &str,
    step: usize,
    iters: &[(&str, &str)],
) -> (String, Vec<String>, Vec<String>) {
    let iv = k.fresh("i");
    let st = k.idx(step as i64);
    if iters.is_empty() {
        k.line(format!("scf.for {iv} = {lo} to {hi} step {st} {{"));
        return (iv, vec![], vec![]);
    }
    let res = k.fresh("r");
    let args: Vec<String> = iters.iter().map(|_| k.fresh("a")).collect();
    let inits: Vec<String> = args
        .iter()
        .zip(iters)
        .map(|(a, (init, _))| format!("{a} = {init}"))
        .collect();
    let tys: Vec<&str> = iters.iter().map(|(_, t)| *t).collect();
    let results: Vec<String> = if iters.len() == 1 {
        k.line(format!(
            "{res} = scf.for {iv} = {lo} to {hi} step {st} iter_args({}) -> ({}) {{",
            inits.join(", "),
            tys.join(", ")
        ));
        vec![res]
    } else {
        k.line(format!(
            "{res}:{} = scf.for {iv} = {lo} to {hi} step {st} iter_args({}) -> ({}) {{",
            iters.len(),
            inits.join(", "),
            tys.join(", ")
        ));
        (0..iters.len()).map(|i| format!("{res}#{i}")).collect()
    };
    (iv, args, results)
}

pub(super) fn for_close(k: &mut KernelCtx, yields: &[(&str, &str)]) {
    if yields.is_empty() {
        k.line("}");
        return;
    }
    let v: Vec<&str> = yields.iter().map(|(v, _)| *v).collect();
    let t: Vec<&str> = yields.iter().map(|(_, t)| *t).collect();
    k.line(format!("scf.yield {} : {}", v.join(", "), t.join(", ")));
    k.line("}");
}

/// Loop `for iv in 0..n` with no carried values; returns iv.
pub(super) fn for_range(k: &mut KernelCtx, n: usize) -> String {
    let (lo, hi) = (k.idx(0), k.idx(n as i64));
    for_open(k, &lo, &hi, 1, &[]).0
}

pub(super) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

fn float_operand(k: &KernelCtx, i: usize, what: &str) -> Result<Buf, String> {
    let b = k.operand(i)?.clone();
    if !b.dtype.is_float() || !matches!(b.dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    {
        return Err(format!(
            "tsr.{}: {what} of type {} is not supported by the cpu target (f32, f64, f16, bf16)",
            k.op.kind.mnemonic(),
            b.dtype
        ));
    }
    Ok(b)
}

// ---------------------------------------------------------------------------
// Softmax / LogSoftmax

/// One lane of a softmax-like op: the lanes of `shape` along `axis` are
/// `outer x inner` rows of `len` elements `inner` apart.
struct Lanes {
    outer: usize,
    len: usize,
    inner: usize,
}

impl Lanes {
    fn new(shape: &[usize], axis: usize) -> Lanes {
        Lanes {
            outer: shape[..axis].iter().product(),
            len: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }
}

fn lower_softmax(k: &mut KernelCtx) -> Result<(), String> {
    let log = k.op.kind.mnemonic() == "log_softmax";
    let x = float_operand(k, 0, "input")?;
    let y = k.result(0).clone();
    if x.is_empty() {
        return Ok(());
    }
    let lanes = if x.rank() == 0 {
        Lanes {
            outer: 1,
            len: 1,
            inner: 1,
        }
    } else {
        Lanes::new(&x.shape, norm_axis(k.op.int("axis")?, x.rank())?)
    };
    let d = x.dtype;
    let ct = compute_ty(d);
    let (xm, xt) = flat(k, &x)?;
    let (ym, yt) = flat(k, &y)?;
    let ninf = fconst(k, f64::NEG_INFINITY, ct);
    let zero = fconst(k, 0.0, ct);
    let p = par_open(k, &[lanes.outer, lanes.inner]);
    let base0 = mad(k, &p[0], lanes.len * lanes.inner, None);
    let base = op(k, format!("arith.addi {base0}, {} : index", p[1]));
    let (lo, hi) = (k.idx(0), k.idx(lanes.len as i64));
    let at = |k: &mut KernelCtx, j: &str| -> String { mad(k, j, lanes.inner, Some(&base)) };

    // Pass 1: the lane maximum (NaN propagates, as in the reference).
    let (j, a, r) = for_open(k, &lo, &hi, 1, &[(&ninf, ct)]);
    let i = at(k, &j);
    let v = load(k, &xm, &xt, &i, d);
    let m = op(k, format!("arith.maximumf {}, {v} : {ct}", a[0]));
    for_close(k, &[(&m, ct)]);
    let max = r[0].clone();

    // Pass 2: sum of exp(x - max); softmax keeps the exponentials in y.
    let (j, a, r) = for_open(k, &lo, &hi, 1, &[(&zero, ct)]);
    let i = at(k, &j);
    let v = load(k, &xm, &xt, &i, d);
    let s = op(k, format!("arith.subf {v}, {max} : {ct}"));
    let e = op(k, format!("math.exp {s} : {ct}"));
    if !log && !is_half(d) {
        store(k, &e, &ym, &yt, &i, d);
    }
    let acc = op(k, format!("arith.addf {}, {e} : {ct}", a[0]));
    for_close(k, &[(&acc, ct)]);
    let sum = r[0].clone();

    // Pass 3: normalize.
    let (j, _, _) = for_open(k, &lo, &hi, 1, &[]);
    let i = at(k, &j);
    let out = if log {
        let lsum = op(k, format!("math.log {sum} : {ct}"));
        let v = load(k, &xm, &xt, &i, d);
        let s = op(k, format!("arith.subf {v}, {max} : {ct}"));
        op(k, format!("arith.subf {s}, {lsum} : {ct}"))
    } else if is_half(d) {
        // Half outputs cannot hold the unrounded exponentials: recompute.
        let v = load(k, &xm, &xt, &i, d);
        let s = op(k, format!("arith.subf {v}, {max} : {ct}"));
        let e = op(k, format!("math.exp {s} : {ct}"));
        op(k, format!("arith.divf {e}, {sum} : {ct}"))
    } else {
        let e = load(k, &ym, &yt, &i, d);
        op(k, format!("arith.divf {e}, {sum} : {ct}"))
    };
    store(k, &out, &ym, &yt, &i, d);
    for_close(k, &[]);
    par_close(k);
    Ok(())
}

// ---------------------------------------------------------------------------
// LayerNormalization / RMSNormalization

/// A scale or bias operand as a 1-D view over the normalized `cols`
/// elements, or a scalar broadcast: (memref, type, dtype, is_scalar).
fn norm_param(
    k: &mut KernelCtx,
    i: usize,
    x_shape: &[usize],
    axis: usize,
    what: &str,
) -> Result<Option<NormParam>, String> {
    let Some(p) = k.opt_operand(i).cloned() else {
        return Ok(None);
    };
    let tail = &x_shape[axis..];
    let trimmed: Vec<usize> = p.shape.iter().copied().skip_while(|&n| n == 1).collect();
    let tail_trimmed: Vec<usize> = tail.iter().copied().skip_while(|&n| n == 1).collect();
    let scalar = p.len() == 1;
    if !scalar && trimmed != tail_trimmed {
        return Err(format!(
            "tsr.{}: {what} of shape {:?} must cover the normalized dims {:?} of the input (other broadcasts are not supported by the cpu target)",
            k.op.kind.mnemonic(),
            p.shape,
            tail
        ));
    }
    if !p.dtype.is_float() {
        return Err(format!(
            "tsr.{}: {what} must be a float tensor",
            k.op.kind.mnemonic()
        ));
    }
    let (m, t) = flat(k, &p)?;
    Ok(Some((m, t, p.dtype, scalar)))
}

fn lower_norm(k: &mut KernelCtx) -> Result<(), String> {
    let rms = k.op.kind.mnemonic() == "rms_normalization";
    let x = float_operand(k, 0, "x")?;
    let d = x.dtype;
    let ct = compute_ty(d);
    let rank = x.rank().max(1);
    let axis = norm_axis(k.op.int("axis")?, rank)?;
    let shape = if x.rank() == 0 {
        vec![1]
    } else {
        x.shape.clone()
    };
    let cols: usize = shape[axis..].iter().product();
    let rows: usize = shape[..axis].iter().product();
    if rows * cols == 0 {
        return Ok(());
    }
    let eps = k.op.float("epsilon")?;
    let scale = norm_param(k, 1, &shape, axis, "scale")?
        .ok_or_else(|| format!("tsr.{}: scale is missing", k.op.kind.mnemonic()))?;
    let bias = if rms {
        None
    } else {
        norm_param(k, 2, &shape, axis, "bias")?
    };
    let (xm, xt) = flat(k, &x)?;
    let y = k.result(0).clone();
    let (ym, yt) = flat(k, &y)?;
    let stats: Vec<(String, String, DType)> = (1..k.results.len())
        .map(|i| k.result(i).clone())
        .collect::<Vec<_>>()
        .iter()
        .map(|b| flat(k, b).map(|(m, t)| (m, t, b.dtype)))
        .collect::<Result<_, _>>()?;
    for (_, _, sd) in &stats {
        if compute_ty(*sd) != ct && *sd != DType::F32 {
            return Err(format!(
                "tsr.layer_normalization: statistics of type {sd} are not supported"
            ));
        }
    }
    let one = fconst(k, 1.0, ct);
    let epsc = fconst(k, eps, ct);
    let n = fconst(k, cols as f64, ct);
    let f32_params = scale.2 == DType::F32 && bias.as_ref().is_none_or(|b| b.2 == DType::F32);
    let row = NormRow {
        x: (xm, xt),
        y: (ym, yt),
        d,
        cols,
        w: if d == DType::F32 && f32_params {
            norm_width(cols)
        } else {
            None
        },
        scale,
        bias,
    };
    let p = par_open(k, &[rows]);
    let base = mad(k, &p[0], cols, None);

    let (inv, mean) = if rms {
        let ss = row.reduce(k, &base, RowSum::Squares(None));
        let ms = op(k, format!("arith.divf {ss}, {n} : {ct}"));
        let t = op(k, format!("arith.addf {ms}, {epsc} : {ct}"));
        let sq = op(k, format!("math.sqrt {t} : {ct}"));
        (op(k, format!("arith.divf {one}, {sq} : {ct}")), None)
    } else {
        let sum = row.reduce(k, &base, RowSum::Plain);
        let mean = op(k, format!("arith.divf {sum}, {n} : {ct}"));
        let ss = row.reduce(k, &base, RowSum::Squares(Some(&mean)));
        let var = op(k, format!("arith.divf {ss}, {n} : {ct}"));
        let t = op(k, format!("arith.addf {var}, {epsc} : {ct}"));
        let sq = op(k, format!("math.sqrt {t} : {ct}"));
        (op(k, format!("arith.divf {one}, {sq} : {ct}")), Some(mean))
    };
    row.normalize(k, &base, mean.as_deref(), &inv);

    let row = p[0].clone();
    for ((m, t, sd), v) in stats.iter().zip([mean.clone().unwrap_or_default(), inv]) {
        let v = if compute_ty(*sd) == ct || ct == "f32" {
            v
        } else {
            op(k, format!("arith.truncf {v} : {ct} to f32"))
        };
        store(k, &v, m, t, &row, *sd);
    }
    par_close(k);
    Ok(())
}

/// Lanes per vector step of an f32 normalization row of `cols` elements:
/// the widest of 64/32/16 lanes that tiles the row (a wide vector splits
/// into independent register chains), else 16 with a scalar tail; None
/// (all scalar) for rows shorter than 16.
fn norm_width(cols: usize) -> Option<usize> {
    lane_width(cols)
        .filter(|&w| w >= 16)
        .or((cols >= 16).then_some(16))
}

/// What a normalization row reduces.
enum RowSum<'a> {
    /// `sum x`.
    Plain,
    /// `sum (x - c)^2`, or `sum x^2` without a center.
    Squares(Option<&'a str>),
}

/// A scale or bias parameter: (memref, type, dtype, is_scalar).
type NormParam = (String, String, DType, bool);

/// The rows of a layer/RMS normalization. With `w` set (f32 data and
/// parameters), the first `cols / w * w` elements of a row go `w` lanes at a
/// time and the rest one at a time; the lane accumulator is reduced before
/// the scalar tail continues it, so every sum has one fixed order.
struct NormRow {
    x: (String, String),
    y: (String, String),
    d: DType,
    cols: usize,
    w: Option<usize>,
    scale: NormParam,
    bias: Option<NormParam>,
}

impl NormRow {
    fn split(&self) -> usize {
        self.w.map_or(0, |w| self.cols / w * w)
    }

    fn vty(&self) -> String {
        format!("vector<{}xf32>", self.w.unwrap_or(1))
    }

    /// One term of `what` at element `v` (compute type `ty`), added to `acc`.
    fn term(
        k: &mut KernelCtx,
        what: &RowSum,
        v: &str,
        acc: &str,
        center: Option<&str>,
        ty: &str,
    ) -> String {
        match (what, center) {
            (RowSum::Plain, _) => op(k, format!("arith.addf {acc}, {v} : {ty}")),
            (RowSum::Squares(_), Some(c)) => {
                let c = op(k, format!("arith.subf {v}, {c} : {ty}"));
                op(k, format!("math.fma {c}, {c}, {acc} : {ty}"))
            }
            (RowSum::Squares(_), None) => op(k, format!("math.fma {v}, {v}, {acc} : {ty}")),
        }
    }

    /// The row sum `what` over the row starting at `base`.
    fn reduce(&self, k: &mut KernelCtx, base: &str, what: RowSum) -> String {
        let ct = compute_ty(self.d);
        let (xm, xt) = (&self.x.0, &self.x.1);
        let center = match what {
            RowSum::Squares(Some(c)) => Some(c.to_string()),
            _ => None,
        };
        let split = self.split();
        let mut acc = fconst(k, 0.0, ct);
        if split > 0 {
            let vt = &self.vty();
            let vc = center
                .as_ref()
                .map(|c| op(k, format!("vector.broadcast {c} : f32 to {vt}")));
            let vz = op(k, format!("arith.constant dense<0.0> : {vt}"));
            let (lo, hi) = (k.idx(0), k.idx(split as i64));
            let (j, a, r) = for_open(k, &lo, &hi, self.w.unwrap_or(1), &[(&vz, vt)]);
            let i = op(k, format!("arith.addi {base}, {j} : index"));
            let v = op(k, format!("vector.load {xm}[{i}] : {xt}, {vt}"));
            let next = Self::term(k, &what, &v, &a[0], vc.as_deref(), vt);
            for_close(k, &[(&next, vt)]);
            acc = op(
                k,
                format!("vector.reduction <add>, {} : {vt} into f32", r[0]),
            );
        }
        if split < self.cols {
            let (lo, hi) = (k.idx(split as i64), k.idx(self.cols as i64));
            let (j, a, r) = for_open(k, &lo, &hi, 1, &[(&acc, ct)]);
            let i = op(k, format!("arith.addi {base}, {j} : index"));
            let v = load(k, xm, xt, &i, self.d);
            let next = Self::term(k, &what, &v, &a[0], center.as_deref(), ct);
            for_close(k, &[(&next, ct)]);
            acc = r[0].clone();
        }
        acc
    }

    /// `y = (x - mean) * inv * scale + bias` over the row starting at `base`.
    fn normalize(&self, k: &mut KernelCtx, base: &str, mean: Option<&str>, inv: &str) {
        let ct = compute_ty(self.d);
        let split = self.split();
        if split > 0 {
            let vt = &self.vty();
            let bc =
                |k: &mut KernelCtx, x: &str| op(k, format!("vector.broadcast {x} : f32 to {vt}"));
            let vmean = mean.map(|m| bc(k, m));
            let vinv = bc(k, inv);
            let zero = k.idx(0);
            // Scalar parameters are loop-invariant broadcasts.
            let scalar_param = |k: &mut KernelCtx, p: &NormParam| -> Option<String> {
                p.3.then(|| {
                    let s = op(k, format!("memref.load {}[{zero}] : {}", p.0, p.1));
                    bc(k, &s)
                })
            };
            let vs = scalar_param(k, &self.scale);
            let vb = self.bias.as_ref().map(|b| scalar_param(k, b));
            let (lo, hi) = (k.idx(0), k.idx(split as i64));
            let (j, _, _) = for_open(k, &lo, &hi, self.w.unwrap_or(1), &[]);
            let i = op(k, format!("arith.addi {base}, {j} : index"));
            let param = |k: &mut KernelCtx, p: &NormParam, pre: &Option<String>| -> String {
                pre.clone()
                    .unwrap_or_else(|| op(k, format!("vector.load {}[{j}] : {}, {vt}", p.0, p.1)))
            };
            let v = op(
                k,
                format!("vector.load {}[{i}] : {}, {vt}", self.x.0, self.x.1),
            );
            let c = match &vmean {
                Some(m) => op(k, format!("arith.subf {v}, {m} : {vt}")),
                None => v,
            };
            let nrm = op(k, format!("arith.mulf {c}, {vinv} : {vt}"));
            let s = param(k, &self.scale, &vs);
            let mut out = op(k, format!("arith.mulf {nrm}, {s} : {vt}"));
            if let (Some(b), Some(vb)) = (&self.bias, &vb) {
                let b = param(k, b, vb);
                out = op(k, format!("arith.addf {out}, {b} : {vt}"));
            }
            k.line(format!(
                "vector.store {out}, {}[{i}] : {}, {vt}",
                self.y.0, self.y.1
            ));
            for_close(k, &[]);
        }
        if split < self.cols {
            let (lo, hi) = (k.idx(split as i64), k.idx(self.cols as i64));
            let (j, _, _) = for_open(k, &lo, &hi, 1, &[]);
            let i = op(k, format!("arith.addi {base}, {j} : index"));
            let v = load(k, &self.x.0, &self.x.1, &i, self.d);
            let c = match mean {
                Some(m) => op(k, format!("arith.subf {v}, {m} : {ct}")),
                None => v,
            };
            let nrm = op(k, format!("arith.mulf {c}, {inv} : {ct}"));
            let (sm, st, sd, sscalar) = &self.scale;
            let si = if *sscalar { k.idx(0) } else { j.clone() };
            let s = load_as(k, sm, st, &si, *sd, ct);
            let mut out = op(k, format!("arith.mulf {nrm}, {s} : {ct}"));
            if let Some((bm, bt, bd, bscalar)) = &self.bias {
                let bi = if *bscalar { k.idx(0) } else { j.clone() };
                let b = load_as(k, bm, bt, &bi, *bd, ct);
                out = op(k, format!("arith.addf {out}, {b} : {ct}"));
            }
            store(k, &out, &self.y.0, &self.y.1, &i, self.d);
            for_close(k, &[]);
        }
    }
}

/// Loads a float element of any float dtype as `ct`.
fn load_as(k: &mut KernelCtx, mem: &str, ty: &str, idx: &str, d: DType, ct: &str) -> String {
    let v = load(k, mem, ty, idx, d);
    let from = if is_half(d) { "f32" } else { compute_ty(d) };
    match (from, ct) {
        ("f32", "f64") => op(k, format!("arith.extf {v} : f32 to f64")),
        ("f64", "f32") => op(k, format!("arith.truncf {v} : f64 to f32")),
        _ => v,
    }
}

// ---------------------------------------------------------------------------
// RotaryEmbedding (ONNX 23)

fn lower_rotary(k: &mut KernelCtx) -> Result<(), String> {
    let x = float_operand(k, 0, "x")?;
    let (cos, sin) = (
        float_operand(k, 1, "cos_cache")?,
        float_operand(k, 2, "sin_cache")?,
    );
    let pos = k.opt_operand(3).cloned();
    let y = k.result(0).clone();
    let d = x.dtype;
    let ct = compute_ty(d);
    // (batch, seq, heads, head) and the flat strides of b, s, h.
    let (b, s, h, hd, strides) = match x.rank() {
        4 => {
            let (b, h, s, hd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
            (b, s, h, hd, [h * s * hd, hd, s * hd])
        }
        3 => {
            let heads =
                k.op.int("num_heads")
                    .map_err(|_| "tsr.rotary_embedding: 3-D input needs num_heads".to_string())?;
            let (b, s, hidden) = (x.shape[0], x.shape[1], x.shape[2]);
            if heads <= 0 || hidden % heads as usize != 0 {
                return Err(format!(
                    "tsr.rotary_embedding: hidden size {hidden} is not divisible by {heads} heads"
                ));
            }
            let hd = hidden / heads as usize;
            (b, s, heads as usize, hd, [s * hidden, hidden, hd])
        }
        r => {
            return Err(format!(
                "tsr.rotary_embedding: x must be 3-D or 4-D, got rank {r}"
            ))
        }
    };
    let rot = match k.op.int("rotary_embedding_dim")? {
        0 => hd,
        r if r > 0 && r as usize <= hd && r % 2 == 0 => r as usize,
        r => return Err(format!("tsr.rotary_embedding: rotary_embedding_dim {r} must be even and at most the head size {hd}")),
    };
    if rot % 2 != 0 {
        return Err(format!(
            "tsr.rotary_embedding: head size {hd} must be even to rotate"
        ));
    }
    let half = rot / 2;
    if cos.shape != sin.shape || cos.shape.last() != Some(&half) {
        return Err(format!(
            "tsr.rotary_embedding: cos/sin caches {:?}/{:?} must end in rotary_dim/2 = {half}",
            cos.shape, sin.shape
        ));
    }
    let rows = cos.len() / half.max(1);
    match &pos {
        Some(p) if cos.rank() != 2 || p.len() != b * s => {
            return Err(format!(
                "tsr.rotary_embedding: with position_ids {:?} the caches must be 2-D, got {:?}",
                p.shape, cos.shape
            ))
        }
        None if cos.shape != [b, s, half] => {
            return Err(format!(
                "tsr.rotary_embedding: without position_ids the caches must be [batch, seq, {half}], got {:?}",
                cos.shape
            ))
        }
        _ => {}
    }
    if x.is_empty() {
        return Ok(());
    }
    let interleaved = k.op.int("interleaved")? != 0;
    let (xm, xt) = flat(k, &x)?;
    let (ym, yt) = flat(k, &y)?;
    let (cm, ctt) = flat(k, &cos)?;
    let (sm, stt) = flat(k, &sin)?;
    let pv = match &pos {
        Some(p) => Some(flat(k, p)?),
        None => None,
    };
    let p = par_open(k, &[b, s, h]);
    let o0 = mad(k, &p[0], strides[0], None);
    let o1 = mad(k, &p[1], strides[1], Some(&o0));
    let base = mad(k, &p[2], strides[2], Some(&o1));
    let bs = mad(k, &p[0], s, Some(&p[1]));
    let row = match &pv {
        Some((pm, pt)) => {
            // Ids outside the cache fail the run, as in the reference;
            // clamping keeps the load in bounds while the kernel finishes.
            let id = op(k, format!("memref.load {pm}[{bs}] : {pt}"));
            let id = op(k, format!("arith.index_cast {id} : i64 to index"));
            let z = k.idx(0);
            let n = k.idx(rows as i64);
            let bad = op(k, format!("arith.cmpi uge, {id}, {n} : index"));
            k.fail_if(
                &bad,
                &format!("a position id is outside the cos/sin cache of {rows} rows"),
            );
            let last = k.idx(rows as i64 - 1);
            let id = op(k, format!("arith.maxsi {id}, {z} : index"));
            op(k, format!("arith.minsi {id}, {last} : index"))
        }
        None => bs,
    };
    let cbase = mad(k, &row, half, None);
    let i = for_range(k, half);
    let ci = op(k, format!("arith.addi {cbase}, {i} : index"));
    let c = load_as(k, &cm, &ctt, &ci, cos.dtype, ct);
    let sn = load_as(k, &sm, &stt, &ci, sin.dtype, ct);
    let (a, bb) = if interleaved {
        let a = mad(k, &i, 2, Some(&base));
        let one = k.idx(1);
        let bb = op(k, format!("arith.addi {a}, {one} : index"));
        (a, bb)
    } else {
        let a = op(k, format!("arith.addi {base}, {i} : index"));
        let hh = k.idx(half as i64);
        let bb = op(k, format!("arith.addi {a}, {hh} : index"));
        (a, bb)
    };
    let x1 = load(k, &xm, &xt, &a, d);
    let x2 = load(k, &xm, &xt, &bb, d);
    let t1 = op(k, format!("arith.mulf {x1}, {c} : {ct}"));
    let t2 = op(k, format!("arith.mulf {x2}, {sn} : {ct}"));
    let y1 = op(k, format!("arith.subf {t1}, {t2} : {ct}"));
    let t3 = op(k, format!("arith.mulf {x2}, {c} : {ct}"));
    let t4 = op(k, format!("arith.mulf {x1}, {sn} : {ct}"));
    let y2 = op(k, format!("arith.addf {t3}, {t4} : {ct}"));
    store(k, &y1, &ym, &yt, &a, d);
    store(k, &y2, &ym, &yt, &bb, d);
    for_close(k, &[]);
    if rot < hd {
        let (lo, hi) = (k.idx(rot as i64), k.idx(hd as i64));
        let (j, _, _) = for_open(k, &lo, &hi, 1, &[]);
        let e = op(k, format!("arith.addi {base}, {j} : index"));
        let v = op(k, format!("memref.load {xm}[{e}] : {xt}"));
        k.line(format!("memref.store {v}, {ym}[{e}] : {yt}"));
        for_close(k, &[]);
    }
    par_close(k);
    Ok(())
}

// ---------------------------------------------------------------------------
// Attention (ONNX 23/24): one fused kernel per (batch, query head)

/// Where rows of a [B, H, S, D] or packed [B, S, H*D] tensor start:
/// `b * batch + h * head + s * row`, each row `D` contiguous elements.
#[derive(Clone, Copy)]
struct RowLayout {
    batch: usize,
    head: usize,
    row: usize,
}

impl RowLayout {
    fn new(packed: bool, heads: usize, seq: usize, size: usize) -> RowLayout {
        if packed {
            RowLayout {
                batch: seq * heads * size,
                head: size,
                row: heads * size,
            }
        } else {
            RowLayout {
                batch: heads * seq * size,
                head: seq * size,
                row: size,
            }
        }
    }

    /// The flat offset of row 0 of (b, h).
    fn head_base(&self, k: &mut KernelCtx, b: &str, h: &str) -> String {
        let o = mad(k, b, self.batch, None);
        mad(k, h, self.head, Some(&o))
    }
}

/// The op's geometry, from the same definition the reference uses.
fn attention_dims(k: &KernelCtx, q: &Buf, kb: &Buf, v: &Buf) -> Result<AttnDims, String> {
    let shape = |i: usize| k.opt_operand(i).map(|b| b.shape.as_slice());
    tessera_ir::ops::nn::attention::attention_dims(
        k.op,
        &q.shape,
        &kb.shape,
        &v.shape,
        shape(4),
        shape(5),
    )
}

/// Copies `src` rows (layout `sl`, `seq` rows per head) into the [B, H, T, D]
/// cache `dst` at rows `at..at+seq`.
#[allow(clippy::too_many_arguments)]
fn copy_rows(
    k: &mut KernelCtx,
    (sm, st): (&str, &str),
    sl: RowLayout,
    (dm, dt): (&str, &str),
    dl: RowLayout,
    (batch, heads, seq, size): (usize, usize, usize, usize),
    at: usize,
) {
    if batch * heads * seq * size == 0 {
        return;
    }
    let p = par_open(k, &[batch, heads, seq]);
    let sb = sl.head_base(k, &p[0], &p[1]);
    let sr = mad(k, &p[2], sl.row, Some(&sb));
    let db = dl.head_base(k, &p[0], &p[1]);
    let atc = k.idx(at as i64);
    let t = op(k, format!("arith.addi {}, {atc} : index", p[2]));
    let dr = mad(k, &t, dl.row, Some(&db));
    let i = for_range(k, size);
    let si = op(k, format!("arith.addi {sr}, {i} : index"));
    let di = op(k, format!("arith.addi {dr}, {i} : index"));
    let v = op(k, format!("memref.load {sm}[{si}] : {st}"));
    k.line(format!("memref.store {v}, {dm}[{di}] : {dt}"));
    for_close(k, &[]);
    par_close(k);
}

fn lower_attention(k: &mut KernelCtx) -> Result<(), String> {
    let q = float_operand(k, 0, "Q")?;
    let kb = float_operand(k, 1, "K")?;
    let vb = float_operand(k, 2, "V")?;
    let dt = q.dtype;
    if kb.dtype != dt || vb.dtype != dt {
        return Err(
            "Q, K and V of different element types are not supported by the cpu target".into(),
        );
    }
    if k.opt_operand(6).is_some() {
        return Err("nonpad_kv_seqlen is not supported by the cpu target".into());
    }
    if k.results.len() > 3 {
        return Err("the qk_matmul_output result is not supported by the cpu target".into());
    }
    let d = attention_dims(k, &q, &kb, &vb)?;
    let total = d.total();
    let ct = compute_ty(dt);
    let scale = if k.op.has_attr("scale") {
        k.op.float("scale")?
    } else {
        1.0 / (d.head as f64).sqrt()
    };
    let softcap = k.op.float("softcap")?;
    let causal = k.op.int("is_causal")? != 0;
    let (left, right) = (
        k.op.int("left_window_size")?,
        k.op.int("right_window_size")?,
    );
    if left < -1 || right < -1 {
        return Err("left_window_size and right_window_size must be -1 or nonnegative".into());
    }
    let mask = k.opt_operand(3).cloned();
    let target = [d.batch, d.q_heads, d.q_seq, total];
    // Per target dim: the mask's stride, 0 where it broadcasts.
    let mut mstrides = [0usize; 4];
    let mut mask_kv = total;
    if let Some(m) = &mask {
        if m.rank() == 0 || m.rank() > 4 {
            return Err(format!("attn_mask must have rank 1 to 4, got {}", m.rank()));
        }
        if !(m.dtype == DType::Bool || m.dtype.is_float()) {
            return Err(format!("attn_mask must be bool or float, got {}", m.dtype));
        }
        let off = 4 - m.rank();
        let mut st = 1;
        for i in (0..m.rank()).rev() {
            let (dim, t, last) = (m.shape[i], target[off + i], off + i == 3);
            if dim != 1 && dim != t && !(last && dim < t) {
                return Err(format!(
                    "attn_mask shape {:?} does not broadcast to {:?}",
                    m.shape, target
                ));
            }
            mstrides[off + i] = if dim == 1 && !last { 0 } else { st };
            st *= dim;
        }
        mask_kv = *m.shape.last().unwrap_or(&1);
    }
    let y = k.result(0).clone();
    if y.is_empty() {
        return Ok(());
    }

    let (qm, qt) = flat(k, &q)?;
    let (km, kt) = flat(k, &kb)?;
    let (vm, vt) = flat(k, &vb)?;
    let (ym, yt) = flat(k, &y)?;
    let ql = RowLayout::new(d.packed, d.q_heads, d.q_seq, d.head);
    let yl = RowLayout::new(d.packed, d.q_heads, d.q_seq, d.v_head);
    let knl = RowLayout::new(d.packed, d.kv_heads, d.kv_seq, d.head);
    let vnl = RowLayout::new(d.packed, d.kv_heads, d.kv_seq, d.v_head);
    let kcl = RowLayout::new(false, d.kv_heads, total, d.head);
    let vcl = RowLayout::new(false, d.kv_heads, total, d.v_head);

    // The present K/V caches: the requested outputs, or scratch when the
    // past must be joined but the caller does not want the result.
    let mut freed = Vec::new();
    let mut caches = Vec::new();
    for (ri, pi, src, sl, cl, size) in [
        (1, 4, (&km, &kt), knl, kcl, d.head),
        (2, 5, (&vm, &vt), vnl, vcl, d.v_head),
    ] {
        let past = k.opt_operand(pi).cloned();
        let cache = if ri < k.results.len() {
            let r = k.result(ri).clone();
            Some(flat(k, &r)?)
        } else if past.is_some() {
            let ty = format!(
                "memref<{}x{}>",
                d.batch * d.kv_heads * total * size,
                q.elem()
            );
            let n = op(k, format!("memref.alloc() : {ty}"));
            freed.push((n.clone(), ty.clone()));
            Some((n, ty))
        } else {
            None
        };
        if let Some((cm, ctt)) = &cache {
            if let Some(p) = &past {
                let (pm, pt) = flat(k, p)?;
                let pl = RowLayout::new(false, d.kv_heads, d.past, size);
                copy_rows(
                    k,
                    (&pm, &pt),
                    pl,
                    (cm, ctt),
                    cl,
                    (d.batch, d.kv_heads, d.past, size),
                    0,
                );
            }
            copy_rows(
                k,
                (src.0, src.1),
                sl,
                (cm, ctt),
                cl,
                (d.batch, d.kv_heads, d.kv_seq, size),
                d.past,
            );
        }
        // Attend from the joined cache only when there is a past.
        caches.push(if past.is_some() {
            cache.map(|c| (c, cl))
        } else {
            None
        });
    }
    let (ksrc, ksl) = match caches[0].clone() {
        Some((c, l)) => (c, l),
        None => ((km.clone(), kt.clone()), knl),
    };
    let (vsrc, vsl) = match caches[1].clone() {
        Some((c, l)) => (c, l),
        None => ((vm.clone(), vt.clone()), vnl),
    };
    let mflat = match &mask {
        Some(m) => Some(flat(k, m)?),
        None => None,
    };

    let group = d.q_heads / d.kv_heads;
    let ninf = fconst(k, f64::NEG_INFINITY, ct);
    let zero = fconst(k, 0.0, ct);
    let one = fconst(k, 1.0, ct);
    // Like the reference, half types scale Q and K each by sqrt(scale)
    // rounded to their own precision, and round the probabilities to it.
    let scale = if is_half(dt) {
        let r = tessera_ir::Tensor::from_f64(dt, vec![1], &[scale.sqrt()]).get_f64(0);
        r * r
    } else {
        scale
    };
    let scale_c = fconst(k, scale, ct);
    let cap = (softcap > 0.0).then(|| fconst(k, softcap, ct));
    let vec8 = dt == DType::F32;
    let (vz, vt8) = ("%attn_vz", "vector<8xf32>");
    if vec8 {
        k.line(format!("{vz} = arith.constant dense<0.0> : {vt8}"));
    }

    // The vector path: every row attends all keys (no causal frontier,
    // window or short mask), f32, and any mask is a contiguous f32 row.
    let full_range = !causal && left < 0 && right < 0 && !(mask.is_some() && mask_kv < total);
    let vmask = match &mask {
        None => true,
        Some(m) => m.dtype == DType::F32 && mstrides[3] == 1,
    };
    let fast_w = (vec8 && full_range && vmask && cap.is_none() && d.head > 0)
        .then(|| lane_width(total).zip(lane_width(d.v_head)))
        .flatten();
    let rows = if fast_w.is_some() {
        row_block(d.q_seq)
    } else {
        1
    };
    let scores_ty = format!("memref<{}x{ct}>", d.batch * d.q_heads * rows * total.max(1));
    let scores = op(k, format!("memref.alloc() : {scores_ty}"));
    freed.push((scores.clone(), scores_ty.clone()));
    let kt_scratch = if fast_w.is_some() {
        let ty = format!("memref<{}xf32>", d.batch * d.q_heads * d.head * total);
        let n = op(k, format!("memref.alloc() : {ty}"));
        freed.push((n.clone(), ty.clone()));
        Some((n, ty))
    } else {
        None
    };

    let p = par_open(k, &[d.batch, d.q_heads]);
    let (pb, ph) = (p[0].clone(), p[1].clone());
    let g = k.idx(group as i64);
    let kvh = op(k, format!("arith.divui {ph}, {g} : index"));
    let qbase = ql.head_base(k, &pb, &ph);
    let ybase = yl.head_base(k, &pb, &ph);
    let kbase = ksl.head_base(k, &pb, &kvh);
    let vbase = vsl.head_base(k, &pb, &kvh);
    let bh = mad(k, &pb, d.q_heads, Some(&ph));
    let sbase = mad(k, &bh, rows * total, None);
    let mbase = if mflat.is_some() {
        let o = mad(k, &pb, mstrides[0], None);
        Some(mad(k, &ph, mstrides[1], Some(&o)))
    } else {
        None
    };

    // K^T of this head, [head][total], so 'w' keys' scores accumulate in
    // one vector while q[d] is broadcast.
    let kt = kt_scratch.as_ref().map(|(km_t, ktt)| {
        let tb = mad(k, &bh, d.head * total, None);
        let j = for_range(k, total);
        let krow = mad(k, &j, ksl.row, Some(&kbase));
        let dd = for_range(k, d.head);
        let ki = op(k, format!("arith.addi {krow}, {dd} : index"));
        let v = op(k, format!("memref.load {}[{ki}] : {}", ksrc.0, ksrc.1));
        let ti = mad(k, &dd, total, Some(&tb));
        let ti = op(k, format!("arith.addi {ti}, {j} : index"));
        k.line(format!("memref.store {v}, {km_t}[{ti}] : {ktt}"));
        for_close(k, &[]);
        for_close(k, &[]);
        (km_t.clone(), ktt.clone(), tb)
    });

    if let (Some((w, wv)), Some(kt)) = (fast_w, &kt) {
        let blk = VecBlock {
            rows,
            w,
            wv,
            total,
            head: d.head,
            v_head: d.v_head,
            q: (&qm, &qt),
            qbase: &qbase,
            q_row: ql.row,
            kt: (&kt.0, &kt.1),
            kt_base: &kt.2,
            v: (&vsrc.0, &vsrc.1),
            vbase: &vbase,
            v_row: vsl.row,
            y: (&ym, &yt),
            ybase: &ybase,
            y_row: yl.row,
            mask: mflat
                .as_ref()
                .zip(mbase.as_ref())
                .map(|((mm, mt), mb)| (mm.as_str(), mt.as_str(), mb.as_str(), mstrides[2])),
            scores: (&scores, &scores_ty),
            sbase: &sbase,
            scale: &scale_c,
        };
        vec_attention_blocks(k, &blk, d.q_seq);
        par_close(k);
        for (n, ty) in freed {
            k.line(format!("memref.dealloc {n} : {ty}"));
        }
        return Ok(());
    }

    let i = for_range(k, d.q_seq);
    let qrow = mad(k, &i, ql.row, Some(&qbase));
    let yrow = mad(k, &i, yl.row, Some(&ybase));
    let pastc = k.idx(d.past as i64);
    let pos = op(k, format!("arith.addi {i}, {pastc} : index"));
    // Keys outside [lo, hi) get probability 0 (causal frontier, window, a
    // mask shorter than the keys): they are never computed.
    let mut lo = k.idx(0);
    if left >= 0 {
        let l = k.idx(left);
        let s = op(k, format!("arith.subi {pos}, {l} : index"));
        lo = op(k, format!("arith.maxsi {s}, {lo} : index"));
    }
    let mut hi = k.idx(total as i64);
    let one_i = k.idx(1);
    if causal {
        let e = op(k, format!("arith.addi {pos}, {one_i} : index"));
        hi = op(k, format!("arith.minsi {hi}, {e} : index"));
    }
    if right >= 0 {
        let r = k.idx(right + 1);
        let e = op(k, format!("arith.addi {pos}, {r} : index"));
        hi = op(k, format!("arith.minsi {hi}, {e} : index"));
    }
    if mask.is_some() && mask_kv < total {
        let mk = k.idx(mask_kv as i64);
        hi = op(k, format!("arith.minsi {hi}, {mk} : index"));
    }
    let mrow = mbase.as_ref().map(|mb| mad(k, &i, mstrides[2], Some(mb)));

    let sum = {
        // Scores and their maximum.
        let (j, a, r) = for_open(k, &lo, &hi, 1, &[(&ninf, ct)]);
        let krow = mad(k, &j, ksl.row, Some(&kbase));
        let dot = dot_product(
            k,
            (&qm, &qt),
            &qrow,
            (&ksrc.0, &ksrc.1),
            &krow,
            d.head,
            dt,
            vec8,
        );
        let mut sc = op(k, format!("arith.mulf {dot}, {scale_c} : {ct}"));
        if let Some(c) = &cap {
            let t = op(k, format!("arith.divf {sc}, {c} : {ct}"));
            let t = op(k, format!("math.tanh {t} : {ct}"));
            sc = op(k, format!("arith.mulf {t}, {c} : {ct}"));
        }
        if let (Some((mm, mt)), Some(mr), Some(m)) = (&mflat, &mrow, &mask) {
            let mi = mad(k, &j, mstrides[3], Some(mr));
            if m.dtype == DType::Bool {
                let b = op(k, format!("memref.load {mm}[{mi}] : {mt}"));
                sc = op(k, format!("arith.select {b}, {sc}, {ninf} : {ct}"));
            } else {
                let b = load_as(k, mm, mt, &mi, m.dtype, ct);
                sc = op(k, format!("arith.addf {sc}, {b} : {ct}"));
            }
        }
        let si = op(k, format!("arith.addi {sbase}, {j} : index"));
        k.line(format!("memref.store {sc}, {scores}[{si}] : {scores_ty}"));
        let m = op(k, format!("arith.maxnumf {}, {sc} : {ct}", a[0]));
        for_close(k, &[(&m, ct)]);
        // A row with every key masked attends nothing: zeros, as the reference.
        let none = op(k, format!("arith.cmpf oeq, {}, {ninf} : {ct}", r[0]));
        let max = op(k, format!("arith.select {none}, {zero}, {} : {ct}", r[0]));

        let (j, a, r) = for_open(k, &lo, &hi, 1, &[(&zero, ct)]);
        let si = op(k, format!("arith.addi {sbase}, {j} : index"));
        let s = op(k, format!("memref.load {scores}[{si}] : {scores_ty}"));
        let t = op(k, format!("arith.subf {s}, {max} : {ct}"));
        let e = op(k, format!("math.exp {t} : {ct}"));
        k.line(format!("memref.store {e}, {scores}[{si}] : {scores_ty}"));
        let acc = op(k, format!("arith.addf {}, {e} : {ct}", a[0]));
        for_close(k, &[(&acc, ct)]);
        r[0].clone()
    };
    let empty = op(k, format!("arith.cmpf oeq, {sum}, {zero} : {ct}"));
    let recip = op(k, format!("arith.divf {one}, {sum} : {ct}"));
    let mut inv = op(k, format!("arith.select {empty}, {zero}, {recip} : {ct}"));
    if is_half(dt) {
        let e = crate::emit::kernel::elem(dt)?;
        let (j, _, _) = for_open(k, &lo, &hi, 1, &[]);
        let si = op(k, format!("arith.addi {sbase}, {j} : index"));
        let s = op(k, format!("memref.load {scores}[{si}] : {scores_ty}"));
        let pr = op(k, format!("arith.mulf {s}, {inv} : {ct}"));
        let h = op(k, format!("arith.truncf {pr} : f32 to {e}"));
        let pr = op(k, format!("arith.extf {h} : {e} to f32"));
        k.line(format!("memref.store {pr}, {scores}[{si}] : {scores_ty}"));
        for_close(k, &[]);
        inv = one.clone();
    }

    // y = (sum_j e_j v_j) / sum, one chunk of the head at a time; wide
    // chunks give the FMA units independent accumulator chains.
    if let Some(w) = vec8.then(|| lane_width(d.v_head)).flatten() {
        let vt8 = &format!("vector<{w}xf32>");
        let vz = &op(k, format!("arith.constant dense<0.0> : {vt8}"));
        let (c0, cv) = (k.idx(0), k.idx(d.v_head as i64));
        let (dc, _, _) = for_open(k, &c0, &cv, w, &[]);
        let (j, a, r) = for_open(k, &lo, &hi, 1, &[(vz, vt8)]);
        let si = op(k, format!("arith.addi {sbase}, {j} : index"));
        let s = op(k, format!("memref.load {scores}[{si}] : {scores_ty}"));
        let sv = op(k, format!("vector.broadcast {s} : f32 to {vt8}"));
        let vr = mad(k, &j, vsl.row, Some(&vbase));
        let vi = op(k, format!("arith.addi {vr}, {dc} : index"));
        let vv = op(
            k,
            format!("vector.load {}[{vi}] : {}, {vt8}", vsrc.0, vsrc.1),
        );
        let acc = op(k, format!("vector.fma {sv}, {vv}, {} : {vt8}", a[0]));
        for_close(k, &[(&acc, vt8)]);
        let invv = op(k, format!("vector.broadcast {inv} : f32 to {vt8}"));
        let out = op(k, format!("arith.mulf {}, {invv} : {vt8}", r[0]));
        let yi = op(k, format!("arith.addi {yrow}, {dc} : index"));
        k.line(format!("vector.store {out}, {ym}[{yi}] : {yt}, {vt8}"));
        for_close(k, &[]);
    } else {
        let c = for_range(k, d.v_head);
        let (j, a, r) = for_open(k, &lo, &hi, 1, &[(&zero, ct)]);
        let si = op(k, format!("arith.addi {sbase}, {j} : index"));
        let s = op(k, format!("memref.load {scores}[{si}] : {scores_ty}"));
        let vr = mad(k, &j, vsl.row, Some(&vbase));
        let vi = op(k, format!("arith.addi {vr}, {c} : index"));
        let vv = load(k, &vsrc.0, &vsrc.1, &vi, dt);
        let acc = op(k, format!("math.fma {s}, {vv}, {} : {ct}", a[0]));
        for_close(k, &[(&acc, ct)]);
        let out = op(k, format!("arith.mulf {}, {inv} : {ct}", r[0]));
        let yi = op(k, format!("arith.addi {yrow}, {c} : index"));
        store(k, &out, &ym, &yt, &yi, dt);
        for_close(k, &[]);
    }
    for_close(k, &[]);
    par_close(k);
    for (n, ty) in freed {
        k.line(format!("memref.dealloc {n} : {ty}"));
    }
    Ok(())
}

/// The widest vector (64, 32, 16 or 8 lanes) that tiles `n` f32 elements.
fn lane_width(n: usize) -> Option<usize> {
    [64, 32, 16, 8]
        .into_iter()
        .find(|&w| n > 0 && n.is_multiple_of(w))
}

/// Query rows per block of the vector attention path: each K^T and V
/// vector loaded is used by this many rows (4 rows x 64 keys = 16 zmm
/// accumulators), halving the loads per FMA against one row at a time.
fn row_block(q_seq: usize) -> usize {
    [4, 2, 1]
        .into_iter()
        .find(|&r| q_seq.is_multiple_of(r))
        .unwrap_or(1)
}

/// The vector attention path of one (batch, head): f32, every row attends
/// every key, any mask an additive f32 row.
struct VecBlock<'a> {
    /// Query rows per block (divides the query length).
    rows: usize,
    /// Keys per score vector (divides `total`), value lanes per output
    /// vector (divides `v_head`).
    w: usize,
    wv: usize,
    total: usize,
    head: usize,
    v_head: usize,
    q: (&'a str, &'a str),
    qbase: &'a str,
    q_row: usize,
    /// K^T of the head, `[head][total]`, starting at `kt_base`.
    kt: (&'a str, &'a str),
    kt_base: &'a str,
    v: (&'a str, &'a str),
    vbase: &'a str,
    v_row: usize,
    y: (&'a str, &'a str),
    ybase: &'a str,
    y_row: usize,
    /// An additive f32 mask (memref, type, head start, query-row stride),
    /// contiguous along the keys.
    mask: Option<(&'a str, &'a str, &'a str, usize)>,
    /// `rows` score rows of `total` per (batch, head), from `sbase`.
    scores: (&'a str, &'a str),
    sbase: &'a str,
    scale: &'a str,
}

/// Every query row of the head, `rows` at a time: the scores of the block
/// (one K^T vector load feeds every row), each row's softmax, then the
/// probabilities times V (one V vector load feeds every row). Each element
/// is summed in the same order as one row at a time would (over the head
/// dim, then over the keys, sequentially per lane; the max and the sum
/// reduce `w` lanes in a fixed order), so results do not depend on the
/// block size or on threads.
fn vec_attention_blocks(k: &mut KernelCtx, b: &VecBlock, q_seq: usize) {
    let r_n = b.rows;
    let vt = format!("vector<{}xf32>", b.w);
    let vty = vt.as_str();
    let (sm, st) = b.scores;
    let bc =
        |k: &mut KernelCtx, x: &str, t: &str| op(k, format!("vector.broadcast {x} : f32 to {t}"));
    let zero = fconst(k, 0.0, "f32");
    let one = fconst(k, 1.0, "f32");
    let vzero = bc(k, &zero, vty);
    let ninf = fconst(k, f64::NEG_INFINITY, "f32");
    let vninf = bc(k, &ninf, vty);
    let vscale = bc(k, b.scale, vty);
    let (c0, ctot, chead) = (k.idx(0), k.idx(b.total as i64), k.idx(b.head as i64));
    let cq = k.idx(q_seq as i64);

    let (ib, _, _) = for_open(k, &c0, &cq, r_n, &[]);
    let rows: Vec<(String, String, String, Option<String>)> = (0..r_n)
        .map(|r| {
            let i = k.fresh("row");
            let rc = k.idx(r as i64);
            k.line(format!("{i} = arith.addi {ib}, {rc} : index"));
            let qrow = mad(k, &i, b.q_row, Some(b.qbase));
            let yrow = mad(k, &i, b.y_row, Some(b.ybase));
            let srow = mad(k, &rc, b.total, Some(b.sbase));
            let mrow = b.mask.map(|(_, _, mb, ms)| mad(k, &i, ms, Some(mb)));
            (qrow, yrow, srow, mrow)
        })
        .collect();

    // Scores of the block and each row's running maximum.
    let maxes: Vec<(&str, &str)> = (0..r_n).map(|_| (vninf.as_str(), vty)).collect();
    let (jb, mx, mx_out) = for_open(k, &c0, &ctot, b.w, &maxes);
    let accs: Vec<(&str, &str)> = (0..r_n).map(|_| (vzero.as_str(), vty)).collect();
    let (dd, acc, dots) = for_open(k, &c0, &chead, 1, &accs);
    let ti = mad(k, &dd, b.total, Some(b.kt_base));
    let ti = op(k, format!("arith.addi {ti}, {jb} : index"));
    let kv = op(
        k,
        format!("vector.load {}[{ti}] : {}, {vty}", b.kt.0, b.kt.1),
    );
    let mut next = Vec::new();
    for (r, (qrow, ..)) in rows.iter().enumerate() {
        let qi = op(k, format!("arith.addi {qrow}, {dd} : index"));
        let qv = op(k, format!("memref.load {}[{qi}] : {}", b.q.0, b.q.1));
        let qb = bc(k, &qv, vty);
        next.push(op(k, format!("vector.fma {qb}, {kv}, {} : {vty}", acc[r])));
    }
    let yields: Vec<(&str, &str)> = next.iter().map(|n| (n.as_str(), vty)).collect();
    for_close(k, &yields);
    let mut new_max = Vec::new();
    for (r, (_, _, srow, mrow)) in rows.iter().enumerate() {
        let mut sc = op(k, format!("arith.mulf {}, {vscale} : {vty}", dots[r]));
        if let (Some((mm, mt, _, _)), Some(mr)) = (b.mask, mrow) {
            let mi = op(k, format!("arith.addi {mr}, {jb} : index"));
            let mv = op(k, format!("vector.load {mm}[{mi}] : {mt}, {vty}"));
            sc = op(k, format!("arith.addf {sc}, {mv} : {vty}"));
        }
        let si = op(k, format!("arith.addi {srow}, {jb} : index"));
        k.line(format!("vector.store {sc}, {sm}[{si}] : {st}, {vty}"));
        new_max.push(op(k, format!("arith.maxnumf {}, {sc} : {vty}", mx[r])));
    }
    let yields: Vec<(&str, &str)> = new_max.iter().map(|n| (n.as_str(), vty)).collect();
    for_close(k, &yields);

    // Each row: exp(s - max) in place, the sum, its reciprocal.
    let mut invs = Vec::new();
    for (r, (_, _, srow, _)) in rows.iter().enumerate() {
        let rmax = op(
            k,
            format!("vector.reduction <maxnumf>, {} : {vty} into f32", mx_out[r]),
        );
        // A row with every key masked attends nothing: zeros, as the reference.
        let none = op(k, format!("arith.cmpf oeq, {rmax}, {ninf} : f32"));
        let max = op(k, format!("arith.select {none}, {zero}, {rmax} : f32"));
        let vmax = bc(k, &max, vty);
        let (jb, a, sum) = for_open(k, &c0, &ctot, b.w, &[(&vzero, vty)]);
        let si = op(k, format!("arith.addi {srow}, {jb} : index"));
        let s = op(k, format!("vector.load {sm}[{si}] : {st}, {vty}"));
        let t = op(k, format!("arith.subf {s}, {vmax} : {vty}"));
        let e = vec_exp(k, &t, b.w);
        k.line(format!("vector.store {e}, {sm}[{si}] : {st}, {vty}"));
        let acc = op(k, format!("arith.addf {}, {e} : {vty}", a[0]));
        for_close(k, &[(&acc, vty)]);
        let sum = op(
            k,
            format!("vector.reduction <add>, {} : {vty} into f32", sum[0]),
        );
        let empty = op(k, format!("arith.cmpf oeq, {sum}, {zero} : f32"));
        let recip = op(k, format!("arith.divf {one}, {sum} : f32"));
        invs.push(op(
            k,
            format!("arith.select {empty}, {zero}, {recip} : f32"),
        ));
    }

    // y = (sum_j e_j v_j) / sum, `wv` value lanes at a time.
    let ovt = format!("vector<{}xf32>", b.wv);
    let ovt = ovt.as_str();
    let ovz = bc(k, &zero, ovt);
    let cv = k.idx(b.v_head as i64);
    let (dc, _, _) = for_open(k, &c0, &cv, b.wv, &[]);
    let accs: Vec<(&str, &str)> = (0..r_n).map(|_| (ovz.as_str(), ovt)).collect();
    let (j, acc, outs) = for_open(k, &c0, &ctot, 1, &accs);
    let vr = mad(k, &j, b.v_row, Some(b.vbase));
    let vi = op(k, format!("arith.addi {vr}, {dc} : index"));
    let vv = op(k, format!("vector.load {}[{vi}] : {}, {ovt}", b.v.0, b.v.1));
    let mut next = Vec::new();
    for (r, (_, _, srow, _)) in rows.iter().enumerate() {
        let si = op(k, format!("arith.addi {srow}, {j} : index"));
        let s = op(k, format!("memref.load {sm}[{si}] : {st}"));
        let sv = bc(k, &s, ovt);
        next.push(op(k, format!("vector.fma {sv}, {vv}, {} : {ovt}", acc[r])));
    }
    let yields: Vec<(&str, &str)> = next.iter().map(|n| (n.as_str(), ovt)).collect();
    for_close(k, &yields);
    for (r, (_, yrow, _, _)) in rows.iter().enumerate() {
        let invv = bc(k, &invs[r], ovt);
        let out = op(k, format!("arith.mulf {}, {invv} : {ovt}", outs[r]));
        let yi = op(k, format!("arith.addi {yrow}, {dc} : index"));
        k.line(format!(
            "vector.store {out}, {}[{yi}] : {}, {ovt}",
            b.y.0, b.y.1
        ));
    }
    for_close(k, &[]);
    for_close(k, &[]);
}

/// `exp(x)` on `vector<w x f32>` without libm: Cephes' expf (range
/// reduction by ln 2 in two parts, degree-5 polynomial, exponent by bit
/// construction), within about 1 ulp. Inputs below ln(FLT_MIN) give 0,
/// which keeps -inf (masked keys) exact.
fn vec_exp(k: &mut KernelCtx, x: &str, w: usize) -> String {
    let vt = format!("vector<{w}xf32>");
    let it = format!("vector<{w}xi32>");
    let c = |k: &mut KernelCtx, v: f64| {
        let s = fconst(k, v, "f32");
        op(k, format!("vector.broadcast {s} : f32 to {vt}"))
    };
    let (lo, hi) = (c(k, -87.336_544_750_553_1), c(k, 88.376_262_664_794_9));
    let xc = op(k, format!("arith.minnumf {x}, {hi} : {vt}"));
    let xc = op(k, format!("arith.maxnumf {xc}, {lo} : {vt}"));
    let (log2e, half) = (c(k, std::f64::consts::LOG2_E), c(k, 0.5));
    let n = op(k, format!("math.fma {xc}, {log2e}, {half} : {vt}"));
    let n = op(k, format!("math.floor {n} : {vt}"));
    let (l2hi, l2lo) = (c(k, -0.693_359_375), c(k, 2.121_944_4e-4));
    let r = op(k, format!("math.fma {n}, {l2hi}, {xc} : {vt}"));
    let r = op(k, format!("math.fma {n}, {l2lo}, {r} : {vt}"));
    let coeffs = [
        1.987_569_150_0e-4,
        1.398_199_950_7e-3,
        8.333_451_907_3e-3,
        4.166_579_589_4e-2,
        1.666_666_545_9e-1,
        5.000_000_120_1e-1,
    ];
    let mut p = c(k, coeffs[0]);
    for &cf in &coeffs[1..] {
        let cv = c(k, cf);
        p = op(k, format!("math.fma {p}, {r}, {cv} : {vt}"));
    }
    let r2 = op(k, format!("arith.mulf {r}, {r} : {vt}"));
    let y = op(k, format!("math.fma {p}, {r2}, {r} : {vt}"));
    let one = c(k, 1.0);
    let y = op(k, format!("arith.addf {y}, {one} : {vt}"));
    let ni = op(k, format!("arith.fptosi {n} : {vt} to {it}"));
    let bias = op(k, format!("arith.constant dense<127> : {it}"));
    let sh = op(k, format!("arith.constant dense<23> : {it}"));
    let ni = op(k, format!("arith.addi {ni}, {bias} : {it}"));
    let ni = op(k, format!("arith.shli {ni}, {sh} : {it}"));
    let pw = op(k, format!("arith.bitcast {ni} : {it} to {vt}"));
    let res = op(k, format!("arith.mulf {y}, {pw} : {vt}"));
    let under = op(k, format!("arith.cmpf olt, {x}, {lo} : {vt}"));
    let zero = op(k, format!("arith.constant dense<0.0> : {vt}"));
    let mt = format!("vector<{w}xi1>");
    op(
        k,
        format!("arith.select {under}, {zero}, {res} : {mt}, {vt}"),
    )
}

/// `sum_d a[ar + d] * b[br + d]` over `n` elements, in a fixed order:
/// eight lanes (f32 with `n` a multiple of 8) then a lane reduction, or
/// sequentially.
#[allow(clippy::too_many_arguments)]
fn dot_product(
    k: &mut KernelCtx,
    (am, at): (&str, &str),
    ar: &str,
    (bm, bt): (&str, &str),
    br: &str,
    n: usize,
    d: DType,
    vec8: bool,
) -> String {
    let ct = compute_ty(d);
    let (c0, cn) = (k.idx(0), k.idx(n as i64));
    if vec8 && n.is_multiple_of(8) && n > 0 {
        let vt = "vector<8xf32>";
        let (i, a, r) = for_open(k, &c0, &cn, 8, &[("%attn_vz", vt)]);
        let ai = op(k, format!("arith.addi {ar}, {i} : index"));
        let bi = op(k, format!("arith.addi {br}, {i} : index"));
        let x = op(k, format!("vector.load {am}[{ai}] : {at}, {vt}"));
        let y = op(k, format!("vector.load {bm}[{bi}] : {bt}, {vt}"));
        let acc = op(k, format!("vector.fma {x}, {y}, {} : {vt}", a[0]));
        for_close(k, &[(&acc, vt)]);
        return op(
            k,
            format!("vector.reduction <add>, {} : {vt} into f32", r[0]),
        );
    }
    let zero = fconst(k, 0.0, ct);
    let (i, a, r) = for_open(k, &c0, &cn, 1, &[(&zero, ct)]);
    let ai = op(k, format!("arith.addi {ar}, {i} : index"));
    let bi = op(k, format!("arith.addi {br}, {i} : index"));
    let x = load(k, am, at, &ai, d);
    let y = load(k, bm, bt, &bi, d);
    let acc = op(k, format!("math.fma {x}, {y}, {} : {ct}", a[0]));
    for_close(k, &[(&acc, ct)]);
    r[0].clone()
}

pub const LOWERINGS: &[(&str, LowerFn)] = &[
    ("softmax", lower_softmax),
    ("log_softmax", lower_softmax),
    ("layer_normalization", lower_norm),
    ("rms_normalization", lower_norm),
    ("rotary_embedding", lower_rotary),
    ("attention", lower_attention),
];
