//! Constant folding during import. Exporters compute shapes in the graph
//! (torch's `Shape → Gather → Unsqueeze → Concat → Reshape` chains); folding
//! them as nodes arrive turns the target shapes into constants, so the ops
//! that read them (Reshape, Expand, Slice...) infer precise types.

use std::collections::HashMap;
use std::sync::Arc;
use tessera_ir::fold::fold_op;
use tessera_ir::ops::{OpKind, Trait};
use tessera_ir::tensor::SharedTensor;
use tessera_ir::{Attrs, Data, Graph, Tensor, TensorType, ValueId};

/// Folded results larger than this are kept only when they feed shape operands.
pub const MAX_FOLDED_ELEMENTS: usize = 64 * 1024;

/// Nodes whose results (by inference) have more elements than this are not
/// evaluated at import: a corrupt or hostile model must not make the
/// importer allocate without bound.
pub const MAX_FOLD_COMPUTE: i64 = 1 << 24;

/// A metadata-only operand (Shape, Size) is materialised as a real zero tensor
/// up to this many elements; beyond, as a tensor with the right shape and no
/// data, which a metadata-only `eval` never reads.
const MAX_SHAPE_ONLY_ZEROS: usize = 1 << 20;

/// The message of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Evaluates an op whose operands are all known, or None when it cannot be
/// folded: some operand is not constant, the op is random or has no `eval`,
/// or `eval` fails (the op then stays in the graph and fails, if at all, at
/// run time with its own message). Metadata-only operands (Shape's input)
/// only need a static shape.
pub fn try_fold(
    g: &Graph,
    kind: OpKind,
    operands: &[Option<ValueId>],
    attrs: &Attrs,
    num_results: usize,
    consts: &HashMap<ValueId, SharedTensor>,
) -> Option<Vec<Tensor>> {
    let shape_only = kind.def().has_trait(Trait::ShapeOnly);
    let mut values: Vec<Option<SharedTensor>> = Vec::with_capacity(operands.len());
    for (i, o) in operands.iter().enumerate() {
        values.push(match o {
            None => None,
            Some(v) => match consts.get(v) {
                Some(t) => Some(t.clone()),
                None if shape_only && i == 0 => Some(Arc::new(shape_standin(g.ty(*v))?)),
                None => return None,
            },
        });
    }
    let present: Vec<bool> = operands.iter().map(Option::is_some).collect();
    let out = fold_op(kind, attrs, &values, &present, num_results)?.ok()?;
    // Results must be well-formed tensors of the count the node has.
    (out.len() == num_results
        && out
            .iter()
            .all(|t| t.len() == t.shape.iter().product::<usize>()))
    .then_some(out)
}

/// A tensor with the (static) shape of `ty`, for ops that read only metadata.
fn shape_standin(ty: &TensorType) -> Option<Tensor> {
    let shape: Vec<usize> = ty
        .static_shape()?
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    Some(if n <= MAX_SHAPE_ONLY_ZEROS {
        Tensor::zeros(ty.dtype(), shape)
    } else {
        Tensor {
            dtype: ty.dtype(),
            shape,
            data: Data::zeros(ty.dtype(), 0),
        }
    })
}
