//! Convolution on the systolic array by im2col, with the im2col done by the
//! load DMA.
//!
//! After shapes are specialized, [`im2col_convs`] rewrites every 2-D `Conv`
//! with a constant weight, no padding and one group into Tessera IR the
//! reference interpreter runs unchanged:
//!
//! ```text
//! cols = GatherNd(x, I)            I constant: cols[n, oh*OW+ow, (c,ky,kx)] =
//!                                  x[n, c, oh*sh + ky*dh, ow*sw + kx*dw]
//! y    = MatMul(cols, Wmat) + b    Wmat[(c,ky,kx), oc] = W[oc, c, ky, kx]
//! ```
//!
//! `y` is `[N, OH*OW, OC]`, patches as rows, so the MatMul takes the int8
//! scheme of [`crate::quantize`] (per-output-channel weights, per-patch
//! activations). When the conv feeds `Reshape [N, OC, OH*OW]` →
//! `Transpose [0, 2, 1]` (the ViT patch embedding), that pair is exactly `y`
//! and is dropped; otherwise a second constant-index `GatherNd` puts `y` back
//! in the conv's `[N, OC, OH, OW]` layout.
//!
//! A `GatherNd` with constant indices over 4-byte data runs as a
//! [`GatherKernel`]: the source element of every output element is known at
//! compile time, so contiguous runs become DMA rows and runs of equal length
//! at a constant distance one strided 2-D load (a patch-embedding im2col is
//! one `KH x KW` load per patch and channel), staged in the accumulator and
//! stored densely. No host copy.

use crate::emit::{load, store_flat, Emitter, B4, FMT_I32, MEM_ACC};
use crate::lower::{Addrs, Ctx};
use crate::quantize::{quantize_graph, QuantStats};
use crate::staged::{half_base, half_words};
use crate::OpAttrs;
use std::sync::Arc;
use tessera_ir::ops::AttrAccess;
use tessera_ir::{Attrs, Builder, DType, Diagnostic, Graph, Loc, Op, OpKind, Tensor, ValueId};

/// Largest `x_size`, `y_size` and `x_stride` of a load.
const MAX_X: u64 = 4095;
const MAX_Y: u64 = 1023;
const MAX_STRIDE: u64 = 65535;

/// One 2-D DMA read: `y` rows of `x` elements, `stride` elements apart, from
/// source element `src`; they fill the next `y*x` output elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub src: u64,
    pub y: u64,
    pub x: u64,
    pub stride: u64,
}

/// Covers the output elements, in order, by DMA blocks: maximal contiguous
/// runs, then consecutive runs of one length at one distance merged.
pub fn dma_blocks(src: &[u64]) -> Vec<Block> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &s in src {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == s && *len < MAX_X => *len += 1,
            _ => runs.push((s, 1)),
        }
    }
    let mut blocks: Vec<Block> = Vec::new();
    for (s, len) in runs {
        if let Some(b) = blocks.last_mut() {
            let next = b.src + b.y * b.stride;
            let stride_ok = if b.y == 1 {
                s > b.src && s - b.src >= len && s - b.src <= MAX_STRIDE
            } else {
                s == next
            };
            if b.x == len && b.y < MAX_Y && stride_ok {
                if b.y == 1 {
                    b.stride = s - b.src;
                }
                b.y += 1;
                continue;
            }
        }
        blocks.push(Block {
            src: s,
            y: 1,
            x: len,
            stride: len,
        });
    }
    blocks
}

/// A constant-index gather of 4-byte elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatherKernel {
    /// DRAM byte address of the source tensor.
    pub data: u64,
    pub out: u64,
    pub blocks: Vec<Block>,
}

impl GatherKernel {
    pub fn words(&self) -> u64 {
        self.blocks.iter().map(|b| b.y * b.x).sum()
    }

