//! Numeric comparison of outputs against expected values, shared by
//! `tessera run --check`, the model tests and the node-test harness.

use tessera_ir::{DType, Data, Tensor};

/// Absolute and relative tolerance: |actual - expected| <= atol + rtol * |expected|.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Tolerance {
    /// Defaults per element type: exact for integers, bools and strings;
    /// scaled to the type's precision for floats.
    pub fn for_dtype(d: DType) -> Tolerance {
        let (atol, rtol) = match d {
            DType::F64 => (1e-7, 1e-7),
            DType::F32 => (1e-4, 1e-4),
            DType::F16 => (1e-2, 1e-2),
            DType::BF16 => (2e-2, 2e-2),
            d if d.is_float() => (0.125, 0.125),
            _ => (0.0, 0.0),
        };
        Tolerance { atol, rtol }
    }
}

/// The outcome of comparing one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub ok: bool,
    /// Largest |actual - expected| (NaN mismatches count as infinite).
    pub max_abs: f64,
    /// Element index (row-major) and the two values at the worst element.
    pub worst: Option<(Vec<usize>, f64, f64)>,
    /// Why it failed when it is not about values (shape, dtype).
    pub structural: Option<String>,
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.structural {
            return f.write_str(s);
        }
        write!(f, "max abs error {:.3e}", self.max_abs)?;
        if let Some((idx, a, e)) = &self.worst {
            let what = if self.ok {
                "largest at"
            } else {
                "worst failing element"
            };
            write!(f, "; {what} {idx:?}: got {a}, expected {e}")?;
        }
        Ok(())
    }
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        if shape[d] > 0 {
            idx[d] = i % shape[d];
            i /= shape[d];
        }
    }
    idx
}

pub fn compare(actual: &Tensor, expected: &Tensor, tol: Tolerance) -> Comparison {
    let structural = |m: String| Comparison {
        ok: false,
        max_abs: f64::INFINITY,
        worst: None,
        structural: Some(m),
    };
    if actual.dtype != expected.dtype {
        return structural(format!(
            "element type {} differs from the expected {}",
            actual.dtype, expected.dtype
        ));
    }
    if actual.shape != expected.shape {
        return structural(format!(
            "shape {:?} differs from the expected {:?}",
            actual.shape, expected.shape
        ));
    }
    if let (Data::Str(a), Data::Str(e)) = (&actual.data, &expected.data) {
        return match a.iter().zip(e).position(|(x, y)| x != y) {
            None => Comparison {
                ok: true,
                max_abs: 0.0,
                worst: None,
                structural: None,
            },
            Some(i) => structural(format!(
                "string at {:?} is {:?}, expected {:?}",
                unravel(i, &actual.shape),
                a[i],
                e[i]
            )),
        };
    }
    let exact = !actual.dtype.is_float();
    let mut max_abs = 0f64;
    // The element with the largest error while all pass; once one fails,
    // the one furthest over its tolerance (what a user needs to look at).
    let mut worst: Option<(usize, f64, f64)> = None;
    let mut worst_excess = f64::NEG_INFINITY;
    let mut ok = true;
    for i in 0..actual.len() {
        let (a, e) = if exact {
            (actual.get_i64(i) as f64, expected.get_i64(i) as f64)
        } else {
            (actual.get_f64(i), expected.get_f64(i))
        };
        let (err, fails) = if exact {
            let differ = actual.get_i64(i) != expected.get_i64(i);
            ((a - e).abs(), differ)
        } else if a.is_nan() || e.is_nan() {
            let both = a.is_nan() && e.is_nan();
            (if both { 0.0 } else { f64::INFINITY }, !both)
        } else if a.is_infinite() || e.is_infinite() {
            (if a == e { 0.0 } else { f64::INFINITY }, a != e)
        } else {
            let err = (a - e).abs();
            (err, err > tol.atol + tol.rtol * e.abs())
        };
        let excess = if fails {
            err - (tol.atol + tol.rtol * e.abs())
        } else {
            f64::NEG_INFINITY
        };
        if fails && (ok || excess > worst_excess) {
            worst_excess = excess;
            worst = Some((i, a, e));
        } else if ok && (worst.is_none() || err > max_abs) {
            worst = Some((i, a, e));
        }
        ok &= !fails;
        max_abs = max_abs.max(err);
    }
    Comparison {
        ok,
        max_abs,
        worst: worst.map(|(i, a, e)| (unravel(i, &actual.shape), a, e)),
        structural: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_and_beyond_tolerance() {
        let e = Tensor::f32(vec![3], vec![1.0, 2.0, 100.0]);
        let a = Tensor::f32(vec![3], vec![1.00005, 2.0, 100.009]);
        let c = compare(&a, &e, Tolerance::for_dtype(DType::F32));
        assert!(c.ok, "{c}");
        let a = Tensor::f32(vec![3], vec![1.0, 2.5, 100.0]);
        let c = compare(&a, &e, Tolerance::for_dtype(DType::F32));
        assert!(!c.ok);
        assert_eq!(c.worst.as_ref().unwrap().0, vec![1]);
        assert!((c.max_abs - 0.5).abs() < 1e-9);
    }

    #[test]
    fn ints_exact_nan_equal_shapes_checked() {
        let tol = Tolerance::for_dtype(DType::I64);
        assert!(
            compare(
                &Tensor::i64(vec![2], vec![1, 2]),
                &Tensor::i64(vec![2], vec![1, 2]),
                tol
            )
            .ok
        );
        assert!(
            !compare(
                &Tensor::i64(vec![2], vec![1, 3]),
                &Tensor::i64(vec![2], vec![1, 2]),
                tol
            )
            .ok
        );
        let nan = Tensor::f32(vec![1], vec![f32::NAN]);
        assert!(compare(&nan, &nan, Tolerance::for_dtype(DType::F32)).ok);
        let c = compare(
            &Tensor::f32(vec![2], vec![0.0, 0.0]),
            &Tensor::f32(vec![1, 2], vec![0.0, 0.0]),
            tol,
        );
        assert!(!c.ok && c.structural.is_some());
    }
}
