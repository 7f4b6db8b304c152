//! Op definitions. **One [`OpDef`] per op** drives its parsing and printing
//! (mnemonic, attributes), verification (operand/result counts, attribute
//! kinds and defaults), shape/type inference (`infer`) and reference semantics
//! (`eval`). Adding an op is: write its `OpDef` in the family file, add one
//! line to [`op_table!`] below.
//!
//! The families: [`core`] (constant, identity), [`elementwise`], [`linalg`],
//! [`shape`], [`reduce`], [`nn`], [`quant`], [`generate`], [`contrib`]
//! (com.microsoft ops).

pub mod util;

pub mod contrib;
pub mod core;
pub mod elementwise;
pub mod generate;
pub mod linalg;
pub mod nn;
pub mod quant;
pub mod reduce;
pub mod shape;

use crate::attr::{Attr, AttrKind, Attrs};
use crate::dtype::DType;
use crate::tensor::{SharedTensor, Tensor};
use crate::types::TensorType;
use std::collections::HashMap;
use std::sync::OnceLock;

/// How many values an operand slot takes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Arity {
    One,
    Optional,
    /// Zero or more; only the last slot may be variadic.
    Variadic,
}

#[derive(Copy, Clone, Debug)]
pub struct OperandSpec {
    pub name: &'static str,
    pub arity: Arity,
}

pub const fn req(name: &'static str) -> OperandSpec {
    OperandSpec { name, arity: Arity::One }
}
pub const fn opt(name: &'static str) -> OperandSpec {
    OperandSpec { name, arity: Arity::Optional }
}
pub const fn variadic(name: &'static str) -> OperandSpec {
    OperandSpec { name, arity: Arity::Variadic }
}

/// Result count: fixed, or a range decided per op instance (Split, TopK's
/// optional outputs, Dropout's mask).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Results {
    Fixed(usize),
    Range(usize, usize),
}

/// An attribute's default when absent.
#[derive(Copy, Clone, Debug)]
pub enum Default {
    /// Must be present.
    Required,
    /// May be absent; the op's code decides what absence means.
    Absent,
    Int(i64),
    Float(f64),
    Str(&'static str),
    Ints(&'static [i64]),
}

#[derive(Copy, Clone, Debug)]
pub struct AttrSpec {
    pub name: &'static str,
    pub kind: AttrKind,
    pub default: Default,
}

pub const fn attr(name: &'static str, kind: AttrKind, default: Default) -> AttrSpec {
    AttrSpec { name, kind, default }
}

/// Properties passes rely on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Trait {
    /// Result element i depends only on operand elements i (after broadcast).
    Elementwise,
    /// Operands 0 and 1 may be swapped.
    Commutative,
    /// The result is random (RandomNormal, Dropout in training): never folded.
    Random,
    /// Only metadata of the operand is read (Shape, Size): foldable from types.
    ShapeOnly,
}

pub type InferFn = fn(&InferCtx) -> Result<Vec<TensorType>, String>;
pub type EvalFn = fn(&EvalCtx) -> Result<Vec<Tensor>, String>;

/// The definition of one op.
pub struct OpDef {
    /// Printed as `tsr.<mnemonic>`.
    pub mnemonic: &'static str,
    /// One line; the docs and `--help` show it.
    pub summary: &'static str,
    pub operands: &'static [OperandSpec],
    pub results: Results,
    pub attrs: &'static [AttrSpec],
    pub traits: &'static [Trait],
    /// Result types from operand types, attributes and constant operands.
    pub infer: InferFn,
    /// Reference semantics; `None` until the op has them.
    pub eval: Option<EvalFn>,
}

impl OpDef {
    pub fn attr_spec(&self, name: &str) -> Option<&AttrSpec> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn has_trait(&self, t: Trait) -> bool {
        self.traits.contains(&t)
    }
}

macro_rules! op_table {
    ($($variant:ident => $def:path,)*) => {
        /// Every op of the Tessera dialect.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OpKind { $($variant,)* }

        impl OpKind {
            pub const ALL: &'static [OpKind] = &[$(OpKind::$variant,)*];

            pub fn def(self) -> &'static OpDef {
                match self { $(OpKind::$variant => &$def,)* }
            }
        }
    };
}

op_table! {
    // core
    Constant => core::CONSTANT,
    Identity => core::IDENTITY,
    // elementwise
    Add => elementwise::ADD,
    Sub => elementwise::SUB,
    Mul => elementwise::MUL,
    Div => elementwise::DIV,
    Relu => elementwise::RELU,
    // linalg
    MatMul => linalg::MATMUL,
    // shape
    Reshape => shape::RESHAPE,
    // reduce
    // nn
    // quant
    // generate
    // contrib
}

impl OpKind {
    pub fn mnemonic(self) -> &'static str {
        self.def().mnemonic
    }

    pub fn from_mnemonic(s: &str) -> Option<OpKind> {
        static MAP: OnceLock<HashMap<&'static str, OpKind>> = OnceLock::new();
        MAP.get_or_init(|| OpKind::ALL.iter().map(|k| (k.mnemonic(), *k)).collect()).get(s).copied()
    }
}

/// Attribute access with the defaults of the op's [`OpDef`], shared by the
/// inference and evaluation contexts.
pub trait AttrAccess {
    fn def(&self) -> &'static OpDef;
    fn attrs(&self) -> &Attrs;

