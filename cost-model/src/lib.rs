//! Target descriptions (as data, in TOML) and the cost models that price ops
//! on them. The e-graph extractor and the backends' tilers ask this crate
//! what a program costs on a target; it never changes the IR.

pub mod accel;
pub mod op_cost;

use serde::Deserialize;
use std::path::Path;

/// What kind of machine a target is.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Cpu,
    Gpu,
    Accel,
    /// The reference interpreter: costs are not modelled.
    Reference,
}

/// One level of the memory hierarchy.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct MemoryLevel {
    pub name: String,
    pub bytes: u64,
    /// Sustained bandwidth to the level below it, GB/s.
    pub bandwidth_gbps: f64,
}

/// A target as the cost model sees it. Files live in `cost-model/targets/`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct TargetDesc {
    pub name: String,
    pub kind: TargetKind,
    pub clock_ghz: f64,
    pub cores: u32,
    /// Peak throughput per data type, GFLOP/s (or GOP/s for integers).
    pub peak_gflops_f32: f64,
    #[serde(default)]
    pub peak_gflops_bf16: f64,
    #[serde(default)]
    pub peak_gops_int8: f64,
    /// SIMD width in bits (CPU) or array dimension (accelerator).
    #[serde(default)]
    pub vector_bits: u32,
    /// Memory levels from the closest to the farthest (last = DRAM/HBM).
    pub memory: Vec<MemoryLevel>,
    /// Fixed cost of launching a kernel or a loop nest, microseconds.
    #[serde(default)]
    pub launch_overhead_us: f64,
    /// Fixed cost of one iteration of a tile loop (loop control, packing
    /// setup, a DMA's latency on an accelerator), nanoseconds.
    #[serde(default)]
    pub tile_overhead_ns: f64,
}

impl TargetDesc {
    pub fn from_toml(text: &str) -> Result<TargetDesc, String> {
        toml::from_str(text).map_err(|e| format!("invalid target description: {e}"))
    }

    pub fn load(path: &Path) -> Result<TargetDesc, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The built-in description of a `--target` name.
    pub fn builtin(target: &str) -> Option<TargetDesc> {
        let text = match target {
            "cpu" => include_str!("../targets/host-cpu.toml"),
            "cuda" => include_str!("../targets/h100.toml"),
            "accel" => include_str!("../targets/accel-edge.toml"),
            "ref" => include_str!("../targets/reference.toml"),
            _ => return None,
        };
        Some(Self::from_toml(text).expect("built-in target descriptions parse"))
    }

    /// The `--target` names with a built-in description.
    pub const BUILTIN: &'static [&'static str] = &["cpu", "cuda", "accel", "ref"];

    /// Roofline time in seconds of work moving `bytes` from the farthest
    /// memory level and doing `flops` at f32 peak: the slower of the two
    /// bounds plus the launch overhead.
    pub fn roofline_seconds(&self, flops: f64, bytes: f64) -> f64 {
        let compute = flops / (self.peak_gflops_f32 * 1e9);
        let bw = self
            .memory
            .last()
            .map(|m| m.bandwidth_gbps)
            .unwrap_or(f64::INFINITY);
        let memory = bytes / (bw * 1e9);
        compute.max(memory) + self.launch_overhead_us * 1e-6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_targets_parse() {
        for t in ["cpu", "cuda", "accel", "ref"] {
            let d = TargetDesc::builtin(t).unwrap();
            assert!(!d.memory.is_empty(), "{t}");
        }
    }

    #[test]
    fn roofline_takes_the_slower_bound() {
        let d = TargetDesc::builtin("cpu").unwrap();
        // A GEMM-like op with high intensity is compute bound.
        let flops = 2.0 * 1024f64.powi(3);
        let t = d.roofline_seconds(flops, 3.0 * 4.0 * 1024.0 * 1024.0);
        assert!(t >= flops / (d.peak_gflops_f32 * 1e9));
        // A copy is memory bound.
        let bytes = 1e9;
        let bw = d.memory.last().unwrap().bandwidth_gbps * 1e9;
        assert!(d.roofline_seconds(0.0, bytes) >= bytes / bw);
    }
}
