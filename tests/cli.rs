//! The `tessera` binary as users run it: stages, output routing, op
//! statistics, the run/check workflow, and errors that name what is wrong.

use std::path::PathBuf;
use std::process::{Command, Output};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("tessera runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn path(rel: &str) -> String {
    root().join(rel).to_string_lossy().into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const BERT: &str = "tests/models/bert_legacy_op17/model.onnx";

#[test]
fn emit_ir_goes_to_stdout_and_parses_back() {
    let o = tessera(&["compile", &path(BERT), "--emit", "ir"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("tsr.graph @"),
        "{}",
        &text[..200.min(text.len())]
    );
    // Feed the printed IR back in as a model.
    let dir = std::env::temp_dir().join(format!("tessera-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tsr = dir.join("bert.tsr");
    std::fs::write(&tsr, &text).unwrap();
    let o2 = tessera(&["compile", tsr.to_str().unwrap(), "--emit", "ir", "-o", "-"]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(stdout(&o2), text);
}

#[test]
fn op_stats_json_counts_ops() {
    let o = tessera(&[
        "compile",
        &path(BERT),
        "--emit",
        "ir",
        "--op-stats",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    // The fixture has 2 layers x (Q, K, V, out, 2 MLP) linear layers plus the attention matmuls.
    assert_eq!(v["ops"]["tsr.matmul"], 16, "{v}");
    assert_eq!(v["ops"]["tsr.layer_normalization"], 5, "{v}");
    let total: u64 = v["ops"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(v["total_ops"].as_u64().unwrap(), total);
}

#[test]
fn timing_and_print_after_all_report_every_pass() {
    let o = tessera(&[
        "compile",
        &path(BERT),
        "--timing",
        "--print-ir-after-all",
        "--verify-each",
        "-o",
        "/dev/null",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for pass in ["import", "canonicalize", "fold-constants", "dce"] {
        assert!(
            err.contains(&format!("IR Dump After {pass}")),
            "no dump after {pass}"
        );
    }
    assert!(
        err.contains("pass dce") && err.contains("Wall time"),
        "{err}"
    );
}

#[test]
fn target_stages_emit_or_explain() {
    // Native and accelerator stages compile for concrete shapes: without
    // --dim the error names the symbolic dims.
    for (target, stage) in [("cpu", "llvm"), ("accel", "asm")] {
        let o = tessera(&["compile", &path(BERT), "--target", target, "--emit", stage]);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("--dim") && stderr(&o).contains("seq"),
            "{target}/{stage}: {}",
            stderr(&o)
        );
    }
    let o = tessera(&[
        "compile",
        &path(BERT),
        "--target",
        "cpu",
        "--emit",
        "llvm",
        "--dim",
        "batch=1",
        "--dim",
        "seq=8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ll = String::from_utf8_lossy(&o.stdout);
    assert!(
        ll.contains("define i32 @tsr_main(") && ll.contains("<16 x float>"),
        "{}",
        &ll[..ll.len().min(400)]
    );
    let o = tessera(&["compile", &path(BERT), "--target", "cuda", "--emit", "ptx"]);
    assert!(
        !o.status.success() && stderr(&o).contains("not available yet"),
        "{}",
        stderr(&o)
    );
    let o = tessera(&["compile", &path(BERT), "--emit", "bogus"]);
    assert!(
        !o.status.success() && stderr(&o).contains("unknown stage 'bogus'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_checks_against_expected_outputs() {
    let set = path("tests/models/gpt2_legacy_op17/test_data_set_1");
    let out = std::env::temp_dir().join(format!("tessera-run-{}", std::process::id()));
    let o = tessera(&[
        "run",
        &path("tests/models/gpt2_legacy_op17/model.onnx"),
        "--target",
        "ref",
        "--inputs",
        &set,
        "--check",
        &set,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("max abs error"), "{}", stdout(&o));
    assert!(out.join("output_0.pb").exists());
    // Checking against another test set's outputs fails with a mismatch.
    let other = path("tests/models/gpt2_legacy_op17/test_data_set_0");
    let o = tessera(&[
        "run",
        &path("tests/models/gpt2_legacy_op17/model.onnx"),
        "--inputs",
        &set,
        "--check",
        &other,
    ]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("MISMATCH") || stderr(&o).contains("shape"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn unsupported_ops_are_all_listed_with_their_nodes() {
    let o = tessera(&["compile", &path("tests/fixtures/unsupported_ops.onnx")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("fancy_norm_1") && err.contains("FancyNorm") && err.contains("com.example"),
        "{err}"
    );
    assert!(
        err.contains("mystery_2") && err.contains("NoSuchOp") && err.contains("17"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn corrupt_and_invalid_models_get_clear_errors() {
    let o = tessera(&["compile", &path("tests/fixtures/truncated.onnx")]);
    assert!(!o.status.success());
    assert!(
        !stderr(&o).contains("panicked") && stderr(&o).contains("truncated.onnx"),
        "{}",
        stderr(&o)
    );
    let o = tessera(&["compile", &path("tests/fixtures/bad_matmul.onnx")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("bad_matmul") && err.contains("MatMul"),
        "{err}"
    );
    let o = tessera(&["compile", "/nonexistent/model.onnx"]);
    assert!(
        !o.status.success() && stderr(&o).contains("/nonexistent/model.onnx"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_inputs_name_the_graph_input() {
    let model = path(BERT);
    let set0 = root().join("tests/models/bert_legacy_op17/test_data_set_0");
    // Too few inputs.
    let one = set0.join("input_0.pb");
    let o = tessera(&["run", &model, "--inputs", one.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("3 inputs"),
        "{}",
        stderr(&o)
    );
    // A float tensor where int64 token ids are expected.
    let floats = root().join("tests/models/vit_legacy_op17/test_data_set_0/input_0.pb");
    let ins = [floats, set0.join("input_1.pb"), set0.join("input_2.pb")];
    let args: Vec<&str> = ins.iter().map(|p| p.to_str().unwrap()).collect();
    let mut cmd = vec!["run", model.as_str(), "--inputs"];
    cmd.extend(args);
    let o = tessera(&cmd);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("input_ids") && err.contains("i64"), "{err}");
    // A .pb file that is not a TensorProto.
    let bad = path("tests/fixtures/not_a_tensor.pb");
    let o = tessera(&["run", &model, "--inputs", &bad, &bad, &bad]);
    assert!(
        !o.status.success() && !stderr(&o).contains("panicked"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("not_a_tensor.pb"), "{}", stderr(&o));
}

#[test]
fn list_shows_ops_and_passes() {
    let o = tessera(&["list", "ops"]);
    assert!(o.status.success());
    let ops = stdout(&o);
    assert!(
        ops.contains("tsr.matmul") && ops.contains("tsr.ms.matmul_nbits"),
        "{ops}"
    );
    let o = tessera(&["list", "passes"]);
    assert!(stdout(&o).contains("fold-constants"));
}

#[test]
fn simulate_runs_a_stream_and_checks_it() {
    let trace = std::env::temp_dir().join(format!("tessera-trace-{}.json", std::process::id()));
    let o = tessera(&[
        "simulate",
        &path("tests/fixtures/accel/example.tsa"),
        "--inputs",
        &path("tests/fixtures/accel/inputs"),
        "--check",
        &path("tests/fixtures/accel/expected"),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("cycles") && out.contains("all 1 outputs match"),
        "{out}"
    );
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace).unwrap()).expect("trace is JSON");
    assert!(t["traceEvents"].as_array().is_some_and(|e| !e.is_empty()));
    // A malformed stream names the instruction; a missing input names the buffer.
    let bad = std::env::temp_dir().join(format!("tessera-bad-{}.tsa", std::process::id()));
    std::fs::write(&bad, ".tsa 2\n.dram_size 64\nfrobnicate x=1\n").unwrap();
    let o = tessera(&["simulate", bad.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("instruction 0"),
        "{}",
        stderr(&o)
    );
    let o = tessera(&["simulate", &path("tests/fixtures/accel/example.tsa")]);
    assert!(
        !o.status.success() && stderr(&o).contains("'x'"),
        "{}",
        stderr(&o)
    );
}
