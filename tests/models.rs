//! The fixture models (tests/models/, copied from the project's shared model
//! set): each imports with no unsupported op, verifies, prints and parses back
//! exactly, keeps a snapshot of its imported IR, and matches onnxruntime's
//! outputs on the reference backend for every stored test set.

use std::path::{Path, PathBuf};
use tessera_backend::compare::{compare, Tolerance};
use tessera_ir::{parse_graph, print_graph, print_graph_with, verify, PrintOptions};

mod common;
use common::{model_names, models_dir};

/// The models' README: 1e-4 for the float models; the quantized ones are
/// compared with onnxruntime's own integer arithmetic, within 1e-3.
fn tolerance(name: &str) -> Tolerance {
    let t = if name.contains("int8") || name.contains("int4") {
        1e-3
    } else {
        1e-4
    };
    Tolerance { atol: t, rtol: t }
}

fn import(name: &str) -> tessera_ir::Graph {
    let path = models_dir().join(name).join("model.onnx");
    tessera_frontend::import_model(&path).unwrap_or_else(|e| panic!("{name}: import failed:\n{e}"))
}

#[test]
fn every_model_imports_verifies_and_round_trips() {
    for name in model_names() {
        let g = import(&name);
        verify(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = print_graph(&g);
        let back = parse_graph(&text).unwrap_or_else(|e| panic!("{name}: reparse failed at {e}"));
        verify(&back).unwrap_or_else(|e| panic!("{name}: reparsed IR invalid: {e}"));
        assert!(
            print_graph(&back) == text,
            "{name}: print(parse(print(g))) differs from print(g)"
        );
        // (Not assert_eq: the Debug form of a graph holds every weight.)
        assert!(
            back == g,
            "{name}: the parsed graph differs structurally from the imported one"
        );
    }
}

#[test]
fn imported_ir_snapshots() {
    for name in model_names() {
        let g = import(&name);
        let text = print_graph_with(&g, &PrintOptions::snapshot());
        insta::assert_snapshot!(format!("imported_ir__{name}"), text);
    }
}

/// Runs every stored test set of model `name` through `g` on `ref` and
/// returns a line per output that differs from onnxruntime's.
/// A runtime: the reference interpreter, or the cpu target's native code.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Runtime {
    Ref,
    Cpu { threads: usize },
}

fn run_on(
    rt: Runtime,
    g: &tessera_ir::Graph,
    inputs: &[tessera_ir::Tensor],
) -> Result<Vec<tessera_ir::Tensor>, String> {
    match rt {
        Runtime::Ref => tessera_reference::run(g, inputs).map_err(|e| e.to_string()),
        Runtime::Cpu { threads } => {
            use tessera_backend::Backend;
            let cpu = tessera_cpu::Cpu {
                opts: tessera_cpu::CpuOptions {
                    threads,
                    ..Default::default()
                },
            };
            cpu.prepare(g)
                .and_then(|mut e| e.run(inputs))
                .map_err(|e| e.to_string())
        }
    }
}

fn mismatches(name: &str, g: &tessera_ir::Graph) -> Vec<String> {
    mismatches_on(Runtime::Ref, name, g)
}

fn mismatches_on(rt: Runtime, name: &str, g: &tessera_ir::Graph) -> Vec<String> {
    let dir = models_dir().join(name);
    let tol = tolerance(name);
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    assert!(!sets.is_empty(), "{name}: no test sets");
    let mut failures = Vec::new();
    for set in sets {
        let set_name = set.file_name().unwrap().to_string_lossy().into_owned();
        let expected = load_numbered(&set, "output_");
        let outputs = match run_on(rt, g, &load_numbered(&set, "input_")) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}/{set_name} on {rt:?}: run failed: {e}"));
                continue;
            }
        };
        assert_eq!(outputs.len(), expected.len(), "{name}: output count");
        for (k, (a, e)) in outputs.iter().zip(&expected).enumerate() {
            let c = compare(a, e, tol);
            if !c.ok {
                failures.push(format!("{name}/{set_name}/output_{k}: {c}"));
            }
        }
    }
    failures
}

/// Every test set of every model on `ref`, against the stored onnxruntime outputs.
#[test]
fn reference_backend_matches_onnxruntime() {
    let failures: Vec<String> = model_names()
        .iter()
        .flat_map(|n| mismatches(n, &import(n)))
        .collect();
    assert!(
        failures.is_empty(),
        "mismatches against onnxruntime:\n{}",
        failures.join("\n")
    );
}

/// The same after the -O2 pipeline (e-graph included): optimizing must never
/// change what a model computes.
#[test]
fn optimized_models_still_match_onnxruntime() {
    let failures = optimized_mismatches(Runtime::Ref);
    assert!(
        failures.is_empty(),
        "optimized models differ from onnxruntime:\n{}",
        failures.join("\n")
    );
}

/// Every fixture, as imported, compiled to native code (1 and 2 threads).
#[test]
fn cpu_backend_matches_onnxruntime() {
    let mut failures = Vec::new();
    for name in model_names() {
        let g = import(&name);
        for threads in [1, 2] {
            failures.extend(mismatches_on(Runtime::Cpu { threads }, &name, &g));
        }
    }
    assert!(
        failures.is_empty(),
        "cpu mismatches against onnxruntime:\n{}",
        failures.join("\n")
    );
}

/// Every fixture after -O2 (fused ops included) on native code.
#[test]
fn optimized_models_match_onnxruntime_on_cpu() {
    let failures = optimized_mismatches(Runtime::Cpu { threads: 2 });
    assert!(
        failures.is_empty(),
        "optimized models on cpu differ from onnxruntime:\n{}",
        failures.join("\n")
    );
}

fn optimized_mismatches(rt: Runtime) -> Vec<String> {
    let pm = tessera_passes::PassManager::parse(
        tessera_passes::pipeline_for_level(2),
        tessera_passes::PassOptions {
            verify_each: true,
            print_after_all: false,
        },
    )
    .unwrap();
    let mut failures = Vec::new();
    for name in model_names() {
        let mut g = import(&name);
        pm.run(&mut g, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        failures.extend(mismatches_on(rt, &name, &g));
    }
    failures
}

fn load_numbered(dir: &Path, prefix: &str) -> Vec<tessera_ir::Tensor> {
    let mut k = 0;
    let mut out = Vec::new();
    loop {
        let p = dir.join(format!("{prefix}{k}.pb"));
        if !p.exists() {
            break;
        }
        out.push(
            tessera_frontend::read_tensor_pb(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        );
        k += 1;
    }
    out
}
