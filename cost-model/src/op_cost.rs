//! What one op costs on a target: a hierarchical roofline.
//!
//! Time = max(flops / peak for the element type, max over memory levels of
//! the bytes the level supplies / its bandwidth) + launch and tile-loop
//! overhead. The bound that wins names the op's [`Bound`].
//!
//! Streaming ops move their operands and results once through every level.
//! Contractions (`matmul`, `gemm`, `linear`) are priced by their blocking:
//! for an output-stationary tile `(mt, nt, kt)` the traffic into a level is
//! `A · ⌈N/nt⌉ + B · ⌈M/mt⌉ + C` (A reread once per column of tiles, B once
//! per row). Each level keeps the best blocking whose working set fits
//! [`TILE_FILL`] of it: the whole problem, the op's `sched.tile`, or else
//! only the register microtile ([`microtile`]). The level above the
//! registers is fed by the microtile alone. An op without `sched.tile` is
//! priced with no cache blocking, which is what the hint buys.
//!
//! Fused ops keep their intermediates on chip: a `linear` epilogue adds
//! flops, its bias and residual reads, and nothing else; `attention` moves
//! Q, K, V, the mask and the result, never the scores.

use crate::{TargetDesc, TargetKind};
use tessera_ir::ops::Trait;
use tessera_ir::{Attr, Attrs, DType, Dim, OpKind, TensorType};

/// The scheduling attribute the `tiling` rules add: `[mt, nt, kt]`.
pub const TILE_ATTR: &str = "sched.tile";

/// Size every symbolic dim takes when pricing (costs need numbers; the
/// relative order of alternatives rarely depends on the exact size).
pub const DEFAULT_SYMBOL_SIZE: i64 = 32;

/// What a view op costs: not a kernel, but not nothing either, so a
/// redundant one is always worth removing.
const VIEW_SECONDS: f64 = 1e-12;

/// The share of a level a tile may occupy: caches keep room for everything
/// else, scratchpads hold two tiles (double buffering).
pub const TILE_FILL: f64 = 0.5;

/// What limits an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Compute,
    Memory,
    Overhead,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Compute => "compute",
            Bound::Memory => "memory",
            Bound::Overhead => "overhead",
        }
    }
}

/// The predicted cost of one op.
#[derive(Clone, Debug, PartialEq)]
pub struct OpEstimate {
    pub seconds: f64,
    pub flops: f64,
    /// Bytes each memory level supplies, in [`TargetDesc::memory`] order.
    pub level_bytes: Vec<f64>,
    pub bound: Bound,
    pub tile: Option<[u64; 3]>,
}

impl OpEstimate {
    /// Bytes from the farthest level (DRAM/HBM).
    pub fn dram_bytes(&self) -> f64 {
        self.level_bytes.last().copied().unwrap_or(0.0)
    }
}

/// A contraction's sizes: `batch` independent `[m, k] x [k, n]` products.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub batch: f64,
    pub m: f64,
    pub n: f64,
    pub k: f64,
    /// Bytes per element of the operands and of the result.
    pub elem_bytes: f64,
    pub out_bytes: f64,
}

fn dim_size(d: &Dim, sym: i64) -> f64 {
    d.eval(&|_| Some(sym)).unwrap_or(sym).max(0) as f64
}

fn numel(t: &TensorType, sym: i64) -> f64 {
    t.shape.iter().map(|d| dim_size(d, sym)).product()
}

fn bytes(t: &TensorType, sym: i64) -> f64 {
    numel(t, sym) * t.dtype().bits() as f64 / 8.0
}

/// The size of dim `i` from the end (1 = last); 1 past the rank.
fn dim_from_end(t: &TensorType, i: usize, sym: i64) -> f64 {
    t.rank()
        .checked_sub(i)
        .and_then(|k| t.shape.get(k))
        .map(|d| dim_size(d, sym))
        .unwrap_or(1.0)
}

fn int_attr(attrs: &Attrs, name: &str) -> i64 {
    match attrs.get(name) {
        Some(Attr::Int(i)) => *i,
        _ => 0,
    }
}

/// Ops that only relabel a tensor's shape: no data moves.
pub fn is_view(kind: OpKind) -> bool {
    matches!(
        kind.mnemonic(),
        "reshape" | "squeeze" | "unsqueeze" | "flatten" | "identity"
    )
}

