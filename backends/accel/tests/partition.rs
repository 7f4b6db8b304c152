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
    let e = op(&mut b, OpKind::Sin, &[x], Attrs::new(), "the_sin");
    let y = op(&mut b, OpKind::Exp, &[e], Attrs::new(), "the_exp");
    g.add_output("y", y);
    let p = Program::compile(&g, &HwConfig::edge(), &Bindings::new()).unwrap();
    let header = p.header();
    assert!(header.contains("host tsr.sin the_sin"), "{header}");
    assert_eq!(p.host_ops().count(), 1);
    assert_eq!(p.segments().count(), 1);
    // The program still computes exp(sin(x)).
    let xs = Tensor::f32(vec![4, 8], (0..32).map(|i| i as f32 / 16.0 - 1.0).collect());
    let (out, _) = p.run(std::slice::from_ref(&xs)).unwrap();
    let want = tessera_reference::run(&g, &[xs]).unwrap();
    for (a, b) in out[0].to_f32_vec().iter().zip(want[0].to_f32_vec()) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    }
}

/// One BERT-base encoder layer (hidden 768, FFN 3072, seq 128): QKV and
/// output projections, residual adds, LayerNorms, GELU FFN, and either the
/// fused attention -O2 makes (12 heads of 64, packed operands) or, for the
/// dense part alone, `q + k + v` in its place.
fn bert_base_layer(attention: bool) -> Graph {
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
    let ctx = if attention {
        let mut a = Attrs::new();
        a.insert("q_num_heads".into(), Attr::Int(12));
        a.insert("kv_num_heads".into(), Attr::Int(12));
        op(&mut b, OpKind::Attention, &[q, k, v], a, "attention")
    } else {
        let qk = op(&mut b, OpKind::Add, &[q, k], Attrs::new(), "qk");
        op(&mut b, OpKind::Add, &[qk, v], Attrs::new(), "ctx")
    };
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
    let g = bert_base_layer(false);
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

/// The whole layer, attention included, on the accelerator: the products
/// add `2·12·128·128·64` MACs, the K/V layout transposes `12·DIM·128·64`
/// each (blocks of columns as wide as the array).
#[test]
fn bert_base_layer_with_attention_utilization() {
    let g = bert_base_layer(true);
    let x = weights(128, 768, 99);
    let x = Tensor::new(DType::F32, vec![1, 128, 768], x.data).unwrap();
    let dense = 128 * (4 * 768 * 768 + 2 * 768 * 3072);
    let products = 2 * 12 * 128 * 128 * 64;
    for cfg in [HwConfig::edge(), HwConfig::server()] {
        let transposes = 2 * 12 * cfg.array_dim as u64 * 128 * 64;
        let p = Program::compile(&g, &cfg, &Bindings::new()).unwrap();
        assert_eq!(p.host_ops().count(), 0, "{}", p.header());
        let (_, reports) = p.run(std::slice::from_ref(&x)).unwrap();
        let s = RunSummary::of(&cfg, &reports, 0);
        eprint!(
            "BERT-base layer with attention (seq 128): {}",
            s.to_text(&cfg)
        );
        assert_eq!(s.macs, dense + products + transposes);
        assert!(s.array_utilization > 0.2, "{}", s.array_utilization);
    }
}

/// Pseudo-random activations in [-amp, amp).
fn activations(shape: &[usize], seed: u64, amp: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let w = weights(1, n, seed);
    let v = w.to_f32_vec().iter().map(|x| x * 20.0 * amp).collect();
    Tensor::f32(shape.to_vec(), v)
}

/// `attention(q, k, v, mask?)` with the given attributes, as its own graph.
fn attention_graph(
    shapes: [&[i64]; 3],
    mask: Option<(&[i64], DType)>,
    attrs: &[(&str, Attr)],
) -> Graph {
    let mut g = Graph::new("attention");
    let mut xs: Vec<ValueId> = ["q", "k", "v"]
        .iter()
        .zip(shapes)
        .map(|(n, s)| g.add_input(n, TensorType::fixed(s, DType::F32)))
        .collect();
    if let Some((s, d)) = mask {
        xs.push(g.add_input("mask", TensorType::fixed(s, d)));
    }
    let mut a = Attrs::new();
    for (k, v) in attrs {
        a.insert((*k).into(), v.clone());
    }
    let mut b = Builder::new(&mut g);
    let y = op(&mut b, OpKind::Attention, &xs, a, "attn");
    g.add_output("y", y);
    g
}

/// Compiles and runs an attention graph on the accelerator: nothing of it on
/// the host but mask construction, integers bit-exact with the reference on
/// the quantized graph, and within the quantization tolerance of the float op.
fn check_attention(g: &Graph, inputs: &[Tensor], cfg: &HwConfig) -> f64 {
    let p = Program::compile(g, cfg, &Bindings::new()).unwrap();
    for h in p.host_ops() {
        assert!(
            ["tsr.where", "tsr.expand", "tsr.add"].contains(&h.mnemonic.as_str()),
            "only mask construction on the host: {}",
            p.header()
        );
    }
    let notes: Vec<&String> = p.segments().flat_map(|s| &s.notes).collect();
    let products = notes
        .iter()
        .filter(|n| n.contains("matmul_integer"))
        .count();
    assert_eq!(products, 2, "Q·Kᵀ and P·V on the array: {notes:#?}");
    let checks = p.differential(inputs).unwrap();
    let ints: Vec<_> = checks.iter().filter(|c| c.dtype != DType::F32).collect();
    assert!(ints.len() >= 6, "{checks:?}");
    for c in &ints {
        assert_eq!(
            c.mismatches, 0,
            "{} {} differs from the reference",
            c.mnemonic, c.node
        );
    }
    let (out, _) = p.run(inputs).unwrap();
    let want = tessera_reference::run(g, inputs).unwrap();
    let (got, want) = (out[0].to_f32_vec(), want[0].to_f32_vec());
    let range = want.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0f64, f64::max);
    assert!(worst <= 0.05 * range, "max |diff| {worst} vs range {range}");
    worst / range
}

