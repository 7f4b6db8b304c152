//! The f32 microkernel: an `MR x NR` tile of C held in `MR * NR / 16`
//! `vector<16xf32>` registers, updated by `kc` rank-1 steps that read one
//! packed column of A (`MR` broadcasts) and one packed row of B (`NR / 16`
//! vector loads), with the K loop unrolled. It is a module-level helper,
//! one per tile shape and epilogue shape, shared by every GEMM kernel.
//!
//! Edges are masked, not special-cased: lanes past `nv` columns and rows
//! past `mv` are neither loaded nor stored, so one kernel serves full and
//! partial tiles. The first K block starts from zero, later ones from C;
//! the last one applies the epilogue on its way to memory.

use super::epilogue::{self, Act, Arith, EpiShape, Epilogue, Params};
use super::text::{for_iter, Body, Emit, FLAT};

pub const LANES: usize = 16;
const V: &str = "vector<16xf32>";
const M: &str = "vector<16xi1>";

/// How the microkernel reads one epilogue addend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddendShape {
    /// Contiguous along N (`[.., N]`); else one value per row (`[.., M, 1]`
    /// or a scalar) broadcast across the tile.
    pub along_n: bool,
    pub scaled: bool,
}

/// A microkernel variant: tile shape and epilogue shape. Epilogue values
/// (alpha, scales, addend buffers) are arguments, so kernels with the same
/// shape of epilogue share the helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ukr {
    pub mr: usize,
    pub nr: usize,
    pub unroll: usize,
    /// `Some(lda)`: A is read in place from rows `lda` elements apart
    /// (contiguous along K) instead of from a packed `[kc][MR]` panel.
    pub a_rows: Option<usize>,
    /// Takes a `%pf` offset into B and prefetches one cache line there per
    /// unrolled K step (into L2), so the caller can stream the next B panel
    /// in while this one is in use (see `blocked.rs`).
    pub prefetch: bool,
    pub alpha: bool,
    pub pre: Vec<AddendShape>,
    pub act: Act,
    pub post: Option<AddendShape>,
}

impl Ukr {
    pub fn new(mr: usize, nr: usize, unroll: usize, a_rows: Option<usize>, epi: &Epilogue) -> Ukr {
        let shape = |a: &epilogue::Addend| AddendShape {
            along_n: a.op.cs != 0,
            scaled: a.scale.is_some(),
        };
        Ukr {
            mr,
            nr,
            unroll,
            a_rows,
            prefetch: false,
            alpha: epi.alpha.is_some(),
            pre: epi.pre.iter().map(shape).collect(),
            act: epi.act,
            post: epi.post.as_ref().map(shape),
        }
    }

    fn addends(&self) -> impl Iterator<Item = &AddendShape> {
        self.pre.iter().chain(self.post.iter())
    }

    pub fn has_epilogue(&self) -> bool {
        self.alpha || self.addends().next().is_some() || self.act != Act::None
    }

    pub fn symbol(&self) -> String {
        let mut s = format!("tsr_sgemm_{}x{}_u{}", self.mr, self.nr, self.unroll);
        if let Some(lda) = self.a_rows {
            s.push_str(&format!("_lda{lda}"));
        }
        if self.prefetch {
            s.push_str("_pf");
        }
        let tag = |a: &AddendShape| {
            format!(
                "{}{}",
                if a.along_n { "v" } else { "s" },
                if a.scaled { "x" } else { "" }
            )
        };
        if self.alpha {
            s.push_str("_alpha");
        }
        for a in &self.pre {
            s.push_str("_p");
            s.push_str(&tag(a));
        }
        if self.act != Act::None {
            s.push('_');
            s.push_str(self.act.name());
        }
        if let Some(a) = &self.post {
            s.push_str("_r");
            s.push_str(&tag(a));
        }
        s
    }

    /// Argument types in call order (see [`Ukr::text`] for their meaning).
    pub fn arg_types(&self) -> Vec<String> {
        let f = format!("memref<{FLAT}xf32>");
        let mut t: Vec<String> = [
            &f, "index", &f, "index", "index", &f, "index", "index", "index", "index", "i1", "i1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.prefetch {
            t.push("index".into());
        }
        if self.alpha {
            t.push("f32".into());
        }
        for a in self.addends() {
            t.extend([f.clone(), "index".into(), "index".into()]);
            if a.scaled {
                t.push("f32".into());
            }
        }
        t
    }

