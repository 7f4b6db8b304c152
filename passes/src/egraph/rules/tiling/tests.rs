use crate::egraph::{optimize, Config};
use std::sync::Arc;
use tessera_cost_model::op_cost::{tile_attr, tile_bytes, Gemm};
use tessera_cost_model::TargetDesc;
use tessera_ir::{
    parse_graph, print_graph, verify, Attr, Attrs, Builder, DType, Dim, Graph, OpKind, Tensor,
    TensorType,
};
use tessera_reference::diff::Rng;

fn random(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::f32(
        shape.to_vec(),
        (0..n).map(|_| rng.normal() as f32).collect(),
    )
}

/// x[m, k] feeds a matmul, a gemm (transB, bias) and a linear (bias, gelu)
/// on constant weights; all three are outputs.
fn products(m: usize, k: usize, n: usize, rng: &mut Rng) -> Graph {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::fixed(&[m as i64, k as i64], DType::F32));
    let mut b = Builder::new(&mut g);
    let w = b.constant("w", Arc::new(random(rng, &[k, n])), None);
    let wt = b.constant("wt", Arc::new(random(rng, &[n, k])), None);
    let bias = b.constant("bias", Arc::new(random(rng, &[n])), None);
    let kind = |m: &str| OpKind::from_mnemonic(m).unwrap();
    let mut op =
        |m: &str, ops: Vec<_>, attrs: Attrs| b.op(kind(m), ops, attrs, 1, None).unwrap()[0];
    let mm = op("matmul", vec![Some(x), Some(w)], Attrs::new());
    let mut ga = Attrs::new();
    ga.insert("transB".into(), Attr::Int(1));
    let gm = op("gemm", vec![Some(x), Some(wt), Some(bias)], ga);
    let mut la = Attrs::new();
    la.insert("activation".into(), Attr::Str("gelu".into()));
    let lin = op("linear", vec![Some(x), Some(w), Some(bias), None], la);
    for (i, v) in [mm, gm, lin].into_iter().enumerate() {
        g.outputs.push((format!("y{i}"), v));
    }
    verify(&g).unwrap();
    g
}

fn tiled(g: &Graph, target: &str) -> Graph {
    let cfg = Config {
        groups: vec!["tiling".into()],
        target: TargetDesc::builtin(target).unwrap(),
        ..Config::default()
    };
    optimize(g, &cfg).unwrap().0
}

/// The tile of each op that has one, by mnemonic.
fn tiles(g: &Graph) -> Vec<(&'static str, Option<[u64; 3]>)> {
    g.ops
        .iter()
        .filter(|o| matches!(o.kind.mnemonic(), "matmul" | "gemm" | "linear"))
        .map(|o| (o.kind.mnemonic(), tile_attr(&o.attrs)))
        .collect()
}

#[test]
fn tiled_products_compute_what_the_untiled_ones_do() {
    let mut rng = Rng::new(7);
    // 2 MiB of operands: more than half the cpu's L2, so blocking pays.
    let g = products(256, 512, 512, &mut rng);
    let out = tiled(&g, "cpu");
    let t = tiles(&out);
    assert_eq!(t.len(), 3);
    assert!(t.iter().all(|(_, tile)| tile.is_some()), "{t:?}");
    // The attribute verifies, prints and parses back.
    verify(&out).unwrap();
    let text = print_graph(&out);
    assert!(text.contains("sched.tile = ["), "{text}");
    let back = parse_graph(&text).unwrap();
    assert_eq!(print_graph(&back), text);
    let x = random(&mut rng, &[256, 512]);
    let want = tessera_reference::run(&g, std::slice::from_ref(&x)).unwrap();
    let got = tessera_reference::run(&back, &[x]).unwrap();
    assert_eq!(want.len(), 3);
    for (w, o) in want.iter().zip(&got) {
        // The interpreter ignores the schedule: bit for bit the same.
        assert_eq!(w.to_f64_vec(), o.to_f64_vec());
    }
}

#[test]
fn the_chosen_tile_follows_the_targets_memories() {
    let g = products(512, 512, 512, &mut Rng::new(1));
    let (cpu, accel) = (tiled(&g, "cpu"), tiled(&g, "accel"));
    let (c, a) = (tiles(&cpu), tiles(&accel));
    let probe = Gemm {
        batch: 1.0,
        m: 1.0,
        n: 1.0,
        k: 1.0,
        elem_bytes: 4.0,
        out_bytes: 4.0,
    };
    let scratchpad = TargetDesc::builtin("accel").unwrap().memory[0].bytes as f64;
    for ((kind, ct), (_, at)) in c.iter().zip(&a) {
        // The cpu blocks for its 2 MiB L2, which the 256 KiB scratchpad
        // cannot hold; whatever the accelerator picks fits its scratchpad.
        let ct = ct.unwrap_or_else(|| panic!("{kind}: no tile on the cpu"));
        assert!(tile_bytes(&probe, ct) > scratchpad / 2.0, "{kind}: {ct:?}");
        assert_ne!(Some(ct), *at, "{kind}");
        if let Some(at) = at {
            assert!(
                tile_bytes(&probe, *at) <= scratchpad / 2.0,
                "{kind}: {at:?}"
            );
        }
    }
}

#[test]
fn small_or_symbolic_products_stay_untiled() {
    // 16 x 32 x 16 fits the L1: no blocking beats none.
    let g = products(16, 32, 16, &mut Rng::new(3));
    assert!(tiles(&tiled(&g, "cpu")).iter().all(|(_, t)| t.is_none()));
    // The reference interpreter never profits from a tile.
    let g = products(256, 512, 512, &mut Rng::new(4));
    assert!(tiles(&tiled(&g, "ref")).iter().all(|(_, t)| t.is_none()));
    // Rows counted by a symbol: no static shape, no candidates.
    let mut g = Graph::new("t");
    let rows = TensorType::new(vec![Dim::sym("batch"), Dim::fixed(512)], DType::F32);
    let x = g.add_input("x", rows);
    let w =
        Builder::new(&mut g).constant("w", Arc::new(random(&mut Rng::new(5), &[512, 512])), None);
    let y = Builder::new(&mut g)
        .op(
            OpKind::from_mnemonic("matmul").unwrap(),
            vec![Some(x), Some(w)],
            Attrs::new(),
            1,
            None,
        )
        .unwrap()[0];
    g.outputs.push(("y".into(), y));
    let cfg = Config {
        groups: vec!["tiling".into()],
        ..Config::default()
    };
    let (out, report) = optimize(&g, &cfg).unwrap();
    assert!(tiles(&out).iter().all(|(_, t)| t.is_none()));
    assert_eq!(report.applied.get("tile-matmul"), None);
}
