//! Concrete tensor values: constants (weights), and the values the reference
//! semantics compute.
//!
//! In memory every element is unpacked into the narrowest native Rust type that
//! holds it: i4/i2/ternary as `i8`, u4/u2 as `u8`, fp8/fp4/e8m0 as their raw
//! codes in `u8` (decode with [`crate::minifloat`]). Packed storage
//! ([`crate::packing`]) is for files and target memory.

use crate::dtype::DType;
use crate::minifloat;
use half::{bf16, f16};
use std::sync::Arc;

/// Element storage, one variant per in-memory representation.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F64(Vec<f64>),
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    /// i8, and the values of i4, i2 and ternary.
    I8(Vec<i8>),
    U64(Vec<u64>),
    U32(Vec<u32>),
    U16(Vec<u16>),
    /// u8, the values of u4 and u2, and the codes of fp8/fp4/e8m0.
    U8(Vec<u8>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    /// Complex numbers as interleaved (re, im) pairs.
    C64(Vec<f32>),
    C128(Vec<f64>),
}

/// Applies `$body` to the vector inside a [`Data`] of any numeric variant.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr, str $s:ident => $sbody:expr) => {
        match $data {
            $crate::tensor::Data::F64($v) => $body,
            $crate::tensor::Data::F32($v) => $body,
            $crate::tensor::Data::F16($v) => $body,
            $crate::tensor::Data::BF16($v) => $body,
            $crate::tensor::Data::I64($v) => $body,
            $crate::tensor::Data::I32($v) => $body,
            $crate::tensor::Data::I16($v) => $body,
            $crate::tensor::Data::I8($v) => $body,
            $crate::tensor::Data::U64($v) => $body,
            $crate::tensor::Data::U32($v) => $body,
            $crate::tensor::Data::U16($v) => $body,
            $crate::tensor::Data::U8($v) => $body,
            $crate::tensor::Data::Bool($v) => $body,
            $crate::tensor::Data::C64($v) => $body,
            $crate::tensor::Data::C128($v) => $body,
            $crate::tensor::Data::Str($s) => $sbody,
        }
    };
}

