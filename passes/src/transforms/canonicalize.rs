//! Local simplifications that never make the program worse. Each rule reads
//! as an identity (the comment above it); a rule only fires when the result
//! has exactly the type of the value it replaces, so no use can notice.

use crate::{Pass, PassStats};
use std::collections::HashMap;
use tessera_ir::{AttrAccess, Diagnostic, Graph, Op, OpKind, ValueId};

pub struct Canonicalize;

/// Attribute access for an op in a graph, with its OpDef's defaults.
struct OpAttrs<'a>(&'a Op);

impl AttrAccess for OpAttrs<'_> {
    fn def(&self) -> &'static tessera_ir::ops::OpDef {
        self.0.kind.def()
    }
    fn attrs(&self) -> &tessera_ir::Attrs {
        &self.0.attrs
    }
}

impl Pass for Canonicalize {
    fn name(&self) -> &'static str {
        "canonicalize"
    }

    fn run(&self, g: &mut Graph) -> Result<PassStats, Diagnostic> {
        let mut subst: HashMap<ValueId, ValueId> = HashMap::new();
        let mut removed = 0;
        let mut rewired = 0;
        let producers_before = g.producers();
        let ops = std::mem::take(&mut g.ops);
        let mut kept: Vec<Op> = Vec::with_capacity(ops.len());
        // producer index into `kept`
        let mut producer: HashMap<ValueId, usize> = HashMap::new();
        for mut op in ops {
            for o in op.operands.iter_mut().flatten() {
                if let Some(n) = subst.get(o) {
                    *o = *n;
                }
            }
            let const_of = |v: ValueId| -> Option<&tessera_ir::Tensor> {
                let i = *producer.get(&v)?;
                let p = &kept[i];
                match (p.kind, p.attrs.get("value")) {
                    (OpKind::Constant, Some(tessera_ir::Attr::Const(c))) => {
                        Some(&g.constant(*c).value)
                    }
                    _ => None,
                }
            };
            let _ = &producers_before;
            // Rewire chains: reshape(reshape(x, s1), s2) -> reshape(x, s2).
            if op.kind == OpKind::Reshape {
                if let Some(x) = op.operand(0) {
                    if let Some(&pi) = producer.get(&x) {
                        let inner = &kept[pi];
                        let no_zero = const_of(op.operand(1).unwrap_or(x))
                            .is_some_and(|t| t.to_i64_vec().iter().all(|&d| d != 0));
                        if inner.kind == OpKind::Reshape && no_zero {
                            op.operands[0] = inner.operands[0];
                            rewired += 1;
                        }
                    }
                }
            }
            if let Some(same) = forwards_operand(g, &op, &const_of) {
                let r = op.results[0];
                if g.ty(r) == g.ty(same) {
                    subst.insert(r, same);
                    removed += 1;
                    continue;
                }
            }
            for r in &op.results {
                producer.insert(*r, kept.len());
            }
            kept.push(op);
        }
        g.ops = kept;
        for (_, v) in &mut g.outputs {
            if let Some(n) = subst.get(v) {
                *v = *n;
            }
        }
        g.remove_dead();
        Ok(PassStats {
            changes: removed + rewired,
            counters: vec![
                ("ops forwarded".into(), removed),
                ("chains rewired".into(), rewired),
            ],
        })
    }
}

/// The operand an op returns unchanged, if it is a no-op.
fn forwards_operand<'a>(
    g: &Graph,
    op: &Op,
    const_of: &dyn Fn(ValueId) -> Option<&'a tessera_ir::Tensor>,
) -> Option<ValueId> {
    let x = op.operand(0)?;
    let is_splat = |v: Option<ValueId>, want: f64| {
        v.and_then(const_of)
            .is_some_and(|t| !t.is_empty() && t.to_f64_vec().iter().all(|&e| e == want))
    };
    match op.kind {
        // identity(x) == x
        OpKind::Identity => Some(x),
        // x + 0 == x, x - 0 == x (when the zero does not broadcast x to a bigger shape)
        OpKind::Add | OpKind::Sub if is_splat(op.operand(1), 0.0) => Some(x),
        // 0 + x == x
        OpKind::Add if is_splat(Some(x), 0.0) => op.operand(1),
        // x * 1 == x, x / 1 == x
        OpKind::Mul | OpKind::Div if is_splat(op.operand(1), 1.0) => Some(x),
        // 1 * x == x
        OpKind::Mul if is_splat(Some(x), 1.0) => op.operand(1),
        // reshape(x, shape(x)) == x (the type check by the caller proves it)
        OpKind::Reshape => {
            let (a, b) = (g.ty(x), g.ty(op.results[0]));
            (a.static_shape().is_some() && a == b).then_some(x)
        }
        _ => {
            let m = op.kind.mnemonic();
            // transpose with the identity permutation
            if m == "transpose" {
                let perm = OpAttrs(op).ints("perm").ok()?;
                return perm
                    .iter()
                    .enumerate()
                    .all(|(i, &p)| p == i as i64)
                    .then_some(x);
            }
            // cast to the type it already has
            if m == "cast" {
                return (g.ty(x) == g.ty(op.results[0])).then_some(x);
            }
            None
        }
    }
}