/// The `sched.tile` of an op, if it has a well-formed one.
pub fn tile_attr(attrs: &Attrs) -> Option<[u64; 3]> {
    match attrs.get(TILE_ATTR) {
        Some(Attr::Ints(v)) if v.len() == 3 && v.iter().all(|&x| x > 0) => {
            Some([v[0] as u64, v[1] as u64, v[2] as u64])
        }
        _ => None,
    }
}

/// The sizes of a `matmul`, `linear` or `gemm` (numpy matmul rules; a
/// rank-1 operand is a single row or column).
pub fn gemm_shape(
    kind: OpKind,
    attrs: &Attrs,
    a: &TensorType,
    b: &TensorType,
    out: &TensorType,
    sym: i64,
) -> Option<Gemm> {
    let (m, k, n) = match kind.mnemonic() {
        "matmul" | "linear" => {
            let m = if a.rank() >= 2 {
                dim_from_end(a, 2, sym)
            } else {
                1.0
            };
            let n = if b.rank() >= 2 {
                dim_from_end(b, 1, sym)
            } else {
                1.0
            };
            (m, dim_from_end(a, 1, sym), n)
        }
        "gemm" => {
            let (ta, tb) = (
                int_attr(attrs, "transA") != 0,
                int_attr(attrs, "transB") != 0,
            );
            let m = dim_from_end(a, if ta { 1 } else { 2 }, sym);
            let k = dim_from_end(a, if ta { 2 } else { 1 }, sym);
            let n = dim_from_end(b, if tb { 2 } else { 1 }, sym);
            (m, k, n)
        }
        _ => return None,
    };
    let batch = (numel(out, sym) / (m * n).max(1.0)).max(1.0);
    Some(Gemm {
        batch,
        m,
        n,
        k,
        elem_bytes: a.dtype().bits() as f64 / 8.0,
        out_bytes: out.dtype().bits() as f64 / 8.0,
    })
}

/// Flops per element of a `linear` epilogue activation (a polynomial or
/// rational approximation of the transcendental, as vector code does it).
fn activation_flops(name: &str) -> f64 {
    match name {
        "relu" => 1.0,
        "sigmoid" | "tanh" => 4.0,
        "silu" => 5.0,
        "gelu" | "gelu_tanh" => 8.0,
        _ => 0.0,
    }
}

/// `(flops, bytes)` of one op, every operand and result moved once.
/// `results` may hold only the results the caller knows.
pub fn work(
    kind: OpKind,
    attrs: &Attrs,
    operands: &[Option<&TensorType>],
    results: &[&TensorType],
    sym: i64,
) -> (f64, f64) {
    let moved: f64 = operands
        .iter()
        .flatten()
        .map(|t| bytes(t, sym))
        .sum::<f64>()
        + results.iter().map(|t| bytes(t, sym)).sum::<f64>();
    let out = results.first().map(|t| numel(t, sym)).unwrap_or(0.0);
    let a = operands.first().copied().flatten();
    let b = operands.get(1).copied().flatten();
    let m = kind.mnemonic();
    let flops = match m {
        // 2*M*N*K: every output element is a K-long dot product.
        "matmul"
        | "matmul_integer"
        | "qlinear_matmul"
        | "ms.matmul_integer_to_float"
        | "ms.dynamic_quantize_matmul" => {
            2.0 * out * a.map(|t| dim_from_end(t, 1, sym)).unwrap_or(1.0)
        }
        // The product, then per output element the bias add, the
        // activation and the residual add, all on values still on chip.
        "linear" => {
            let k = a.map(|t| dim_from_end(t, 1, sym)).unwrap_or(1.0);
            let act = match attrs.get("activation") {
                Some(Attr::Str(s)) => activation_flops(s),
                _ => 0.0,
            };
            let present = |i: usize| operands.get(i).copied().flatten().is_some() as u8 as f64;
            out * (2.0 * k + present(2) + act + present(3))
        }
        "gemm" => {
            let trans_a = int_attr(attrs, "transA") != 0;
            2.0 * out
                * a.map(|t| dim_from_end(t, if trans_a { 2 } else { 1 }, sym))
                    .unwrap_or(1.0)
        }
        // B is packed [N, blocks, bytes]; K comes from the attribute.
        "ms.matmul_nbits" => {
            let k = match attrs.get("K") {
                Some(Attr::Int(k)) => *k as f64,
                _ => a.map(|t| dim_from_end(t, 1, sym)).unwrap_or(1.0),
            };
            2.0 * out * k
        }
        // Each output element reduces Cin/group x kernel-window products,
        // which is the weight's size per output channel.
        "conv" | "conv_integer" | "qlinear_conv" | "conv_transpose" | "deform_conv" => {
            let w = if m == "qlinear_conv" {
                operands.get(3).copied().flatten()
            } else {
                b
            };
            let per_out = w
                .map(|t| numel(t, sym) / dim_from_end(t, t.rank(), sym).max(1.0))
                .unwrap_or(1.0);
            2.0 * out * per_out
        }
        // Q·Kᵀ and P·V (2 * 2 * query elements * key length) and a softmax
        // over the scores (max, subtract, exp, sum, scale: ~5 per score).
        "attention" | "ms.attention" | "ms.group_query_attention" => {
            let q = a.map(|t| numel(t, sym)).unwrap_or(out);
            let d = a.map(|t| dim_from_end(t, 1, sym)).unwrap_or(1.0).max(1.0);
            let sk = b.map(|t| dim_from_end(t, 2, sym)).unwrap_or(1.0);
            4.0 * q * sk + 5.0 * (q / d) * sk
        }
        _ if m.starts_with("reduce_")
            || m.contains("normalization")
            || m.contains("softmax")
            || m.contains("pool") =>
        {
            // A few passes over the input.
            4.0 * a.map(|t| numel(t, sym)).unwrap_or(out)
        }
        _ if kind.def().has_trait(Trait::Elementwise) => out,
        _ => 0.0,
    };
    (flops, moved)
}

