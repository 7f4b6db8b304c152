//! The optimizer end to end: every fixture model survives the round trip
//! exactly, every rule is checked numerically against the reference
//! interpreter on random shapes and inputs, and extraction is acyclic and
//! deterministic.

use super::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera_ir::{verify, Attr, Attrs, Builder, DType, Loc, OpKind, Tensor, TensorType, ValueId};
use tessera_reference::diff::{max_difference, Rng};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/models")
}

fn no_rules() -> Config {
    Config {
        groups: Vec::new(),
        ..Default::default()
    }
}

fn only(rule: &str) -> Config {
    Config {
        only_rules: Some(vec![rule.to_string()]),
        ..Default::default()
    }
}

fn compute_ops(g: &Graph) -> usize {
    g.ops.iter().filter(|o| o.kind != OpKind::Constant).count()
}

fn count(g: &Graph, mnemonic: &str) -> usize {
    g.ops
        .iter()
        .filter(|o| o.kind.mnemonic() == mnemonic)
        .count()
}

fn load_numbered(dir: &Path, prefix: &str) -> Vec<Tensor> {
    (0..)
        .map(|k| dir.join(format!("{prefix}{k}.pb")))
        .take_while(|p| p.exists())
        .map(|p| {
            tessera_frontend::read_tensor_pb(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

#[test]
fn every_fixture_model_round_trips_exactly_without_rules() {
    let mut names: Vec<String> = std::fs::read_dir(models_dir())
        .expect("tests/models exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 11,
        "expected the fixture models, found {names:?}"
    );
    for name in names {
        let dir = models_dir().join(&name);
        let g = tessera_frontend::import_model(dir.join("model.onnx"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (out, report) = optimize(&g, &no_rules()).unwrap_or_else(|e| panic!("{name}: {e}"));
        verify(&out).unwrap_or_else(|e| panic!("{name}: the extracted graph is invalid: {e}"));
        assert_eq!(
            report.iterations, 1,
            "{name}: with no rules saturation stops at once"
        );
        assert_eq!(out.inputs.len(), g.inputs.len(), "{name}");
        let names_of = |g: &Graph| g.outputs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names_of(&out), names_of(&g), "{name}");
        // Common subexpressions merge and small constant subgraphs fold, nothing grows.
        assert!(
            compute_ops(&out) <= compute_ops(&g),
            "{name}: {} ops became {}",
            compute_ops(&g),
            compute_ops(&out)
        );
        // Every op keeps a source location when the original had them all.
        if g.ops.iter().all(|o| o.loc.is_some()) {
            assert!(
                out.ops.iter().all(|o| o.loc.is_some()),
                "{name}: an op lost its location"
            );
        }
        let inputs = load_numbered(&dir.join("test_data_set_0"), "input_");
        let a = tessera_reference::run(&g, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let b =
            tessera_reference::run(&out, &inputs).unwrap_or_else(|e| panic!("{name}: after: {e}"));
        assert!(a == b, "{name}: outputs differ after the round trip");
    }
}

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
    let kind = OpKind::from_mnemonic(m).unwrap_or_else(|| panic!("no op {m}"));
    b.op(
        kind,
        operands.iter().map(|&v| Some(v)).collect(),
        attrs,
        1,
        loc(m),
    )
    .expect("the test op is valid")[0]
}

fn bin(b: &mut Builder, m: &str, x: ValueId, y: ValueId) -> ValueId {
    op(b, m, &[x, y], Attrs::new())
}

fn fconst(b: &mut Builder, name: &str, shape: &[usize], values: Vec<f32>) -> ValueId {
    b.constant(
        name,
        Arc::new(Tensor::f32(shape.to_vec(), values)),
        loc(name),
    )
}

fn random_const(b: &mut Builder, rng: &mut Rng, name: &str, shape: &[usize]) -> ValueId {
    let n = shape.iter().product();
    // Away from zero, so a reciprocal stays tame.
    let v = (0..n)
        .map(|_| (0.5 + rng.uniform()) as f32 * if rng.uniform() < 0.5 { -1.0 } else { 1.0 })
        .collect();
    fconst(b, name, shape, v)
}

fn random_shape(rng: &mut Rng) -> Vec<i64> {
    let rank = 1 + (rng.next_u64() % 3) as usize;
    (0..rank).map(|_| 1 + (rng.next_u64() % 5) as i64).collect()
}

fn usizes(s: &[i64]) -> Vec<usize> {
    s.iter().map(|&d| d as usize).collect()
}

/// Runs one rule alone, checks it fired, the result verifies and matches
/// the reference within 1e-5, and returns the optimized graph.
fn check_rule(rule: &str, g: &Graph, seed: u64) -> Graph {
    let (out, report) = optimize(g, &only(rule)).unwrap_or_else(|e| panic!("{rule}: {e}"));
    verify(&out).unwrap_or_else(|e| panic!("{rule}: invalid result: {e}"));
    assert!(
        report.applied.get(rule).copied().unwrap_or(0) > 0,
        "{rule} did not fire: {report:?}"
    );
    let d =
        max_difference(g, &out, seed, &HashMap::new()).unwrap_or_else(|e| panic!("{rule}: {e}"));
    assert!(d < 1e-5, "{rule}: results differ by {d}");
    out
}

const SEEDS: [u64; 4] = [1, 2, 3, 4];

#[test]
fn rule_transpose_transpose() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let shape = [2, 3, 4, 5];
        let perm = |rng: &mut Rng| {
            let mut p: Vec<i64> = (0..4).collect();
            for i in (1..4).rev() {
                p.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            p
        };
        let (p, q) = (perm(&mut rng), perm(&mut rng));
        let g = graph(&[&shape], |b, x| {
            let mut a = Attrs::new();
            a.insert("perm".into(), Attr::Ints(p.clone()));
            let t = op(b, "transpose", &[x[0]], a);
            let mut a = Attrs::new();
            a.insert("perm".into(), Attr::Ints(q.clone()));
            vec![op(b, "transpose", &[t], a)]
        });
        let out = check_rule("transpose-transpose", &g, seed);
        let identity = q
            .iter()
            .enumerate()
            .all(|(i, &k)| p[k as usize] == i as i64);
        assert_eq!(
            count(&out, "transpose"),
            if identity { 0 } else { 1 },
            "p={p:?} q={q:?}"
        );
    }
    // Default perms (reversed axes) compose to the identity.
    let g = graph(&[&[2, 3, 4]], |b, x| {
        let t = op(b, "transpose", &[x[0]], Attrs::new());
        vec![op(b, "transpose", &[t], Attrs::new())]
    });
    assert_eq!(compute_ops(&check_rule("transpose-transpose", &g, 9)), 0);
}

fn shape_const(b: &mut Builder, name: &str, s: &[i64]) -> ValueId {
    b.constant(
        name,
        Arc::new(Tensor::i64(vec![s.len()], s.to_vec())),
        loc(name),
    )
}

#[test]
fn rule_reshape_reshape_and_reshape_same() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let s = random_shape(&mut rng);
        let n: i64 = s.iter().product();
        let g = graph(&[&s], |b, x| {
            let s1 = shape_const(b, "s1", &[n]);
            let r = op(b, "reshape", &[x[0], s1], Attrs::new());
            let s2 = shape_const(b, "s2", &[1, -1]);
            vec![op(b, "reshape", &[r, s2], Attrs::new())]
        });
        let out = check_rule("reshape-reshape", &g, seed);
        assert_eq!(count(&out, "reshape"), 1);

        let g = graph(&[&s], |b, x| {
            let s1 = shape_const(b, "s1", &s);
            vec![op(b, "reshape", &[x[0], s1], Attrs::new())]
        });
        assert_eq!(compute_ops(&check_rule("reshape-same", &g, seed)), 0);
    }
    // A 0 in the outer shape copies a dim of the inner result: not collapsed.
    let g = graph(&[&[2, 3]], |b, x| {
        let s1 = shape_const(b, "s1", &[3, 2]);
        let r = op(b, "reshape", &[x[0], s1], Attrs::new());
        let s2 = shape_const(b, "s2", &[0, 2]);
        vec![op(b, "reshape", &[r, s2], Attrs::new())]
    });
    let (out, _) = optimize(&g, &only("reshape-reshape")).unwrap();
    assert_eq!(count(&out, "reshape"), 2);
}

/// `x op c` and `c op x` for a splat constant `c` of shape [1] drop the op.
#[test]
fn rules_identity_elements() {
    let cases: &[(&str, &str, f32, bool)] = &[
        ("mul-one", "mul", 1.0, false),
        ("one-mul", "mul", 1.0, true),
        ("div-one", "div", 1.0, false),
        ("add-zero", "add", 0.0, false),
        ("zero-add", "add", 0.0, true),
        ("sub-zero", "sub", 0.0, false),
    ];
    for (seed, &(rule, m, value, left)) in cases.iter().enumerate() {
        let s = random_shape(&mut Rng::new(seed as u64));
        let g = graph(&[&s], |b, x| {
            let c = fconst(b, "c", &[1], vec![value]);
            vec![if left {
                bin(b, m, c, x[0])
            } else {
                bin(b, m, x[0], c)
            }]
        });
        assert_eq!(compute_ops(&check_rule(rule, &g, seed as u64)), 0, "{rule}");
    }
}

#[test]
fn the_guard_refuses_a_rewrite_that_changes_the_shape() {
    // x[3] * ones[2, 3] broadcasts x: dropping the mul would change the type.
    let g = graph(&[&[3]], |b, x| {
        let c = fconst(b, "ones", &[2, 3], vec![1.0; 6]);
        vec![bin(b, "mul", x[0], c)]
    });
    let (out, report) = optimize(&g, &only("mul-one")).unwrap();
    assert!(
        report.refused.get("mul-one").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    assert_eq!(count(&out, "mul"), 1);
    assert_eq!(max_difference(&g, &out, 5, &HashMap::new()).unwrap(), 0.0);
}

#[test]
fn rules_identity_and_negations() {
    for seed in SEEDS {
        let s = random_shape(&mut Rng::new(seed));
        let g = graph(&[&s], |b, x| vec![op(b, "identity", &[x[0]], Attrs::new())]);
        assert_eq!(compute_ops(&check_rule("identity", &g, seed)), 0);

        let g = graph(&[&s], |b, x| {
            let n = op(b, "neg", &[x[0]], Attrs::new());
            vec![op(b, "neg", &[n], Attrs::new())]
        });
        assert_eq!(compute_ops(&check_rule("neg-neg", &g, seed)), 0);

        let g = graph(&[&s, &s], |b, x| {
            let a = op(b, "neg", &[x[0]], Attrs::new());
            let c = op(b, "neg", &[x[1]], Attrs::new());
            vec![bin(b, "mul", a, c)]
        });
        let out = check_rule("neg-mul-neg", &g, seed);
        assert_eq!((count(&out, "mul"), count(&out, "neg")), (1, 0));
    }
}

/// Constant chains: the constants gather and fold into one.
#[test]
fn rules_with_constants() {
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let s = random_shape(&mut rng);
        let last = [*s.last().unwrap() as usize];
        let full = usizes(&s);

        // (x * a) * b -> x * (a*b), with a and b broadcasting differently.
        let g = graph(&[&s], |b, x| {
            let a = random_const(b, &mut rng, "a", &last);
            let c = random_const(b, &mut rng, "b", &full);
            let m = bin(b, "mul", x[0], a);
            vec![bin(b, "mul", m, c)]
        });
        assert_eq!(compute_ops(&check_rule("mul-const-assoc", &g, seed)), 1);

        let g = graph(&[&s], |b, x| {
            let a = random_const(b, &mut rng, "a", &[1]);
            let c = random_const(b, &mut rng, "b", &last);
            let m = bin(b, "add", x[0], a);
            vec![bin(b, "add", m, c)]
        });
        assert_eq!(compute_ops(&check_rule("add-const-assoc", &g, seed)), 1);

        for (rule, m, left) in [
            ("mul-const-right", "mul", true),
            ("add-const-right", "add", true),
        ] {
            let g = graph(&[&s], |b, x| {
                let c = random_const(b, &mut rng, "c", &last);
                vec![if left {
                    bin(b, m, c, x[0])
                } else {
                    bin(b, m, x[0], c)
                }]
            });
            check_rule(rule, &g, seed);
        }

        for (rule, m) in [("div-const", "div"), ("sub-const", "sub")] {
            let g = graph(&[&s], |b, x| {
                let c = random_const(b, &mut rng, "c", &last);
                vec![bin(b, m, x[0], c)]
            });
            let out = check_rule(rule, &g, seed);
            assert_eq!(compute_ops(&out), 1, "{rule}: the constant side folds");
        }

        let g = graph(&[&s], |b, x| {
            let c = random_const(b, &mut rng, "c", &last);
            let m = bin(b, "mul", x[0], c);
            vec![op(b, "neg", &[m], Attrs::new())]
        });
        let out = check_rule("neg-mul-const", &g, seed);
        assert_eq!((count(&out, "mul"), count(&out, "neg")), (1, 0));
    }
}

/// A scale written as a division chain ends as one multiplication by one
/// folded constant when the whole group runs.
#[test]
fn the_algebra_group_combines_rules() {
    let g = graph(&[&[2, 8]], |b, x| {
        let c = fconst(b, "sqrt_d", &[], vec![2.0]);
        let one = fconst(b, "one", &[1], vec![1.0]);
        let d = bin(b, "div", x[0], c);
        let m = bin(b, "mul", d, one);
        let k = fconst(b, "k", &[8], (0..8).map(|i| i as f32 + 1.0).collect());
        let n = bin(b, "mul", k, m);
        let inner = op(b, "neg", &[n], Attrs::new());
        vec![op(b, "neg", &[inner], Attrs::new())]
    });
    let (out, report) = optimize(&g, &Config::default()).unwrap();
    verify(&out).unwrap();
    assert_eq!(
        (compute_ops(&out), count(&out, "mul")),
        (1, 1),
        "{report:?}"
    );
    assert!(max_difference(&g, &out, 3, &HashMap::new()).unwrap() < 1e-5);
}

/// Shared subterms are paid once: `t = x*c` feeding two users stays one op,
/// and the extractor never picks `x*1`'s own class as its operand.
#[test]
fn extraction_counts_shared_subterms_once_and_is_acyclic() {
    let g = graph(&[&[4]], |b, x| {
        let c = fconst(b, "c", &[4], vec![2.0, 3.0, 4.0, 5.0]);
        let t = bin(b, "mul", x[0], c);
        let one = fconst(b, "one", &[1], vec![1.0]);
        let u = bin(b, "mul", t, one);
        let e = op(b, "exp", &[u], Attrs::new());
        let s = op(b, "sin", &[u], Attrs::new());
        vec![e, s]
    });
    let (out, _) = optimize(&g, &Config::default()).unwrap();
    verify(&out).unwrap();
    assert_eq!(compute_ops(&out), 3);
    assert_eq!(max_difference(&g, &out, 1, &HashMap::new()).unwrap(), 0.0);

    // Hand-made cycle: class {leaf, neg(class)}: only the leaf is extractable.
    let mut eg = analysis::TsrEGraph::new(analysis::TsrAnalysis::new(
        Vec::new(),
        vec![TensorType::fixed(&[2], DType::F32)],
    ));
    let x = eg.add(lang::TsrLang::Input(0));
    let n = eg.add(lang::TsrLang::op(
        OpKind::Neg,
        lang::AttrSet::empty(),
        vec![x],
    ));
    eg.union(x, n);
    eg.rebuild();
    let ex = extract::extract_dag(&eg, &[eg.find(x)], &|_, _, n| {
        if n.as_op().is_some() {
            1.0
        } else {
            0.0
        }
    })
    .unwrap();
    assert_eq!(ex.choice[&eg.find(x)], lang::TsrLang::Input(0));
    let mut cyclic = ex.choice.clone();
    cyclic.insert(
        eg.find(x),
        lang::TsrLang::op(OpKind::Neg, lang::AttrSet::empty(), vec![eg.find(x)]),
    );
    assert!(extract::check_acyclic(&eg, &[eg.find(x)], &cyclic).is_err());
}

#[test]
fn optimization_is_deterministic_and_keeps_locations() {
    let g = graph(&[&[3, 4], &[3, 4]], |b, x| {
        let c = fconst(b, "c", &[4], vec![1.0, 2.0, 3.0, 4.0]);
        let a = bin(b, "mul", c, x[0]);
        let d = bin(b, "div", a, c);
        let s = bin(b, "add", d, x[1]);
        vec![s, d]
    });
    let (a, _) = optimize(&g, &Config::default()).unwrap();
    let (b, _) = optimize(&g, &Config::default()).unwrap();
    assert_eq!(tessera_ir::print_graph(&a), tessera_ir::print_graph(&b));
    assert!(a.ops.iter().all(|o| o.loc.is_some()));
}

#[test]
fn the_pass_reports_per_rule_counters() {
    let mut g = graph(&[&[2]], |b, x| {
        let n = op(b, "neg", &[x[0]], Attrs::new());
        vec![op(b, "neg", &[n], Attrs::new())]
    });
    let stats = crate::PassManager::parse("egraph", Default::default())
        .unwrap()
        .run(&mut g, &mut |_, _| {})
        .unwrap();
    let counters = &stats[0].stats.counters;
    assert!(
        counters
            .iter()
            .any(|(k, v)| k == "rule neg-neg applied" && *v == 1),
        "{counters:?}"
    );
    assert_eq!(compute_ops(&g), 0);
}

/// Two identical random draws are two values: hash-consing must not merge them.
#[test]
fn random_ops_are_never_merged() {
    let g = graph(&[], |b, _| {
        let mut a = Attrs::new();
        a.insert("shape".into(), Attr::Ints(vec![3]));
        a.insert("seed".into(), Attr::Float(1.0));
        let r1 = op(b, "random_normal", &[], a.clone());
        let r2 = op(b, "random_normal", &[], a);
        vec![bin(b, "sub", r1, r2)]
    });
    let (out, _) = optimize(&g, &no_rules()).unwrap();
    assert_eq!(count(&out, "random_normal"), 2);
}

/// The results of one multi-result op come back as one op, whichever are used.
#[test]
fn multi_result_ops_are_emitted_once() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::fixed(&[6, 2], DType::F32));
    let mut b = Builder::new(&mut g);
    let mut a = Attrs::new();
    a.insert("num_outputs".into(), Attr::Int(3));
    let split = OpKind::from_mnemonic("split").unwrap();
    let rs = b
        .op(split, vec![Some(x), None], a, 3, loc("split"))
        .unwrap();
    let y = bin(&mut b, "add", rs[2], rs[0]);
    g.outputs.push(("y".into(), y));
    g.outputs.push(("z".into(), rs[2]));
    verify(&g).unwrap();
    let (out, _) = optimize(&g, &no_rules()).unwrap();
    verify(&out).unwrap();
    assert_eq!(count(&out, "split"), 1);
    assert_eq!(
        out.ops
            .iter()
            .find(|o| o.kind == split)
            .unwrap()
            .results
            .len(),
        3
    );
    assert_eq!(max_difference(&g, &out, 2, &HashMap::new()).unwrap(), 0.0);
}

