//! Row-kernel fusion (`fuse.rs`): a fused program computes the very bits of
//! the unfused one (one kernel per op), with fewer kernels and less DRAM
//! traffic; values kept in the accumulator are no segment output, and the
//! differential check still covers every value a segment stores.

mod support;
use support::op;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera_accel::program::{Options, Program};
use tessera_accel::specialize::Bindings;
use tessera_accel::RunSummary;
use tessera_accel_isa::HwConfig;
use tessera_ir::{Attr, Attrs, Builder, DType, Graph, OpKind, Tensor, TensorType, ValueId};

const FUSED: Options = Options { fuse_rows: true };
const UNFUSED: Options = Options { fuse_rows: false };

struct Compiled {
    program: Program,
    outputs: Vec<Tensor>,
    summary: RunSummary,
}

fn compile_run(
    g: &Graph,
    cfg: &HwConfig,
    bind: &Bindings,
    opts: Options,
    inputs: &[Tensor],
) -> Compiled {
    let program = Program::compile_with(g, cfg, bind, opts)
        .unwrap_or_else(|e| panic!("{} ({opts:?}): compile: {e}", g.name));
    let (outputs, reports) = program
        .run(inputs)
        .unwrap_or_else(|e| panic!("{} ({opts:?}): run: {e}", g.name));
    let summary = RunSummary::of(cfg, &reports, program.host_ops().count());
    Compiled {
        program,
        outputs,
        summary,
    }
}

fn kernels(p: &Program) -> usize {
    p.segments().map(|s| s.notes.len()).sum()
}

fn fused_notes(p: &Program) -> Vec<String> {
    p.segments()
        .flat_map(|s| &s.notes)
        .filter(|n| n.starts_with("fused ["))
        .cloned()
        .collect()
}

/// Compiles `g` fused and unfused, runs both on `inputs` and checks: the
/// outputs are bit-identical; the fused program has fewer kernels and moves
/// fewer DRAM bytes; no fused segment stores a value the unfused one does
/// not; the differential check covers exactly the stored values (integers
/// bit-exact). Returns (unfused, fused).
fn compare(g: &Graph, cfg: &HwConfig, bind: &Bindings, inputs: &[Tensor]) -> (Compiled, Compiled) {
    let plain = compile_run(g, cfg, bind, UNFUSED, inputs);
    let fused = compile_run(g, cfg, bind, FUSED, inputs);
    assert_eq!(plain.outputs.len(), fused.outputs.len());
    for (i, (a, b)) in plain.outputs.iter().zip(&fused.outputs).enumerate() {
        assert_eq!(a.shape, b.shape, "{}: output {i}", g.name);
        assert!(
            a.to_bytes() == b.to_bytes(),
            "{}: output {i} differs between the fused and unfused programs",
            g.name
        );
    }
    assert!(
        kernels(&fused.program) < kernels(&plain.program),
        "{}: {} fused kernels vs {} unfused",
        g.name,
        kernels(&fused.program),
        kernels(&plain.program)
    );
    assert!(
        fused.summary.dram_bytes < plain.summary.dram_bytes,
        "{}: DRAM bytes {} fused vs {} unfused",
        g.name,
        fused.summary.dram_bytes,
        plain.summary.dram_bytes
    );
    assert_eq!(
        fused.program.segments().count(),
        plain.program.segments().count()
    );
    for (f, u) in fused.program.segments().zip(plain.program.segments()) {
        assert!(plain_has_no_internal(u));
        assert_eq!(f.ops, u.ops, "{}: fusion keeps the partition", g.name);
        for v in &f.outputs {
            assert!(
                u.outputs.contains(v),
                "{}: %{} stored only fused",
                g.name,
                v.0
            );
        }
        for v in &f.internal {
            assert!(u.outputs.contains(v) && !f.outputs.contains(v));
        }
        // Every value the unfused segment stored is stored or internal.
        assert_eq!(f.outputs.len() + f.internal.len(), u.outputs.len());
    }
    let checks = fused.program.differential(inputs).unwrap();
    let stored: usize = fused.program.segments().map(|s| s.outputs.len()).sum();
    assert_eq!(
        checks.len(),
        stored,
        "{}: one check per stored value",
        g.name
    );
    for c in checks.iter().filter(|c| c.dtype != DType::F32) {
        assert_eq!(c.mismatches, 0, "{}: {} {}", g.name, c.mnemonic, c.node);
    }
    (plain, fused)
}

