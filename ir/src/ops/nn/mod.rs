//! Neural-network ops: softmax, normalizations, attention, rotary embedding,
//! convolution and pooling.
//!
//! Kernels that are dominated by matrix products (attention, convolution)
//! compute in a [`Real`] type: f32 for f32/f16/bf16 operands, f64 for f64
//! operands, so that f64 models keep their precision. The cheaper
//! normalization and pooling kernels compute in f64 and round once to the
//! result type.

pub mod activation;
pub mod attention;
pub mod conv;
pub mod loss;
pub mod norm;
pub mod pool;
pub mod rnn;
pub mod softmax;
pub mod spatial;

pub use activation::SWIGLU;
pub use attention::{ATTENTION, ROTARY_EMBEDDING};
pub use conv::{CONV, CONV_TRANSPOSE};
pub use loss::{NEGATIVE_LOG_LIKELIHOOD_LOSS, SOFTMAX_CROSS_ENTROPY_LOSS};
pub use norm::{
    BATCH_NORMALIZATION, GROUP_NORMALIZATION, INSTANCE_NORMALIZATION, LAYER_NORMALIZATION,
    LP_NORMALIZATION, LRN, MEAN_VARIANCE_NORMALIZATION, RMS_NORMALIZATION,
};
pub use pool::{
    AVERAGE_POOL, GLOBAL_AVERAGE_POOL, GLOBAL_LP_POOL, GLOBAL_MAX_POOL, LP_POOL, MAX_POOL,
    MAX_UNPOOL,
};
pub use softmax::{HARDMAX, LOG_SOFTMAX, SOFTMAX};

use super::linalg::GemmElem;
use crate::dtype::DType;
use crate::ops::AttrAccess;
use crate::tensor::{Data, Tensor};
use crate::types::TensorType;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

