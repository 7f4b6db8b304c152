//! The `cpu` target: Tessera IR → upstream MLIR (through melior) → LLVM IR →
//! native x86-64 code (through inkwell), run in-process by the JIT or
//! shipped as a shared library with a C header.
//!
//! Pipeline: [`specialize`] binds symbolic dims → [`emit`] writes one MLIR
//! module (a kernel per op from [`lower`], an entry function, the static
//! [`plan`] of every buffer) → [`mlir`] lowers it to the LLVM dialect and
//! translates → [`llvm`] optimizes and generates code → [`jit`] runs it or
//! [`library`] packages it.

pub mod emit;
pub mod jit;
pub mod library;
pub mod llvm;
pub mod lower;
pub mod mlir;
pub mod plan;
pub mod specialize;

use std::collections::HashMap;
use tessera_backend::{Artifact, Backend, Executable, Stage};
use tessera_ir::{Diagnostic, Graph};

pub use llvm::TargetOptions;

/// What `--target cpu` is asked to do.
#[derive(Clone, Debug)]
pub struct CpuOptions {
    /// Threads the compiled code runs on (results do not depend on it).
    pub threads: usize,
    /// Sizes of symbolic dims for ahead-of-time stages (`--dim seq=128`).
    pub dims: Vec<(String, i64)>,
    pub target: TargetOptions,
    /// Symbol prefix of the library's C API (`<prefix>_run`).
    pub lib_name: String,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            threads: 1,
            dims: Vec::new(),
            target: TargetOptions::default(),
            lib_name: "model".into(),
        }
    }
}

pub struct Cpu {
    pub opts: CpuOptions,
}

/// Compile statistics reported under `--timing` / `--op-stats`.
#[derive(Clone, Debug, Default)]
pub struct CompileStats {
    pub kernels: usize,
    pub arena_bytes: usize,
    pub unshared_bytes: usize,
    pub weights_bytes: usize,
    pub io_bytes: usize,
    pub phases: Vec<(&'static str, std::time::Duration)>,
}

impl CompileStats {
    /// Peak memory the compiled model uses besides code: arena + weights + I/O.
    pub fn peak_bytes(&self) -> usize {
        self.arena_bytes + self.weights_bytes + self.io_bytes
    }
}

/// How many threads kernels split their work for: the requested count or
/// this machine's cores, whichever is larger. The thread count is a run-time
/// argument of the compiled code (the library's `threads`), so the split must
/// not assume fewer; running fewer threads than tasks only serializes tasks.
/// Results never depend on it (no split changes a summation order).
pub fn split_threads(requested: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    requested.max(cores).max(1)
}

/// The MLIR text of `g` specialized for `env`.
pub fn emit_mlir(
    g: &Graph,
    env: &HashMap<String, i64>,
    opts: &CpuOptions,
) -> Result<emit::Emitted, Diagnostic> {
    let g = specialize::specialize(g, env)?;
    emit::emit_module(
        &g,
        &emit::EmitOptions {
            threads: split_threads(opts.threads),
        },
    )
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn stages(&self) -> &'static [Stage] {
        &[
            Stage::Mlir,
            Stage::MlirLlvm,
            Stage::Llvm,
            Stage::Asm,
            Stage::Obj,
            Stage::Lib,
        ]
    }

    fn emit(&self, graph: &Graph, stage: Stage) -> Result<Artifact, Diagnostic> {
        let env = specialize::env_from_dims(graph, &self.opts.dims)?;
        let emitted = emit_mlir(graph, &env, &self.opts)?;
        match stage {
            Stage::Mlir => Ok(Artifact::Text(emitted.mlir)),
            Stage::MlirLlvm | Stage::Llvm | Stage::Asm | Stage::Obj => {
                let ctx = inkwell::context::Context::create();
                let c = jit::compile_module(&ctx, &emitted, &self.opts, stage == Stage::MlirLlvm)?;
                match c {
                    jit::Lowered::MlirText(t) => Ok(Artifact::Text(t)),
                    jit::Lowered::Module(module, tm, _) => match stage {
                        Stage::Llvm => Ok(Artifact::Text(module.print_to_string().to_string())),
                        Stage::Asm => llvm::emit(&module, &tm, inkwell::targets::FileType::Assembly)
                            .map(|b| Artifact::Text(String::from_utf8_lossy(&b).into_owned()))
                            .map_err(Diagnostic::new),
                        _ => llvm::emit(&module, &tm, inkwell::targets::FileType::Object)
                            .map(Artifact::Binary)
                            .map_err(Diagnostic::new),
                    },
                }
            }
            Stage::Lib => Err(Diagnostic::new(
                "--emit lib writes several files: use `tessera compile --target cpu --emit lib -o DIR`",
            )),
            other => Err(Diagnostic::new(format!(
                "--emit {other} is not a stage of target 'cpu'"
            ))),
        }
    }

    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, Diagnostic> {
        Ok(Box::new(jit::CpuExecutable::new(
            graph.clone(),
            self.opts.clone(),
        )))
    }
}