    /// The helper: `(a, a_off, b, b_off, kc, c, c_off, ldc, mv, nv, first,
    /// last, [pf], [alpha], per addend: (buf, off, row_stride, [scale]))`. A is
    /// packed `[kc][MR]` (or read in place, see [`Ukr::a_rows`]), B
    /// `[kc][NR]`; A, C and the addends are addressed at the tile's
    /// top-left element.
    pub fn text(&self) -> Result<String, String> {
        let (mr, nv_) = (self.mr, self.nr / LANES);
        let na = mr * nv_;
        let mut e = Body::default();
        let mut params: Vec<String> = [
            "%a", "%ao", "%b", "%bo", "%kc", "%c", "%co", "%ldc", "%mv", "%nv", "%first", "%last",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.prefetch {
            params.push("%pf".into());
        }
        if self.alpha {
            params.push("%alpha".into());
        }
        let mut addend_args = Vec::new();
        for (i, a) in self.addends().enumerate() {
            let names = (format!("%e{i}"), format!("%e{i}o"), format!("%e{i}rs"));
            params.extend([names.0.clone(), names.1.clone(), names.2.clone()]);
            if a.scaled {
                params.push(format!("%e{i}s"));
            }
            addend_args.push(names);
        }
        let params: Vec<String> = params
            .iter()
            .zip(self.arg_types())
            .map(|(n, t)| format!("{n}: {t}"))
            .collect();
        let fl = format!("memref<{FLAT}xf32>");

        let zero = e.op(format!("arith.constant dense<0.0> : {V}"));
        let none = e.op(format!("arith.constant dense<false> : {M}"));
        let col_masks: Vec<String> = (0..nv_)
            .map(|v| {
                let off = e.idx((v * LANES) as i64);
                let cnt = e.sub("%nv", &off);
                e.op(format!("vector.create_mask {cnt} : {M}"))
            })
            .collect();
        let mut masks = Vec::new();
        let mut crow = Vec::new();
        for r in 0..mr {
            let ri = e.idx(r as i64);
            let ok = e.op(format!("arith.cmpi slt, {ri}, %mv : index"));
            for cm in &col_masks {
                masks.push(e.op(format!("arith.select {ok}, {cm}, {none} : i1, {M}")));
            }
            let rl = e.mul("%ldc", &ri);
            crow.push(e.add("%co", &rl));
        }
        let tile_addr =
            |e: &mut Body, r: usize, v: usize, crow: &[String]| e.add_c(&crow[r], v * LANES);
        // In-place A: rows past mv (masked off on store) read row mv - 1,
        // so no read leaves A.
        let arows: Vec<String> = match self.a_rows {
            Some(lda) => {
                let c1 = e.idx(1);
                let last = e.sub("%mv", &c1);
                (0..mr)
                    .map(|r| {
                        let ri = e.idx(r as i64);
                        let rc = e.min(&ri, &last);
                        let off = e.mul_c(&rc, lda);
                        e.add("%ao", &off)
                    })
                    .collect()
            }
            None => Vec::new(),
        };

        // Accumulators: zero on the first K block, C's partial sums after.
        let tys = vec![V; na].join(", ");
        let init = e.ops(na, format!("scf.if %first -> ({tys}) {{"));
        e.raw(format!(
            "  scf.yield {} : {tys}",
            vec![zero.as_str(); na].join(", ")
        ));
        e.raw("} else {".into());
        let mut loaded = Vec::new();
        for r in 0..mr {
            for v in 0..nv_ {
                let at = tile_addr(&mut e, r, v, &crow);
                let m = &masks[r * nv_ + v];
                loaded.push(e.op(format!(
                    "vector.maskedload %c[{at}], {m}, {zero} : {fl}, {M}, {V} into {V}"
                )));
            }
        }
        e.raw(format!("  scf.yield {} : {tys}", loaded.join(", ")));
        e.raw("}".into());
        let mut acc: Vec<String> = (0..na).map(|i| format!("{init}#{i}")).collect();

        // The K loop, unrolled, then its remainder.
        let u = self.unroll.max(1);
        let cu = e.idx(u as i64);
        let q = e.op(format!("arith.divui %kc, {cu} : index"));
        let ku = e.mul(&q, &cu);
        let c0 = e.idx(0);
        let c1 = e.idx(1);
        for (lo, hi, step, copies) in [
            (c0.clone(), ku.clone(), cu.clone(), u),
            (ku, "%kc".to_string(), c1, 1),
        ] {
            let iv = e.name("p");
            let carried: Vec<(String, String)> =
                acc.iter().map(|a| (e.name("x"), a.clone())).collect();
            let res = e.ops(na, for_iter(&iv, &lo, &hi, &step, &carried, V));
            let mut cur: Vec<String> = carried.iter().map(|(n, _)| n.clone()).collect();
            if self.prefetch && copies > 1 {
                // Line `iv / u` of the caller's prefetch slice.
                let line = e.op(format!("arith.divui {iv}, {cu} : index"));
                let off = e.mul_c(&line, LANES);
                let at = e.add("%pf", &off);
                e.raw(format!(
                    "memref.prefetch %b[{at}], read, locality<2>, data : {fl}"
                ));
            }
            for j in 0..copies {
                let p = e.add_c(&iv, j);
                self.rank1_step(&mut e, &p, &arows, &mut cur, &fl);
            }
            e.raw(format!("  scf.yield {} : {tys}", cur.join(", ")));
            e.raw("}".into());
            acc = (0..na).map(|i| format!("{res}#{i}")).collect();
        }

        // Store, through the epilogue on the last K block.
        let store = |e: &mut Body, r: usize, v: usize, val: &str| {
            let at = tile_addr(e, r, v, &crow);
            let m = &masks[r * nv_ + v];
            e.raw(format!(
                "vector.maskedstore %c[{at}], {m}, {val} : {fl}, {M}, {V}"
            ));
        };
        if self.has_epilogue() {
            e.raw("scf.if %last {".into());
            let epi_params = Params {
                alpha: self
                    .alpha
                    .then(|| e.op(format!("vector.broadcast %alpha : f32 to {V}"))),
                scales: self
                    .addends()
                    .enumerate()
                    .map(|(i, a)| {
                        a.scaled
                            .then(|| e.op(format!("vector.broadcast %e{i}s : f32 to {V}")))
                    })
                    .collect(),
            };
            let shapes: Vec<AddendShape> = self.addends().copied().collect();
            let c1 = e.idx(1);
            let last_row = e.sub("%mv", &c1);
            let epi = EpiShape {
                pre: self.pre.len(),
                act: self.act,
                post: self.post.is_some(),
            };
            for r in 0..mr {
                let ri = e.idx(r as i64);
                // Rows past mv are masked off; their scalar addend reads
                // are clamped to a row that exists.
                let rc = e.min(&ri, &last_row);
                for v in 0..nv_ {
                    let m = masks[r * nv_ + v].clone();
                    let mut load = |e: &mut dyn Emit, i: usize| -> String {
                        let (buf, off, rs) = &addend_args[i];
                        if shapes[i].along_n {
                            let row = e.mul(&ri, rs);
                            let at = e.add(off, &row);
                            let at = e.add_c(&at, v * LANES);
                            e.op(format!("vector.maskedload {buf}[{at}], {m}, {zero} : {fl}, {M}, {V} into {V}"))
                        } else {
                            let row = e.mul(&rc, rs);
                            let at = e.add(off, &row);
                            let s = e.op(format!("memref.load {buf}[{at}] : {fl}"));
                            e.op(format!("vector.broadcast {s} : f32 to {V}"))
                        }
                    };
                    let y = epilogue::apply(
                        &mut e,
                        &epi,
                        V,
                        Arith::Float,
                        acc[r * nv_ + v].clone(),
                        &epi_params,
                        &mut load,
                    )?;
                    store(&mut e, r, v, &y);
                }
            }
            e.raw("} else {".into());
            for r in 0..mr {
                for v in 0..nv_ {
                    store(&mut e, r, v, &acc[r * nv_ + v]);
                }
            }
            e.raw("}".into());
        } else {
            for r in 0..mr {
                for v in 0..nv_ {
                    store(&mut e, r, v, &acc[r * nv_ + v]);
                }
            }
        }
        Ok(e.finish(&self.symbol(), &params))
    }

    /// `acc[r][v] += a[r][p] * b[p][v]`: NR/16 vector loads of B, MR
    /// broadcasts of A (from `arows[r] + p` when A is read in place).
    fn rank1_step(&self, e: &mut Body, p: &str, arows: &[String], acc: &mut [String], fl: &str) {
        let nv_ = self.nr / LANES;
        let a_at: Vec<String> = match self.a_rows {
            Some(_) => arows.iter().map(|row| e.add(row, p)).collect(),
            None => {
                let ab = e.mul_c(p, self.mr);
                let ab = e.add("%ao", &ab);
                (0..self.mr).map(|r| e.add_c(&ab, r)).collect()
            }
        };
        let bb = e.mul_c(p, self.nr);
        let bb = e.add("%bo", &bb);
        let bv: Vec<String> = (0..nv_)
            .map(|v| {
                let at = e.add_c(&bb, v * LANES);
                e.op(format!("vector.load %b[{at}] : {fl}, {V}"))
            })
            .collect();
        for (r, at) in a_at.iter().enumerate() {
            let s = e.op(format!("memref.load %a[{at}] : {fl}"));
            let sv = e.op(format!("vector.broadcast {s} : f32 to {V}"));
            for (v, b) in bv.iter().enumerate() {
                let i = r * nv_ + v;
                acc[i] = e.op(format!("vector.fma {sv}, {b}, {} : {V}", acc[i]));
            }
        }
    }
}
