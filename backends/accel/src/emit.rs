//! Instruction emission with the dependency-token protocol every kernel shares.
//!
//! Work is emitted in **chunks**: a group of loads, the compute that uses them
//! and the stores of its results. Chunks alternate between two halves of the
//! scratchpad and of the accumulator (double buffering), so the loads of chunk
//! `j + 1` overlap the compute of chunk `j` and the stores of chunk `j - 1`.
//!
//! Tokens (VTA style): loads → compute → stores within a chunk; the load queue
//! may start chunk `j` once it holds a *credit*, and the credit for chunk `j`
//! is pushed by a compute-queue barrier that waited for the stores of chunk
//! `j - 2` (the previous user of the same half). Two credits are primed at the
//! start. Between kernels ([`Emitter::sync`]) the next load waits for *all*
//! stores, since it may read what they wrote.

use tessera_accel_isa::{Config, Finish, HwConfig, Insn, Load, Op, Store, Vector};

/// The `config` register that the compute queue owns; writing its current
/// value makes a one-cycle compute-queue instruction that carries tokens.
const GEMM_A_ZERO_POINT: u8 = 1;

pub struct Emitter<'c> {
    pub cfg: &'c HwConfig,
    pub insns: Vec<Insn>,
    /// Compute instructions that push a credit to the load queue, in order.
    credits: Vec<usize>,
    /// Chunks emitted so far (= credits the load queue has popped).
    chunks: usize,
    /// The chunk whose stores no barrier has waited for yet.
    unbarriered: bool,
    gemm_zero_point: i32,
}

/// How an accumulator or scratchpad region is split: a kernel-constant part
/// and two halves that alternate between chunks.
#[derive(Clone, Copy, Debug)]
pub struct Halves {
    pub base: u32,
    pub size: u32,
}

impl Halves {
    pub fn half(&self, chunk: usize) -> u32 {
        self.base + (chunk as u32 % 2) * self.size
    }
}

impl<'c> Emitter<'c> {
    pub fn new(cfg: &'c HwConfig) -> Emitter<'c> {
        let mut e = Emitter {
            cfg,
            insns: Vec::new(),
            credits: Vec::new(),
            chunks: 0,
            unbarriered: false,
            gemm_zero_point: 0,
        };
        for _ in 0..2 {
            let i = e.push(e.nop().with_deps(false, false, true, false));
            e.credits.push(i);
        }
        e
    }

    fn nop(&self) -> Insn {
        Insn::new(Op::Config(Config {
            reg: GEMM_A_ZERO_POINT,
            value: self.gemm_zero_point,
        }))
    }

    fn push(&mut self, i: Insn) -> usize {
        self.insns.push(i);
        self.insns.len() - 1
    }

    /// The index of the next chunk (selects the half it uses).
    pub fn next_chunk(&self) -> usize {
        self.chunks
    }

    /// Sets the GEMM activation zero point (takes effect in compute order).
    pub fn set_gemm_zero_point(&mut self, zp: i32) -> Vec<Insn> {
        self.gemm_zero_point = zp;
        vec![self.nop()]
    }

    /// Emits one chunk. Every chunk loads something (its first load takes the
    /// credit) and computes something (it hands the stores their token).
    pub fn chunk(&mut self, loads: Vec<Insn>, compute: Vec<Insn>, stores: Vec<Insn>) {
        debug_assert!(!loads.is_empty() && !compute.is_empty());
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

    /// Waits for the stores of the oldest unbarriered chunk and hands the
    /// load queue a credit.
    fn barrier(&mut self) {
        let b = self.nop().with_deps(false, true, true, false);
        let i = self.push(b);
        self.credits.push(i);
    }

    /// Kernel boundary: the next load must see every store emitted so far.
    pub fn sync(&mut self) {
        self.drop_spare_credits();
        if self.unbarriered {
            self.barrier();
            self.unbarriered = false;
        } else {
            let nop = self.nop().with_deps(false, false, true, false);
            let i = self.push(nop);
            self.credits.push(i);
        }
        let nop = self.nop().with_deps(false, false, true, false);
        let i = self.push(nop);
        self.credits.push(i);
    }

    /// Credits pushed ahead of the next chunk's turn no longer push.
    fn drop_spare_credits(&mut self) {
        for &c in &self.credits[self.chunks.min(self.credits.len())..] {
            self.insns[c].deps.push_prev = false;
        }
        self.credits.truncate(self.chunks);
    }

    /// Ends the stream: `finish` waits for the last store.
    pub fn finish(mut self) -> Vec<Insn> {
        self.drop_spare_credits();
        let wait_store = self.unbarriered;
        self.insns
            .push(Insn::new(Op::Finish(Finish {})).with_deps(false, wait_store, false, false));
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
