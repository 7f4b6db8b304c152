//! Shape computations over symbolic dimensions.
//!
//! `tsr.dims` is what the exporters' `Shape → Gather → Unsqueeze → Concat`
//! chains become after import: one op computing a 1-D i64 tensor of
//! dimension polynomials (`["batch", "seq", "4", "32"]`) whose symbols are
//! read from the shapes of its operands (`sources`: for each symbol, the
//! operand and dim it is read from).

use super::*;
use crate::attr::AttrKind;
use crate::dim::{parse_poly, Dim};
use std::collections::HashMap;

/// Parses the `exprs` attribute into dims.
pub fn dims_exprs(ctx: &impl AttrAccess) -> Result<Vec<Dim>, String> {
    ctx.attr("exprs")
        .and_then(|a| match a {
            crate::Attr::Strs(v) => Some(v),
            crate::Attr::Ints(v) if v.is_empty() => Some(Vec::new()),
            _ => None,
        })
        .ok_or("attribute 'exprs' must be a list of strings")?
        .iter()
        .map(|e| parse_poly(e).map(Dim::Known))
        .collect()
}

fn symbol_sources(ctx: &impl AttrAccess) -> Result<Vec<(String, usize, usize)>, String> {
    let syms = match ctx.attr("symbols") {
        Some(crate::Attr::Strs(v)) => v,
        Some(crate::Attr::Ints(v)) if v.is_empty() => Vec::new(),
        _ => return Err("attribute 'symbols' must be a list of strings".into()),
    };
    let src = ctx.ints("sources")?;
    if src.len() != 2 * syms.len() || src.iter().any(|&s| s < 0) {
        return Err("'sources' must hold an (operand, dim) pair per symbol".into());
    }
    Ok(syms
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, src[2 * i] as usize, src[2 * i + 1] as usize))
        .collect())
}

pub static DIMS: OpDef = OpDef {
    mnemonic: "dims",
    summary: "A 1-D i64 tensor of dimension polynomials over symbols read from operand shapes",
    operands: &[variadic("sources")],
    results: Results::Fixed(1),
    attrs: &[
        attr("exprs", AttrKind::Strs, Default::Required),
        attr("symbols", AttrKind::Strs, Default::Required),
        attr("sources", AttrKind::Ints, Default::Required),
        // 0 for a scalar (exactly one expression), else 1.
        attr("rank", AttrKind::Int, Default::Int(1)),
    ],
    traits: &[Trait::ShapeOnly],
    infer: |ctx| {
        let exprs = dims_exprs(ctx)?;
        for (s, o, d) in symbol_sources(ctx)? {
            let t = ctx.input(o)?;
            let dim = t.shape.get(d).ok_or_else(|| {
                format!(
                    "symbol '{s}' is read from dim {d} of operand #{o}, which has rank {}",
                    t.rank()
                )
            })?;
            if !dim.same_as(&Dim::sym(&s)) {
                return Err(format!(
                    "symbol '{s}' is read from operand #{o} dim {d}, which is {dim}"
                ));
            }
        }
        match ctx.int("rank")? {
            1 => Ok(vec![TensorType::fixed(&[exprs.len() as i64], DType::I64)]),
            0 if exprs.len() == 1 => Ok(vec![TensorType::scalar(DType::I64)]),
            r => Err(format!("rank {r} with {} expressions", exprs.len())),
        }
    },
    eval: Some(|ctx| {
        let exprs = dims_exprs(ctx)?;
        let mut env = HashMap::new();
        for (s, o, d) in symbol_sources(ctx)? {
            let n = *ctx
                .input(o)?
                .shape
                .get(d)
                .ok_or_else(|| format!("symbol '{s}': operand #{o} has no dim {d}"))?;
            env.insert(s, n as i64);
        }
        let v = exprs
            .iter()
            .map(|e| {
                e.eval(&|s| env.get(s).copied())
                    .ok_or_else(|| format!("cannot evaluate dimension {e}"))
            })
            .collect::<Result<Vec<i64>, String>>()?;
        let shape = if ctx.int("rank")? == 0 {
            vec![]
        } else {
            vec![v.len()]
        };
        Ok(vec![Tensor::i64(shape, v)])
    }),
};
