//! Elementwise ops: arithmetic, math functions, activations, comparisons and
//! logic. Binary ops broadcast numpy-style.

use super::util::{eval_binary, eval_unary_float, infer_broadcast, infer_same};
use super::*;

/// A broadcasting binary arithmetic op, defined by its float and integer scalar functions.
macro_rules! binary_arith {
    ($name:ident, $mn:literal, $summary:literal, [$($tr:expr),*], $ff:expr, $fi:expr) => {
        pub static $name: OpDef = OpDef {
            mnemonic: $mn,
            summary: $summary,
            operands: &[req("lhs"), req("rhs")],
            results: Results::Fixed(1),
            attrs: &[],
            traits: &[Trait::Elementwise $(, $tr)*],
            infer: |ctx| infer_broadcast(ctx, None),
            eval: Some(|ctx| {
                let (a, b) = (ctx.input(0)?, ctx.input(1)?);
                Ok(vec![eval_binary(a, b, a.dtype, $ff, $fi)?])
            }),
        };
    };
}

binary_arith!(ADD, "add", "Elementwise a + b", [Trait::Commutative], |a, b| a + b, |a, b| Ok(a.wrapping_add(b)));
binary_arith!(SUB, "sub", "Elementwise a - b", [], |a, b| a - b, |a, b| Ok(a.wrapping_sub(b)));
binary_arith!(MUL, "mul", "Elementwise a * b", [Trait::Commutative], |a, b| a * b, |a, b| Ok(a.wrapping_mul(b)));
binary_arith!(DIV, "div", "Elementwise a / b (integer division truncates)", [], |a, b| a / b, |a, b| {
    if b == 0 {
        Err("integer division by zero".to_string())
    } else {
        Ok(a.wrapping_div(b))
    }
});

pub static RELU: OpDef = OpDef {
    mnemonic: "relu",
    summary: "max(x, 0)",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: infer_same,
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        if x.dtype.is_float() {
            return Ok(vec![eval_unary_float(x, |v| if v < 0.0 { 0.0 } else { v })?]);
        }
        let v: Vec<i64> = x.to_i64_vec().into_iter().map(|e| e.max(0)).collect();
        Ok(vec![Tensor::from_i64(x.dtype, x.shape.clone(), &v)])
    }),
};
