//! Which ops run where, and the accelerator kernel of each accel op.
//!
//! An op runs on the accelerator when [`build`] lowers it (the table in
//! `build`: quantized matmuls on the array, elementwise ops, softmax, norms
//! and reductions over the last axis on the vector unit). Otherwise it may run
//! on the host only if it is listed in [`HOST_OPS`], with the reason printed
//! in every compile report; anything else is an error naming the node.

use crate::gemm::{pack_weights, weight_row_bytes, DramMat, GemmMode, GemmOutput, GemmSpec};
use crate::program::node_name;
use crate::vector::{imm, OutFmt, RowKernel, Slot, Src1, Step};
use crate::OpAttrs;
use tessera_accel_isa::VecOp;
use tessera_ir::ops::AttrAccess;
use tessera_ir::{DType, Graph, Op, OpKind, Tensor, ValueId};

/// Ops the host may run, by design or until the accelerator lowers them.
pub const HOST_OPS: &[(OpKind, &str)] = &[
    (
        OpKind::Gather,
        "indexing with runtime indices (embedding lookup); movement.rs gathers by constant indices",
    ),
    (OpKind::GatherNd, "indexing with runtime indices"),
    (OpKind::Shape, "shape arithmetic"),
    (OpKind::Dims, "shape arithmetic"),
    (OpKind::Range, "shape arithmetic"),
    (OpKind::ConstantOfShape, "shape arithmetic"),
    (OpKind::Reshape, "layout change of non-4-byte data (i64 shapes, bool masks)"),
    (OpKind::Flatten, "layout change of non-4-byte data (i64 shapes, bool masks)"),
    (OpKind::Squeeze, "layout change of non-4-byte data (i64 shapes, bool masks)"),
    (OpKind::Unsqueeze, "layout change of non-4-byte data (i64 shapes, bool masks)"),
    (
        OpKind::Transpose,
        "data movement (permutation) of 1-, 2- or 8-byte data, other than an i8 swap of the last two axes",
    ),
    (
        OpKind::Expand,
        "broadcast copy of non-4-byte data or to a runtime shape",
    ),
    (
        OpKind::Concat,
        "data movement of non-4-byte data (i64 shapes, bool masks)",
    ),
    (OpKind::Split, "data movement with several results"),
    (
        OpKind::Slice,
        "data movement of non-4-byte data or with runtime bounds",
    ),
    (OpKind::Identity, "data movement"),
    (OpKind::Where, "mask construction (select)"),
    (OpKind::Equal, "mask construction (comparison)"),
    (OpKind::Less, "mask construction (comparison)"),
    (OpKind::LessOrEqual, "mask construction (comparison)"),
    (OpKind::Greater, "mask construction (comparison)"),
    (OpKind::GreaterOrEqual, "mask construction (comparison)"),
    (OpKind::And, "mask construction (logic)"),
    (OpKind::Or, "mask construction (logic)"),
    (OpKind::Not, "mask construction (logic)"),
    (
        OpKind::Cast,
        "type conversion outside the quantized pattern",
    ),
    (
        OpKind::MatMul,
        "non-f32 operands, or runtime operands whose batch dims broadcast (attention.rs quantizes one matrix or matching batches)",
    ),
    (
        OpKind::Linear,
        "non-f32 operands, or a runtime weight whose batch dims broadcast",
    ),
    (
        OpKind::SwiGlu,
        "fused SwiGLU is not lowered yet (sigmoid, mul on the vector unit)",
    ),
    (OpKind::Gelu, "non-f32 operand"),
    (OpKind::Sigmoid, "non-f32 operand"),
    (OpKind::Tanh, "non-f32 operand"),
    (
        OpKind::Attention,
        "KV-cache operands, softcap, windows or extra outputs (attention.rs expands the rest)",
    ),
    (
        OpKind::RotaryEmbedding,
        "interleaved pairs or runtime position ids (rotary.rs lowers half-split pairs with per-token caches)",
    ),
    (
        OpKind::Conv,
        "padded, grouped or non-2-D convolution (conv.rs runs unpadded 2-D convs as im2col GEMMs)",
    ),
    (OpKind::Erf, "non-f32 operand"),
    (
        OpKind::Pow,
        "exponent other than a constant 2 (the vector unit has no pow)",
    ),
    (
        OpKind::Div,
        "non-f32 operands, or a broadcast pattern the vector unit cannot stride",
    ),
    (OpKind::Cos, "the vector unit has no cos"),
    (OpKind::Sin, "the vector unit has no sin"),
    (
        OpKind::DynamicQuantizeLinear,
        "outputs used other than by MatMulIntegers with constant i8 weights (dynamic_quant.rs rewrites those)",
    ),
    (
        OpKind::DequantizeLinear,
        "int8 embedding table read through a runtime gather",
    ),
    (
        OpKind::MatMulInteger,
        "u8 activations, or a runtime zero point not from a rewritten DynamicQuantizeLinear",
    ),
    (OpKind::MsMatMulNBits, "4-bit weights with a bias operand"),
    (OpKind::Gemm, "Gemm with a runtime weight"),
    (
        OpKind::Add,
        "broadcast pattern the vector unit cannot stride",
    ),
    (
        OpKind::Sub,
        "broadcast pattern the vector unit cannot stride",
    ),
    (
        OpKind::Mul,
        "broadcast pattern the vector unit cannot stride",
    ),
    (OpKind::Softmax, "softmax over a non-last axis"),
    (
        OpKind::LayerNormalization,
        "layer norm over several axes or with stats outputs",
    ),
    (OpKind::RmsNormalization, "RMS norm over several axes"),
    (OpKind::ReduceMean, "reduction over a non-last axis"),
    (OpKind::ReduceMax, "reduction over a non-last axis"),
    (OpKind::ReduceSum, "reduction over a non-last axis"),
    (OpKind::Sqrt, "non-f32 operand"),
    (OpKind::Neg, "non-f32 operand"),
];

