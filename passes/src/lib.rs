//! Tessera's middle end: passes over the dialect and the manager that runs
//! them.
//!
//! Every pass is declared in [`registry::REGISTRY`] with a kebab-case name and a
//! summary, so pipelines are plain strings (`"canonicalize,fold-constants,dce"`)
//! and `--print-ir-after-all` works for any pass. The e-graph optimizer joins
//! the registry as one more pass.

pub mod egraph;
pub mod manager;
pub mod registry;
pub mod transforms;

pub use manager::{PassManager, PassOptions, PassTiming};
pub use registry::{pipeline_for_level, PassArgs, PassInfo, REGISTRY};

use tessera_ir::{Diagnostic, Graph};

/// What a pass reports about one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassStats {
    /// Ops changed, removed or added; 0 means the graph is untouched.
    pub changes: usize,
    /// Free-form counters (`"folded" => 12`), shown under `--timing`.
    pub counters: Vec<(String, usize)>,
}

/// A transformation of a whole graph. Passes must keep the graph verifiable
/// (the manager re-verifies after each under `--verify-each` and in debug
/// builds) and must never change what it computes.
pub trait Pass {
    fn name(&self) -> &'static str;
    fn run(&self, g: &mut Graph) -> Result<PassStats, Diagnostic>;
}