/// The float type a kernel computes in (f32 or f64).
pub trait Real:
    Copy
    + PartialOrd
    + Default
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
    + GemmElem
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;

    fn of(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn is_neg_infinity(self) -> bool;

    /// The elements of a float tensor, converted.
    fn load(t: &Tensor) -> Vec<Self>;

    /// A tensor of `dtype` from computed values (rounded to nearest-even).
    fn store(dtype: DType, shape: Vec<usize>, v: Vec<Self>) -> Tensor;
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    const NEG_INFINITY: f32 = f32::NEG_INFINITY;
    fn of(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn exp(self) -> f32 {
        f32::exp(self)
    }
    fn tanh(self) -> f32 {
        f32::tanh(self)
    }
    fn is_neg_infinity(self) -> bool {
        self == f32::NEG_INFINITY
    }
    fn load(t: &Tensor) -> Vec<f32> {
        t.to_f32_vec()
    }
    fn store(dtype: DType, shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        if dtype == DType::F32 {
            return Tensor {
                dtype,
                shape,
                data: Data::F32(v),
            };
        }
        // f32 -> f64 is exact, so this rounds once to the target type.
        Tensor::from_f64(
            dtype,
            shape,
            &v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        )
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    const NEG_INFINITY: f64 = f64::NEG_INFINITY;
    fn of(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    fn tanh(self) -> f64 {
        f64::tanh(self)
    }
    fn is_neg_infinity(self) -> bool {
        self == f64::NEG_INFINITY
    }
    fn load(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec()
    }
    fn store(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Tensor {
        Tensor::from_f64(dtype, shape, &v)
    }
}

/// A strided view of a matrix inside a slice.
#[derive(Copy, Clone, Debug)]
pub struct Mat {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl Mat {
    /// A dense row-major matrix at `offset`.
    pub fn dense(offset: usize, rows: usize, cols: usize) -> Mat {
        Mat {
            offset,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The same elements read as the transposed matrix.
    pub fn t(self) -> Mat {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self, len: usize) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < len
    }
}

/// Bounds-checked strided matrix product `c = a·b + beta·c`.
pub fn gemm<R: Real>(
    a: &[R],
    am: Mat,
    b: &[R],
    bm: Mat,
    beta: R,
    c: &mut [R],
    cm: Mat,
) -> Result<(), String> {
    if am.cols != bm.rows || am.rows != cm.rows || bm.cols != cm.cols {
        return Err(format!(
            "matrix product of {}x{} by {}x{} into {}x{}",
            am.rows, am.cols, bm.rows, bm.cols, cm.rows, cm.cols
        ));
    }
    if !am.fits(a.len()) || !bm.fits(b.len()) || !cm.fits(c.len()) {
        return Err("matrix product addresses elements outside its operands".into());
    }
    if cm.rows == 0 || cm.cols == 0 {
        return Ok(());
    }
    if am.cols == 0 {
        for i in 0..cm.rows {
            for j in 0..cm.cols {
                let e = &mut c[cm.offset + i * cm.row_stride + j * cm.col_stride];
                *e = if beta == R::ZERO { R::ZERO } else { *e * beta };
            }
        }
        return Ok(());
    }
    R::gemm_strided(
        am.rows,
        am.cols,
        bm.cols,
        R::ONE,
        &a[am.offset..],
        (am.row_stride, am.col_stride),
        &b[bm.offset..],
        (bm.row_stride, bm.col_stride),
        beta,
        &mut c[cm.offset..],
        (cm.row_stride, cm.col_stride),
    );
    Ok(())
}

/// Runs a kernel generic over [`Real`] in the precision `dtype` calls for:
/// f64 for f64, f32 for the other float types.
#[macro_export]
#[doc(hidden)]
macro_rules! nn_real_dispatch {
    ($dtype:expr, $f:ident($($arg:expr),*)) => {
        match $dtype {
            $crate::dtype::DType::F64 => $f::<f64>($($arg),*),
            d if d.is_float() => $f::<f32>($($arg),*),
            d => Err(format!("expects a float tensor, got {d}")),
        }
    };
}
pub use nn_real_dispatch as real_dispatch;

/// The element type of a float operand, or an error naming it.
pub fn float_dtype(t: &TensorType, what: &str) -> Result<DType, String> {
    let d = t.dtype();
    if d.is_float() {
        Ok(d)
    } else {
        Err(format!("{what} must be a float tensor, got {d}"))
    }
}

/// A float operand's values in f64, checked to be float.
pub fn float_values(t: &Tensor, what: &str) -> Result<Vec<f64>, String> {
    if !t.dtype.is_float() {
        return Err(format!("{what} must be a float tensor, got {}", t.dtype));
    }
    Ok(t.to_f64_vec())
}

/// Reads an ints attribute as usizes >= `min`, defaulting to `fill` repeated `n` times when absent or empty.
pub fn usize_list(
    v: Option<Vec<i64>>,
    n: usize,
    fill: usize,
    min: usize,
    what: &str,
) -> Result<Vec<usize>, String> {
    match v {
        Some(v) if !v.is_empty() => {
            if v.len() != n {
                return Err(format!("{what} has {} values, expected {n}", v.len()));
            }
            v.iter()
                .map(|&x| {
                    usize::try_from(x)
                        .ok()
                        .filter(|&u| u >= min)
                        .ok_or_else(|| format!("{what} value {x} is invalid (must be >= {min})"))
                })
                .collect()
        }
        _ => Ok(vec![fill; n]),
    }
}

/// An optional ints attribute: None when absent.
pub fn opt_ints(ctx: &impl AttrAccess, name: &str) -> Result<Option<Vec<i64>>, String> {
    if ctx.has_attr(name) {
        ctx.ints(name).map(Some)
    } else {
        Ok(None)
    }
}

/// `(outer, len, inner)` sizes around `axis`: element (o, i, n) sits at `(o*len + i)*inner + n`.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Applies `f` to each 1-D lane along `axis` (gathered into a contiguous buffer).
pub fn for_each_lane(v: &mut [f64], shape: &[usize], axis: usize, mut f: impl FnMut(&mut [f64])) {
    let (outer, len, inner) = split_at_axis(shape, axis);
    let mut lane = vec![0f64; len];
    for o in 0..outer {
        for n in 0..inner {
            let base = o * len * inner + n;
            for (i, e) in lane.iter_mut().enumerate() {
                *e = v[base + i * inner];
            }
            f(&mut lane);
            for (i, e) in lane.iter().enumerate() {
                v[base + i * inner] = *e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_gemm_reads_transposes() {
        // a = [[1,2],[3,4]], b^T where b stored as [[5,6],[7,8]] -> a·b^T
        let a = [1f32, 2., 3., 4.];
        let b = [5f32, 6., 7., 8.];
        let mut c = [0f32; 4];
        gemm(
            &a,
            Mat::dense(0, 2, 2),
            &b,
            Mat::dense(0, 2, 2).t(),
            0.0,
            &mut c,
            Mat::dense(0, 2, 2),
        )
        .unwrap();
        assert_eq!(c, [17., 23., 39., 53.]);
        assert!(gemm(
            &a,
            Mat::dense(1, 2, 2),
            &b,
            Mat::dense(0, 2, 2),
            0.0,
            &mut c,
            Mat::dense(0, 2, 2)
        )
        .is_err());
    }
}
