//! The f32 GEMM: BLIS-style blocking around the [`ukr`] microkernel.
//!
//! Tasks are `(batch item, MC-row block, NC-column block)` tiles of C,
//! spread over the threads by one `scf.parallel` (OpenMP). Each task walks K
//! in fixed KC blocks: for every `NR`-column panel of B (kept in L1 while
//! it sweeps the A rows in L2) calls the microkernel per `MR x NR` tile.
//! A whose rows are contiguous along K is read in place (packing it measured
//! no faster, see [`reads_a_in_place`]); otherwise the task first packs its
//! `MC x KC` block of A into `MR`-row panels on its own stack. B is packed
//! once: at compile time when constant, else up front at run time. The K blocking never depends on the thread count, so every output
//! element is summed in the same order whatever the split.

use super::pack::{pack_b, packed_len};
use super::text::{flat, Emit, FLAT};
use super::ukr::{Ukr, LANES};
use super::{simple, Operand, Problem};
use crate::emit::kernel::KernelCtx;
use std::sync::OnceLock;
use tessera_ir::{DType, Tensor};

/// Blocking parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub mr: usize,
    pub nr: usize,
    pub kc: usize,
    /// Upper bound of the rows of A packed per task (a multiple of `mr`).
    pub mc: usize,
    /// Upper bound of the columns of C per task (a multiple of `nr`).
    pub nc: usize,
    pub unroll: usize,
}

/// Chosen by measurement on a 2-core Sapphire Rapids (examples/gemm_bench.rs;
/// 14x32 and 6x64 were close but behind on K-heavy shapes): 24 accumulator
/// registers, 3 B loads and 8 broadcasts per 24 FMAs; M = 128 (BERT's
/// sequence) is a whole number of panels.
pub const DEFAULT_TILE: Tile = Tile {
    mr: 8,
    nr: 48,
    kc: 256,
    mc: 128,
    nc: 4096,
    unroll: 4,
};

impl Tile {
    /// `MRxNRxKCxMC[xNC[xU]]`, the format of `TESSERA_GEMM_TILE`.
    pub fn parse(s: &str) -> Result<Tile, String> {
        let v: Vec<usize> = s
            .split('x')
            .map(|t| t.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| {
                format!("TESSERA_GEMM_TILE={s}: {e} (expected MRxNRxKCxMC[xNC[xUNROLL]])")
            })?;
        if !(4..=6).contains(&v.len()) {
            return Err(format!(
                "TESSERA_GEMM_TILE={s}: expected MRxNRxKCxMC[xNC[xUNROLL]]"
            ));
        }
        let t = Tile {
            mr: v[0],
            nr: v[1],
            kc: v[2],
            mc: v[3],
            nc: v.get(4).copied().unwrap_or(DEFAULT_TILE.nc),
            unroll: v.get(5).copied().unwrap_or(DEFAULT_TILE.unroll),
        };
        let regs = t.mr * t.nr / LANES;
        if t.mr == 0
            || t.nr == 0
            || !t.nr.is_multiple_of(LANES)
            || t.kc == 0
            || t.unroll == 0
            || regs > 30
        {
            return Err(format!(
                "TESSERA_GEMM_TILE={s}: NR must be a multiple of {LANES} and MR * NR / {LANES} at most 30 registers"
            ));
        }
        Ok(Tile {
            mc: t.mc.max(t.mr).div_ceil(t.mr) * t.mr,
            nc: t.nc.max(t.nr).div_ceil(t.nr) * t.nr,
            ..t
        })
    }

    /// [`DEFAULT_TILE`], or `TESSERA_GEMM_TILE` when set (a tuning aid).
    pub fn current() -> Result<Tile, String> {
        static T: OnceLock<Result<Tile, String>> = OnceLock::new();
        T.get_or_init(|| match std::env::var("TESSERA_GEMM_TILE") {
            Ok(s) => Tile::parse(&s),
            Err(_) => Ok(DEFAULT_TILE),
        })
        .clone()
    }
}

/// The task grid: C blocks of `mc x nc`, `mb x nb` of them per batch item.
#[derive(Debug, PartialEq, Eq)]
struct Grid {
    mc: usize,
    mb: usize,
    nc: usize,
    nb: usize,
}

