//! What an e-node costs on a target: FLOP and byte estimates per op, priced
//! by the target's roofline ([`TargetDesc::roofline_seconds`]).
//!
//! The estimates are first-order: contractions count multiply-adds, other
//! ops count elements, and every op moves its operands and result once.
//! Views (reshape and friends) are free but not zero, so a redundant one is
//! always worth removing.

use super::analysis::TsrEGraph;
use super::lang::TsrLang;
use tessera_cost_model::TargetDesc;
use tessera_ir::ops::Trait;
use tessera_ir::{Attrs, Dim, OpKind, TensorType};

/// Size every symbolic dim takes when pricing (costs need numbers; the
/// relative order of alternatives rarely depends on the exact size).
pub const DEFAULT_SYMBOL_SIZE: i64 = 32;

/// What a view op costs: not a kernel, but not nothing either.
const VIEW_COST: f64 = 1e-12;

fn numel(t: &TensorType, sym: i64) -> f64 {
    t.shape
        .iter()
        .map(|d| d.eval(&|_| Some(sym)).unwrap_or(sym).max(0) as f64)
        .product()
}

fn bytes(t: &TensorType, sym: i64) -> f64 {
    numel(t, sym) * t.dtype().bits() as f64 / 8.0
}

/// The size of dim `i` from the end (1 = last).
fn dim_from_end(t: &TensorType, i: usize, sym: i64) -> f64 {
    t.rank()
        .checked_sub(i)
        .and_then(|k| t.shape.get(k))
        .map(|d: &Dim| d.eval(&|_| Some(sym)).unwrap_or(sym) as f64)
        .unwrap_or(1.0)
}

/// Ops that only relabel a tensor's shape: no data moves.
pub fn is_view(kind: OpKind) -> bool {
    matches!(
        kind.mnemonic(),
        "reshape" | "squeeze" | "unsqueeze" | "flatten" | "identity"
    )
}

/// `(flops, bytes)` of one op. `results` may hold only the results the
/// caller knows (one e-class is one result).
pub fn op_cost(
    kind: OpKind,
    attrs: &Attrs,
    operands: &[Option<&TensorType>],
    results: &[&TensorType],
    sym: i64,
) -> (f64, f64) {
    let moved: f64 = operands
        .iter()
        .flatten()
        .map(|t| bytes(t, sym))
        .sum::<f64>()
        + results.iter().map(|t| bytes(t, sym)).sum::<f64>();
    let out = results.first().map(|t| numel(t, sym)).unwrap_or(0.0);
    let a = operands.first().copied().flatten();
    let b = operands.get(1).copied().flatten();
    let m = kind.mnemonic();
    let flops = match m {
        // 2*M*N*K: every output element is a K-long dot product.
        "matmul"
        | "linear"
        | "matmul_integer"
        | "qlinear_matmul"
        | "ms.matmul_integer_to_float"
        | "ms.dynamic_quantize_matmul" => {
            2.0 * out * a.map(|t| dim_from_end(t, 1, sym)).unwrap_or(1.0)
        }
        "gemm" => {
            let trans_a = matches!(attrs.get("transA"), Some(tessera_ir::Attr::Int(1)));
            2.0 * out
                * a.map(|t| dim_from_end(t, if trans_a { 2 } else { 1 }, sym))
                    .unwrap_or(1.0)
        }
        // B is packed [N, blocks, bytes]; K comes from the attribute.
        "ms.matmul_nbits" => {
            let k = match attrs.get("K") {
                Some(tessera_ir::Attr::Int(k)) => *k as f64,
                _ => a.map(|t| dim_from_end(t, 1, sym)).unwrap_or(1.0),
            };
            2.0 * out * k
        }
        // Each output element reduces Cin/group x kernel-window products,
        // which is the weight's size per output channel.
        "conv" | "conv_integer" | "qlinear_conv" | "conv_transpose" | "deform_conv" => {
            let w = if m == "qlinear_conv" {
                operands.get(3).copied().flatten()
            } else {
                b
            };
            let per_out = w
                .map(|t| numel(t, sym) / dim_from_end(t, t.rank(), sym).max(1.0))
                .unwrap_or(1.0);
            2.0 * out * per_out
        }
        // Q·Kᵀ and P·V: 2 * 2 * (query elements) * (key length).
        "attention" | "ms.attention" | "ms.group_query_attention" => {
            let q = a.map(|t| numel(t, sym)).unwrap_or(out);
            let sk = b.map(|t| dim_from_end(t, 2, sym)).unwrap_or(1.0);
            4.0 * q * sk
        }
        _ if m.starts_with("reduce_")
            || m.contains("normalization")
            || m.contains("softmax")
            || m.contains("pool") =>
        {
            // A few passes over the input.
            4.0 * a.map(|t| numel(t, sym)).unwrap_or(out)
        }
        _ if kind.def().has_trait(Trait::Elementwise) => out,
        _ => 0.0,
    };
    (flops, moved)
}

