//! Import errors. One [`ImportError`] per failed import, carrying everything
//! that went wrong (every unsupported node, every node that failed), so a user
//! fixing a model sees the whole list at once.

use std::fmt;
use std::path::PathBuf;
use tessera_ir::Diagnostics;

/// The ONNX node an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub op_type: String,
    /// `ai.onnx` for the default domain.
    pub domain: String,
    pub opset: i64,
}

impl fmt::Display for NodeInfo {
    /// `'affinegrid1' (AffineGrid, ai.onnx opset 20)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' ({}, {} opset {})",
            self.name, self.op_type, self.domain, self.opset
        )
    }
}

/// A node that maps to a Tessera op but could not be imported (inference
/// failed, bad attributes, an internal error in an op definition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeError {
    pub node: NodeInfo,
    pub message: String,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: {}", self.node, self.message)
    }
}

#[derive(Clone, Debug)]
pub enum ImportError {
    /// The file could not be read.
    Io { path: PathBuf, message: String },
    /// The bytes are not a valid protobuf message of the expected kind
    /// (truncated, corrupt, or another kind of file).
    Parse(String),
    /// The model is well-formed protobuf but not a valid ONNX graph (undefined
    /// names, cycles, non-tensor inputs, bad initializers...).
    Invalid(String),
    /// Nodes with no Tessera op. `failed` lists nodes that were found but
    /// failed for other reasons, so one run reports everything.
    Unsupported {
        nodes: Vec<NodeInfo>,
        failed: Vec<NodeError>,
    },
    /// Nodes that map to Tessera ops but could not be imported.
    Nodes(Vec<NodeError>),
    /// The imported graph failed verification.
    Verify(Diagnostics),
}

impl ImportError {
    /// The nodes without a Tessera op (empty for other errors).
    pub fn unsupported_nodes(&self) -> &[NodeInfo] {
        match self {
            ImportError::Unsupported { nodes, .. } => nodes,
            _ => &[],
        }
    }

    /// The distinct unsupported op types, domain-qualified outside the
    /// default domain, sorted.
    pub fn unsupported_op_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .unsupported_nodes()
            .iter()
            .map(qualified_op_type)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn is_unsupported(&self) -> bool {
        matches!(self, ImportError::Unsupported { .. })
    }
}

/// `Gelu`, or `com.microsoft::MatMulNBits` outside the default domain.
pub fn qualified_op_type(n: &NodeInfo) -> String {
    if n.domain == "ai.onnx" {
        n.op_type.clone()
    } else {
        format!("{}::{}", n.domain, n.op_type)
    }
}

fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for item in items {
        write!(f, "\n  {item}")?;
    }
    Ok(())
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { path, message } => {
                write!(f, "cannot read '{}': {message}", path.display())
            }
            ImportError::Parse(m) => f.write_str(m),
            ImportError::Invalid(m) => write!(f, "invalid ONNX model: {m}"),
            ImportError::Unsupported { nodes, failed } => {
                write!(f, "unsupported ONNX operations ({}): ", nodes.len())?;
                let list: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
                f.write_str(&list.join(", "))?;
                if !failed.is_empty() {
                    write!(f, "\nalso, {} node(s) failed to import:", failed.len())?;
                    write_list(f, failed)?;
                }
                Ok(())
            }
            ImportError::Nodes(errs) => {
                if let [e] = &errs[..] {
                    return write!(f, "cannot import {e}");
                }
                write!(f, "cannot import {} nodes:", errs.len())?;
                write_list(f, errs)
            }
            ImportError::Verify(d) => write!(f, "the imported graph does not verify:\n{d}"),
        }
    }
}

impl std::error::Error for ImportError {}
