//! `RotaryEmbedding` on the vector unit.
//!
//! The op rotates each head vector `x[b, h, s, :]` (4-D `[B, H, S, D]`, or
//! 3-D `[B, S, H*D]` with `num_heads`) by the cos/sin row of its token. The
//! ISA's `rotary` reads, for every row, `src1 = [cos(half), sin(half)]` at the
//! row's own stride, so each chunk builds that table in the accumulator: the
//! cache rows of its tokens are DMA'd densely (consecutive tokens are
//! consecutive cache rows: one load per run) and two strided `copy`s
//! interleave them into rows of `D` words, then one `rotary` over the first
//! `rot` words of every row rotates in place (the tail of a partial rotary
//! dim is carried through unchanged).
//!
//! Supported: half-split pairs (`interleaved = 0`), caches already gathered
//! per token (`[B, S, rot/2]`, no `position_ids`: the opset-23 exporters build
//! them in the graph). Interleaved pairs and runtime position ids stay on
//! the host (the DMA addresses are static).
//!
//! Precision: the reference rotates in f64 and rounds once; the vector unit
//! rounds each product and the sum (3 roundings, within a few ulps of the
//! larger product).

use crate::emit::{load_acc_flat, store_flat, vec_insn, Emitter, FMT_I32};
use crate::lower::{Addrs, Ctx};
use crate::staged::{half_base, half_words};
use crate::OpAttrs;
use tessera_accel_isa::VecOp;
use tessera_ir::ops::AttrAccess;
use tessera_ir::{DType, Op};

/// One rotary embedding with its DRAM addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotaryKernel {
    /// Head vectors (`B*H*S`).
    pub rows: u64,
    /// Head size `D` (the row length).
    pub head: u64,
    /// Rotated prefix of each row (`rotary_embedding_dim`, or `D`).
    pub rot: u64,
    pub batch: u64,
    pub heads: u64,
    pub seq: u64,
    /// Rows ordered (b, h, s) (4-D input) rather than (b, s, h) (3-D input).
    pub heads_major: bool,
    pub x: u64,
    pub cos: u64,
    pub sin: u64,
    pub out: u64,
}

const F32: u8 = 0;
const SRC1_TENSOR: u8 = 0;

fn static_shape(cx: &Ctx, v: tessera_ir::ValueId) -> Result<Vec<u64>, String> {
    let ty = cx.g.ty(v);
    ty.static_shape()
        .map(|s| s.into_iter().map(|d| d as u64).collect())
        .ok_or_else(|| format!("operand has a non-static type {ty}"))
}

/// Lowers a `RotaryEmbedding` op, or says why it stays on the host.
pub fn build<A: Addrs>(cx: &Ctx, op: &Op, a: &mut A) -> Result<RotaryKernel, String> {
    let x = op.operand(0).ok_or("no input")?;
    let (cos, sin) = (
        op.operand(1).ok_or("no cos cache")?,
        op.operand(2).ok_or("no sin cache")?,
    );
    if op.operand(3).is_some() {
        return Err("runtime position ids (the cache rows are gathered on the host)".into());
    }
    for v in [x, cos, sin] {
        if cx.g.ty(v).dtype() != DType::F32 {
            return Err("non-f32 operand".into());
        }
    }
    let attrs = OpAttrs(op);
    if attrs.int("interleaved")? != 0 {
        return Err("interleaved pairs (the vector unit rotates half-split pairs)".into());
    }
    let shape = static_shape(cx, x)?;
    let (batch, heads, seq, head, heads_major) = match shape[..] {
        [b, h, s, d] => (b, h, s, d, true),
        [b, s, hidden] => {
            let h = u64::try_from(attrs.int("num_heads")?)
                .ok()
                .filter(|&h| h > 0 && hidden % h == 0)
                .ok_or("num_heads does not divide the hidden size")?;
            (b, h, s, hidden / h, false)
        }
        _ => return Err(format!("input of shape {shape:?}")),
    };
    let rot = match attrs.int("rotary_embedding_dim")? {
        0 => head,
        r => r as u64,
    };
    if rot == 0 || rot > head || rot % 2 != 0 {
        return Err(format!("rotary dim {rot} of head size {head}"));
    }
    for c in [cos, sin] {
        if static_shape(cx, c)? != [batch, seq, rot / 2] {
            return Err(format!(
                "caches of shape {:?} (the accelerator takes per-token caches [B, S, rot/2])",
                static_shape(cx, c)?
            ));
        }
    }
    let mut addr = |v| match cx.g.constant_value(v, cx.producers) {
        Some(t) => a.image((v, 0), &t.to_bytes()),
        None => a.value(v),
    };
    let k = RotaryKernel {
        rows: batch * heads * seq,
        head,
        rot,
        batch,
        heads,
        seq,
        heads_major,
        x: addr(x),
        cos: addr(cos),
        sin: addr(sin),
        out: a.value(op.results[0]),
    };
    if k.rows == 0 {
        return Err("empty tensor".into());
    }
    Ok(k)
}

