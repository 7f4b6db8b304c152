//! `tessera cost`: one prediction per op of the optimized graph, a total
//! that is their sum, and an optimized graph predicted no slower than the
//! unoptimized one.

use std::path::PathBuf;
use std::process::{Command, Output};

const BERT: &str = "tests/models/bert_legacy_op17/model.onnx";
const DIMS: [&str; 4] = ["--dim", "batch=1", "--dim", "seq=32"];

fn path(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("tessera runs")
}

fn cost(target: &str, level: &str, json: bool) -> Output {
    let model = path(BERT);
    let mut args = vec!["cost", model.as_str(), "--target", target, level];
    args.extend(DIMS);
    if json {
        args.push("--json");
    }
    tessera(&args)
}

fn cost_json(target: &str, level: &str) -> serde_json::Value {
    let o = cost(target, level, true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("--json prints JSON")
}

fn total(v: &serde_json::Value) -> f64 {
    v["total_seconds"].as_f64().expect("a total")
}

/// The ops of the model at -O0 once its dims are bound, constants aside:
/// what the prediction must list, in order.
fn specialized_ops() -> Vec<String> {
    let g = tessera_frontend::import_model(std::path::Path::new(&path(BERT))).unwrap();
    let env = [("batch".to_string(), 1), ("seq".to_string(), 32)]
        .into_iter()
        .collect();
    let g = tessera_cpu::specialize::specialize(&g, &env).unwrap();
    g.ops
        .iter()
        .filter(|o| o.kind != tessera_ir::OpKind::Constant)
        .map(|o| o.kind.mnemonic().to_string())
        .collect()
}

#[test]
fn one_row_per_op_and_the_total_is_their_sum() {
    let v = cost_json("cpu", "-O0");
    let rows = v["ops"].as_array().expect("ops");
    let ops: Vec<String> = rows
        .iter()
        .map(|r| r["op"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops, specialized_ops());
    let sum: f64 = rows.iter().map(|r| r["seconds"].as_f64().unwrap()).sum();
    assert!(
        (sum - total(&v)).abs() <= 1e-12 * sum,
        "{sum} vs {}",
        total(&v)
    );
    for r in rows {
        let bound = r["bound"].as_str().unwrap();
        assert!(["compute", "memory", "overhead"].contains(&bound), "{r}");
        assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
    }
    // The text form lists the same rows and the same total.
    let o = cost("cpu", "-O0", false);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), rows.len() + 2, "{text}");
    let last = lines.last().unwrap();
    let us: f64 = last
        .rsplit(": ")
        .next()
        .and_then(|s| s.strip_suffix(" us"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no total in '{last}'"));
    assert!((us - total(&v) * 1e6).abs() < 1e-3, "{last}");
}

#[test]
fn optimizing_never_predicts_a_slower_model() {
    for target in ["cpu", "accel"] {
        let (o0, o2) = (cost_json(target, "-O0"), cost_json(target, "-O2"));
        assert!(
            total(&o2) <= total(&o0),
            "{target}: {} > {}",
            total(&o2),
            total(&o0)
        );
        let n = |v: &serde_json::Value| v["ops"].as_array().unwrap().len();
        assert!(n(&o2) < n(&o0), "{target}: -O2 fuses ops");
    }
}

#[test]
fn linear_ops_are_priced_with_their_product() {
    let v = cost_json("cpu", "-O2");
    let linear: Vec<&serde_json::Value> = v["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["op"] == "linear")
        .collect();
    assert!(!linear.is_empty(), "-O2 fuses BERT's projections");
    for r in linear {
        // 32 tokens x K x N x 2 with K, N >= 1: far from the zero flops
        // `linear` used to be priced at.
        assert!(r["flops"].as_f64().unwrap() >= 2.0 * 32.0, "{r}");
    }
}

#[test]
fn unbound_symbolic_dims_are_an_error_naming_them() {
    let o = tessera(&["cost", &path(BERT), "--target", "cpu"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("batch") && err.contains("--dim"), "{err}");
}
