//! Dead-code elimination.

use crate::{Pass, PassStats};
use tessera_ir::{Diagnostic, Graph};

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &mut Graph) -> Result<PassStats, Diagnostic> {
        let before = (g.ops.len(), g.constants.len());
        g.remove_dead();
        let removed = before.0 - g.ops.len();
        Ok(PassStats {
            changes: removed,
            counters: vec![
                ("ops removed".into(), removed),
                ("constants removed".into(), before.1 - g.constants.len()),
            ],
        })
    }
}
