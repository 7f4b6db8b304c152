//! Numeric tests of the `recognize` and `fusion` rule groups: each rule runs
//! alone on a graph written the way exporters write the pattern, with
//! random shapes and inputs; the optimized graph must contain the one op the
//! rule makes and agree with the original on the reference interpreter.

use super::*;
use std::collections::HashMap;
use std::sync::Arc;
use tessera_ir::{verify, Attr, Attrs, Builder, DType, Loc, OpKind, Tensor, TensorType, ValueId};
use tessera_reference::diff::{max_difference, Rng};

/// The rules these tests check (read by `every_rule_is_checked_numerically`).
pub(super) const TESTED: &[&str] = &[
    "gelu-erf-a",
    "gelu-erf-b",
    "gelu-erf-c",
    "gelu-tanh-a",
    "gelu-tanh-b",
    "gelu-tanh-c",
    "silu-a",
    "silu-b",
    "swiglu-a",
    "swiglu-b",
    "rms-norm",
    "rms-norm-scale",
    "layer-norm",
    "layer-norm-bias",
    "softmax",
    "sdpa",
    "attention-3d",
    "rotary-half",
    "attention-gqa",
    "attention-gqa-masked",
    "attention-causal",
    "matmul-add",
    "add-matmul",
    "gemm-linear",
    "gemm-linear-nobias",
    "linear-unflatten",
    "linear-relu",
    "linear-gelu",
    "linear-silu",
    "linear-sigmoid",
    "linear-tanh",
    "matmul-relu",
    "matmul-gelu",
    "matmul-silu",
    "matmul-sigmoid",
    "matmul-tanh",
    "linear-residual",
    "residual-linear",
];

const SEEDS: [u64; 3] = [11, 12, 13];

fn graph(shapes: &[&[i64]], f: impl FnOnce(&mut Builder, &[ValueId]) -> Vec<ValueId>) -> Graph {
    let mut g = Graph::new("t");
    let xs: Vec<ValueId> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.add_input(&format!("x{i}"), TensorType::fixed(s, DType::F32)))
        .collect();
    let mut b = Builder::new(&mut g);
    let outs = f(&mut b, &xs);
    for (i, o) in outs.into_iter().enumerate() {
        g.outputs.push((format!("y{i}"), o));
    }
    verify(&g).expect("the test graph is valid");
    g
}

fn loc(name: &str) -> Option<Loc> {
    Some(Loc {
        name: name.into(),
        op_type: "Test".into(),
    })
}

fn op(b: &mut Builder, m: &str, operands: &[ValueId], attrs: Attrs) -> ValueId {
    op_opt(
        b,
        m,
        &operands.iter().map(|&v| Some(v)).collect::<Vec<_>>(),
        attrs,
    )
}

fn op_opt(b: &mut Builder, m: &str, operands: &[Option<ValueId>], attrs: Attrs) -> ValueId {
    let kind = OpKind::from_mnemonic(m).unwrap_or_else(|| panic!("no op {m}"));
    b.op(kind, operands.to_vec(), attrs, 1, loc(m))
        .unwrap_or_else(|e| panic!("the test op {m} is invalid: {e}"))[0]
}

fn bin(b: &mut Builder, m: &str, x: ValueId, y: ValueId) -> ValueId {
    op(b, m, &[x, y], Attrs::new())
}

fn un(b: &mut Builder, m: &str, x: ValueId) -> ValueId {
    op(b, m, &[x], Attrs::new())
}

