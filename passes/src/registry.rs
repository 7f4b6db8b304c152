//! The declared pass registry: name, summary, constructor.

use crate::transforms::{canonicalize::Canonicalize, dce::Dce, fold::FoldConstants};
use crate::Pass;

pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// Builds the pass from its options (`name{key=value ...}` in a
    /// pipeline); a pass without options rejects any.
    pub create: fn(&PassArgs) -> Result<Box<dyn Pass>, String>,
}

/// A pass's options from a pipeline string, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassArgs(pub Vec<(String, String)>);

impl PassArgs {
    /// Parses `key=value key2=value2` (the text between the braces).
    pub fn parse(text: &str) -> Result<PassArgs, String> {
        text.split_whitespace()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| format!("pass option '{kv}' is not key=value"))
            })
            .collect::<Result<_, _>>()
            .map(PassArgs)
    }

    fn none(&self, pass: &str) -> Result<(), String> {
        match self.0.first() {
            Some((k, _)) => Err(format!("pass '{pass}' has no option '{k}'")),
            None => Ok(()),
        }
    }
}

fn plain(name: &str, args: &PassArgs, pass: Box<dyn Pass>) -> Result<Box<dyn Pass>, String> {
    args.none(name)?;
    Ok(pass)
}

pub static REGISTRY: &[PassInfo] = &[
    PassInfo {
        name: "canonicalize",
        summary: "Local simplifications: identities (x+0, x*1, reshape to the same shape), inverse transposes, chains of reshapes",
        create: |a| plain("canonicalize", a, Box::new(Canonicalize)),
    },
    PassInfo {
        name: "fold-constants",
        summary: "Evaluate ops whose operands are all constants, with their reference semantics",
        create: |a| plain("fold-constants", a, Box::new(FoldConstants)),
    },
    PassInfo {
        name: "dce",
        summary: "Remove ops whose results are unused and constants nothing references",
        create: |a| plain("dce", a, Box::new(Dce)),
    },
    PassInfo {
        name: "merge-projections",
        summary: "Products of one input with constant weights of the same K (Q/K/V projections) become one product on the concatenated weights and biases, then a split; options: min=N (group size, default 3)",
        create: |a| Ok(Box::new(crate::transforms::merge_projections::MergeProjections::from_args(a)?)),
    },
    PassInfo {
        name: "legalize-contrib",
        summary: "Rewrite com.microsoft ops (Skip/Embed/SimplifiedLayerNormalization, Gelu family, Attention, GroupQueryAttention, RotaryEmbedding, QLinear*, DynamicQuantizeMatMul, MatMulIntegerToFloat, Q/DQ) into core ops with the same semantics; strict after shape specialization (the cpu backend), or partial=true: keep what needs bound shapes or lengths for later",
        create: |a| Ok(Box::new(crate::transforms::legalize_contrib::LegalizeContrib::from_args(a)?)),
    },
    PassInfo {
        name: "egraph",
        summary: "Equality saturation of each repeated block once, rule groups in stages (algebra: identities; recognize: GELU, SiLU/SwiGLU, norms, softmax, attention, RoPE, GQA, causal masks; fusion: tsr.linear epilogues; tiling), then DAG-cost extraction; options: extractor=greedy|ilp target=cpu|cuda|accel|ref reuse-blocks=true|false staged=true|false groups=a,b ilp-ms=N iterations=N nodes=N time-ms=N",
        create: |a| Ok(Box::new(crate::egraph::EgraphPass::from_args(a)?)),
    },
];

pub fn lookup(name: &str) -> Option<&'static PassInfo> {
    REGISTRY.iter().find(|p| p.name == name)
}

/// The pipeline of an optimization level (`-O0` .. `-O3`).
pub fn pipeline_for_level(level: u8) -> &'static str {
    match level {
        0 => "",
        // com.microsoft ops become core ops first, so the e-graph fuses them
        // with their neighbours (a bias add into the preceding product).
        1 => "legalize-contrib{partial=true},canonicalize,fold-constants,canonicalize,dce",
        // The e-graph pass never returns a costlier program than its input.
        _ => "legalize-contrib{partial=true},canonicalize,fold-constants,merge-projections,egraph,canonicalize,dce",
    }
}
