//! Classification losses: NegativeLogLikelihoodLoss and
//! SoftmaxCrossEntropyLoss, with class weights, ignore_index and the
//! none/sum/mean reductions.

use super::softmax::log_softmax_lane;
use super::{float_dtype, float_values, for_each_lane};
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::ops::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

fn reduction(ctx: &impl AttrAccess) -> Result<Reduction, String> {
    match ctx.string("reduction")?.as_str() {
        "none" => Ok(Reduction::None),
        "sum" => Ok(Reduction::Sum),
        "mean" => Ok(Reduction::Mean),
        r => Err(format!("reduction must be none, sum or mean, got '{r}'")),
    }
}

/// -log_prob[n, target, d] * weight[target] for every (n, d), reduced.
/// `log_prob` is [N, C, D...] flattened; `target` is [N, D...].
fn nll(
    ctx: &EvalCtx,
    log_prob: &[f64],
    shape: &[usize],
    target: &Tensor,
    weight: Option<&Tensor>,
) -> Result<(Vec<f64>, Vec<usize>), String> {
    if shape.len() < 2 {
        return Err(format!("input must be [N, C, ...], got shape {shape:?}"));
    }
    let (n, c) = (shape[0], shape[1]);
    let inner: usize = shape[2..].iter().product();
    let mut want = vec![n];
    want.extend(&shape[2..]);
    if target.shape != want {
        return Err(format!("target shape {:?} must be {want:?}", target.shape));
    }
    if target.dtype.is_float() {
        return Err("target must hold integer class indices".into());
    }
    let weights = weight.map(|w| float_values(w, "weight")).transpose()?;
    if weights.as_ref().is_some_and(|w| w.len() != c) {
        return Err(format!("weight must have {c} elements"));
    }
    let ignore = if ctx.has_attr("ignore_index") {
        Some(ctx.int("ignore_index")?)
    } else {
        None
    };
    let (mut losses, mut wsum) = (Vec::with_capacity(n * inner), 0.0);
    for b in 0..n {
        for d in 0..inner {
            let t = target.get_i64(b * inner + d);
            if Some(t) == ignore {
                losses.push(0.0);
                continue;
            }
            let class = usize::try_from(t)
                .ok()
                .filter(|&k| k < c)
                .ok_or_else(|| format!("target class {t} is outside 0..{c}"))?;
            let w = weights.as_ref().map_or(1.0, |w| w[class]);
            losses.push(-log_prob[(b * c + class) * inner + d] * w);
            wsum += w;
        }
    }
    Ok(match reduction(ctx)? {
        Reduction::None => (losses, want),
        Reduction::Sum => (vec![losses.iter().sum()], vec![]),
        Reduction::Mean => (vec![losses.iter().sum::<f64>() / wsum], vec![]),
    })
}

/// [N, D...] for reduction none, else a scalar.
fn loss_type(ctx: &InferCtx, x: &TensorType) -> Result<TensorType, String> {
    if x.rank() < 2 {
        return Err(format!("input must be [N, C, ...], got rank {}", x.rank()));
    }
    let dims: Vec<Dim> = match reduction(ctx)? {
        Reduction::None => std::iter::once(x.shape[0].clone())
            .chain(x.shape[2..].iter().cloned())
            .collect(),
        _ => vec![],
    };
    Ok(x.with_shape(dims))
}

const LOSS_ATTRS: &[AttrSpec] = &[
    attr("ignore_index", AttrKind::Int, Default::Absent),
    attr("reduction", AttrKind::Str, Default::Str("mean")),
];

pub static NEGATIVE_LOG_LIKELIHOOD_LOSS: OpDef = OpDef {
    mnemonic: "negative_log_likelihood_loss",
    summary: "-input[n, target[n], ...] * weight[target], reduced",
    operands: &[req("input"), req("target"), opt("weight")],
    results: Results::Fixed(1),
    attrs: LOSS_ATTRS,
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        float_dtype(x, "input")?;
        Ok(vec![loss_type(ctx, x)?])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let v = float_values(x, "input")?;
        let (loss, shape) = nll(ctx, &v, &x.shape, ctx.input(1)?, ctx.opt_input(2))?;
        Ok(vec![Tensor::from_f64(x.dtype, shape, &loss)])
    }),
};

pub static SOFTMAX_CROSS_ENTROPY_LOSS: OpDef = OpDef {
    mnemonic: "softmax_cross_entropy_loss",
    summary: "Negative log-likelihood of log_softmax(scores) over the class axis 1",
    operands: &[req("scores"), req("labels"), opt("weights")],
    results: Results::Range(1, 2),
    attrs: LOSS_ATTRS,
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        float_dtype(x, "scores")?;
        let mut out = vec![loss_type(ctx, x)?, x.clone()];
        out.truncate(ctx.num_results);
        Ok(out)
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let mut lp = float_values(x, "scores")?;
        if x.rank() < 2 {
            return Err(format!(
                "scores must be [N, C, ...], got shape {:?}",
                x.shape
            ));
        }
        for_each_lane(&mut lp, &x.shape, 1, log_softmax_lane);
        let (loss, shape) = nll(ctx, &lp, &x.shape, ctx.input(1)?, ctx.opt_input(2))?;
        let mut out = vec![Tensor::from_f64(x.dtype, shape, &loss)];
        if ctx.num_results > 1 {
            out.push(Tensor::from_f64(x.dtype, x.shape.clone(), &lp));
        }
        Ok(out)
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::ops::testing::run_all as run;

    #[test]
    fn nll_weighted_mean_skips_ignored() {
        // Rows pick classes 1 and 0 (the third is ignored): (2*3 + 1*5) / (3 + 5).
        let x = Tensor::f32(vec![3, 2], vec![-1., -2., -5., -6., -7., -8.]);
        let t = Tensor::i64(vec![3], vec![1, 0, 1]);
        let w = Tensor::f32(vec![2], vec![5., 3.]);
        let y = run(
            &NEGATIVE_LOG_LIKELIHOOD_LOSS,
            &[&x, &t, &w],
            &[("ignore_index", Attr::Int(1))],
            1,
        );
        assert_eq!(y[0].to_f64_vec(), vec![5.0]);
        let y = run(
            &NEGATIVE_LOG_LIKELIHOOD_LOSS,
            &[&x, &t, &w],
            &[("reduction", Attr::Str("none".into()))],
            1,
        );
        assert_eq!(y[0].to_f64_vec(), vec![6., 25., 24.]);
    }

    #[test]
    fn cross_entropy_of_uniform_scores() {
        // Equal scores over 4 classes: loss ln 4 whatever the label.
        let x = Tensor::f32(vec![1, 4], vec![0.; 4]);
        let t = Tensor::i64(vec![1], vec![2]);
        let y = run(&SOFTMAX_CROSS_ENTROPY_LOSS, &[&x, &t], &[], 2);
        assert!((y[0].to_f64_vec()[0] - 4f64.ln()).abs() < 1e-6);
        assert_eq!(y[1].shape, vec![1, 4]);
    }
}