fn with(list: &[(&str, Attr)]) -> Attrs {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn scalar(b: &mut Builder, v: f32) -> ValueId {
    b.constant("c", Arc::new(Tensor::f32(vec![], vec![v])), loc("c"))
}

fn ints(b: &mut Builder, v: &[i64]) -> ValueId {
    b.constant(
        "i",
        Arc::new(Tensor::i64(vec![v.len()], v.to_vec())),
        loc("i"),
    )
}

fn random_const(b: &mut Builder, rng: &mut Rng, shape: &[usize]) -> ValueId {
    let n = shape.iter().product();
    let v = (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
    b.constant("w", Arc::new(Tensor::f32(shape.to_vec(), v)), loc("w"))
}

fn dim(rng: &mut Rng, lo: u64, hi: u64) -> i64 {
    (lo + rng.next_u64() % (hi - lo + 1)) as i64
}

/// A random shape of rank 1 to 3 (dims 1 to 6).
fn random_shape(rng: &mut Rng) -> Vec<i64> {
    let rank = 1 + (rng.next_u64() % 3) as usize;
    (0..rank).map(|_| dim(rng, 1, 6)).collect()
}

fn count(g: &Graph, m: &str) -> usize {
    g.ops.iter().filter(|o| o.kind.mnemonic() == m).count()
}

fn only(rule: &str) -> Config {
    rules(&[rule])
}

fn rules(names: &[&str]) -> Config {
    Config {
        only_rules: Some(names.iter().map(|r| r.to_string()).collect()),
        ..Default::default()
    }
}

/// Runs `rule` alone: it fires, the result verifies, has `want` ops of
/// kind `m`, and matches the original within `tol` on random inputs.
fn check(rule: &str, g: &Graph, seed: u64, want: (&str, usize), tol: f64) -> Graph {
    check_with(rule, &[], g, seed, want, tol)
}

/// [`check`] with `helpers` running too: for a rule whose result only pays
/// off once a later rule takes it further.
fn check_with(
    rule: &str,
    helpers: &[&str],
    g: &Graph,
    seed: u64,
    (m, want): (&str, usize),
    tol: f64,
) -> Graph {
    let mut names = vec![rule];
    names.extend_from_slice(helpers);
    let (out, report) = optimize(g, &rules(&names)).unwrap_or_else(|e| panic!("{rule}: {e}"));
    verify(&out).unwrap_or_else(|e| panic!("{rule}: invalid result: {e}"));
    assert!(
        report.applied.get(rule).copied().unwrap_or(0) > 0,
        "{rule} did not fire: {report:?}"
    );
    assert_eq!(
        count(&out, m),
        want,
        "{rule}: {m} ops in\n{}",
        tessera_ir::print_graph(&out)
    );
    let d =
        max_difference(g, &out, seed, &HashMap::new()).unwrap_or_else(|e| panic!("{rule}: {e}"));
    assert!(d < tol, "{rule}: results differ by {d}");
    out
}

/// The rule does not fire (a near miss of its pattern).
fn refuses(rule: &str, g: &Graph) {
    let (_, report) = optimize(g, &only(rule)).unwrap();
    assert_eq!(
        report.applied.get(rule).copied().unwrap_or(0),
        0,
        "{rule} fired"
    );
}

// ---------------------------------------------------------------------------
// recognize

#[test]
fn gelu_forms() {
    for seed in SEEDS {
        let s = random_shape(&mut Rng::new(seed));
        for (i, rule) in ["gelu-erf-a", "gelu-erf-b", "gelu-erf-c"]
            .into_iter()
            .enumerate()
        {
            let g = graph(&[&s], |b, x| {
                let x = x[0];
                // BERT divides by sqrt 2; other exporters multiply by 1/sqrt 2.
                let u = if i == 0 {
                    let c = scalar(b, std::f32::consts::SQRT_2);
                    bin(b, "div", x, c)
                } else {
                    let c = scalar(b, std::f32::consts::FRAC_1_SQRT_2);
                    bin(b, "mul", x, c)
                };
                let e = un(b, "erf", u);
                let one = scalar(b, 1.0);
                let p = bin(b, "add", e, one);
                let h = scalar(b, 0.5);
                vec![match i {
                    0 => {
                        let m = bin(b, "mul", x, p);
                        bin(b, "mul", m, h)
                    }
                    1 => {
                        let m = bin(b, "mul", x, h);
                        bin(b, "mul", m, p)
                    }
                    _ => {
                        let m = bin(b, "mul", p, h);
                        bin(b, "mul", x, m)
                    }
                }]
            });
            let out = check(rule, &g, seed, ("gelu", 1), 1e-5);
            assert_eq!(count(&out, "erf"), 0, "{rule}");
        }
        for (i, rule) in ["gelu-tanh-a", "gelu-tanh-b", "gelu-tanh-c"]
            .into_iter()
            .enumerate()
        {
            let g = graph(&[&s], |b, x| {
                let x = x[0];
                // x^3 as GPT-2 writes it (pow) and as a product.
                let cube = if i == 0 {
                    let three = scalar(b, 3.0);
                    bin(b, "pow", x, three)
                } else {
                    let sq = bin(b, "mul", x, x);
                    bin(b, "mul", x, sq)
                };
                let c = scalar(b, 0.044715);
                let t = bin(b, "mul", cube, c);
                let inner = bin(b, "add", x, t);
                let k = scalar(b, (2.0f32 / std::f32::consts::PI).sqrt());
                let u = bin(b, "mul", inner, k);
                let th = un(b, "tanh", u);
                let one = scalar(b, 1.0);
                let p = bin(b, "add", th, one);
                let h = scalar(b, 0.5);
                vec![match i {
                    0 => {
                        let m = bin(b, "mul", x, p);
                        bin(b, "mul", m, h)
                    }
                    1 => {
                        let m = bin(b, "mul", x, h);
                        bin(b, "mul", m, p)
                    }
                    _ => {
                        let m = bin(b, "mul", p, h);
                        bin(b, "mul", x, m)
                    }
                }]
            });
            let out = check(rule, &g, seed, ("gelu", 1), 1e-5);
            assert_eq!(count(&out, "tanh"), 0, "{rule}");
        }
    }
    // 0.6 instead of 0.5 is not GELU.
    let g = graph(&[&[4]], |b, x| {
        let c = scalar(b, std::f32::consts::SQRT_2);
        let u = bin(b, "div", x[0], c);
        let e = un(b, "erf", u);
        let one = scalar(b, 1.0);
        let p = bin(b, "add", e, one);
        let m = bin(b, "mul", x[0], p);
        let h = scalar(b, 0.6);
        vec![bin(b, "mul", m, h)]
    });
    refuses("gelu-erf-a", &g);
}

#[test]
fn silu_and_swiglu() {
    for seed in SEEDS {
        let s = random_shape(&mut Rng::new(seed));
        let g = graph(&[&s], |b, x| {
            let sg = un(b, "sigmoid", x[0]);
            vec![bin(b, "mul", x[0], sg)]
        });
        check("silu-a", &g, seed, ("swish", 1), 1e-6);
        let g = graph(&[&s], |b, x| {
            let sg = un(b, "sigmoid", x[0]);
            vec![bin(b, "mul", sg, x[0])]
        });
        check("silu-b", &g, seed, ("swish", 1), 1e-6);
        for (rule, left) in [("swiglu-a", true), ("swiglu-b", false)] {
            let g = graph(&[&s, &s], |b, x| {
                let sw = un(b, "swish", x[0]);
                vec![if left {
                    bin(b, "mul", sw, x[1])
                } else {
                    bin(b, "mul", x[1], sw)
                }]
            });
            check(rule, &g, seed, ("swiglu", 1), 1e-6);
        }
    }
    // swiglu does not broadcast: a gate of another shape stays a mul.
    let g = graph(&[&[4], &[3, 4]], |b, x| {
        let sw = un(b, "swish", x[0]);
        vec![bin(b, "mul", sw, x[1])]
    });
    let (out, _) = optimize(&g, &only("swiglu-a")).unwrap();
    assert_eq!(count(&out, "swiglu"), 0);
}

/// x * (1 / sqrt(mean(x^2, axes) + eps)) as Llama's exporter writes it.
fn rms_graph(s: &[i64], axis: i64) -> Graph {
    graph(&[s], |b, x| {
        let two = scalar(b, 2.0);
        let sq = bin(b, "pow", x[0], two);
        let axes = ints(b, &[axis]);
        let m = op(
            b,
            "reduce_mean",
            &[sq, axes],
            with(&[("keepdims", Attr::Int(1))]),
        );
        let eps = scalar(b, 1e-6);
        let v = bin(b, "add", m, eps);
        let r = un(b, "sqrt", v);
        let one = scalar(b, 1.0);
        let inv = bin(b, "div", one, r);
        vec![bin(b, "mul", x[0], inv)]
    })
}

#[test]
fn rms_norm() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let s = vec![
            dim(&mut rng, 1, 3),
            dim(&mut rng, 2, 4),
            dim(&mut rng, 2, 16),
        ];
        check(
            "rms-norm",
            &rms_graph(&s, -1),
            seed,
            ("rms_normalization", 1),
            1e-5,
        );
        check(
            "rms-norm",
            &rms_graph(&s, 2),
            seed,
            ("rms_normalization", 1),
            1e-5,
        );
        let d = s[2] as usize;
        let g = graph(&[&s], |b, x| {
            let one = scalar(b, 1.0);
            let r = op(
                b,
                "rms_normalization",
                &[x[0], one],
                with(&[("epsilon", Attr::Float(1e-6))]),
            );
            let w = random_const(b, &mut rng, &[d]);
            vec![bin(b, "mul", r, w)]
        });
        let out = check("rms-norm-scale", &g, seed, ("rms_normalization", 1), 1e-5);
        assert_eq!(count(&out, "mul"), 0);
    }
    // Over the middle axis it is not RMSNormalization(axis = -1).
    refuses("rms-norm", &rms_graph(&[2, 3, 4], 1));
}

