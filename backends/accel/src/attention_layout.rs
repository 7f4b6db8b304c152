//! `Transpose` of 4-byte tensors (f32, i32) as a gather by strided DMA: the
//! source element of every output element, covered by 2-D DMA blocks
//! ([`crate::conv::dma_blocks`]) and moved through the accumulator by
//! [`crate::conv::GatherKernel`]. A permutation that keeps the last axis
//! (the head split `[b, s, h, d] -> [b, h, s, d]` around attention) moves
//! rows of `d` words, one block per (b, h); one that moves the last axis
//! gathers columns (one block per output row).

use crate::conv::{dma_blocks, GatherKernel};
use crate::lower::{Addrs, Ctx};
use crate::OpAttrs;
use tessera_ir::ops::AttrAccess;
use tessera_ir::{DType, Op};

/// Source offset (row-major in the input) of every output element.
pub fn permute_sources(shape: &[u64], perm: &[usize]) -> Vec<u64> {
    let rank = shape.len();
    let mut strides = vec![1u64; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<u64> = perm.iter().map(|&p| shape[p]).collect();
    let out_strides: Vec<u64> = perm.iter().map(|&p| strides[p]).collect();
    let total: u64 = shape.iter().product();
    let mut idx = vec![0u64; rank];
    let mut src = Vec::with_capacity(total as usize);
    for _ in 0..total {
        src.push(idx.iter().zip(&out_strides).map(|(i, s)| i * s).sum());
        for a in (0..rank).rev() {
            idx[a] += 1;
            if idx[a] < out_shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    src
}

/// Lowers `Transpose` of a 4-byte tensor.
pub fn build_transpose<A: Addrs>(cx: &Ctx, op: &Op, a: &mut A) -> Result<GatherKernel, String> {
    let x = op.operand(0).ok_or("no operand")?;
    if !matches!(cx.g.ty(x).dtype(), DType::F32 | DType::I32) {
        return Err(format!("{} data", cx.g.ty(x).dtype()));
    }
    let shape: Vec<u64> =
        cx.g.ty(x)
            .static_shape()
            .ok_or("non-static shape")?
            .into_iter()
            .map(|d| d as u64)
            .collect();
    let rank = shape.len();
    let perm: Vec<usize> = match OpAttrs(op).ints("perm") {
        Ok(p) if !p.is_empty() => p
            .iter()
            .map(|&i| if i < 0 { i + rank as i64 } else { i } as usize)
            .collect(),
        _ => (0..rank).rev().collect(),
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(format!("permutation {perm:?} of rank {rank}"));
    }
    if shape.iter().product::<u64>() == 0 {
        return Err("empty tensor".into());
    }
    let data = cx.dram_addr(a, x);
    Ok(GatherKernel {
        data,
        out: a.value(op.results[0]),
        blocks: dma_blocks(&permute_sources(&shape, &perm)),
    })
}

#[cfg(test)]
mod tests {
    use super::permute_sources;

    #[test]
    fn head_split_moves_rows() {
        // [b=1, s=2, h=2, d=3] -> [1, 2(h), 2(s), 3]: output (h, s) row reads
        // input row (s, h).
        let src = permute_sources(&[1, 2, 2, 3], &[0, 2, 1, 3]);
        assert_eq!(src, vec![0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]);
        // A 2x3 matrix transposed.
        assert_eq!(permute_sources(&[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
    }
}