fn plain_has_no_internal(s: &tessera_accel::program::Segment) -> bool {
    s.internal.is_empty()
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/models")
}

fn read(set: &Path, prefix: &str, n: usize) -> Vec<Tensor> {
    (0..n)
        .map(|k| tessera_frontend::read_tensor_pb(set.join(format!("{prefix}_{k}.pb"))).unwrap())
        .collect()
}

fn check_fixture(name: &str, cfg: &HwConfig) {
    let dir = models().join(name);
    let g = tessera_frontend::import_model(dir.join("model.onnx")).unwrap();
    let set = dir.join("test_data_set_0");
    let inputs = read(&set, "input", g.inputs.len());
    let env = tessera_reference::bind_inputs(&g, &inputs).unwrap();
    let bind: Bindings = env.into_iter().collect();
    let (plain, fused) = compare(&g, cfg, &bind, &inputs);
    assert!(
        !fused_notes(&fused.program).is_empty(),
        "{name}: nothing fused"
    );
    eprintln!(
        "{name} ({}): kernels {} -> {}, cycles {} -> {}, DRAM bytes {} -> {}",
        cfg.name,
        kernels(&plain.program),
        kernels(&fused.program),
        plain.summary.total_cycles,
        fused.summary.total_cycles,
        plain.summary.dram_bytes,
        fused.summary.dram_bytes
    );
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_fixture(stringify!($name), &HwConfig::edge());
        }
    )*};
}

fixtures!(
    bert_dynamo_op23,
    bert_int8_dynamic,
    bert_legacy_op17,
    gpt2_dynamo_op23,
    gpt2_legacy_op17,
    llama_dynamo_op23,
    llama_int4_matmulnbits,
    llama_kvcache_legacy_op17,
    llama_legacy_op17,
    vit_dynamo_op23,
    vit_legacy_op17,
);

#[test]
fn server_preset_fuses_bert() {
    check_fixture("bert_legacy_op17", &HwConfig::server());
}

// ---------------------------------------------------------------------------
// Synthetic graphs

/// Deterministic values in [-amp, amp).
fn values(shape: &[usize], seed: u64, amp: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let v = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect();
    Tensor::f32(shape.to_vec(), v)
}

fn konst(b: &mut Builder, name: &str, t: Tensor) -> ValueId {
    b.constant(name, Arc::new(t), None)
}

