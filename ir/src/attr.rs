//! Op attributes: a sorted name -> value dictionary, so printing is
//! deterministic and lookups are by name as in ONNX and MLIR.

use crate::dtype::DType;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f64),
    Str(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Strs(Vec<String>),
    Type(DType),
    /// A small tensor literal (e.g. ConstantOfShape's value).
    Tensor(Arc<Tensor>),
    /// A reference to a graph constant (the `constant` op's payload).
    Const(crate::graph::ConstId),
}

/// The kind an [`crate::ops::AttrSpec`] expects.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AttrKind {
    Int,
    Float,
    Str,
    Ints,
    Floats,
    Strs,
    Type,
    Tensor,
    Const,
}

impl Attr {
    pub fn kind(&self) -> AttrKind {
        match self {
            Attr::Int(_) => AttrKind::Int,
            Attr::Float(_) => AttrKind::Float,
            Attr::Str(_) => AttrKind::Str,
            Attr::Ints(_) => AttrKind::Ints,
            Attr::Floats(_) => AttrKind::Floats,
            Attr::Strs(_) => AttrKind::Strs,
            Attr::Type(_) => AttrKind::Type,
            Attr::Tensor(_) => AttrKind::Tensor,
            Attr::Const(_) => AttrKind::Const,
        }
    }

    /// Whether this value is acceptable where `kind` is expected. An empty
    /// list is any list kind; an int is acceptable as a float (`alpha = 1`).
    pub fn fits(&self, kind: AttrKind) -> bool {
        match (self, kind) {
            (Attr::Ints(v), AttrKind::Floats | AttrKind::Strs) => v.is_empty(),
            (Attr::Int(_), AttrKind::Float) => true,
            _ => self.kind() == kind,
        }
    }
}

pub type Attrs = BTreeMap<String, Attr>;
