//! Shared by `examples/mape.rs`, `examples/gemm_cycles.rs` and
//! `tests/cost_mape.rs`: builds streams of transformer-shaped GEMMs and
//! row-wise vector kernels, simulates them, and pairs the simulated cycles with
//! the analytical model's prediction (`tessera_cost_model::accel`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use tessera_accel::gemm::{
    emit_gemm, finish, weight_row_bytes, Chain, DramMat, GemmMode, GemmOutput, GemmSpec, Requant,
};
use tessera_accel_isa::{
    f32_to_bf16, Buffer, Config, DType, HwConfig, Insn, Load, Op, Role, Store, Stream, VecOp,
    Vector,
};
use tessera_cost_model::accel::{AccelParams, Schedule, Step};
use tessera_sim::{Report, Simulator};

/// A row-wise vector kernel over `rows` rows of `len` f32 words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VecKernel {
    Softmax,
    LayerNorm,
    Gelu,
    Silu,
}

#[derive(Clone, Debug)]
pub enum OpShape {
    Gemm {
        name: String,
        m: u64,
        k: u64,
        n: u64,
        mode: GemmMode,
    },
    Vec {
        name: String,
        kernel: VecKernel,
        rows: u64,
        len: u64,
    },
}

impl OpShape {
    pub fn name(&self) -> &str {
        match self {
            OpShape::Gemm { name, .. } | OpShape::Vec { name, .. } => name,
        }
    }
    pub fn gemm(name: &str, m: u64, k: u64, n: u64) -> OpShape {
        OpShape::Gemm {
            name: name.into(),
            m,
            k,
            n,
            mode: GemmMode::I8xI8,
        }
    }
    pub fn vec(name: &str, kernel: VecKernel, rows: u64, len: u64) -> OpShape {
        OpShape::Vec {
            name: name.into(),
            kernel,
            rows,
            len,
        }
    }
}

/// One transformer layer as a sequence of ops (attention per head as
/// separate GEMMs; K heads shared by `heads / kv_heads` query heads).
pub fn transformer_layer(
    seq: u64,
    d: u64,
    heads: u64,
    kv_heads: u64,
    ffn: u64,
    gated: bool,
) -> Vec<OpShape> {
    let hd = d / heads;
    let mut ops = vec![OpShape::gemm("qkv", seq, d, d + 2 * kv_heads * hd)];
    ops.push(OpShape::gemm("scores(h0)", seq, hd, seq));
    ops.push(OpShape::vec(
        "softmax",
        VecKernel::Softmax,
        heads * seq,
        seq,
    ));
    ops.push(OpShape::gemm("pv(h0)", seq, seq, hd));
    ops.push(OpShape::gemm("out", seq, d, d));
    ops.push(OpShape::vec("norm1", VecKernel::LayerNorm, seq, d));
    if gated {
        ops.push(OpShape::gemm("gate+up", seq, d, 2 * ffn));
        ops.push(OpShape::vec("silu", VecKernel::Silu, seq, ffn));
    } else {
        ops.push(OpShape::gemm("ffn1", seq, d, ffn));
        ops.push(OpShape::vec("gelu", VecKernel::Gelu, seq, ffn));
    }
    ops.push(OpShape::gemm("ffn2", seq, ffn, d));
    ops.push(OpShape::vec("norm2", VecKernel::LayerNorm, seq, d));
    ops
}

pub fn bert_base() -> Vec<OpShape> {
    transformer_layer(128, 768, 12, 12, 3072, false)
}
pub fn gpt2_medium() -> Vec<OpShape> {
    transformer_layer(128, 1024, 16, 16, 4096, false)
}
pub fn llama_gqa() -> Vec<OpShape> {
    transformer_layer(128, 2048, 32, 8, 5632, true)
}

/// Appends op instructions and DRAM buffers to a stream under construction.
pub struct Builder {
    pub cfg: HwConfig,
    pub insns: Vec<Insn>,
    pub chain: Chain,
    pub dram_top: u64,
    pub predicted: u64,
}

impl Builder {
    pub fn new(cfg: &HwConfig) -> Builder {
        Builder {
            cfg: cfg.clone(),
            insns: vec![],
            chain: Chain::default(),
            dram_top: 0,
            predicted: 0,
        }
    }

    fn alloc(&mut self, bytes: u64) -> u64 {
        let at = self.dram_top;
        self.dram_top = (at + bytes).next_multiple_of(64);
        at
    }

