//! Analytical cycle model of the Tessera accelerator (`docs/accel-isa.md`).
//!
//! Two levels, in the spirit of LLMCompass:
//!
//! - **Unit costs** in closed form from the hardware parameters: a DMA is
//!   `latency + ceil(bytes / (bandwidth / clock))`; a systolic fold is SCALE-Sim's
//!   weight-stationary `2R + C + T - 2`; a vector instruction is
//!   `rows · (ceil(len / lanes) · II + tree) + latency`.
//! - **Overlap** of a double-buffered tile schedule: a schedule is a list of
//!   [`Step`]s (a group of loads, a block of compute-queue work, the stores that
//!   drain a finished output tile), and the three queues are modelled as a
//!   pipeline recurrence over steps: a load group waits for the compute step
//!   that last read the buffer it refills, a compute step waits for its loads
//!   and for the store that frees its output buffer, stores wait for the
//!   compute that finished their tile.
//!
//! The model prices whole steps, never individual instructions, and knows
//! nothing of the instruction stream, the dispatcher or the queue depths; the
//! simulator (`accel/sim`) is what it is validated against
//! (`backends/accel/tests/cost_mape.rs`).

use tessera_accel_isa::{HwConfig, VecOp};

/// The hardware parameters the model reads from an accelerator configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct AccelParams {
    pub array_dim: u64,
    pub dram_bytes_per_cycle: f64,
    pub dram_latency: u64,
    pub vec_lanes: u64,
    pub vec_special_ii: u64,
    pub vec_latency: u64,
    pub clock_mhz: f64,
}

impl AccelParams {
    pub fn from_config(cfg: &HwConfig) -> AccelParams {
        AccelParams {
            array_dim: cfg.array_dim as u64,
            dram_bytes_per_cycle: cfg.dram_bytes_per_cycle(),
            dram_latency: cfg.dram_latency_cycles,
            vec_lanes: cfg.vec_lanes as u64,
            vec_special_ii: cfg.vec_special_ii as u64,
            vec_latency: cfg.vec_latency,
            clock_mhz: cfg.clock_mhz,
        }
    }

    /// One DMA transfer of `bytes` DRAM bytes.
    pub fn dma_cycles(&self, bytes: u64) -> u64 {
        self.dram_latency + (bytes as f64 / self.dram_bytes_per_cycle).ceil() as u64
    }

    /// One fold of the weight-stationary array streaming `m` rows: fill the
    /// `R` weight rows, stream `T = m` inputs, drain through `C` columns.
    /// The array is always filled and drained in full, whatever part a tile uses.
    pub fn fold_cycles(&self, m: u64) -> u64 {
        2 * self.array_dim + self.array_dim + m - 2
    }

    /// One vector instruction over `rows` rows of `len` words.
    pub fn vec_cycles(&self, op: VecOp, rows: u64, len: u64) -> u64 {
        let ii = if op.is_special() {
            self.vec_special_ii
        } else {
            1
        };
        let tree = if op.is_reduction() {
            self.vec_lanes.next_power_of_two().trailing_zeros() as u64
        } else {
            0
        };
        rows * (len.div_ceil(self.vec_lanes) * ii + tree) + self.vec_latency
    }

    pub fn seconds(&self, cycles: u64) -> f64 {
        cycles as f64 / (self.clock_mhz * 1e6)
    }
}

/// One step of a double-buffered tile schedule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// Summed DMA time of the loads that must land before this step computes
    /// (0: the step reuses resident tiles).
    pub load_cycles: u64,
    /// The earlier step whose compute must finish before these loads may
    /// overwrite its buffers (write-after-read on a double buffer).
    pub load_after: Option<usize>,
    /// Compute-queue time of the step (GEMM folds, vector instructions).
    pub compute_cycles: u64,
    /// The step writes a fresh output tile: it waits until the store of the
    /// tile `out_buffers` tiles back has drained that buffer.
    pub starts_tile: bool,
    /// Store time of the output tile this step completes (0: none completes).
    pub store_cycles: u64,
}

/// A tile schedule: steps in issue order and how many output buffers rotate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    pub steps: Vec<Step>,
    pub out_buffers: usize,
    /// Compute-queue work before the first step (barriers, configuration).
    pub prologue_cycles: u64,
}

/// What the model predicts for a schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// Cycles until the last store (or compute) finishes, plus `finish`.
    pub cycles: u64,
    pub load_busy: u64,
    pub compute_busy: u64,
    pub store_busy: u64,
}

impl Estimate {
    /// The unit that bounds the schedule: the busiest of the three queues.
    pub fn bottleneck(&self) -> &'static str {
        let m = self.load_busy.max(self.compute_busy).max(self.store_busy);
        if m == self.compute_busy {
            "compute"
        } else if m == self.load_busy {
            "load"
        } else {
            "store"
        }
    }
}

