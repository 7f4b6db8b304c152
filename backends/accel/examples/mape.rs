//! Prints predicted (analytical model) vs simulated cycles per op and per
//! transformer layer, on both presets, with the MAPE of each:
//! `cargo run --release -p tessera-accel --example mape`

mod common;

use common::*;
use tessera_accel_isa::HwConfig;
use tessera_cost_model::accel::mape;

fn main() -> Result<(), String> {
    let models: [(&str, Vec<OpShape>); 3] = [
        ("BERT-base (seq 128)", bert_base()),
        ("GPT-2 medium (seq 128)", gpt2_medium()),
        ("Llama-ish 2048/GQA 32:8 (seq 128)", llama_gqa()),
    ];
    for cfg in [HwConfig::edge(), HwConfig::server()] {
        println!("## preset {}\n", cfg.name);
        println!(
            "| model | op | shape | predicted | simulated | error | array util (busy / total) |"
        );
        println!("|---|---|---|---:|---:|---:|---:|");
        let (mut op_pairs, mut model_pairs) = (vec![], vec![]);
        for (model, ops) in &models {
            for op in ops {
                let (pred, rep) = run_op(&cfg, op)?;
                let shape = match op {
                    OpShape::Gemm { m, k, n, .. } => format!("{m}x{k}x{n}"),
                    OpShape::Vec { rows, len, .. } => format!("{rows}x{len}"),
                };
                let util = if rep.macs > 0 {
                    format!(
                        "{:.1}% / {:.1}%",
                        100.0 * rep.array_utilization,
                        100.0 * rep.array_utilization_total
                    )
                } else {
                    "-".into()
                };
                println!(
                    "| {model} | {} | {shape} | {pred} | {} | {:+.2}% | {util} |",
                    op.name(),
                    rep.total_cycles,
                    100.0 * (pred as f64 - rep.total_cycles as f64) / rep.total_cycles as f64
                );
                op_pairs.push((pred as f64, rep.total_cycles as f64));
            }
            let (pred, rep) = run_model(&cfg, ops)?;
            println!(
                "| {model} | **whole layer** | {} ops | {pred} | {} | {:+.2}% | {:.1}% / {:.1}% |",
                ops.len(),
                rep.total_cycles,
                100.0 * (pred as f64 - rep.total_cycles as f64) / rep.total_cycles as f64,
                100.0 * rep.array_utilization,
                100.0 * rep.array_utilization_total
            );
            model_pairs.push((pred as f64, rep.total_cycles as f64));
        }
        println!(
            "\nMAPE on {}: per op {:.2}% ({} ops), per model {:.2}% ({} layers)\n",
            cfg.name,
            mape(&op_pairs),
            op_pairs.len(),
            mape(&model_pairs),
            model_pairs.len()
        );
    }
    Ok(())
}
