//! Building graphs op by op with types inferred from the op definitions.

use crate::attr::Attrs;
use crate::dim::Dim;
use crate::graph::{Graph, Loc, ValueId};
use crate::ops::{InferCtx, OpKind, Results};
use crate::tensor::SharedTensor;
use crate::types::TensorType;

/// Runs an op's `infer` hook on operands of `g`. `const_of` gives the value of
/// operands that constants define.
pub fn infer_op(
    g: &Graph,
    kind: OpKind,
    operands: &[Option<ValueId>],
    attrs: &Attrs,
    num_results: usize,
    const_of: &dyn Fn(ValueId) -> Option<SharedTensor>,
) -> Result<Vec<TensorType>, String> {
    infer_op_with_syms(g, kind, operands, attrs, num_results, const_of, &|_| None)
}

/// [`infer_op`], also giving `infer` the symbolic values of shape operands.
pub fn infer_op_with_syms(
    g: &Graph,
    kind: OpKind,
    operands: &[Option<ValueId>],
    attrs: &Attrs,
    num_results: usize,
    const_of: &dyn Fn(ValueId) -> Option<SharedTensor>,
    sym_of: &dyn Fn(ValueId) -> Option<Vec<Dim>>,
) -> Result<Vec<TensorType>, String> {
    let def = kind.def();
    let consts: Vec<Option<SharedTensor>> = operands.iter().map(|o| o.and_then(const_of)).collect();
    let ctx = InferCtx {
        def,
        attrs,
        operands: operands.iter().map(|o| o.map(|v| g.ty(v))).collect(),
        consts: consts.iter().map(|c| c.as_ref()).collect(),
        syms: operands.iter().map(|o| o.and_then(sym_of)).collect(),
        num_results,
    };
    let tys = (def.infer)(&ctx)?;
    if tys.len() != num_results {
        return Err(format!(
            "inferred {} results, the op has {num_results}",
            tys.len()
        ));
    }
    Ok(tys)
}

/// Appends ops to a graph, inferring result types and remembering which
/// values are constants (so value-dependent shapes can be inferred).
pub struct Builder<'g> {
    pub graph: &'g mut Graph,
    producers: Vec<Option<usize>>,
}

impl<'g> Builder<'g> {
    pub fn new(graph: &'g mut Graph) -> Builder<'g> {
        let producers = graph.producers();
        Builder { graph, producers }
    }

    fn sync(&mut self) {
        self.producers.resize(self.graph.values.len(), None);
        let last = self.graph.ops.len() - 1;
        for r in &self.graph.ops[last].results {
            self.producers[r.0 as usize] = Some(last);
        }
    }

    pub fn const_value(&self, v: ValueId) -> Option<SharedTensor> {
        self.graph.constant_value(v, &self.producers).cloned()
    }

    /// Default result count of an op kind.
    pub fn default_results(kind: OpKind) -> usize {
        match kind.def().results {
            Results::Fixed(n) | Results::Range(n, _) => n,
        }
    }

    /// Adds an op; its result types come from the op's `infer`.
    pub fn op(
        &mut self,
        kind: OpKind,
        operands: Vec<Option<ValueId>>,
        attrs: Attrs,
        num_results: usize,
        loc: Option<Loc>,
    ) -> Result<Vec<ValueId>, String> {
        let tys = infer_op(self.graph, kind, &operands, &attrs, num_results, &|v| {
            self.const_value(v)
        })?;
        let r = self.graph.push_op(kind, operands, tys, attrs, loc);
        self.sync();
        Ok(r)
    }

    pub fn constant(&mut self, name: &str, value: SharedTensor, loc: Option<Loc>) -> ValueId {
        let v = self.graph.push_constant(name, value, loc);
        self.sync();
        v
    }
}