impl RotaryKernel {
    /// The cache row (token `b*S + s`) of head vector `r`.
    pub fn cache_row(&self, r: u64) -> u64 {
        let (b, s) = if self.heads_major {
            (r / (self.heads * self.seq), r % self.seq)
        } else {
            (r / (self.seq * self.heads), (r / self.heads) % self.seq)
        };
        b * self.seq + s
    }

    /// Words per row in a half: the row, its cos/sin row, the dense staging.
    fn words_per_row(&self) -> u64 {
        2 * self.head + self.rot
    }

    pub fn chunk_rows(&self, acc_words: u64) -> Result<u64, String> {
        if self.head > 4095 {
            return Err(format!("head size {} exceeds 4095", self.head));
        }
        let r = (half_words(acc_words) / self.words_per_row())
            .min(4095)
            .min(self.rows);
        if r == 0 {
            return Err(format!(
                "one head vector ({} words with its tables) does not fit half the accumulator",
                self.words_per_row()
            ));
        }
        Ok(r)
    }

    pub fn emit(&self, em: &mut Emitter) -> Result<(), String> {
        let acc_words = em.cfg.acc_words();
        let cr = self.chunk_rows(acc_words)?;
        let (d, half) = (self.head, self.rot / 2);
        let mut r0 = 0;
        while r0 < self.rows {
            let rc = cr.min(self.rows - r0);
            let base = half_base(acc_words, em.next_chunk());
            let (xa, cs, tc) = (base, base + cr * d, base + 2 * cr * d);
            let ts = tc + cr * half;
            let mut loads = load_acc_flat(self.x + r0 * d * 4, xa as u32, rc * d);
            // Runs of rows whose cache rows are consecutive: one DMA each.
            let mut i = 0;
            while i < rc {
                let c0 = self.cache_row(r0 + i);
                let mut n = 1;
                while i + n < rc && self.cache_row(r0 + i + n) == c0 + n {
                    n += 1;
                }
                for (cache, stage) in [(self.cos, tc), (self.sin, ts)] {
                    loads.extend(load_acc_flat(
                        cache + c0 * half * 4,
                        (stage + i * half) as u32,
                        n * half,
                    ));
                }
                i += n;
            }
            let copy = |dst: u64, src: u64| {
                vec_insn(
                    VecOp::Copy,
                    F32,
                    SRC1_TENSOR,
                    dst as u32,
                    src as u32,
                    0,
                    half,
                    rc,
                    half,
                    d,
                )
            };
            let compute = vec![
                copy(cs, tc),
                copy(cs + half, ts),
                vec_insn(
                    VecOp::Rotary,
                    F32,
                    SRC1_TENSOR,
                    xa as u32,
                    xa as u32,
                    cs as u32,
                    self.rot,
                    rc,
                    d,
                    d,
                ),
            ];
            let stores = store_flat(FMT_I32, self.out + r0 * d * 4, xa as u32, rc * d, (0, 0));
            em.chunk(loads, compute, stores);
            r0 += rc;
        }
        em.sync();
        Ok(())
    }
}
