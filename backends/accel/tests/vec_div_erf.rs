//! The vector unit's `div` and `erf` (ISA version 2) against their oracles,
//! and the lowering of ONNX `Div` and `Erf` onto them.
//!
//! - `erf`: the simulator may not depend on the compiler, so it carries its
//!   own copy of the interpreter's algorithm; here the simulator's vector unit
//!   and the reference interpreter's `Erf` must round to the same f32 on every
//!   one of ~10^6 inputs.
//! - `div`: bit-identical with Rust's f32 `/` (IEEE, nearest-even) and with
//!   the interpreter's `Div`.
//! - The lowerings: every broadcast class of `Div` and `Erf` run on the
//!   accelerator (no host op) and are bit-exact with the interpreter.

use std::collections::BTreeMap;
use std::sync::Arc;
use tessera_accel::program::Program;
use tessera_accel::specialize::Bindings;
use tessera_accel_isa::{Buffer, DType as SimDType, HwConfig, Insn, Load, Op, Role, Stream};
use tessera_accel_isa::{Finish, Store, VecOp, Vector};
use tessera_ir::{Attrs, Builder, DType, Graph, Loc, OpKind, Tensor, TensorType, ValueId};
use tessera_sim::Simulator;

/// Words per simulator run: 128 rows of 256 fill half the server preset's
/// accumulator and respect every field limit (store rows are at most 511).
const ROWS: usize = 128;
const LEN: usize = 256;

fn words_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Runs one `vec` op over `x` (and `y` as a tensor src1) on the simulator,
/// in streams of `ROWS x LEN` words; returns the result words.
fn sim_vec(op: VecOp, x: &[u32], y: Option<&[u32]>) -> Vec<u32> {
    let sim = Simulator::new(HwConfig::server());
    let chunk = ROWS * LEN;
    let mut out = Vec::with_capacity(x.len());
    for (c, xs) in x.chunks(chunk).enumerate() {
        let mut xs = xs.to_vec();
        let n = xs.len();
        xs.resize(chunk, 0);
        let mut ys = y.map(|y| y[c * chunk..c * chunk + n].to_vec());
        if let Some(ys) = &mut ys {
            ys.resize(chunk, 0);
        }
        let bytes = (chunk * 4) as u64;
        let buf = |name: &str, role, addr| Buffer {
            name: name.into(),
            role,
            dtype: SimDType::I32,
            shape: vec![chunk as u64],
            addr,
        };
        let load = |dram: u64, sram: u32| {
            Insn::new(Op::Load(Load {
                mem: 1,
                elem_bytes: 2,
                dram: dram as u32,
                sram,
                y_size: ROWS as u32,
                x_size: LEN as u32,
                x_stride: LEN as u32,
                ..Default::default()
            }))
        };
        let mut insns = vec![load(0, 0)];
        if ys.is_some() {
            insns.push(load(bytes, chunk as u32));
        }
        insns.last_mut().unwrap().deps.push_next = true;
        insns.push(
            Insn::new(Op::Vector(Vector {
                op: op.index(),
                src1: if ys.is_some() { chunk as u32 } else { 0 },
                len: LEN as u32,
                rows: ROWS as u32,
                stride: LEN as u32,
                dst_stride: LEN as u32,
                ..Default::default()
            }))
            .with_deps(true, false, false, true),
        );
        insns.push(
            Insn::new(Op::Store(Store {
                fmt: 1,
                dram: (2 * bytes) as u32,
                y_size: ROWS as u32,
                x_size: LEN as u32,
                x_stride: LEN as u32,
                ..Default::default()
            }))
            .with_deps(true, false, true, false),
        );
        insns.push(Insn::new(Op::Finish(Finish {})).with_deps(false, true, false, false));
        let stream = Stream {
            dram_size: 3 * bytes,
            buffers: vec![
                buf("x", Role::Input, 0),
                buf("y", Role::Input, bytes),
                buf("out", Role::Output, 2 * bytes),
            ],
            insns,
            ..Default::default()
        };
        let mut inputs = BTreeMap::new();
        inputs.insert("x".to_string(), words_bytes(&xs));
        inputs.insert("y".to_string(), words_bytes(&ys.unwrap_or(vec![0; chunk])));
        let (o, _) = sim.run(&stream, &inputs).unwrap();
        out.extend(
            o.outputs["out"]
                .chunks_exact(4)
                .take(n)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap())),
        );
    }
    out
}

