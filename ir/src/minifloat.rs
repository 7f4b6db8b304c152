//! Narrow float formats (fp8 variants, e8m0, fp4) as codes in a byte.
//!
//! Decoding follows the ONNX definitions. Encoding rounds to nearest, ties to
//! even, and either saturates to the largest finite value (ONNX `Cast`
//! `saturate=1`, the default) or overflows to inf/NaN.

use crate::dtype::DType;
use std::sync::OnceLock;

/// f64 → f32 rounded to odd: truncated, with the last bit set when inexact.
/// A second rounding of the result to nearest-even into any format of at
/// most 22 significand bits (f16, bf16, fp8, fp4) is then the correct
/// rounding of the f64 value; rounding twice to nearest could misround ties.
pub fn f64_to_f32_odd(x: f64) -> f32 {
    let f = x as f32;
    if f as f64 == x || x.is_nan() {
        return f;
    }
    // Step back toward zero where nearest rounding went away from it (an
    // overflow to inf steps back to f32::MAX), then mark inexactness.
    let t = if (f as f64).abs() > x.abs() {
        f32::from_bits(f.to_bits() - 1)
    } else {
        f
    };
    f32::from_bits(t.to_bits() | 1)
}

struct Format {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    /// IEEE-style inf/NaN in the top exponent (e5m2).
    ieee: bool,
    /// "fnuz": 0x80 is the only NaN, no negative zero, no inf.
    fnuz: bool,
}

fn format(d: DType) -> Option<Format> {
    Some(match d {
        DType::F8E4M3FN => Format {
            exp_bits: 4,
            man_bits: 3,
            bias: 7,
            ieee: false,
            fnuz: false,
        },
        DType::F8E4M3FNUZ => Format {
            exp_bits: 4,
            man_bits: 3,
            bias: 8,
            ieee: false,
            fnuz: true,
        },
        DType::F8E5M2 => Format {
            exp_bits: 5,
            man_bits: 2,
            bias: 15,
            ieee: true,
            fnuz: false,
        },
        DType::F8E5M2FNUZ => Format {
            exp_bits: 5,
            man_bits: 2,
            bias: 16,
            ieee: false,
            fnuz: true,
        },
        DType::F4E2M1 => Format {
            exp_bits: 2,
            man_bits: 1,
            bias: 1,
            ieee: false,
            fnuz: false,
        },
        _ => return None,
    })
}

/// Decodes one code of a narrow float type.
pub fn decode(d: DType, code: u8) -> f32 {
    if d == DType::F8E8M0 {
        return if code == 0xFF {
            f32::NAN
        } else {
            2f32.powi(code as i32 - 127)
        };
    }
    let f = format(d).expect("decode() takes a narrow float type");
    let total = 1 + f.exp_bits + f.man_bits;
    let code = code & ((1u16 << total) - 1) as u8;
    let sign_bit = 1u8 << (total - 1);
    if f.fnuz && code == sign_bit {
        return f32::NAN;
    }
    let neg = code & sign_bit != 0;
    let e = ((code >> f.man_bits) & ((1 << f.exp_bits) - 1)) as i32;
    let m = (code & ((1 << f.man_bits) - 1)) as i32;
    let e_max = (1 << f.exp_bits) - 1;
    if f.ieee && e == e_max {
        let v = if m == 0 { f32::INFINITY } else { f32::NAN };
        return if neg { -v } else { v };
    }
    if !f.ieee && !f.fnuz && d != DType::F4E2M1 && e == e_max && m == (1 << f.man_bits) - 1 {
        return f32::NAN; // e4m3fn: S.1111.111
    }
    let mag = if e == 0 {
        m as f32 * 2f32.powi(1 - f.bias - f.man_bits as i32)
    } else {
        (1.0 + m as f32 / (1 << f.man_bits) as f32) * 2f32.powi(e - f.bias)
    };
    if neg {
        -mag
    } else {
        mag
    }
}

/// (value, code) pairs of one format, sorted by value.
type CodeTable = Vec<(f32, u8)>;