    /// The blocks split to fit an accumulator half, grouped into chunks.
    pub fn chunks(&self, acc_words: u64) -> Result<Vec<Vec<Block>>, String> {
        let half = half_words(acc_words);
        if half < MAX_X.min(self.blocks.iter().map(|b| b.x).max().unwrap_or(1)) {
            return Err("a DMA row does not fit half the accumulator".into());
        }
        let mut chunks: Vec<Vec<Block>> = vec![Vec::new()];
        let mut used = 0;
        for b in &self.blocks {
            let mut b = *b;
            while b.y > 0 {
                if used + b.x > half {
                    chunks.push(Vec::new());
                    used = 0;
                }
                let rows = ((half - used) / b.x).min(b.y);
                chunks
                    .last_mut()
                    .unwrap_or(&mut Vec::new())
                    .push(Block { y: rows, ..b });
                used += rows * b.x;
                b.src += rows * b.stride;
                b.y -= rows;
            }
        }
        if chunks.iter().any(|c| c.is_empty()) {
            return Err("empty gather".into());
        }
        Ok(chunks)
    }

    pub fn emit(&self, em: &mut Emitter) -> Result<(), String> {
        let acc_words = em.cfg.acc_words();
        let mut out = self.out;
        for chunk in self.chunks(acc_words)? {
            let base = half_base(acc_words, em.next_chunk());
            let mut off = 0;
            let mut loads = Vec::new();
            for b in &chunk {
                loads.push(load(
                    MEM_ACC,
                    B4,
                    self.data + 4 * b.src,
                    (base + off) as u32,
                    b.y,
                    b.x,
                    b.stride,
                ));
                off += b.y * b.x;
            }
            let stores = store_flat(FMT_I32, out, base as u32, off, (0, 0));
            // Nothing to compute: the no-op orders the stores after the loads.
            em.chunk(loads, vec![em.compute_nop()], stores);
            out += 4 * off;
        }
        em.sync();
        Ok(())
    }
}

/// Source element (row-major in `data`) of every output element of
/// `GatherNd(data, indices)` with `batch_dims = 0`.
pub fn gather_nd_sources(data: &[u64], indices: &Tensor) -> Result<Vec<u64>, String> {
    let l = *indices.shape.last().ok_or("scalar indices")?;
    if l == 0 || l > data.len() {
        return Err(format!(
            "index tuples of length {l} into rank {}",
            data.len()
        ));
    }
    let mut strides = vec![1u64; data.len()];
    for i in (0..data.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * data[i + 1];
    }
    let slice: u64 = data[l..].iter().product();
    let idx = indices.to_i64_vec();
    let mut out = Vec::with_capacity(idx.len() / l * slice as usize);
    for tuple in idx.chunks(l) {
        let mut start = 0;
        for (a, &i) in tuple.iter().enumerate() {
            let d = data[a] as i64;
            let i = if i < 0 { i + d } else { i };
            if !(0..d).contains(&i) {
                return Err(format!("index {i} out of range for a dim of {d}"));
            }
            start += i as u64 * strides[a];
        }
        out.extend(start..start + slice);
    }
    Ok(out)
}

/// Lowers `GatherNd` with constant indices over 4-byte data.
pub fn build_gather<A: Addrs>(cx: &Ctx, op: &Op, a: &mut A) -> Result<GatherKernel, String> {
    let (x, ind) = (
        op.operand(0).ok_or("no data")?,
        op.operand(1).ok_or("no indices")?,
    );
    if OpAttrs(op).int("batch_dims")? != 0 {
        return Err("batch_dims".into());
    }
    if !matches!(cx.g.ty(x).dtype(), DType::F32 | DType::I32) {
        return Err(format!(
            "{} data (the accumulator moves 4-byte words)",
            cx.g.ty(x).dtype()
        ));
    }
    let indices =
        cx.g.constant_value(ind, cx.producers)
            .ok_or("runtime indices")?;
    let shape: Vec<u64> =
        cx.g.ty(x)
            .static_shape()
            .ok_or("non-static data")?
            .into_iter()
            .map(|d| d as u64)
            .collect();
    let src = gather_nd_sources(&shape, indices)?;
    if src.is_empty() {
        return Err("empty gather".into());
    }
    let data = cx.dram_addr(a, x);
    Ok(GatherKernel {
        data,
        out: a.value(op.results[0]),
        blocks: dma_blocks(&src),
    })
}

// ---------------------------------------------------------------------------
// The rewrite

/// A conv the rewrite handles: sizes and the constant weight.
struct ConvGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oc: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    dil: [usize; 2],
    weight: Vec<f32>,
}

