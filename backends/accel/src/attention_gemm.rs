//! GEMMs whose second operand is computed at run time (the attention
//! products of [`crate::attention`]) and int8 transposes, as batches of
//! array GEMMs.
//!
//! The array reads its weight operand transposed (`Wᵀ`, one row of K weights
//! per output column, [`crate::gemm::pack_weights`]); a runtime `B [K, N]`
//! i8 is stored K-first. The kernel makes the layout on the device with the
//! array itself: **identity GEMMs** `C = I · Bᵀ`, one per block of columns
//! of B as wide as the array (A = the identity from the image, W = the block
//! read as K rows with B's row stride) store `Bᵀ [N, K]` as i8 (exact: every
//! accumulator is one product with 1) into a scratch area of the segment's
//! DRAM, then the product GEMM reads it as its packed weight. The
//! transpose costs `DIM·N·K` MACs against the product's `M·K·N` (the DMA
//! engines cannot do it: i8 reaches only the scratchpad, which only the
//! array reads), and the same GEMMs lower `Transpose` of an i8 matrix (the
//! last two axes).
//!
//! When B is such a transpose made in the same segment right before (the
//! `Kᵀ` of attention: `Transpose(kq)`), the product reads `kq` itself and
//! skips the identity GEMM.
//!
//! Batch dims: one GEMM pair per matrix, B either one matrix for all or one
//! per batch index of A.

use crate::emit::Emitter;
use crate::gemm::{
    estimate_gemm, plan_gemm, DramMat, GemmMode, GemmOutput, GemmSpec, Requant, Tiling,
};
use crate::lower::{Addrs, Ctx};
use crate::program::node_name;
use crate::OpAttrs;
use std::collections::HashMap;
use tessera_accel_isa::HwConfig;
use tessera_ir::ops::AttrAccess;
use tessera_ir::{DType, Op, OpKind, ValueId};

/// One step of a [`GemmBatch`].
#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    Gemm(GemmSpec),
    /// `dst [cols, rows] = srcᵀ` (i8, dense), by identity GEMMs over blocks
    /// of columns as wide as the array (at most [`MAX_BLOCK`]).
    Transpose {
        name: String,
        src: u64,
        dst: u64,
        rows: u64,
        cols: u64,
        /// [`identity`] in DRAM; a block of `w` columns reads its top-left
        /// `w×w` corner.
        eye: u64,
    },
}

/// A sequence of GEMMs emitted as one kernel (each with its own tiling).
#[derive(Clone, Debug, PartialEq)]
pub struct GemmBatch {
    pub jobs: Vec<Job>,
}

/// The exact i8 store of an identity GEMM's accumulators.
const COPY_I8: Requant = Requant {
    mult: 1,
    shift: 0,
    zero_point: 0,
    clamp_lo: -128,
    clamp_hi: 127,
};

/// A GEMM's shape: (m, k, n, i8 output).
type ShapeKey = (u64, u64, u64, bool);

/// Tiles per distinct GEMM shape (the batch repeats one or two shapes).
fn shape_key(s: &GemmSpec) -> ShapeKey {
    (s.m, s.k, s.n, matches!(s.out, GemmOutput::Int8(_)))
}

impl GemmBatch {
    /// The GEMMs on this configuration (transposes in blocks of its width).
    pub fn specs(&self, cfg: &HwConfig) -> Vec<GemmSpec> {
        let block = (cfg.array_dim as u64).min(MAX_BLOCK);
        let mut v = Vec::new();
        for j in &self.jobs {
            match j {
                Job::Gemm(s) => v.push(s.clone()),
                Job::Transpose {
                    name,
                    src,
                    dst,
                    rows,
                    cols,
                    eye,
                } => v.extend(transpose_specs(name, block, *eye, *src, *dst, *rows, *cols)),
            }
        }
        v
    }

