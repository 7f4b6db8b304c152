//! Snapshots of every fixture model after the -O2 pipeline (e-graph with
//! the algebra, recognize and fusion groups): what the backends receive.
//! A change in what the optimizer recognizes or fuses shows up here as a
//! reviewed diff. That the optimized graphs still compute what onnxruntime
//! does is checked in `tests/models.rs`.

use std::path::{Path, PathBuf};
use tessera_ir::{print_graph_with, verify, OpKind, PrintOptions};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

fn model_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(models_dir())
        .expect("tests/models exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 11,
        "expected the 11 fixture models, found {names:?}"
    );
    names
}

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