    /// The attribute, or its default as an [`Attr`] (None when absent with no default).
    fn attr(&self, name: &str) -> Option<Attr> {
        if let Some(a) = self.attrs().get(name) {
            return Some(a.clone());
        }
        let spec = self.def().attr_spec(name)?;
        match spec.default {
            Default::Required | Default::Absent => None,
            Default::Int(i) => Some(Attr::Int(i)),
            Default::Float(f) => Some(Attr::Float(f)),
            Default::Str(s) => Some(Attr::Str(s.to_string())),
            Default::Ints(v) => Some(Attr::Ints(v.to_vec())),
        }
    }

    fn has_attr(&self, name: &str) -> bool {
        self.attrs().contains_key(name)
    }

    fn int(&self, name: &str) -> Result<i64, String> {
        match self.attr(name) {
            Some(Attr::Int(i)) => Ok(i),
            other => Err(self.attr_err(name, "an integer", other)),
        }
    }

    fn float(&self, name: &str) -> Result<f64, String> {
        match self.attr(name) {
            Some(Attr::Float(f)) => Ok(f),
            Some(Attr::Int(i)) => Ok(i as f64),
            other => Err(self.attr_err(name, "a float", other)),
        }
    }

    fn string(&self, name: &str) -> Result<String, String> {
        match self.attr(name) {
            Some(Attr::Str(s)) => Ok(s),
            other => Err(self.attr_err(name, "a string", other)),
        }
    }

    fn ints(&self, name: &str) -> Result<Vec<i64>, String> {
        match self.attr(name) {
            Some(Attr::Ints(v)) => Ok(v),
            other => Err(self.attr_err(name, "a list of integers", other)),
        }
    }

    fn floats(&self, name: &str) -> Result<Vec<f64>, String> {
        match self.attr(name) {
            Some(Attr::Floats(v)) => Ok(v),
            Some(Attr::Ints(v)) if v.is_empty() => Ok(Vec::new()),
            other => Err(self.attr_err(name, "a list of floats", other)),
        }
    }

    fn dtype_attr(&self, name: &str) -> Result<DType, String> {
        match self.attr(name) {
            Some(Attr::Type(d)) => Ok(d),
            other => Err(self.attr_err(name, "an element type", other)),
        }
    }

    fn tensor_attr(&self, name: &str) -> Result<std::sync::Arc<Tensor>, String> {
        match self.attr(name) {
            Some(Attr::Tensor(t)) => Ok(t),
            other => Err(self.attr_err(name, "a tensor", other)),
        }
    }

    fn attr_err(&self, name: &str, want: &str, got: Option<Attr>) -> String {
        match got {
            None => format!("attribute '{name}' is required"),
            Some(a) => format!("attribute '{name}' must be {want}, got {:?}", a.kind()),
        }
    }
}

/// What `infer` sees: operand types, constant operand values (for shapes that
/// depend on values, like Reshape's target), attributes, and the number of
/// results the op instance has.
pub struct InferCtx<'a> {
    pub def: &'static OpDef,
    pub attrs: &'a Attrs,
    pub operands: Vec<Option<&'a TensorType>>,
    pub consts: Vec<Option<&'a SharedTensor>>,
    pub num_results: usize,
}

impl AttrAccess for InferCtx<'_> {
    fn def(&self) -> &'static OpDef {
        self.def
    }
    fn attrs(&self) -> &Attrs {
        self.attrs
    }
}

impl<'a> InferCtx<'a> {
    /// A required operand's type.
    pub fn input(&self, i: usize) -> Result<&'a TensorType, String> {
        self.operands.get(i).copied().flatten().ok_or_else(|| format!("operand #{i} is missing"))
    }

    pub fn opt_input(&self, i: usize) -> Option<&'a TensorType> {
        self.operands.get(i).copied().flatten()
    }

    pub fn num_operands(&self) -> usize {
        self.operands.len()
    }

    /// The value of operand `i` when a constant defines it.
    pub fn const_input(&self, i: usize) -> Option<&'a Tensor> {
        self.consts.get(i).copied().flatten().map(|t| &**t)
    }
}

/// What `eval` sees: concrete operand values, attributes and result count.
pub struct EvalCtx<'a> {
    pub def: &'static OpDef,
    pub attrs: &'a Attrs,
    pub inputs: Vec<Option<&'a Tensor>>,
    pub num_results: usize,
}

impl AttrAccess for EvalCtx<'_> {
    fn def(&self) -> &'static OpDef {
        self.def
    }
    fn attrs(&self) -> &Attrs {
        self.attrs
    }
}

impl<'a> EvalCtx<'a> {
    pub fn input(&self, i: usize) -> Result<&'a Tensor, String> {
        self.inputs.get(i).copied().flatten().ok_or_else(|| format!("operand #{i} is missing"))
    }

    pub fn opt_input(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnemonics_are_unique_and_found() {
        let mut seen = std::collections::HashSet::new();
        for k in OpKind::ALL {
            assert!(seen.insert(k.mnemonic()), "duplicate mnemonic {}", k.mnemonic());
            assert_eq!(OpKind::from_mnemonic(k.mnemonic()), Some(*k));
        }
    }

    #[test]
    fn variadic_operand_only_last() {
        for k in OpKind::ALL {
            let ops = k.def().operands;
            for (i, o) in ops.iter().enumerate() {
                if o.arity == Arity::Variadic {
                    assert_eq!(i, ops.len() - 1, "{}: variadic operand not last", k.mnemonic());
                }
            }
        }
    }
}
