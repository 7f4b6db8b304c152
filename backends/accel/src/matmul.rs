//! Quantized GEMM on the systolic array: `C[M, N] (i32) = (A[M, K] - zp) · W[K, N]`
//! with A int8 in DRAM and W stored transposed (`[N, K]`, one output channel
//! per row) so each weight tile is one strided DMA.
//!
//! A chunk is an `m_t`-row block of A against a group of `g` output tiles of
//! `n_t` columns: it loads the block's K-tiles of A and the group's weight
//! tiles into one scratchpad half (A in its first banks, W in its last, so
//! folds do not pay bank conflicts), runs one `gemm` per output tile (the
//! K-tiles are its inner loop) and stores the i32 tiles. Tile sizes come from
//! [`choose_tiles`], which prices candidates with the simulator's cycle model.

use crate::emit::{load, store, Emitter, B1, FMT_I32, MEM_SP};
use tessera_accel_isa::{Gemm, HwConfig, Insn, Op};

/// A quantized matmul to emit.
#[derive(Clone, Copy, Debug)]
pub struct GemmSpec {
    pub m: u64,
    pub k: u64,
    pub n: u64,
    /// DRAM address of A (`[M, K]` i8, row-major).
    pub a: u64,
    /// DRAM address of Wᵀ (`[N, K]` i8, row-major).
    pub w: u64,
    /// DRAM address of C (`[M, N]` i32, row-major).
    pub c: u64,
    /// Subtracted from every element of A.
    pub a_zero_point: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub m_t: u64,
    pub k_t: u64,
    pub n_t: u64,
    /// Output tiles per chunk.
    pub group: u64,
}

fn granules(bytes: u64) -> u64 {
    bytes.div_ceil(16)
}

impl Tiles {
    fn k_tiles(&self, k: u64) -> u64 {
        k.div_ceil(self.k_t)
    }
    fn a_tile(&self) -> u64 {
        granules(self.m_t * self.k_t)
    }
    fn w_tile(&self) -> u64 {
        granules(self.n_t * self.k_t)
    }
    /// Whether a chunk fits half of each memory.
    fn fits(&self, cfg: &HwConfig, k: u64) -> bool {
        let sp_half = (cfg.sp_bytes / 16).min(65536) / 2;
        let acc_half = cfg.acc_words().min(65536) / 2;
        let kt = self.k_tiles(k);
        self.a_tile() * kt <= sp_half / 2
            && self.w_tile() * kt * self.group <= sp_half / 2
            && self.m_t * self.n_t * self.group <= acc_half
    }

    /// Estimated cycles with the simulator's unit costs: the GEMM array and
    /// the DMA engines overlap, so the slower of the two dominates.
    fn cost(&self, cfg: &HwConfig, s: &GemmSpec) -> f64 {
        let dim = cfg.array_dim as u64;
        let (mb, nb) = (s.m.div_ceil(self.m_t), s.n.div_ceil(self.n_t * self.group));
        let folds = mb * s.n.div_ceil(self.n_t) * self.k_tiles(s.k);
        let gemm = folds as f64 * (3 * dim + self.m_t - 2) as f64;
        let bw = cfg.dram_bytes_per_cycle();
        let a_bytes = (s.m * s.k * nb) as f64;
        let w_bytes = (s.k * s.n * mb) as f64;
        let c_bytes = (s.m * s.n * 4) as f64;
        let dmas = (mb * nb) as f64 * (self.k_tiles(s.k) * (1 + self.group) + self.group) as f64;
        let dma = (a_bytes + w_bytes + c_bytes) / bw + dmas * cfg.dram_latency_cycles as f64 / 4.0;
        gemm.max(dma)
    }
}

/// Picks the cheapest tiling that fits.
pub fn choose_tiles(cfg: &HwConfig, s: &GemmSpec) -> Result<Tiles, String> {
    let dim = cfg.array_dim as u64;
    let k_t = s.k.min(dim);
    let n_t = s.n.min(dim).min(511);
    let mut best: Option<(f64, Tiles)> = None;
    let mut m_t = s.m.min(511);
    while m_t >= 1 {
        for group in 1..=s.n.div_ceil(n_t).min(64) {
            let t = Tiles {
                m_t,
                k_t,
                n_t,
                group,
            };
            if t.fits(cfg, s.k) {
                let c = t.cost(cfg, s);
                if best.is_none_or(|(bc, _)| c < bc) {
                    best = Some((c, t));
                }
            }
        }
        if m_t == 1 {
            break;
        }
        m_t = m_t.div_ceil(2);
    }
    best.map(|b| b.1).ok_or_else(|| {
        format!(
            "no tiling of a {}x{}x{} matmul fits the scratchpad and accumulator",
            s.m, s.k, s.n
        )
    })
}