/// Peak operations per second for an element type.
pub fn peak_ops(target: &TargetDesc, dtype: DType) -> f64 {
    let f32 = target.peak_gflops_f32;
    let gops = match dtype {
        DType::F16 | DType::BF16 if target.peak_gflops_bf16 > 0.0 => target.peak_gflops_bf16,
        DType::I8 | DType::U8 | DType::I4 | DType::U4 | DType::I2 | DType::U2 | DType::Ternary
            if target.peak_gops_int8 > 0.0 =>
        {
            target.peak_gops_int8
        }
        _ => f32,
    };
    gops * 1e9
}

/// The register-level output block `(mr, nr)` of a target's inner kernel:
/// a CPU's FMA microkernel keeps 8 rows x 2 vectors of accumulators, an
/// accelerator's systolic array is `vector_bits` square (the field is the
/// array dimension there), a GPU warp tile is 64 x 64.
pub fn microtile(target: &TargetDesc, elem_bytes: f64) -> (f64, f64) {
    match target.kind {
        TargetKind::Cpu => {
            let lanes = (target.vector_bits as f64 / (8.0 * elem_bytes.max(0.125))).max(1.0);
            (8.0, 2.0 * lanes)
        }
        TargetKind::Accel => {
            let d = target.vector_bits.max(1) as f64;
            (d, d)
        }
        TargetKind::Gpu => (64.0, 64.0),
        TargetKind::Reference => (1.0, 1.0),
    }
}

/// Bytes moved into a level by an output-stationary blocking `(mt, nt)`.
fn reread_traffic(g: &Gemm, mt: f64, nt: f64) -> f64 {
    let (a, b, c) = (
        g.m * g.k * g.elem_bytes,
        g.k * g.n * g.elem_bytes,
        g.m * g.n * g.out_bytes,
    );
    a * (g.n / nt.min(g.n).max(1.0)).ceil() + b * (g.m / mt.min(g.m).max(1.0)).ceil() + c
}

/// The working set of a tile, bytes.
pub fn tile_bytes(g: &Gemm, [mt, nt, kt]: [u64; 3]) -> f64 {
    let (mt, nt, kt) = (mt as f64, nt as f64, kt as f64);
    (mt * kt + kt * nt) * g.elem_bytes + mt * nt * g.out_bytes
}

/// Bytes each memory level supplies for a contraction with an optional tile.
pub fn gemm_level_bytes(target: &TargetDesc, g: &Gemm, tile: Option<[u64; 3]>) -> Vec<f64> {
    let (mr, nr) = microtile(target, g.elem_bytes);
    let micro = reread_traffic(g, mr, nr);
    let whole = (g.m * g.k + g.k * g.n) * g.elem_bytes + g.m * g.n * g.out_bytes;
    // Traffic into level j: the best blocking that fits it.
    let into = |cap: f64| {
        let mut best = micro;
        if let Some(t) = tile {
            if tile_bytes(g, t) <= cap * TILE_FILL {
                best = best.min(reread_traffic(g, t[0] as f64, t[1] as f64));
            }
        }
        if whole <= cap * TILE_FILL {
            best = best.min(whole);
        }
        best
    };
    // Level 0 feeds the registers; level l feeds level l-1.
    let mut out = Vec::with_capacity(target.memory.len());
    for l in 0..target.memory.len() {
        let per_batch = if l == 0 {
            micro
        } else {
            into(target.memory[l - 1].bytes as f64)
        };
        out.push(per_batch * g.batch);
    }
    out
}

