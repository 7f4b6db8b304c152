//! Data movement (Slice, Concat, Expand, constant Gather, Unsqueeze), the
//! broadcasts the vector unit cannot stride, x², same-type casts and i32
//! arithmetic on the accelerator: every op placed there (no host op) and the
//! outputs bit-identical to the reference interpreter.

mod support;
use support::{op, values};

use std::sync::Arc;
use tessera_accel::program::Program;
use tessera_accel::specialize::Bindings;
use tessera_accel_isa::HwConfig;
use tessera_ir::{Attr, Attrs, Builder, DType, Graph, OpKind, Tensor, TensorType, ValueId};

fn i64s(b: &mut Builder, name: &str, v: &[i64]) -> ValueId {
    b.constant(name, Arc::new(Tensor::i64(vec![v.len()], v.to_vec())), None)
}

/// Compiles for edge, asserts nothing runs on the host, and compares every
/// output bit for bit with the interpreter.
fn check_on_accelerator(g: &Graph, inputs: &[Tensor]) -> Program {
    let p = Program::compile(g, &HwConfig::edge(), &Bindings::new()).unwrap();
    assert_eq!(p.host_ops().count(), 0, "{}", p.header());
    let (got, _) = p.run(inputs).unwrap();
    let want = tessera_reference::run(g, inputs).unwrap();
    assert_eq!(got.len(), want.len());
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.shape, b.shape, "output {k}");
        let (ab, bb) = (a.to_bytes(), b.to_bytes());
        let first = ab.iter().zip(&bb).position(|(x, y)| x != y);
        assert!(
            first.is_none(),
            "output {k} differs first at byte {first:?}: accel {:?} vs reference {:?}",
            &ab[first.unwrap_or(0)..(first.unwrap_or(0) + 8).min(ab.len())],
            &bb[first.unwrap_or(0)..(first.unwrap_or(0) + 8).min(bb.len())]
        );
    }
    p
}

#[test]
fn slices_concats_expands_and_gathers_move_the_right_words() {
    let mut g = Graph::new("movement");
    let x = g.add_input("x", TensorType::fixed(&[2, 3, 8], DType::F32));
    let past = g.add_input("past", TensorType::fixed(&[2, 5, 8], DType::F32));
    let mut b = Builder::new(&mut g);
    // Every other element of the last axis, backwards, from a clamped end.
    let (st, en, ax, sp) = (
        i64s(&mut b, "st", &[100]),
        i64s(&mut b, "en", &[-100]),
        i64s(&mut b, "ax", &[-1]),
        i64s(&mut b, "sp", &[-2]),
    );
    let sliced = op(
        &mut b,
        OpKind::Slice,
        &[x, st, en, ax, sp],
        Attrs::new(),
        "slice",
    );
    // A KV-cache append along the sequence axis, with a constant third part.
    let k = b.constant(
        "k",
        Arc::new(Tensor::f32(vec![2, 1, 8], values(16, 3, 1.0))),
        None,
    );
    let mut axis = Attrs::new();
    axis.insert("axis".into(), Attr::Int(1));
    let cat = op(&mut b, OpKind::Concat, &[past, x, k], axis, "concat");
    // A broadcast copy over a middle axis.
    let (s0, e0, a0) = (
        i64s(&mut b, "s0", &[1]),
        i64s(&mut b, "e0", &[2]),
        i64s(&mut b, "a0", &[1]),
    );
    let row = op(&mut b, OpKind::Slice, &[x, s0, e0, a0], Attrs::new(), "row");
    let shape = i64s(&mut b, "shape", &[2, 4, 8]);
    let expanded = op(
        &mut b,
        OpKind::Expand,
        &[row, shape],
        Attrs::new(),
        "expand",
    );
    // A gather with constant (negative) indices, then a new axis.
    let idx = b.constant("idx", Arc::new(Tensor::i64(vec![3], vec![-1, 0, 4])), None);
    let mut ax1 = Attrs::new();
    ax1.insert("axis".into(), Attr::Int(1));
    let picked = op(&mut b, OpKind::Gather, &[cat, idx], ax1, "gather");
    let ua = i64s(&mut b, "ua", &[0]);
    let unsq = op(
        &mut b,
        OpKind::Unsqueeze,
        &[picked, ua],
        Attrs::new(),
        "unsqueeze",
    );
    // An uneven split of the last axis (into slices).
    let parts = i64s(&mut b, "parts", &[3, 5]);
    let mut last = Attrs::new();
    last.insert("axis".into(), Attr::Int(-1));
    let halves = b
        .op(OpKind::Split, vec![Some(x), Some(parts)], last, 2, None)
        .unwrap();
    g.add_output("left", halves[0]);
    g.add_output("right", halves[1]);
    for (name, v) in [
        ("sliced", sliced),
        ("cat", cat),
        ("expanded", expanded),
        ("picked", unsq),
    ] {
        g.add_output(name, v);
    }
    let inputs = [
        Tensor::f32(vec![2, 3, 8], values(48, 1, 2.0)),
        Tensor::f32(vec![2, 5, 8], values(80, 2, 2.0)),
    ];
    let p = check_on_accelerator(&g, &inputs);
    let gathers = p
        .segments()
        .flat_map(|s| &s.notes)
        .filter(|n| n.contains("gather by strided DMA"))
        .count();
    assert_eq!(gathers, 8, "{}", p.asm());
}

