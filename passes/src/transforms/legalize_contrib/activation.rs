//! Gelu, QuickGelu, BiasGelu, FastGelu and BiasAdd: core activations after
//! broadcast adds.

use super::rewriter::{attrs, Rewriter};
use tessera_ir::{Attr, OpKind, ValueId};

fn float_input(rw: &Rewriter, i: usize, name: &str) -> Result<ValueId, String> {
    let v = rw.req(i, name)?;
    if !rw.dtype(v).is_float() {
        return Err(format!(
            "{name} must be a float tensor, got {}",
            rw.dtype(v)
        ));
    }
    Ok(v)
}

fn core_gelu(rw: &mut Rewriter, x: ValueId, approximate: &str) -> Result<Vec<ValueId>, String> {
    let y = rw.emit(
        OpKind::Gelu,
        &[x],
        attrs(&[("approximate", Attr::Str(approximate.into()))]),
    )?;
    Ok(vec![y])
}

/// `x + bias` (numpy broadcast), or `x` without a bias.
fn biased(rw: &mut Rewriter, x: ValueId, bias: Option<ValueId>) -> Result<ValueId, String> {
    match bias {
        Some(b) => rw.bin(OpKind::Add, x, b),
        None => Ok(x),
    }
}

pub fn gelu(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let x = float_input(rw, 0, "x")?;
    core_gelu(rw, x, "none")
}

pub fn bias_gelu(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let x = float_input(rw, 0, "a")?;
    let b = rw.req(1, "b")?;
    let s = biased(rw, x, Some(b))?;
    core_gelu(rw, s, "none")
}

pub fn fast_gelu(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let x = float_input(rw, 0, "x")?;
    let s = biased(rw, x, rw.opt(1))?;
    core_gelu(rw, s, "tanh")
}

/// `x * sigmoid(alpha x)` is the core `swish`.
pub fn quick_gelu(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let x = float_input(rw, 0, "x")?;
    // The attribute is an f32 in the model, as the contrib semantics read it.
    let alpha = rw.float("alpha")? as f32 as f64;
    let y = rw.emit(OpKind::Swish, &[x], attrs(&[("alpha", Attr::Float(alpha))]))?;
    Ok(vec![y])
}

/// `(x + bias) + skip`, rounded to the element type after the first add as
/// onnxruntime does.
pub fn bias_add(rw: &mut Rewriter) -> Result<Vec<ValueId>, String> {
    let x = float_input(rw, 0, "x")?;
    let xb = biased(rw, x, rw.opt(1))?;
    let skip = rw.req(2, "skip")?;
    Ok(vec![rw.bin(OpKind::Add, xb, skip)?])
}
