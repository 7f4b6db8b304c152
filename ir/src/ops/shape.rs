//! Data movement and shape ops: reshape, transpose, concat, split, slice,
//! gather/scatter, pad, tile, expand, squeeze/unsqueeze, shape/size...

use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;

/// Output dims of a Reshape to `target` (ONNX rules: 0 copies the input dim
/// unless `allowzero`, one -1 is inferred), symbolic where the input is.
pub fn reshape_dims(input: &[Dim], target: &[i64], allowzero: bool) -> Result<Vec<Dim>, String> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err("reshape target has more than one -1".into());
                }
                out.push(Dim::fixed(1));
            }
            0 if !allowzero => out.push(input.get(i).cloned().ok_or("reshape copies a dim the input lacks")?),
            t if t < 0 => return Err(format!("reshape target has invalid dim {t}")),
            t => out.push(Dim::fixed(t)),
        }
    }
    let total = input.iter().fold(Dim::fixed(1), |acc, d| acc.mul(d));
    if let Some(i) = infer_at {
        let known = out.iter().fold(Dim::fixed(1), |acc, d| acc.mul(d));
        out[i] = if known.as_fixed() == Some(0) { Dim::fixed(0) } else { total.div_exact(&known) };
    } else {
        let prod = out.iter().fold(Dim::fixed(1), |acc, d| acc.mul(d));
        if let (Some(a), Some(b)) = (total.as_fixed(), prod.as_fixed()) {
            if a != b {
                return Err(format!("cannot reshape {a} elements into {b}"));
            }
        }
    }
    Ok(out)
}

pub static RESHAPE: OpDef = OpDef {
    mnemonic: "reshape",
    summary: "Same data, new shape (0 copies a dim, -1 is inferred)",
    operands: &[req("data"), req("shape")],
    results: Results::Fixed(1),
    attrs: &[attr("allowzero", AttrKind::Int, Default::Int(0))],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let s = ctx.input(1)?;
        let rank = s.static_shape().and_then(|v| v.first().copied()).ok_or("reshape target must have a static length")?;
        let dims = match ctx.const_input(1) {
            Some(t) => reshape_dims(&x.shape, &t.to_i64_vec(), ctx.int("allowzero")? != 0)?,
            None => vec![Dim::Unknown; rank as usize],
        };
        Ok(vec![x.with_shape(dims)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let target = ctx.input(1)?.to_i64_vec();
        let in_dims: Vec<Dim> = x.shape.iter().map(|&d| Dim::fixed(d as i64)).collect();
        let dims = reshape_dims(&in_dims, &target, ctx.int("allowzero")? != 0)?;
        let shape = dims.iter().map(|d| d.as_fixed().map(|v| v as usize)).collect::<Option<Vec<_>>>()
            .ok_or("reshape target does not divide the input")?;
        let mut t = x.clone();
        if shape.iter().product::<usize>() != t.len() {
            return Err(format!("cannot reshape {:?} into {:?}", x.shape, shape));
        }
        t.shape = shape;
        Ok(vec![t])
    }),
};