#[test]
fn layer_norm() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let s = vec![
            dim(&mut rng, 1, 3),
            dim(&mut rng, 2, 5),
            dim(&mut rng, 2, 16),
        ];
        let d = s[2] as usize;
        let g = graph(&[&s], |b, x| {
            let axes = ints(b, &[-1]);
            let mean = op(b, "reduce_mean", &[x[0], axes], Attrs::new());
            let dev = bin(b, "sub", x[0], mean);
            let two = scalar(b, 2.0);
            let sq = bin(b, "pow", dev, two);
            let var = op(b, "reduce_mean", &[sq, axes], Attrs::new());
            let eps = scalar(b, 1e-5);
            let ve = bin(b, "add", var, eps);
            let sd = un(b, "sqrt", ve);
            let n = bin(b, "div", dev, sd);
            let w = random_const(b, &mut rng, &[d]);
            vec![bin(b, "mul", n, w)]
        });
        check("layer-norm", &g, seed, ("layer_normalization", 1), 1e-5);
        let g = graph(&[&s], |b, x| {
            let w = random_const(b, &mut rng, &[d]);
            let n = op(b, "layer_normalization", &[x[0], w], Attrs::new());
            let bias = random_const(b, &mut rng, &[d]);
            vec![bin(b, "add", n, bias)]
        });
        let out = check(
            "layer-norm-bias",
            &g,
            seed,
            ("layer_normalization", 1),
            1e-6,
        );
        assert_eq!(count(&out, "add"), 0);
    }
}

#[test]
fn softmax() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let s = vec![
            dim(&mut rng, 1, 3),
            dim(&mut rng, 1, 4),
            dim(&mut rng, 2, 8),
        ];
        for (axis, stabilized) in [(-1, true), (1, true), (-1, false)] {
            let g = graph(&[&s], |b, x| {
                let axes = ints(b, &[axis]);
                let e = if stabilized {
                    let mx = op(b, "reduce_max", &[x[0], axes], Attrs::new());
                    bin(b, "sub", x[0], mx)
                } else {
                    x[0]
                };
                let ex = un(b, "exp", e);
                let sum = op(b, "reduce_sum", &[ex, axes], Attrs::new());
                vec![bin(b, "div", ex, sum)]
            });
            let out = check("softmax", &g, seed, ("softmax", 1), 1e-6);
            assert_eq!(count(&out, "exp"), 0);
        }
    }
}

