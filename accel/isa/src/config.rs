//! Hardware parameters of one accelerator instance, read from TOML.

use serde::{Deserialize, Serialize};

/// Energy per action, in picojoules. The simulator multiplies these by the
/// action counts it records (Accelergy-style).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyTable {
    pub mac_i8: f64,
    pub mac_i4: f64,
    pub mac_i2: f64,
    pub mac_bf16_lut: f64,
    pub sp_read_byte: f64,
    pub sp_write_byte: f64,
    pub acc_read_word: f64,
    pub acc_write_word: f64,
    pub dram_byte: f64,
    pub vec_simple: f64,
    pub vec_special: f64,
    pub static_per_cycle: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwConfig {
    pub name: String,
    /// The systolic array is array_dim x array_dim.
    pub array_dim: u32,
    /// Scratchpad (activations and weights) size in bytes, split into sp_banks
    /// equal contiguous banks.
    pub sp_bytes: u64,
    pub sp_banks: u32,
    /// Accumulator size in bytes (32-bit words).
    pub acc_bytes: u64,
    /// DRAM capacity the simulator models.
    pub dram_bytes: u64,
    pub dram_bandwidth_gbps: f64,
    pub dram_latency_cycles: u64,
    pub clock_mhz: f64,
    /// Instructions each queue holds before the dispatcher stalls.
    pub insn_queue_depth: u32,
    /// Tokens each dependency FIFO holds.
    pub token_queue_depth: u32,
    /// Elements the vector unit processes per cycle.
    pub vec_lanes: u32,
    /// Initiation interval (cycles per lane group) of transcendental vector ops.
    pub vec_special_ii: u32,
    /// Pipeline latency of one vector instruction.
    pub vec_latency: u64,
    pub model_bank_conflicts: bool,
    pub energy: EnergyTable,
}

pub const PRESET_NAMES: &[&str] = &["edge", "server"];

impl HwConfig {
    pub fn from_toml(text: &str) -> Result<HwConfig, String> {
        let cfg: HwConfig = toml::from_str(text).map_err(|e| format!("hardware config: {e}"))?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    pub fn preset(name: &str) -> Result<HwConfig, String> {
        let text = match name {
            "edge" => include_str!("../presets/edge.toml"),
            "server" => include_str!("../presets/server.toml"),
            _ => {
                return Err(format!(
                    "unknown preset '{name}' (known: {})",
                    PRESET_NAMES.join(", ")
                ))
            }
        };
        HwConfig::from_toml(text)
    }

    pub fn edge() -> HwConfig {
        HwConfig::preset("edge").expect("the edge preset is valid")
    }

    pub fn server() -> HwConfig {
        HwConfig::preset("server").expect("the server preset is valid")
    }

    /// Rejects configurations the encoding cannot address or the cycle model cannot use.
    pub fn check(&self) -> Result<(), String> {
        let err = |m: &str| Err(format!("hardware config '{}': {m}", self.name));
        if self.array_dim == 0 || self.array_dim > 255 {
            return err("array_dim must be in 1..=255 (the gemm k/n fields are 8 bits)");
        }
        if self.sp_bytes == 0
            || self.sp_bytes > (1 << 16) * crate::GRANULE
            || !self.sp_bytes.is_multiple_of(crate::GRANULE)
        {
            return err("sp_bytes must be a non-zero multiple of 16 up to 1 MiB");
        }
        if self.sp_banks == 0 || !self.sp_bytes.is_multiple_of(self.sp_banks as u64) {
            return err("sp_banks must divide sp_bytes");
        }
        if self.acc_bytes == 0
            || self.acc_bytes > (1 << 16) * 4
            || !self.acc_bytes.is_multiple_of(4)
        {
            return err("acc_bytes must be a non-zero multiple of 4 up to 256 KiB");
        }
        if self.dram_bytes == 0 || self.dram_bytes > 1 << 32 {
            return err("dram_bytes must be in 1..=4 GiB (32-bit DRAM addresses)");
        }
        if self.dram_bandwidth_gbps.is_nan()
            || self.dram_bandwidth_gbps <= 0.0
            || self.clock_mhz.is_nan()
            || self.clock_mhz <= 0.0
        {
            return err("dram_bandwidth_gbps and clock_mhz must be positive");
        }
        if self.insn_queue_depth == 0
            || self.token_queue_depth == 0
            || self.vec_lanes == 0
            || self.vec_special_ii == 0
        {
            return err("queue depths, vec_lanes and vec_special_ii must be at least 1");
        }
        Ok(())
    }

    /// DRAM bytes per clock cycle.
    pub fn dram_bytes_per_cycle(&self) -> f64 {
        self.dram_bandwidth_gbps * 1e3 / self.clock_mhz
    }

    pub fn acc_words(&self) -> u64 {
        self.acc_bytes / 4
    }

    /// FNV-1a over the parameters that change what a stream computes (array size
    /// and memory sizes). Timing and energy parameters are left out so that one
    /// stream can be simulated under different timing assumptions.
    pub fn hash(&self) -> u64 {
        let canon = format!(
            "array_dim={};sp_bytes={};acc_bytes={}",
            self.array_dim, self.sp_bytes, self.acc_bytes
        );
        let mut h: u64 = 0xcbf29ce484222325;
        for b in canon.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }
}
