//! Structural ops: constants and identity.

use super::*;
use crate::attr::AttrKind;

/// `%w = tsr.constant @"name" : tensor<...>`: a value stored once in the
/// graph's constant table. Its type is the constant's; `eval` is done by the
/// interpreter, which owns the table.
pub static CONSTANT: OpDef = OpDef {
    mnemonic: "constant",
    summary: "A graph constant (weights, folded values), referenced by handle",
    operands: &[],
    results: Results::Fixed(1),
    attrs: &[attr("value", AttrKind::Const, Default::Required)],
    traits: &[],
    // The verifier checks the result against the constant table; nothing to infer here.
    infer: |_| Err("constant types come from the constant table".into()),
    eval: None,
};

pub static IDENTITY: OpDef = OpDef {
    mnemonic: "identity",
    summary: "Returns its operand unchanged",
    operands: &[req("input")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: util::infer_same,
    eval: Some(|ctx| Ok(vec![ctx.input(0)?.clone()])),
};
