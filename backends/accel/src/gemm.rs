//! GEMM tiling and instruction emission for the Tessera accelerator.
//!
//! `C[M×N] = requant?(A[M×K] · Wᵀ + bias)` with A int8 (or bf16 in LUT mode)
//! row-major and W stored transposed (N rows of K weights, each row packed:
//! int8, int4 two per byte, 2-bit four per byte; see [`pack_weights`]).
//!
//! The loop nest is `for m-tile, for n-tile, for k-tile` (order [`LoopOrder::Mnk`])
//! or with the first two swapped ([`LoopOrder::Nmk`]); each iteration is one
//! *step*: load the A and W tiles it needs (one DMA per array-deep fold, since
//! a GEMM operand tile must be dense), run the folds, and after the last k-tile
//! store the output tile. A, W and output tiles are double-buffered: A in the
//! low scratchpad banks and W in the high ones (so a fold never pays the bank
//! conflict), outputs and bias rows in the accumulator. The compiler owns every
//! hazard, so each buffer reuse is guarded by a dependency token:
//!
//! | FIFO | pushed by | popped by | orders |
//! |---|---|---|---|
//! | load→compute | last load of a step | first compute of the step | loads land before the folds read them |
//! | compute→load | last compute of a step | first load that refills its A/W/bias buffer | folds read before the refill |
//! | compute→store | last compute of a tile | first store of the tile | results before the store reads them |
//! | store→compute | last store of a tile | first compute of the tile two later | the store drained the buffer before it is overwritten |
//!
//! Instructions are emitted as `barrier, L(0), C(0), L(1), S, C(1), L(2), …`:
//! every token is pushed by an instruction earlier in the stream than its
//! popper, and at most two tokens wait in any FIFO, so the stream cannot
//! deadlock whatever the queue depths.
//!
//! Between ops a [`Chain`] carries one token: each GEMM opens with a compute-queue
//! barrier (the `config gemm_a_zero_point` it needs anyway) that pops the token
//! the previous op's last store pushed and releases this op's first load, so
//! the loads see everything earlier ops stored and never overwrite a buffer an
//! earlier fold still reads. [`finish`] ends a stream by popping it.
//!
//! Tile sizes come from the analytical model in `tessera_cost_model::accel`:
//! [`plan_gemm`] enumerates the legal tilings, prices each, and keeps the
//! cheapest (ties go to the first in enumeration order, so the choice is
//! deterministic).

use tessera_accel_isa::{
    Config, Finish, Gemm, HwConfig, Insn, Load, Op, Store, VecOp, Vector, GRANULE,
};
use tessera_cost_model::accel::{AccelParams, Estimate, Schedule, Step};

pub use tessera_accel_isa::GemmMode;

/// A row-major matrix in DRAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DramMat {
    /// Byte address of element (0, 0).
    pub addr: u64,
    /// Distance between rows: in elements for A and C, in bytes for the packed
    /// rows of W.
    pub row_stride: u64,
}

/// Requantization on store: `q = clamp(round_half_even(acc·mult / 2^shift) +
/// zero_point, clamp_lo, clamp_hi)` (integer modes only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requant {
    pub mult: u16,
    pub shift: u8,
    pub zero_point: i32,
    pub clamp_lo: i8,
    pub clamp_hi: i8,
}

impl Requant {
    /// Encodes a real scale as `mult / 2^shift` with the largest shift that
    /// keeps `mult` below 2^16 (the rule in `docs/accel-isa.md`).
    pub fn from_scale(
        scale: f64,
        zero_point: i32,
        clamp_lo: i8,
        clamp_hi: i8,
    ) -> Result<Requant, String> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!(
                "requantization scale {scale} is not a positive finite number"
            ));
        }
        for shift in (0..=31u8).rev() {
            let mult = (scale * 2f64.powi(shift as i32)).round();
            if (1.0..65536.0).contains(&mult) {
                return Ok(Requant {
                    mult: mult as u16,
                    shift,
                    zero_point,
                    clamp_lo,
                    clamp_hi,
                });
            }
        }
        Err(format!(
            "requantization scale {scale} is outside [2^-32, 2^16)"
        ))
    }
}

/// What a store writes for each accumulator word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmOutput {
    /// The raw 32-bit word: i32 in the integer modes, f32 bits in LUT mode.
    Word32,
    /// Requantized int8 (integer modes).
    Int8(Requant),
    /// The f32 word rounded to bf16 (LUT mode).
    Bf16,
}

impl GemmOutput {
    fn bytes(self) -> u64 {
        match self {
            GemmOutput::Word32 => 4,
            GemmOutput::Int8(_) => 1,
            GemmOutput::Bf16 => 2,
        }
    }
}

/// One quantized GEMM: `C = A · Wᵀ (+ bias)`, A is M×K, W is N×K, C is M×N.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmSpec {
    /// Names the op in error messages (the IR node).
    pub name: String,
    pub m: u64,
    pub k: u64,
    pub n: u64,
    /// Activation × weight types; `Bf16xI2` is the LUT mode (f32 accumulation).
    pub mode: GemmMode,
    pub a: DramMat,
    /// N packed rows of K weights. Bits of a row past K must be zero.
    pub w: DramMat,
    /// DRAM address of N 32-bit words (i32; f32 in LUT mode) added to every row.
    pub bias: Option<u64>,
    pub c: DramMat,
    /// Subtracted from every activation (integer modes).
    pub a_zero_point: i32,
    pub out: GemmOutput,
}

/// Which of M and N the loop nest walks first (outermost).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopOrder {
    /// M outer: an A tile spanning all of K stays resident across the n-tiles.
    Mnk,
    /// N outer: a W tile spanning all of K stays resident across the m-tiles.
    Nmk,
}

/// Tile sizes of one schedule. `n_tile` and `k_tile` are multiples of the
/// array size (the last tile of each dimension may be partial).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tiling {
    pub m_tile: u64,
    pub n_tile: u64,
    pub k_tile: u64,
    pub order: LoopOrder,
}

/// What [`emit_gemm`] chose and what the model predicts for it.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmPlan {
    pub tiling: Tiling,
    pub estimate: Estimate,
    /// Instructions emitted (0 for [`plan_gemm`]).
    pub insns: usize,
    pub macs: u64,
    /// DRAM bytes moved by the loads and stores of the schedule.
    pub dram_bytes: u64,
}

/// The token handshake between consecutive ops of one stream (see the module
/// documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The last op's final store pushed a token towards the compute queue that
    /// the next compute instruction must pop.
    pub store_token_pending: bool,
}

