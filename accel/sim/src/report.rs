//! The run report (cycles, utilization, traffic, energy) and the Chrome trace.

use crate::exec::Actions;
use serde::Serialize;
use std::collections::BTreeMap;
use tessera_accel_isa::HwConfig;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UnitStats {
    pub insns: u64,
    /// Cycles the unit spent executing instructions.
    pub busy_cycles: u64,
    /// Cycles an instruction sat at the head of the unit's queue, dispatched,
    /// with the unit idle, waiting for dependency tokens or FIFO space.
    pub stall_cycles: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemoryBytes {
    pub dram_read: u64,
    pub dram_write: u64,
    pub sp_read: u64,
    pub sp_write: u64,
    pub acc_read: u64,
    pub acc_write: u64,
}

/// Energy in picojoules, by component.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Energy {
    pub mac_pj: f64,
    pub sp_pj: f64,
    pub acc_pj: f64,
    pub dram_pj: f64,
    pub vec_pj: f64,
    pub static_pj: f64,
    pub total_pj: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub config: String,
    pub total_cycles: u64,
    pub seconds: f64,
    pub load: UnitStats,
    pub compute: UnitStats,
    pub store: UnitStats,
    pub gemm_busy_cycles: u64,
    pub vec_busy_cycles: u64,
    pub bank_conflict_cycles: u64,
    pub macs: u64,
    /// MACs / (DIM^2 x cycles the array was busy): how well tiles fill the array.
    pub array_utilization: f64,
    /// MACs / (DIM^2 x total cycles).
    pub array_utilization_total: f64,
    pub bytes: MemoryBytes,
    pub insn_counts: BTreeMap<String, u64>,
    /// Tokens pushed but never popped (harmless, but usually a compiler slip).
    pub unconsumed_tokens: u64,
    pub actions: Actions,
    pub energy: Energy,
}

impl Report {
    pub fn finish(&mut self, cfg: &HwConfig) {
        let a = &self.actions;
        self.macs = a.macs();
        let dim2 = cfg.array_dim as f64 * cfg.array_dim as f64;
        if self.gemm_busy_cycles > 0 {
            self.array_utilization = self.macs as f64 / (dim2 * self.gemm_busy_cycles as f64);
        }
        if self.total_cycles > 0 {
            self.array_utilization_total = self.macs as f64 / (dim2 * self.total_cycles as f64);
        }
        self.seconds = self.total_cycles as f64 / (cfg.clock_mhz * 1e6);
        self.bytes = MemoryBytes {
            dram_read: a.dram_read_bytes,
            dram_write: a.dram_write_bytes,
            sp_read: a.sp_read_bytes,
            sp_write: a.sp_write_bytes,
            acc_read: a.acc_read_words * 4,
            acc_write: a.acc_write_words * 4,
        };
        let e = &cfg.energy;
        let mut en = Energy {
            mac_pj: a.mac_i8 as f64 * e.mac_i8
                + a.mac_i4 as f64 * e.mac_i4
                + a.mac_i2 as f64 * e.mac_i2
                + a.mac_bf16_lut as f64 * e.mac_bf16_lut,
            sp_pj: a.sp_read_bytes as f64 * e.sp_read_byte
                + a.sp_write_bytes as f64 * e.sp_write_byte,
            acc_pj: a.acc_read_words as f64 * e.acc_read_word
                + a.acc_write_words as f64 * e.acc_write_word,
            dram_pj: (a.dram_read_bytes + a.dram_write_bytes) as f64 * e.dram_byte,
            vec_pj: a.vec_simple as f64 * e.vec_simple + a.vec_special as f64 * e.vec_special,
            static_pj: self.total_cycles as f64 * e.static_per_cycle,
            total_pj: 0.0,
        };
        en.total_pj = en.mac_pj + en.sp_pj + en.acc_pj + en.dram_pj + en.vec_pj + en.static_pj;
        self.energy = en;
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A human-readable summary.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "config {}: {} cycles ({:.3} us)\n",
            self.config,
            self.total_cycles,
            self.seconds * 1e6
        );
        for (name, u) in [
            ("load", &self.load),
            ("compute", &self.compute),
            ("store", &self.store),
        ] {
            s += &format!(
                "  {name:<8} {:>6} insns  busy {:>10}  stall {:>10}\n",
                u.insns, u.busy_cycles, u.stall_cycles
            );
        }
        s += &format!(
            "  gemm busy {} vec busy {} bank-conflict {}\n  MACs {}  array utilization {:.1}% (busy) {:.1}% (total)\n",
            self.gemm_busy_cycles,
            self.vec_busy_cycles,
            self.bank_conflict_cycles,
            self.macs,
            self.array_utilization * 100.0,
            self.array_utilization_total * 100.0
        );
        let b = &self.bytes;
        s += &format!(
            "  bytes: DRAM r {} w {}  SP r {} w {}  ACC r {} w {}\n",
            b.dram_read, b.dram_write, b.sp_read, b.sp_write, b.acc_read, b.acc_write
        );
        let counts: Vec<String> = self
            .insn_counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        s += &format!("  instructions: {}\n", counts.join(", "));
        if self.unconsumed_tokens > 0 {
            s += &format!(
                "  warning: {} dependency tokens were never popped\n",
                self.unconsumed_tokens
            );
        }
        s += &format!("  energy: {:.3} uJ\n", self.energy.total_pj * 1e-6);
        s
    }
}

/// One executed instruction on one track of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    pub index: usize,
    pub name: &'static str,
    pub track: Track,
    pub start: u64,
    pub cycles: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Track {
    Load,
    Gemm,
    Vector,
    Control,
    Store,
}

impl Track {
    const ALL: [Track; 5] = [
        Track::Load,
        Track::Gemm,
        Track::Vector,
        Track::Control,
        Track::Store,
    ];
    fn name(self) -> &'static str {
        match self {
            Track::Load => "load queue (DMA in)",
            Track::Gemm => "compute queue: GEMM array",
            Track::Vector => "compute queue: vector unit",
            Track::Control => "config / finish",
            Track::Store => "store queue (DMA out)",
        }
    }
}

/// Chrome trace-event JSON (opens in Perfetto and chrome://tracing): one thread
/// per track, timestamps in microseconds at the configured clock.
pub fn chrome_trace(events: &[TraceEvent], clock_mhz: f64) -> String {
    let mut out = Vec::new();
    out.push(serde_json::json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "tessera accelerator"}}));
    for (i, t) in Track::ALL.iter().enumerate() {
        out.push(serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": i + 1, "args": {"name": t.name()}}));
        out.push(serde_json::json!({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": i + 1, "args": {"sort_index": i}}));
    }
    for e in events {
        let tid = Track::ALL.iter().position(|t| *t == e.track).unwrap_or(0) + 1;
        out.push(serde_json::json!({
            "name": e.name, "cat": "insn", "ph": "X", "pid": 1, "tid": tid,
            "ts": e.start as f64 / clock_mhz, "dur": e.cycles as f64 / clock_mhz,
            "args": {"index": e.index, "start_cycle": e.start, "cycles": e.cycles},
        }));
    }
    serde_json::to_string(&serde_json::json!({"traceEvents": out, "displayTimeUnit": "ns"}))
        .unwrap_or_default()
}
