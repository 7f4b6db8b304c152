//! The interface every Tessera target implements, and the stages a
//! compilation can stop at.
//!
//! A backend takes verified (and possibly optimized) Tessera IR; it never sees
//! ONNX. Targets: `ref` (the interpreter), `cpu`, `cuda`, `accel`.

pub mod compare;

use std::fmt;
use tessera_ir::{Diagnostic, Graph, Tensor};

/// Where `tessera compile --emit` stops. Names follow onnx-mlir/IREE.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Imported Tessera IR, after the frontend's folding.
    Ir,
    /// Tessera IR after the optimization pipeline.
    OptIr,
    /// Upstream MLIR dialects (cpu).
    Mlir,
    /// The same module lowered to MLIR's LLVM dialect (cpu).
    MlirLlvm,
    /// LLVM IR text (cpu).
    Llvm,
    /// An object file (cpu).
    Obj,
    /// A shared library plus a C header (cpu).
    Lib,
    /// CUDA C++ / PTX (cuda).
    Cuda,
    Ptx,
    /// Assembly: native assembly (cpu) or the accelerator's `.tsa` text (accel).
    Asm,
    Stream,
}

impl Stage {
    pub const ALL: [Stage; 11] = [
        Stage::Ir,
        Stage::OptIr,
        Stage::Mlir,
        Stage::MlirLlvm,
        Stage::Llvm,
        Stage::Obj,
        Stage::Lib,
        Stage::Cuda,
        Stage::Ptx,
        Stage::Asm,
        Stage::Stream,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Ir => "ir",
            Stage::OptIr => "opt-ir",
            Stage::Mlir => "mlir",
            Stage::MlirLlvm => "mlir-llvm",
            Stage::Llvm => "llvm",
            Stage::Obj => "obj",
            Stage::Lib => "lib",
            Stage::Cuda => "cuda",
            Stage::Ptx => "ptx",
            Stage::Asm => "asm",
            Stage::Stream => "stream",
        }
    }

    pub fn from_name(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.name() == s)
    }

    /// Text stages go to stdout when no output file is given.
    pub fn is_text(self) -> bool {
        !matches!(self, Stage::Obj | Stage::Lib | Stage::Stream)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a backend produced for a stage.
pub enum Artifact {
    Text(String),
    Binary(Vec<u8>),
}

/// A compilation target.
pub trait Backend {
    /// The `--target` name.
    fn name(&self) -> &'static str;

    /// Stages beyond `ir`/`opt-ir` this backend can emit.
    fn stages(&self) -> &'static [Stage];

    /// Lowers `graph` to `stage`.
    fn emit(&self, graph: &Graph, stage: Stage) -> Result<Artifact, Diagnostic> {
        let _ = graph;
        Err(Diagnostic::new(format!(
            "--emit {stage} is not available yet for target '{}'",
            self.name()
        )))
    }

    /// Prepares `graph` to run in this process (the common runner calls this).
    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, Diagnostic>;
}

/// One row of a target's `--timing` report: phase, seconds, note.
pub type TimingRow = (String, f64, String);

/// A compiled model that runs on concrete inputs, in graph input order.
pub trait Executable {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Diagnostic>;

    /// Does the work that depends only on the inputs' shapes (a JIT compiles
    /// for them), so benchmarks can time it apart from the runs.
    fn prepare_for(&mut self, inputs: &[Tensor]) -> Result<(), Diagnostic> {
        let _ = inputs;
        Ok(())
    }

    /// What the target wants to say under `--timing` (compile phases,
    /// memory plan, cycles), as rows of (phase, seconds, note).
    fn timing_rows(&self) -> Vec<TimingRow> {
        Vec::new()
    }
}