/// Bytes of one packed weight row of `k` weights.
pub fn weight_row_bytes(k: u64, mode: GemmMode) -> u64 {
    (k * mode.weight_bits()).div_ceil(8)
}

/// Packs W (N×K row-major, one row per output column) into the layout the
/// GEMM reads: N rows of `weight_row_bytes(K)` bytes, element `kk` of a byte
/// in its low bits first, unused high bits zero.
pub fn pack_weights(w: &[i8], n: u64, k: u64, mode: GemmMode) -> Result<Vec<u8>, String> {
    if w.len() as u64 != n * k {
        return Err(format!(
            "pack_weights: {} values for a {n}x{k} weight",
            w.len()
        ));
    }
    let bits = mode.weight_bits() as usize;
    let (lo, hi) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
    let rb = weight_row_bytes(k, mode) as usize;
    let mut out = vec![0u8; n as usize * rb];
    for (i, &v) in w.iter().enumerate() {
        if (v as i32) < lo || (v as i32) > hi {
            return Err(format!(
                "pack_weights: weight {v} does not fit in {bits} bits"
            ));
        }
        let (row, kk) = (i / k as usize, i % k as usize);
        let bit = kk * bits;
        let mask = ((1u16 << bits) - 1) as u8;
        out[row * rb + bit / 8] |= ((v as u8) & mask) << (bit % 8);
    }
    Ok(out)
}

/// Chooses the cheapest legal tiling under the analytical model.
pub fn plan_gemm(spec: &GemmSpec, cfg: &HwConfig) -> Result<GemmPlan, String> {
    let geo = Geometry::new(spec, cfg)?;
    let mut best: Option<(Tiling, Plan)> = None;
    for t in geo.candidates() {
        let Ok(plan) = geo.plan(t) else { continue };
        if best
            .as_ref()
            .is_none_or(|(_, b)| plan.estimate.cycles < b.estimate.cycles)
        {
            best = Some((t, plan));
        }
    }
    let (tiling, plan) = best.ok_or_else(|| {
        format!(
            "{}: no tiling of the {}x{}x{} GEMM fits configuration '{}'",
            spec.name, spec.m, spec.k, spec.n, cfg.name
        )
    })?;
    Ok(plan.summary(tiling, 0))
}

/// Every tiling [`plan_gemm`] considers that fits the configuration.
pub fn legal_tilings(spec: &GemmSpec, cfg: &HwConfig) -> Result<Vec<Tiling>, String> {
    let geo = Geometry::new(spec, cfg)?;
    Ok(geo.candidates().filter(|&t| geo.plan(t).is_ok()).collect())
}

/// The model's prediction for one tiling.
pub fn estimate_gemm(spec: &GemmSpec, cfg: &HwConfig, tiling: Tiling) -> Result<GemmPlan, String> {
    let geo = Geometry::new(spec, cfg)?;
    Ok(geo.plan(tiling)?.summary(tiling, 0))
}

/// Plans the GEMM ([`plan_gemm`]) and appends its instructions to `insns`.
pub fn emit_gemm(
    insns: &mut Vec<Insn>,
    chain: &mut Chain,
    spec: &GemmSpec,
    cfg: &HwConfig,
) -> Result<GemmPlan, String> {
    let tiling = plan_gemm(spec, cfg)?.tiling;
    emit_gemm_tiled(insns, chain, spec, cfg, tiling)
}

/// Appends the instructions of the GEMM with a given tiling.
pub fn emit_gemm_tiled(
    insns: &mut Vec<Insn>,
    chain: &mut Chain,
    spec: &GemmSpec,
    cfg: &HwConfig,
    tiling: Tiling,
) -> Result<GemmPlan, String> {
    let geo = Geometry::new(spec, cfg)?;
    let plan = geo.plan(tiling)?;
    let before = insns.len();
    geo.emit(&plan, insns, chain)?;
    Ok(plan.summary(tiling, insns.len() - before))
}

/// Ends a stream: `finish`, popping the token the last op left.
pub fn finish(insns: &mut Vec<Insn>, chain: &mut Chain) {
    let pop = std::mem::take(&mut chain.store_token_pending);
    insns.push(Insn::new(Op::Finish(Finish {})).with_deps(false, pop, false, false));
}

// ---------------------------------------------------------------------------

/// Largest `y_size` of a load and `m` of a gemm (10-bit fields).
const MAX_ROWS: u64 = 1023;
/// Largest `y_size` of a store (9-bit field).
const MAX_STORE_ROWS: u64 = 511;
/// Largest gemm loop trip count and tile step (5-bit fields).
const MAX_ITER: u64 = 31;
const MAX_STRIDE: u64 = 65535;

/// The spec checked against the configuration, with derived sizes.
struct Geometry<'a> {
    spec: &'a GemmSpec,
    cfg: &'a HwConfig,
    p: AccelParams,
    dim: u64,
    act_bytes: u64,
}

/// One iteration of the loop nest.
#[derive(Clone, Debug)]
struct StepPlan {
    m0: u64,
    m: u64,
    n0: u64,
    n: u64,
    k0: u64,
    k: u64,
    load_a: bool,
    load_w: bool,
    load_bias: bool,
    a_slot: usize,
    w_slot: usize,
    c_slot: usize,
    first_k: bool,
    last_k: bool,
    /// This step's loads pop the token of that compute step.
    pop_after: Option<usize>,
    /// The step's last compute instruction pushes a token to the load queue.
    push_load: bool,
    /// Output tile index (steps of one tile share it).
    tile: usize,
}

struct Plan {
    steps: Vec<StepPlan>,
    tiles: usize,
    a_slot_granules: u64,
    w_base_granules: u64,
    w_slot_granules: u64,
    c_slot_words: u64,
    bias_base_words: u64,
    bias_slot_words: u64,
    estimate: Estimate,
    dram_bytes: u64,
    macs: u64,
}