/// Every rule of every group has a numeric test above; a new rule must be
/// added here together with its test.
#[test]
fn every_rule_is_checked_numerically() {
    const TESTED: &[&str] = &[
        "transpose-transpose",
        "reshape-reshape",
        "reshape-same",
        "identity",
        "neg-neg",
        "mul-one",
        "one-mul",
        "div-one",
        "add-zero",
        "zero-add",
        "sub-zero",
        "mul-const-right",
        "add-const-right",
        "mul-const-assoc",
        "add-const-assoc",
        "div-const",
        "sub-const",
        "neg-mul-neg",
        "neg-mul-const",
    ];
    for g in rules::GROUPS {
        let compiled = rules::compile(g).unwrap_or_else(|e| panic!("group {}: {e}", g.name));
        for r in compiled {
            assert!(
                TESTED.contains(&r.name.as_str())
                    || super::tests_fusion::TESTED.contains(&r.name.as_str())
                    || rules::tiling::TESTED.contains(&r.name.as_str()),
                "rule {} of group {} has no numeric test",
                r.name,
                g.name
            );
        }
    }
}

/// Outputs that are graph inputs or constants, and one value output twice.
#[test]
fn outputs_may_be_inputs_constants_or_repeated() {
    let g = graph(&[&[2], &[3]], |b, x| {
        let c = fconst(b, "c", &[2], vec![1.5, 2.5]);
        let s = bin(b, "add", x[0], c);
        vec![x[1], c, s, s]
    });
    let (out, _) = optimize(&g, &no_rules()).unwrap();
    verify(&out).unwrap();
    assert_eq!(out.outputs.len(), 4);
    assert_eq!(out.inputs.len(), 2);
    assert_eq!(out.outputs[0].1, out.inputs[1]);
    assert_eq!(out.outputs[2].1, out.outputs[3].1);
    assert_eq!(max_difference(&g, &out, 4, &HashMap::new()).unwrap(), 0.0);
}

