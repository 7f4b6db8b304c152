//! Contractions: MatMul, Gemm, Einsum and their integer forms.

use super::*;
use crate::dim::Dim;
use crate::tensor::Data;

/// numpy.matmul shape rule: 1-D operands are promoted and the added dim removed.
pub fn matmul_shape(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, String> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul operands must have rank >= 1".into());
    }
    let a2: Vec<Dim> = if a.len() == 1 { vec![Dim::fixed(1), a[0].clone()] } else { a.to_vec() };
    let b2: Vec<Dim> = if b.len() == 1 { vec![b[0].clone(), Dim::fixed(1)] } else { b.to_vec() };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if !ka.compatible(kb) {
        return Err(format!("contraction dims differ: {ka} vs {kb}"));
    }
    let batch = util::broadcast_dims(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(out)
}

/// Batched matmul on f32 with broadcasting batch dims, through `matrixmultiply`.
pub fn matmul_f32(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let (av, bv) = (a.to_f32_vec(), b.to_f32_vec());
    let ash: Vec<usize> = if a.rank() == 1 { vec![1, a.shape[0]] } else { a.shape.clone() };
    let bsh: Vec<usize> = if b.rank() == 1 { vec![b.shape[0], 1] } else { b.shape.clone() };
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(format!("matmul contraction dims differ: {k} vs {k2}"));
    }
    let batch = util::broadcast_shapes(&ash[..ash.len() - 2], &bsh[..bsh.len() - 2])?;
    let nb: usize = batch.iter().product();
    let amap = util::broadcast_index_map(&ash[..ash.len() - 2], &batch);
    let bmap = util::broadcast_index_map(&bsh[..bsh.len() - 2], &batch);
    let mut out = vec![0f32; nb * m * n];
    for bi in 0..nb {
        let (ao, bo) = (amap[bi] * m * k, bmap[bi] * k * n);
        // SAFETY: the slices hold m*k, k*n and m*n elements at these offsets,
        // with the row-major strides given.
        unsafe {
            matrixmultiply::sgemm(
                m, k, n, 1.0,
                av[ao..].as_ptr(), k as isize, 1,
                bv[bo..].as_ptr(), n as isize, 1,
                0.0,
                out[bi * m * n..].as_mut_ptr(), n as isize, 1,
            );
        }
    }
    let mut shape = batch;
    if a.rank() > 1 {
        shape.push(m);
    }
    if b.rank() > 1 {
        shape.push(n);
    }
    Tensor::new(DType::F32, shape, Data::F32(out))
}

pub static MATMUL: OpDef = OpDef {
    mnemonic: "matmul",
    summary: "Matrix product with numpy.matmul broadcasting",
    operands: &[req("a"), req("b")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        if a.dtype() != b.dtype() {
            return Err(format!("operand element types differ: {} vs {}", a.dtype(), b.dtype()));
        }
        Ok(vec![TensorType::new(matmul_shape(&a.shape, &b.shape)?, a.dtype())])
    },
    eval: Some(|ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        let r = matmul_f32(a, b)?;
        if a.dtype == DType::F32 {
            return Ok(vec![r]);
        }
        if a.dtype.is_float() {
            return Ok(vec![Tensor::from_f64(a.dtype, r.shape.clone(), &r.to_f64_vec())]);
        }
        Err(format!("integer matmul on {} is done by matmul_integer", a.dtype))
    }),
};