/// Chooses the C blocks: at most `t.mc` rows and `t.nc` columns, as few
/// as keep `threads` evenly busy. OpenMP's static schedule hands each
/// thread a contiguous run of tasks (N blocks fastest); the makespan of
/// that schedule, in microkernel calls, is what the choice minimizes
/// (fewer tasks on ties). Only the split depends on the thread count,
/// never a summation order.
fn grid(t: &Tile, items: usize, m: usize, n: usize, threads: usize) -> Grid {
    let threads = threads.max(1);
    let (row_panels, col_panels) = (m.div_ceil(t.mr), n.div_ceil(t.nr));
    let mb_min = m.div_ceil(t.mc);
    let nb_min = col_panels.div_ceil(t.nc / t.nr);
    let mut best: Option<(usize, usize, Grid)> = None;
    for mb in mb_min..=row_panels.min(mb_min + 2 * threads) {
        let mc = m.div_ceil(mb).div_ceil(t.mr) * t.mr;
        let mb = m.div_ceil(mc);
        for nb in nb_min..=col_panels.min(nb_min + 2 * threads) {
            let per = col_panels.div_ceil(nb);
            let nb = col_panels.div_ceil(per);
            let tasks = items * mb * nb;
            let work = |task: usize| {
                let (im, jn) = ((task / nb) % mb, task % nb);
                (mc.min(m - im * mc)).div_ceil(t.mr) * per.min(col_panels - jn * per)
            };
            let chunk = tasks.div_ceil(threads);
            let makespan = (0..threads)
                .map(|th| {
                    (th * chunk..tasks.min((th + 1) * chunk))
                        .map(work)
                        .sum::<usize>()
                })
                .max()
                .unwrap_or(0);
            let g = Grid {
                mc,
                mb,
                nc: per * t.nr,
                nb,
            };
            if best
                .as_ref()
                .is_none_or(|(ms, tk, _)| (makespan, tasks) < (*ms, *tk))
            {
                best = Some((makespan, tasks, g));
            }
        }
    }
    best.map(|b| b.2).expect("at least one candidate grid")
}

/// The distinct matrices of `b` and, per batch dim, the stride between them
/// in units of matrices.
fn b_items(p: &Problem) -> (usize, Vec<usize>) {
    let per = p.k * p.n;
    (
        p.b.buf.len() / per,
        p.b.batch.iter().map(|s| s / per).collect(),
    )
}