impl Data {
    /// Number of stored elements (complex pairs count once).
    pub fn len(&self) -> usize {
        match self {
            Data::C64(v) => v.len() / 2,
            Data::C128(v) => v.len() / 2,
            d => with_data!(d, v => v.len(), str s => s.len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zero-filled storage for `n` elements of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Data {
        match dtype {
            DType::F64 => Data::F64(vec![0.0; n]),
            DType::F32 => Data::F32(vec![0.0; n]),
            DType::F16 => Data::F16(vec![f16::ZERO; n]),
            DType::BF16 => Data::BF16(vec![bf16::ZERO; n]),
            DType::I64 => Data::I64(vec![0; n]),
            DType::I32 => Data::I32(vec![0; n]),
            DType::I16 => Data::I16(vec![0; n]),
            DType::I8 | DType::I4 | DType::I2 | DType::Ternary => Data::I8(vec![0; n]),
            DType::U64 => Data::U64(vec![0; n]),
            DType::U32 => Data::U32(vec![0; n]),
            DType::U16 => Data::U16(vec![0; n]),
            DType::U8 | DType::U4 | DType::U2 => Data::U8(vec![0; n]),
            // Code 0 is +0.0 in every narrow float format but e8m0 (where it is 2^-127).
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::F4E2M1 => Data::U8(vec![0; n]),
            DType::Bool => Data::Bool(vec![false; n]),
            DType::Str => Data::Str(vec![String::new(); n]),
            DType::Complex64 => Data::C64(vec![0.0; 2 * n]),
            DType::Complex128 => Data::C128(vec![0.0; 2 * n]),
        }
    }
}

/// A concrete tensor: element type, static shape and data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Constants are shared, never copied per use.
pub type SharedTensor = Arc<Tensor>;

impl Tensor {
    /// Builds a tensor, checking that the data matches dtype and shape.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Data) -> Result<Tensor, String> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(format!("{} elements for shape {:?}", data.len(), shape));
        }
        if std::mem::discriminant(&data) != std::mem::discriminant(&Data::zeros(dtype, 0)) {
            return Err(format!("storage does not match element type {dtype}"));
        }
        Ok(Tensor { dtype, shape, data })
    }

    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            dtype,
            shape,
            data: Data::zeros(dtype, n),
        }
    }

    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::new(DType::F32, shape, Data::F32(v)).expect("shape matches data")
    }

    pub fn i64(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor::new(DType::I64, shape, Data::I64(v)).expect("shape matches data")
    }

    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor::i64(vec![], vec![v])
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Element `i` as f64 (narrow floats decoded, bools 0/1; strings and the
    /// imaginary part of complex values are not representable: NaN / dropped).
    pub fn get_f64(&self, i: usize) -> f64 {
        match &self.data {
            Data::F64(v) => v[i],
            Data::F32(v) => v[i] as f64,
            Data::F16(v) => v[i].to_f64(),
            Data::BF16(v) => v[i].to_f64(),
            Data::I64(v) => v[i] as f64,
            Data::I32(v) => v[i] as f64,
            Data::I16(v) => v[i] as f64,
            Data::I8(v) => v[i] as f64,
            Data::U64(v) => v[i] as f64,
            Data::U32(v) => v[i] as f64,
            Data::U16(v) => v[i] as f64,
            Data::U8(v) => {
                if self.dtype.is_float() {
                    minifloat::decode(self.dtype, v[i]) as f64
                } else {
                    v[i] as f64
                }
            }
            Data::Bool(v) => v[i] as u8 as f64,
            Data::C64(v) => v[2 * i] as f64,
            Data::C128(v) => v[2 * i],
            Data::Str(_) => f64::NAN,
        }
    }

    /// All elements as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            Data::F64(v) => v.clone(),
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            _ => (0..self.len()).map(|i| self.get_f64(i)).collect(),
        }
    }

    /// All elements as f32 (the fast path for float kernels).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Data::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            _ => (0..self.len()).map(|i| self.get_f64(i) as f32).collect(),
        }
    }

    /// Element `i` as i64 (integer types and bools exactly; floats truncated).
    pub fn get_i64(&self, i: usize) -> i64 {
        match &self.data {
            Data::I64(v) => v[i],
            Data::I32(v) => v[i] as i64,
            Data::I16(v) => v[i] as i64,
            Data::I8(v) => v[i] as i64,
            Data::U64(v) => v[i] as i64,
            Data::U32(v) => v[i] as i64,
            Data::U16(v) => v[i] as i64,
            Data::U8(v) if !self.dtype.is_float() => v[i] as i64,
            Data::Bool(v) => v[i] as i64,
            _ => self.get_f64(i) as i64,
        }
    }

    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::I64(v) => v.clone(),
            _ => (0..self.len()).map(|i| self.get_i64(i)).collect(),
        }
    }

    /// Builds a tensor of `dtype` from f64 values, with the conversion rules of
    /// ONNX `Cast` (floats rounded to nearest-even; narrow floats saturate;
    /// integer targets truncate toward zero and wrap like C casts).
    pub fn from_f64(dtype: DType, shape: Vec<usize>, v: &[f64]) -> Tensor {
        let data = match dtype {
            DType::F64 => Data::F64(v.to_vec()),
            DType::F32 => Data::F32(v.iter().map(|&x| x as f32).collect()),
            // Through f32 with round-to-odd: rounding f64 to f16 directly in `half` misrounds near ties.
            DType::F16 => Data::F16(
                v.iter()
                    .map(|&x| f16::from_f32(minifloat::f64_to_f32_odd(x)))
                    .collect(),
            ),
            DType::BF16 => Data::BF16(
                v.iter()
                    .map(|&x| bf16::from_f32(minifloat::f64_to_f32_odd(x)))
                    .collect(),
            ),
            DType::I64 => Data::I64(v.iter().map(|&x| x as i64).collect()),
            DType::I32 => Data::I32(v.iter().map(|&x| x as i64 as i32).collect()),
            DType::I16 => Data::I16(v.iter().map(|&x| x as i64 as i16).collect()),
            DType::I8 => Data::I8(v.iter().map(|&x| x as i64 as i8).collect()),
            DType::I4 | DType::I2 | DType::Ternary => {
                let (lo, hi) = dtype.int_range().unwrap();
                Data::I8(v.iter().map(|&x| (x as i128).clamp(lo, hi) as i8).collect())
            }
            DType::U64 => Data::U64(v.iter().map(|&x| x as i128 as u64).collect()),
            DType::U32 => Data::U32(v.iter().map(|&x| x as i64 as u32).collect()),
            DType::U16 => Data::U16(v.iter().map(|&x| x as i64 as u16).collect()),
            DType::U8 => Data::U8(v.iter().map(|&x| x as i64 as u8).collect()),
            DType::U4 | DType::U2 => {
                let (lo, hi) = dtype.int_range().unwrap();
                Data::U8(v.iter().map(|&x| (x as i128).clamp(lo, hi) as u8).collect())
            }
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::F4E2M1 => Data::U8(
                v.iter()
                    .map(|&x| minifloat::encode(dtype, minifloat::f64_to_f32_odd(x), true))
                    .collect(),
            ),
            DType::Bool => Data::Bool(v.iter().map(|&x| x != 0.0).collect()),
            DType::Str => Data::Str(v.iter().map(|x| x.to_string()).collect()),
            DType::Complex64 => Data::C64(v.iter().flat_map(|&x| [x as f32, 0.0]).collect()),
            DType::Complex128 => Data::C128(v.iter().flat_map(|&x| [x, 0.0]).collect()),
        };
        Tensor { dtype, shape, data }
    }

    /// Builds an integer (or bool) tensor exactly from i64 values; floats by value.
    pub fn from_i64(dtype: DType, shape: Vec<usize>, v: &[i64]) -> Tensor {
        let data = match dtype {
            DType::I64 => Data::I64(v.to_vec()),
            DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
            DType::I16 => Data::I16(v.iter().map(|&x| x as i16).collect()),
            DType::I8 | DType::I4 | DType::I2 | DType::Ternary => {
                Data::I8(v.iter().map(|&x| x as i8).collect())
            }
            DType::U64 => Data::U64(v.iter().map(|&x| x as u64).collect()),
            DType::U32 => Data::U32(v.iter().map(|&x| x as u32).collect()),
            DType::U16 => Data::U16(v.iter().map(|&x| x as u16).collect()),
            DType::U8 | DType::U4 | DType::U2 if !dtype.is_float() => {
                Data::U8(v.iter().map(|&x| x as u8).collect())
            }
            DType::Bool => Data::Bool(v.iter().map(|&x| x != 0).collect()),
            _ => {
                return Tensor::from_f64(
                    dtype,
                    shape,
                    &v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                )
            }
        };
        Tensor { dtype, shape, data }
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        strides_of(&self.shape)
    }

    /// Raw little-endian bytes (sub-byte types packed per [`crate::packing`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| f(x)).collect()
        }
        match &self.data {
            _ if self.dtype.is_sub_byte() => {
                let codes: Vec<u8> = match &self.data {
                    Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
                    Data::U8(v) => v.clone(),
                    _ => unreachable!("sub-byte data is stored as i8/u8"),
                };
                crate::packing::pack(self.dtype, &codes)
            }
            Data::F64(v) => le(v, f64::to_le_bytes),
            Data::F32(v) => le(v, f32::to_le_bytes),
            Data::F16(v) => le(v, f16::to_le_bytes),
            Data::BF16(v) => le(v, bf16::to_le_bytes),
            Data::I64(v) => le(v, i64::to_le_bytes),
            Data::I32(v) => le(v, i32::to_le_bytes),
            Data::I16(v) => le(v, i16::to_le_bytes),
            Data::I8(v) => le(v, i8::to_le_bytes),
            Data::U64(v) => le(v, u64::to_le_bytes),
            Data::U32(v) => le(v, u32::to_le_bytes),
            Data::U16(v) => le(v, u16::to_le_bytes),
            Data::U8(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            Data::C64(v) => le(v, f32::to_le_bytes),
            Data::C128(v) => le(v, f64::to_le_bytes),
            Data::Str(_) => Vec::new(),
        }
    }

    /// Inverse of [`Tensor::to_bytes`] (not for strings).
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Result<Tensor, String> {
        let n: usize = shape.iter().product();
        let need = crate::packing::packed_len(dtype, n);
        if dtype == DType::Str {
            return Err("string tensors have no raw byte form".into());
        }
        if bytes.len() != need {
            return Err(format!(
                "{} bytes for {n} elements of {dtype} (expected {need})",
                bytes.len()
            ));
        }
        fn chunks<T, const N: usize>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| f(c.try_into().unwrap()))
                .collect()
        }
        let data = if dtype.is_sub_byte() {
            let codes = crate::packing::unpack(dtype, bytes, n).ok_or("short packed data")?;
            if dtype.is_signed_int() {
                Data::I8(
                    codes
                        .iter()
                        .map(|&c| crate::packing::sign_extend(c, dtype.bits()))
                        .collect(),
                )
            } else {
                Data::U8(codes)
            }
        } else {
            match Data::zeros(dtype, 0) {
                Data::F64(_) => Data::F64(chunks(bytes, f64::from_le_bytes)),
                Data::F32(_) => Data::F32(chunks(bytes, f32::from_le_bytes)),
                Data::F16(_) => Data::F16(chunks(bytes, f16::from_le_bytes)),
                Data::BF16(_) => Data::BF16(chunks(bytes, bf16::from_le_bytes)),
                Data::I64(_) => Data::I64(chunks(bytes, i64::from_le_bytes)),
                Data::I32(_) => Data::I32(chunks(bytes, i32::from_le_bytes)),
                Data::I16(_) => Data::I16(chunks(bytes, i16::from_le_bytes)),
                Data::I8(_) => Data::I8(bytes.iter().map(|&b| b as i8).collect()),
                Data::U64(_) => Data::U64(chunks(bytes, u64::from_le_bytes)),
                Data::U32(_) => Data::U32(chunks(bytes, u32::from_le_bytes)),
                Data::U16(_) => Data::U16(chunks(bytes, u16::from_le_bytes)),
                Data::U8(_) => Data::U8(bytes.to_vec()),
                Data::Bool(_) => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
                Data::C64(_) => Data::C64(chunks(bytes, f32::from_le_bytes)),
                Data::C128(_) => Data::C128(chunks(bytes, f64::from_le_bytes)),
                Data::Str(_) => unreachable!(),
            }
        };
        Tensor::new(dtype, shape, data)
    }
}

/// Row-major strides in elements.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_for_every_type() {
        for d in DType::ALL {
            if d == DType::Str {
                continue;
            }
            let t = Tensor::from_f64(d, vec![5], &[0.0, 1.0, 0.0, 1.0, 1.0]);
            let back = Tensor::from_bytes(d, vec![5], &t.to_bytes()).unwrap();
            assert_eq!(back, t, "{d}");
        }
    }

    #[test]
    fn int4_values_sign_extend() {
        let t = Tensor::from_i64(DType::I4, vec![3], &[-8, 7, -1]);
        let b = t.to_bytes();
        assert_eq!(b, vec![0x78, 0x0F]);
        assert_eq!(
            Tensor::from_bytes(DType::I4, vec![3], &b)
                .unwrap()
                .to_i64_vec(),
            vec![-8, 7, -1]
        );
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        assert!(Tensor::new(DType::F32, vec![2, 2], Data::F32(vec![1.0])).is_err());
        assert!(Tensor::new(DType::F32, vec![1], Data::I64(vec![1])).is_err());
    }
}