/// softmax(Q·Kᵀ·scale + mask)·V on [B, H, S, D] inputs, K and V with `kv`
/// heads repeated to `h` the way HF's `repeat_kv` does.
fn sdpa_graph(bsz: i64, h: i64, kv: i64, sq: i64, sk: i64, d: i64, masked: bool) -> Graph {
    let mut shapes: Vec<Vec<i64>> = vec![
        vec![bsz, h, sq, d],
        vec![bsz, kv, sk, d],
        vec![bsz, kv, sk, d],
    ];
    if masked {
        shapes.push(vec![bsz, 1, sq, sk]);
    }
    let refs: Vec<&[i64]> = shapes.iter().map(|s| s.as_slice()).collect();
    graph(&refs, |b, x| {
        let repeat = |b: &mut Builder, t: ValueId| {
            if kv == h {
                return t;
            }
            let ax = ints(b, &[2]);
            let u = op(b, "unsqueeze", &[t, ax], Attrs::new());
            let shape = ints(b, &[bsz, kv, h / kv, sk, d]);
            let e = op(b, "expand", &[u, shape], Attrs::new());
            let flat = ints(b, &[bsz, h, sk, d]);
            op(b, "reshape", &[e, flat], Attrs::new())
        };
        let k = repeat(b, x[1]);
        let v = repeat(b, x[2]);
        let kt = op(
            b,
            "transpose",
            &[k],
            with(&[("perm", Attr::Ints(vec![0, 1, 3, 2]))]),
        );
        let qk = bin(b, "matmul", x[0], kt);
        let scale = scalar(b, 1.0 / (d as f32).sqrt());
        let mut s = bin(b, "mul", qk, scale);
        if masked {
            s = bin(b, "add", s, x[3]);
        }
        let p = op(b, "softmax", &[s], with(&[("axis", Attr::Int(-1))]));
        vec![bin(b, "matmul", p, v)]
    })
}

#[test]
fn sdpa() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let (bsz, d) = (dim(&mut rng, 1, 2), dim(&mut rng, 2, 8));
        let (sq, sk) = (dim(&mut rng, 1, 5), dim(&mut rng, 1, 5));
        let kv = dim(&mut rng, 1, 2);
        let h = kv * dim(&mut rng, 1, 3);
        for masked in [false, true] {
            let g = sdpa_graph(bsz, h, h, sq, sk, d, masked);
            let out = check("sdpa", &g, seed, ("attention", 1), 1e-5);
            assert_eq!(count(&out, "softmax"), 0);
            // Grouped heads: the repetition disappears into the op.
            let g = sdpa_graph(bsz, h, kv, sq, sk, d, masked);
            let out = check("sdpa", &g, seed, ("attention", 1), 1e-5);
            if kv != h {
                assert_eq!(
                    count(&out, "expand"),
                    0,
                    "{}",
                    tessera_ir::print_graph(&out)
                );
            }
        }
    }
}

/// attention on heads split from [B, S, H*D] and merged back.
#[test]
fn attention_3d() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let (bsz, s, d) = (
            dim(&mut rng, 1, 2),
            dim(&mut rng, 1, 5),
            dim(&mut rng, 2, 8),
        );
        let kv = dim(&mut rng, 1, 2);
        let h = kv * dim(&mut rng, 1, 2);
        for flat in [false, true] {
            let g = graph(
                &[
                    &[bsz, s, h * d],
                    &[bsz, s, kv * d],
                    &[bsz, s, kv * d],
                    &[bsz, 1, s, s],
                ],
                |b, x| {
                    let split = |b: &mut Builder, t: ValueId, heads: i64| {
                        let shape = ints(b, &[bsz, s, heads, d]);
                        let r = op(b, "reshape", &[t, shape], Attrs::new());
                        op(
                            b,
                            "transpose",
                            &[r],
                            with(&[("perm", Attr::Ints(vec![0, 2, 1, 3]))]),
                        )
                    };
                    let q = split(b, x[0], h);
                    let k = split(b, x[1], kv);
                    let v = split(b, x[2], kv);
                    let o = op(
                        b,
                        "attention",
                        &[q, k, v, x[3]],
                        with(&[("scale", Attr::Float(0.3))]),
                    );
                    let t = op(
                        b,
                        "transpose",
                        &[o],
                        with(&[("perm", Attr::Ints(vec![0, 2, 1, 3]))]),
                    );
                    // GPT-2 flattens the merged heads to [B*S, H*D] for its Gemm.
                    let shape = if flat {
                        ints(b, &[bsz * s, h * d])
                    } else {
                        ints(b, &[bsz, s, h * d])
                    };
                    vec![op(b, "reshape", &[t, shape], Attrs::new())]
                },
            );
            let out = check("attention-3d", &g, seed, ("attention", 1), 1e-6);
            assert_eq!(
                count(&out, "transpose"),
                0,
                "{}",
                tessera_ir::print_graph(&out)
            );
            assert_eq!(count(&out, "reshape"), usize::from(flat));
        }
    }
}

/// An `attention` op whose K and V are `kv` heads repeated to `h` by
/// unsqueeze/expand/reshape (as torch.export writes `repeat_kv`).
fn repeated_kv_attention(bsz: i64, h: i64, kv: i64, s: i64, d: i64, masked: bool) -> Graph {
    let mut shapes = vec![vec![bsz, h, s, d], vec![bsz, kv, s, d], vec![bsz, kv, s, d]];
    if masked {
        shapes.push(vec![bsz, 1, s, s]);
    }
    let refs: Vec<&[i64]> = shapes.iter().map(|s| s.as_slice()).collect();
    graph(&refs, |b, x| {
        let repeat = |b: &mut Builder, t: ValueId| {
            let ax = ints(b, &[2]);
            let u = op(b, "unsqueeze", &[t, ax], Attrs::new());
            let shape = ints(b, &[bsz, kv, h / kv, s, d]);
            let e = op(b, "expand", &[u, shape], Attrs::new());
            let flat = ints(b, &[bsz, h, s, d]);
            op(b, "reshape", &[e, flat], Attrs::new())
        };
        let k = repeat(b, x[1]);
        let v = repeat(b, x[2]);
        let mut operands = vec![x[0], k, v];
        operands.extend(x.get(3));
        vec![op(
            b,
            "attention",
            &operands,
            with(&[("scale", Attr::Float(0.4))]),
        )]
    })
}

