//! The SSA graph: values, ops in topological order, constants stored once.

use crate::attr::{Attr, Attrs};
use crate::ops::OpKind;
use crate::tensor::SharedTensor;
use crate::types::TensorType;
use std::collections::BTreeMap;
use std::fmt;

/// Handle of an SSA value in [`Graph::values`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Handle of a constant in [`Graph::constants`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstId(pub u32);

/// Where an op came from: the ONNX node name and op type (domain-qualified for
/// non-default domains, e.g. `com.microsoft.MatMulNBits`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Loc {
    pub name: String,
    pub op_type: String,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node '{}' ({})", self.name, self.op_type)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub ty: TensorType,
    /// The name it had in the source model, if it was a graph input or output.
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub kind: OpKind,
    /// `None` marks an omitted optional operand.
    pub operands: Vec<Option<ValueId>>,
    pub results: Vec<ValueId>,
    pub attrs: Attrs,
    pub loc: Option<Loc>,
}

impl Op {
    pub fn operand(&self, i: usize) -> Option<ValueId> {
        self.operands.get(i).copied().flatten()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    /// Unique within the graph (the ONNX initializer name, or a generated one).
    pub name: String,
    pub value: SharedTensor,
}

/// A function-like graph. **Invariant:** `ops` is in topological order, every
/// value has exactly one definition (graph input or op result), and each
/// constant is stored once and referenced by [`ConstId`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub name: String,
    pub values: Vec<Value>,
    pub ops: Vec<Op>,
    pub inputs: Vec<ValueId>,
    /// Named results, in order.
    pub outputs: Vec<(String, ValueId)>,
    pub constants: Vec<Constant>,
    /// Opset versions the source was written against, by domain ("" = ONNX default).
    pub opsets: BTreeMap<String, i64>,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            ..Default::default()
        }
    }

    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.values[v.0 as usize].ty
    }

    pub fn add_value(&mut self, ty: TensorType) -> ValueId {
        self.values.push(Value { ty, name: None });
        ValueId(self.values.len() as u32 - 1)
    }

    pub fn add_input(&mut self, name: &str, ty: TensorType) -> ValueId {
        let v = self.add_value(ty);
        self.values[v.0 as usize].name = Some(name.to_string());
        self.inputs.push(v);
        v
    }

    /// Adds a named graph output; the value keeps the name too (as imported
    /// and parsed graphs do) unless it already has one.
    pub fn add_output(&mut self, name: &str, v: ValueId) {
        self.values[v.0 as usize]
            .name
            .get_or_insert_with(|| name.to_string());
        self.outputs.push((name.to_string(), v));
    }

    pub fn add_constant(&mut self, name: &str, value: SharedTensor) -> ConstId {
        self.constants.push(Constant {
            name: name.to_string(),
            value,
        });
        ConstId(self.constants.len() as u32 - 1)
    }

    pub fn constant(&self, c: ConstId) -> &Constant {
        &self.constants[c.0 as usize]
    }

    /// Appends an op whose result types are already known.
    pub fn push_op(
        &mut self,
        kind: OpKind,
        operands: Vec<Option<ValueId>>,
        result_types: Vec<TensorType>,
        attrs: Attrs,
        loc: Option<Loc>,
    ) -> Vec<ValueId> {
        let results: Vec<ValueId> = result_types
            .into_iter()
            .map(|t| self.add_value(t))
            .collect();
        self.ops.push(Op {
            kind,
            operands,
            results: results.clone(),
            attrs,
            loc,
        });
        results
    }

    /// Adds a `constant` op producing `value` and returns its result.
    pub fn push_constant(&mut self, name: &str, value: SharedTensor, loc: Option<Loc>) -> ValueId {
        let ty = TensorType::fixed(
            &value.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
            value.dtype,
        );
        let c = self.add_constant(name, value);
        let mut attrs = Attrs::new();
        attrs.insert("value".into(), Attr::Const(c));
        self.push_op(OpKind::Constant, vec![], vec![ty], attrs, loc)[0]
    }

    /// The op defining each value (None for graph inputs).
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for r in &op.results {
                p[r.0 as usize] = Some(i);
            }
        }
        p
    }

    /// The constant behind a value, if a `constant` op defines it.
    pub fn constant_value(&self, v: ValueId, producers: &[Option<usize>]) -> Option<&SharedTensor> {
        let op = &self.ops[producers[v.0 as usize]?];
        match (op.kind, op.attrs.get("value")) {
            (OpKind::Constant, Some(Attr::Const(c))) => Some(&self.constant(*c).value),
            _ => None,
        }
    }

    /// Drops ops whose results are unused and constants nothing references,
    /// renumbering nothing else. Keeps the topological order.
    pub fn remove_dead(&mut self) {
        let mut live = vec![false; self.values.len()];
        for (_, v) in &self.outputs {
            live[v.0 as usize] = true;
        }
        let mut keep = vec![false; self.ops.len()];
        for (i, op) in self.ops.iter().enumerate().rev() {
            if op.results.iter().any(|r| live[r.0 as usize]) {
                keep[i] = true;
                for v in op.operands.iter().flatten() {
                    live[v.0 as usize] = true;
                }
            }
        }
        let mut i = 0;
        self.ops.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.compact_constants();
        self.compact_values();
    }

    /// Renumbers values densely: graph inputs first, then op results in op
    /// order (the order the printer names them), dropping values nothing
    /// defines. Two graphs that print the same are then equal.
    pub fn compact_values(&mut self) {
        let mut remap: Vec<Option<ValueId>> = vec![None; self.values.len()];
        let mut values = Vec::with_capacity(self.values.len());
        let order = self
            .inputs
            .iter()
            .chain(self.ops.iter().flat_map(|op| op.results.iter()));
        for v in order {
            if remap[v.0 as usize].is_none() {
                remap[v.0 as usize] = Some(ValueId(values.len() as u32));
                values.push(self.values[v.0 as usize].clone());
            }
        }
        // Values used but never defined (an invalid graph) keep a slot so the
        // verifier can still report them.
        let mut fix = |v: &mut ValueId| {
            *v = match remap[v.0 as usize] {
                Some(n) => n,
                None => {
                    values.push(self.values[v.0 as usize].clone());
                    let n = ValueId(values.len() as u32 - 1);
                    remap[v.0 as usize] = Some(n);
                    n
                }
            }
        };
        for v in &mut self.inputs {
            fix(v);
        }
        for op in &mut self.ops {
            op.operands.iter_mut().flatten().for_each(&mut fix);
            op.results.iter_mut().for_each(&mut fix);
        }
        for (_, v) in &mut self.outputs {
            fix(v);
        }
        self.values = values;
    }

    /// Removes unreferenced constants and renumbers the rest.
    pub fn compact_constants(&mut self) {
        let mut used = vec![false; self.constants.len()];
        let mut mark = |a: &Attr| {
            if let Attr::Const(c) = a {
                used[c.0 as usize] = true;
            }
        };
        for op in &self.ops {
            op.attrs.values().for_each(&mut mark);
        }
        for v in &self.values {
            for c in crate::types::quant_consts(&v.ty) {
                used[c.0 as usize] = true;
            }
        }
        let mut remap = vec![None; self.constants.len()];
        let mut kept = Vec::new();
        for (i, c) in std::mem::take(&mut self.constants).into_iter().enumerate() {
            if used[i] {
                remap[i] = Some(ConstId(kept.len() as u32));
                kept.push(c);
            }
        }
        self.constants = kept;
        self.remap_constants(&|c| remap[c.0 as usize].expect("used constant kept"));
    }

    /// Rewrites every constant handle (op attributes and quantized types).
    pub fn remap_constants(&mut self, f: &dyn Fn(ConstId) -> ConstId) {
        for op in &mut self.ops {
            for a in op.attrs.values_mut() {
                if let Attr::Const(c) = a {
                    *c = f(*c);
                }
            }
        }
        for v in &mut self.values {
            crate::types::quant_consts_mut(&mut v.ty, &|c: &mut ConstId| *c = f(*c));
        }
    }
}