/// The -O2 form of BERT/ViT/GPT-2 attention: packed `[b, s, heads·d]`
/// operands, a boolean key-padding mask and (GPT-2) the causal frontier.
#[test]
fn packed_attention_with_padding_and_causal_masks_runs_on_the_array() {
    let (b, s, h, d) = (2usize, 24usize, 4usize, 16usize);
    let shape = [b as i64, s as i64, (h * d) as i64];
    let heads = [
        ("q_num_heads", Attr::Int(h as i64)),
        ("kv_num_heads", Attr::Int(h as i64)),
    ];
    let mask_shape = [b as i64, 1, 1, s as i64];
    // Batch 1 pads its last 5 keys.
    let keep: Vec<bool> = (0..b * s).map(|i| i / s == 0 || i % s < s - 5).collect();
    let mask = Tensor::new(DType::Bool, vec![b, 1, 1, s], tessera_ir::Data::Bool(keep)).unwrap();
    let qkv: Vec<Tensor> = (0..3)
        .map(|i| activations(&[b, s, h * d], 7 + i, 1.5))
        .collect();
    for causal in [0, 1] {
        let mut attrs = heads.to_vec();
        attrs.push(("is_causal", Attr::Int(causal)));
        let g = attention_graph([&shape; 3], Some((&mask_shape, DType::Bool)), &attrs);
        let mut inputs = qkv.clone();
        inputs.push(mask.clone());
        for cfg in [HwConfig::edge(), HwConfig::server()] {
            let err = check_attention(&g, &inputs, &cfg);
            eprintln!(
                "packed attention, causal {causal}, {}: max err {err:.4} of range",
                cfg.name
            );
        }
    }
}

/// Llama's form: 4-D operands, 2 query heads per KV head (GQA), an additive
/// float mask; and ViT's: no mask, sequence not a multiple of the array.
#[test]
fn grouped_and_unmasked_attention_run_on_the_array() {
    let (b, s, d) = (1usize, 17usize, 32usize);
    let q = activations(&[b, 4, s, d], 3, 2.0);
    let kv: Vec<Tensor> = (0..2)
        .map(|i| activations(&[b, 2, s, d], 4 + i, 2.0))
        .collect();
    let causal: Vec<f32> = (0..b * s * s)
        .map(|i| {
            if i % s > (i / s) % s {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::f32(vec![b, 1, s, s], causal);
    let (qs, kvs) = (
        [b as i64, 4, s as i64, d as i64],
        [b as i64, 2, s as i64, d as i64],
    );
    let g = attention_graph(
        [&qs, &kvs, &kvs],
        Some((&[b as i64, 1, s as i64, s as i64], DType::F32)),
        &[],
    );
    let inputs = vec![q.clone(), kv[0].clone(), kv[1].clone(), mask];
    eprintln!(
        "GQA attention: max err {:.4}",
        check_attention(&g, &inputs, &HwConfig::edge())
    );
    let g = attention_graph([&qs, &qs, &qs], None, &[("scale", Attr::Float(0.125))]);
    let inputs = vec![q.clone(), q.clone(), activations(&[b, 4, s, d], 9, 1.0)];
    eprintln!(
        "ViT attention: max err {:.4}",
        check_attention(&g, &inputs, &HwConfig::edge())
    );
}

/// The real partition of every fixture (raw import, test set 0 sizes):
/// attention, its products and its layout changes run on the accelerator;
/// what stays on the host is embedding lookups, shape arithmetic, mask
/// construction and the ops other sections list. Already-quantized
/// matmuls (with their dynamic quantization) run on the array too.
#[test]
fn fixture_attention_runs_on_the_accelerator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/models");
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 11, "{names:?}");
    for name in names {
        let dir = root.join(&name);
        let g = tessera_frontend::import_model(dir.join("model.onnx")).unwrap();
        let set = dir.join("test_data_set_0");
        let inputs: Vec<Tensor> = (0..g.inputs.len())
            .map(|k| tessera_frontend::read_tensor_pb(set.join(format!("input_{k}.pb"))).unwrap())
            .collect();
        let env = tessera_reference::bind_inputs(&g, &inputs).unwrap();
        let bind: Bindings = env.into_iter().collect();
        let p = Program::compile(&g, &HwConfig::edge(), &bind).unwrap();
        let on_host: Vec<&str> = p
            .host_ops()
            .map(|h| h.mnemonic.as_str())
            .filter(|m| {
                [
                    "tsr.matmul",
                    "tsr.linear",
                    "tsr.attention",
                    "tsr.softmax",
                    "tsr.transpose",
                    // bert_int8_dynamic: re-centred u8 and a folded zero point.
                    "tsr.matmul_integer",
                    "tsr.dynamic_quantize_linear",
                ]
                .contains(m)
            })
            .collect();
        assert!(on_host.is_empty(), "{name}: {on_host:?}\n{}", p.header());
        let products = p
            .segments()
            .flat_map(|s| &s.notes)
            .filter(|n| n.contains("matmul_integer") && n.contains("gemms"))
            .count();
        assert!(
            products >= 4,
            "{name}: two attention products per layer, got {products}"
        );
    }
}