impl Plan {
    fn summary(&self, tiling: Tiling, insns: usize) -> GemmPlan {
        GemmPlan {
            tiling,
            estimate: self.estimate,
            insns,
            macs: self.macs,
            dram_bytes: self.dram_bytes,
        }
    }
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

impl<'a> Geometry<'a> {
    fn new(spec: &'a GemmSpec, cfg: &'a HwConfig) -> Result<Geometry<'a>, String> {
        let err = |m: String| Err(format!("{}: {m}", spec.name));
        cfg.check()?;
        let dim = cfg.array_dim as u64;
        if !dim.is_multiple_of(16) {
            return err(format!(
                "array_dim {dim} is not a multiple of 16 (weight tiles must start on 16-byte granules)"
            ));
        }
        if cfg.token_queue_depth < 2 {
            return err("double buffering needs token queues of depth 2 or more".into());
        }
        let (m, k, n) = (spec.m, spec.k, spec.n);
        if m == 0 || k == 0 || n == 0 {
            return err(format!("empty GEMM {m}x{k}x{n}"));
        }
        let lut = spec.mode == GemmMode::Bf16xI2;
        match spec.out {
            GemmOutput::Int8(r) if lut => {
                return err(format!(
                    "int8 requantization needs an integer mode, not LUT ({r:?})"
                ))
            }
            GemmOutput::Int8(r) if r.shift > 31 || r.clamp_lo > r.clamp_hi => {
                return err(format!("bad requantization {r:?}"))
            }
            GemmOutput::Bf16 if !lut => {
                return err("bf16 output needs the LUT mode (f32 accumulators)".into())
            }
            _ => {}
        }
        if lut && spec.a_zero_point != 0 {
            return err("the LUT mode has no activation zero point".into());
        }
        let act_bytes = spec.mode.act_bytes();
        let checks = [
            ("A", spec.a, k, m, act_bytes, k),
            (
                "W",
                spec.w,
                weight_row_bytes(k, spec.mode),
                n,
                1,
                weight_row_bytes(k, spec.mode),
            ),
            ("C", spec.c, n, m, spec.out.bytes(), n),
        ];
        for (what, mat, min_stride, rows, eb, row_elems) in checks {
            if mat.row_stride < min_stride || mat.row_stride > MAX_STRIDE {
                return err(format!(
                    "{what} row stride {} is outside [{min_stride}, {MAX_STRIDE}]",
                    mat.row_stride
                ));
            }
            let end = mat.addr + ((rows - 1) * mat.row_stride + row_elems) * eb;
            if end > 1 << 32 {
                return err(format!("{what} ends past the 32-bit DRAM address space"));
            }
        }
        if spec.bias.is_some_and(|b| b + 4 * n > 1 << 32) {
            return err("bias ends past the 32-bit DRAM address space".into());
        }
        Ok(Geometry {
            spec,
            cfg,
            p: AccelParams::from_config(cfg),
            dim,
            act_bytes,
        })
    }

    fn w_row_bytes(&self, k: u64) -> u64 {
        weight_row_bytes(k, self.spec.mode)
    }

    /// Granules of one dense A fold tile of `m` rows and `k` columns.
    fn a_tile(&self, m: u64, k: u64) -> u64 {
        ceil_div(m * k * self.act_bytes, GRANULE)
    }

    /// Granules of one dense W tile of `n` rows of `k` weights.
    fn w_tile(&self, n: u64, k: u64) -> u64 {
        ceil_div(n * self.w_row_bytes(k), GRANULE)
    }

    /// Tile sizes worth pricing: a few splits of each dimension into equal
    /// parts plus powers of two, deduplicated, in a fixed order.
    fn candidates(&self) -> impl Iterator<Item = Tiling> + '_ {
        let d = self.dim;
        let splits = |total: u64, unit: u64, max: u64| -> Vec<u64> {
            let units = ceil_div(total, unit);
            // Powers of two from one array width up (smaller m-tiles only
            // add fill/drain overhead).
            let pow_from = if unit == 1 { d } else { unit };
            let mut v: Vec<u64> = (1..=8u64)
                .map(|q| ceil_div(units, q) * unit)
                .chain((0..11).map(|e| (1u64 << e) * pow_from))
                .map(|t| t.min(units * unit).min(max))
                .filter(|&t| t > 0)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let ms = splits(self.spec.m, 1, MAX_ROWS);
        let ns = splits(self.spec.n, d, (MAX_ROWS / d).min(MAX_ITER) * d);
        let ks = splits(self.spec.k, d, u64::MAX);
        let mut out = vec![];
        for order in [LoopOrder::Mnk, LoopOrder::Nmk] {
            for &m_tile in &ms {
                for &n_tile in &ns {
                    for &k_tile in &ks {
                        out.push(Tiling {
                            m_tile,
                            n_tile,
                            k_tile,
                            order,
                        });
                    }
                }
            }
        }
        out.into_iter()
    }

