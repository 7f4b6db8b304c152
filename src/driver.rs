//! The compilation pipeline shared by every subcommand:
//! load (ONNX import or IR parse) → verify → passes → backend.

use crate::cli::{CompileOptions, Target};
use crate::progress::Progress;
use std::path::Path;
use std::time::{Duration, Instant};
use tessera_backend::Backend;
use tessera_ir::{print_graph_with, verify, Graph, PrintOptions};
use tessera_passes::{pipeline_for_level, PassManager, PassOptions};

/// Phase timings for `--timing`.
#[derive(Default)]
pub struct Timings {
    pub rows: Vec<(String, Duration, String)>,
}

impl Timings {
    pub fn add(&mut self, name: impl Into<String>, d: Duration, note: impl Into<String>) {
        self.rows.push((name.into(), d, note.into()));
    }

    pub fn report(&self) -> String {
        let total: Duration = self.rows.iter().map(|r| r.1).sum();
        let mut s = String::from(
            "===-------------------------------------------------------------------------===\n",
        );
        s.push_str("                         Tessera execution timing report\n");
        s.push_str(
            "===-------------------------------------------------------------------------===\n",
        );
        s.push_str(&format!(
            "  Total: {:.4} s\n\n   Wall time (s)   %   Name\n",
            total.as_secs_f64()
        ));
        for (name, d, note) in &self.rows {
            let pct = if total.is_zero() {
                0.0
            } else {
                100.0 * d.as_secs_f64() / total.as_secs_f64()
            };
            s.push_str(&format!(
                "   {:>12.6} {:>5.1}%  {name}",
                d.as_secs_f64(),
                pct
            ));
            if !note.is_empty() {
                s.push_str(&format!("  ({note})"));
            }
            s.push('\n');
        }
        s
    }
}

/// Loads a model: `.onnx` through the frontend, anything else as IR text.
pub fn load(path: &Path) -> Result<Graph, String> {
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx {
        tessera_frontend::import_model(path).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let g = tessera_ir::parse_graph(&text).map_err(|e| format!("{}:{e}", path.display()))?;
        verify(&g).map_err(|e| format!("{}: invalid IR:\n{e}", path.display()))?;
        Ok(g)
    }
}

pub fn dump(stage: &str, g: &Graph) {
    eprintln!("// -----// IR Dump After {stage} //----- //");
    eprint!("{}", print_graph_with(g, &PrintOptions::snapshot()));
}

/// The result of the front half of compilation.
pub struct Compiled {
    pub imported: Graph,
    pub optimized: Graph,
    pub timings: Timings,
}

/// The pipeline of `-O<level>` for a target: the e-graph pass prices its
/// choices with the target's description. The interpreter has no costs worth
/// optimizing for (its description prices every op alike, so no fusion would
/// pay), and `ref` is the oracle the other targets' -O2 programs are checked
/// with: it gets the host CPU's choices.
pub fn level_pipeline(level: u8, target: Target) -> String {
    pipeline_for_level(level)
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p {
            "egraph" => format!(
                "egraph{{target={}}}",
                match target {
                    Target::Ref => "cpu",
                    t => t.name(),
                }
            ),
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Imports and optimizes according to `opts`.
pub fn compile(opts: &CompileOptions, run_passes: bool) -> Result<Compiled, String> {
    let mut timings = Timings::default();
    let progress = Progress::start(&format!("importing {}", opts.model.display()));
    let t = Instant::now();
    let imported = load(&opts.model);
    progress.finish();
    let imported = imported?;
    timings.add("import", t.elapsed(), format!("{} ops", imported.ops.len()));
    if opts.print_ir_after_all {
        dump("import", &imported);
    }
    let mut optimized = imported.clone();
    if run_passes {
        let pipeline = opts
            .passes
            .clone()
            .unwrap_or_else(|| level_pipeline(opts.opt_level, opts.target));
        let pm = PassManager::parse(
            &pipeline,
            PassOptions {
                verify_each: opts.verify_each,
                print_after_all: opts.print_ir_after_all,
            },
        )
        .map_err(|e| e.to_string())?;
        let progress = Progress::start("optimizing");
        let result = pm.run(&mut optimized, &mut |name, g| dump(name, g));
        progress.finish();
        for pt in result.map_err(|e| e.to_string())? {
            let note: Vec<String> = pt
                .stats
                .counters
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            timings.add(format!("pass {}", pt.name), pt.time, note.join(", "));
        }
    }
    Ok(Compiled {
        imported,
        optimized,
        timings,
    })
}

/// A target whose backend has not landed yet: every stage and `run` report it
/// clearly instead of doing something else.
struct Pending(&'static str);

impl Backend for Pending {
    fn name(&self) -> &'static str {
        self.0
    }
    fn stages(&self) -> &'static [tessera_backend::Stage] {
        &[]
    }
    fn prepare(
        &self,
        _: &Graph,
    ) -> Result<Box<dyn tessera_backend::Executable>, tessera_ir::Diagnostic> {
        Err(tessera_ir::Diagnostic::new(format!(
            "running on target '{}' is not available yet",
            self.0
        )))
    }
}

/// The cpu backend's options from the command line.
pub fn cpu_options(opts: &CompileOptions) -> tessera_cpu::CpuOptions {
    tessera_cpu::CpuOptions {
        threads: opts.threads as usize,
        dims: opts.dims.clone(),
        target: tessera_cpu::TargetOptions {
            triple: opts.mtriple.clone(),
            cpu: opts.mcpu.clone(),
            features: opts.mattr.clone(),
        },
        lib_name: opts
            .model
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| {
                if s == "model" {
                    opts.model
                        .parent()
                        .and_then(|p| p.file_name())
                        .and_then(|p| p.to_str())
                        .unwrap_or(s)
                } else {
                    s
                }
            })
            .unwrap_or("model")
            .to_string(),
    }
}

pub fn backend(opts: &CompileOptions) -> Result<Box<dyn Backend>, String> {
    Ok(match opts.target {
        Target::Ref => Box::new(tessera_reference::Reference),
        Target::Cpu => Box::new(tessera_cpu::Cpu {
            opts: cpu_options(opts),
        }),
        Target::Accel => Box::new(tessera_accel::Accel::from_options(
            &opts.accel_config,
            &opts.dims,
        )?),
        t => Box::new(Pending(t.name())),
    })
}

/// The cpu target's static memory plan for `g` at the `--dim` sizes.
pub fn cpu_memory_report(opts: &CompileOptions, g: &Graph) -> Result<String, String> {
    let cpu = cpu_options(opts);
    let env = tessera_cpu::specialize::env_from_dims(g, &cpu.dims).map_err(|e| e.to_string())?;
    let e = tessera_cpu::emit_mlir(g, &env, &cpu).map_err(|e| e.to_string())?;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let io: usize = e.inputs.iter().chain(&e.outputs).map(|d| d.bytes).sum();
    Ok(format!(
        "memory plan (cpu): {} kernels; arena {:.2} MiB (without reuse {:.2} MiB), \
         weights {:.2} MiB, inputs+outputs {:.2} MiB; peak {:.2} MiB\n",
        e.kernels,
        mib(e.plan.arena_bytes),
        mib(e.plan.unshared_bytes),
        mib(e.weights.len()),
        mib(io),
        mib(e.plan.arena_bytes + e.weights.len() + io)
    ))
}