fn loc(name: &str) -> Option<Loc> {
    Some(Loc {
        name: name.into(),
        op_type: name.into(),
    })
}

fn op(b: &mut Builder, kind: OpKind, xs: &[ValueId], name: &str) -> ValueId {
    b.op(
        kind,
        xs.iter().map(|&v| Some(v)).collect(),
        Attrs::new(),
        1,
        loc(name),
    )
    .unwrap()[0]
}

/// The reference interpreter's result of one op over f32 operands.
fn interpret(kind: OpKind, operands: &[&[f32]]) -> Vec<f32> {
    let mut g = Graph::new("one");
    let ins: Vec<ValueId> = operands
        .iter()
        .enumerate()
        .map(|(i, v)| {
            g.add_input(
                &format!("x{i}"),
                TensorType::fixed(&[v.len() as i64], DType::F32),
            )
        })
        .collect();
    let mut b = Builder::new(&mut g);
    let y = op(&mut b, kind, &ins, "the_op");
    g.add_output("y", y);
    let inputs: Vec<Tensor> = operands
        .iter()
        .map(|v| Tensor::f32(vec![v.len()], v.to_vec()))
        .collect();
    tessera_reference::run(&g, &inputs).unwrap()[0].to_f32_vec()
}

/// Bit equality, with any NaN equal to any NaN (payloads are not specified).
fn same(a: u32, b: u32) -> bool {
    a == b || (f32::from_bits(a).is_nan() && f32::from_bits(b).is_nan())
}

/// xorshift64*: reproducible pseudo-random words.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
}

fn neighbours(x: f32) -> [f32; 3] {
    [x.next_down(), x, x.next_up()]
}

#[test]
fn simulator_erf_is_bit_identical_to_the_interpreter() {
    // A uniform grid over [-8, 8], random f32 in [-8, 8], magnitudes from the
    // smallest subnormal up (every binade), and the specials and the branch
    // boundaries of the algorithm (2.5, 6) with their neighbours.
    let mut xs: Vec<f32> = (0..600_000)
        .map(|i| -8.0 + 16.0 * i as f32 / 600_000.0)
        .collect();
    let mut rng = Rng(0x0e4f_2024_d1b0_0001);
    xs.extend((0..400_000).map(|_| ((rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0));
    for e in -149..=3 {
        let m = 2f32.powi(e);
        xs.extend([m, -m, m * 1.5, -m * 1.3]);
    }
    for b in [2.5f32, 6.0, 8.0] {
        for s in [b, -b] {
            xs.extend(neighbours(s));
        }
    }
    xs.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        -f32::from_bits(1),
        f32::MAX,
        f32::MIN,
    ]);
    assert!(xs.len() >= 1_000_000);
    let bits: Vec<u32> = xs.iter().map(|x| x.to_bits()).collect();
    let got = sim_vec(VecOp::Erf, &bits, None);
    let want = interpret(OpKind::Erf, &[&xs]);
    let bad: Vec<String> = xs
        .iter()
        .zip(got.iter().zip(&want))
        .filter(|(_, (g, w))| !same(**g, w.to_bits()))
        .take(5)
        .map(|(x, (g, w))| {
            format!(
                "erf({x:e}): sim {:e}, interpreter {w:e}",
                f32::from_bits(*g)
            )
        })
        .collect();
    assert!(bad.is_empty(), "mismatches, first ones: {bad:?}");
    // The sign of zero survives and the limits are exact.
    assert_eq!(got[xs.len() - 10], (-0.0f32).to_bits());
    assert_eq!(f32::from_bits(got[xs.len() - 9]), 1.0);
    assert_eq!(f32::from_bits(got[xs.len() - 8]), -1.0);
}

