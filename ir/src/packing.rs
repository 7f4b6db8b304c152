//! The one definition of packed sub-byte storage.
//!
//! Elements narrower than a byte (i4, u4, f4e2m1: 2 per byte; i2, u2,
//! ternary: 4 per byte) are packed **little-endian within the byte**: element
//! `i` lives in byte `i / per_byte`, at bit offset `(i % per_byte) * bits`.
//! So for 4-bit types element 0 is the low nibble and element 1 the high
//! nibble, which is the ONNX `INT4`/`UINT4` layout and the `MatMulNBits`
//! weight layout. A trailing partial byte is zero-padded. Signed values are
//! stored as two's-complement codes; ternary uses the i2 codes of -1, 0, +1.

use crate::dtype::DType;

/// Bytes needed to store `n` elements of `dtype` (packed when sub-byte).
pub fn packed_len(dtype: DType, n: usize) -> usize {
    (n * dtype.bits()).div_ceil(8)
}

/// Packs element codes (the low `bits` bits of each byte are used).
pub fn pack(dtype: DType, codes: &[u8]) -> Vec<u8> {
    let bits = dtype.bits();
    assert!(bits < 8, "pack() is for sub-byte types, got {dtype}");
    let per_byte = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    let mut out = vec![0u8; packed_len(dtype, codes.len())];
    for (i, &c) in codes.iter().enumerate() {
        out[i / per_byte] |= (c & mask) << ((i % per_byte) * bits);
    }
    out
}

/// Unpacks `n` element codes (zero-extended, not sign-extended).
pub fn unpack(dtype: DType, bytes: &[u8], n: usize) -> Option<Vec<u8>> {
    let bits = dtype.bits();
    let per_byte = 8 / bits;
    if bytes.len() < packed_len(dtype, n) {
        return None;
    }
    let mask = ((1u16 << bits) - 1) as u8;
    Some(
        (0..n)
            .map(|i| (bytes[i / per_byte] >> ((i % per_byte) * bits)) & mask)
            .collect(),
    )
}

/// The value of a signed sub-byte code (sign extension).
pub fn sign_extend(code: u8, bits: usize) -> i8 {
    let shift = 8 - bits;
    ((code << shift) as i8) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int4_low_nibble_first() {
        // elements 1, -1 (0xF), 7 -> bytes 0xF1, 0x07
        let codes = [1u8, 0xF, 7];
        let packed = pack(DType::I4, &codes);
        assert_eq!(packed, vec![0xF1, 0x07]);
        let back = unpack(DType::I4, &packed, 3).unwrap();
        assert_eq!(back, codes);
        assert_eq!(sign_extend(back[1], 4), -1);
    }

    #[test]
    fn two_bit_four_per_byte() {
        let codes = [0u8, 1, 3, 2, 1];
        let packed = pack(DType::I2, &codes);
        assert_eq!(packed.len(), 2);
        assert_eq!(packed[0], 0b10_11_01_00);
        assert_eq!(unpack(DType::I2, &packed, 5).unwrap(), codes);
        assert_eq!(sign_extend(3, 2), -1);
        assert!(unpack(DType::I2, &packed, 9).is_none());
    }
}
