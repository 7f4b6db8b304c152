//! What an e-node costs on a target: the cost model's per-op estimate
//! ([`tessera_cost_model::op_cost`]), a hierarchical roofline that prices
//! `linear` as its product plus epilogue and a `sched.tile` by its traffic
//! per memory level.

use super::analysis::TsrEGraph;
use super::lang::TsrLang;
use tessera_cost_model::op_cost;
use tessera_cost_model::TargetDesc;
use tessera_ir::{Attrs, TensorType};

pub use tessera_cost_model::op_cost::{is_view, DEFAULT_SYMBOL_SIZE};

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
        let operands: Vec<Option<&TensorType>> =
            n.children.iter().map(|&c| eg[c].data.ty.as_ref()).collect();
        let results: Vec<&TensorType> = eg[id].data.ty.iter().collect();
        let empty = Attrs::new();
        let attrs = n.attrs.as_ref().map(|a| a.attrs()).unwrap_or(&empty);
        let e = op_cost::estimate(
            &self.target,
            n.kind,
            attrs,
            &operands,
            &results,
            self.symbol_size,
        );
        e.seconds / n.num_results.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egraph::convert::graph_to_egraph;
    use tessera_ir::builder::Builder;
    use tessera_ir::{DType, Graph, OpKind};

    /// The e-graph cost of a graph's only op.
    fn price(g: &Graph, target: &str) -> f64 {
        let c = graph_to_egraph(g).unwrap();
        let m = CostModel::new(TargetDesc::builtin(target).unwrap());
        let root = c.roots[0];
        let node = c.egraph[root].nodes[0].clone();
        m.node_cost(&c.egraph, root, &node)
    }

    #[test]
    fn linear_costs_at_least_its_product() {
        let build = |kind: &str| {
            let mut g = Graph::new("g");
            let x = g.add_input("x", TensorType::fixed(&[256, 512], DType::F32));
            let w = g.add_input("w", TensorType::fixed(&[512, 512], DType::F32));
            let kind = OpKind::from_mnemonic(kind).unwrap();
            let y = Builder::new(&mut g)
                .op(kind, vec![Some(x), Some(w)], Attrs::new(), 1, None)
                .unwrap()[0];
            g.outputs.push(("y".into(), y));
            g
        };
        let (mm, lin) = (
            price(&build("matmul"), "cpu"),
            price(&build("linear"), "cpu"),
        );
        // Before the cost model priced linear, it had no flops and cost a
        // fraction of the product.
        assert!(
            lin >= mm && mm > 2.0 * 256.0 * 512.0 * 512.0 / 332.8e9,
            "{lin} {mm}"
        );
    }
}
