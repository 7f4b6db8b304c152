//! `tessera compile/run --target accel` as users run them.

use std::path::PathBuf;
use std::process::{Command, Output};

fn tessera(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("tessera runs")
}

fn path(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const BERT: &str = "tests/models/bert_legacy_op17";

#[test]
fn emit_asm_lists_host_ops_and_segments() {
    let model = path(&format!("{BERT}/model.onnx"));
    let o = tessera(
        &[
            "compile", &model, "--target", "accel", "--emit", "asm", "--dim", "batch=1", "--dim",
            "seq=16",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let asm = text(&o.stdout);
    assert!(
        asm.contains("# partition:"),
        "{}",
        &asm[..400.min(asm.len())]
    );
    assert!(
        asm.contains("#   host tsr.gather"),
        "embedding gathers run on the host"
    );
    assert!(
        asm.contains("\ngemm "),
        "quantized matmuls run on the array"
    );
    assert!(asm.contains(".tsa 2"));
}

#[test]
fn emit_needs_bound_dims() {
    let model = path(&format!("{BERT}/model.onnx"));
    let o = tessera(
        &["compile", &model, "--target", "accel", "--emit", "asm"],
        &[],
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("--dim"), "{err}");
}

#[test]
fn emit_stream_writes_a_bundle() {
    let model = path(&format!("{BERT}/model.onnx"));
    let out = std::env::temp_dir().join(format!("accel_cli_{}.bin", std::process::id()));
    let o = tessera(
        &[
            "compile",
            &model,
            "--target",
            "accel",
            "--emit",
            "stream",
            "-o",
            out.to_str().unwrap(),
            "--dim",
            "batch=1",
            "--dim",
            "seq=16",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(&bytes[..4], b"TSRP");
}

#[test]
fn run_checks_against_onnxruntime_within_quant_tolerance() {
    let model = path(&format!("{BERT}/model.onnx"));
    let set = path(&format!("{BERT}/test_data_set_0"));
    let o = tessera(
        &[
            "run", &model, "--target", "accel", "--inputs", &set, "--check", &set, "--atol",
            "0.05", "--rtol", "0.05", "--timing",
        ],
        &[],
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("all 1 outputs match"));
    assert!(
        text(&o.stderr).contains("accel report (config edge)"),
        "{}",
        text(&o.stderr)
    );
}