/// Emits the matmul; the result is in DRAM after the call's final sync.
pub fn emit_matmul(em: &mut Emitter, s: &GemmSpec) -> Result<Tiles, String> {
    let cfg = em.cfg;
    let t = choose_tiles(cfg, s)?;
    let sp_half = (cfg.sp_bytes / 16).min(65536) / 2;
    let acc_half = cfg.acc_words().min(65536) / 2;
    let kt = t.k_tiles(s.k);
    let zp_insns = em.set_gemm_zero_point(s.a_zero_point);
    let mut zp_pending = Some(zp_insns);
    let mut m0 = 0;
    while m0 < s.m {
        let mt = t.m_t.min(s.m - m0);
        let mut n0 = 0;
        while n0 < s.n {
            let chunk = em.next_chunk() as u64 % 2;
            let sp = chunk * sp_half;
            let (a_base, w_base) = (sp, sp + sp_half / 2);
            let c_base = chunk * acc_half;
            let a_tile = granules(mt * t.k_t);
            let mut loads = Vec::new();
            for ki in 0..kt {
                let k0 = ki * t.k_t;
                let kk = t.k_t.min(s.k - k0);
                let dram = s.a + m0 * s.k + k0;
                loads.push(load(
                    MEM_SP,
                    B1,
                    dram,
                    (a_base + ki * a_tile) as u32,
                    mt,
                    kk,
                    s.k,
                ));
            }
            let mut compute = zp_pending.take().unwrap_or_default();
            let mut stores = Vec::new();
            let mut tile = 0;
            while tile < t.group && n0 < s.n {
                let nt = t.n_t.min(s.n - n0);
                let w_tile = granules(nt * t.k_t);
                let w0 = w_base + tile * kt * granules(t.n_t * t.k_t);
                for ki in 0..kt {
                    let k0 = ki * t.k_t;
                    let kk = t.k_t.min(s.k - k0);
                    let dram = s.w + n0 * s.k + k0;
                    loads.push(load(
                        MEM_SP,
                        B1,
                        dram,
                        (w0 + ki * w_tile) as u32,
                        nt,
                        kk,
                        s.k,
                    ));
                }
                let c = c_base + tile * t.m_t * t.n_t;
                compute.extend(gemm_insns(
                    s.k, t.k_t, mt, nt, a_base, w0, c, a_tile, w_tile,
                ));
                stores.push(store(
                    FMT_I32,
                    s.c + (m0 * s.n + n0) * 4,
                    c as u32,
                    mt,
                    nt,
                    s.n,
                    (0, 0),
                ));
                n0 += nt;
                tile += 1;
            }
            em.chunk(loads, compute, stores);
        }
        m0 += mt;
    }
    em.sync();
    Ok(t)
}

/// The folds of one output tile: full K-tiles as one looped `gemm`
/// (overwrite, then accumulate), a ragged last K-tile as its own.
#[allow(clippy::too_many_arguments)]
fn gemm_insns(
    k: u64,
    k_t: u64,
    m: u64,
    n: u64,
    a: u64,
    w: u64,
    c: u64,
    a_tile: u64,
    w_tile: u64,
) -> Vec<Insn> {
    let full = k / k_t;
    let rest = k % k_t;
    let mut out = Vec::new();
    let gemm = |kk: u64, a: u64, w: u64, iters: u64, acc_mode: u8| {
        Insn::new(Op::Gemm(Gemm {
            mode: 0,
            acc_mode,
            m: m as u32,
            k: kk as u32,
            n: n as u32,
            a: a as u32,
            w: w as u32,
            c: c as u32,
            iter_out: 1,
            iter_in: iters as u8,
            a_in: 1,
            w_in: 1,
            ..Default::default()
        }))
    };
    let mut done = 0;
    while done < full {
        let iters = (full - done).min(31);
        let mode = if done == 0 { 2 } else { 1 }; // first_overwrite, accumulate
        out.push(gemm(k_t, a + done * a_tile, w + done * w_tile, iters, mode));
        done += iters;
    }
    if rest > 0 {
        let mode = if full == 0 { 0 } else { 1 };
        out.push(gemm(rest, a + full * a_tile, w + full * w_tile, 1, mode));
    }
    out
}
