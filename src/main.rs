//! `tessera`: the command-line driver.

mod bench;
mod cli;
mod cost;
mod driver;
mod progress;
mod runner;
mod simulate;
mod stats;

use clap::Parser;
use cli::{Cli, Command, CompileArgs, ListWhat, RunArgs};
use std::io::Write;
use std::process::ExitCode;
use tessera_backend::{Artifact, Stage};
use tessera_ir::{print_graph_with, OpKind, PrintOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(a) => compile(a),
        Command::Run(a) => run(a),
        Command::Simulate(a) => simulate::simulate(a),
        Command::Bench(a) => bench::bench(a),
        Command::Cost(a) => cost::cost(a),
        Command::List { what } => {
            list(what);
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_output(path: Option<&std::path::Path>, bytes: &[u8]) -> Result<(), String> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::write(p, bytes).map_err(|e| format!("{}: {e}", p.display()))
        }
        _ => std::io::stdout()
            .write_all(bytes)
            .map_err(|e| e.to_string()),
    }
}

fn compile(a: CompileArgs) -> Result<ExitCode, String> {
    let stage = Stage::from_name(&a.emit).ok_or_else(|| {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        format!("unknown stage '{}' (stages: {})", a.emit, names.join(", "))
    })?;
    let backend = driver::backend(&a.opts)?;
    let compiled = driver::compile(&a.opts, stage != Stage::Ir)?;
    let graph = if stage == Stage::Ir {
        &compiled.imported
    } else {
        &compiled.optimized
    };
    if a.opts.timing {
        eprint!("{}", compiled.timings.report());
    }
    if a.op_stats {
        let s = stats::OpStats::of(graph);
        let text = if a.json {
            format!("{:#}\n", s.to_json())
        } else {
            s.to_text()
        };
        write_output(a.output.as_deref(), text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let print_opts = if a.elide_constants {
        PrintOptions::snapshot()
    } else {
        PrintOptions::default()
    };
    if a.opts.target == cli::Target::Cpu && (a.opts.timing || stage == Stage::Lib) {
        // The memory plan is static: report it with the timings.
        if let Ok(report) = driver::cpu_memory_report(&a.opts, graph) {
            eprint!("{report}");
        }
    }
    match stage {
        Stage::Lib if a.opts.target == cli::Target::Cpu => {
            let dir = a
                .output
                .as_ref()
                .filter(|p| p.as_os_str() != "-")
                .ok_or("--emit lib writes a directory: give it with -o DIR")?;
            let files =
                tessera_cpu::library::write_library(graph, &driver::cpu_options(&a.opts), dir)
                    .map_err(|e| e.to_string())?;
            println!(
                "wrote {}, {} and {}",
                files.library.display(),
                files.header.display(),
                files.object.display()
            );
        }
        Stage::Ir | Stage::OptIr => write_output(
            a.output.as_deref(),
            print_graph_with(graph, &print_opts).as_bytes(),
        )?,
        _ => {
            if !stage.is_text() && a.output.as_ref().is_none_or(|p| p.as_os_str() == "-") {
                return Err(format!(
                    "--emit {stage} is binary: give an output file with -o"
                ));
            }
            match backend.emit(graph, stage).map_err(|e| e.to_string())? {
                Artifact::Text(t) => write_output(a.output.as_deref(), t.as_bytes())?,
                Artifact::Binary(b) => write_output(a.output.as_deref(), &b)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(a: RunArgs) -> Result<ExitCode, String> {
    let backend = driver::backend(&a.opts)?;
    let compiled = driver::compile(&a.opts, true)?;
    let g = &compiled.optimized;
    let inputs = runner::read_inputs(g, &a.inputs)?;
    let start = std::time::Instant::now();
    let (outputs, rows) = runner::run(backend.as_ref(), g, &inputs)?;
    let elapsed = start.elapsed();
    if a.opts.timing {
        let mut t = compiled.timings;
        t.add(
            format!("run on {}", a.opts.target.name()),
            elapsed,
            "first run: includes compilation",
        );
        for (name, secs, note) in rows {
            t.add(name, std::time::Duration::from_secs_f64(secs), note);
        }
        eprint!("{}", t.report());
    }
    if let Some(dir) = &a.output {
        runner::write_outputs(g, &outputs, dir)?;
    }
    for ((name, _), t) in g.outputs.iter().zip(&outputs) {
        println!("{name}: {} {:?}", t.dtype, t.shape);
    }
    if let Some(dir) = &a.check {
        let (lines, ok) = runner::check_outputs(g, &outputs, dir, a.atol, a.rtol)?;
        for l in lines {
            println!("{l}");
        }
        if !ok {
            eprintln!("error: outputs differ from {}", dir.display());
            return Ok(ExitCode::FAILURE);
        }
        println!("all {} outputs match {}", outputs.len(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn list(what: ListWhat) {
    match what {
        ListWhat::Ops => {
            for k in OpKind::ALL {
                let d = k.def();
                let sem = if d.eval.is_some() {
                    ""
                } else {
                    "  [no reference semantics]"
                };
                println!("tsr.{:<32} {}{sem}", d.mnemonic, d.summary);
            }
        }
        ListWhat::Passes => {
            for p in tessera_passes::REGISTRY {
                println!("{:<16} {}", p.name, p.summary);
            }
        }
    }
}
