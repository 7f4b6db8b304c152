//! The declared pass registry: name, summary, constructor.

use crate::transforms::{canonicalize::Canonicalize, dce::Dce, fold::FoldConstants};
use crate::Pass;

pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub create: fn() -> Box<dyn Pass>,
}

pub static REGISTRY: &[PassInfo] = &[
    PassInfo {
        name: "canonicalize",
        summary: "Local simplifications: identities (x+0, x*1, reshape to the same shape), inverse transposes, chains of reshapes",
        create: || Box::new(Canonicalize),
    },
    PassInfo {
        name: "fold-constants",
        summary: "Evaluate ops whose operands are all constants, with their reference semantics",
        create: || Box::new(FoldConstants),
    },
    PassInfo {
        name: "dce",
        summary: "Remove ops whose results are unused and constants nothing references",
        create: || Box::new(Dce),
    },
    PassInfo {
        name: "egraph",
        summary: "Equality saturation with the rule groups (algebra), then DAG-cost extraction for the cpu target; limits: 15 iterations, 50k e-nodes, 5 s",
        create: || Box::<crate::egraph::EgraphPass>::default(),
    },
];

pub fn lookup(name: &str) -> Option<&'static PassInfo> {
    REGISTRY.iter().find(|p| p.name == name)
}

/// The pipeline of an optimization level (`-O0` .. `-O3`).
pub fn pipeline_for_level(level: u8) -> &'static str {
    match level {
        0 => "",
        1 => "canonicalize,fold-constants,canonicalize,dce",
        // The e-graph pass never returns a costlier program than its input.
        _ => "canonicalize,fold-constants,egraph,canonicalize,dce",
    }
}