    /// Lays out the buffers, walks the loop nest and prices it.
    fn plan(&self, t: Tiling) -> Result<Plan, String> {
        let (spec, cfg, d) = (self.spec, self.cfg, self.dim);
        let bad = |m: String| Err(format!("{}: tiling {t:?}: {m}", spec.name));
        if t.m_tile == 0 || t.m_tile > MAX_ROWS {
            return bad("m_tile must be in 1..=1023".into());
        }
        if t.n_tile == 0
            || !t.n_tile.is_multiple_of(d)
            || t.n_tile / d > MAX_ITER
            || t.n_tile > MAX_ROWS
        {
            return bad(format!(
                "n_tile must be a multiple of {d}, at most 31 array widths and 1023 rows"
            ));
        }
        if t.k_tile == 0 || !t.k_tile.is_multiple_of(d) {
            return bad(format!("k_tile must be a multiple of {d}"));
        }
        let mt = t.m_tile.min(spec.m);
        let nt = t.n_tile.min(spec.n.next_multiple_of(d));
        let kt = t.k_tile.min(spec.k.next_multiple_of(d));
        // Buffer sizes at the largest tile (partial tiles use less).
        let a_slot = ceil_div(kt, d) * self.a_tile(mt, d);
        let w_slot = ceil_div(kt, d) * (nt / d) * self.w_tile(d, d);
        let banks = cfg.sp_banks as u64;
        let bank = cfg.sp_bytes / banks / GRANULE;
        let total = cfg.sp_bytes / GRANULE;
        // A in the low banks, W in the high ones: a fold's operands never
        // start in the same bank. With one bank that cannot be helped.
        let a_region = if banks >= 2 {
            match (1..banks).map(|b| b * bank).find(|&r| 2 * a_slot <= r) {
                Some(r) => r,
                None => return bad("A tiles do not fit the scratchpad".into()),
            }
        } else {
            2 * a_slot
        };
        if 2 * a_slot > a_region || a_region + 2 * w_slot > total {
            return bad("A and W tiles do not fit the scratchpad".into());
        }
        let c_slot = mt * nt;
        let bias_words = if spec.bias.is_some() { 2 * nt } else { 0 };
        if 2 * c_slot + bias_words > cfg.acc_words() {
            return bad("output tiles do not fit the accumulator".into());
        }

        let (mtiles, ntiles, ktiles) = (
            ceil_div(spec.m, mt),
            ceil_div(spec.n, nt),
            ceil_div(spec.k, kt),
        );
        let mut steps: Vec<StepPlan> = vec![];
        // The (m-tile or n-tile, k-tile) whose A and W tiles are resident.
        let mut a_cur: Option<(u64, u64)> = None;
        let mut w_cur: Option<(u64, u64)> = None;
        let (mut a_slot_i, mut w_slot_i) = (1usize, 1usize);
        // Last compute step that read each buffer slot: [A, W, bias] x 2.
        let mut last_reader = [[None::<usize>; 2]; 3];
        let mut waited: Option<usize> = None;
        let mut tile = 0usize;
        for outer in 0..(if t.order == LoopOrder::Mnk {
            mtiles
        } else {
            ntiles
        }) {
            for inner in 0..(if t.order == LoopOrder::Mnk {
                ntiles
            } else {
                mtiles
            }) {
                let (mi, ni) = if t.order == LoopOrder::Mnk {
                    (outer, inner)
                } else {
                    (inner, outer)
                };
                for ki in 0..ktiles {
                    let s = steps.len();
                    let load_a = a_cur != Some((mi, ki));
                    let load_w = w_cur != Some((ni, ki));
                    if load_a {
                        a_slot_i ^= 1;
                        a_cur = Some((mi, ki));
                    }
                    if load_w {
                        w_slot_i ^= 1;
                        w_cur = Some((ni, ki));
                    }
                    let c_slot_i = tile % 2;
                    let load_bias = spec.bias.is_some() && ki == 0;
                    let writes = [
                        (load_a, 0, a_slot_i),
                        (load_w, 1, w_slot_i),
                        (load_bias, 2, c_slot_i),
                    ];
                    let war = writes
                        .iter()
                        .filter(|w| w.0)
                        .filter_map(|&(_, kind, slot)| last_reader[kind][slot])
                        .max();
                    let pop_after = war.filter(|&r| waited.is_none_or(|w| r > w));
                    if let Some(r) = pop_after {
                        if r + 1 >= s {
                            return bad("a refill would wait for the step it feeds".into());
                        }
                        steps[r].push_load = true;
                        waited = Some(r);
                    }
                    last_reader[0][a_slot_i] = Some(s);
                    last_reader[1][w_slot_i] = Some(s);
                    if spec.bias.is_some() {
                        last_reader[2][c_slot_i] = Some(s);
                    }
                    let (m0, n0, k0) = (mi * mt, ni * nt, ki * kt);
                    steps.push(StepPlan {
                        m0,
                        m: mt.min(spec.m - m0),
                        n0,
                        n: nt.min(spec.n - n0),
                        k0,
                        k: kt.min(spec.k - k0),
                        load_a,
                        load_w,
                        load_bias,
                        a_slot: a_slot_i,
                        w_slot: w_slot_i,
                        c_slot: c_slot_i,
                        first_k: ki == 0,
                        last_k: ki + 1 == ktiles,
                        pop_after,
                        push_load: false,
                        tile,
                    });
                    if ki + 1 == ktiles {
                        tile += 1;
                    }
                }
            }
        }
        let mut plan = Plan {
            steps,
            tiles: tile,
            a_slot_granules: a_slot,
            w_base_granules: a_region,
            w_slot_granules: w_slot,
            c_slot_words: c_slot,
            bias_base_words: 2 * c_slot,
            bias_slot_words: nt,
            estimate: Estimate::default(),
            dram_bytes: 0,
            macs: spec.m * spec.k * spec.n,
        };
        self.price(&mut plan, banks < 2);
        Ok(plan)
    }

    /// DMA transfers (bytes each) of a step's loads, in emission order.
    fn load_bytes(&self, st: &StepPlan) -> Vec<u64> {
        let d = self.dim;
        let folds = ceil_div(st.k, d);
        let mut v = vec![];
        for f in 0..folds {
            let kf = d.min(st.k - f * d);
            if st.load_a {
                v.push(st.m * kf * self.act_bytes);
            }
            if st.load_w {
                v.push(st.n * self.w_row_bytes(kf));
            }
        }
        if st.load_bias {
            v.push(4 * st.n);
        }
        v
    }

    /// Stores of a finished tile: (sub-tile column offset, row offset, rows, cols).
    fn store_blocks(&self, st: &StepPlan) -> Vec<(u64, u64, u64, u64)> {
        let d = self.dim;
        let mut v = vec![];
        for j in 0..ceil_div(st.n, d) {
            let nj = d.min(st.n - j * d);
            let mut r0 = 0;
            while r0 < st.m {
                let rows = MAX_STORE_ROWS.min(st.m - r0);
                v.push((j * d, r0, rows, nj));
                r0 += rows;
            }
        }
        v
    }

    fn price(&self, plan: &mut Plan, conflicts: bool) {
        let (p, d) = (&self.p, self.dim);
        let ob = self.spec.out.bytes();
        let mut dram = 0;
        let steps = plan
            .steps
            .iter()
            .map(|st| {
                let loads = self.load_bytes(st);
                dram += loads.iter().sum::<u64>();
                let folds = ceil_div(st.k, d) * ceil_div(st.n, d);
                let conflict = if conflicts {
                    st.k * ceil_div(st.n, d)
                } else {
                    0
                };
                let mut compute = folds * p.fold_cycles(st.m) + conflict;
                if st.load_bias {
                    compute += (0..ceil_div(st.n, d))
                        .map(|j| p.vec_cycles(VecOp::Copy, st.m, d.min(st.n - j * d)))
                        .sum::<u64>();
                }
                let store_cycles = if st.last_k {
                    self.store_blocks(st)
                        .iter()
                        .map(|&(_, _, rows, cols)| {
                            dram += rows * cols * ob;
                            p.dma_cycles(rows * cols * ob)
                        })
                        .sum()
                } else {
                    0
                };
                Step {
                    load_cycles: loads.iter().map(|&b| p.dma_cycles(b)).sum(),
                    load_after: st.pop_after,
                    compute_cycles: compute,
                    starts_tile: st.first_k,
                    store_cycles,
                }
            })
            .collect();
        plan.dram_bytes = dram;
        plan.estimate = Schedule {
            steps,
            out_buffers: 2,
            prologue_cycles: 1,
        }
        .estimate();
    }

