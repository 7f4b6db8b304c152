//! Kernels that stage data in the accumulator with their own layout instead
//! of the `rows x len` view of [`crate::vector`]: rotary embedding (a per-row
//! cos/sin table gathered from the caches) and constant-index gathers (the
//! im2col of a convolution, layout changes) done by strided DMA.
//!
//! Both follow the chunk protocol of [`crate::emit::Emitter::chunk`]: chunk
//! `j` lives in accumulator half `j mod 2`, so the emitter's credits order
//! its loads after the stores of chunk `j - 2`.

use crate::conv::GatherKernel;
use crate::emit::Emitter;
use crate::rotary::RotaryKernel;
use tessera_accel_isa::HwConfig;

#[derive(Clone, Debug)]
pub enum StagedKernel {
    Rotary(RotaryKernel),
    Gather(GatherKernel),
}

impl StagedKernel {
    /// Whether the kernel fits the configuration (rows per chunk > 0).
    pub fn check(&self, cfg: &HwConfig) -> Result<(), String> {
        match self {
            StagedKernel::Rotary(k) => k.chunk_rows(cfg.acc_words()).map(|_| ()),
            StagedKernel::Gather(k) => k.chunks(cfg.acc_words()).map(|_| ()),
        }
    }

    pub fn emit(&self, em: &mut Emitter) -> Result<(), String> {
        match self {
            StagedKernel::Rotary(k) => k.emit(em),
            StagedKernel::Gather(k) => k.emit(em),
        }
    }

    /// The kernel's line in `--emit asm`.
    pub fn note(&self) -> String {
        match self {
            StagedKernel::Rotary(k) => format!(
                "vector rotary, {} rows x {} (rotating {})",
                k.rows, k.head, k.rot
            ),
            StagedKernel::Gather(k) => format!(
                "gather by strided DMA, {} words in {} blocks",
                k.words(),
                k.blocks.len()
            ),
        }
    }
}

/// Word address of accumulator half `h` (of two) at word offset `off`.
pub(crate) fn half_base(acc_words: u64, chunk: usize) -> u64 {
    // The 16-bit vec/store address fields reach at most 65536 words.
    (chunk as u64 % 2) * (acc_words.min(65536) / 2)
}

/// Words of one accumulator half.
pub(crate) fn half_words(acc_words: u64) -> u64 {
    acc_words.min(65536) / 2
}
