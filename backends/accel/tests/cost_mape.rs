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

mod attention {
    use std::collections::BTreeMap;
    use tessera_accel::attention_gemm::{
        product_batch, transpose_batch, GemmBatch, Operands, Weight,
    };
    use tessera_accel::emit::Emitter;
    use tessera_accel_isa::{Buffer, DType, HwConfig, Role, Stream};
    use tessera_cost_model::accel::mape;
    use tessera_sim::Simulator;

    /// BERT-base attention's array kernels for `heads` heads of 64 at seq
    /// 128: the Kᵀ layout transpose, Q·Kᵀ reading K's packed layout, P·V
    /// with V transposed into scratch first.
    fn kernels(heads: u64) -> Vec<(&'static str, GemmBatch)> {
        let (s, d) = (128u64, 64u64);
        let mat = heads * s * d;
        let (q, k, kt, v, scores, ctx) = (0, mat, 2 * mat, 3 * mat, 4 * mat, 5 * mat);
        let p = ctx + 4 * mat;
        let scratch = p + heads * s * s;
        let eye = scratch + s * d;
        vec![
            (
                "k transpose",
                transpose_batch("kt", heads, s, d, k, kt, eye),
            ),
            (
                "q·kᵀ",
                product_batch(
                    "qk",
                    heads,
                    (s, d, s),
                    Operands {
                        a: q,
                        b: kt,
                        b_batched: true,
                        c: scores,
                    },
                    Weight::Packed { addr: k },
                ),
            ),
            (
                "p·v",
                product_batch(
                    "pv",
                    heads,
                    (s, s, d),
                    Operands {
                        a: p,
                        b: v,
                        b_batched: true,
                        c: ctx,
                    },
                    Weight::KFirst { scratch, eye },
                ),
            ),
        ]
    }

    /// Simulated cycles of the kernels as one stream, and the model's sum.
    fn run(cfg: &HwConfig, ks: &[&GemmBatch]) -> (u64, u64) {
        let mut em = Emitter::new(cfg);
        let mut predicted = 0;
        for k in ks {
            k.emit(&mut em).unwrap();
            predicted += k.estimate(cfg).unwrap();
        }
        let size = 64 << 20;
        let stream = Stream {
            config_hash: cfg.hash(),
            dram_size: size,
            buffers: vec![Buffer {
                name: "dram".into(),
                role: Role::Output,
                dtype: DType::U8,
                shape: vec![size],
                addr: 0,
            }],
            insns: em.finish(),
            ..Default::default()
        };
        let (_, rep) = Simulator::new(cfg.clone())
            .run(&stream, &BTreeMap::new())
            .unwrap();
        (predicted, rep.total_cycles)
    }

    #[test]
    fn attention_gemm_kernels_are_within_targets() {
        for cfg in [HwConfig::edge(), HwConfig::server()] {
            let ks = kernels(2);
            let mut pairs = vec![];
            for (name, k) in &ks {
                let (pred, sim) = run(&cfg, &[k]);
                eprintln!("{} {name}: predicted {pred}, simulated {sim}", cfg.name);
                pairs.push((pred as f64, sim as f64));
            }
            let per_op = mape(&pairs);
            assert!(per_op < 10.0, "{}: per-op MAPE {per_op:.2}%", cfg.name);
            let all = kernels(12);
            let (pred, sim) = run(&cfg, &all.iter().map(|(_, k)| k).collect::<Vec<_>>());
            let per_model = mape(&[(pred as f64, sim as f64)]);
            eprintln!(
                "{} attention (12 heads): predicted {pred}, simulated {sim}, {per_model:.2}%",
                cfg.name
            );
            assert!(
                per_model < 5.0,
                "{}: attention predicted {pred}, simulated {sim}",
                cfg.name
            );
        }
    }
}