/// (value, code) for every non-negative finite code, sorted by value.
fn positive_table(d: DType) -> &'static [(f32, u8)] {
    static TABLES: OnceLock<Vec<(DType, CodeTable)>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
            DType::F4E2M1,
        ]
        .into_iter()
        .map(|d| {
            let n = 1u16 << d.bits();
            let mut t: Vec<(f32, u8)> = (0..n / 2)
                .map(|c| (decode(d, c as u8), c as u8))
                .filter(|(v, _)| v.is_finite())
                .collect();
            t.sort_by(|a, b| a.0.total_cmp(&b.0));
            (d, t)
        })
        .collect()
    });
    &tables
        .iter()
        .find(|(t, _)| *t == d)
        .expect("narrow float")
        .1
}

/// Encodes `v`, rounding to nearest (ties to even code).
pub fn encode(d: DType, v: f32, saturate: bool) -> u8 {
    if d == DType::F8E8M0 {
        if v.is_nan() || v <= 0.0 {
            return 0xFF;
        }
        // ONNX's default for e8m0 rounds up: the smallest power of two >= v.
        let e = v.log2().ceil() as i32 + 127;
        return e.clamp(0, 254) as u8;
    }
    let f = format(d).expect("encode() takes a narrow float type");
    let total = 1 + f.exp_bits + f.man_bits;
    let sign_bit = 1u8 << (total - 1);
    let all_ones = ((1u16 << total) - 1) as u8;
    let nan = if f.fnuz {
        sign_bit
    } else if f.ieee {
        all_ones ^ sign_bit // 0x7F: exp all ones, mantissa nonzero
    } else if d == DType::F4E2M1 {
        0 // fp4 has no NaN; ONNX maps NaN to 0... keep deterministic
    } else {
        all_ones ^ sign_bit
    };
    if v.is_nan() {
        return nan;
    }
    let neg = v.is_sign_negative();
    let a = v.abs();
    let table = positive_table(d);
    let (max_v, max_c) = *table.last().unwrap();
    let code = if a > max_v {
        let rounds_back = a.is_finite() && {
            // values just above max still round down to max (half an ulp)
            let (prev_v, _) = table[table.len() - 2];
            a < max_v + (max_v - prev_v) / 2.0
        };
        if saturate || rounds_back {
            max_c
        } else if f.ieee {
            (((1u16 << f.exp_bits) - 1) << f.man_bits) as u8 // inf
        } else {
            return nan;
        }
    } else {
        let idx = table.partition_point(|(x, _)| *x < a);
        if idx == 0 {
            table[0].1
        } else {
            let (hi_v, hi_c) = table[idx];
            let (lo_v, lo_c) = table[idx - 1];
            if a - lo_v < hi_v - a {
                lo_c
            } else if a - lo_v > hi_v - a {
                hi_c
            } else if lo_c % 2 == 0 {
                lo_c
            } else {
                hi_c
            }
        }
    };
    if neg && !(f.fnuz && code == 0) {
        code | sign_bit
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_known_values() {
        assert_eq!(decode(DType::F8E4M3FN, 0x7E), 448.0);
        assert!(decode(DType::F8E4M3FN, 0x7F).is_nan());
        assert_eq!(decode(DType::F8E4M3FN, 0x38), 1.0);
        assert_eq!(encode(DType::F8E4M3FN, 1.0, true), 0x38);
        assert_eq!(encode(DType::F8E4M3FN, 1000.0, true), 0x7E);
        assert_eq!(encode(DType::F8E4M3FN, -1.0, true), 0xB8);
    }

    #[test]
    fn e5m2_and_fp4() {
        assert_eq!(decode(DType::F8E5M2, 0x7C), f32::INFINITY);
        assert_eq!(decode(DType::F8E5M2, 0x7B), 57344.0);
        assert_eq!(encode(DType::F8E5M2, 1e6, false), 0x7C);
        let fp4: Vec<f32> = (0..8).map(|c| decode(DType::F4E2M1, c)).collect();
        assert_eq!(fp4, vec![0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
        assert_eq!(encode(DType::F4E2M1, 2.5, true), 4); // tie -> even code (2.0)
    }

    #[test]
    fn every_code_round_trips() {
        for d in [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
        ] {
            for c in 0..=255u8 {
                let v = decode(d, c);
                if v.is_finite() && !(v == 0.0 && c != 0) {
                    assert_eq!(encode(d, v, true), c, "{d} {c:#x} {v}");
                }
            }
        }
    }
}
