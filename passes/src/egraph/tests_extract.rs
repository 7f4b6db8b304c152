//! Extraction on hand-built e-graphs with hand-set costs: the ILP finds the
//! sharing the greedy extractor misses, never returns a cycle, and is
//! deterministic; block reuse finds repeated layers and keeps semantics.

use super::analysis::{TsrAnalysis, TsrEGraph};
use super::extract::{check_acyclic, extract_dag};
use super::ilp::{extract_ilp, IlpStatus};
use super::lang::{AttrSet, TsrLang};
use egg::Id;
use std::time::Duration;
use tessera_ir::{DType, OpKind, TensorType};

fn op(m: &str, kids: &[Id]) -> TsrLang {
    TsrLang::op(
        OpKind::from_mnemonic(m).unwrap(),
        AttrSet::empty(),
        kids.to_vec(),
    )
}

fn egraph() -> TsrEGraph {
    TsrEGraph::new(TsrAnalysis::new(
        Vec::new(),
        vec![TensorType::fixed(&[4], DType::F32); 2],
    ))
}

/// Costs by mnemonic; inputs are free.
fn costs(table: &'static [(&'static str, f64)]) -> impl Fn(&TsrEGraph, Id, &TsrLang) -> f64 {
    move |_, _, n| match n {
        TsrLang::Op(o) => table
            .iter()
            .find(|(m, _)| *m == o.kind.mnemonic())
            .map(|(_, c)| *c)
            .unwrap_or(1.0),
        TsrLang::Input(1) => 10.0,
        _ => 0.0,
    }
}

/// root = add(A, B) where A = neg(x) [5] or abs(S) [2 + S], B = sqrt(S) [1 + S],
/// S = exp(x) [4]. Greedy prices A alone: neg (5) beats abs(S) (6), total
/// 5 + 5 + 1 = 11. Sharing S: abs + exp + sqrt + add = 2 + 4 + 1 + 1 = 8.
fn shared_subterm() -> (TsrEGraph, Id) {
    let mut eg = egraph();
    let x = eg.add(TsrLang::Input(0));
    let s = eg.add(op("exp", &[x]));
    let a1 = eg.add(op("neg", &[x]));
    let a2 = eg.add(op("abs", &[s]));
    eg.union(a1, a2);
    let b = eg.add(op("sqrt", &[s]));
    let root = eg.add(op("add", &[a1, b]));
    eg.rebuild();
    (eg, root)
}

const SHARED_COSTS: &[(&str, f64)] = &[
    ("exp", 4.0),
    ("neg", 5.0),
    ("abs", 2.0),
    ("sqrt", 1.0),
    ("add", 1.0),
];

#[test]
fn ilp_finds_the_sharing_greedy_misses() {
    let (eg, root) = shared_subterm();
    let cost = costs(SHARED_COSTS);
    let greedy = extract_dag(&eg, &[root], &cost).unwrap();
    assert_eq!(greedy.cost, 11.0, "the crafted case must fool greedy");
    let out = extract_ilp(&eg, &[root], &cost, greedy, Duration::from_secs(10)).unwrap();
    assert_eq!(out.status, IlpStatus::Optimal);
    assert_eq!(out.extraction.cost, 8.0);
    check_acyclic(&eg, &[root], &out.extraction.choice).unwrap();
    let a = eg.find(
        eg.lookup(op("neg", &[eg.lookup(TsrLang::Input(0)).unwrap()]))
            .unwrap(),
    );
    assert_eq!(
        out.extraction.choice[&a].as_op().unwrap().kind.mnemonic(),
        "abs"
    );
}

#[test]
fn ilp_is_deterministic() {
    let cost = costs(SHARED_COSTS);
    let run = || {
        let (eg, root) = shared_subterm();
        let greedy = extract_dag(&eg, &[root], &cost).unwrap();
        let out = extract_ilp(&eg, &[root], &cost, greedy, Duration::from_secs(10)).unwrap();
        let mut v: Vec<(Id, String)> = out
            .extraction
            .choice
            .iter()
            .map(|(k, n)| (*k, n.to_string()))
            .collect();
        v.sort();
        (v, out.extraction.cost)
    };
    let first = run();
    for _ in 0..5 {
        assert_eq!(run(), first);
    }
}

