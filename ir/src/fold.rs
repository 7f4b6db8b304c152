//! Constant folding of one op: evaluate it with its reference semantics when
//! every operand is a known constant. Shared by the frontend (which folds the
//! shape arithmetic exporters leave while importing) and the passes.

use crate::attr::Attrs;
use crate::ops::{EvalCtx, OpKind, Trait};
use crate::tensor::{SharedTensor, Tensor};

/// Folds an op when possible: `None` when it cannot be folded (an operand is
/// not constant, the op is random or has no semantics), `Some(Err)` when the
/// evaluation itself failed (the op is invalid on these values).
pub fn fold_op(
    kind: OpKind,
    attrs: &Attrs,
    operands: &[Option<SharedTensor>],
    present: &[bool],
    num_results: usize,
) -> Option<Result<Vec<Tensor>, String>> {
    let def = kind.def();
    if kind == OpKind::Constant || def.has_trait(Trait::Random) {
        return None;
    }
    let eval = def.eval?;
    // Every present operand must be constant.
    if operands.iter().zip(present).any(|(c, p)| *p && c.is_none()) {
        return None;
    }
    let ctx = EvalCtx {
        def,
        attrs,
        inputs: operands.iter().map(|c| c.as_deref()).collect(),
        num_results,
    };
    Some(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval(&ctx)))
            .unwrap_or_else(|_| Err("internal error while folding".into())),
    )
}