#[test]
fn simulator_div_is_ieee_division() {
    // Random bit patterns (every exponent, NaNs, infinities, subnormals), random
    // quotients near 1 (so the rounding is exercised everywhere), and the specials.
    let mut rng = Rng(0x0d1f_5eed_0000_0002);
    let mut pairs: Vec<(f32, f32)> = (0..500_000)
        .map(|_| {
            let w = rng.next();
            (f32::from_bits(w as u32), f32::from_bits((w >> 32) as u32))
        })
        .collect();
    pairs.extend((0..300_000).map(|_| {
        let w = rng.next();
        let a = 1.0 + (w as u32 >> 9) as f32 / (1u32 << 23) as f32;
        let b = 1.0 + ((w >> 32) as u32 >> 9) as f32 / (1u32 << 23) as f32;
        (a, b)
    }));
    // Subnormal quotients and dividends.
    pairs.extend((0..200_000).map(|_| {
        let w = rng.next();
        let a = f32::from_bits((w as u32) & 0x807f_ffff);
        let b = f32::from_bits(0x3f80_0000 | ((w >> 32) as u32 & 0x407f_ffff));
        (a, b)
    }));
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -3.0,
        10.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::from_bits(1),
        f32::MIN_POSITIVE,
        f32::MAX,
    ];
    for &a in &specials {
        for &b in &specials {
            pairs.push((a, b));
        }
    }
    let (xs, ys): (Vec<f32>, Vec<f32>) = pairs.iter().copied().unzip();
    let xb: Vec<u32> = xs.iter().map(|x| x.to_bits()).collect();
    let yb: Vec<u32> = ys.iter().map(|x| x.to_bits()).collect();
    let got = sim_vec(VecOp::Div, &xb, Some(&yb));
    let interp = interpret(OpKind::Div, &[&xs, &ys]);
    let mut subnormal = 0;
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let q = a / b;
        assert!(
            same(got[i], q.to_bits()),
            "{a:e} / {b:e}: sim {:e}, want {q:e}",
            f32::from_bits(got[i])
        );
        assert!(
            same(got[i], interp[i].to_bits()),
            "{a:e} / {b:e} vs the interpreter"
        );
        subnormal += q.is_subnormal() as usize;
    }
    assert!(subnormal > 1000, "only {subnormal} subnormal quotients");
}

/// An operand's shape and, for a constant, its values (None: a graph input).
type Operand<'a> = (&'a [i64], Option<Vec<f32>>);

/// A graph `y = Div(a, b)` (or `Erf(a)`) over the given operands.
fn graph(kind: OpKind, operands: &[Operand]) -> Graph {
    let mut g = Graph::new("div_erf");
    let mut vals = Vec::new();
    for (i, (shape, c)) in operands.iter().enumerate() {
        if c.is_none() {
            vals.push(Some(g.add_input(
                &format!("x{i}"),
                TensorType::fixed(shape, DType::F32),
            )));
        } else {
            vals.push(None);
        }
    }
    let mut b = Builder::new(&mut g);
    let ids: Vec<ValueId> = operands
        .iter()
        .zip(vals)
        .enumerate()
        .map(|(i, ((shape, c), v))| match (c, v) {
            (Some(c), _) => {
                let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                b.constant(
                    &format!("c{i}"),
                    Arc::new(Tensor::f32(dims, c.clone())),
                    None,
                )
            }
            (None, v) => v.unwrap(),
        })
        .collect();
    let y = op(&mut b, kind, &ids, "the_op");
    g.add_output("y", y);
    g
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| match i % 7 {
            // Integers: x / 10 and x * (1/10) differ for some (9 / 10).
            0 => (i % 23) as f32,
            _ => ((rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0,
        })
        .collect()
}

/// Compiles, checks nothing runs on the host, and compares the simulator's
/// output with the interpreter's bit for bit.
fn assert_exact_on_accel(g: &Graph) {
    let p = Program::compile(g, &HwConfig::edge(), &Bindings::new()).unwrap();
    assert_eq!(p.host_ops().count(), 0, "{}", p.header());
    let inputs: Vec<Tensor> = g
        .inputs
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let shape: Vec<usize> = g
                .ty(v)
                .static_shape()
                .unwrap()
                .into_iter()
                .map(|d| d as usize)
                .collect();
            let n = shape.iter().product();
            let mut x = values(n, 11 + i as u64);
            // A -0 dividend (its sign must reach the quotient) and a zero divisor.
            x[0] = if i == 0 { -0.0 } else { 0.0 };
            Tensor::f32(shape, x)
        })
        .collect();
    let (out, _) = p.run(&inputs).unwrap();
    let want = tessera_reference::run(g, &inputs).unwrap();
    let (o, w) = (out[0].to_f32_vec(), want[0].to_f32_vec());
    assert_eq!(out[0].shape, want[0].shape);
    for (i, (a, b)) in o.iter().zip(&w).enumerate() {
        assert!(
            same(a.to_bits(), b.to_bits()),
            "element {i}: accel {a:e}, interpreter {b:e}"
        );
    }
}