fn conv_geom(g: &Graph, producers: &[Option<usize>], op: &Op) -> Option<ConvGeom> {
    let a = OpAttrs(op);
    let x = op.operand(0)?;
    let wv = g.constant_value(op.operand(1)?, producers)?;
    if g.ty(x).dtype() != DType::F32 || wv.dtype != DType::F32 || wv.rank() != 4 {
        return None;
    }
    let xs = g.ty(x).static_shape()?;
    let ys = g.ty(op.results[0]).static_shape()?;
    if xs.len() != 4 || a.int("group").ok()? != 1 || a.string("auto_pad").ok()? != "NOTSET" {
        return None;
    }
    if a.ints("pads")
        .ok()
        .is_some_and(|p| p.iter().any(|&v| v != 0))
    {
        return None;
    }
    let pair = |name: &str| -> Option<[usize; 2]> {
        match a.ints(name).ok() {
            None => Some([1, 1]),
            Some(v) if v.len() == 2 && v.iter().all(|&s| s > 0) => {
                Some([v[0] as usize, v[1] as usize])
            }
            Some(_) => None,
        }
    };
    let (stride, dil) = (pair("strides")?, pair("dilations")?);
    let u = |d: i64| d as usize;
    Some(ConvGeom {
        n: u(xs[0]),
        c: u(xs[1]),
        h: u(xs[2]),
        w: u(xs[3]),
        oc: wv.shape[0],
        kh: wv.shape[2],
        kw: wv.shape[3],
        oh: u(ys[2]),
        ow: u(ys[3]),
        stride,
        dil,
        weight: wv.to_f32_vec(),
    })
    .filter(|c| wv.shape[1] == c.c && c.n * c.oh * c.ow > 0)
}

impl ConvGeom {
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// `I[n, oh*OW+ow, (c,ky,kx)] = (n, c, oh*sh + ky*dh, ow*sw + kx*dw)`.
    fn im2col_indices(&self) -> Tensor {
        let mut v = Vec::with_capacity(self.n * self.oh * self.ow * self.ckk() * 4);
        for n in 0..self.n {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    for c in 0..self.c {
                        for ky in 0..self.kh {
                            for kx in 0..self.kw {
                                let iy = oy * self.stride[0] + ky * self.dil[0];
                                let ix = ox * self.stride[1] + kx * self.dil[1];
                                v.extend([n, c, iy, ix].map(|i| i as i64));
                            }
                        }
                    }
                }
            }
        }
        debug_assert!(self.h > 0 && self.w > 0);
        Tensor::i64(vec![self.n, self.oh * self.ow, self.ckk(), 4], v)
    }

    /// `Wmat[(c,ky,kx), oc] = W[oc, c, ky, kx]`.
    fn weight_matrix(&self) -> Tensor {
        let (ckk, oc) = (self.ckk(), self.oc);
        let v = (0..ckk * oc)
            .map(|i| self.weight[(i % oc) * ckk + i / oc])
            .collect();
        Tensor::f32(vec![ckk, oc], v)
    }

    /// Indices putting `y [N, OH*OW, OC]` back into `[N, OC, OH, OW]`.
    fn to_nchw_indices(&self) -> Tensor {
        let mut v = Vec::with_capacity(self.n * self.oc * self.oh * self.ow * 3);
        for n in 0..self.n {
            for oc in 0..self.oc {
                for p in 0..self.oh * self.ow {
                    v.extend([n, p, oc].map(|i| i as i64));
                }
            }
        }
        Tensor::i64(vec![self.n, self.oc, self.oh, self.ow, 3], v)
    }
}

/// The `Reshape [N, OC, OH*OW]` → `Transpose [0, 2, 1]` that consumes a
/// conv's result and nothing else: (reshape op, transpose op).
fn patch_flatten(g: &Graph, conv: usize, uses: &[Vec<usize>]) -> Option<(usize, usize)> {
    let single = |v: ValueId| -> Option<usize> {
        let u = &uses[v.0 as usize];
        let is_output = g.outputs.iter().any(|(_, o)| *o == v);
        (u.len() == 1 && !is_output).then(|| u[0])
    };
    let y = g.ops[conv].results[0];
    let r = single(y)?;
    let rop = &g.ops[r];
    let ys = g.ty(y).static_shape()?;
    let want = [ys[0], ys[1], ys[2] * ys[3]];
    if rop.kind != OpKind::Reshape
        || rop.operand(0) != Some(y)
        || g.ty(rop.results[0]).static_shape()? != want
    {
        return None;
    }
    let t = single(rop.results[0])?;
    let top = &g.ops[t];
    (top.kind == OpKind::Transpose && OpAttrs(top).ints("perm").ok()? == [0, 2, 1])
        .then_some((r, t))
}