    fn emit(&self, plan: &Plan, insns: &mut Vec<Insn>, chain: &mut Chain) -> Result<(), String> {
        let spec = self.spec;
        let out = &mut vec![];
        let pop = chain.store_token_pending;
        out.push(
            Insn::new(Op::Config(Config {
                reg: 1,
                value: spec.a_zero_point,
            }))
            .with_deps(false, pop, true, false),
        );
        if let GemmOutput::Int8(r) = spec.out {
            out.push(Insn::new(Op::Config(Config {
                reg: 0,
                value: r.zero_point,
            })));
        }
        let n = plan.steps.len();
        // The barrier's token releases the first load.
        self.emit_loads(plan, 0, true, out);
        for s in 0..n {
            self.emit_compute(plan, s, out);
            if s + 1 < n {
                self.emit_loads(plan, s + 1, false, out);
            }
            if plan.steps[s].last_k {
                self.emit_stores(plan, s, out);
            }
        }
        for (i, insn) in out.iter().enumerate() {
            insn.encode()
                .map_err(|e| format!("{}: emitted instruction {i}: {}", spec.name, e.msg))?;
        }
        insns.append(out);
        chain.store_token_pending = true;
        Ok(())
    }

    fn a_base(&self, plan: &Plan, st: &StepPlan) -> u64 {
        st.a_slot as u64 * plan.a_slot_granules
    }

    fn w_base(&self, plan: &Plan, st: &StepPlan) -> u64 {
        plan.w_base_granules + st.w_slot as u64 * plan.w_slot_granules
    }

    fn c_base(&self, plan: &Plan, st: &StepPlan) -> u64 {
        st.c_slot as u64 * plan.c_slot_words
    }

    fn bias_base(&self, plan: &Plan, st: &StepPlan) -> u64 {
        plan.bias_base_words + st.c_slot as u64 * plan.bias_slot_words
    }

    fn emit_loads(&self, plan: &Plan, s: usize, after_barrier: bool, out: &mut Vec<Insn>) {
        let (spec, d) = (self.spec, self.dim);
        let st = &plan.steps[s];
        let first = out.len();
        let folds = ceil_div(st.k, d);
        // W fold slabs are `nd` full tiles apart so one gemm can step through them.
        let nd = ceil_div(st.n, d);
        let slab = nd * self.w_tile(d, d);
        let eb_index = if self.act_bytes == 2 { 1 } else { 0 };
        for f in 0..folds {
            let kf = d.min(st.k - f * d);
            let k_abs = st.k0 + f * d;
            if st.load_a {
                out.push(Insn::new(Op::Load(Load {
                    mem: 0,
                    elem_bytes: eb_index,
                    dram: (spec.a.addr + (st.m0 * spec.a.row_stride + k_abs) * self.act_bytes)
                        as u32,
                    sram: (self.a_base(plan, st) + f * self.a_tile(st.m, d)) as u32,
                    y_size: st.m as u32,
                    x_size: kf as u32,
                    x_stride: spec.a.row_stride as u32,
                    ..Default::default()
                })));
            }
            if st.load_w {
                let row_bytes = self.w_row_bytes(kf);
                out.push(Insn::new(Op::Load(Load {
                    mem: 0,
                    elem_bytes: 0,
                    dram: (spec.w.addr
                        + st.n0 * spec.w.row_stride
                        + k_abs * spec.mode.weight_bits() / 8) as u32,
                    sram: (self.w_base(plan, st) + f * slab) as u32,
                    y_size: st.n as u32,
                    x_size: row_bytes as u32,
                    x_stride: spec.w.row_stride as u32,
                    ..Default::default()
                })));
            }
        }
        if let (true, Some(bias)) = (st.load_bias, spec.bias) {
            out.push(Insn::new(Op::Load(Load {
                mem: 1,
                elem_bytes: 2,
                dram: (bias + 4 * st.n0) as u32,
                sram: self.bias_base(plan, st) as u32,
                y_size: 1,
                x_size: st.n as u32,
                x_stride: st.n as u32,
                ..Default::default()
            })));
        }
        if out.len() > first {
            let pop = after_barrier || st.pop_after.is_some();
            // The load queue's only neighbour is compute (its "next").
            out[first].deps.pop_next = pop;
            if let Some(i) = out.last_mut() {
                i.deps.push_next = true;
            }
        }
    }

    fn emit_compute(&self, plan: &Plan, s: usize, out: &mut Vec<Insn>) {
        let (spec, d) = (self.spec, self.dim);
        let st = &plan.steps[s];
        let first = out.len();
        let (m, nd) = (st.m, ceil_div(st.n, d));
        let (a0, w0, c0) = (
            self.a_base(plan, st),
            self.w_base(plan, st),
            self.c_base(plan, st),
        );
        if st.load_bias {
            for j in 0..nd {
                let nj = d.min(st.n - j * d);
                out.push(Insn::new(Op::Vector(Vector {
                    op: VecOp::Copy.index(),
                    dtype: 1,
                    src1_mode: 0,
                    dst: (c0 + j * m * d) as u32,
                    src0: (self.bias_base(plan, st) + j * d) as u32,
                    src1: 0,
                    len: nj as u32,
                    rows: m as u32,
                    stride: 0,
                    dst_stride: nj as u32,
                })));
            }
        }
        // The first fold of a tile overwrites unless a bias was copied in.
        let fresh = st.first_k && spec.bias.is_none();
        let (n_full, n_last) = (st.n / d, st.n % d);
        let (k_full, k_last) = (st.k / d, st.k % d);
        let slab = nd * self.w_tile(d, d);
        let a_full = self.a_tile(m, d);
        let gemm = |k: u64, n: u64, a: u64, w: u64, c: u64| Gemm {
            mode: spec.mode as u8,
            acc_mode: 1,
            m: m as u32,
            k: k as u32,
            n: n as u32,
            a: a as u32,
            w: w as u32,
            c: c as u32,
            iter_out: 1,
            iter_in: 1,
            ..Default::default()
        };
        let emit_full_folds = |n: u64, cols: u64, w_col: u64, c_col: u64, out: &mut Vec<Insn>| {
            // Folds 0..k_full of `cols` sub-tiles (stepped by iter_out) of width n.
            let w_tile = self.w_tile(n, d);
            let w_in = if slab.is_multiple_of(w_tile) {
                slab / w_tile
            } else {
                0
            };
            let chunk = if (1..=MAX_ITER).contains(&w_in) {
                MAX_ITER
            } else {
                1
            };
            let mut f = 0;
            while f < k_full {
                let len = chunk.min(k_full - f);
                let mut g = gemm(d, n, a0 + f * a_full, w0 + w_col + f * slab, c0 + c_col);
                g.iter_out = cols as u8;
                g.iter_in = len as u8;
                g.a_in = 1;
                g.w_out = 1;
                g.w_in = if len > 1 { w_in as u8 } else { 0 };
                g.c_out = 1;
                g.acc_mode = if !fresh || f > 0 {
                    1
                } else if len > 1 {
                    2
                } else {
                    0
                };
                out.push(Insn::new(Op::Gemm(g)));
                f += len;
            }
        };
        if n_full > 0 {
            emit_full_folds(d, n_full, 0, 0, out);
        }
        if n_last > 0 {
            emit_full_folds(n_last, 1, n_full * self.w_tile(d, d), n_full * m * d, out);
        }
        if k_last > 0 {
            let a = a0 + k_full * a_full;
            let w = w0 + k_full * slab;
            let acc_mode = if fresh && k_full == 0 { 0 } else { 1 };
            if n_full > 0 {
                let mut g = gemm(k_last, d, a, w, c0);
                g.iter_out = n_full as u8;
                g.w_out = 1;
                g.c_out = 1;
                g.acc_mode = acc_mode;
                out.push(Insn::new(Op::Gemm(g)));
            }
            if n_last > 0 {
                let mut g = gemm(
                    k_last,
                    n_last,
                    a,
                    w + n_full * self.w_tile(d, k_last),
                    c0 + n_full * m * d,
                );
                g.acc_mode = acc_mode;
                out.push(Insn::new(Op::Gemm(g)));
            }
        }
        let starts_reuse = st.first_k && st.tile >= 2;
        out[first].deps.pop_prev = st.load_a || st.load_w || st.load_bias;
        out[first].deps.pop_next = starts_reuse;
        let last = out.len() - 1;
        out[last].deps.push_prev = st.push_load;
        out[last].deps.push_next = st.last_k;
    }

