//! The Tessera accelerator instruction set: the instruction table, its 128-bit
//! binary encoding, the `.tsa` assembly text, the stream container and the
//! hardware configurations. `docs/accel-isa.md` is the contract; its field tables
//! are generated from [`table::INSNS`] by [`table::reference_markdown`].

pub mod asm;
pub mod config;
pub mod stream;
pub mod table;

pub use config::{EnergyTable, HwConfig};
pub use stream::{Buffer, DType, Role, Stream, MAGIC, VERSION};
pub use table::*;

use std::fmt;

/// An ISA-level error; `index` names the offending instruction when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsaError {
    pub index: Option<usize>,
    pub msg: String,
}

impl IsaError {
    pub fn new(msg: impl Into<String>) -> IsaError {
        IsaError {
            index: None,
            msg: msg.into(),
        }
    }
    pub fn at(index: usize, msg: impl Into<String>) -> IsaError {
        IsaError {
            index: Some(index),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for IsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "instruction {i}: {}", self.msg),
            None => write!(f, "{}", self.msg),
        }
    }
}

impl std::error::Error for IsaError {}

/// Rounds an f32 to bf16 (nearest, ties to even; NaN stays a quiet NaN).
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x40;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}
