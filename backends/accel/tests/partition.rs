//! Error paths and the BERT-base-sized layer measurement.

use std::sync::Arc;
use tessera_accel::program::Program;
use tessera_accel::specialize::Bindings;
use tessera_accel::RunSummary;
use tessera_accel_isa::HwConfig;
use tessera_ir::{Attr, Attrs, Builder, DType, Graph, Loc, OpKind, Tensor, TensorType, ValueId};

fn loc(name: &str) -> Option<Loc> {
    Some(Loc {
        name: name.into(),
        op_type: name.into(),
    })
}

fn op(b: &mut Builder, kind: OpKind, xs: &[ValueId], attrs: Attrs, name: &str) -> ValueId {
    b.op(
        kind,
        xs.iter().map(|&v| Some(v)).collect(),
        attrs,
        1,
        loc(name),
    )
    .unwrap()[0]
}

/// Deterministic pseudo-random weights in [-0.05, 0.05).
fn weights(k: usize, n: usize, seed: u64) -> Tensor {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v = (0..k * n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect();
    Tensor::f32(vec![k, n], v)
}

#[test]
fn unsupported_op_names_the_node() {
    let mut g = Graph::new("floor");
    let x = g.add_input("x", TensorType::fixed(&[4, 8], DType::F32));
    let mut b = Builder::new(&mut g);
    let y = op(&mut b, OpKind::Floor, &[x], Attrs::new(), "my_floor");
    g.add_output("y", y);
    let err = Program::compile(&g, &HwConfig::edge(), &Bindings::new())
        .err()
        .expect("Floor has no accel lowering and is not a host op");
    let text = err.to_string();
    assert!(text.contains("my_floor"), "{text}");
    assert!(text.contains("not supported on the accel target"), "{text}");
}

#[test]
fn host_ops_are_listed_with_their_node() {
    let mut g = Graph::new("host");
    let x = g.add_input("x", TensorType::fixed(&[4, 8], DType::F32));
    let mut b = Builder::new(&mut g);
    let e = op(&mut b, OpKind::Erf, &[x], Attrs::new(), "the_erf");
    let y = op(&mut b, OpKind::Exp, &[e], Attrs::new(), "the_exp");
    g.add_output("y", y);
    let p = Program::compile(&g, &HwConfig::edge(), &Bindings::new()).unwrap();
    let header = p.header();
    assert!(header.contains("host tsr.erf the_erf"), "{header}");
    assert_eq!(p.host_ops().count(), 1);
    assert_eq!(p.segments().count(), 1);
    // The program still computes exp(erf(x)).
    let xs = Tensor::f32(vec![4, 8], (0..32).map(|i| i as f32 / 16.0 - 1.0).collect());
    let (out, _) = p.run(std::slice::from_ref(&xs)).unwrap();
    let want = tessera_reference::run(&g, &[xs]).unwrap();
    for (a, b) in out[0].to_f32_vec().iter().zip(want[0].to_f32_vec()) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    }
}

/// One BERT-base encoder layer's dense part (hidden 768, FFN 3072, seq 128):
/// QKV and output projections, residual adds, LayerNorms, GELU FFN.
fn bert_base_layer() -> Graph {
    let (s, h, f) = (128usize, 768usize, 3072usize);
    let mut g = Graph::new("bert_base_layer");
    let x = g.add_input("x", TensorType::fixed(&[1, s as i64, h as i64], DType::F32));
    let mut b = Builder::new(&mut g);
    let mut seed = 1;
    let mut linear = |b: &mut Builder, x: ValueId, k: usize, n: usize, name: &str| {
        seed += 1;
        let w = b.constant(&format!("{name}.w"), Arc::new(weights(k, n, seed)), None);
        op(b, OpKind::MatMul, &[x, w], Attrs::new(), name)
    };
    let ln = |b: &mut Builder, x: ValueId, name: &str| {
        let sc = b.constant(
            &format!("{name}.s"),
            Arc::new(Tensor::f32(vec![h], vec![1.0; h])),
            None,
        );
        let bi = b.constant(
            &format!("{name}.b"),
            Arc::new(Tensor::f32(vec![h], vec![0.0; h])),
            None,
        );
        let mut a = Attrs::new();
        a.insert("epsilon".into(), Attr::Float(1e-12));
        op(b, OpKind::LayerNormalization, &[x, sc, bi], a, name)
    };
    let q = linear(&mut b, x, h, h, "q");
    let k = linear(&mut b, x, h, h, "k");
    let v = linear(&mut b, x, h, h, "v");
    let qk = op(&mut b, OpKind::Add, &[q, k], Attrs::new(), "qk");
    let ctx = op(&mut b, OpKind::Add, &[qk, v], Attrs::new(), "ctx");
    let o = linear(&mut b, ctx, h, h, "o");
    let r1 = op(&mut b, OpKind::Add, &[o, x], Attrs::new(), "res1");
    let n1 = ln(&mut b, r1, "ln1");
    let f1 = linear(&mut b, n1, h, f, "ffn1");
    let gl = op(&mut b, OpKind::Gelu, &[f1], Attrs::new(), "gelu");
    let f2 = linear(&mut b, gl, f, h, "ffn2");
    let r2 = op(&mut b, OpKind::Add, &[f2, n1], Attrs::new(), "res2");
    let y = ln(&mut b, r2, "ln2");
    g.add_output("y", y);
    g
}

/// Measures (prints) cycles and utilization on both presets; asserts only
/// what must hold: everything runs on the accelerator and the array does work.
#[test]
fn bert_base_layer_utilization() {
    let g = bert_base_layer();
    let x = weights(128, 768, 99);
    let x = Tensor::new(DType::F32, vec![1, 128, 768], x.data).unwrap();
    for cfg in [HwConfig::edge(), HwConfig::server()] {
        let p = Program::compile(&g, &cfg, &Bindings::new()).unwrap();
        assert_eq!(p.host_ops().count(), 0, "{}", p.header());
        let (_, reports) = p.run(std::slice::from_ref(&x)).unwrap();
        let s = RunSummary::of(&cfg, &reports, 0);
        eprint!("BERT-base layer (seq 128): {}", s.to_text(&cfg));
        assert_eq!(s.macs, 128 * (4 * 768 * 768 + 2 * 768 * 3072));
        assert!(s.array_utilization > 0.2, "{}", s.array_utilization);
    }
}
