//! Runs a pipeline of passes with verification, IR printing and timing.

use crate::registry::{lookup, PassArgs};
use crate::{Pass, PassStats};
use std::time::{Duration, Instant};
use tessera_ir::{verify, Diagnostic, Graph};

#[derive(Clone, Debug, Default)]
pub struct PassOptions {
    /// Verify after every pass (always on in debug builds).
    pub verify_each: bool,
    /// Called with (pass name, graph) after every pass.
    pub print_after_all: bool,
}

#[derive(Clone, Debug)]
pub struct PassTiming {
    pub name: String,
    pub time: Duration,
    pub stats: PassStats,
}

pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    opts: PassOptions,
}

impl PassManager {
    /// Builds a manager from a comma-separated pipeline string.
    pub fn parse(pipeline: &str, opts: PassOptions) -> Result<PassManager, Diagnostic> {
        let mut passes = Vec::new();
        for item in split_pipeline(pipeline)? {
            let (name, args) = match item.split_once('{') {
                Some((n, rest)) => {
                    let inner = rest.strip_suffix('}').ok_or_else(|| {
                        Diagnostic::new(format!("pass options of '{n}' must end with '}}'"))
                    })?;
                    (n.trim(), PassArgs::parse(inner).map_err(Diagnostic::new)?)
                }
                None => (item, PassArgs::default()),
            };
            let info = lookup(name).ok_or_else(|| {
                let known: Vec<&str> = crate::REGISTRY.iter().map(|p| p.name).collect();
                Diagnostic::new(format!(
                    "unknown pass '{name}' (known: {})",
                    known.join(", ")
                ))
            })?;
            passes.push(
                (info.create)(&args).map_err(|e| Diagnostic::new(format!("pass '{name}': {e}")))?,
            );
        }
        Ok(PassManager { passes, opts })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs every pass in order. `after` sees the graph after each pass when
    /// `print_after_all` is set.
    pub fn run(
        &self,
        g: &mut Graph,
        after: &mut dyn FnMut(&str, &Graph),
    ) -> Result<Vec<PassTiming>, Diagnostic> {
        let mut timings = Vec::new();
        for p in &self.passes {
            let start = Instant::now();
            let stats = p.run(g)?;
            let time = start.elapsed();
            if self.opts.verify_each || cfg!(debug_assertions) {
                verify(g).map_err(|e| {
                    Diagnostic::new(format!("the IR is invalid after pass '{}':\n{e}", p.name()))
                })?;
            }
            if self.opts.print_after_all {
                after(p.name(), g);
            }
            timings.push(PassTiming {
                name: p.name().to_string(),
                time,
                stats,
            });
        }
        Ok(timings)
    }
}

/// Splits a pipeline at the commas outside braces
/// (`egraph{groups=algebra,fusion},dce` is two passes).
fn split_pipeline(p: &str) -> Result<Vec<&str>, Diagnostic> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in p.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(p[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(Diagnostic::new(format!(
                "unbalanced '}}' in pipeline '{p}'"
            )));
        }
    }
    if depth != 0 {
        return Err(Diagnostic::new(format!(
            "unbalanced '{{' in pipeline '{p}'"
        )));
    }
    out.push(p[start..].trim());
    out.retain(|s| !s.is_empty());
    Ok(out)
}
