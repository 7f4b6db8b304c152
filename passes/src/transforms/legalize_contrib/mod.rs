//! `legalize-contrib`: each com.microsoft op (`tsr.ms.*`) that onnxruntime's
//! transformer optimizer and quantizers emit becomes core Tessera ops with
//! the same semantics (the op's `eval` in `ir/src/ops/contrib.rs` is the
//! spec): SkipLayerNormalization is `layer_normalization(x + skip + bias)`,
//! FastGelu is `gelu{approximate = "tanh"}(x + bias)`, Attention is one
//! projection, a split and `tsr.attention` with the mask made additive,
//! GroupQueryAttention is `rotary_embedding` + `tsr.attention`, and so on.
//!
//! Backends then need lowerings of the core ops only. The rewrites target
//! the fused core ops directly (layer/RMS normalization, GELU, attention,
//! rotary), so nothing has to be recognized again afterwards.
//!
//! Some decompositions depend on shapes or on small integer operands
//! (GroupQueryAttention's sequence lengths, the mask geometry of Attention).
//! The pass is meant to run after shape specialization, where they are
//! constants; an op whose decomposition needs what is not known, or whose
//! attributes the core ops cannot express exactly, is an error naming the
//! node — never a different answer. Ops without a rule (MatMulNBits, which
//! backends lower directly) are left alone.

mod activation;
mod attention;
mod norm;
mod quant;
mod rewriter;

#[cfg(test)]
mod tests;

use crate::{Pass, PassStats};
use rewriter::Rewriter;
use std::collections::HashMap;
use tessera_ir::{Diagnostic, Graph, Op, OpKind, TensorType, ValueId};

/// One rewrite: the values that replace the op's results, in order.
type Rule = fn(&mut Rewriter) -> Result<Vec<ValueId>, String>;

/// The com.microsoft ops with a decomposition into core ops.
const RULES: &[(OpKind, Rule)] = &[
    (OpKind::MsGelu, activation::gelu),
    (OpKind::MsQuickGelu, activation::quick_gelu),
    (OpKind::MsBiasGelu, activation::bias_gelu),
    (OpKind::MsFastGelu, activation::fast_gelu),
    (OpKind::MsBiasAdd, activation::bias_add),
    (OpKind::MsSkipLayerNormalization, norm::skip_layer_norm),
    (
        OpKind::MsSkipSimplifiedLayerNormalization,
        norm::skip_simplified_layer_norm,
    ),
    (
        OpKind::MsSimplifiedLayerNormalization,
        norm::simplified_layer_norm,
    ),
    (OpKind::MsEmbedLayerNormalization, norm::embed_layer_norm),
    (OpKind::MsRotaryEmbedding, attention::rotary_embedding),
    (OpKind::MsAttention, attention::attention),
    (
        OpKind::MsGroupQueryAttention,
        attention::group_query_attention,
    ),
    (OpKind::MsQuantizeLinear, quant::quantize_linear),
    (OpKind::MsDequantizeLinear, quant::dequantize_linear),
    (OpKind::MsQLinearAdd, quant::qlinear_add),
    (OpKind::MsQLinearMul, quant::qlinear_mul),
    (OpKind::MsQLinearSoftmax, quant::qlinear_softmax),
    (
        OpKind::MsDynamicQuantizeMatMul,
        quant::dynamic_quantize_matmul,
    ),
    (
        OpKind::MsMatMulIntegerToFloat,
        quant::matmul_integer_to_float,
    ),
];

fn rule_for(kind: OpKind) -> Option<Rule> {
    RULES.iter().find(|(k, _)| *k == kind).map(|(_, r)| *r)
}

/// Mnemonics of the ops this pass rewrites.
pub fn legalized_ops() -> Vec<&'static str> {
    RULES.iter().map(|(k, _)| k.mnemonic()).collect()
}

#[derive(Default)]
pub struct LegalizeContrib {
    /// Keep the ops that cannot be legalized yet (symbolic shapes, lengths
    /// known only at run time) instead of failing: an optimization pipeline
    /// legalizes what it can before the e-graph fuses it, and the backend
    /// legalizes the rest once shapes are bound.
    pub partial: bool,
}

