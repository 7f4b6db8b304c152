//! The Tessera dialect: SSA graphs of ops on typed tensors.
//!
//! - [`dtype`], [`dim`], [`types`]: element types (low-bit first class),
//!   symbolic dimensions, tensor and quantized types.
//! - [`tensor`], [`packing`], [`minifloat`]: concrete values and their storage.
//! - [`graph`], [`builder`]: the IR and how to build it.
//! - [`ops`]: one definition per op (signature, attributes, inference, semantics).
//! - [`print`], [`parse`]: the textual form, which round-trips exactly.
//! - [`verify`]: the verifier; [`diag`]: diagnostics that name the source node.
//!
//! This crate knows nothing of ONNX.

pub mod attr;
pub mod builder;
pub mod diag;
pub mod dim;
pub mod dtype;
pub mod fold;
pub mod graph;
pub mod minifloat;
pub mod ops;
pub mod packing;
pub mod parse;
pub mod print;
pub mod symbolic;
pub mod tensor;
pub mod types;
pub mod verify;

pub use attr::{Attr, AttrKind, Attrs};
pub use builder::Builder;
pub use diag::{Diagnostic, Diagnostics};
pub use dim::Dim;
pub use dtype::DType;
pub use graph::{ConstId, Graph, Loc, Op, ValueId};
pub use ops::{AttrAccess, OpKind};
pub use parse::parse_graph;
pub use print::{print_graph, print_graph_with, PrintOptions};
pub use tensor::{Data, Tensor};
pub use types::{ElemType, TensorType};
pub use verify::verify;