    /// The GEMMs with the tiling of each shape.
    fn planned(&self, cfg: &HwConfig) -> Result<Vec<(GemmSpec, Tiling)>, String> {
        let specs = self.specs(cfg);
        let mut t: HashMap<ShapeKey, Tiling> = HashMap::new();
        let mut out = Vec::with_capacity(specs.len());
        for s in specs {
            let tiling = match t.get(&shape_key(&s)) {
                Some(&x) => x,
                None => {
                    let x = plan_gemm(&s, cfg)?.tiling;
                    t.insert(shape_key(&s), x);
                    x
                }
            };
            out.push((s, tiling));
        }
        Ok(out)
    }

    /// Whether every GEMM has a tiling on this configuration.
    pub fn check(&self, cfg: &HwConfig) -> Result<(), String> {
        self.planned(cfg).map(|_| ())
    }

    pub fn emit(&self, em: &mut Emitter) -> Result<(), String> {
        for (s, t) in self.planned(em.cfg)? {
            em.gemm(&s, t)?;
        }
        Ok(())
    }

    /// The analytical model's cycles: the sum over the GEMMs, each priced
    /// with the tiling it is emitted with.
    pub fn estimate(&self, cfg: &HwConfig) -> Result<u64, String> {
        self.planned(cfg)?
            .iter()
            .map(|(s, t)| estimate_gemm(s, cfg, *t).map(|p| p.estimate.cycles))
            .sum()
    }

    /// The kernel's line in `--emit asm`.
    pub fn note(&self) -> String {
        let t = self
            .jobs
            .iter()
            .filter(|j| matches!(j, Job::Transpose { .. }))
            .count();
        let last = self.jobs.iter().rev().find_map(|j| match j {
            Job::Gemm(s) => Some(format!(", products {}x{}x{}", s.m, s.k, s.n)),
            Job::Transpose { .. } => None,
        });
        format!(
            "{} gemms and {t} layout transposes on the array{}",
            self.jobs.len() - t,
            last.unwrap_or_default()
        )
    }
}

fn static_shape(cx: &Ctx, v: ValueId) -> Result<Vec<u64>, String> {
    let ty = cx.g.ty(v);
    ty.static_shape()
        .map(|s| s.into_iter().map(|d| d as u64).collect())
        .ok_or_else(|| format!("operand has a non-static type {ty}"))
}

fn producer<'g>(cx: &Ctx<'g>, v: ValueId) -> Option<(usize, &'g Op)> {
    let i = cx.producers.get(v.0 as usize).copied().flatten()?;
    Some((i, &cx.g.ops[i]))
}

/// Addresses for a lowering check.
struct Unplaced;
impl Addrs for Unplaced {
    fn value(&mut self, _: ValueId) -> u64 {
        0
    }
    fn image(&mut self, _: (ValueId, u8), _: &[u8]) -> u64 {
        0
    }
}

/// `[batch, rows, cols]` of a rank >= 2 shape.
fn matrices(shape: &[u64]) -> Result<(u64, u64, u64), String> {
    let r = shape.len();
    if r < 2 {
        return Err("operand of rank < 2".into());
    }
    Ok((shape[..r - 2].iter().product(), shape[r - 2], shape[r - 1]))
}

/// Whether `op` is a Transpose that swaps the last two axes only.
fn swaps_last_two(op: &Op, rank: usize) -> bool {
    let Ok(perm) = OpAttrs(op).ints("perm") else {
        return false;
    };
    rank >= 2
        && perm.len() == rank
        && perm[..rank - 2]
            .iter()
            .enumerate()
            .all(|(i, &p)| p == i as i64)
        && perm[rank - 2] == rank as i64 - 1
        && perm[rank - 1] == rank as i64 - 2
}

/// The widest column block of a transpose: the identity read from DRAM is
/// `I_64` (4 KiB per op), so wider arrays use 64-column blocks.
pub const MAX_BLOCK: u64 = 64;