/// `x @ W`: the quantize chain before the GEMM and the dequantize chain
/// after it each become one kernel; the per-row scale and its reciprocal
/// live in narrow slots.
#[test]
fn quantized_matmul_chains_fuse() {
    let (m, k, n) = (24usize, 96usize, 40usize);
    let mut g = Graph::new("qmm");
    let x = g.add_input("x", TensorType::fixed(&[m as i64, k as i64], DType::F32));
    let mut b = Builder::new(&mut g);
    let w = konst(&mut b, "w", values(&[k, n], 3, 0.05));
    let y = op(&mut b, OpKind::MatMul, &[x, w], Attrs::new(), "mm");
    let r = op(&mut b, OpKind::Relu, &[y], Attrs::new(), "relu");
    g.add_output("y", r);
    let xs = values(&[m, k], 7, 2.0);
    let (plain, fused) = compare(
        &g,
        &HwConfig::edge(),
        &Bindings::new(),
        std::slice::from_ref(&xs),
    );
    let notes = fused_notes(&fused.program);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    // Quantize: abs, reduce_max, max, mul, reciprocal, mul, round, clip,
    // cast; it stores the i8 activations and the scale the dequantize
    // step reads.
    let quant = &notes[0];
    for step in [
        "abs ",
        "reduce_max ",
        "max ",
        "reciprocal ",
        "round ",
        "clip ",
        "cast ",
    ] {
        assert!(quant.contains(step), "{quant}");
    }
    assert!(quant.contains("2 stores"), "{quant}");
    // Dequantize: cast to f32, the two scale products, relu; one store.
    let deq = &notes[1];
    assert!(deq.contains("cast ") && deq.contains("relu "), "{deq}");
    assert!(deq.contains("1 stores"), "{deq}");
    // matmul_integer plus two fused kernels, against one kernel per op.
    assert_eq!(kernels(&fused.program), 3);
    assert_eq!(kernels(&plain.program), 14);
    // The interpreter on the same quantized graph agrees bit for bit (every
    // step of the scheme is one IEEE operation on both sides).
    let want = tessera_reference::run(&fused.program.graph, &[xs]).unwrap();
    assert!(want[0].to_bytes() == fused.outputs[0].to_bytes());
}

/// A value read by several later ops (in place would clobber it), a value
/// read twice by one op, an intermediate that is also a graph output (it
/// must be stored), per-row operands and reductions, a softmax and a
/// LayerNorm with its row constants, all in one chain of ops.
#[test]
fn shared_values_survive_in_place_ops() {
    let (rows, len) = (20usize, 48usize);
    let mut g = Graph::new("shared");
    let x = g.add_input(
        "x",
        TensorType::fixed(&[rows as i64, len as i64], DType::F32),
    );
    let mut b = Builder::new(&mut g);
    let two = konst(&mut b, "two", Tensor::f32(vec![], vec![2.0]));
    let y = op(&mut b, OpKind::Mul, &[x, two], Attrs::new(), "y");
    let sq = op(&mut b, OpKind::Mul, &[y, y], Attrs::new(), "sq");
    let z = op(&mut b, OpKind::Add, &[y, sq], Attrs::new(), "z");
    let axes = konst(&mut b, "axes", Tensor::i64(vec![1], vec![-1]));
    let mut keep = Attrs::new();
    keep.insert("keepdims".into(), Attr::Int(1));
    let rmax = op(&mut b, OpKind::ReduceMax, &[z, axes], keep, "rmax");
    let rinv = op(&mut b, OpKind::Reciprocal, &[rmax], Attrs::new(), "rinv");
    let scaled = op(&mut b, OpKind::Mul, &[z, rinv], Attrs::new(), "scaled");
    let sm = op(&mut b, OpKind::Softmax, &[scaled], Attrs::new(), "sm");
    let mix = op(&mut b, OpKind::Sub, &[sm, y], Attrs::new(), "mix");
    let gamma = konst(&mut b, "gamma", values(&[len], 5, 1.0));
    let beta = konst(&mut b, "beta", values(&[len], 6, 1.0));
    let mut eps = Attrs::new();
    eps.insert("epsilon".into(), Attr::Float(1e-5));
    let ln = op(
        &mut b,
        OpKind::LayerNormalization,
        &[mix, gamma, beta],
        eps,
        "ln",
    );
    let out = op(&mut b, OpKind::Add, &[ln, rinv], Attrs::new(), "out");
    g.add_output("out", out);
    g.add_output("y", y);
    let xs = values(&[rows, len], 11, 1.5);
    let (_, fused) = compare(
        &g,
        &HwConfig::edge(),
        &Bindings::new(),
        std::slice::from_ref(&xs),
    );
    let notes = fused_notes(&fused.program);
    assert_eq!(notes.len(), 1, "one kernel for the whole chain: {notes:#?}");
    assert_eq!(kernels(&fused.program), 1);
    // Stores: `out` and `y` (a graph output read in the chain too).
    assert!(notes[0].contains("2 stores"), "{}", notes[0]);
    let seg = fused.program.segments().next().unwrap();
    assert_eq!(seg.outputs.len(), 2);
    assert_eq!(seg.internal.len(), 8);
    // The exact ops agree with the interpreter bit for bit: y = 2x is
    // exact; the chain's rounding is checked against the unfused program.
    let want = tessera_reference::run(&fused.program.graph, &[xs]).unwrap();
    assert!(want[1].to_bytes() == fused.outputs[1].to_bytes());
}