pub fn emit(k: &mut KernelCtx, p: &Problem) -> Result<(), String> {
    if p.k == 0 {
        // Nothing to multiply: the plain loops write the epilogue of zero.
        return simple::emit(k, p);
    }
    debug_assert_eq!(p.dtype, DType::F32);
    let t = Tile::current()?;
    let a_rows = reads_a_in_place(p).then_some(p.a.rs);
    let mut ukr = Ukr::new(t.mr, t.nr, t.unroll, a_rows, &p.epi);
    let (items, item_strides) = b_items(p);
    let item_len = packed_len(1, p.k, p.n, t.nr);
    // Weights too big to stay in cache come from DRAM at first touch: the
    // first microkernel call on each B panel would wait on it while the
    // other row panels reuse it from cache. Each call instead prefetches a
    // slice of the next panel, so the fetch overlaps a whole panel's work.
    let prefetch_below = (items * item_len) as i64 - (LANES * t.kc.div_ceil(t.unroll)) as i64;
    ukr.prefetch = p.b.buf.constant.is_some()
        && items * item_len * 4 >= PREFETCH_MIN_BYTES
        && t.unroll > 1
        && prefetch_below > 0;
    let sym = ukr.symbol();
    let text = ukr.text()?;
    k.helper(&sym, || text);
    let fl = format!("memref<{FLAT}xf32>");

    let (bp, scratch) = match &p.b.buf.constant {
        Some(c) => {
            let data = c.to_f32_vec();
            let packed = pack_b(&data, items, p.k, p.n, (p.b.rs, p.b.cs), t.nr, t.kc);
            let d = k.derived_constant(Tensor::f32(vec![packed.len()], packed))?;
            (flat(k, &d, FLAT), None)
        }
        None => {
            let (bp, buf) = runtime_pack_b(k, p, &t, items);
            (bp, Some(buf))
        }
    };
    let a = flat(k, &p.a.buf, FLAT);
    let c = flat(k, &p.out.buf, FLAT);
    let addends: Vec<(String, &Operand)> = p
        .epi
        .operands()
        .map(|o| (flat(k, &o.buf, FLAT), o))
        .collect();
    for (_, o) in &addends {
        if o.cs > 1 {
            return Err(format!(
                "internal error: an epilogue operand with column stride {}",
                o.cs
            ));
        }
    }
    let alpha = p.epi.alpha.map(|v| super::text::fconst(k, "f32", v));
    let scales: Vec<Option<String>> = p
        .epi
        .addends()
        .map(|a| a.scale.map(|s| super::text::fconst(k, "f32", s)))
        .collect();

    let g = grid(&t, p.batch.iter().product(), p.m, p.n, k.threads);
    let nbatch = p.batch.len();
    let ivs: Vec<String> = (0..nbatch + 2).map(|_| k.fresh("i")).collect();
    let c0 = k.idx(0);
    let c1 = k.idx(1);
    let mut uppers: Vec<String> = p.batch.iter().map(|&n| k.idx(n as i64)).collect();
    uppers.push(k.idx(g.mb as i64));
    uppers.push(k.idx(g.nb as i64));
    k.line(format!(
        "scf.parallel ({}) = ({}) to ({}) step ({}) {{",
        ivs.join(", "),
        vec![c0.as_str(); ivs.len()].join(", "),
        uppers.join(", "),
        vec![c1.as_str(); ivs.len()].join(", ")
    ));
    k.line("memref.alloca_scope {");
    let (bivs, im, inn) = (&ivs[..nbatch], &ivs[nbatch], &ivs[nbatch + 1]);
    let apk = match a_rows {
        Some(_) => None,
        None => {
            let apk_len = g.mc * t.kc;
            let apk = k.op(format!(
                "memref.alloca() {{alignment = 64 : i64}} : memref<{apk_len}xf32>"
            ));
            Some(k.op(format!(
                "memref.reinterpret_cast {apk} to offset: [0], sizes: [{FLAT}], strides: [1] : memref<{apk_len}xf32> to {fl}"
            )))
        }
    };
    let a_base = k.dot(bivs, &p.a.batch);
    let c_base = k.dot(bivs, &p.out.batch);
    let item = k.dot(bivs, &item_strides);
    let b_base = k.mul_c(&item, item_len);
    let e_base: Vec<String> = addends.iter().map(|(_, o)| k.dot(bivs, &o.batch)).collect();
    let (m, n, kk) = (k.idx(p.m as i64), k.idx(p.n as i64), k.idx(p.k as i64));
    let m0 = k.mul_c(im, g.mc);
    let mleft = k.sub(&m, &m0);
    let mcv = k.idx(g.mc as i64);
    let mcur = k.min(&mcv, &mleft);
    let mpanels = ceil_div(k, &mcur, t.mr);
    let n0 = k.mul_c(inn, g.nc);
    let nleft = k.sub(&n, &n0);
    let ncv = k.idx(g.nc as i64);
    let ncur = k.min(&ncv, &nleft);
    let npanels = ceil_div(k, &ncur, t.nr);
    let panel0 = k.mul_c(inn, g.nc / t.nr);
    let kb_count = p.k.div_ceil(t.kc);
    let kbn = k.idx(kb_count as i64);
    let kb = k.fresh("kb");
    k.line(format!("scf.for {kb} = {c0} to {kbn} step {c1} {{"));
    let k0 = k.mul_c(&kb, t.kc);
    let kleft = k.sub(&kk, &k0);
    let kcv = k.idx(t.kc as i64);
    let kc = k.min(&kcv, &kleft);
    let first = k.op(format!("arith.cmpi eq, {kb}, {c0} : index"));
    let last_kb = k.idx(kb_count as i64 - 1);
    let last = k.op(format!("arith.cmpi eq, {kb}, {last_kb} : index"));

    // Pack A[m0.., k0..] into [panel][kc][MR]; rows past M read row M-1 and
    // store zero.
    if let Some(apk) = &apk {
        let ip = k.fresh("ip");
        k.line(format!("scf.for {ip} = {c0} to {mpanels} step {c1} {{"));
        let pp = k.fresh("pp");
        k.line(format!("scf.for {pp} = {c0} to {kc} step {c1} {{"));
        let row0 = k.add_mul_c(&m0, &ip, t.mr);
        let kcol = k.add(&k0, &pp);
        let col_off = k.add_mul_c(&a_base, &kcol, p.a.cs);
        let dst_row = k.mul(&ip, &kc);
        let dst_row = k.add(&dst_row, &pp);
        let dst = k.mul_c(&dst_row, t.mr);
        let m_last = k.idx(p.m as i64 - 1);
        let zf = super::text::fconst(k, "f32", 0.0);
        for r in 0..t.mr {
            let i = k.add_c(&row0, r);
            let ok = k.op(format!("arith.cmpi slt, {i}, {m} : index"));
            let icl = k.min(&i, &m_last);
            let at = k.add_mul_c(&col_off, &icl, p.a.rs);
            let v = k.op(format!("memref.load {a}[{at}] : {fl}"));
            let v = k.op(format!("arith.select {ok}, {v}, {zf} : f32"));
            let d = k.add_c(&dst, r);
            k.line(format!("memref.store {v}, {apk}[{d}] : {fl}"));
        }
        k.line("}");
        k.line("}");
    }

    // Sweep the B panels (L1) over the packed A panels (L2).
    let jp = k.fresh("jp");
    k.line(format!("scf.for {jp} = {c0} to {npanels} step {c1} {{"));
    let j0 = k.add_mul_c(&n0, &jp, t.nr);
    let nv = k.sub(&n, &j0);
    let panel = k.add(&panel0, &jp);
    // See pack.rs for the layout: K block, then panel, then row.
    let bo = k.add_mul_c(&b_base, &k0, p.n.div_ceil(t.nr) * t.nr);
    let pk = k.mul(&panel, &kc);
    let bo = k.add_mul_c(&bo, &pk, t.nr);
    let pf_slice = ukr.prefetch.then(|| {
        next_panel_slice(
            k,
            &t,
            p,
            &bo,
            &kc,
            &NextPanel {
                jp: &jp,
                npanels: &npanels,
                panel0: &panel0,
                b_base: &b_base,
                k0: &k0,
                kk: &kk,
                mpanels: &mpanels,
            },
        )
    });
    let ip2 = k.fresh("ip");
    k.line(format!("scf.for {ip2} = {c0} to {mpanels} step {c1} {{"));
    let i0 = k.add_mul_c(&m0, &ip2, t.mr);
    let mv = k.sub(&m, &i0);
    let (abuf, ao) = match &apk {
        Some(apk) => {
            let ao = k.mul(&ip2, &kc);
            (apk.clone(), k.mul_c(&ao, t.mr))
        }
        None => {
            let ao = k.add_mul_c(&a_base, &i0, p.a.rs);
            (a.clone(), k.add(&ao, &k0))
        }
    };
    let co = k.add_mul_c(&c_base, &i0, p.out.rs);
    let co = k.add(&co, &j0);
    let ldc = k.idx(p.out.rs as i64);
    let mut args = vec![
        abuf,
        ao,
        bp.clone(),
        bo,
        kc.clone(),
        c.clone(),
        co,
        ldc,
        mv,
        nv,
        first.clone(),
        last.clone(),
    ];
    if let Some((next, per)) = &pf_slice {
        let off = k.mul(&ip2, per);
        let pf = k.add_mul_c(next, &off, LANES);
        let below = k.idx(prefetch_below);
        args.push(k.min(&pf, &below));
    }
    args.extend(alpha.clone());
    for (((buf, o), base), scale) in addends.iter().zip(&e_base).zip(&scales) {
        let off = k.add_mul_c(base, &i0, o.rs);
        let off = k.add_mul_c(&off, &j0, o.cs);
        let rs = k.idx(o.rs as i64);
        args.extend([buf.clone(), off, rs]);
        args.extend(scale.clone());
    }
    k.line(format!(
        "func.call @{sym}({}) : ({}) -> ()",
        args.join(", "),
        ukr.arg_types().join(", ")
    ));
    k.line("}");
    k.line("}");
    k.line("}");
    k.line("}");
    k.line("}");
    if let Some((buf, ty)) = scratch {
        k.line(format!("memref.dealloc {buf} : {ty}"));
    }
    Ok(())
}