/// Prices e-nodes for extraction on one target.
pub struct CostModel {
    pub target: TargetDesc,
    pub symbol_size: i64,
}

impl CostModel {
    pub fn new(target: TargetDesc) -> CostModel {
        CostModel {
            target,
            symbol_size: DEFAULT_SYMBOL_SIZE,
        }
    }

    /// The cost of one e-node, children excluded. Leaves are free: the
    /// ops reading them pay for the bytes. A multi-result op is split evenly
    /// over its results, so choosing all of them costs the op once.
    pub fn node_cost(&self, eg: &TsrEGraph, id: egg::Id, node: &TsrLang) -> f64 {
        let TsrLang::Op(n) = node else { return 0.0 };
        if is_view(n.kind) {
            return VIEW_COST;
        }
        let operands: Vec<Option<&TensorType>> =
            n.children.iter().map(|&c| eg[c].data.ty.as_ref()).collect();
        let results: Vec<&TensorType> = eg[id].data.ty.iter().collect();
        let empty = Attrs::new();
        let attrs = n.attrs.as_ref().map(|a| a.attrs()).unwrap_or(&empty);
        let (flops, bytes) = op_cost(n.kind, attrs, &operands, &results, self.symbol_size);
        self.target.roofline_seconds(flops, bytes) / n.num_results.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_ir::DType;

    fn k(m: &str) -> OpKind {
        OpKind::from_mnemonic(m).unwrap()
    }

    #[test]
    fn matmul_counts_two_flops_per_multiply_add() {
        let a = TensorType::fixed(&[2, 8, 16], DType::F32);
        let b = TensorType::fixed(&[16, 4], DType::F32);
        let c = TensorType::fixed(&[2, 8, 4], DType::F32);
        let (f, by) = op_cost(k("matmul"), &Attrs::new(), &[Some(&a), Some(&b)], &[&c], 32);
        assert_eq!(f, 2.0 * 2.0 * 8.0 * 4.0 * 16.0);
        assert_eq!(by, 4.0 * (256.0 + 64.0 + 64.0));
    }

    #[test]
    fn symbolic_dims_take_the_default_size_and_elementwise_is_one_flop() {
        let x = TensorType::new(vec![Dim::sym("batch"), Dim::fixed(3)], DType::F16);
        let (f, by) = op_cost(k("add"), &Attrs::new(), &[Some(&x), Some(&x)], &[&x], 10);
        assert_eq!(f, 30.0);
        assert_eq!(by, 3.0 * 30.0 * 2.0);
    }

    #[test]
    fn conv_flops_use_the_weight_size_per_output_channel() {
        let x = TensorType::fixed(&[1, 3, 8, 8], DType::F32);
        let w = TensorType::fixed(&[4, 3, 3, 3], DType::F32);
        let y = TensorType::fixed(&[1, 4, 6, 6], DType::F32);
        let (f, _) = op_cost(
            k("conv"),
            &Attrs::new(),
            &[Some(&x), Some(&w), None],
            &[&y],
            1,
        );
        assert_eq!(f, 2.0 * 144.0 * 27.0);
    }
}