#[test]
fn attention_gqa() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let (bsz, s, d) = (
            dim(&mut rng, 1, 2),
            dim(&mut rng, 1, 5),
            dim(&mut rng, 1, 6),
        );
        let kv = dim(&mut rng, 1, 3);
        let h = kv * dim(&mut rng, 2, 3);
        for (rule, masked) in [("attention-gqa", false), ("attention-gqa-masked", true)] {
            let g = repeated_kv_attention(bsz, h, kv, s, d, masked);
            let out = check(rule, &g, seed, ("attention", 1), 1e-6);
            assert_eq!(
                count(&out, "expand") + count(&out, "unsqueeze") + count(&out, "reshape"),
                0,
                "{rule}: {}",
                tessera_ir::print_graph(&out)
            );
        }
    }
    // Heads repeated as a whole block (tile) are not what GQA shares.
    let g = graph(&[&[1, 4, 3, 2], &[1, 2, 3, 2], &[1, 2, 3, 2]], |b, x| {
        let tile = |b: &mut Builder, t: ValueId| {
            let reps = ints(b, &[1, 2, 1, 1]);
            op(b, "tile", &[t, reps], Attrs::new())
        };
        let (k, v) = (tile(b, x[1]), tile(b, x[2]));
        vec![op(b, "attention", &[x[0], k, v], Attrs::new())]
    });
    refuses("attention-gqa", &g);
}

/// An attention on `[2, 4, seq, 8]` operands with the mask `mask` computes
/// from a range over `seq` (`%key`: j along the last axis, `%query`: i
/// along the one before) and the `%pad` input `[2, 1, 1, seq]`.
fn masked_attention_text(mask: &str, mask_ty: &str) -> Graph {
    let t = "tensor<2x4x[seq]x8xf32>";
    let src = format!(
        r#"tsr.graph @t(%q: {t}, %k: {t}, %v: {t}, %pad: tensor<2x1x1x[seq]xi1>) -> ("y": {t}) opsets {{"" = 23}} {{
  %zero = tsr.constant {{value = @zero}} : () -> tensor<i64>
  %one = tsr.constant {{value = @one}} : () -> tensor<i64>
  %n = tsr.dims %q {{exprs = ["seq"], rank = 0, sources = [0, 2], symbols = ["seq"]}} : ({t}) -> tensor<i64>
  %r = tsr.range %zero, %n, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<[seq]xi64>
  %ax01 = tsr.constant {{value = @ax01}} : () -> tensor<2xi64>
  %r3 = tsr.unsqueeze %r, %ax01 : (tensor<[seq]xi64>, tensor<2xi64>) -> tensor<1x1x[seq]xi64>
  %ax2 = tsr.constant {{value = @ax2}} : () -> tensor<1xi64>
  %key = tsr.unsqueeze %r3, %ax2 : (tensor<1x1x[seq]xi64>, tensor<1xi64>) -> tensor<1x1x1x[seq]xi64>
  %ax3 = tsr.constant {{value = @ax3}} : () -> tensor<1xi64>
  %query = tsr.unsqueeze %r3, %ax3 : (tensor<1x1x[seq]xi64>, tensor<1xi64>) -> tensor<1x1x[seq]x1xi64>
  %yes = tsr.constant {{value = @yes}} : () -> tensor<i1>
{mask}
  %y = tsr.attention %q, %k, %v, %mask {{scale = 0.35}} : ({t}, {t}, {t}, {mask_ty}) -> {t}
  tsr.return %y
}}
tsr.constants {{
  @zero = dense<[0]> : tensor<i64>
  @one = dense<[1]> : tensor<i64>
  @ax01 = dense<[0, 1]> : tensor<2xi64>
  @ax2 = dense<[2]> : tensor<1xi64>
  @ax3 = dense<[3]> : tensor<1xi64>
  @yes = dense<[true]> : tensor<i1>
}}
"#
    );
    let g = tessera_ir::parse_graph(&src).unwrap_or_else(|e| panic!("{e:?}\n{src}"));
    verify(&g).unwrap();
    g
}

const SQUARE: &str = "tensor<1x1x[seq]x[seq]xi1>";
const PADDED: &str = "tensor<2x1x[seq]x[seq]xi1>";