#[test]
fn unstridable_broadcasts_are_expanded_first() {
    // Llama's rotary: x[b, h, s, d] * cos[b, 1, s, d], and an outer sum
    // a[b, 1, d] + c[1, s, d] where neither operand is full.
    let mut g = Graph::new("broadcast");
    let x = g.add_input("x", TensorType::fixed(&[2, 3, 4, 8], DType::F32));
    let c = g.add_input("cos", TensorType::fixed(&[2, 1, 4, 8], DType::F32));
    let a = g.add_input("a", TensorType::fixed(&[2, 1, 8], DType::F32));
    let s = g.add_input("s", TensorType::fixed(&[1, 5, 8], DType::F32));
    let mut b = Builder::new(&mut g);
    let y = op(&mut b, OpKind::Mul, &[x, c], Attrs::new(), "mul");
    let z = op(&mut b, OpKind::Add, &[a, s], Attrs::new(), "add");
    g.add_output("y", y);
    g.add_output("z", z);
    let inputs = [
        Tensor::f32(vec![2, 3, 4, 8], values(192, 4, 3.0)),
        Tensor::f32(vec![2, 1, 4, 8], values(64, 5, 1.0)),
        Tensor::f32(vec![2, 1, 8], values(16, 6, 1.0)),
        Tensor::f32(vec![1, 5, 8], values(40, 7, 1.0)),
    ];
    let p = check_on_accelerator(&g, &inputs);
    let expands = p
        .graph
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Expand)
        .count();
    // cos, and both outer-sum operands (neither is full, nor a row, row
    // vector or scalar of the other's shape).
    assert_eq!(expands, 3);
}

fn scalar(b: &mut Builder, name: &str, v: f32) -> ValueId {
    b.constant(name, Arc::new(Tensor::f32(vec![], vec![v])), None)
}

/// `x²`, a same-type cast, and `Cast<i32>(Clip(Round(x), lo, hi)) * col + k`
/// (wrapping i32, like the interpreter).
fn arith_graph(lo: f32, hi: f32) -> Graph {
    let mut g = Graph::new("arith");
    let x = g.add_input("x", TensorType::fixed(&[64, 32], DType::F32));
    let mut b = Builder::new(&mut g);
    let two = scalar(&mut b, "two", 2.0);
    let sq = op(&mut b, OpKind::Pow, &[x, two], Attrs::new(), "pow");
    let mut to_f32 = Attrs::new();
    to_f32.insert("to".into(), Attr::Type(DType::F32));
    let same = op(&mut b, OpKind::Cast, &[sq], to_f32, "cast_f32");
    let r = op(&mut b, OpKind::Round, &[x], Attrs::new(), "round");
    let (lo, hi) = (scalar(&mut b, "lo", lo), scalar(&mut b, "hi", hi));
    let r = op(&mut b, OpKind::Clip, &[r, lo, hi], Attrs::new(), "clip");
    let mut to_i32 = Attrs::new();
    to_i32.insert("to".into(), Attr::Type(DType::I32));
    let ri = op(&mut b, OpKind::Cast, &[r], to_i32, "cast_i32");
    let col: Vec<i32> = (0..32).map(|j| (j * 7919 - 100_000) * 1000).collect();
    let col = b.constant(
        "col",
        Arc::new(Tensor::new(DType::I32, vec![32], tessera_ir::Data::I32(col)).unwrap()),
        None,
    );
    let prod = op(&mut b, OpKind::Mul, &[ri, col], Attrs::new(), "mul_i32");
    let k = b.constant(
        "k",
        Arc::new(Tensor::new(DType::I32, vec![], tessera_ir::Data::I32(vec![i32::MAX])).unwrap()),
        None,
    );
    let sum = op(&mut b, OpKind::Add, &[prod, k], Attrs::new(), "add_i32");
    g.add_output("same", same);
    g.add_output("sum", sum);
    g
}

fn arith_input() -> Tensor {
    // Large and tiny magnitudes: squares that round, overflow and flush.
    let mut xs = values(64 * 32, 8, 300.0);
    xs[0] = 3.0e19;
    xs[1] = 1.0e-23;
    xs[2] = 16777215.0;
    xs[3] = -2.5e9;
    Tensor::f32(vec![64, 32], xs)
}

#[test]
fn square_same_type_cast_and_i32_arithmetic_are_exact() {
    // Products wrap (|r·col| reaches 2^47).
    check_on_accelerator(&arith_graph(-2.0e9, 2.0e9), &[arith_input()]);
}

#[test]
fn casts_of_possibly_out_of_range_integers_stay_on_the_host() {
    // Out of i32's range the interpreter's Cast gives i32::MIN while f2i
    // saturates: with bounds past 2^31 the cast must not be lowered.
    let g = arith_graph(-1.0e10, 1.0e10);
    let p = Program::compile(&g, &HwConfig::edge(), &Bindings::new()).unwrap();
    let host: Vec<&str> = p.host_ops().map(|h| h.node.as_str()).collect();
    assert_eq!(host, ["cast_i32"], "{}", p.header());
    let x = arith_input();
    let (got, _) = p.run(std::slice::from_ref(&x)).unwrap();
    let want = tessera_reference::run(&g, &[x]).unwrap();
    assert_eq!(got[1].to_bytes(), want[1].to_bytes());
}
