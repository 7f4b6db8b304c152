//! Softmax, LogSoftmax and Hardmax along one axis (opset 13 semantics).

use super::{float_dtype, float_values, for_each_lane};
use crate::attr::AttrKind;
use crate::ops::util::norm_axis;
use crate::ops::*;

/// Numerically stable softmax of one lane (the maximum is subtracted first).
/// A lane of all -inf gives NaN, as ONNX's definition does.
pub fn softmax_lane(v: &mut [f64]) {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for e in v.iter_mut() {
        *e = (*e - max).exp();
        sum += *e;
    }
    for e in v.iter_mut() {
        *e /= sum;
    }
}

pub fn log_softmax_lane(v: &mut [f64]) {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_sum = v.iter().map(|&e| (e - max).exp()).sum::<f64>().ln();
    for e in v.iter_mut() {
        *e = *e - max - log_sum;
    }
}

/// 1 at the first maximum of the lane, 0 elsewhere.
fn hardmax_lane(v: &mut [f64]) {
    let mut best: Option<(usize, f64)> = None;
    for (i, &e) in v.iter().enumerate() {
        if best.is_none_or(|(_, b)| e > b) {
            best = Some((i, e));
        }
    }
    for (i, e) in v.iter_mut().enumerate() {
        *e = if best.map(|(j, _)| j) == Some(i) {
            1.0
        } else {
            0.0
        };
    }
}

fn infer_lane_op(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0)?;
    float_dtype(x, "input")?;
    norm_axis(ctx.int("axis")?, x.rank())?;
    Ok(vec![x.clone()])
}

fn eval_lane_op(ctx: &EvalCtx, f: fn(&mut [f64])) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    let mut v = float_values(x, "input")?;
    if x.rank() == 0 {
        // A scalar is a single lane of length 1.
        f(&mut v);
        return Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &v)]);
    }
    let axis = norm_axis(ctx.int("axis")?, x.rank())?;
    for_each_lane(&mut v, &x.shape, axis, f);
    Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &v)])
}

macro_rules! lane_op {
    ($name:ident, $mn:literal, $summary:literal, $lane:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("input")],
            results: Results::Fixed(1),
            attrs: &[attr("axis", AttrKind::Int, Default::Int(-1))],
            traits: &[],
            infer: infer_lane_op,
            eval: Some(|ctx| eval_lane_op(ctx, $lane)),
        };
    };
}

lane_op!(
    SOFTMAX,
    "softmax",
    "exp(x) / sum(exp(x)) along `axis`",
    softmax_lane
);
lane_op!(
    LOG_SOFTMAX,
    "log_softmax",
    "x - log(sum(exp(x))) along `axis`",
    log_softmax_lane
);
lane_op!(
    HARDMAX,
    "hardmax",
    "One-hot of the first maximum along `axis`",
    hardmax_lane
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::ops::testing::run_all;

    fn run(def: &'static OpDef, x: &Tensor, axis: i64) -> Tensor {
        run_all(def, &[x], &[("axis", Attr::Int(axis))], 1).remove(0)
    }

    #[test]
    fn softmax_is_stable_for_large_inputs() {
        // numpy: softmax([1000, 1001, 1002]) = [0.09003057, 0.24472847, 0.66524096]
        let x = Tensor::f32(vec![1, 3], vec![1000., 1001., 1002.]);
        let y = run(&SOFTMAX, &x, -1).to_f64_vec();
        for (a, b) in y.iter().zip([0.09003057, 0.24472847, 0.66524096]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let l = run(&LOG_SOFTMAX, &x, 1).to_f64_vec();
        for (a, b) in l.iter().zip([-2.40760596, -1.40760596, -0.40760596]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn softmax_along_axis_0() {
        // Columns [0, ln 3] -> [0.25, 0.75].
        let x = Tensor::f32(vec![2, 2], vec![0., 0., 3f32.ln(), 3f32.ln()]);
        let y = run(&SOFTMAX, &x, 0).to_f64_vec();
        for (a, b) in y.iter().zip([0.25, 0.25, 0.75, 0.75]) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn hardmax_picks_first_maximum() {
        let x = Tensor::f32(vec![2, 3], vec![1., 3., 3., 2., 0., -1.]);
        assert_eq!(
            run(&HARDMAX, &x, -1).to_f64_vec(),
            vec![0., 1., 0., 1., 0., 0.]
        );
    }
}
