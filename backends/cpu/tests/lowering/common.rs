//! Shared by the cpu tests: run a graph on cpu and on the reference
//! interpreter with the same seeded random inputs and compare.

use tessera_backend::compare::{compare, Tolerance};
use tessera_backend::Backend;
use tessera_cpu::{Cpu, CpuOptions};
use tessera_ir::{parse_graph, Graph, Tensor};

pub fn graph(text: &str) -> Graph {
    let g = parse_graph(text).unwrap_or_else(|e| panic!("test graph does not parse: {e}\n{text}"));
    tessera_ir::verify(&g).unwrap_or_else(|e| panic!("test graph does not verify: {e}"));
    g
}

/// Seeded random inputs for `g` with every symbolic dim of size 3.
pub fn inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let dims: std::collections::HashMap<String, i64> = g
        .inputs
        .iter()
        .flat_map(|v| {
            g.ty(*v).shape.iter().flat_map(|d| match d {
                tessera_ir::Dim::Known(p) => p.symbols().cloned().collect::<Vec<_>>(),
                _ => vec![],
            })
        })
        .map(|s| (s, 3))
        .collect();
    tessera_reference::diff::random_inputs(g, seed, &dims).expect("random inputs")
}

pub fn run_cpu(g: &Graph, inputs: &[Tensor], threads: usize) -> Vec<Tensor> {
    let cpu = Cpu {
        opts: CpuOptions {
            threads,
            ..CpuOptions::default()
        },
    };
    let mut exe = cpu.prepare(g).expect("prepare");
    exe.run(inputs)
        .unwrap_or_else(|e| panic!("cpu run failed: {e}"))
}

/// Runs `g` on cpu (1 and 2 threads) and on ref; asserts the outputs agree
/// within the dtype's tolerance and that thread counts agree exactly.
pub fn check(text: &str) {
    let g = graph(text);
    let ins = inputs(&g, 7);
    let want = tessera_reference::run(&g, &ins).expect("reference run");
    let got1 = run_cpu(&g, &ins, 1);
    let got2 = run_cpu(&g, &ins, 2);
    assert_eq!(got1.len(), want.len());
    for (i, ((a, b), w)) in got1.iter().zip(&got2).zip(&want).enumerate() {
        assert_eq!(
            a.to_bytes(),
            b.to_bytes(),
            "output {i}: 1 vs 2 threads differ"
        );
        let c = compare(a, w, Tolerance::for_dtype(w.dtype));
        assert!(c.ok, "output {i}: cpu vs ref: {c:?}\n{text}");
    }
}