    fn emit_stores(&self, plan: &Plan, s: usize, out: &mut Vec<Insn>) {
        let spec = self.spec;
        let st = &plan.steps[s];
        let first = out.len();
        let c0 = self.c_base(plan, st);
        let ob = spec.out.bytes();
        let (fmt, req) = match spec.out {
            GemmOutput::Int8(r) => (0, Some(r)),
            GemmOutput::Word32 => (1, None),
            GemmOutput::Bf16 => (2, None),
        };
        for (col, r0, rows, cols) in self.store_blocks(st) {
            let sub = c0 + col * st.m + r0 * cols;
            out.push(Insn::new(Op::Store(Store {
                fmt,
                dram: (spec.c.addr + ((st.m0 + r0) * spec.c.row_stride + st.n0 + col) * ob) as u32,
                sram: sub as u32,
                y_size: rows as u32,
                x_size: cols as u32,
                x_stride: spec.c.row_stride as u32,
                mult: req.map_or(0, |r| r.mult as u32),
                shift: req.map_or(0, |r| r.shift),
                clamp_lo: req.map_or(0, |r| r.clamp_lo),
                clamp_hi: req.map_or(0, |r| r.clamp_hi),
            })));
        }
        // Tile t's store frees its buffer for tile t+2; the last tile's token
        // is the op's exit token (see `Chain`).
        let t = st.tile;
        let push = t + 2 < plan.tiles || t + 1 == plan.tiles;
        out[first].deps.pop_prev = true;
        let last = out.len() - 1;
        out[last].deps.push_prev = push;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tessera_accel_isa::{bf16_to_f32, f32_to_bf16, Buffer, DType, Role, Stream};
    use tessera_sim::Simulator;

    /// xorshift: deterministic test data without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }
    }

    struct Case {
        m: u64,
        k: u64,
        n: u64,
        mode: GemmMode,
        bias: bool,
        out: GemmOutput,
        a_zero_point: i32,
        /// Extra elements at the end of each A and C row (strided views).
        pad: u64,
    }

