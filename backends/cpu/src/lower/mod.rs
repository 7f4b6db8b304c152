//! Lowerings: one function per op mnemonic that writes the body of the op's
//! kernel in upstream MLIR (linalg, scf, vector, arith, math, memref).
//!
//! Each family module exports a table `LOWERINGS: &[(mnemonic, fn)]`; this
//! module only chains the tables, so adding a lowering touches one family
//! file. An op without a lowering is an error naming the op and its node,
//! never a fallback.

pub mod conv;
pub mod elementwise;
pub mod generic;
pub mod matmul;
pub mod nn;
pub mod quant;
pub mod reduce;
pub mod shape;

use crate::emit::kernel::KernelCtx;

pub type LowerFn = fn(&mut KernelCtx) -> Result<(), String>;

/// Every family's table, in lookup order.
const FAMILIES: &[&[(&str, LowerFn)]] = &[
    elementwise::LOWERINGS,
    shape::LOWERINGS,
    nn::LOWERINGS,
    conv::LOWERINGS,
    reduce::LOWERINGS,
    quant::LOWERINGS,
    matmul::LOWERINGS,
];

pub fn find(mnemonic: &str) -> Option<LowerFn> {
    FAMILIES
        .iter()
        .flat_map(|f| f.iter())
        .find(|(m, _)| *m == mnemonic)
        .map(|(_, f)| *f)
}

/// Mnemonics the cpu target lowers (views included).
pub fn supported() -> Vec<&'static str> {
    let mut v: Vec<&str> = FAMILIES
        .iter()
        .flat_map(|f| f.iter().map(|(m, _)| *m))
        .collect();
    v.extend([
        "reshape",
        "flatten",
        "squeeze",
        "unsqueeze",
        "identity",
        "constant",
    ]);
    v.sort();
    v.dedup();
    v
}

pub fn lower(k: &mut KernelCtx) -> Result<(), String> {
    let m = k.op.kind.mnemonic();
    let f = find(m).ok_or_else(|| format!("op tsr.{m} is not supported by the cpu target yet"))?;
    f(k)
}
