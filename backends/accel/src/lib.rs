//! The `accel` backend: Tessera IR → instruction streams for the Tessera accelerator.
//!
//! Pipeline ([`program::Program::compile`]): quantize float matmuls into the
//! int8 scheme of [`quantize`] (as Tessera IR), specialize symbolic dims to
//! concrete sizes ([`specialize`]), place every op on the accelerator or the
//! host ([`lower`]), and emit each run of accelerator ops as one stream with
//! its weights in the DRAM image ([`emit`], [`vector`], [`gemm`]). Running
//! executes host ops with the reference semantics and segments on the
//! simulator. See docs/accel-backend.md.

pub mod attention;
pub mod attention_gemm;
pub mod attention_layout;
pub mod conv;
pub mod dynamic_quant;
pub mod emit;
mod fuse;
pub mod gemm;
pub mod lower;
pub mod movement;
pub mod program;
pub mod quantize;
pub mod rotary;
pub mod specialize;
pub mod staged;
pub mod vector;

use program::Program;
use specialize::{require_bound, Bindings};
use std::collections::HashMap;
use tessera_accel_isa::HwConfig;
use tessera_backend::{Artifact, Backend, Executable, Stage};
use tessera_ir::ops::{AttrAccess, OpDef};
use tessera_ir::{Attrs, Diagnostic, Graph, Op, Tensor};
use tessera_sim::Report;

/// Attribute access (with the op's defaults) for a graph op.
pub(crate) struct OpAttrs<'a>(pub &'a Op);

impl AttrAccess for OpAttrs<'_> {
    fn def(&self) -> &'static OpDef {
        self.0.kind.def()
    }
    fn attrs(&self) -> &Attrs {
        &self.0.attrs
    }
}

/// The accel target: a hardware configuration and, for `emit`, the sizes of
/// the graph's symbolic dims (runs bind them from the inputs).
pub struct Accel {
    pub cfg: HwConfig,
    pub dims: Bindings,
    /// Print the simulator report of every run to stderr.
    pub report: bool,
}

impl Accel {
    pub fn new(cfg: HwConfig) -> Accel {
        Accel {
            cfg,
            dims: Bindings::new(),
            report: false,
        }
    }

    /// The CLI's configuration: `--accel-config` (a preset name or a TOML
    /// file) and the `--dim` sizes for ahead-of-time stages.
    pub fn from_options(config: &str, dims: &[(String, i64)]) -> Result<Accel, String> {
        let cfg = if std::path::Path::new(config).exists() {
            let text = std::fs::read_to_string(config).map_err(|e| format!("{config}: {e}"))?;
            HwConfig::from_toml(&text).map_err(|e| format!("{config}: {e}"))?
        } else {
            HwConfig::preset(config)?
        };
        Ok(Accel {
            cfg,
            dims: dims.iter().cloned().collect(),
            report: false,
        })
    }

    pub fn compile(&self, graph: &Graph) -> Result<Program, Diagnostic> {
        require_bound(graph, &self.dims)?;
        Program::compile(graph, &self.cfg, &self.dims)
    }
}

impl Backend for Accel {
    fn name(&self) -> &'static str {
        "accel"
    }

    fn stages(&self) -> &'static [Stage] {
        &[Stage::Asm, Stage::Stream]
    }

    fn emit(&self, graph: &Graph, stage: Stage) -> Result<Artifact, Diagnostic> {
        match stage {
            Stage::Asm => Ok(Artifact::Text(self.compile(graph)?.asm())),
            Stage::Stream => Ok(Artifact::Binary(self.compile(graph)?.stream_bytes()?)),
            s => Err(Diagnostic::new(format!(
                "--emit {s} is not a stage of target 'accel' (asm, stream)"
            ))),
        }
    }

    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, Diagnostic> {
        Ok(Box::new(AccelExecutable {
            graph: graph.clone(),
            cfg: self.cfg.clone(),
            programs: HashMap::new(),
            report: self.report,
            last: None,
        }))
    }
}

/// Summed over the segments of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    pub segments: usize,
    pub host_ops: usize,
    pub total_cycles: u64,
    pub gemm_busy_cycles: u64,
    pub vec_busy_cycles: u64,
    pub macs: u64,
    /// MACs / (DIM² · GEMM busy cycles).
    pub array_utilization: f64,
    /// MACs / (DIM² · total cycles).
    pub array_utilization_total: f64,
    pub dram_bytes: u64,
    pub energy_uj: f64,
}

impl RunSummary {
    pub fn of(cfg: &HwConfig, reports: &[Report], host_ops: usize) -> RunSummary {
        let mut s = RunSummary {
            segments: reports.len(),
            host_ops,
            ..Default::default()
        };
        for r in reports {
            s.total_cycles += r.total_cycles;
            s.gemm_busy_cycles += r.gemm_busy_cycles;
            s.vec_busy_cycles += r.vec_busy_cycles;
            s.macs += r.macs;
            s.dram_bytes += r.bytes.dram_read + r.bytes.dram_write;
            s.energy_uj += r.energy.total_pj * 1e-6;
        }
        let dim2 = (cfg.array_dim as f64).powi(2);
        if s.gemm_busy_cycles > 0 {
            s.array_utilization = s.macs as f64 / (dim2 * s.gemm_busy_cycles as f64);
        }
        if s.total_cycles > 0 {
            s.array_utilization_total = s.macs as f64 / (dim2 * s.total_cycles as f64);
        }
        s
    }

    pub fn to_text(&self, cfg: &HwConfig) -> String {
        format!(
            "accel report (config {}): {} cycles ({:.3} us) in {} segments, {} host ops; \
             GEMM busy {} cycles, vector busy {} cycles; {} MACs; array utilization {:.1}% \
             while busy, {:.1}% overall; DRAM traffic {} bytes; energy {:.3} uJ\n",
            cfg.name,
            self.total_cycles,
            self.total_cycles as f64 / cfg.clock_mhz,
            self.segments,
            self.host_ops,
            self.gemm_busy_cycles,
            self.vec_busy_cycles,
            self.macs,
            100.0 * self.array_utilization,
            100.0 * self.array_utilization_total,
            self.dram_bytes,
            self.energy_uj
        )
    }
}

/// Compiles per input shape (cached) and runs on the simulator.
pub struct AccelExecutable {
    graph: Graph,
    cfg: HwConfig,
    programs: HashMap<Vec<Vec<usize>>, Program>,
    report: bool,
    /// The summary of the last run.
    pub last: Option<RunSummary>,
}

impl Executable for AccelExecutable {
    fn timing_rows(&self) -> Vec<(String, f64, String)> {
        match &self.last {
            Some(s) => vec![(
                "accel: simulated run".into(),
                s.total_cycles as f64 / (self.cfg.clock_mhz * 1e6),
                s.to_text(&self.cfg).trim_end().to_string(),
            )],
            None => Vec::new(),
        }
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Diagnostic> {
        let env = tessera_reference::bind_inputs(&self.graph, inputs)?;
        let key: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape.clone()).collect();
        if !self.programs.contains_key(&key) {
            let bind: Bindings = env.into_iter().collect();
            let p = Program::compile(&self.graph, &self.cfg, &bind)?;
            self.programs.insert(key.clone(), p);
        }
        let p = &self.programs[&key];
        let (outs, reports) = p.run(inputs)?;
        let summary = RunSummary::of(&self.cfg, &reports, p.host_ops().count());
        if self.report {
            eprint!("{}", summary.to_text(&self.cfg));
        }
        self.last = Some(summary);
        Ok(outs)
    }
}
