//! Instruction emission with the dependency-token protocol every kernel of a
//! segment shares.
//!
//! **Between kernels** the token protocol is the one of [`crate::gemm`]: a
//! [`Chain`] carries one store→compute token, pushed by the last store of a
//! kernel. The next kernel opens with a compute-queue barrier that pops it and
//! releases that kernel's first load, so the loads see everything earlier
//! kernels stored, and (compute being in order) never overwrite a buffer an
//! earlier compute instruction still reads. GEMMs are emitted by
//! [`crate::gemm::emit_gemm`], which follows this convention itself.
//!
//! **Row kernels** ([`Emitter::chunk`]) work in chunks: a group of loads, the
//! compute that uses them and the stores of its results. Chunks alternate
//! between two halves of the accumulator (double buffering), so the loads of
//! chunk `j + 1` overlap the compute of chunk `j` and the stores of chunk
//! `j - 1`. Tokens (VTA style): loads → compute → stores within a chunk; the
//! load queue may start chunk `j` once it holds a *credit*, and the credit for
//! chunk `j` is pushed by a compute-queue barrier that waited for the stores of
//! chunk `j - 2` (the previous user of the same half). The opening barrier and
//! a no-op after it are the credits of chunks 0 and 1. At the kernel's end
//! ([`Emitter::sync`]) credits no chunk took stop pushing, and the last chunk's
//! store token, which no barrier popped, becomes the chain's token.
//!
//! Every pop refers to an earlier instruction and each FIFO holds at most two
//! tokens per kernel, so streams cannot deadlock.

use crate::gemm::{self, Chain, GemmOutput, GemmPlan, GemmSpec, Tiling};
use tessera_accel_isa::{Config, HwConfig, Insn, Load, Op, Store, Vector};

/// The `config` registers: writing a compute-queue register's current value
/// makes a one-cycle compute-queue instruction that carries tokens.
const STORE_ZERO_POINT: u8 = 0;
const GEMM_A_ZERO_POINT: u8 = 1;

pub struct Emitter<'c> {
    pub cfg: &'c HwConfig,
    pub insns: Vec<Insn>,
    /// The token handshake with the previous kernel.
    chain: Chain,
    /// Compute instructions of the open row kernel that push a credit to the
    /// load queue, in order; empty when no row kernel is open.
    credits: Vec<usize>,
    /// Chunks of the open row kernel (= credits the load queue has popped).
    chunks: usize,
    /// The chunk whose stores no barrier has waited for yet.
    unbarriered: bool,
    /// The `gemm_a_zero_point` register's value at the end of the stream so
    /// far (the no-ops rewrite it).
    gemm_zero_point: i32,
}