    /// Runs the case on the simulator; returns the output bytes and the
    /// expected bytes from a plain matmul following the ISA's arithmetic.
    fn run(
        case: &Case,
        cfg: &HwConfig,
        tiling: Option<Tiling>,
        seed: u64,
    ) -> (Vec<u8>, Vec<u8>, GemmPlan) {
        let mut rng = Rng(seed | 1);
        let (m, k, n) = (case.m, case.k, case.n);
        let lut = case.mode == GemmMode::Bf16xI2;
        let bits = case.mode.weight_bits() as i64;
        let (wlo, whi) = (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1);
        let a_stride = k + case.pad;
        let a_vals: Vec<f32> = (0..m * a_stride)
            .map(|_| {
                if lut {
                    bf16_to_f32(f32_to_bf16(rng.range(-4000, 4000) as f32 / 64.0))
                } else {
                    rng.range(-128, 127) as f32
                }
            })
            .collect();
        let w: Vec<i8> = (0..n * k).map(|_| rng.range(wlo, whi) as i8).collect();
        let bias: Vec<i32> = (0..n).map(|_| rng.range(-5000, 5000) as i32).collect();
        let bias_words: Vec<u32> = bias
            .iter()
            .map(|&b| {
                if lut {
                    (b as f32 / 8.0).to_bits()
                } else {
                    b as u32
                }
            })
            .collect();
        let a_bytes: Vec<u8> = a_vals
            .iter()
            .flat_map(|&v| {
                if lut {
                    f32_to_bf16(v).to_le_bytes().to_vec()
                } else {
                    vec![v as i8 as u8]
                }
            })
            .collect();
        let wp = pack_weights(&w, n, k, case.mode).unwrap();
        let ob = case.out.bytes();
        let c_stride = n + case.pad;
        let a_addr = 0u64;
        let w_addr = (a_bytes.len() as u64).next_multiple_of(64);
        let bias_addr = (w_addr + wp.len() as u64).next_multiple_of(64);
        let c_addr = (bias_addr + 4 * n).next_multiple_of(64);
        let c_len = m * c_stride * ob;
        let spec = GemmSpec {
            name: "gemm_test".into(),
            m,
            k,
            n,
            mode: case.mode,
            a: DramMat {
                addr: a_addr,
                row_stride: a_stride,
            },
            w: DramMat {
                addr: w_addr,
                row_stride: weight_row_bytes(k, case.mode),
            },
            bias: case.bias.then_some(bias_addr),
            c: DramMat {
                addr: c_addr,
                row_stride: c_stride,
            },
            a_zero_point: case.a_zero_point,
            out: case.out,
        };
        let mut insns = vec![];
        let mut chain = Chain::default();
        let plan = match tiling {
            Some(t) => emit_gemm_tiled(&mut insns, &mut chain, &spec, cfg, t),
            None => emit_gemm(&mut insns, &mut chain, &spec, cfg),
        }
        .unwrap();
        finish(&mut insns, &mut chain);
        let mut image = wp.clone();
        image.resize((bias_addr - w_addr) as usize, 0);
        image.extend(bias_words.iter().flat_map(|b| b.to_le_bytes()));
        let stream = Stream {
            config_hash: cfg.hash(),
            dram_size: c_addr + c_len,
            buffers: vec![
                Buffer {
                    name: "a".into(),
                    role: Role::Input,
                    dtype: DType::U8,
                    shape: vec![a_bytes.len() as u64],
                    addr: a_addr,
                },
                Buffer {
                    name: "c".into(),
                    role: Role::Output,
                    dtype: DType::U8,
                    shape: vec![c_len],
                    addr: c_addr,
                },
            ],
            insns,
            image_base: w_addr,
            image,
            ..Default::default()
        };
        let inputs = BTreeMap::from([("a".to_string(), a_bytes)]);
        let (out, report) = Simulator::new(cfg.clone()).run(&stream, &inputs).unwrap();
        assert_eq!(report.unconsumed_tokens, 0, "every pushed token is popped");
        assert_eq!(report.macs, m * k * n);

        // The expected output, written independently of the tiling: one dot
        // product per element in K order, the ISA's rounding rules.
        let mut expect = vec![0u8; c_len as usize];
        for r in 0..m {
            for j in 0..n {
                let at = ((r * c_stride + j) * ob) as usize;
                let a_row = &a_vals[(r * a_stride) as usize..][..k as usize];
                let w_row = &w[(j * k) as usize..][..k as usize];
                let word: u32 = if lut {
                    let mut acc = if case.bias {
                        f32::from_bits(bias_words[j as usize])
                    } else {
                        0.0
                    };
                    for g in (0..k as usize).step_by(4) {
                        let mut p: Option<f32> = None;
                        for kk in g..(g + 4).min(k as usize) {
                            let prod = a_row[kk] * w_row[kk] as f32;
                            p = Some(p.map_or(prod, |s| s + prod));
                        }
                        acc += p.unwrap_or(0.0);
                    }
                    acc.to_bits()
                } else {
                    let mut acc = if case.bias { bias[j as usize] } else { 0 };
                    for kk in 0..k as usize {
                        let av = (a_row[kk] as i32).wrapping_sub(case.a_zero_point);
                        acc = acc.wrapping_add(av.wrapping_mul(w_row[kk] as i32));
                    }
                    acc as u32
                };
                match case.out {
                    GemmOutput::Word32 => expect[at..at + 4].copy_from_slice(&word.to_le_bytes()),
                    GemmOutput::Bf16 => expect[at..at + 2]
                        .copy_from_slice(&f32_to_bf16(f32::from_bits(word)).to_le_bytes()),
                    GemmOutput::Int8(q) => {
                        let prod = word as i32 as i128 * q.mult as i128;
                        let div = 1i128 << q.shift;
                        // Round half to even by hand, as the ISA states it.
                        let fl = prod.div_euclid(div);
                        let rem = prod.rem_euclid(div);
                        let rounded = if 2 * rem > div || (2 * rem == div && fl % 2 != 0) {
                            fl + 1
                        } else {
                            fl
                        };
                        let v = (rounded + q.zero_point as i128)
                            .clamp(q.clamp_lo as i128, q.clamp_hi as i128);
                        expect[at] = v as i8 as u8;
                    }
                }
            }
        }
        // Padding columns of C are never written: mask them out.
        let mut got = out.outputs["c"].clone();
        for r in 0..m {
            for j in n..c_stride {
                for b in 0..ob {
                    got[((r * c_stride + j) * ob + b) as usize] = 0;
                }
            }
        }
        (got, expect, plan)
    }

    fn requant() -> GemmOutput {
        GemmOutput::Int8(Requant::from_scale(0.0123, -3, -100, 120).unwrap())
    }