/// Constant B at least this big gets the software prefetch of the next
/// panel (smaller weights stay in L2/L3 across runs).
const PREFETCH_MIN_BYTES: usize = 1 << 20;

/// Where the panel after the current one starts, and in which loop of the
/// B sweep the ukr is.
struct NextPanel<'a> {
    jp: &'a str,
    npanels: &'a str,
    panel0: &'a str,
    b_base: &'a str,
    k0: &'a str,
    kk: &'a str,
    mpanels: &'a str,
}

/// The start of the B panel this task needs next (the following panel of
/// this K block, else its first panel of the next K block) and the cache
/// lines each of the `mpanels` microkernel calls prefetches of it.
fn next_panel_slice(
    k: &mut KernelCtx,
    t: &Tile,
    p: &Problem,
    bo: &str,
    kc: &str,
    n: &NextPanel,
) -> (String, String) {
    let panel_len = k.mul_c(kc, t.nr);
    let next_same = k.add(bo, &panel_len);
    let k1 = k.add(n.k0, kc);
    let kleft = k.sub(n.kk, &k1);
    let kcv = k.idx(t.kc as i64);
    let kc1 = k.min(&kcv, &kleft);
    let at = k.add_mul_c(n.b_base, &k1, p.n.div_ceil(t.nr) * t.nr);
    let pk = k.mul(n.panel0, &kc1);
    let next_kb = k.add_mul_c(&at, &pk, t.nr);
    let jp1 = k.add_c(n.jp, 1);
    let last = k.op(format!("arith.cmpi eq, {jp1}, {} : index", n.npanels));
    let next = k.op(format!(
        "arith.select {last}, {next_kb}, {next_same} : index"
    ));
    let lines = k.mul_c(kc, t.nr / LANES);
    let c1 = k.idx(1);
    let up = k.add(&lines, n.mpanels);
    let up = k.sub(&up, &c1);
    let per = k.op(format!("arith.divui {up}, {} : index", n.mpanels));
    (next, per)
}