/// The identity GEMMs writing `src [rows, cols]` i8 (row stride `cols`) as
/// `dst [cols, rows]` i8, one per block of `block` columns: block `c0`
/// computes `dst[c0 + r][j] = Σ_kk I[r][kk] · src[j][c0 + kk]`, so a
/// transpose costs `block·rows·cols` MACs (linear in the matrix; one identity
/// over all columns would cost `cols²·rows`).
fn transpose_specs(
    name: &str,
    block: u64,
    eye: u64,
    src: u64,
    dst: u64,
    rows: u64,
    cols: u64,
) -> Vec<GemmSpec> {
    (0..cols.div_ceil(block))
        .map(|b| {
            let c0 = b * block;
            let w = block.min(cols - c0);
            GemmSpec {
                name: name.to_string(),
                m: w,
                k: w,
                n: rows,
                mode: GemmMode::I8xI8,
                a: DramMat {
                    addr: eye,
                    row_stride: MAX_BLOCK,
                },
                w: DramMat {
                    addr: src + c0,
                    row_stride: cols,
                },
                bias: None,
                c: DramMat {
                    addr: dst + c0 * rows,
                    row_stride: rows,
                },
                a_zero_point: 0,
                out: GemmOutput::Int8(COPY_I8),
            }
        })
        .collect()
}

/// `I_MAX_BLOCK` as i8 bytes.
pub fn identity() -> Vec<u8> {
    let n = MAX_BLOCK as usize;
    let mut eye = vec![0u8; n * n];
    for i in 0..n {
        eye[i * n + i] = 1;
    }
    eye
}

/// Image keys of this module's constants and scratch areas (the second
/// element of an image key; the first is the op's result).
const KEY_EYE: u8 = 0xa0;
const KEY_SCRATCH: u8 = 0xa2;

/// `Transpose` of an i8 tensor over its last two axes.
pub fn build_transpose<A: Addrs>(cx: &Ctx, op: &Op, a: &mut A) -> Result<GemmBatch, String> {
    let x = op.operand(0).ok_or("no operand")?;
    if cx.g.ty(x).dtype() != DType::I8 {
        return Err("transpose of a non-i8 tensor".into());
    }
    let shape = static_shape(cx, x)?;
    if !swaps_last_two(op, shape.len()) {
        return Err("permutation other than a swap of the last two axes".into());
    }
    let (batch, rows, cols) = matrices(&shape)?;
    if batch * rows * cols == 0 {
        return Err("empty tensor".into());
    }
    let y = op.results[0];
    let eye = a.image((y, KEY_EYE), &identity());
    let (src, dst) = (a.value(x), a.value(y));
    Ok(transpose_batch(
        &node_name(op),
        batch,
        rows,
        cols,
        src,
        dst,
        eye,
    ))
}

/// `MatMulInteger(A, B)` with i8 operands, B computed at run time, no zero
/// points.
pub fn build_matmul<A: Addrs>(cx: &Ctx, op: &Op, a: &mut A) -> Result<GemmBatch, String> {
    let (x, w) = (op.operand(0).ok_or("no A")?, op.operand(1).ok_or("no B")?);
    if cx.g.ty(x).dtype() != DType::I8 || cx.g.ty(w).dtype() != DType::I8 {
        return Err("u8 operands (the array multiplies int8)".into());
    }
    if op.operands.len() > 2 && op.operands[2..].iter().any(|z| z.is_some()) {
        return Err("zero points with a runtime B".into());
    }
    let (xs, ws) = (static_shape(cx, x)?, static_shape(cx, w)?);
    let (batch, m, k) = matrices(&xs)?;
    let (wb, k2, n) = matrices(&ws)?;
    if k != k2 || !(wb == 1 && ws.len() == 2 || (wb == batch && xs.len() == ws.len())) {
        return Err(format!("batched operands {xs:?} x {ws:?}"));
    }
    if batch * m * k * n == 0 {
        return Err("empty matmul".into());
    }
    let y = op.results[0];
    // B = Transpose(T) made right before from T made right before that, so
    // T is in this segment: the product reads T ([N, K], the packed layout).
    let me = cx.producers.get(y.0 as usize).copied().flatten();
    let source = producer(cx, w).and_then(|(ti, t)| {
        let tin = t.operand(0)?;
        let (ci, c) = producer(cx, tin)?;
        let adjacent = me == Some(ti + 1) && ti == ci + 1;
        // Both lower (so they sit in this segment, adjacent to it).
        let made_here = c.kind == OpKind::Cast
            && t.kind == OpKind::Transpose
            && build_transpose(cx, t, &mut Unplaced).is_ok()
            && crate::lower::build(cx, c, &mut Unplaced).is_ok();
        (adjacent && made_here && swaps_last_two(t, ws.len())).then_some(tin)
    });
    let weight = match source {
        Some(t) => Weight::Packed { addr: a.value(t) },
        None => Weight::KFirst {
            scratch: a.image((y, KEY_SCRATCH), &vec![0u8; (n * k) as usize]),
            eye: a.image((y, KEY_EYE), &identity()),
        },
    };
    let operands = Operands {
        a: a.value(x),
        b: a.value(w),
        b_batched: wb > 1 || ws.len() > 2,
        c: a.value(y),
    };
    Ok(product_batch(
        &node_name(op),
        batch,
        (m, k, n),
        operands,
        weight,
    ))
}