#[test]
fn attention_causal() {
    let le = "  %c = tsr.less_or_equal %key, %query : (tensor<1x1x1x[seq]xi64>, tensor<1x1x[seq]x1xi64>) -> tensor<1x1x[seq]x[seq]xi1>";
    let ge = "  %c = tsr.greater_or_equal %query, %key : (tensor<1x1x[seq]x1xi64>, tensor<1x1x1x[seq]xi64>) -> tensor<1x1x[seq]x[seq]xi1>";
    let and_true = format!("  %mask = tsr.and %yes, %c : (tensor<i1>, {SQUARE}) -> {SQUARE}");
    let and_pad =
        format!("  %mask = tsr.and %c, %pad : ({SQUARE}, tensor<2x1x1x[seq]xi1>) -> {PADDED}");
    let as_mask = |line: &str| line.replace("%c =", "%mask =");
    // (mask lines, mask type, operands the attention keeps)
    let cases = [
        (as_mask(le), SQUARE, 3),
        (as_mask(ge), SQUARE, 3),
        (format!("{le}\n{and_true}"), SQUARE, 3),
        (format!("{ge}\n{and_pad}"), PADDED, 4),
    ];
    for (lines, mask_ty, operands) in &cases {
        let g = masked_attention_text(lines, mask_ty);
        for seq in [1, 4, 6] {
            let (out, report) = optimize(&g, &only("attention-causal")).unwrap();
            verify(&out).unwrap();
            assert!(report.applied.contains_key("attention-causal"), "{lines}");
            let att = out
                .ops
                .iter()
                .find(|o| o.kind.mnemonic() == "attention")
                .unwrap();
            assert_eq!(att.attrs.get("is_causal"), Some(&Attr::Int(1)), "{lines}");
            assert_eq!(att.operands.len(), *operands, "{lines}");
            let dims: HashMap<String, i64> = [("seq".to_string(), seq)].into();
            for seed in SEEDS {
                let d = max_difference(&g, &out, seed, &dims).unwrap();
                assert_eq!(d, 0.0, "{lines}: seq {seq}");
            }
        }
    }
    // j >= i is the upper triangle; and a padding mask of one key column
    // would mask out every key past the first inside attention.
    let upper = "  %mask = tsr.less_or_equal %query, %key : (tensor<1x1x[seq]x1xi64>, tensor<1x1x1x[seq]xi64>) -> tensor<1x1x[seq]x[seq]xi1>";
    refuses("attention-causal", &masked_attention_text(upper, SQUARE));

    // Constant masks: boolean, and float with 0 / -inf; a float mask with a
    // finite minimum instead of -inf is not the same at fully masked rows.
    for (dtype, off, fires) in [
        (DType::Bool, 0.0, true),
        (DType::F32, f64::NEG_INFINITY, true),
        (DType::F32, -1e30, false),
    ] {
        let s = 5usize;
        let g = graph(&[&[1, 2, 5, 3], &[1, 2, 5, 3], &[1, 2, 5, 3]], |b, x| {
            let v: Vec<f64> = (0..s * s)
                .map(|e| match (e % s <= e / s, dtype) {
                    (keep, DType::Bool) => f64::from(u8::from(keep)),
                    (true, _) => 0.0,
                    (false, _) => off,
                })
                .collect();
            let m = b.constant(
                "causal",
                Arc::new(Tensor::from_f64(dtype, vec![s, s], &v)),
                loc("m"),
            );
            vec![op(b, "attention", &[x[0], x[1], x[2], m], Attrs::new())]
        });
        if fires {
            let out = check("attention-causal", &g, 3, ("attention", 1), 1e-6);
            assert_eq!(
                count(&out, "constant"),
                0,
                "{}",
                tessera_ir::print_graph(&out)
            );
        } else {
            refuses("attention-causal", &g);
        }
    }
}

/// How the test builds the cos/sin caches of rotate_half RoPE.
#[derive(Clone, Copy, PartialEq)]
enum Caches {
    /// cos(concat(f, f)) and sin(concat(f, f)), as HF's Llama exports them.
    CosOfDoubled,
    /// concat(c, c) and concat(s, s) of given half caches.
    Doubled,
    /// concat(c, c2) with two different halves: not RoPE.
    Unequal,
}

/// x * unsqueeze(cos, 1) + rotate_half(x) * unsqueeze(sin, 1) on [B, H, S, D]
/// x; `swapped` writes the operands of each product and of the sum the
/// other way round and the slice ends past the axis (INT64_MAX).
fn rotate_half_graph(s: &[i64; 4], caches: Caches, swapped: bool) -> Graph {
    let [bsz, _, seq, d] = *s;
    let half = [bsz, seq, d / 2];
    graph(&[s, &half, &half], |b, x| {
        let last = |b: &mut Builder, i: i64| ints(b, &[i]);
        let (zero, h, end) = (
            last(b, 0),
            last(b, d / 2),
            last(b, if swapped { i64::MAX } else { d }),
        );
        let axis = last(b, if swapped { 3 } else { -1 });
        let cat = |b: &mut Builder, l: ValueId, r: ValueId| {
            op(b, "concat", &[l, r], with(&[("axis", Attr::Int(-1))]))
        };
        let (cos2, sin2) = match caches {
            Caches::CosOfDoubled => {
                let f = cat(b, x[1], x[1]);
                (un(b, "cos", f), un(b, "sin", f))
            }
            Caches::Doubled => (cat(b, x[1], x[1]), cat(b, x[2], x[2])),
            Caches::Unequal => (cat(b, x[1], x[2]), cat(b, x[2], x[1])),
        };
        let one = last(b, 1);
        let cos = op(b, "unsqueeze", &[cos2, one], Attrs::new());
        let sin = op(b, "unsqueeze", &[sin2, one], Attrs::new());
        let x1 = op(b, "slice", &[x[0], zero, h, axis], Attrs::new());
        let x2 = op(b, "slice", &[x[0], h, end, axis], Attrs::new());
        let n = un(b, "neg", x2);
        let rot = cat(b, n, x1);
        let (xc, rs) = if swapped {
            (bin(b, "mul", cos, x[0]), bin(b, "mul", sin, rot))
        } else {
            (bin(b, "mul", x[0], cos), bin(b, "mul", rot, sin))
        };
        vec![if swapped {
            bin(b, "add", rs, xc)
        } else {
            bin(b, "add", xc, rs)
        }]
    })
}