impl Schedule {
    /// Runs the pipeline recurrence over the steps. Tokens become visible
    /// when their producer finishes, as in the ISA; every queue is in order.
    pub fn estimate(&self) -> Estimate {
        let n = self.steps.len();
        let mut compute_end = vec![0u64; n];
        let mut store_end: Vec<u64> = vec![];
        // The first instruction starts one cycle after its dispatch at cycle 0;
        // the prologue is the barrier every load of the op waits for.
        let opened = 1 + self.prologue_cycles;
        let (mut load_free, mut compute_free, mut store_free) = (opened, opened, 0u64);
        let mut est = Estimate {
            compute_busy: self.prologue_cycles,
            ..Default::default()
        };
        let mut tiles_started = 0usize;
        for (s, st) in self.steps.iter().enumerate() {
            if st.load_cycles > 0 {
                let war = st
                    .load_after
                    .filter(|&r| r < s)
                    .map_or(0, |r| compute_end[r]);
                load_free = load_free.max(war) + st.load_cycles;
                est.load_busy += st.load_cycles;
            }
            let mut start = compute_free.max(load_free);
            if st.starts_tile {
                if let Some(&freed) = tiles_started
                    .checked_sub(self.out_buffers.max(1))
                    .and_then(|t| store_end.get(t))
                {
                    start = start.max(freed);
                }
                tiles_started += 1;
            }
            compute_free = start + st.compute_cycles;
            compute_end[s] = compute_free;
            est.compute_busy += st.compute_cycles;
            if st.store_cycles > 0 {
                store_free = store_free.max(compute_free) + st.store_cycles;
                store_end.push(store_free);
                est.store_busy += st.store_cycles;
            }
        }
        // `finish` waits for the last store and takes one cycle.
        est.cycles = compute_free.max(store_free) + 1;
        est
    }
}

/// Mean absolute percentage error of `predicted` against `measured`, in percent.
pub fn mape(pairs: &[(f64, f64)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let sum: f64 = pairs
        .iter()
        .map(|&(pred, meas)| ((pred - meas) / meas).abs())
        .sum();
    100.0 * sum / pairs.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge() -> AccelParams {
        AccelParams::from_config(&HwConfig::edge())
    }

    #[test]
    fn unit_costs_follow_the_documented_formulas() {
        let p = edge();
        // 8 GB/s at 500 MHz is 16 bytes per cycle; latency 100.
        assert_eq!(p.dma_cycles(256), 100 + 16);
        assert_eq!(p.dma_cycles(257), 100 + 17);
        // 2*16 + 16 + 128 - 2.
        assert_eq!(p.fold_cycles(128), 174);
        // 4 rows of 40 words on 16 lanes: 3 groups; exp has II 4; latency 8.
        assert_eq!(p.vec_cycles(VecOp::Exp, 4, 40), 4 * 12 + 8);
        // Division and erf are multi-cycle units too (II 4), unlike mul (II 1).
        assert_eq!(p.vec_cycles(VecOp::Div, 4, 40), 4 * 12 + 8);
        assert_eq!(p.vec_cycles(VecOp::Erf, 4, 40), 4 * 12 + 8);
        assert_eq!(p.vec_cycles(VecOp::Mul, 4, 40), 4 * 3 + 8);
        // Reductions add a log2(16) = 4 cycle tree per row.
        assert_eq!(p.vec_cycles(VecOp::ReduceSum, 2, 16), 2 * (1 + 4) + 8);
    }

    #[test]
    fn double_buffering_overlaps_load_and_compute() {
        // Three steps, each loads 100 and computes 100; step s+1's loads refill
        // the buffer step s-1 read. Loads run ahead by one step, so the total
        // is one load plus three computes plus the store, not the sum of all.
        let steps = (0..3)
            .map(|s| Step {
                load_cycles: 100,
                load_after: if s >= 2 { Some(s - 2) } else { None },
                compute_cycles: 100,
                starts_tile: s == 0,
                store_cycles: if s == 2 { 50 } else { 0 },
            })
            .collect();
        let sch = Schedule {
            steps,
            out_buffers: 2,
            prologue_cycles: 0,
        };
        let e = sch.estimate();
        assert_eq!(e.cycles, 1 + 100 + 300 + 50 + 1);
        assert_eq!(e.bottleneck(), "compute");
    }

    #[test]
    fn a_single_output_buffer_serializes_store_and_compute() {
        // Two tiles of one step each; with one output buffer the second tile
        // waits for the first tile's store.
        let step = |after| Step {
            load_cycles: 10,
            load_after: after,
            compute_cycles: 100,
            starts_tile: true,
            store_cycles: 60,
        };
        let mk = |bufs| Schedule {
            steps: vec![step(None), step(None)],
            out_buffers: bufs,
            prologue_cycles: 0,
        };
        assert_eq!(mk(1).estimate().cycles, 1 + 10 + 100 + 60 + 100 + 60 + 1);
        assert_eq!(mk(2).estimate().cycles, 1 + 10 + 100 + 100 + 60 + 1);
    }

    #[test]
    fn mape_is_relative_to_the_measurement() {
        assert!((mape(&[(110.0, 100.0), (90.0, 100.0)]) - 10.0).abs() < 1e-9);
    }
}
