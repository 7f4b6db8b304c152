//! The analytical accelerator cost model (`tessera_cost_model::accel`)
//! against the simulator: mean absolute percentage error per op and per
//! model-sized op sequence, on both presets. LLMCompass reports 10.4% per
//! operator and 4.1% end to end; the targets here are 10% and 5%.

#[path = "../examples/common/mod.rs"]
mod common;

use common::*;
use tessera_accel_isa::HwConfig;
use tessera_cost_model::accel::mape;

/// A fixed set: BERT-base at seq 128 (every distinct op), a GQA projection,
/// an odd-sized GEMM and the vector kernels at transformer widths.
fn ops() -> Vec<OpShape> {
    let mut v = bert_base();
    v.push(OpShape::gemm("llama kv(gqa)", 128, 2048, 512));
    v.push(OpShape::gemm("odd", 77, 333, 129));
    v.push(OpShape::vec("softmax(1024)", VecKernel::Softmax, 64, 1024));
    v.push(OpShape::vec("silu", VecKernel::Silu, 128, 5632));
    v
}

#[test]
fn per_op_and_per_model_error_are_within_targets() {
    for cfg in [HwConfig::edge(), HwConfig::server()] {
        let mut pairs = vec![];
        for op in ops() {
            let (pred, rep) = run_op(&cfg, &op).unwrap();
            let err = (pred as f64 - rep.total_cycles as f64).abs() / rep.total_cycles as f64;
            // No single op may be far off either, or the mean hides it.
            assert!(
                err < 0.25,
                "{} on {}: predicted {pred}, simulated {}",
                op.name(),
                cfg.name,
                rep.total_cycles
            );
            pairs.push((pred as f64, rep.total_cycles as f64));
        }
        let per_op = mape(&pairs);
        assert!(per_op < 10.0, "{}: per-op MAPE {per_op:.2}%", cfg.name);

        let (pred, rep) = run_model(&cfg, &bert_base()).unwrap();
        let per_model = mape(&[(pred as f64, rep.total_cycles as f64)]);
        assert!(
            per_model < 5.0,
            "{}: BERT layer predicted {pred}, simulated {} ({per_model:.2}%)",
            cfg.name,
            rep.total_cycles
        );
    }
}