impl LegalizeContrib {
    /// The pass from its pipeline options (`legalize-contrib{partial=true}`).
    pub fn from_args(args: &crate::PassArgs) -> Result<LegalizeContrib, String> {
        let mut p = LegalizeContrib::default();
        for (k, v) in &args.0 {
            match (k.as_str(), v.as_str()) {
                ("partial", "true") => p.partial = true,
                ("partial", "false") => p.partial = false,
                ("partial", _) => {
                    return Err(format!("option partial={v}: expected true or false"))
                }
                _ => return Err(format!("unknown option '{k}' (known: partial)")),
            }
        }
        Ok(p)
    }
}

impl Pass for LegalizeContrib {
    fn name(&self) -> &'static str {
        "legalize-contrib"
    }

    fn run(&self, g: &mut Graph) -> Result<PassStats, Diagnostic> {
        let (mut rewritten, mut kept) = (0, 0);
        for op in std::mem::take(&mut g.ops) {
            let Some(rule) = rule_for(op.kind) else {
                g.ops.push(op);
                continue;
            };
            let fail = |m: String| {
                Diagnostic::new(m)
                    .at(op.loc.clone())
                    .op(format!("tsr.{}", op.kind.mnemonic()))
            };
            let start = g.ops.len();
            let done = rule(&mut Rewriter::new(g, &op))
                .and_then(|news| bind_results(g, start, &op, &news));
            match done {
                Ok(()) => rewritten += 1,
                Err(_) if self.partial => {
                    // Values and constants the attempt made stay unreferenced.
                    g.ops.truncate(start);
                    g.ops.push(op);
                    kept += 1;
                }
                Err(m) => return Err(fail(m)),
            }
        }
        if kept > 0 {
            g.compact_constants();
        }
        Ok(PassStats {
            changes: rewritten,
            counters: vec![
                ("contrib ops legalized".into(), rewritten),
                ("contrib ops kept for later".into(), kept),
            ],
        })
    }
}

/// Makes the ops emitted from `start` on define `op`'s result values
/// themselves (uses elsewhere and value names stay valid), checking that
/// each replacement has the type the original result had.
fn bind_results(g: &mut Graph, start: usize, op: &Op, news: &[ValueId]) -> Result<(), String> {
    if news.len() != op.results.len() {
        return Err(format!(
            "internal error: the decomposition gives {} results for {}",
            news.len(),
            op.results.len()
        ));
    }
    let mut rebound: HashMap<ValueId, ValueId> = HashMap::new();
    for (i, (&old, &new)) in op.results.iter().zip(news).enumerate() {
        let (want, got) = (g.ty(old).clone(), g.ty(new).clone());
        if !compatible(&want, &got) {
            return Err(format!(
                "internal error: result {i} would change type from {want} to {got}"
            ));
        }
        let defined_here = g.ops[start..].iter().any(|o| o.results.contains(&new));
        if defined_here && !rebound.contains_key(&new) {
            for o in &mut g.ops[start..] {
                for r in o.results.iter_mut().filter(|r| **r == new) {
                    *r = old;
                }
                for v in o.operands.iter_mut().flatten().filter(|v| **v == new) {
                    *v = old;
                }
            }
            rebound.insert(new, old);
        } else {
            // An operand passed through, or one value giving two results.
            let src = rebound.get(&new).copied().unwrap_or(new);
            g.ops.push(Op {
                kind: OpKind::Identity,
                operands: vec![Some(src)],
                results: vec![old],
                attrs: Default::default(),
                loc: op.loc.clone(),
            });
        }
        // The inferred type is at least as precise as the imported one.
        g.values[old.0 as usize].ty = got;
    }
    Ok(())
}

/// Same element type and rank, and no fixed dim that disagrees.
fn compatible(a: &TensorType, b: &TensorType) -> bool {
    a.elem == b.elem
        && a.rank() == b.rank()
        && a.shape
            .iter()
            .zip(&b.shape)
            .all(|(x, y)| match (x.as_fixed(), y.as_fixed()) {
                (Some(p), Some(q)) => p == q,
                _ => true,
            })
}