impl<'c> Emitter<'c> {
    pub fn new(cfg: &'c HwConfig) -> Emitter<'c> {
        Emitter {
            cfg,
            insns: Vec::new(),
            chain: Chain::default(),
            credits: Vec::new(),
            chunks: 0,
            unbarriered: false,
            gemm_zero_point: 0,
        }
    }

    fn nop(&self) -> Insn {
        Insn::new(Op::Config(Config {
            reg: GEMM_A_ZERO_POINT,
            value: self.gemm_zero_point,
        }))
    }

    /// A one-cycle compute-queue instruction for chunks that compute nothing
    /// (DMA-only kernels) but must still hand their stores a token.
    pub fn compute_nop(&self) -> Insn {
        self.nop()
    }

    fn push(&mut self, i: Insn) -> usize {
        self.insns.push(i);
        self.insns.len() - 1
    }

    /// The index of the next chunk of the open row kernel (selects the half
    /// it uses).
    pub fn next_chunk(&self) -> usize {
        self.chunks
    }

    /// Emits a quantized GEMM kernel with a tiling from [`gemm::plan_gemm`].
    pub fn gemm(&mut self, spec: &GemmSpec, tiling: Tiling) -> Result<GemmPlan, String> {
        debug_assert!(self.credits.is_empty(), "a row kernel is still open");
        let plan = gemm::emit_gemm_tiled(&mut self.insns, &mut self.chain, spec, self.cfg, tiling)?;
        self.gemm_zero_point = spec.a_zero_point;
        if let GemmOutput::Int8(r) = spec.out {
            if r.zero_point != 0 {
                // Row kernels' i8 stores clamp integers with zero point 0; the
                // store queue is in order, so this lands after the GEMM's stores.
                self.push(Insn::new(Op::Config(Config {
                    reg: STORE_ZERO_POINT,
                    value: 0,
                })));
            }
        }
        Ok(plan)
    }

    /// Emits one chunk of a row kernel (the first opens the kernel). Every
    /// chunk loads something (its first load takes the credit) and computes
    /// something (it hands the stores their token).
    pub fn chunk(&mut self, loads: Vec<Insn>, compute: Vec<Insn>, stores: Vec<Insn>) {
        debug_assert!(!loads.is_empty() && !compute.is_empty());
        if self.credits.is_empty() {
            self.open();
        }
        let n = loads.len();
        for (i, mut l) in loads.into_iter().enumerate() {
            l.deps.pop_next = i == 0;
            l.deps.push_next = i + 1 == n;
            self.push(l);
        }
        let m = compute.len();
        let s = stores.len();
        for (i, mut c) in compute.into_iter().enumerate() {
            c.deps.pop_prev = i == 0 && n > 0;
            c.deps.push_next = i + 1 == m && s > 0;
            self.push(c);
        }
        for (i, mut st) in stores.into_iter().enumerate() {
            st.deps.pop_prev = i == 0;
            st.deps.push_prev = i + 1 == s;
            self.push(st);
        }
        if self.unbarriered {
            self.barrier();
        }
        self.unbarriered = s > 0;
        self.chunks += 1;
    }

    /// Opens a row kernel: the barrier that takes the chain's token is the
    /// first chunk's credit, a no-op after it the second's.
    fn open(&mut self) {
        let pop = std::mem::take(&mut self.chain.store_token_pending);
        let b = self.push(self.nop().with_deps(false, pop, true, false));
        let n = self.push(self.nop().with_deps(false, false, true, false));
        self.credits = vec![b, n];
        self.chunks = 0;
        self.unbarriered = false;
    }

    /// Waits for the stores of the oldest unbarriered chunk and hands the
    /// load queue a credit.
    fn barrier(&mut self) {
        let b = self.nop().with_deps(false, true, true, false);
        let i = self.push(b);
        self.credits.push(i);
    }

    /// Closes the open row kernel: credits no chunk took stop pushing, and
    /// the last chunk's store token (if it stored) goes to the next kernel.
    pub fn sync(&mut self) {
        if self.credits.is_empty() {
            return;
        }
        for &c in &self.credits[self.chunks.min(self.credits.len())..] {
            self.insns[c].deps.push_prev = false;
        }
        self.credits.clear();
        self.chunks = 0;
        self.chain.store_token_pending = std::mem::take(&mut self.unbarriered);
    }

    /// Ends the stream: `finish` waits for the last store.
    pub fn finish(mut self) -> Vec<Insn> {
        self.sync();
        gemm::finish(&mut self.insns, &mut self.chain);
        self.insns
    }
}

// ---------------------------------------------------------------------------
// Instruction constructors

pub const MEM_SP: u8 = 0;
pub const MEM_ACC: u8 = 1;
/// `elem_bytes` codes.
pub const B1: u8 = 0;
pub const B4: u8 = 2;
/// `store` formats.
pub const FMT_I8: u8 = 0;
pub const FMT_I32: u8 = 1;

pub const LOAD_MAX_X: u64 = 4095;
pub const LOAD_MAX_Y: u64 = 1023;
pub const STORE_MAX_X: u64 = 511;
pub const STORE_MAX_Y: u64 = 511;

pub fn load(mem: u8, elem_bytes: u8, dram: u64, sram: u32, y: u64, x: u64, stride: u64) -> Insn {
    Insn::new(Op::Load(Load {
        mem,
        elem_bytes,
        dram: dram as u32,
        sram,
        y_size: y as u32,
        x_size: x as u32,
        x_stride: stride as u32,
        ..Default::default()
    }))
}

/// A store; `fmt=i8` stores clamp to `[lo, hi]` with an identity scale (the
/// words already hold integers).
pub fn store(fmt: u8, dram: u64, sram: u32, y: u64, x: u64, stride: u64, clamp: (i8, i8)) -> Insn {
    let i8_fields = fmt == FMT_I8;
    Insn::new(Op::Store(Store {
        fmt,
        dram: dram as u32,
        sram,
        y_size: y as u32,
        x_size: x as u32,
        x_stride: stride as u32,
        mult: if i8_fields { 1 } else { 0 },
        shift: 0,
        clamp_lo: if i8_fields { clamp.0 } else { 0 },
        clamp_hi: if i8_fields { clamp.1 } else { 0 },
    }))
}

/// Splits a flat run of `n` elements into at most two dense blocks of rows no
/// wider than `max_x` (and no more than `max_y` rows each): (offset, y, x).
pub fn flat_blocks(n: u64, max_x: u64, max_y: u64) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < n {
        let left = n - off;
        if left <= max_x {
            out.push((off, 1, left));
            break;
        }
        let y = (left / max_x).min(max_y);
        out.push((off, y, max_x));
        off += y * max_x;
    }
    out
}

