//! Tessera's own fused ops: no ONNX counterpart, made by the e-graph
//! optimizer's `fusion` rules from ops that the exporters write separately.
//!
//! [`LINEAR`] (`tsr.linear`) is a matrix product with its epilogue:
//!
//! ```text
//! y = act(matmul(a, b) + bias) + residual
//! ```
//!
//! - `matmul` is numpy.matmul ([`super::linalg::MATMUL`]); in practice `a` is
//!   `[..., M, K]` activations and `b` a constant `[K, N]` weight.
//! - `bias` and `residual` are optional and broadcast *onto* the product's
//!   shape (numpy rules, one direction only: the result always has the
//!   product's shape). `bias` is usually a constant `[N]`; `residual` the
//!   activation the block's skip connection adds.
//! - `act` is the `activation` attribute: `none`, `relu`, `gelu` (erf form),
//!   `gelu_tanh` (tanh approximation), `silu` (`x * sigmoid(x)`), `sigmoid`
//!   or `tanh`. It applies before the residual is added.
//!
//! Every step rounds to the element type exactly as the unfused ops would
//! (the evaluation runs their own definitions in sequence), so a rewrite to
//! `linear` is bit-exact on the reference interpreter; a backend may keep
//! the intermediate in registers and round once.

use super::elementwise::{ADD, GELU, RELU, SIGMOID, SWISH, TANH};
use super::linalg::{matmul_any, matmul_shape};
use super::util::broadcast_dims;
use super::*;
use crate::attr::AttrKind;

/// An epilogue activation: its `activation` name and the unary op (with the
/// attributes) that defines it.
struct Activation {
    name: &'static str,
    def: &'static OpDef,
    attrs: fn() -> Attrs,
}

fn no_attrs() -> Attrs {
    Attrs::new()
}

fn tanh_gelu_attrs() -> Attrs {
    let mut a = Attrs::new();
    a.insert("approximate".into(), Attr::Str("tanh".into()));
    a
}

const ACTIVATIONS: &[Activation] = &[
    Activation {
        name: "relu",
        def: &RELU,
        attrs: no_attrs,
    },
    Activation {
        name: "gelu",
        def: &GELU,
        attrs: no_attrs,
    },
    Activation {
        name: "gelu_tanh",
        def: &GELU,
        attrs: tanh_gelu_attrs,
    },
    Activation {
        name: "silu",
        def: &SWISH,
        attrs: no_attrs,
    },
    Activation {
        name: "sigmoid",
        def: &SIGMOID,
        attrs: no_attrs,
    },
    Activation {
        name: "tanh",
        def: &TANH,
        attrs: no_attrs,
    },
];

/// The activation names `linear` accepts, `none` first.
pub fn activation_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("none").chain(ACTIVATIONS.iter().map(|a| a.name))
}

/// The activation named `name`; `None` for `none`.
fn activation(name: &str) -> Result<Option<&'static Activation>, String> {
    if name == "none" {
        return Ok(None);
    }
    ACTIVATIONS
        .iter()
        .find(|a| a.name == name)
        .map(Some)
        .ok_or_else(|| {
            let known: Vec<&str> = activation_names().collect();
            format!(
                "unknown activation \"{name}\" (known: {})",
                known.join(", ")
            )
        })
}

/// Runs another op's reference semantics on concrete operands.
fn run_def(def: &'static OpDef, attrs: &Attrs, inputs: &[&Tensor]) -> Result<Tensor, String> {
    let eval = def
        .eval
        .ok_or_else(|| format!("{} has no reference semantics", def.mnemonic))?;
    let ctx = EvalCtx {
        def,
        attrs,
        inputs: inputs.iter().map(|t| Some(*t)).collect(),
        num_results: 1,
    };
    eval(&ctx)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{} returned no result", def.mnemonic))
}

/// Checks that an epilogue operand broadcasts onto `out` without growing it.
fn check_onto(what: &str, t: &TensorType, out: &[crate::dim::Dim]) -> Result<(), String> {
    let b = broadcast_dims(out, &t.shape)?;
    if b.len() != out.len() || b.iter().zip(out).any(|(x, y)| !x.same_as(y)) {
        return Err(format!(
            "{what} {t} does not broadcast onto the product's shape"
        ));
    }
    Ok(())
}