#[test]
fn div_every_broadcast_class_runs_on_the_accelerator_bit_exact() {
    let full: &[i64] = &[3, 5, 37];
    let cases: Vec<Vec<Operand>> = vec![
        // Full / Full, Full / PerRow, Full / RowVec, Full / runtime scalar.
        vec![(full, None), (full, None)],
        vec![(full, None), (&[3, 5, 1], None)],
        vec![(full, None), (&[37], None)],
        vec![(full, None), (&[1], None)],
        // The broadcast operand is the dividend.
        vec![(&[3, 5, 1], None), (full, None)],
        vec![(&[37], None), (full, None)],
        vec![(&[1], None), (full, None)],
        // Constant divisors: a bf16 immediate (10), a kernel constant word
        // (0.3 is not exact in bf16), a constant row vector.
        vec![(full, None), (&[], Some(vec![10.0]))],
        vec![(full, None), (&[1], Some(vec![0.3]))],
        vec![
            (full, None),
            (&[37], Some((1..=37).map(|i| i as f32 * 0.7).collect())),
        ],
        // A constant scalar dividend.
        vec![(&[], Some(vec![1.5])), (full, None)],
    ];
    for c in &cases {
        let g = graph(OpKind::Div, c);
        assert_exact_on_accel(&g);
    }
}

#[test]
fn div_by_ten_is_not_a_multiplication_by_a_tenth() {
    // The witness that the lowering must divide: 9 * (1/10) rounds up.
    assert_ne!(9.0f32 * (1.0 / 10.0), 9.0 / 10.0);
    let g = graph(OpKind::Div, &[(&[2, 16], None), (&[], Some(vec![10.0]))]);
    let p = Program::compile(&g, &HwConfig::edge(), &Bindings::new()).unwrap();
    assert_eq!(p.host_ops().count(), 0);
    let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
    let (out, _) = p.run(&[Tensor::f32(vec![2, 16], x.clone())]).unwrap();
    let got = out[0].to_f32_vec();
    assert_eq!(got[9], 0.9);
    assert_eq!(got[13], 1.3);
    let rounds_differently = x
        .iter()
        .zip(&got)
        .filter(|(a, q)| **a * (1.0f32 / 10.0) != **q)
        .count();
    assert!(rounds_differently >= 2, "{rounds_differently}");
    for (a, q) in x.iter().zip(&got) {
        assert_eq!(q.to_bits(), (a / 10.0).to_bits(), "{a} / 10");
    }
}

#[test]
fn erf_runs_on_the_accelerator_bit_exact() {
    let g = graph(OpKind::Erf, &[(&[4, 300], None)]);
    assert_exact_on_accel(&g);
}

#[test]
fn integer_div_stays_on_the_host_with_its_reason() {
    let mut g = Graph::new("idiv");
    let a = g.add_input("a", TensorType::fixed(&[4, 8], DType::I32));
    let b0 = g.add_input("b", TensorType::fixed(&[4, 8], DType::I32));
    let mut b = Builder::new(&mut g);
    let q = op(&mut b, OpKind::Div, &[a, b0], "int_div");
    g.add_output("q", q);
    let p = Program::compile(&g, &HwConfig::edge(), &Bindings::new()).unwrap();
    let host: Vec<_> = p.host_ops().collect();
    assert_eq!(host.len(), 1);
    assert_eq!(host[0].node, "int_div");
    assert!(host[0].reason.contains("non-f32"), "{}", host[0].reason);
}