    /// Emits one op; returns the model's cycles for it.
    pub fn push(&mut self, op: &OpShape) -> Result<u64, String> {
        let cycles = match op {
            OpShape::Gemm {
                name,
                m,
                k,
                n,
                mode,
            } => {
                let (m, k, n) = (*m, *k, *n);
                let a = self.alloc(m * k * mode.act_bytes());
                let w = self.alloc(n * weight_row_bytes(k, *mode));
                let bias = self.alloc(4 * n);
                let c = self.alloc(m * n);
                let spec = GemmSpec {
                    name: name.clone(),
                    m,
                    k,
                    n,
                    mode: *mode,
                    a: DramMat {
                        addr: a,
                        row_stride: k,
                    },
                    w: DramMat {
                        addr: w,
                        row_stride: weight_row_bytes(k, *mode),
                    },
                    bias: Some(bias),
                    c: DramMat {
                        addr: c,
                        row_stride: n,
                    },
                    a_zero_point: 0,
                    out: if *mode == GemmMode::Bf16xI2 {
                        GemmOutput::Bf16
                    } else {
                        GemmOutput::Int8(Requant::from_scale(1.0 / 256.0, 0, -128, 127)?)
                    },
                };
                emit_gemm(&mut self.insns, &mut self.chain, &spec, &self.cfg)?
                    .estimate
                    .cycles
            }
            OpShape::Vec {
                kernel, rows, len, ..
            } => {
                let src = self.alloc(rows * len * 4);
                let dst = self.alloc(rows * len * 4);
                emit_vec_kernel(self, *kernel, *rows, *len, src, dst)?
            }
        };
        self.predicted += cycles;
        Ok(cycles)
    }

    /// Closes the stream, runs it on zeroed DRAM and returns the report.
    pub fn simulate(mut self) -> Result<Report, String> {
        finish(&mut self.insns, &mut self.chain);
        let size = self.dram_top.max(64);
        let stream = Stream {
            config_hash: self.cfg.hash(),
            dram_size: size,
            buffers: vec![Buffer {
                name: "dram".into(),
                role: Role::Output,
                dtype: DType::U8,
                shape: vec![size],
                addr: 0,
            }],
            insns: self.insns,
            ..Default::default()
        };
        let (_, report) = Simulator::new(self.cfg.clone())
            .run(&stream, &BTreeMap::new())
            .map_err(|e| e.to_string())?;
        Ok(report)
    }
}

/// The vector instructions of one chunk of `rows` rows: input at `x`, output
/// at `y`, a scratch block at `t` and one word per row at `s`.
fn kernel_insns(k: VecKernel, rows: u64, len: u64, x: u64, y: u64, t: u64, s: u64) -> Vec<Vector> {
    let v = |op: VecOp,
             dst: u64,
             src0: u64,
             src1_mode: u8,
             src1: u64,
             rows: u64,
             len: u64,
             stride: u64,
             dst_stride: u64| Vector {
        op: op.index(),
        dtype: 0,
        src1_mode,
        dst: dst as u32,
        src0: src0 as u32,
        src1: src1 as u32,
        len: len as u32,
        rows: rows as u32,
        stride: stride as u32,
        dst_stride: dst_stride as u32,
    };
    let inv_len = f32_to_bf16(1.0 / len as f32) as u64;
    match k {
        VecKernel::Softmax => vec![
            v(VecOp::ReduceMax, s, x, 0, 0, rows, len, len, 1),
            v(VecOp::Sub, y, x, 1, s, rows, len, len, len),
            v(VecOp::Exp, y, y, 0, 0, rows, len, len, len),
            v(VecOp::ReduceSum, s, y, 0, 0, rows, len, len, 1),
            v(VecOp::Recip, s, s, 0, 0, 1, rows, 0, 0),
            v(VecOp::Mul, y, y, 1, s, rows, len, len, len),
        ],
        VecKernel::LayerNorm => vec![
            v(VecOp::ReduceSum, s, x, 0, 0, rows, len, len, 1),
            v(VecOp::Mul, s, s, 3, inv_len, 1, rows, 0, 0),
            v(VecOp::Sub, y, x, 1, s, rows, len, len, len),
            v(VecOp::Mul, t, y, 0, y, rows, len, len, len),
            v(VecOp::ReduceSum, s, t, 0, 0, rows, len, len, 1),
            v(VecOp::Mul, s, s, 3, inv_len, 1, rows, 0, 0),
            v(VecOp::Rsqrt, s, s, 0, 0, 1, rows, 0, 0),
            v(VecOp::Mul, y, y, 1, s, rows, len, len, len),
        ],
        VecKernel::Gelu => vec![v(VecOp::Gelu, y, x, 0, 0, rows, len, len, len)],
        VecKernel::Silu => vec![v(VecOp::Silu, y, x, 0, 0, rows, len, len, len)],
    }
}

