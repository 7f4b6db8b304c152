//! Element types. Every storage type Tessera knows, low-bit ones first class.
//!
//! Sub-byte types (i4, u4, i2, u2, ternary, f4e2m1) are stored packed; see
//! [`crate::packing`] for the one definition of their bit order.

use std::fmt;

/// A scalar element type.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    F8E8M0,
    F4E2M1,
    I64,
    I32,
    I16,
    I8,
    I4,
    I2,
    U64,
    U32,
    U16,
    U8,
    U4,
    U2,
    /// {-1, 0, +1}, stored in 2 bits (two's complement, like i2; the code -2 is invalid).
    Ternary,
    Bool,
    /// ONNX string tensors; only data movement ops accept them.
    Str,
    Complex64,
    Complex128,
}

use DType::*;

/// The mnemonics, shared by printer and parser.
const NAMES: &[(DType, &str)] = &[
    (F64, "f64"),
    (F32, "f32"),
    (F16, "f16"),
    (BF16, "bf16"),
    (F8E4M3FN, "f8e4m3"),
    (F8E4M3FNUZ, "f8e4m3fnuz"),
    (F8E5M2, "f8e5m2"),
    (F8E5M2FNUZ, "f8e5m2fnuz"),
    (F8E8M0, "f8e8m0"),
    (F4E2M1, "f4e2m1"),
    (I64, "i64"),
    (I32, "i32"),
    (I16, "i16"),
    (I8, "i8"),
    (I4, "i4"),
    (I2, "i2"),
    (U64, "u64"),
    (U32, "u32"),
    (U16, "u16"),
    (U8, "u8"),
    (U4, "u4"),
    (U2, "u2"),
    (Ternary, "ternary"),
    (Bool, "i1"),
    (Str, "string"),
    (Complex64, "complex64"),
    (Complex128, "complex128"),
];

impl DType {
    pub const ALL: [DType; 27] = [
        F64, F32, F16, BF16, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, F4E2M1, I64, I32,
        I16, I8, I4, I2, U64, U32, U16, U8, U4, U2, Ternary, Bool, Str, Complex64, Complex128,
    ];

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(d, _)| *d == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    pub fn from_name(s: &str) -> Option<DType> {
        NAMES.iter().find(|(_, n)| *n == s).map(|(d, _)| *d)
    }

    /// Storage width in bits of one element (strings count as 0).
    pub fn bits(self) -> usize {
        match self {
            F64 | I64 | U64 | Complex64 => 64,
            Complex128 => 128,
            F32 | I32 | U32 => 32,
            F16 | BF16 | I16 | U16 => 16,
            F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 | I8 | U8 | Bool => 8,
            F4E2M1 | I4 | U4 => 4,
            I2 | U2 | Ternary => 2,
            Str => 0,
        }
    }

    /// Stored several elements per byte (see [`crate::packing`]).
    pub fn is_sub_byte(self) -> bool {
        self.bits() < 8 && self != Str
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            F64 | F32 | F16 | BF16 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 | F4E2M1
        )
    }

    pub fn is_int(self) -> bool {
        self.is_signed_int() || self.is_unsigned_int()
    }

    pub fn is_signed_int(self) -> bool {
        matches!(self, I64 | I32 | I16 | I8 | I4 | I2 | Ternary)
    }

    pub fn is_unsigned_int(self) -> bool {
        matches!(self, U64 | U32 | U16 | U8 | U4 | U2)
    }

    pub fn is_numeric(self) -> bool {
        self.is_float() || self.is_int()
    }

    /// Value range of an integer type as (min, max).
    pub fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            I64 => (i64::MIN as i128, i64::MAX as i128),
            I32 => (i32::MIN as i128, i32::MAX as i128),
            I16 => (i16::MIN as i128, i16::MAX as i128),
            I8 => (-128, 127),
            I4 => (-8, 7),
            I2 => (-2, 1),
            Ternary => (-1, 1),
            U64 => (0, u64::MAX as i128),
            U32 => (0, u32::MAX as i128),
            U16 => (0, u16::MAX as i128),
            U8 => (0, 255),
            U4 => (0, 15),
            U2 => (0, 3),
            Bool => (0, 1),
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d), "{d:?}");
        }
        let mut names: Vec<_> = NAMES.iter().map(|(_, n)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DType::ALL.len());
    }

    #[test]
    fn sub_byte_types_are_packed() {
        assert!(DType::I4.is_sub_byte() && DType::Ternary.is_sub_byte());
        assert!(!DType::I8.is_sub_byte() && !DType::Str.is_sub_byte());
    }
}