pub static LINEAR: OpDef = OpDef {
    mnemonic: "linear",
    summary: "act(matmul(a, b) + bias) + residual; bias and residual optional and broadcast onto the product; act: none|relu|gelu|gelu_tanh|silu|sigmoid|tanh",
    operands: &[req("a"), req("b"), opt("bias"), opt("residual")],
    results: Results::Fixed(1),
    attrs: &[attr("activation", AttrKind::Str, Default::Str("none"))],
    traits: &[],
    infer: |ctx| {
        activation(&ctx.string("activation")?)?;
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        let d = a.dtype();
        if !d.is_float() || b.dtype() != d {
            return Err(format!("a {a} and b {b} must have the same float type"));
        }
        let out = matmul_shape(&a.shape, &b.shape)?;
        for (i, what) in [(2, "bias"), (3, "residual")] {
            if let Some(t) = ctx.opt_input(i) {
                if t.dtype() != d {
                    return Err(format!("{what} {t} must have the element type {d}"));
                }
                check_onto(what, t, &out)?;
            }
        }
        Ok(vec![TensorType::new(out, d)])
    },
    eval: Some(|ctx| {
        let act = activation(&ctx.string("activation")?)?;
        let mut y = matmul_any(ctx.input(0)?, ctx.input(1)?)?;
        let add = |y: Tensor, t: &Tensor, what: &str| -> Result<Tensor, String> {
            let s = run_def(&ADD, &Attrs::new(), &[&y, t])?;
            if s.shape != y.shape {
                return Err(format!(
                    "{what} {:?} does not broadcast onto the product {:?}",
                    t.shape, y.shape
                ));
            }
            Ok(s)
        };
        if let Some(bias) = ctx.opt_input(2) {
            y = add(y, bias, "bias")?;
        }
        if let Some(a) = act {
            y = run_def(a.def, &(a.attrs)(), &[&y])?;
        }
        if let Some(r) = ctx.opt_input(3) {
            y = add(y, r, "residual")?;
        }
        Ok(vec![y])
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run_all;

    #[test]
    fn linear_applies_bias_activation_then_residual() {
        // a = [[1, 2]], b = [[1, -1], [1, -2]] -> a@b = [[3, -5]].
        let a = Tensor::f32(vec![1, 2], vec![1., 2.]);
        let b = Tensor::f32(vec![2, 2], vec![1., -1., 1., -2.]);
        let bias = Tensor::f32(vec![2], vec![1., 2.]);
        let res = Tensor::f32(vec![1, 2], vec![10., 20.]);
        let relu = [("activation", Attr::Str("relu".into()))];
        let y = run_all(&LINEAR, &[&a, &b, &bias, &res], &relu, 1)[0].to_f64_vec();
        // relu([4, -3]) + [10, 20]
        assert_eq!(y, vec![14.0, 20.0]);
        let y = run_all(&LINEAR, &[&a, &b], &[], 1)[0].to_f64_vec();
        assert_eq!(y, vec![3.0, -5.0]);
    }

    #[test]
    fn linear_refuses_unknown_activations_and_growing_operands() {
        let a = TensorType::fixed(&[2, 3], DType::F32);
        let b = TensorType::fixed(&[3, 4], DType::F32);
        let big = TensorType::fixed(&[5, 2, 4], DType::F32);
        let infer = |attrs: &Attrs, ops: Vec<Option<&TensorType>>| {
            let n = ops.len();
            (LINEAR.infer)(&InferCtx {
                def: &LINEAR,
                attrs,
                operands: ops,
                consts: vec![None; n],
                syms: vec![None; n],
                num_results: 1,
            })
        };
        let mut attrs = Attrs::new();
        attrs.insert("activation".into(), Attr::Str("swoosh".into()));
        assert!(infer(&attrs, vec![Some(&a), Some(&b)])
            .unwrap_err()
            .contains("unknown activation"));
        let err = infer(&Attrs::new(), vec![Some(&a), Some(&b), None, Some(&big)]).unwrap_err();
        assert!(err.contains("residual"), "{err}");
        let ok = infer(&Attrs::new(), vec![Some(&a), Some(&b), None, None]).unwrap();
        assert_eq!(ok[0], TensorType::fixed(&[2, 4], DType::F32));
    }
}