#[test]
fn rotary_half() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let s = [
            dim(&mut rng, 1, 2),
            dim(&mut rng, 1, 3),
            dim(&mut rng, 1, 5),
            2 * dim(&mut rng, 1, 4),
        ];
        for caches in [Caches::CosOfDoubled, Caches::Doubled] {
            for swapped in [false, true] {
                let g = rotate_half_graph(&s, caches, swapped);
                let out = check("rotary-half", &g, seed, ("rotary_embedding", 1), 1e-5);
                assert_eq!(
                    count(&out, "concat") + count(&out, "slice") + count(&out, "neg"),
                    0,
                    "{}",
                    tessera_ir::print_graph(&out)
                );
            }
        }
    }
    // Different halves are not one rotation angle per pair.
    refuses(
        "rotary-half",
        &rotate_half_graph(&[1, 2, 3, 4], Caches::Unequal, false),
    );
    // concat(x1, -x2) rotates the other way.
    let g = graph(&[&[1, 2, 3, 4], &[1, 3, 2]], |b, x| {
        let (zero, h, end, axis) = (ints(b, &[0]), ints(b, &[2]), ints(b, &[4]), ints(b, &[-1]));
        let f = op(b, "concat", &[x[1], x[1]], with(&[("axis", Attr::Int(-1))]));
        let one = ints(b, &[1]);
        let c = un(b, "cos", f);
        let cos = op(b, "unsqueeze", &[c, one], Attrs::new());
        let sn = un(b, "sin", f);
        let sin = op(b, "unsqueeze", &[sn, one], Attrs::new());
        let x1 = op(b, "slice", &[x[0], zero, h, axis], Attrs::new());
        let x2 = op(b, "slice", &[x[0], h, end, axis], Attrs::new());
        let n = un(b, "neg", x2);
        let rot = op(b, "concat", &[x1, n], with(&[("axis", Attr::Int(-1))]));
        let xc = bin(b, "mul", x[0], cos);
        let rs = bin(b, "mul", rot, sin);
        vec![bin(b, "add", xc, rs)]
    });
    refuses("rotary-half", &g);
}

// ---------------------------------------------------------------------------
// fusion

#[test]
fn matmul_epilogues() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let (m, k, n) = (
            dim(&mut rng, 1, 5),
            dim(&mut rng, 1, 6),
            dim(&mut rng, 1, 6),
        );
        let bsz = dim(&mut rng, 1, 3);
        let (ku, nu) = (k as usize, n as usize);
        // bias (constant vector, either side) and residual (an input)
        let g = graph(&[&[bsz, m, k]], |b, x| {
            let w = random_const(b, &mut rng, &[ku, nu]);
            let p = bin(b, "matmul", x[0], w);
            let c = random_const(b, &mut rng, &[nu]);
            vec![bin(b, "add", p, c)]
        });
        check("matmul-add", &g, seed, ("linear", 1), 1e-6);
        let g = graph(&[&[bsz, m, k], &[bsz, m, n]], |b, x| {
            let w = random_const(b, &mut rng, &[ku, nu]);
            let p = bin(b, "matmul", x[0], w);
            vec![bin(b, "add", x[1], p)]
        });
        check("add-matmul", &g, seed, ("linear", 1), 1e-6);
        // gemm with and without C; alone a linear costs what the gemm
        // does, so a relu after it shows the rewrite happened
        for with_c in [true, false] {
            let g = graph(&[&[m, k]], |b, x| {
                let w = random_const(b, &mut rng, &[ku, nu]);
                let mut operands = vec![Some(x[0]), Some(w)];
                if with_c {
                    operands.push(Some(random_const(b, &mut rng, &[nu])));
                }
                let p = op_opt(b, "gemm", &operands, Attrs::new());
                vec![un(b, "relu", p)]
            });
            let rule = if with_c {
                "gemm-linear"
            } else {
                "gemm-linear-nobias"
            };
            let out = check_with(rule, &["linear-relu"], &g, seed, ("linear", 1), 1e-6);
            assert_eq!(count(&out, "gemm") + count(&out, "relu"), 0, "{rule}");
        }
        // Transposed B is a different product: not taken.
        let g = graph(&[&[m, k]], |b, x| {
            let w = random_const(b, &mut rng, &[nu, ku]);
            vec![op(b, "gemm", &[x[0], w], with(&[("transB", Attr::Int(1))]))]
        });
        refuses("gemm-linear-nobias", &g);

        // reshape(linear(reshape(x, [B*M, K]), w, c), [B, M, N])
        let g = graph(&[&[bsz, m, k], &[bsz, m, n]], |b, x| {
            let flat = ints(b, &[bsz * m, k]);
            let r = op(b, "reshape", &[x[0], flat], Attrs::new());
            let w = random_const(b, &mut rng, &[ku, nu]);
            let c = random_const(b, &mut rng, &[nu]);
            let l = op_opt(
                b,
                "linear",
                &[Some(r), Some(w), Some(c), None],
                Attrs::new(),
            );
            let back = ints(b, &[bsz, m, n]);
            let y = op(b, "reshape", &[l, back], Attrs::new());
            vec![bin(b, "add", y, x[1])]
        });
        // The 3-D product can take the residual the 2-D one could not.
        let out = check_with(
            "linear-unflatten",
            &["linear-residual"],
            &g,
            seed,
            ("linear", 1),
            1e-6,
        );
        assert_eq!(count(&out, "reshape") + count(&out, "add"), 0);

        // activations after a linear and after a bare matmul
        let acts: [(&str, &str, Attrs); 5] = [
            ("relu", "relu", Attrs::new()),
            (
                "gelu",
                "gelu",
                with(&[("approximate", Attr::Str("tanh".into()))]),
            ),
            ("silu", "swish", Attrs::new()),
            ("sigmoid", "sigmoid", Attrs::new()),
            ("tanh", "tanh", Attrs::new()),
        ];
        for (name, m_act, a) in acts {
            let g = graph(&[&[bsz, m, k]], |b, x| {
                let w = random_const(b, &mut rng, &[ku, nu]);
                let c = random_const(b, &mut rng, &[nu]);
                let l = op_opt(
                    b,
                    "linear",
                    &[Some(x[0]), Some(w), Some(c), None],
                    Attrs::new(),
                );
                vec![op(b, m_act, &[l], a.clone())]
            });
            let rule = format!("linear-{name}");
            let out = check(&rule, &g, seed, ("linear", 1), 1e-6);
            assert_eq!(count(&out, m_act), 0, "{rule}");
            let g = graph(&[&[bsz, m, k]], |b, x| {
                let w = random_const(b, &mut rng, &[ku, nu]);
                let p = bin(b, "matmul", x[0], w);
                vec![op(b, m_act, &[p], a.clone())]
            });
            let rule = format!("matmul-{name}");
            check(&rule, &g, seed, ("linear", 1), 1e-6);
        }

        // residual after bias and activation, either side
        for (rule, left) in [("linear-residual", true), ("residual-linear", false)] {
            let g = graph(&[&[bsz, m, k], &[bsz, m, n]], |b, x| {
                let w = random_const(b, &mut rng, &[ku, nu]);
                let c = random_const(b, &mut rng, &[nu]);
                let l = op_opt(
                    b,
                    "linear",
                    &[Some(x[0]), Some(w), Some(c), None],
                    with(&[("activation", Attr::Str("gelu".into()))]),
                );
                vec![if left {
                    bin(b, "add", l, x[1])
                } else {
                    bin(b, "add", x[1], l)
                }]
            });
            let out = check(rule, &g, seed, ("linear", 1), 1e-6);
            assert_eq!(count(&out, "add"), 0, "{rule}");
        }
    }
}