/// Rows too long for one fused kernel: a softmax over rows of 3000 words
/// makes the group non-elementwise (it cannot be refolded); the softmax and
/// `+ w` fit in two slots (x is overwritten in place: it is a loaded input,
/// still in DRAM), but `* x` needs a third 3000-word slot, which does not fit
/// half the edge accumulator (8192 words), so the chain splits there; the
/// elementwise rest is one kernel, refolded to shorter rows.
#[test]
fn groups_split_at_the_accumulator_capacity() {
    let (rows, len) = (4usize, 3000usize);
    let mut g = Graph::new("long_rows");
    let x = g.add_input(
        "x",
        TensorType::fixed(&[rows as i64, len as i64], DType::F32),
    );
    let w = g.add_input(
        "w",
        TensorType::fixed(&[rows as i64, len as i64], DType::F32),
    );
    let mut b = Builder::new(&mut g);
    let mut v = op(&mut b, OpKind::Softmax, &[x], Attrs::new(), "sm");
    // Each step reads x or w again, so both stay live with the running value.
    let kinds = [
        OpKind::Add,
        OpKind::Mul,
        OpKind::Max,
        OpKind::Sub,
        OpKind::Min,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let other = if i % 2 == 0 { w } else { x };
        v = op(&mut b, kind, &[v, other], Attrs::new(), &format!("s{i}"));
    }
    g.add_output("y", v);
    let inputs = [values(&[rows, len], 1, 1.0), values(&[rows, len], 2, 1.0)];
    let (_, fused) = compare(&g, &HwConfig::edge(), &Bindings::new(), &inputs);
    let notes = &fused.program.segments().next().unwrap().notes;
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(
        notes[0].starts_with("fused [softmax sm, add s0]"),
        "{notes:#?}"
    );
    assert!(
        notes[1].starts_with("fused [mul s1, max s2, sub s3, min s4]"),
        "{notes:#?}"
    );
}

/// An elementwise chain over rows longer than the vector unit takes (10000
/// words) is refolded as a whole, like a single elementwise kernel.
#[test]
fn elementwise_fused_kernels_refold_long_rows() {
    let (rows, len) = (3usize, 10000usize);
    let mut g = Graph::new("refold");
    let x = g.add_input(
        "x",
        TensorType::fixed(&[rows as i64, len as i64], DType::F32),
    );
    let mut b = Builder::new(&mut g);
    let half = konst(&mut b, "half", Tensor::f32(vec![], vec![0.5]));
    let a = op(&mut b, OpKind::Mul, &[x, half], Attrs::new(), "a");
    let r = op(&mut b, OpKind::Relu, &[a], Attrs::new(), "r");
    let n = op(&mut b, OpKind::Neg, &[r], Attrs::new(), "n");
    let y = op(&mut b, OpKind::Add, &[n, x], Attrs::new(), "y");
    g.add_output("y", y);
    let xs = values(&[rows, len], 9, 3.0);
    let (_, fused) = compare(
        &g,
        &HwConfig::edge(),
        &Bindings::new(),
        std::slice::from_ref(&xs),
    );
    assert_eq!(kernels(&fused.program), 1);
    let want = tessera_reference::run(&fused.program.graph, &[xs]).unwrap();
    assert!(want[0].to_bytes() == fused.outputs[0].to_bytes());
}