/// Iterations of a tile loop nest.
fn tile_count(g: &Gemm, [mt, nt, kt]: [u64; 3]) -> f64 {
    let steps = |n: f64, t: u64| (n / t as f64).ceil().max(1.0);
    g.batch * steps(g.m, mt) * steps(g.n, nt) * steps(g.k, kt)
}

/// The predicted cost of one op on `target`; `sym` is the size symbolic
/// dims take.
pub fn estimate(
    target: &TargetDesc,
    kind: OpKind,
    attrs: &Attrs,
    operands: &[Option<&TensorType>],
    results: &[&TensorType],
    sym: i64,
) -> OpEstimate {
    let levels = target.memory.len();
    if is_view(kind) {
        return OpEstimate {
            seconds: VIEW_SECONDS,
            flops: 0.0,
            level_bytes: vec![0.0; levels],
            bound: Bound::Overhead,
            tile: None,
        };
    }
    let (flops, moved) = work(kind, attrs, operands, results, sym);
    let a = operands.first().copied().flatten();
    let b = operands.get(1).copied().flatten();
    let gemm = match (a, b, results.first()) {
        (Some(a), Some(b), Some(out)) => gemm_shape(kind, attrs, a, b, out, sym),
        _ => None,
    };
    let tile = gemm.and(tile_attr(attrs));
    let mut overhead = target.launch_overhead_us * 1e-6;
    let level_bytes = match &gemm {
        Some(g) => {
            // Operands beyond A and B (bias, residual, gemm's C) stream once.
            let extra: f64 = operands
                .iter()
                .skip(2)
                .flatten()
                .map(|t| bytes(t, sym))
                .sum();
            if let Some(t) = tile {
                overhead += tile_count(g, t) * target.tile_overhead_ns * 1e-9;
            }
            gemm_level_bytes(target, g, tile)
                .into_iter()
                .map(|x| x + extra)
                .collect()
        }
        None => vec![moved; levels],
    };
    let dtype = a
        .or(results.first().copied())
        .map(|t| t.dtype())
        .unwrap_or(DType::F32);
    let compute = flops / peak_ops(target, dtype);
    let memory = level_bytes
        .iter()
        .zip(&target.memory)
        .map(|(b, m)| b / (m.bandwidth_gbps * 1e9))
        .fold(0.0, f64::max);
    let bound = if overhead > compute.max(memory) {
        Bound::Overhead
    } else if compute >= memory {
        Bound::Compute
    } else {
        Bound::Memory
    };
    OpEstimate {
        seconds: compute.max(memory) + overhead,
        flops,
        level_bytes,
        bound,
        tile,
    }
}

/// Tiles worth trying for `target` at an element size: for every level
/// but the farthest, the two power-of-two tiles fitting [`TILE_FILL`] of it
/// with the least traffic per flop (`1/mt + 1/nt`), deeper `kt` first.
pub fn tile_candidates(target: &TargetDesc, elem_bytes: f64) -> Vec<[u64; 3]> {
    const SIZES: [u64; 6] = [16, 32, 64, 128, 256, 512];
    let probe = Gemm {
        batch: 1.0,
        m: 1.0,
        n: 1.0,
        k: 1.0,
        elem_bytes,
        out_bytes: elem_bytes,
    };
    let mut out: Vec<[u64; 3]> = Vec::new();
    let inner = target.memory.len().saturating_sub(1);
    for level in &target.memory[..inner] {
        let cap = level.bytes as f64 * TILE_FILL;
        let mut fits: Vec<[u64; 3]> = Vec::new();
        for &mt in &SIZES {
            for &nt in &SIZES {
                for &kt in &SIZES {
                    if tile_bytes(&probe, [mt, nt, kt]) <= cap {
                        fits.push([mt, nt, kt]);
                    }
                }
            }
        }
        let key = |t: &[u64; 3]| 1.0 / t[0] as f64 + 1.0 / t[1] as f64;
        fits.sort_by(|x, y| {
            key(x)
                .total_cmp(&key(y))
                .then(y[2].cmp(&x[2]))
                .then(y[0].cmp(&x[0]))
        });
        for t in fits.into_iter().take(2) {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