/// Where the product GEMMs find their packed weight.
#[derive(Clone, Copy, Debug)]
pub enum Weight {
    /// `Bᵀ [N, K]` i8 per matrix at `addr`.
    Packed { addr: u64 },
    /// B is K-first: identity GEMMs transpose each matrix into `scratch`
    /// (`N·K` bytes) with [`identity`] at `eye` ([`transpose_batch`]).
    KFirst { scratch: u64, eye: u64 },
}

/// DRAM addresses of a product's operands (matrices consecutive per batch).
#[derive(Clone, Copy, Debug)]
pub struct Operands {
    pub a: u64,
    pub b: u64,
    /// B has one matrix per batch index (else one for all).
    pub b_batched: bool,
    pub c: u64,
}

/// `C = A · B` per batch index, A `[M, K]` i8, C `[M, N]` i32.
pub fn product_batch(
    name: &str,
    batch: u64,
    (m, k, n): (u64, u64, u64),
    ops: Operands,
    weight: Weight,
) -> GemmBatch {
    let mut jobs = Vec::new();
    for t in 0..batch {
        let tb = if ops.b_batched { t } else { 0 };
        let w_here = match weight {
            // One scratch matrix: the next identity GEMM's stores follow
            // this product's loads (kernels are chained by tokens).
            Weight::KFirst { scratch, eye } => {
                jobs.push(Job::Transpose {
                    name: name.to_string(),
                    src: ops.b + tb * k * n,
                    dst: scratch,
                    rows: k,
                    cols: n,
                    eye,
                });
                scratch
            }
            Weight::Packed { addr } => addr + tb * n * k,
        };
        jobs.push(Job::Gemm(GemmSpec {
            name: name.to_string(),
            m,
            k,
            n,
            mode: GemmMode::I8xI8,
            a: DramMat {
                addr: ops.a + t * m * k,
                row_stride: k,
            },
            w: DramMat {
                addr: w_here,
                row_stride: k,
            },
            bias: None,
            c: DramMat {
                addr: ops.c + t * m * n * 4,
                row_stride: n,
            },
            a_zero_point: 0,
            out: GemmOutput::Word32,
        }));
    }
    GemmBatch { jobs }
}

/// `dst [cols, rows] = srcᵀ` i8 per batch index, with [`identity`] at `eye`.
pub fn transpose_batch(
    name: &str,
    batch: u64,
    rows: u64,
    cols: u64,
    src: u64,
    dst: u64,
    eye: u64,
) -> GemmBatch {
    let jobs = (0..batch)
        .map(|t| Job::Transpose {
            name: name.to_string(),
            src: src + t * rows * cols,
            dst: dst + t * rows * cols,
            rows,
            cols,
            eye,
        })
        .collect();
    GemmBatch { jobs }
}