/// A residual that broadcasts the product to a bigger shape is refused by
/// the type guard: `linear`'s result always has the product's shape.
#[test]
fn a_growing_residual_is_not_fused() {
    let g = graph(&[&[3, 4], &[2, 3, 5]], |b, x| {
        let mut rng = Rng::new(1);
        let w = random_const(b, &mut rng, &[4, 5]);
        let p = bin(b, "matmul", x[0], w);
        vec![bin(b, "add", p, x[1])]
    });
    let (out, _) = optimize(&g, &only("matmul-add")).unwrap();
    assert_eq!(count(&out, "linear"), 0);
}

/// A BERT-like block with every group on: one attention, the projections
/// and the FFN as `linear`, GELU inside the first FFN product.
#[test]
fn a_transformer_block_fuses_end_to_end() {
    let (bsz, s, h, d) = (2i64, 5i64, 2i64, 4i64);
    let hid = h * d;
    let g = graph(&[&[bsz, s, hid], &[bsz, 1, s, s]], |b, x| {
        let mut rng = Rng::new(7);
        let hu = hid as usize;
        let mut proj = |b: &mut Builder, t: ValueId, n: usize| {
            let w = random_const(b, &mut rng, &[t_last(b, t), n]);
            let p = bin(b, "matmul", t, w);
            let c = random_const(b, &mut rng, &[n]);
            bin(b, "add", c, p)
        };
        let split = |b: &mut Builder, t: ValueId, perm: Vec<i64>| {
            let shape = ints(b, &[bsz, s, h, d]);
            let r = op(b, "reshape", &[t, shape], Attrs::new());
            op(b, "transpose", &[r], with(&[("perm", Attr::Ints(perm))]))
        };
        let q = proj(b, x[0], hu);
        let k = proj(b, x[0], hu);
        let v = proj(b, x[0], hu);
        let q4 = split(b, q, vec![0, 2, 1, 3]);
        let kt = split(b, k, vec![0, 2, 3, 1]);
        let v4 = split(b, v, vec![0, 2, 1, 3]);
        let qk = bin(b, "matmul", q4, kt);
        let sc = scalar(b, (d as f32).sqrt());
        let sd = bin(b, "div", qk, sc);
        let sm = bin(b, "add", sd, x[1]);
        let p = op(b, "softmax", &[sm], with(&[("axis", Attr::Int(-1))]));
        let o = bin(b, "matmul", p, v4);
        let t = op(
            b,
            "transpose",
            &[o],
            with(&[("perm", Attr::Ints(vec![0, 2, 1, 3]))]),
        );
        let shape = ints(b, &[bsz, s, hid]);
        let merged = op(b, "reshape", &[t, shape], Attrs::new());
        let out = proj(b, merged, hu);
        let res = bin(b, "add", out, x[0]);
        let up = proj(b, res, 2 * hu);
        let c = scalar(b, std::f32::consts::SQRT_2);
        let u = bin(b, "div", up, c);
        let e = un(b, "erf", u);
        let one = scalar(b, 1.0);
        let pl = bin(b, "add", e, one);
        let m = bin(b, "mul", up, pl);
        let half = scalar(b, 0.5);
        let act = bin(b, "mul", m, half);
        let down = proj(b, act, hu);
        vec![bin(b, "add", down, res)]
    });
    let (out, report) = optimize(&g, &Config::default()).unwrap();
    verify(&out).unwrap();
    let text = tessera_ir::print_graph(&out);
    assert_eq!(count(&out, "attention"), 1, "{report:?}\n{text}");
    assert_eq!(
        count(&out, "softmax") + count(&out, "erf") + count(&out, "transpose"),
        0,
        "{text}"
    );
    assert_eq!(count(&out, "linear"), 6, "{text}");
    assert_eq!(count(&out, "matmul") + count(&out, "add"), 0, "{text}");
    let diff = max_difference(&g, &out, 3, &HashMap::new()).unwrap();
    assert!(diff < 1e-4, "differs by {diff}");
}

fn t_last(b: &Builder, t: ValueId) -> usize {
    let ty = b.graph.ty(t);
    ty.shape
        .last()
        .and_then(|d| d.as_fixed())
        .expect("fixed last dim") as usize
}
