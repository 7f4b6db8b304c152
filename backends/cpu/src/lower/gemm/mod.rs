//! The GEMM engine behind `matmul`, `gemm` and `linear`.
//!
//! Each op is normalized into one [`Problem`]: a batch of `M x K` by `K x N`
//! products whose operands are addressed by (row, column, batch) strides over
//! their flat buffers, and an [`Epilogue`] applied where the result is stored.
//! f32 goes through the packed, register-blocked path ([`blocked`] +
//! [`ukr`]); every other element type through plain loops ([`simple`]).
//! Both keep each output element's K-summation order fixed, so results do
//! not depend on the thread count.

pub mod blocked;
pub mod epilogue;
pub mod pack;
pub mod simple;
pub mod text;
pub mod ukr;

use crate::emit::kernel::{Buf, KernelCtx};
pub use epilogue::{Act, Addend, Epilogue};
use tessera_ir::DType;

/// A matrix operand: `elem(batch, i, j) = buf[sum(batch[d] * b_d) + i * rs + j * cs]`.
/// Broadcast dims have stride 0.
#[derive(Clone, Debug)]
pub struct Operand {
    pub buf: Buf,
    pub rs: usize,
    pub cs: usize,
    /// One stride per batch dim of the problem.
    pub batch: Vec<usize>,
}

impl Operand {
    /// Whether the batch dims collapse into the row dim: item `t` of the
    /// flattened batch starts at `t * m * rs`.
    fn folds_into_rows(&self, batch: &[usize], m: usize) -> bool {
        let mut expect = m * self.rs;
        for (&size, &stride) in batch.iter().zip(&self.batch).rev() {
            if size != 1 && stride != expect {
                return false;
            }
            expect *= size;
        }
        true
    }
}

/// `out[b] = epilogue(a[b] @ b[b])` for every batch index `b`.
#[derive(Clone, Debug)]
pub struct Problem {
    pub dtype: DType,
    pub batch: Vec<usize>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Operand,
    pub b: Operand,
    /// Row-major `M x N` per batch item.
    pub out: Operand,
    pub epi: Epilogue,
}

impl Problem {
    pub fn is_empty(&self) -> bool {
        self.m == 0 || self.n == 0 || self.batch.contains(&0)
    }

    /// Folds the batch into M when B is shared by every batch item and the
    /// other operands are row-contiguous across items (the `[batch, seq, K]
    /// @ [K, N]` of every transformer projection): one tall GEMM blocks and
    /// parallelizes better than many short ones.
    pub fn fold_batch(&mut self) {
        if self.batch.is_empty() || self.b.batch.iter().any(|&s| s != 0) {
            return;
        }
        let (batch, m) = (&self.batch, self.m);
        let mut rows = vec![&self.a, &self.out];
        rows.extend(self.epi.operands());
        if !rows.iter().all(|o| o.folds_into_rows(batch, m)) {
            return;
        }
        self.m *= self.batch.iter().product::<usize>();
        self.batch.clear();
        for o in [&mut self.a, &mut self.b, &mut self.out] {
            o.batch.clear();
        }
        for o in self.epi.operands_mut() {
            o.batch.clear();
        }
    }
}

/// Writes the kernel body for `p`.
pub fn emit(k: &mut KernelCtx, mut p: Problem) -> Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    p.fold_batch();
    match p.dtype {
        DType::F32 => blocked::emit(k, &p),
        _ => simple::emit(k, &p),
    }
}

/// Contiguous row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Strides of `shape` read broadcast (numpy, right-aligned) over `target`:
/// one per target dim, 0 where `shape` has no dim or a size-1 dim.
pub fn broadcast_strides(shape: &[usize], target: &[usize]) -> Result<Vec<usize>, String> {
    if shape.len() > target.len() {
        return Err(format!(
            "shape {shape:?} does not broadcast onto {target:?}"
        ));
    }
    let st = strides(shape);
    let lead = target.len() - shape.len();
    let mut out = vec![0; target.len()];
    for (i, (&n, &s)) in shape.iter().zip(&st).enumerate() {
        let t = target[lead + i];
        if n == t && n != 1 {
            out[lead + i] = s;
        } else if n != 1 {
            return Err(format!(
                "shape {shape:?} does not broadcast onto {target:?}"
            ));
        }
    }
    Ok(out)
}

/// An epilogue operand broadcast onto an output of `out_shape` whose last
/// dims are M (when `has_m`) and N (when `has_n`) after `nbatch` batch dims.
pub fn onto_output(
    buf: &Buf,
    out_shape: &[usize],
    nbatch: usize,
    has_m: bool,
    has_n: bool,
) -> Result<Operand, String> {
    let st = broadcast_strides(&buf.shape, out_shape)?;
    let mut rest = st[nbatch..].iter().copied();
    let rs = if has_m { rest.next().unwrap_or(0) } else { 0 };
    let cs = if has_n { rest.next().unwrap_or(0) } else { 0 };
    Ok(Operand {
        buf: buf.clone(),
        rs,
        cs,
        batch: st[..nbatch].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_strides_zero_the_broadcast_dims() {
        assert_eq!(
            broadcast_strides(&[3, 1], &[2, 3, 5]).unwrap(),
            vec![0, 1, 0]
        );
        assert_eq!(broadcast_strides(&[5], &[2, 3, 5]).unwrap(), vec![0, 0, 1]);
        assert_eq!(
            broadcast_strides(&[2, 3, 5], &[2, 3, 5]).unwrap(),
            vec![15, 5, 1]
        );
        assert!(broadcast_strides(&[4], &[2, 3]).is_err());
    }
}
