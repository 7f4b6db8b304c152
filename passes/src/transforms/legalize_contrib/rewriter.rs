//! What a rewrite rule sees: the contrib op being replaced, and a builder
//! that appends core ops (with inferred types and the op's location) in its
//! place.

use std::sync::Arc;
use tessera_ir::tensor::SharedTensor;
use tessera_ir::{
    Attr, AttrAccess, Attrs, Builder, DType, Dim, Graph, Op, OpKind, Tensor, ValueId,
};

pub struct Rewriter<'g> {
    b: Builder<'g>,
    /// The contrib op being replaced.
    pub op: Op,
}

/// Attributes from `(name, value)` pairs.
pub fn attrs(pairs: &[(&str, Attr)]) -> Attrs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl<'g> Rewriter<'g> {
    pub fn new(g: &'g mut Graph, op: &Op) -> Rewriter<'g> {
        Rewriter {
            b: Builder::new(g),
            op: op.clone(),
        }
    }

    /// Operand `i` of the contrib op, if given.
    pub fn opt(&self, i: usize) -> Option<ValueId> {
        self.op.operand(i)
    }

    /// Operand `i` of the contrib op, which must be given.
    pub fn req(&self, i: usize, name: &str) -> Result<ValueId, String> {
        self.opt(i)
            .ok_or_else(|| format!("operand {name} is required"))
    }

    pub fn results(&self) -> usize {
        self.op.results.len()
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.b.graph.ty(v).dtype()
    }

    /// The static shape of `v`; the decompositions that need one run after
    /// shape specialization.
    pub fn shape(&self, v: ValueId) -> Result<Vec<usize>, String> {
        self.b
            .graph
            .ty(v)
            .static_shape()
            .map(|s| s.into_iter().map(|d| d as usize).collect())
            .ok_or_else(|| {
                format!(
                    "the decomposition needs static shapes, got {} (shapes are bound when the graph is specialized)",
                    self.b.graph.ty(v)
                )
            })
    }

    /// The dims of `v`, symbolic or not.
    pub fn dims(&self, v: ValueId) -> Vec<Dim> {
        self.b.graph.ty(v).shape.clone()
    }

    /// The type of `v` as printed, for messages.
    pub fn type_text(&self, v: ValueId) -> String {
        self.b.graph.ty(v).to_string()
    }

    /// The value of `v` when a constant defines it.
    pub fn constant(&self, v: ValueId) -> Option<SharedTensor> {
        self.b.const_value(v)
    }

    /// Integer attribute of the contrib op (its OpDef's default applies).
    pub fn int(&self, name: &str) -> Result<i64, String> {
        self.op.int(name)
    }

    pub fn ints(&self, name: &str) -> Result<Vec<i64>, String> {
        self.op.ints(name)
    }

    pub fn float(&self, name: &str) -> Result<f64, String> {
        self.op.float(name)
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.op.has_attr(name)
    }

    /// Appends a core op with `n` results.
    pub fn emit_n(
        &mut self,
        kind: OpKind,
        operands: &[Option<ValueId>],
        attrs: Attrs,
        n: usize,
    ) -> Result<Vec<ValueId>, String> {
        self.b
            .op(kind, operands.to_vec(), attrs, n, self.op.loc.clone())
            .map_err(|e| format!("decomposing into tsr.{}: {e}", kind.mnemonic()))
    }

    /// Appends a core op with one result.
    pub fn emit(
        &mut self,
        kind: OpKind,
        operands: &[ValueId],
        attrs: Attrs,
    ) -> Result<ValueId, String> {
        let ops: Vec<Option<ValueId>> = operands.iter().map(|&v| Some(v)).collect();
        Ok(self.emit_n(kind, &ops, attrs, 1)?[0])
    }

    /// A binary op of the core's elementwise family.
    pub fn bin(&mut self, kind: OpKind, a: ValueId, b: ValueId) -> Result<ValueId, String> {
        self.emit(kind, &[a, b], Attrs::new())
    }

    pub fn cast(&mut self, v: ValueId, to: DType) -> Result<ValueId, String> {
        if self.dtype(v) == to {
            return Ok(v);
        }
        self.emit(OpKind::Cast, &[v], attrs(&[("to", Attr::Type(to))]))
    }

    pub fn tensor(&mut self, t: Tensor) -> ValueId {
        let base = self.op.loc.as_ref().map_or("contrib", |l| l.name.as_str());
        let name = format!("{base}.legalized.{}", self.b.graph.constants.len());
        self.b.constant(&name, Arc::new(t), self.op.loc.clone())
    }

    pub fn i64s(&mut self, shape: &[usize], v: &[i64]) -> ValueId {
        self.tensor(Tensor::from_i64(DType::I64, shape.to_vec(), v))
    }

    /// A 1-D i64 vector (axes, shapes, split sizes).
    pub fn vec_i64(&mut self, v: &[i64]) -> ValueId {
        self.i64s(&[v.len()], v)
    }

    pub fn scalar(&mut self, dtype: DType, v: f64) -> ValueId {
        self.tensor(Tensor::from_f64(dtype, vec![], &[v]))
    }

    pub fn reshape(&mut self, v: ValueId, shape: &[usize]) -> Result<ValueId, String> {
        if self.shape(v).ok().as_deref() == Some(shape) {
            return Ok(v);
        }
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let s = self.vec_i64(&s);
        self.bin(OpKind::Reshape, v, s)
    }

    /// `v` split along `axis` into pieces of `sizes`.
    pub fn split(
        &mut self,
        v: ValueId,
        axis: i64,
        sizes: &[usize],
    ) -> Result<Vec<ValueId>, String> {
        let s: Vec<i64> = sizes.iter().map(|&d| d as i64).collect();
        let s = self.vec_i64(&s);
        self.emit_n(
            OpKind::Split,
            &[Some(v), Some(s)],
            attrs(&[("axis", Attr::Int(axis))]),
            sizes.len(),
        )
    }

    pub fn concat(&mut self, vs: &[ValueId], axis: i64) -> Result<ValueId, String> {
        self.emit(OpKind::Concat, vs, attrs(&[("axis", Attr::Int(axis))]))
    }

    /// A reduction over `axes`, keeping them as 1s when `keep`.
    pub fn reduce(
        &mut self,
        kind: OpKind,
        v: ValueId,
        axes: &[i64],
        keep: bool,
    ) -> Result<ValueId, String> {
        let a = self.vec_i64(axes);
        self.emit(
            kind,
            &[v, a],
            attrs(&[("keepdims", Attr::Int(keep as i64))]),
        )
    }

    /// `v` (a scalar or a one-element tensor) as a rank-0 tensor of `dtype`.
    pub fn as_scalar(&mut self, v: ValueId, what: &str, dtype: DType) -> Result<ValueId, String> {
        let shape = self.shape(v)?;
        if shape.iter().product::<usize>() != 1 {
            return Err(format!("{what} must be a scalar, got shape {shape:?}"));
        }
        let v = self.reshape(v, &[])?;
        self.cast(v, dtype)
    }
}
