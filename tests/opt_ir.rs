//! Snapshots of every fixture model after the -O2 pipeline (Q/K/V
//! projections merged, then the e-graph with the algebra, recognize, fusion
//! and tiling groups): what the backends receive.
//! A change in what the optimizer recognizes or fuses shows up here as a
//! reviewed diff. That the optimized graphs still compute what onnxruntime
//! does is checked in `tests/models.rs`.

use tessera_ir::{print_graph_with, verify, OpKind, PrintOptions};

mod common;
use common::{model_names, models_dir};

fn optimized(name: &str) -> tessera_ir::Graph {
    let path = models_dir().join(name).join("model.onnx");
    let mut g = tessera_frontend::import_model(&path)
        .unwrap_or_else(|e| panic!("{name}: import failed:\n{e}"));
    let pm = tessera_passes::PassManager::parse(
        tessera_passes::pipeline_for_level(2),
        tessera_passes::PassOptions {
            verify_each: true,
            print_after_all: false,
        },
    )
    .unwrap();
    pm.run(&mut g, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    verify(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
    g
}

fn count(g: &tessera_ir::Graph, m: &str) -> usize {
    let k = OpKind::from_mnemonic(m).expect("known op");
    g.ops.iter().filter(|o| o.kind == k).count()
}

#[test]
fn optimized_ir_snapshots() {
    for name in model_names() {
        let text = print_graph_with(&optimized(&name), &PrintOptions::snapshot());
        insta::assert_snapshot!(name, text);
    }
}

/// The float transformer fixtures (2 layers each) end with one attention
/// op per layer and no decomposed softmax, GELU or normalization left.
#[test]
fn each_layer_is_one_attention_op_with_fused_epilogues() {
    let float_models = [
        "bert_legacy_op17",
        "bert_dynamo_op23",
        "gpt2_legacy_op17",
        "gpt2_dynamo_op23",
        "llama_legacy_op17",
        "llama_dynamo_op23",
        "llama_kvcache_legacy_op17",
        "vit_legacy_op17",
        "vit_dynamo_op23",
    ];
    for name in float_models {
        let g = optimized(name);
        assert_eq!(count(&g, "attention"), 2, "{name}");
        for gone in ["softmax", "erf", "tanh", "pow", "sigmoid", "sqrt"] {
            assert_eq!(count(&g, gone), 0, "{name}: {gone} left");
        }
        // Each layer's MLP and output projection at least.
        assert!(count(&g, "linear") >= 6, "{name}: {}", count(&g, "linear"));
    }
}

/// The products of each input that `merge-projections` should have merged:
/// (operand, count) for every input read by three or more products.
fn unmerged_products(g: &tessera_ir::Graph) -> Vec<(tessera_ir::ValueId, usize)> {
    let mut by_input: std::collections::BTreeMap<tessera_ir::ValueId, usize> = Default::default();
    for op in &g.ops {
        if matches!(op.kind.mnemonic(), "matmul" | "linear") {
            if let Some(x) = op.operand(0) {
                *by_input.entry(x).or_default() += 1;
            }
        }
    }
    by_input.into_iter().filter(|&(_, n)| n >= 3).collect()
}

/// Where the exporter wrote Q, K and V as three products of one input they
/// are one product per layer and a split; GPT-2 writes one (its c_attn).
#[test]
fn qkv_projections_are_one_product_per_layer() {
    for name in [
        "bert_legacy_op17",
        "bert_dynamo_op23",
        "gpt2_legacy_op17",
        "gpt2_dynamo_op23",
        "llama_legacy_op17",
        "llama_dynamo_op23",
        "llama_kvcache_legacy_op17",
        "vit_legacy_op17",
        "vit_dynamo_op23",
    ] {
        let g = optimized(name);
        assert_eq!(unmerged_products(&g), vec![], "{name}");
        assert_eq!(count(&g, "split"), 2, "{name}");
    }
}

/// Llama's rotate_half RoPE (legacy export) becomes the rotary op like the
/// dynamo export's; the dynamo export's attention reads the two K/V heads
/// without repetition and takes the causal half of its mask as is_causal.
#[test]
fn llama_rotary_grouped_heads_and_causal_mask() {
    for name in [
        "llama_legacy_op17",
        "llama_dynamo_op23",
        "llama_kvcache_legacy_op17",
        "llama_int4_matmulnbits",
    ] {
        let g = optimized(name);
        // Q and K of each of the two layers.
        assert_eq!(count(&g, "rotary_embedding"), 4, "{name}");
        assert_eq!(count(&g, "neg") + count(&g, "slice"), 0, "{name}");
    }
    let g = optimized("llama_dynamo_op23");
    let attention = OpKind::from_mnemonic("attention").unwrap();
    for op in g.ops.iter().filter(|o| o.kind == attention) {
        let k = g.ty(op.operand(1).unwrap());
        assert_eq!(k.shape[1].as_fixed(), Some(2), "K heads: {k}");
        assert_eq!(
            op.attrs.get("is_causal"),
            Some(&tessera_ir::Attr::Int(1)),
            "{op:?}"
        );
        // What is left of the mask is the padding: one row per batch.
        let m = g.ty(op.operand(3).unwrap());
        assert_eq!(m.shape[2].as_fixed(), Some(1), "mask {m}");
    }
}