/// A double-buffered row-chunked vector kernel (same token protocol as the
/// GEMM emitter: compute→load frees an input buffer, store→compute an output
/// buffer). Returns the model's cycles.
pub fn emit_vec_kernel(
    b: &mut Builder,
    k: VecKernel,
    rows: u64,
    len: u64,
    src: u64,
    dst: u64,
) -> Result<u64, String> {
    let p = AccelParams::from_config(&b.cfg);
    let elementwise = matches!(k, VecKernel::Gelu | VecKernel::Silu);
    // Elementwise kernels do not care where rows end: cut long rows.
    let (rows, len) = match (1..=len).find(|q| len.is_multiple_of(*q) && len / q <= 1024) {
        Some(q) if elementwise => (rows * q, len / q),
        _ => (rows, len),
    };
    // Per buffer: input, output, (scratch,) one word per row.
    let per_row = if elementwise {
        2 * len + 1
    } else {
        3 * len + 1
    };
    // Store blocks of at most 511 words per row: split a row into equal parts.
    let parts = (1..=len)
        .find(|q| len.is_multiple_of(*q) && len / q <= 511)
        .unwrap_or(len);
    let chunk = (b.cfg.acc_words() / (2 * per_row))
        .min(rows)
        .min(511 / parts);
    if chunk == 0 {
        return Err(format!(
            "vector rows of {len} words do not fit the accumulator"
        ));
    }
    let slot = chunk * per_row;
    let chunks = rows.div_ceil(chunk);
    let pop = std::mem::take(&mut b.chain.store_token_pending);
    b.insns.push(
        Insn::new(Op::Config(Config { reg: 1, value: 0 })).with_deps(false, pop, true, false),
    );
    let mut steps = vec![];
    let load = |c: u64, r: u64| {
        let base = (c % 2) * slot;
        Insn::new(Op::Load(Load {
            mem: 1,
            elem_bytes: 2,
            dram: (src + c * chunk * len * 4) as u32,
            sram: base as u32,
            y_size: r as u32,
            x_size: len as u32,
            x_stride: len as u32,
            ..Default::default()
        }))
        .with_deps(false, c != 1, false, true)
    };
    let rows_of = |c: u64| chunk.min(rows - c * chunk);
    b.insns.push(load(0, rows_of(0)));
    for c in 0..chunks {
        let r = rows_of(c);
        let base = (c % 2) * slot;
        let (x, y, t, s) = (
            base,
            base + chunk * len,
            base + 2 * chunk * len,
            base + 3 * chunk * len,
        );
        let vs = kernel_insns(k, r, len, x, y, t, s);
        let compute: u64 = vs
            .iter()
            .map(|v| {
                p.vec_cycles(
                    VecOp::from_index(v.op).unwrap_or(VecOp::Copy),
                    v.rows as u64,
                    v.len as u64,
                )
            })
            .sum();
        let n = vs.len();
        for (i, v) in vs.into_iter().enumerate() {
            b.insns.push(Insn::new(Op::Vector(v)).with_deps(
                i == 0,
                i == 0 && c >= 2,
                i + 1 == n && c + 2 < chunks,
                i + 1 == n,
            ));
        }
        if c + 1 < chunks {
            b.insns.push(load(c + 1, rows_of(c + 1)));
        }
        let bytes = r * len * 4;
        b.insns.push(
            Insn::new(Op::Store(Store {
                fmt: 1,
                dram: (dst + c * chunk * len * 4) as u32,
                sram: y as u32,
                y_size: (r * parts) as u32,
                x_size: (len / parts) as u32,
                x_stride: (len / parts) as u32,
                ..Default::default()
            }))
            .with_deps(true, false, c + 2 < chunks || c + 1 == chunks, false),
        );
        steps.push(Step {
            load_cycles: p.dma_cycles(bytes),
            load_after: c.checked_sub(2).map(|x| x as usize),
            compute_cycles: compute,
            starts_tile: true,
            store_cycles: p.dma_cycles(bytes),
        });
    }
    b.chain.store_token_pending = true;
    Ok(Schedule {
        steps,
        out_buffers: 2,
        prologue_cycles: 1,
    }
    .estimate()
    .cycles)
}

/// Simulates one op on its own: (predicted, simulated report).
pub fn run_op(cfg: &HwConfig, op: &OpShape) -> Result<(u64, Report), String> {
    let mut b = Builder::new(cfg);
    let pred = b.push(op)?;
    Ok((pred, b.simulate()?))
}

/// Simulates a sequence of ops as one stream: (predicted sum, report).
pub fn run_model(cfg: &HwConfig, ops: &[OpShape]) -> Result<(u64, Report), String> {
    let mut b = Builder::new(cfg);
    for op in ops {
        b.push(op)?;
    }
    let pred = b.predicted;
    Ok((pred, b.simulate()?))
}