/// X = {input1 [10], neg(Y)}, Y = {neg(X)}: the cheapest choice by cost
/// (neg, neg = 2) is a cycle; the only program is input1 (10), then the
/// root's neg(X) on top.
#[test]
fn ilp_never_returns_a_cycle() {
    let mut eg = egraph();
    let x = eg.add(TsrLang::Input(1));
    let y = eg.add(op("neg", &[x]));
    let xx = eg.add(op("neg", &[y]));
    eg.union(x, xx);
    let root = eg.add(op("sqrt", &[x]));
    eg.rebuild();
    let cost = costs(&[("neg", 1.0), ("sqrt", 1.0)]);
    let greedy = extract_dag(&eg, &[root], &cost).unwrap();
    let out = extract_ilp(&eg, &[root], &cost, greedy, Duration::from_secs(10)).unwrap();
    assert_eq!(out.status, IlpStatus::Optimal);
    assert_eq!(out.extraction.cost, 11.0);
    assert!(out.size.order_vars >= 2, "the cycle needs order variables");
    check_acyclic(&eg, &[root], &out.extraction.choice).unwrap();
    assert!(matches!(
        out.extraction.choice[&eg.find(x)],
        TsrLang::Input(1)
    ));
}

#[test]
fn ilp_outcome_is_reported_when_there_is_nothing_to_choose() {
    let mut eg = egraph();
    let x = eg.add(TsrLang::Input(0));
    let root = eg.add(op("exp", &[x]));
    eg.rebuild();
    let cost = costs(&[]);
    let greedy = extract_dag(&eg, &[root], &cost).unwrap();
    let out = extract_ilp(&eg, &[root], &cost, greedy, Duration::from_secs(1)).unwrap();
    assert_eq!(out.status, IlpStatus::Trivial);
    assert_eq!(out.extraction.cost, 1.0);
}

mod blocks {
    use crate::egraph::blocks::{find_blocks, Blocks};
    use crate::egraph::{optimize, Config};
    use std::sync::Arc;
    use tessera_ir::{verify, Attrs, Builder, DType, Graph, OpKind, Tensor, TensorType, ValueId};
    use tessera_reference::diff::{max_difference, Rng};

    const H: usize = 32;

    fn op(b: &mut Builder, m: &str, operands: &[ValueId]) -> ValueId {
        let kind = OpKind::from_mnemonic(m).unwrap();
        b.op(
            kind,
            operands.iter().map(|&v| Some(v)).collect(),
            Attrs::new(),
            1,
            None,
        )
        .expect("the test op is valid")[0]
    }

    fn konst(b: &mut Builder, name: &str, shape: &[usize], v: Vec<f32>) -> ValueId {
        b.constant(name, Arc::new(Tensor::f32(shape.to_vec(), v)), None)
    }

    fn random(b: &mut Builder, rng: &mut Rng, name: &str, shape: &[usize]) -> ValueId {
        let n = shape.iter().product();
        let v = (0..n).map(|_| (rng.uniform() - 0.5) as f32).collect();
        konst(b, name, shape, v)
    }

    /// `layers` copies of a 9-op layer between a prefix op and a suffix op;
    /// layer `odd` (if any) takes its residual from the input instead.
    fn model(layers: usize, odd: Option<usize>) -> Graph {
        let mut g = Graph::new("layers");
        let x = g.add_input("x", TensorType::fixed(&[4, H as i64], DType::F32));
        let mut rng = Rng::new(7);
        let mut b = Builder::new(&mut g);
        let first = op(&mut b, "abs", &[x]);
        let mut h = first;
        for l in 0..layers {
            let w = random(&mut b, &mut rng, &format!("w{l}"), &[H, H]);
            let bias = random(&mut b, &mut rng, &format!("b{l}"), &[H]);
            let one = konst(&mut b, &format!("one{l}"), &[1], vec![1.0]);
            let half = konst(&mut b, &format!("half{l}"), &[1], vec![0.5]);
            let t = op(&mut b, "matmul", &[h, w]);
            let t = op(&mut b, "add", &[t, bias]);
            let t = op(&mut b, "mul", &[t, one]);
            let t = op(&mut b, "neg", &[t]);
            let t = op(&mut b, "neg", &[t]);
            let t = op(&mut b, "relu", &[t]);
            let res = if odd == Some(l) { first } else { h };
            let t = op(&mut b, "add", &[t, res]);
            let t = op(&mut b, "mul", &[t, half]);
            h = op(&mut b, "tanh", &[t]);
        }
        let y = op(&mut b, "exp", &[h]);
        g.add_output("y", y);
        verify(&g).unwrap();
        g
    }

