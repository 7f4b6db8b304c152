//! Optimizer time on a model at -O2, with and without per-block reuse:
//! `cargo run --release -p tessera-passes --example egraph_bench -- model.onnx [greedy|ilp]`.

use std::time::Instant;
use tessera_passes::egraph::{optimize, Config};
use tessera_passes::{PassManager, PassOptions};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: egraph_bench MODEL.onnx [greedy|ilp]")?;
    let extractor = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(tessera_passes::egraph::Extractor::Greedy);
    let mut g = tessera_frontend::import_model(path).map_err(|e| e.to_string())?;
    // What -O2 runs before the e-graph pass.
    PassManager::parse("canonicalize,fold-constants", PassOptions::default())
        .map_err(|e| e.to_string())?
        .run(&mut g, &mut |_, _| {})
        .map_err(|e| e.to_string())?;
    println!("ops before: {}", g.ops.len());
    for reuse in [true, false] {
        let cfg = Config {
            reuse_blocks: reuse,
            extractor,
            ..Default::default()
        };
        let t = Instant::now();
        let (out, r) = optimize(&g, &cfg)?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "reuse_blocks={reuse}: {secs:.3} s, ops {} -> {}, e-nodes {} -> {}, blocks {:?}, cost {:.3e} -> {:.3e} s, saturate {:.3} s, extract {:.3} s, ilp optimal/limit/fallback {}/{}/{}",
            g.ops.len(), out.ops.len(), r.nodes_before, r.egraph_nodes, r.blocks,
            r.cost_before, r.cost, r.saturate_time.as_secs_f64(), r.extract_time.as_secs_f64(),
            r.ilp_optimal, r.ilp_time_limit, r.ilp_fallbacks
        );
        for s in r.stages.iter().take(8) {
            println!(
                "  stage {} iters {} stop {} nodes {} {:.3} s",
                s.name,
                s.iterations,
                s.stop_reason,
                s.nodes_after,
                s.time.as_secs_f64()
            );
        }
        tessera_ir::verify(&out).map_err(|e| format!("invalid result: {e}"))?;
    }
    Ok(())
}
