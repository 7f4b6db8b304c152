//! Constant folding over the whole graph, with each op's reference semantics.

use crate::{Pass, PassStats};
use std::sync::Arc;
use tessera_ir::fold::fold_op;
use tessera_ir::{Diagnostic, Graph};

pub struct FoldConstants;

/// Folded values larger than this stay computed at run time: folding a big
/// broadcast would bloat the weights for no gain.
const MAX_FOLDED_ELEMENTS: usize = 1 << 16;

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, g: &mut Graph) -> Result<PassStats, Diagnostic> {
        let mut folded = 0;
        let old_ops = std::mem::take(&mut g.ops);
        let mut producers = vec![None; g.values.len()];
        for op in old_ops {
            let consts: Vec<_> = op
                .operands
                .iter()
                .map(|o| o.and_then(|v| g.constant_value(v, &producers).cloned()))
                .collect();
            let present: Vec<bool> = op.operands.iter().map(Option::is_some).collect();
            let result = fold_op(op.kind, &op.attrs, &consts, &present, op.results.len());
            match result {
                Some(Ok(values)) if values.iter().all(|t| t.len() <= MAX_FOLDED_ELEMENTS) => {
                    folded += 1;
                    for (r, t) in op.results.iter().zip(values) {
                        // Reuse the result value so uses stay valid; name the
                        // constant after the source node.
                        let base = op
                            .loc
                            .as_ref()
                            .map(|l| l.name.clone())
                            .unwrap_or_else(|| "folded".into());
                        let name = unique_name(g, &format!("{base}:{}", r.0));
                        // The constant's type is exact; the inferred one may have been symbolic.
                        g.values[r.0 as usize].ty = tessera_ir::TensorType::fixed(
                            &t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
                            t.dtype,
                        );
                        let c = g.add_constant(&name, Arc::new(t));
                        let mut attrs = tessera_ir::Attrs::new();
                        attrs.insert("value".into(), tessera_ir::Attr::Const(c));
                        g.ops.push(tessera_ir::Op {
                            kind: tessera_ir::OpKind::Constant,
                            operands: vec![],
                            results: vec![*r],
                            attrs,
                            loc: op.loc.clone(),
                        });
                        producers[r.0 as usize] = Some(g.ops.len() - 1);
                    }
                }
                _ => {
                    g.ops.push(op);
                    let i = g.ops.len() - 1;
                    for r in &g.ops[i].results {
                        producers[r.0 as usize] = Some(i);
                    }
                }
            }
        }
        g.compact_constants();
        Ok(PassStats {
            changes: folded,
            counters: vec![("ops folded".into(), folded)],
        })
    }
}

fn unique_name(g: &Graph, base: &str) -> String {
    if !g.constants.iter().any(|c| c.name == base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}.{i}"))
        .find(|n| !g.constants.iter().any(|c| &c.name == n))
        .expect("infinite")
}
