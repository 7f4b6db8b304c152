//! Gated activations of the nn family.

use super::{float_dtype, float_values};
use crate::attr::AttrKind;
use crate::ops::*;

pub static SWIGLU: OpDef = OpDef {
    mnemonic: "swiglu",
    summary: "a * sigmoid(alpha * a) * b (gate a, value b; no broadcasting)",
    operands: &[req("a"), req("b")],
    results: Results::Fixed(1),
    attrs: &[attr("alpha", AttrKind::Float, Default::Float(1.0))],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        float_dtype(a, "a")?;
        if a.dtype() != b.dtype()
            || a.rank() != b.rank()
            || a.shape.iter().zip(&b.shape).any(|(x, y)| !x.compatible(y))
        {
            return Err(format!("a {a} and b {b} must have the same shape and type"));
        }
        Ok(vec![a.clone()])
    },
    eval: Some(|ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        if a.shape != b.shape || a.dtype != b.dtype {
            return Err(format!(
                "a {:?} {} and b {:?} {} must have the same shape and type",
                a.shape, a.dtype, b.shape, b.dtype
            ));
        }
        let alpha = ctx.float("alpha")?;
        let (av, bv) = (float_values(a, "a")?, float_values(b, "b")?);
        let y: Vec<f64> = av
            .iter()
            .zip(&bv)
            .map(|(&x, &v)| x / (1.0 + (-alpha * x).exp()) * v)
            .collect();
        Ok(vec![Tensor::from_f64(a.dtype, a.shape.clone(), &y)])
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_all;

    #[test]
    fn swiglu_gates_b() {
        // sigmoid(0) = 0.5, sigmoid(2) = 0.88079708
        let a = Tensor::f32(vec![2], vec![0., 2.]);
        let b = Tensor::f32(vec![2], vec![3., 0.5]);
        let y = run_all(&SWIGLU, &[&a, &b], &[], 1)[0].to_f64_vec();
        assert_eq!(y[0], 0.0);
        assert!((y[1] - 2.0 * 0.88079708 * 0.5).abs() < 1e-6);
    }
}
