//! Helpers shared by the op families' unit tests: run an op's `infer` or
//! `eval` directly, without building a graph.

use super::*;
use crate::dim::Dim;
use std::sync::Arc;

/// Builds an attribute map from `(name, value)` pairs.
pub fn attrs(list: &[(&str, Attr)]) -> Attrs {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Wraps operands that are all present.
pub fn some<'a>(inputs: &[&'a Tensor]) -> Vec<Option<&'a Tensor>> {
    inputs.iter().map(|t| Some(*t)).collect()
}

/// Runs `eval` on borrowed, possibly missing operands.
pub fn eval_with(
    def: &'static OpDef,
    attrs: &Attrs,
    inputs: &[Option<&Tensor>],
    num_results: usize,
) -> Result<Vec<Tensor>, String> {
    let ctx = EvalCtx {
        def,
        attrs,
        inputs: inputs.to_vec(),
        num_results,
    };
    (def.eval.ok_or("no eval")?)(&ctx)
}

/// Runs `eval` on owned, possibly missing operands.
pub fn eval(
    def: &'static OpDef,
    attrs: &Attrs,
    inputs: &[Option<Tensor>],
    num_results: usize,
) -> Result<Vec<Tensor>, String> {
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
    eval_with(def, attrs, &refs, num_results)
}

/// Runs `eval` with attributes given as pairs.
pub fn run(
    def: &'static OpDef,
    inputs: &[Option<&Tensor>],
    list: &[(&str, Attr)],
    num_results: usize,
) -> Result<Vec<Tensor>, String> {
    eval_with(def, &attrs(list), inputs, num_results)
}

/// Runs `eval` on operands that are all present; panics on an eval error.
pub fn run_all(
    def: &'static OpDef,
    inputs: &[&Tensor],
    list: &[(&str, Attr)],
    num_results: usize,
) -> Vec<Tensor> {
    run(def, &some(inputs), list, num_results).unwrap()
}

/// Runs `infer` on operand types, with optional constant and symbolic
/// operand values.
pub fn infer(
    def: &'static OpDef,
    attrs: &Attrs,
    operands: &[TensorType],
    consts: &[Option<Tensor>],
    syms: &[Option<Vec<Dim>>],
    num_results: usize,
) -> Result<Vec<TensorType>, String> {
    let shared: Vec<Option<SharedTensor>> =
        consts.iter().map(|c| c.clone().map(Arc::new)).collect();
    let ctx = InferCtx {
        def,
        attrs,
        operands: operands.iter().map(Some).collect(),
        consts: (0..operands.len())
            .map(|i| shared.get(i).and_then(|c| c.as_ref()))
            .collect(),
        syms: (0..operands.len())
            .map(|i| syms.get(i).cloned().flatten())
            .collect(),
        num_results,
    };
    (def.infer)(&ctx)
}

pub fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec()
}
