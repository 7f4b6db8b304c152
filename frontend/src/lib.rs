//! The ONNX importer: ONNX models (`.onnx`) and tensors (`.pb`) into Tessera.
//!
//! - [`proto`]: reading protobuf files; `TensorProto` ↔ [`tessera_ir::Tensor`].
//! - [`registry`]: which Tessera op each ONNX op becomes, and the opset
//!   adapters that bring older node forms to the newest signature.
//! - [`import`]: the graph import ([`import_model`], [`import_bytes`]).
//! - [`fold`]: constant folding while importing.
//! - [`error`]: [`ImportError`], which lists every unsupported node at once.

pub mod error;
pub mod fold;
pub mod import;
pub mod proto;
pub mod registry;

pub use error::{ImportError, NodeError, NodeInfo};
pub use import::{import_bytes, import_model, import_proto};
pub use proto::{
    read_named_tensor_pb, read_tensor_pb, tensor_from_proto, tensor_to_proto, write_tensor_pb,
};
