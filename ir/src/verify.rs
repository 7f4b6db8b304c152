//! The verifier: structural SSA checks, op signatures, attributes, and result
//! types against each op's `infer`. It collects every error rather than
//! stopping at the first, each naming the op and its source node.

use crate::attr::Attr;
use crate::builder::infer_op;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::Graph;
use crate::ops::{Arity, Default, OpKind, Results};
use crate::types::{quant_consts, TensorType};

fn types_agree(declared: &TensorType, inferred: &TensorType) -> Result<(), String> {
    if declared.elem != inferred.elem {
        return Err(format!(
            "result type {declared} does not match the inferred {inferred}"
        ));
    }
    if declared.rank() != inferred.rank() {
        return Err(format!(
            "result rank {} does not match the inferred {}",
            declared.rank(),
            inferred.rank()
        ));
    }
    for (d, i) in declared.shape.iter().zip(&inferred.shape) {
        if !d.compatible(i) {
            return Err(format!(
                "result type {declared} does not match the inferred {inferred}"
            ));
        }
    }
    Ok(())
}

pub fn verify(g: &Graph) -> Result<(), Diagnostics> {
    let mut errs = Vec::new();
    let n = g.values.len();
    let mut defined = vec![false; n];
    for v in &g.inputs {
        if defined[v.0 as usize] {
            errs.push(Diagnostic::new(format!(
                "graph input %{} listed twice",
                v.0
            )));
        }
        defined[v.0 as usize] = true;
    }
    for t in g.values.iter().map(|v| &v.ty) {
        for c in quant_consts(t) {
            if c.0 as usize >= g.constants.len() {
                errs.push(Diagnostic::new(format!(
                    "a quantized type refers to missing constant #{}",
                    c.0
                )));
            }
        }
    }
    let producers = g.producers();
    for op in &g.ops {
        let def = op.kind.def();
        let name = format!("tsr.{}", def.mnemonic);
        let mut err = |m: String| errs.push(Diagnostic::new(m).at(op.loc.clone()).op(name.clone()));
        // operands: defined before use, counts per spec
        for (i, o) in op.operands.iter().enumerate() {
            if let Some(v) = o {
                if v.0 as usize >= n || !defined[v.0 as usize] {
                    err(format!(
                        "operand #{i} (%{}) is used before it is defined",
                        v.0
                    ));
                }
            }
        }
        let fixed = def
            .operands
            .iter()
            .filter(|s| s.arity == Arity::One)
            .count();
        let variadic = def.operands.iter().any(|s| s.arity == Arity::Variadic);
        if op.operands.len() > def.operands.len() && !variadic {
            err(format!(
                "has {} operands, at most {} allowed",
                op.operands.len(),
                def.operands.len()
            ));
        }
        for (i, s) in def.operands.iter().enumerate() {
            if s.arity == Arity::One && op.operand(i).is_none() {
                err(format!("required operand #{i} '{}' is missing", s.name));
            }
        }
        let _ = fixed;
        // results
        match def.results {
            Results::Fixed(k) if op.results.len() != k => {
                err(format!("has {} results, expected {k}", op.results.len()))
            }
            Results::Range(lo, hi) if op.results.len() < lo || op.results.len() > hi => err(
                format!("has {} results, expected {lo} to {hi}", op.results.len()),
            ),
            _ => {}
        }
        for r in &op.results {
            if defined[r.0 as usize] {
                err(format!("value %{} is defined twice", r.0));
            }
            defined[r.0 as usize] = true;
        }
        // attributes
        for (k, a) in &op.attrs {
            match def.attr_spec(k) {
                // Scheduling hints (`sched.tile`) change no value: any op may carry them.
                None if k.starts_with("sched.") => {}
                None => err(format!("unknown attribute '{k}'")),
                Some(s) if !a.fits(s.kind) => err(format!(
                    "attribute '{k}' must be {:?}, got {:?}",
                    s.kind,
                    a.kind()
                )),
                _ => {}
            }
            if let Attr::Const(c) = a {
                if c.0 as usize >= g.constants.len() {
                    err(format!(
                        "attribute '{k}' refers to missing constant #{}",
                        c.0
                    ));
                }
            }
        }
        for s in def.attrs {
            if matches!(s.default, Default::Required) && !op.attrs.contains_key(s.name) {
                err(format!("required attribute '{}' is missing", s.name));
            }
        }
        // types
        if op.kind == OpKind::Constant {
            if let (Some(Attr::Const(c)), Some(r)) = (op.attrs.get("value"), op.results.first()) {
                if let Some(k) = g.constants.get(c.0 as usize) {
                    let t = g.ty(*r);
                    let shape: Vec<i64> = k.value.shape.iter().map(|&d| d as i64).collect();
                    if t.dtype() != k.value.dtype || t.static_shape().as_deref() != Some(&shape[..])
                    {
                        err(format!(
                            "result type {t} differs from constant @{}'s",
                            k.name
                        ));
                    }
                }
            }
            continue;
        }
        let operands_ok = op.operands.iter().flatten().all(|v| (v.0 as usize) < n);
        if operands_ok {
            match infer_op(
                g,
                op.kind,
                &op.operands,
                &op.attrs,
                op.results.len(),
                &|v| g.constant_value(v, &producers).cloned(),
            ) {
                Ok(tys) => {
                    for (r, t) in op.results.iter().zip(&tys) {
                        if let Err(m) = types_agree(g.ty(*r), t) {
                            err(m);
                        }
                    }
                }
                Err(m) => err(m),
            }
        }
    }
    for (name, v) in &g.outputs {
        if v.0 as usize >= n || !defined[v.0 as usize] {
            errs.push(Diagnostic::new(format!("output '{name}' is never defined")));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(errs))
    }
}
