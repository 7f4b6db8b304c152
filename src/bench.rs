//! `tessera bench`: in-process latency of a compiled model after warm-up.
//! Comparisons against peers (onnxruntime) run in scripts/bench_compare.py,
//! which calls this command and onnxruntime in interleaved rounds.

use crate::cli::BenchArgs;
use crate::{driver, runner};
use std::process::ExitCode;
use std::time::Instant;

pub fn bench(a: BenchArgs) -> Result<ExitCode, String> {
    let t = Instant::now();
    let compiled = driver::compile(&a.opts, true)?;
    let g = &compiled.optimized;
    let inputs = if a.inputs.is_empty() {
        let env =
            tessera_cpu::specialize::env_from_dims(g, &a.opts.dims).map_err(|e| e.to_string())?;
        tessera_reference::diff::random_inputs(g, 1, &env)?
    } else {
        runner::read_inputs(g, &a.inputs)?
    };
    let backend = driver::backend(&a.opts)?;
    let mut exe = backend.prepare(g).map_err(|e| e.to_string())?;
    exe.prepare_for(&inputs).map_err(|e| e.to_string())?;
    let compile_s = t.elapsed().as_secs_f64();
    for _ in 0..a.warmup {
        exe.run(&inputs).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(a.iters);
    for _ in 0..a.iters.max(1) {
        let t = Instant::now();
        exe.run(&inputs).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{}: target {}, {} thread(s), {} runs: median {:.3} ms, min {:.3} ms, max {:.3} ms (compile {:.2} s)",
        a.opts.model.display(),
        a.opts.target.name(),
        a.opts.threads,
        times.len(),
        median,
        sorted[0],
        sorted[sorted.len() - 1],
        compile_s
    );
    if let Some(path) = &a.json {
        let j = serde_json::json!({
            "model": a.opts.model.display().to_string(),
            "target": a.opts.target.name(),
            "threads": a.opts.threads,
            "times_ms": times,
            "median_ms": median,
            "compile_s": compile_s,
        });
        std::fs::write(path, format!("{j:#}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