/// Whether the microkernel reads A where it lies rather than from packed
/// panels: when its rows are contiguous along K, a row's KC block is one
/// stream the hardware prefetches, so packing only copies.
/// `TESSERA_GEMM_PACK_A=1` forces packing (to measure the difference).
fn reads_a_in_place(p: &Problem) -> bool {
    static FORCE_PACK: OnceLock<bool> = OnceLock::new();
    p.a.cs == 1
        && !*FORCE_PACK.get_or_init(|| std::env::var("TESSERA_GEMM_PACK_A").is_ok_and(|v| v == "1"))
}

fn ceil_div(e: &mut dyn Emit, x: &str, d: usize) -> String {
    let t = e.add_c(x, d - 1);
    let d = e.idx(d as i64);
    e.op(format!("arith.divui {t}, {d} : index"))
}

/// Packs a B that is only known at run time into a heap buffer laid out as
/// [`pack_b`] does, one parallel task per (item, panel); returns its flat
/// view and the buffer (with its type) to free after the GEMM.
fn runtime_pack_b(
    k: &mut KernelCtx,
    p: &Problem,
    t: &Tile,
    items: usize,
) -> (String, (String, String)) {
    let fl = format!("memref<{FLAT}xf32>");
    let len = packed_len(items, p.k, p.n, t.nr);
    let buf = k.op(format!(
        "memref.alloc() {{alignment = 64 : i64}} : memref<{len}xf32>"
    ));
    let bpf = k.op(format!(
        "memref.reinterpret_cast {buf} to offset: [0], sizes: [{FLAT}], strides: [1] : memref<{len}xf32> to {fl}"
    ));
    let b = flat(k, &p.b.buf, FLAT);
    let panels = p.n.div_ceil(t.nr);
    let (c0, c1) = (k.idx(0), k.idx(1));
    let (it, q) = (k.fresh("it"), k.fresh("q"));
    let (ni, np) = (k.idx(items as i64), k.idx(panels as i64));
    k.line(format!(
        "scf.parallel ({it}, {q}) = ({c0}, {c0}) to ({ni}, {np}) step ({c1}, {c1}) {{"
    ));
    let src = k.mul_c(&it, p.k * p.n);
    let j0 = k.mul_c(&q, t.nr);
    let dst0 = k.mul_c(&it, panels * p.k * t.nr);
    let kk = k.idx(p.k as i64);
    // Row pp of panel q in pack.rs's layout: K block, then panel, then row.
    let kcv = k.idx(t.kc as i64);
    let dst_row = |k: &mut KernelCtx, pp: &str| -> String {
        let kb = k.op(format!("arith.divui {pp}, {kcv} : index"));
        let k0 = k.mul_c(&kb, t.kc);
        let kleft = k.sub(&kk, &k0);
        let kcur = k.min(&kcv, &kleft);
        let at = k.add_mul_c(&dst0, &k0, panels * t.nr);
        let qk = k.mul(&q, &kcur);
        let at = k.add_mul_c(&at, &qk, t.nr);
        let r = k.sub(pp, &k0);
        k.add_mul_c(&at, &r, t.nr)
    };
    let n = k.idx(p.n as i64);
    let pp = k.fresh("pp");
    if p.b.cs == 1 {
        // Rows of B are contiguous: NR/16 masked vector copies per row.
        let zero = k.op("arith.constant dense<0.0> : vector<16xf32>".into());
        k.line(format!("scf.for {pp} = {c0} to {kk} step {c1} {{"));
        let row = k.add_mul_c(&src, &pp, p.b.rs);
        let row = k.add(&row, &j0);
        let drow = dst_row(k, &pp);
        for v in 0..t.nr / LANES {
            let jv = k.add_c(&j0, v * LANES);
            let cnt = k.sub(&n, &jv);
            let mask = k.op(format!("vector.create_mask {cnt} : vector<16xi1>"));
            let at = k.add_c(&row, v * LANES);
            let x = k.op(format!(
                "vector.maskedload {b}[{at}], {mask}, {zero} : {fl}, vector<16xi1>, vector<16xf32> into vector<16xf32>"
            ));
            let d = k.add_c(&drow, v * LANES);
            k.line(format!(
                "vector.store {x}, {bpf}[{d}] : {fl}, vector<16xf32>"
            ));
        }
        k.line("}");
    } else {
        // Columns of B are contiguous (transposed B): walk each column.
        let jj = k.fresh("jj");
        let nrv = k.idx(t.nr as i64);
        let n_last = k.idx(p.n as i64 - 1);
        let zf = super::text::fconst(k, "f32", 0.0);
        k.line(format!("scf.for {jj} = {c0} to {nrv} step {c1} {{"));
        let j = k.add(&j0, &jj);
        let ok = k.op(format!("arith.cmpi slt, {j}, {n} : index"));
        let jcl = k.min(&j, &n_last);
        let col = k.add_mul_c(&src, &jcl, p.b.cs);
        k.line(format!("scf.for {pp} = {c0} to {kk} step {c1} {{"));
        let at = k.add_mul_c(&col, &pp, p.b.rs);
        let x = k.op(format!("memref.load {b}[{at}] : {fl}"));
        let x = k.op(format!("arith.select {ok}, {x}, {zf} : f32"));
        let d = dst_row(k, &pp);
        let d = k.add(&d, &jj);
        k.line(format!("memref.store {x}, {bpf}[{d}] : {fl}"));
        k.line("}");
        k.line("}");
    }
    k.line("}");
    (bpf, (buf, format!("memref<{len}xf32>")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_balances_two_threads_on_one_row_block() {
        let t = DEFAULT_TILE;
        // BERT's 128 x 3072 FFN output: one M block, N split evenly.
        let g = grid(&t, 1, 128, 3072, 2);
        assert_eq!(g.mb, 1);
        assert_eq!(g.nb % 2, 0, "{g:?}");
        assert!(g.nc * g.nb >= 3072);
        // One thread: no needless N split.
        let g1 = grid(&t, 1, 128, 3072, 1);
        assert_eq!((g1.mb, g1.nb), (1, 1));
        // 1024 rows on two threads: an even number of blocks, each thread
        // within one block of half the row panels.
        let g = grid(&t, 1, 1024, 1024, 2);
        assert!((g.mb * g.nb).is_multiple_of(2), "{g:?}");
        let panels = |i: usize| g.mc.min(1024 - i * g.mc).div_ceil(t.mr);
        let first_half: usize = (0..g.mb.div_ceil(2)).map(panels).sum();
        assert!(
            first_half <= 1024usize.div_ceil(t.mr).div_ceil(2) + t.mc / t.mr,
            "{g:?}"
        );
    }

    #[test]
    fn tiles_parse_and_reject_too_many_registers() {
        let t = Tile::parse("8x48x192x96").unwrap();
        assert_eq!((t.mr, t.nr, t.kc, t.mc), (8, 48, 192, 96));
        assert!(Tile::parse("16x64x256x128").is_err());
        assert!(Tile::parse("6x40x256x96").is_err());
    }
}
