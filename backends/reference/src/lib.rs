//! The reference backend (`--target ref`): an interpreter that executes any
//! Tessera IR with the semantics each op defines (`OpDef::eval`). It is the
//! oracle every other backend and every rewrite is checked against, so it
//! stays simple: no optimization beyond freeing values after their last use.

pub mod diff;

use std::collections::HashMap;
use tessera_backend::{Backend, Executable, Stage};
use tessera_ir::ops::{EvalCtx, OpKind};
use tessera_ir::{Attr, Diagnostic, Dim, Graph, Tensor};

pub struct Reference;

impl Backend for Reference {
    fn name(&self) -> &'static str {
        "ref"
    }

    fn stages(&self) -> &'static [Stage] {
        &[]
    }

    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, Diagnostic> {
        Ok(Box::new(Interpreter {
            graph: graph.clone(),
        }))
    }
}

pub struct Interpreter {
    graph: Graph,
}

impl Executable for Interpreter {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Diagnostic> {
        run(&self.graph, inputs)
    }
}

/// Binds symbolic dims of the graph inputs to the sizes of `inputs`, checking
/// count, element type, rank and fixed dims. Errors name the graph input.
pub fn bind_inputs(g: &Graph, inputs: &[Tensor]) -> Result<HashMap<String, i64>, Diagnostic> {
    if inputs.len() != g.inputs.len() {
        return Err(Diagnostic::new(format!(
            "the graph takes {} inputs ({}), {} given",
            g.inputs.len(),
            g.inputs
                .iter()
                .map(|v| g.values[v.0 as usize].name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
            inputs.len()
        )));
    }
    let mut env: HashMap<String, i64> = HashMap::new();
    for (v, t) in g.inputs.iter().zip(inputs) {
        let name = g.values[v.0 as usize].name.clone().unwrap_or_default();
        let ty = g.ty(*v);
        let bad = |what: String| Diagnostic::new(format!("graph input '{name}': {what}"));
        if ty.dtype() != t.dtype {
            return Err(bad(format!(
                "expected element type {}, got {}",
                ty.dtype(),
                t.dtype
            )));
        }
        if ty.rank() != t.rank() {
            return Err(bad(format!(
                "expected {ty} (rank {}), got shape {:?}",
                ty.rank(),
                t.shape
            )));
        }
        for (d, &n) in ty.shape.iter().zip(&t.shape) {
            match d {
                Dim::Known(p) => {
                    if let Some(c) = p.as_constant() {
                        if c != n as i64 {
                            return Err(bad(format!("expected {ty}, got shape {:?}", t.shape)));
                        }
                    } else if let [s] = p.symbols().collect::<Vec<_>>()[..] {
                        // A plain symbol binds; a compound one is checked below.
                        if d.same_as(&Dim::sym(s)) {
                            if let Some(&prev) = env.get(s) {
                                if prev != n as i64 {
                                    return Err(bad(format!(
                                        "dimension '{s}' is {n} here but {prev} in an earlier input"
                                    )));
                                }
                            }
                            env.insert(s.clone(), n as i64);
                        }
                    }
                }
                Dim::Unknown => {}
            }
        }
    }
    for (v, t) in g.inputs.iter().zip(inputs) {
        let ty = g.ty(*v);
        for (d, &n) in ty.shape.iter().zip(&t.shape) {
            if let Some(want) = d.eval(&|s| env.get(s).copied()) {
                if want != n as i64 {
                    let name = g.values[v.0 as usize].name.clone().unwrap_or_default();
                    return Err(Diagnostic::new(format!(
                        "graph input '{name}': dimension {d} should be {want}, got {n}"
                    )));
                }
            }
        }
    }
    Ok(env)
}

/// Runs `g` on `inputs` (graph input order) and returns its outputs.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, Diagnostic> {
    bind_inputs(g, inputs)?;
    let mut vals: Vec<Option<std::sync::Arc<Tensor>>> = vec![None; g.values.len()];
    for (v, t) in g.inputs.iter().zip(inputs) {
        vals[v.0 as usize] = Some(std::sync::Arc::new(t.clone()));
    }
    // Last use of each value, to free intermediates early.
    let mut last_use = vec![usize::MAX; g.values.len()];
    for (i, op) in g.ops.iter().enumerate() {
        for v in op.operands.iter().flatten() {
            last_use[v.0 as usize] = i;
        }
    }
    for (_, v) in &g.outputs {
        last_use[v.0 as usize] = usize::MAX;
    }
    for (i, op) in g.ops.iter().enumerate() {
        let def = op.kind.def();
        let fail = |m: String| {
            Diagnostic::new(m)
                .at(op.loc.clone())
                .op(format!("tsr.{}", def.mnemonic))
        };
        let results: Vec<Tensor> = if op.kind == OpKind::Constant {
            match op.attrs.get("value") {
                Some(Attr::Const(c)) => vec![(*g.constant(*c).value).clone()],
                _ => return Err(fail("constant without a value".into())),
            }
        } else {
            let eval = def
                .eval
                .ok_or_else(|| fail("has no reference semantics yet".into()))?;
            let mut inputs = Vec::with_capacity(op.operands.len());
            for o in &op.operands {
                match o {
                    Some(v) => {
                        let t = vals[v.0 as usize]
                            .as_deref()
                            .ok_or_else(|| fail(format!("operand %{} has no value", v.0)))?;
                        inputs.push(Some(t));
                    }
                    None => inputs.push(None),
                }
            }
            let ctx = EvalCtx {
                def,
                attrs: &op.attrs,
                inputs,
                num_results: op.results.len(),
            };
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval(&ctx)))
                .map_err(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    fail(format!("internal error in the reference semantics: {msg}"))
                })?
                .map_err(fail)?;
            if out.len() != op.results.len() {
                return Err(fail(format!(
                    "produced {} results, expected {}",
                    out.len(),
                    op.results.len()
                )));
            }
            out
        };
        for (r, t) in op.results.iter().zip(results) {
            let want = g.ty(*r);
            if t.dtype != want.dtype() || t.rank() != want.rank() {
                return Err(fail(format!(
                    "produced {} of shape {:?}, its type says {want}",
                    t.dtype, t.shape
                )));
            }
            vals[r.0 as usize] = Some(std::sync::Arc::new(t));
        }
        for v in op.operands.iter().flatten() {
            if last_use[v.0 as usize] == i {
                vals[v.0 as usize] = None;
            }
        }
    }
    g.outputs
        .iter()
        .map(|(name, v)| {
            vals[v.0 as usize]
                .as_ref()
                .map(|t| (**t).clone())
                .ok_or_else(|| Diagnostic::new(format!("output '{name}' was not computed")))
        })
        .collect()
}
