//! The LLVM half of the pipeline, through inkwell: pick the target machine,
//! run LLVM's O3 pipeline, and either emit an object / assembly file or JIT
//! the module into this process.

use inkwell::execution_engine::ExecutionEngine;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use inkwell::OptimizationLevel;
use std::path::Path;
use std::sync::OnceLock;

/// Which machine code is generated for. Empty fields mean "this host".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetOptions {
    pub triple: Option<String>,
    pub cpu: Option<String>,
    pub features: Option<String>,
}

/// The resolved triple, CPU name and feature string.
#[derive(Clone, Debug)]
pub struct ResolvedTarget {
    pub triple: String,
    pub cpu: String,
    pub features: String,
}

impl TargetOptions {
    pub fn resolve(&self) -> ResolvedTarget {
        let host = self.triple.is_none();
        ResolvedTarget {
            triple: self.triple.clone().unwrap_or_else(|| {
                TargetMachine::get_default_triple()
                    .as_str()
                    .to_string_lossy()
                    .into_owned()
            }),
            cpu: self.cpu.clone().unwrap_or_else(|| {
                if host {
                    TargetMachine::get_host_cpu_name().to_string()
                } else {
                    "generic".into()
                }
            }),
            features: self.features.clone().unwrap_or_else(|| {
                if host && self.cpu.is_none() {
                    TargetMachine::get_host_cpu_features().to_string()
                } else {
                    String::new()
                }
            }),
        }
    }
}

fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        Target::initialize_all(&InitializationConfig::default());
    });
}

pub fn target_machine(t: &ResolvedTarget, pic: bool) -> Result<TargetMachine, String> {
    init();
    let triple = TargetTriple::create(&t.triple);
    let target = Target::from_triple(&triple)
        .map_err(|e| format!("unknown target triple '{}': {e}", t.triple))?;
    target
        .create_target_machine(
            &triple,
            &t.cpu,
            &t.features,
            OptimizationLevel::Aggressive,
            if pic {
                RelocMode::PIC
            } else {
                RelocMode::Default
            },
            CodeModel::Default,
        )
        .ok_or_else(|| {
            format!(
                "cannot create a target machine for {} (cpu '{}', features '{}')",
                t.triple, t.cpu, t.features
            )
        })
}

/// Stamps the target on the module and on every function (the JIT honours
/// per-function `target-cpu`/`target-features`), asks for 512-bit vectors
/// where the CPU has them (LLVM prefers 256 bits on AVX-512 parts by
/// default), and runs the O3 pipeline.
pub fn optimize(module: &Module, tm: &TargetMachine, t: &ResolvedTarget) -> Result<(), String> {
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    let ctx = module.get_context();
    let wide = t.features.contains("+avx512f");
    for f in module.get_functions() {
        if f.count_basic_blocks() == 0 {
            continue;
        }
        let loc = inkwell::attributes::AttributeLoc::Function;
        f.add_attribute(loc, ctx.create_string_attribute("target-cpu", &t.cpu));
        if !t.features.is_empty() {
            f.add_attribute(
                loc,
                ctx.create_string_attribute("target-features", &t.features),
            );
        }
        if wide {
            f.add_attribute(
                loc,
                ctx.create_string_attribute("prefer-vector-width", "512"),
            );
        }
    }
    module
        .verify()
        .map_err(|e| format!("internal error: invalid LLVM IR: {}", e.to_string()))?;
    module
        .run_passes("default<O3>", tm, PassBuilderOptions::create())
        .map_err(|e| format!("internal error: LLVM O3 failed: {e}"))
}

pub fn emit(module: &Module, tm: &TargetMachine, kind: FileType) -> Result<Vec<u8>, String> {
    tm.write_to_memory_buffer(module, kind)
        .map(|b| b.as_slice().to_vec())
        .map_err(|e| format!("LLVM code generation failed: {e}"))
}

/// The OpenMP runtime the lowered parallel loops call; loaded once into the
/// process so the JIT resolves `__kmpc_*`.
pub fn load_openmp() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let candidates = [
                "/usr/lib/llvm-19/lib/libomp.so",
                "/usr/lib/x86_64-linux-gnu/libomp.so.5",
            ];
            for c in candidates {
                if Path::new(c).exists()
                    && inkwell::support::load_library_permanently(Path::new(c)).is_ok()
                {
                    return Ok(());
                }
            }
            Err(
                "the OpenMP runtime (libomp) is missing: install libomp-19-dev \
                 (`make setup` does)"
                    .into(),
            )
        })
        .clone()
}

/// A module compiled into this process.
pub struct Jit<'ctx> {
    engine: ExecutionEngine<'ctx>,
}

impl<'ctx> Jit<'ctx> {
    pub fn new(module: &Module<'ctx>) -> Result<Jit<'ctx>, String> {
        init();
        load_openmp()?;
        let engine = module
            .create_jit_execution_engine(OptimizationLevel::Aggressive)
            .map_err(|e| format!("internal error: cannot create the JIT: {e}"))?;
        Ok(Jit { engine })
    }

    pub fn into_engine(self) -> ExecutionEngine<'ctx> {
        self.engine
    }

    pub fn address(&self, name: &str) -> Result<usize, String> {
        self.engine
            .get_function_address(name)
            .map_err(|e| format!("internal error: JIT symbol '{name}': {e}"))
    }
}