/// Loads `words` contiguous 4-byte words from DRAM into the accumulator.
pub fn load_acc_flat(dram: u64, sram: u32, words: u64) -> Vec<Insn> {
    flat_blocks(words, LOAD_MAX_X, LOAD_MAX_Y)
        .into_iter()
        .map(|(off, y, x)| load(MEM_ACC, B4, dram + off * 4, sram + off as u32, y, x, x))
        .collect()
}

/// Stores `words` contiguous accumulator words to DRAM (`fmt` i32 or i8).
pub fn store_flat(fmt: u8, dram: u64, sram: u32, words: u64, clamp: (i8, i8)) -> Vec<Insn> {
    let bytes = if fmt == FMT_I8 { 1 } else { 4 };
    flat_blocks(words, STORE_MAX_X, STORE_MAX_Y)
        .into_iter()
        .map(|(off, y, x)| store(fmt, dram + off * bytes, sram + off as u32, y, x, x, clamp))
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub fn vec_insn(
    op: tessera_accel_isa::VecOp,
    dtype: u8,
    src1_mode: u8,
    dst: u32,
    src0: u32,
    src1: u32,
    len: u64,
    rows: u64,
    stride: u64,
    dst_stride: u64,
) -> Insn {
    Insn::new(Op::Vector(Vector {
        op: op.index(),
        dtype,
        src1_mode,
        dst,
        src0,
        src1,
        len: len as u32,
        rows: rows as u32,
        stride: stride as u32,
        dst_stride: dst_stride as u32,
    }))
}

#[cfg(test)]
mod tests {
    use crate::program::Program;
    use crate::specialize::Bindings;
    use std::sync::Arc;
    use tessera_accel_isa::HwConfig;
    use tessera_ir::{Attrs, Builder, DType, Graph, OpKind, Tensor, TensorType, ValueId};

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    /// `relu(x · W1) · W2 + x · W3`, quantized: row kernels (quantize,
    /// dequantize, relu, add) and three GEMMs alternate in one segment, each
    /// reading what the previous kernel stored, so a kernel boundary without
    /// the chain token reads stale DRAM. The reference interpreter runs the
    /// same quantized graph.
    #[test]
    fn row_kernels_and_gemms_share_one_token_chain() {
        let (m, k, h, n) = (40usize, 72usize, 56usize, 24usize);
        let mut g = Graph::new("chain");
        let x = g.add_input("x", TensorType::fixed(&[m as i64, k as i64], DType::F32));
        let mut b = Builder::new(&mut g);
        let op = |b: &mut Builder, kind: OpKind, xs: &[ValueId]| -> ValueId {
            b.op(
                kind,
                xs.iter().map(|&v| Some(v)).collect(),
                Attrs::new(),
                1,
                None,
            )
            .unwrap()[0]
        };
        let weight = |b: &mut Builder, rows: usize, cols: usize, seed: u64| {
            let t = Tensor::f32(vec![rows, cols], values(rows * cols, seed));
            b.constant(&format!("w{seed}"), Arc::new(t), None)
        };
        let (w1, w2, w3) = (
            weight(&mut b, k, h, 1),
            weight(&mut b, h, n, 2),
            weight(&mut b, k, n, 3),
        );
        let y1 = op(&mut b, OpKind::MatMul, &[x, w1]);
        let r = op(&mut b, OpKind::Relu, &[y1]);
        let y2 = op(&mut b, OpKind::MatMul, &[r, w2]);
        let y3 = op(&mut b, OpKind::MatMul, &[x, w3]);
        let y = op(&mut b, OpKind::Add, &[y2, y3]);
        g.add_output("y", y);
        let xs = Tensor::f32(vec![m, k], values(m * k, 9));
        for cfg in [HwConfig::edge(), HwConfig::server()] {
            let p = Program::compile(&g, &cfg, &Bindings::new()).unwrap();
            assert_eq!(
                (p.segments().count(), p.host_ops().count()),
                (1, 0),
                "{}",
                p.asm()
            );
            let notes = &p.segments().next().unwrap().notes;
            let gemms = notes.iter().filter(|n| n.contains(": gemm ")).count();
            assert_eq!(gemms, 3, "{notes:?}");
            let (_, reports) = p.run(std::slice::from_ref(&xs)).unwrap();
            assert_eq!(reports[0].unconsumed_tokens, 0, "every token is popped");
            let checks = p.differential(std::slice::from_ref(&xs)).unwrap();
            let ints = checks.iter().filter(|c| c.dtype != DType::F32).count();
            assert!(
                ints >= 6,
                "quantized activations and accumulators: {checks:?}"
            );
            for c in &checks {
                assert_eq!(c.mismatches, 0, "{}: {c:?}", cfg.name);
            }
        }
    }
}