    fn compute_ops(g: &Graph) -> usize {
        g.ops.iter().filter(|o| o.kind != OpKind::Constant).count()
    }

    #[test]
    fn repeated_layers_are_found() {
        assert_eq!(
            find_blocks(&model(4, None)),
            Some(Blocks {
                start: 1,
                period: 9,
                count: 4
            })
        );
        // A copy wired differently ends the run: layers 0 and 1 stay a block.
        assert_eq!(find_blocks(&model(4, Some(2))).map(|b| b.count), Some(2));
        assert_eq!(find_blocks(&model(1, None)), None);
    }

    #[test]
    fn block_reuse_optimizes_every_copy_and_keeps_semantics() {
        let g = model(4, None);
        let (with, r) = optimize(&g, &Config::default()).unwrap();
        let (without, _) = optimize(
            &g,
            &Config {
                reuse_blocks: false,
                ..Default::default()
            },
        )
        .unwrap();
        verify(&with).unwrap();
        let b = r.blocks.expect("blocks were used");
        assert_eq!((b.block_ops, b.instances), (9, 4));
        // mul-one and neg-neg remove three ops in every layer, as they do on the whole graph.
        assert_eq!(compute_ops(&with), compute_ops(&without));
        assert!(compute_ops(&with) <= 2 + 4 * 6, "{}", compute_ops(&with));
        let d = max_difference(&g, &with, 3, &Default::default()).unwrap();
        assert!(d <= 1e-5, "outputs differ by {d}");
    }
}

mod options {
    use crate::{PassManager, PassOptions};
    use tessera_ir::{Attrs, Builder, DType, Graph, OpKind, TensorType};

    #[test]
    fn pipeline_options_reach_the_egraph_pass() {
        let pm = PassManager::parse(
            "canonicalize, egraph{extractor=ilp reuse-blocks=false groups=algebra,fusion ilp-ms=500},dce",
            PassOptions::default(),
        )
        .unwrap();
        assert_eq!(pm.names(), ["canonicalize", "egraph", "dce"]);
        for bad in [
            "egraph{extractor=simplex}",
            "egraph{colour=red}",
            "egraph{groups=nope}",
            "egraph{extractor=ilp",
            "dce{x=1}",
            "egraph{reuse-blocks}",
        ] {
            assert!(
                PassManager::parse(bad, PassOptions::default()).is_err(),
                "{bad}"
            );
        }
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::fixed(&[2], DType::F32));
        let mut b = Builder::new(&mut g);
        let neg = OpKind::from_mnemonic("neg").unwrap();
        let n = b.op(neg, vec![Some(x)], Attrs::new(), 1, None).unwrap()[0];
        let y = b.op(neg, vec![Some(n)], Attrs::new(), 1, None).unwrap()[0];
        g.add_output("y", y);
        let stats = PassManager::parse("egraph{extractor=ilp}", PassOptions::default())
            .unwrap()
            .run(&mut g, &mut |_, _| {})
            .unwrap();
        let c = &stats[0].stats.counters;
        let get = |k: &str| c.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        // Matches are counted per search: the one match is found again after it applied.
        assert!(get("rule neg-neg matches").is_some_and(|m| m >= 1), "{c:?}");
        assert_eq!(get("rule neg-neg applied"), Some(1), "{c:?}");
        assert_eq!(get("ilp optimal"), Some(1), "{c:?}");
        assert_eq!(get("ilp fallbacks"), Some(0), "{c:?}");
        assert!(get("stage algebra us").is_some(), "{c:?}");
        assert!(g.ops.iter().all(|o| o.kind != neg));
    }
}