/// Rewrites the convs the accelerator runs as im2col GEMMs (see the module
/// documentation) and quantizes the new matmuls. Needs static shapes.
pub fn im2col_convs(g: &mut Graph, quant: &mut QuantStats) -> Result<(), Diagnostic> {
    let producers = g.producers();
    let mut uses: Vec<Vec<usize>> = vec![Vec::new(); g.values.len()];
    for (i, op) in g.ops.iter().enumerate() {
        for v in op.operands.iter().flatten() {
            uses[v.0 as usize].push(i);
        }
    }
    // (conv op, geometry, the flattened-patches value it replaces).
    let mut plans: Vec<(usize, ConvGeom, Option<ValueId>)> = Vec::new();
    let mut dropped = vec![false; g.ops.len()];
    for (i, op) in g.ops.iter().enumerate() {
        if op.kind == OpKind::Conv {
            if let Some(geo) = conv_geom(g, &producers, op) {
                let flat = patch_flatten(g, i, &uses).map(|(r, t)| {
                    dropped[r] = true;
                    dropped[t] = true;
                    g.ops[t].results[0]
                });
                plans.push((i, geo, flat));
            }
        }
    }
    if plans.is_empty() {
        return Ok(());
    }
    let old_ops = std::mem::take(&mut g.ops);
    let mut subst: Vec<Option<ValueId>> = vec![None; g.values.len()];
    let resolve = |subst: &[Option<ValueId>], v: ValueId| {
        subst.get(v.0 as usize).copied().flatten().unwrap_or(v)
    };
    for (i, mut op) in old_ops.into_iter().enumerate() {
        for o in op.operands.iter_mut().flatten() {
            *o = resolve(&subst, *o);
        }
        if dropped[i] {
            continue;
        }
        let Some((_, geo, flat)) = plans.iter().find(|p| p.0 == i) else {
            g.ops.push(op);
            continue;
        };
        let node = crate::program::node_name(&op);
        let loc = |step: &str| {
            Some(Loc {
                name: format!("{node}/accel_im2col/{step}"),
                op_type: step.to_string(),
            })
        };
        let fail = |e: String| Diagnostic::new(format!("{node}: im2col rewrite: {e}"));
        let mut b = Builder::new(g);
        let emit = |b: &mut Builder, step: &str, kind, xs: Vec<ValueId>| {
            b.op(
                kind,
                xs.into_iter().map(Some).collect(),
                Attrs::new(),
                1,
                loc(step),
            )
            .map(|r| r[0])
            .map_err(fail)
        };
        let x = op.operands[0].ok_or_else(|| fail("no input".into()))?;
        let idx = b.constant(
            &format!("{node}/accel_im2col/indices"),
            Arc::new(geo.im2col_indices()),
            loc("indices"),
        );
        let cols = emit(&mut b, "im2col", OpKind::GatherNd, vec![x, idx])?;
        let wm = b.constant(
            &format!("{node}/accel_im2col/weight"),
            Arc::new(geo.weight_matrix()),
            loc("weight"),
        );
        let mut y = emit(&mut b, "matmul", OpKind::MatMul, vec![cols, wm])?;
        if let Some(bias) = op.operand(2) {
            y = emit(&mut b, "bias", OpKind::Add, vec![y, bias])?;
        }
        let replaced = match flat {
            Some(flattened) => *flattened,
            None => {
                let back = b.constant(
                    &format!("{node}/accel_im2col/nchw_indices"),
                    Arc::new(geo.to_nchw_indices()),
                    loc("nchw_indices"),
                );
                y = emit(&mut b, "to_nchw", OpKind::GatherNd, vec![y, back])?;
                op.results[0]
            }
        };
        if subst.len() < g.values.len() {
            subst.resize(g.values.len(), None);
        }
        subst[replaced.0 as usize] = Some(y);
    }
    for (_, v) in g.outputs.iter_mut() {
        *v = resolve(&subst, *v);
    }
    g.remove_dead();
    let q = quantize_graph(g)?;
    quant.quantized.extend(q.quantized);
    Ok(())
}