pub fn host_reason(kind: OpKind) -> Option<&'static str> {
    HOST_OPS.iter().find(|(k, _)| *k == kind).map(|(_, r)| *r)
}

/// An accelerator kernel with its DRAM addresses resolved.
#[derive(Clone, Debug)]
pub enum Kernel {
    Row(RowKernel),
    Gemm(GemmSpec),
    /// Rotary embedding and constant-index gathers (`staged.rs`).
    Staged(crate::staged::StagedKernel),
    /// Runtime-operand matmuls and i8 transposes (`attention_gemm.rs`).
    Gemms(crate::attention_gemm::GemmBatch),
}

/// Where the kernel builder gets DRAM addresses: runtime values by id,
/// constants as image bytes.
pub trait Addrs {
    fn value(&mut self, v: ValueId) -> u64;
    fn image(&mut self, key: (ValueId, u8), bytes: &[u8]) -> u64;
}

pub struct Ctx<'a> {
    pub g: &'a Graph,
    pub producers: &'a [Option<usize>],
}

impl Ctx<'_> {
    /// DRAM address of an operand: constants live in the segment's image,
    /// runtime values in their buffers.
    pub fn dram_addr<A: Addrs>(&self, a: &mut A, v: ValueId) -> u64 {
        match self.konst(v) {
            Some(t) => a.image((v, 0), &t.to_bytes()),
            None => a.value(v),
        }
    }
    fn konst(&self, v: ValueId) -> Option<&Tensor> {
        self.g.constant_value(v, self.producers).map(|t| &**t)
    }
    fn shape(&self, v: ValueId) -> Result<Vec<u64>, String> {
        let ty = self.g.ty(v);
        ty.static_shape()
            .map(|s| s.into_iter().map(|d| d as u64).collect())
            .ok_or_else(|| format!("operand has a non-static type {ty}"))
    }
    fn producer(&self, v: ValueId) -> Option<&Op> {
        self.producers
            .get(v.0 as usize)
            .copied()
            .flatten()
            .map(|i| &self.g.ops[i])
    }
    /// When every element of `v` is an integer by construction, bounds on
    /// it (infinite when unknown); None when it may hold non-integers. A
    /// float-to-int cast is exact on the vector unit (`f2i`) only for an
    /// integer in the target's range: out of range, the interpreter's Cast
    /// wraps (i8) or gives i32::MIN, while `f2i` and the i8 store saturate.
    fn integer_range(&self, v: ValueId) -> Option<(f64, f64)> {
        if let Some(t) = self.konst(v) {
            let x = t.to_f64_vec();
            if t.dtype != DType::F32 || x.iter().any(|v| v.fract() != 0.0) {
                return None;
            }
            let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
            return Some((lo, x.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
        }
        let range = |p: &Op, i: usize| p.operand(i).and_then(|x| self.integer_range(x));
        let unbounded = (f64::NEG_INFINITY, f64::INFINITY);
        // Sums of integers stay integers (f32 sums are exact below 2^24 and
        // every f32 above is an integer); an infinite bound absorbs the rest.
        let finite = |(lo, hi): (f64, f64)| {
            (
                if lo.is_nan() { f64::NEG_INFINITY } else { lo },
                if hi.is_nan() { f64::INFINITY } else { hi },
            )
        };
        let p = self.producer(v)?;
        match p.kind {
            OpKind::Round => Some(unbounded),
            OpKind::Clip => {
                let (mut lo, mut hi) = range(p, 0)?;
                if p.operand(1).is_some() {
                    lo = lo.max(range(p, 1)?.0);
                }
                if p.operand(2).is_some() {
                    hi = hi.min(range(p, 2)?.1);
                }
                Some((lo, hi))
            }
            OpKind::Neg => range(p, 0).map(|(lo, hi)| (-hi, -lo)),
            OpKind::Add => {
                let ((a, b), (c, d)) = (range(p, 0)?, range(p, 1)?);
                Some(finite((a + c, b + d)))
            }
            OpKind::Sub => {
                let ((a, b), (c, d)) = (range(p, 0)?, range(p, 1)?);
                Some(finite((a - d, b - c)))
            }
            _ => None,
        }
    }

    /// Whether every element of `v` is an integer in `[lo, hi]`.
    fn integers_within(&self, v: ValueId, lo: f64, hi: f64) -> bool {
        self.integer_range(v)
            .is_some_and(|(a, b)| a >= lo && b <= hi)
    }
}

/// `[rows, len]` view of a shape (len = last dim).
fn rows_len(shape: &[u64]) -> (u64, u64) {
    let len = shape.last().copied().unwrap_or(1);
    let n: u64 = shape.iter().product();
    (n.checked_div(len).unwrap_or(0), len)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    Full,
    PerRow,
    RowVec,
    Scalar,
}

pub(crate) fn classify(s: &[u64], out: &[u64]) -> Option<Arg> {
    let n: u64 = s.iter().product();
    let on: u64 = out.iter().product();
    let (rows, len) = rows_len(out);
    if n == on {
        return Some(Arg::Full);
    }
    if n == 1 {
        return Some(Arg::Scalar);
    }
    if s.last() == Some(&len) && n == len {
        return Some(Arg::RowVec);
    }
    if s.last() == Some(&1) && n == rows {
        // The leading dims must match the output's (after left padding).
        let lead = &s[..s.len() - 1];
        let olead = &out[..out.len() - 1];
        let pad = olead.len().saturating_sub(lead.len());
        if lead.len() <= olead.len()
            && olead[pad..].iter().zip(lead).all(|(a, b)| a == b)
            && olead[..pad].iter().all(|&d| d == 1)
        {
            return Some(Arg::PerRow);
        }
    }
    None
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct RowBuilder<'c, 'a, A: Addrs> {
    cx: &'c Ctx<'a>,
    a: &'c mut A,
    k: RowKernel,
}

impl<A: Addrs> RowBuilder<'_, '_, A> {
    /// DRAM address of an operand: constants live in the image.
    fn addr_of(&mut self, v: ValueId) -> u64 {
        self.cx.dram_addr(self.a, v)
    }
    fn wide_input(&mut self, v: ValueId) -> Slot {
        let s = Slot::Wide(self.k.wide);
        self.k.wide += 1;
        let addr = self.addr_of(v);
        self.k.inputs.push((s, addr));
        s
    }
    fn wide_temp(&mut self) -> Slot {
        self.k.wide += 1;
        Slot::Wide(self.k.wide - 1)
    }
    fn narrow_temp(&mut self) -> u8 {
        self.k.narrow += 1;
        self.k.narrow - 1
    }
    fn const_words(&mut self, key: (ValueId, u8), v: &[f32]) -> u8 {
        let addr = self.a.image(key, &f32_bytes(v));
        self.k.consts.push((addr, v.len() as u64));
        (self.k.consts.len() - 1) as u8
    }
    /// A runtime or constant tensor loaded once per kernel.
    fn kernel_input(&mut self, v: ValueId, words: u64) -> u8 {
        let addr = self.addr_of(v);
        self.k.consts.push((addr, words));
        (self.k.consts.len() - 1) as u8
    }
    /// src1 for an operand of class `arg`.
    fn src1(&mut self, v: ValueId, arg: Arg) -> Src1 {
        match arg {
            Arg::Full => Src1::Tensor(self.wide_input(v)),
            Arg::PerRow => {
                let n = Slot::Narrow(self.k.narrow);
                self.k.narrow += 1;
                let addr = self.addr_of(v);
                self.k.inputs.push((n, addr));
                Src1::Row(self.k.narrow - 1)
            }
            Arg::RowVec => Src1::ConstRow(self.kernel_input(v, self.k.len)),
            Arg::Scalar => match self.cx.konst(v).map(|t| t.to_f32_vec()[0]).and_then(imm) {
                Some(x) => Src1::Imm(x),
                None => Src1::Scalar(self.kernel_input(v, 1)),
            },
        }
    }
    fn step(&mut self, op: VecOp, dst: Slot, src0: Slot, src1: Src1) {
        self.k.steps.push(Step::f(op, dst, src0, src1));
    }
    fn istep(&mut self, op: VecOp, dst: Slot, src0: Slot) {
        self.k.steps.push(Step {
            op,
            int: false,
            dst,
            src0,
            src1: Src1::None,
        });
    }
    fn out(&mut self, s: Slot, v: ValueId, fmt: OutFmt) {
        let addr = self.a.value(v);
        self.k.outputs.push((s, addr, fmt));
    }
}

fn dtype_is(g: &Graph, v: Option<ValueId>, d: DType) -> bool {
    v.is_some_and(|v| g.ty(v).dtype() == d)
}

/// The last-axis check of ops with an `axis` attribute.
fn last_axis(op: &Op, rank: usize) -> Result<(), String> {
    let axis = OpAttrs(op).int("axis")?;
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a != rank as i64 - 1 {
        return Err(format!("axis {axis} is not the last axis"));
    }
    Ok(())
}

/// Lowers one op to an accelerator kernel, or says why it cannot.
pub fn build<A: Addrs>(cx: &Ctx, op: &Op, a: &mut A) -> Result<Kernel, String> {
    let g = cx.g;
    let x = op.operand(0).ok_or("no operands")?;
    let y = op.results[0];
    if op.kind == OpKind::MatMulInteger && op.operand(1).is_some_and(|w| cx.konst(w).is_none()) {
        return crate::attention_gemm::build_matmul(cx, op, a).map(Kernel::Gemms);
    }
    if op.kind == OpKind::Transpose && dtype_is(g, Some(x), DType::I8) {
        return crate::attention_gemm::build_transpose(cx, op, a).map(Kernel::Gemms);
    }
    if op.kind == OpKind::Transpose {
        let k = crate::attention_layout::build_transpose(cx, op, a)?;
        return Ok(Kernel::Staged(crate::staged::StagedKernel::Gather(k)));
    }
    if op.kind == OpKind::MatMulInteger {
        return build_matmul(cx, op, a);
    }
    if op.kind == OpKind::RotaryEmbedding {
        let k = crate::rotary::build(cx, op, a)?;
        return Ok(Kernel::Staged(crate::staged::StagedKernel::Rotary(k)));
    }
    if crate::movement::is_movement(op.kind) {
        let k = crate::movement::build(cx, op, a)?;
        return Ok(Kernel::Staged(crate::staged::StagedKernel::Gather(k)));
    }
    if op.kind == OpKind::GatherNd {
        let k = crate::conv::build_gather(cx, op, a)?;
        return Ok(Kernel::Staged(crate::staged::StagedKernel::Gather(k)));
    }
    let out_shape = cx.shape(y)?;
    let (rows, len) = rows_len(&out_shape);
    let f32_in = dtype_is(g, Some(x), DType::F32);
    let mut b = RowBuilder {
        cx,
        a,
        k: RowKernel {
            rows,
            len,
            ..Default::default()
        },
    };
    let word = OutFmt::Word;
    use OpKind as K;
    let unary = |k: K| -> Option<VecOp> {
        Some(match k {
            K::Exp => VecOp::Exp,
            K::Sigmoid => VecOp::Sigmoid,
            K::Tanh => VecOp::Tanh,
            K::Erf => VecOp::Erf,
            K::Sqrt => VecOp::Sqrt,
            K::Reciprocal => VecOp::Recip,
            K::Identity => VecOp::Copy,
            _ => return None,
        })
    };
    if op.results.len() != 1 && !matches!(op.kind, K::LayerNormalization) {
        return Err("several results".into());
    }
    let i32_in = dtype_is(g, Some(x), DType::I32);
    match op.kind {
        // Wrapping i32 arithmetic (the integer correction terms of
        // dynamic_quant.rs); the second operand is full, per row, a row
        // vector or a scalar word (never an immediate: those are bf16 bits).
        K::Add | K::Sub | K::Mul if i32_in => {
            let x1 = op.operand(1).ok_or("missing operand")?;
            if op.operands.len() != 2 || !dtype_is(g, Some(x1), DType::I32) {
                return Err("i32 arithmetic needs two i32 operands".into());
            }
            let (s0, s1) = (cx.shape(x)?, cx.shape(x1)?);
            if classify(&s0, &out_shape) != Some(Arg::Full) {
                return Err("i32 arithmetic with a broadcast first operand".into());
            }
            let c1 = classify(&s1, &out_shape).ok_or("broadcast pattern")?;
            let vop = match op.kind {
                K::Add => VecOp::Add,
                K::Sub => VecOp::Sub,
                _ => VecOp::Mul,
            };
            let w = b.wide_input(x);
            let s1 = match c1 {
                Arg::Scalar => Src1::Scalar(b.kernel_input(x1, 1)),
                c => b.src1(x1, c),
            };
            b.k.steps.push(Step {
                op: vop,
                int: true,
                dst: w,
                src0: w,
                src1: s1,
            });
            b.out(w, y, word);
        }
        K::Add | K::Sub | K::Mul | K::Max | K::Min if f32_in => {
            if op.operands.len() != 2 {
                return Err("variadic form".into());
            }
            let x1 = op.operand(1).ok_or("missing operand")?;
            let (s0, s1) = (cx.shape(x)?, cx.shape(x1)?);
            let (c0, c1) = (
                classify(&s0, &out_shape).ok_or("broadcast pattern")?,
                classify(&s1, &out_shape).ok_or("broadcast pattern")?,
            );
            let vop = match op.kind {
                K::Add => VecOp::Add,
                K::Sub => VecOp::Sub,
                K::Mul => VecOp::Mul,
                K::Max => VecOp::Max,
                _ => VecOp::Min,
            };
            let (first, second, swapped) = match (c0, c1) {
                (Arg::Full, _) => ((x, c0), (x1, c1), false),
                (_, Arg::Full) => ((x1, c1), (x, c0), true),
                _ => return Err("broadcast pattern".into()),
            };
            let w = b.wide_input(first.0);
            let s1 = b.src1(second.0, second.1);
            b.step(vop, w, w, s1);
            if swapped && vop == VecOp::Sub {
                b.step(VecOp::Mul, w, w, Src1::Imm(-1.0));
            }
            b.out(w, y, word);
        }
        K::Div if f32_in => {
            let x1 = op.operand(1).ok_or("missing operand")?;
            let (c0, c1) = (
                classify(&cx.shape(x)?, &out_shape).ok_or("broadcast pattern")?,
                classify(&cx.shape(x1)?, &out_shape).ok_or("broadcast pattern")?,
            );
            let q = match (c0, c1) {
                (Arg::Full, _) => {
                    let w = b.wide_input(x);
                    let s1 = b.src1(x1, c1);
                    b.step(VecOp::Div, w, w, s1);
                    w
                }
                (_, Arg::Full) => {
                    // The broadcast dividend must become a wide src0. x · recip(d)
                    // would round twice, so spread its bits instead: i32 d − d
                    // zeroes a slot and i32 0 + x copies x's bits (an f32 add
                    // would turn −0 into +0). An i32 immediate is not an f32, so
                    // a bf16-exact scalar constant is read from a word.
                    let d = b.wide_input(x1);
                    let n = b.wide_temp();
                    let bits = match b.src1(x, c0) {
                        Src1::Imm(_) => Src1::Scalar(b.kernel_input(x, 1)),
                        s => s,
                    };
                    let int = |op, dst, src0, src1| Step {
                        op,
                        int: true,
                        dst,
                        src0,
                        src1,
                    };
                    b.k.steps.push(int(VecOp::Sub, n, d, Src1::Tensor(d)));
                    b.k.steps.push(int(VecOp::Add, n, n, bits));
                    b.step(VecOp::Div, n, n, Src1::Tensor(d));
                    n
                }
                _ => return Err("broadcast pattern".into()),
            };
            b.out(q, y, word);
        }
        // x² (RMSNorm's Pow(x, 2)): the interpreter's f64 pow of an f32 base
        // is exact and rounds once to f32, as the vector unit's mul does.
        K::Pow if f32_in => {
            let e = op
                .operand(1)
                .and_then(|v| cx.konst(v))
                .ok_or("runtime exponent")?;
            if e.len() != 1 || e.to_f64_vec()[0] != 2.0 {
                return Err("exponent other than the constant 2".into());
            }
            let w = b.wide_input(x);
            b.step(VecOp::Mul, w, w, Src1::Tensor(w));
            b.out(w, y, word);
        }
        K::Neg | K::Relu | K::Abs if f32_in => {
            let w = b.wide_input(x);
            match op.kind {
                K::Neg => b.step(VecOp::Mul, w, w, Src1::Imm(-1.0)),
                K::Relu => b.step(VecOp::Max, w, w, Src1::Imm(0.0)),
                _ => {
                    let t = b.wide_temp();
                    b.step(VecOp::Mul, t, w, Src1::Imm(-1.0));
                    b.step(VecOp::Max, w, w, Src1::Tensor(t));
                }
            }
            b.out(w, y, word);
        }
        K::Gelu if f32_in => {
            let w = b.wide_input(x);
            let approx = OpAttrs(op).string("approximate")?;
            let v = if approx == "tanh" {
                VecOp::GeluTanh
            } else {
                VecOp::Gelu
            };
            b.istep(v, w, w);
            b.out(w, y, word);
        }
        k if f32_in && unary(k).is_some() => {
            let w = b.wide_input(x);
            b.istep(unary(k).unwrap_or(VecOp::Copy), w, w);
            b.out(w, y, word);
        }
        K::Round if f32_in => {
            // round(x) = x + (rint(y) - y) with y = x clamped to ±2^24: beyond
            // 2^24 every f32 is an integer, and f2i saturates only past 2^31.
            let w = b.wide_input(x);
            let (c, r) = (b.wide_temp(), b.wide_temp());
            b.step(VecOp::Max, c, w, Src1::Imm(-16777216.0));
            b.step(VecOp::Min, c, c, Src1::Imm(16777216.0));
            b.istep(VecOp::F2i, r, c);
            b.istep(VecOp::I2f, r, r);
            b.step(VecOp::Sub, r, r, Src1::Tensor(c));
            b.step(VecOp::Add, w, w, Src1::Tensor(r));
            b.out(w, y, word);
        }
        K::Clip if f32_in => {
            let w = b.wide_input(x);
            for (i, vop) in [(1, VecOp::Max), (2, VecOp::Min)] {
                if let Some(bound) = op.operand(i) {
                    if cx.konst(bound).is_none() {
                        return Err("runtime clip bounds".into());
                    }
                    let s1 = b.src1(bound, Arg::Scalar);
                    b.step(vop, w, w, s1);
                }
            }
            b.out(w, y, word);
        }
        K::Cast => {
            let to = OpAttrs(op).dtype_attr("to")?;
            let from = g.ty(x).dtype();
            let w = b.wide_input(x);
            match (from, to) {
                (f, t) if f == t && matches!(f, DType::F32 | DType::I32) => {
                    b.istep(VecOp::Copy, w, w);
                    b.out(w, y, word);
                }
                (DType::I32, DType::F32) => {
                    b.istep(VecOp::I2f, w, w);
                    b.out(w, y, word);
                }
                (DType::F32, DType::I8) if cx.integers_within(x, -128.0, 127.0) => {
                    b.istep(VecOp::F2i, w, w);
                    b.out(w, y, OutFmt::I8 { lo: -128, hi: 127 });
                }
                (DType::F32, DType::I32)
                    if cx.integers_within(x, i32::MIN as f64, i32::MAX as f64) =>
                {
                    b.istep(VecOp::F2i, w, w);
                    b.out(w, y, word);
                }
                _ => return Err(format!("cast {from} -> {to}")),
            }
        }
        K::Softmax if f32_in => {
            last_axis(op, out_shape.len())?;
            let w = b.wide_input(x);
            let n = b.narrow_temp();
            let ns = Slot::Narrow(n);
            b.istep(VecOp::ReduceMax, ns, w);
            b.step(VecOp::Sub, w, w, Src1::Row(n));
            b.istep(VecOp::Exp, w, w);
            b.istep(VecOp::ReduceSum, ns, w);
            b.istep(VecOp::Recip, ns, ns);
            b.step(VecOp::Mul, w, w, Src1::Row(n));
            b.out(w, y, word);
        }
        K::ReduceMax | K::ReduceSum | K::ReduceMean if f32_in => {
            let in_shape = cx.shape(x)?;
            let axes = op
                .operand(1)
                .and_then(|v| cx.konst(v))
                .map(|t| t.to_i64_vec())
                .ok_or("reduction axes are not a constant")?;
            let rank = in_shape.len() as i64;
            if axes.len() != 1 || (axes[0] + rank) % rank != rank - 1 {
                return Err("reduction over a non-last axis".into());
            }
            let (irows, ilen) = rows_len(&in_shape);
            b.k.rows = irows;
            b.k.len = ilen;
            let w = b.wide_input(x);
            let n = b.narrow_temp();
            let ns = Slot::Narrow(n);
            let red = if op.kind == K::ReduceMax {
                VecOp::ReduceMax
            } else {
                VecOp::ReduceSum
            };
            b.istep(red, ns, w);
            if op.kind == K::ReduceMean {
                let c = b.const_words((y, 1), &[1.0 / ilen as f32]);
                b.step(VecOp::Mul, ns, ns, Src1::Scalar(c));
            }
            b.out(ns, y, word);
        }
        K::LayerNormalization | K::RmsNormalization if f32_in => {
            last_axis(op, out_shape.len())?;
            if op.results.len() > 1 {
                return Err("statistics outputs".into());
            }
            let eps = OpAttrs(op).float("epsilon")? as f32;
            let w = b.wide_input(x);
            let inv_len = b.const_words((y, 1), &[1.0 / len as f32]);
            let epsc = b.const_words((y, 2), &[eps]);
            let (m, v) = (b.narrow_temp(), b.narrow_temp());
            let (ms, vs) = (Slot::Narrow(m), Slot::Narrow(v));
            if op.kind == K::LayerNormalization {
                b.istep(VecOp::ReduceSum, ms, w);
                b.step(VecOp::Mul, ms, ms, Src1::Scalar(inv_len));
                b.step(VecOp::Sub, w, w, Src1::Row(m));
            }
            let sq = b.wide_temp();
            b.step(VecOp::Mul, sq, w, Src1::Tensor(w));
            b.istep(VecOp::ReduceSum, vs, sq);
            b.step(VecOp::Mul, vs, vs, Src1::Scalar(inv_len));
            b.step(VecOp::Add, vs, vs, Src1::Scalar(epsc));
            b.istep(VecOp::Rsqrt, vs, vs);
            b.step(VecOp::Mul, w, w, Src1::Row(v));
            let scale = op.operand(1).ok_or("no scale")?;
            let sc = b.kernel_input(scale, len);
            if cx.shape(scale)?.iter().product::<u64>() != len {
                return Err("scale is not a row vector".into());
            }
            b.step(VecOp::Mul, w, w, Src1::ConstRow(sc));
            if let Some(bias) = op.operand(2) {
                if cx.shape(bias)?.iter().product::<u64>() != len {
                    return Err("bias is not a row vector".into());
                }
                let bc = b.kernel_input(bias, len);
                b.step(VecOp::Add, w, w, Src1::ConstRow(bc));
            }
            b.out(w, y, word);
        }
        _ => return Err("no accelerator lowering".into()),
    }
    let k = b.k;
    if k.rows == 0 || k.len == 0 {
        return Err("empty tensor".into());
    }
    Ok(Kernel::Row(k))
}

fn build_matmul<A: Addrs>(cx: &Ctx, op: &Op, a: &mut A) -> Result<Kernel, String> {
    let g = cx.g;
    let (x, w) = (op.operand(0).ok_or("no A")?, op.operand(1).ok_or("no B")?);
    if g.ty(x).dtype() != DType::I8 || g.ty(w).dtype() != DType::I8 {
        return Err("u8 operands (the array multiplies int8)".into());
    }
    let wt = cx.konst(w).ok_or("runtime weight")?;
    if wt.rank() != 2 {
        return Err("weight of rank other than 2".into());
    }
    let zp = match op.operand(2) {
        None => 0,
        Some(v) => {
            let t = cx.konst(v).ok_or("runtime activation zero point")?;
            if t.len() != 1 {
                return Err("per-row activation zero point".into());
            }
            t.get_i64(0) as i32
        }
    };
    if let Some(v) = op.operand(3) {
        let t = cx.konst(v).ok_or("runtime weight zero point")?;
        if t.to_i64_vec().iter().any(|&z| z != 0) {
            return Err("non-zero weight zero point".into());
        }
    }
    let (k, n) = (wt.shape[0] as u64, wt.shape[1] as u64);
    let m = cx.shape(x)?.iter().product::<u64>() / k.max(1);
    if m == 0 || k == 0 || n == 0 {
        return Err("empty matmul".into());
    }
    let wv = wt.to_i64_vec();
    // Wᵀ: one output channel per row, so a weight tile is one strided load.
    let wt_vals: Vec<i8> = (0..(n * k) as usize)
        .map(|i| {
            let (j, kk) = (i / k as usize, i % k as usize);
            wv[kk * n as usize + j] as i8
        })
        .collect();
    let mode = GemmMode::I8xI8;
    let packed = pack_weights(&wt_vals, n, k, mode)?;
    Ok(Kernel::Gemm(GemmSpec {
        name: node_name(op),
        m,
        k,
        n,
        mode,
        a: DramMat {
            addr: a.value(x),
            row_stride: k,
        },
        w: DramMat {
            addr: a.image((w, 0), &packed),
            row_stride: weight_row_bytes(k, mode),
        },
        bias: None,
        c: DramMat {
            addr: a.value(op.results[0]),
            row_stride: n,
        },
        a_zero_point: zp,
        out: GemmOutput::Word32,
    }))
}