#[test]
fn unknown_rule_groups_and_bad_patterns_are_errors() {
    let cfg = Config {
        groups: vec!["nope".into()],
        ..Default::default()
    };
    let g = graph(&[&[1]], |b, x| vec![op(b, "neg", &[x[0]], Attrs::new())]);
    assert!(optimize(&g, &cfg)
        .unwrap_err()
        .contains("unknown rule group 'nope'"));
    let bad = rules::RuleGroup {
        name: "bad",
        summary: "",
        rules: || {
            vec![rules::RuleDef {
                name: "unbound",
                lhs: "(neg ?x)",
                rhs: rules::Rhs::Pattern("(neg ?y)"),
                cond: rules::Cond::Always,
            }]
        },
    };
    assert!(rules::compile(&bad).unwrap_err().contains("not bound"));
}

/// Symbolic dims prove equal types; an unknown dim proves nothing, so the
/// guard refuses to drop an op on it.
#[test]
fn the_guard_works_on_symbolic_dims_and_refuses_unknown_ones() {
    use tessera_ir::Dim;
    let sym_graph = |d0: Dim| {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(vec![d0, Dim::fixed(4)], DType::F32));
        let mut b = Builder::new(&mut g);
        let one = fconst(&mut b, "one", &[1], vec![1.0]);
        let y = bin(&mut b, "mul", x, one);
        let t = op(&mut b, "transpose", &[y], Attrs::new());
        let z = op(&mut b, "transpose", &[t], Attrs::new());
        g.outputs.push(("z".into(), z));
        verify(&g).unwrap();
        g
    };
    let g = sym_graph(Dim::sym("batch"));
    let (out, report) = optimize(&g, &Config::default()).unwrap();
    verify(&out).unwrap();
    assert_eq!(compute_ops(&out), 0, "{report:?}");
    let dims: HashMap<String, i64> = [("batch".to_string(), 3)].into();
    assert_eq!(max_difference(&g, &out, 1, &dims).unwrap(), 0.0);

    let g = sym_graph(Dim::Unknown);
    let (out, report) = optimize(&g, &Config::default()).unwrap();
    assert_eq!(compute_ops(&out), 3, "{report:?}");
    assert!(report.refused.values().sum::<usize>() > 0);
}