    #[test]
    fn random_gemms_are_bit_exact_on_both_presets() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let modes = [
            GemmMode::I8xI8,
            GemmMode::I8xI4,
            GemmMode::I8xI2,
            GemmMode::Bf16xI2,
        ];
        for (cfg, kmax) in [(HwConfig::edge(), 300), (HwConfig::server(), 400)] {
            for i in 0..16 {
                let mode = modes[i % 4];
                let lut = mode == GemmMode::Bf16xI2;
                let case = Case {
                    m: rng.range(1, 150) as u64,
                    k: rng.range(1, kmax) as u64,
                    n: rng.range(1, 150) as u64,
                    mode,
                    bias: i % 3 != 0,
                    out: match (lut, i % 2) {
                        (true, 0) => GemmOutput::Bf16,
                        (false, 0) => requant(),
                        _ => GemmOutput::Word32,
                    },
                    a_zero_point: if lut { 0 } else { rng.range(-5, 5) as i32 },
                    pad: (i % 3) as u64,
                };
                let (got, want, plan) = run(&case, &cfg, None, i as u64 + 1);
                assert!(
                    got == want,
                    "{} {}x{}x{} {:?} {:?}: output differs",
                    cfg.name,
                    case.m,
                    case.k,
                    case.n,
                    mode,
                    plan.tiling
                );
            }
        }
    }

    #[test]
    fn every_tiling_and_loop_order_is_bit_exact() {
        // K spans several k-tiles and ends in a partial fold; N ends in a
        // partial sub-tile; M in a partial m-tile.
        let cfg = HwConfig::edge();
        let case = Case {
            m: 37,
            k: 83,
            n: 45,
            mode: GemmMode::I8xI8,
            bias: true,
            out: requant(),
            a_zero_point: 2,
            pad: 1,
        };
        let spec_tilings = [
            (16, 16, 16),
            (16, 32, 32),
            (37, 48, 96),
            (20, 16, 48),
            (8, 48, 16),
        ];
        for (mt, nt, kt) in spec_tilings {
            for order in [LoopOrder::Mnk, LoopOrder::Nmk] {
                let t = Tiling {
                    m_tile: mt,
                    n_tile: nt,
                    k_tile: kt,
                    order,
                };
                let (got, want, _) = run(&case, &cfg, Some(t), 7);
                assert!(got == want, "{t:?}: output differs");
            }
        }
    }

    #[test]
    fn chained_gemms_order_through_dram() {
        // C1 = A·W1ᵀ (requantized int8), then C2 = C1·W2ᵀ reads C1 from DRAM:
        // the barrier must hold the second GEMM's loads until the first's
        // stores finish, or C2 is computed from stale memory.
        let cfg = HwConfig::edge();
        let (m, k, n1, n2) = (40u64, 50u64, 70u64, 30u64);
        let mut rng = Rng(42);
        let a: Vec<i8> = (0..m * k).map(|_| rng.range(-128, 127) as i8).collect();
        let w1: Vec<i8> = (0..n1 * k).map(|_| rng.range(-128, 127) as i8).collect();
        let w2: Vec<i8> = (0..n2 * n1).map(|_| rng.range(-128, 127) as i8).collect();
        let q = Requant::from_scale(0.002, 0, -128, 127).unwrap();
        let (a_at, w1_at, w2_at, c1_at, c2_at) = (0u64, 4096u64, 8192u64, 16384u64, 24576u64);
        let spec1 = GemmSpec {
            name: "g1".into(),
            m,
            k,
            n: n1,
            mode: GemmMode::I8xI8,
            a: DramMat {
                addr: a_at,
                row_stride: k,
            },
            w: DramMat {
                addr: w1_at,
                row_stride: k,
            },
            bias: None,
            c: DramMat {
                addr: c1_at,
                row_stride: n1,
            },
            a_zero_point: 0,
            out: GemmOutput::Int8(q),
        };
        let spec2 = GemmSpec {
            name: "g2".into(),
            m,
            k: n1,
            n: n2,
            mode: GemmMode::I8xI8,
            a: DramMat {
                addr: c1_at,
                row_stride: n1,
            },
            w: DramMat {
                addr: w2_at,
                row_stride: n1,
            },
            bias: None,
            c: DramMat {
                addr: c2_at,
                row_stride: n2,
            },
            a_zero_point: 0,
            out: GemmOutput::Word32,
        };
        let mut insns = vec![];
        let mut chain = Chain::default();
        emit_gemm(&mut insns, &mut chain, &spec1, &cfg).unwrap();
        emit_gemm(&mut insns, &mut chain, &spec2, &cfg).unwrap();
        finish(&mut insns, &mut chain);
        let mut image = vec![0u8; (c1_at - w1_at) as usize];
        image[..w1.len()].copy_from_slice(&pack_weights(&w1, n1, k, GemmMode::I8xI8).unwrap());
        image[(w2_at - w1_at) as usize..][..w2.len()]
            .copy_from_slice(&pack_weights(&w2, n2, n1, GemmMode::I8xI8).unwrap());
        let stream = Stream {
            config_hash: cfg.hash(),
            dram_size: c2_at + m * n2 * 4,
            buffers: vec![
                Buffer {
                    name: "a".into(),
                    role: Role::Input,
                    dtype: DType::I8,
                    shape: vec![m, k],
                    addr: a_at,
                },
                Buffer {
                    name: "c".into(),
                    role: Role::Output,
                    dtype: DType::I32,
                    shape: vec![m, n2],
                    addr: c2_at,
                },
            ],
            insns,
            image_base: w1_at,
            image,
            ..Default::default()
        };
        let inputs = BTreeMap::from([("a".to_string(), a.iter().map(|&v| v as u8).collect())]);
        let (out, _) = Simulator::new(cfg).run(&stream, &inputs).unwrap();
        let c1: Vec<i32> = (0..m * n1)
            .map(|i| {
                let (r, j) = (i / n1, i % n1);
                let acc: i32 = (0..k)
                    .map(|kk| a[(r * k + kk) as usize] as i32 * w1[(j * k + kk) as usize] as i32)
                    .sum();
                let p = acc as i64 * q.mult as i64;
                let d = 1i64 << q.shift;
                let (fl, rem) = (p.div_euclid(d), p.rem_euclid(d));
                let r = if 2 * rem > d || (2 * rem == d && fl % 2 != 0) {
                    fl + 1
                } else {
                    fl
                };
                r.clamp(-128, 127) as i32
            })
            .collect();
        let c2: Vec<u8> = (0..m * n2)
            .flat_map(|i| {
                let (r, j) = (i / n2, i % n2);
                let acc: i32 = (0..n1)
                    .map(|kk| c1[(r * n1 + kk) as usize] * w2[(j * n1 + kk) as usize] as i32)
                    .sum();
                acc.to_le_bytes()
            })
            .collect();
        assert!(out.outputs["c"] == c2, "the second GEMM saw stale DRAM");
    }

    #[test]
    fn the_planner_is_deterministic_and_prefers_reuse() {
        let cfg = HwConfig::edge();
        let spec = GemmSpec {
            name: "ffn1".into(),
            m: 128,
            k: 768,
            n: 3072,
            mode: GemmMode::I8xI8,
            a: DramMat {
                addr: 0,
                row_stride: 768,
            },
            w: DramMat {
                addr: 1 << 20,
                row_stride: 768,
            },
            bias: Some(8 << 20),
            c: DramMat {
                addr: 16 << 20,
                row_stride: 3072,
            },
            a_zero_point: 0,
            out: requant(),
        };
        let p1 = plan_gemm(&spec, &cfg).unwrap();
        let p2 = plan_gemm(&spec, &cfg).unwrap();
        assert_eq!(p1, p2);
        // Every weight byte is loaded once and A is not re-read per n-tile:
        // traffic within 2x of the compulsory A + W + C bytes.
        let compulsory = 128 * 768 + 768 * 3072 + 128 * 3072 + 4 * 3072;
        assert!(p1.dram_bytes < 2 * compulsory, "{p1:?}");
        // Whatever it picked is no worse than any other legal tiling.
        for t in legal_tilings(&spec, &cfg).unwrap() {
            assert!(estimate_gemm(&spec, &cfg, t).unwrap().estimate.cycles >= p1.estimate.cycles);
        }
    }

    #[test]
    fn bad_specs_are_errors_naming_the_op() {
        let cfg = HwConfig::edge();
        let mut spec = GemmSpec {
            name: "node7".into(),
            m: 4,
            k: 8,
            n: 4,
            mode: GemmMode::I8xI8,
            a: DramMat {
                addr: 0,
                row_stride: 4,
            },
            w: DramMat {
                addr: 64,
                row_stride: 8,
            },
            bias: None,
            c: DramMat {
                addr: 128,
                row_stride: 4,
            },
            a_zero_point: 0,
            out: GemmOutput::Word32,
        };
        let e = plan_gemm(&spec, &cfg).unwrap_err();
        assert!(e.contains("node7") && e.contains("A row stride"), "{e}");
        spec.a.row_stride = 8;
        spec.out = GemmOutput::Bf16;
        assert!(plan_gemm(&spec, &cfg).unwrap_err().contains("LUT"));
        assert!(pack_weights(&[8], 1, 1, GemmMode::I8xI4).is_err());
    }
}
