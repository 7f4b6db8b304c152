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
            .unwrap_or_else(|| pipeline_for_level(opts.opt_level).to_string());
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

pub fn backend(target: Target) -> Box<dyn Backend> {
    match target {
        Target::Ref => Box::new(tessera_reference::Reference),
        t => Box::new(Pending(t.name())),
    }
}
