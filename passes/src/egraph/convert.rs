//! Graph -> e-graph (one pass over the ops in topological order: each value
//! becomes its e-class, so a DAG goes in linearly) and an extracted choice ->
//! graph (ops re-emitted in dependency order with the locations the e-classes
//! kept, inputs, outputs and constants preserved).

use super::analysis::{infer_result, TsrAnalysis, TsrEGraph};
use super::lang::{AttrSet, OpNode, TsrLang};
use egg::{Id, Language};
use std::collections::HashMap;
use tessera_ir::graph::Constant;
use tessera_ir::ops::Trait;
use tessera_ir::{Attr, Attrs, Graph, Loc, OpKind, TensorType, ValueId};

/// The e-graph of a graph and the e-classes of its outputs, in order.
pub struct Converted {
    pub egraph: TsrEGraph,
    pub roots: Vec<Id>,
}

pub fn graph_to_egraph(g: &Graph) -> Result<Converted, String> {
    let pool = g.constants.iter().map(|c| c.value.clone()).collect();
    let input_types = g.inputs.iter().map(|v| g.ty(*v).clone()).collect();
    let mut eg = TsrEGraph::new(TsrAnalysis::new(pool, input_types));
    let mut class_of: Vec<Option<Id>> = vec![None; g.values.len()];
    for (i, v) in g.inputs.iter().enumerate() {
        class_of[v.0 as usize] = Some(eg.add(TsrLang::Input(i as u32)));
    }
    let absent = eg.add(TsrLang::Absent);
    let mut next_salt = 0u32;
    for op in &g.ops {
        let set_loc = |eg: &mut TsrEGraph, id: Id| {
            if eg[id].data.loc.is_none() {
                eg[id].data.loc = op.loc.clone();
            }
        };
        if let (OpKind::Constant, Some(Attr::Const(c))) = (op.kind, op.attrs.get("value")) {
            let id = eg.add(TsrLang::Const(c.0));
            set_loc(&mut eg, id);
            class_of[op.results[0].0 as usize] = Some(id);
            continue;
        }
        let mut children = Vec::with_capacity(op.operands.len());
        for o in &op.operands {
            children.push(match o {
                None => absent,
                Some(v) => class_of
                    .get(v.0 as usize)
                    .copied()
                    .flatten()
                    .ok_or_else(|| format!("%{} is used before it is defined", v.0))?,
            });
        }
        let salt = if op.kind.def().has_trait(Trait::Random) {
            next_salt += 1;
            next_salt
        } else {
            0
        };
        let attrs = AttrSet::new(op.attrs.clone());
        for (r, v) in op.results.iter().enumerate() {
            let node = OpNode {
                kind: op.kind,
                result: r as u16,
                num_results: op.results.len() as u16,
                attrs: Some(attrs.clone()),
                salt,
                children: children.clone(),
            };
            eg.analysis.hint = Some(g.ty(*v).clone());
            let id = eg.add(TsrLang::Op(node));
            // A node equal to an earlier one (common subexpression) is not
            // made again and leaves the hint unused.
            eg.analysis.hint = None;
            set_loc(&mut eg, id);
            class_of[v.0 as usize] = Some(id);
        }
    }
    eg.rebuild();
    let roots = g
        .outputs
        .iter()
        .map(|(name, v)| {
            class_of[v.0 as usize]
                .map(|c| eg.find(c))
                .ok_or_else(|| format!("output '{name}' is never defined"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Converted { egraph: eg, roots })
}

/// The e-node chosen for each (canonical) e-class.
pub type Choice = HashMap<Id, TsrLang>;

/// One op instance in the export: e-nodes that differ only in `result`.
#[derive(PartialEq, Eq, Hash)]
struct OpKey {
    kind: OpKind,
    attrs: Option<AttrSet>,
    num_results: u16,
    salt: u32,
    children: Vec<Id>,
}

#[derive(Copy, Clone, PartialEq)]
enum Visit {
    InProgress,
    Done,
}

/// Rebuilds a graph from `choice`, with `src`'s name, inputs (all of them,
/// even unused ones, so the signature is kept), outputs and opsets. Fails on
/// a cyclic choice rather than looping.
pub fn egraph_to_graph(
    src: &Graph,
    eg: &TsrEGraph,
    roots: &[Id],
    choice: &Choice,
) -> Result<Graph, String> {
    let mut out = Graph::new(&src.name);
    out.opsets = src.opsets.clone();
    for (i, v) in src.inputs.iter().enumerate() {
        let name = src.values[v.0 as usize]
            .name
            .clone()
            .unwrap_or_else(|| format!("input{i}"));
        out.add_input(&name, src.ty(*v).clone());
    }
    // Every pool entry keeps its index, so handles in quantized types and
    // attributes stay valid; unused ones are dropped at the end.
    out.constants = eg
        .analysis
        .pool
        .iter()
        .enumerate()
        .map(|(i, t)| Constant {
            name: src
                .constants
                .get(i)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| format!("egraph.folded.{i}")),
            value: t.clone(),
        })
        .collect();

    let mut value_of: HashMap<Id, Option<ValueId>> = HashMap::new();
    let mut visit: HashMap<Id, Visit> = HashMap::new();
    let mut ops: HashMap<OpKey, Vec<ValueId>> = HashMap::new();
    let mut stack: Vec<(Id, bool, Option<Loc>)> =
        roots.iter().rev().map(|&r| (r, false, None)).collect();
    while let Some((id, expanded, parent_loc)) = stack.pop() {
        let id = eg.find(id);
        let node = choice
            .get(&id)
            .ok_or_else(|| format!("no e-node chosen for e-class {id}"))?;
        let loc = eg[id].data.loc.clone().or(parent_loc);
        if !expanded {
            match visit.get(&id) {
                Some(Visit::Done) => continue,
                Some(Visit::InProgress) => {
                    return Err(format!("the chosen program is cyclic at e-class {id}"))
                }
                None => {}
            }
            visit.insert(id, Visit::InProgress);
            stack.push((id, true, loc.clone()));
            for &c in node.children().iter().rev() {
                if visit.get(&eg.find(c)) != Some(&Visit::Done) {
                    stack.push((c, false, loc.clone()));
                }
            }
            continue;
        }
        let v = emit(&mut out, eg, id, node, loc, &value_of, &mut ops)?;
        value_of.insert(id, v);
        visit.insert(id, Visit::Done);
    }

    for ((name, old), root) in src.outputs.iter().zip(roots) {
        let v = value_of
            .get(&eg.find(*root))
            .copied()
            .flatten()
            .ok_or_else(|| format!("output '{name}' has no value"))?;
        let slot = &mut out.values[v.0 as usize].name;
        if slot.is_none() {
            *slot = src.values[old.0 as usize].name.clone();
        }
        out.outputs.push((name.clone(), v));
    }
    out.compact_constants();
    out.compact_values();
    Ok(out)
}

fn emit(
    out: &mut Graph,
    eg: &TsrEGraph,
    id: Id,
    node: &TsrLang,
    loc: Option<Loc>,
    value_of: &HashMap<Id, Option<ValueId>>,
    ops: &mut HashMap<OpKey, Vec<ValueId>>,
) -> Result<Option<ValueId>, String> {
    let ty_of = |c: Id| {
        eg[c]
            .data
            .ty
            .clone()
            .ok_or_else(|| format!("e-class {c} has no type"))
    };
    match node {
        TsrLang::Input(i) => {
            Ok(Some(*out.inputs.get(*i as usize).ok_or_else(|| {
                format!("graph input #{i} does not exist")
            })?))
        }
        TsrLang::Absent => Ok(None),
        TsrLang::Const(c) => {
            let mut attrs = Attrs::new();
            attrs.insert("value".into(), Attr::Const(tessera_ir::ConstId(*c)));
            Ok(Some(
                out.push_op(OpKind::Constant, vec![], vec![ty_of(id)?], attrs, loc)[0],
            ))
        }
        TsrLang::Op(n) => {
            let children: Vec<Id> = n.children.iter().map(|&c| eg.find(c)).collect();
            let key = OpKey {
                kind: n.kind,
                attrs: n.attrs.clone(),
                num_results: n.num_results,
                salt: n.salt,
                children: children.clone(),
            };
            if let Some(rs) = ops.get(&key) {
                return Ok(Some(rs[n.result as usize]));
            }
            let operands: Vec<Option<ValueId>> = children
                .iter()
                .map(|c| {
                    value_of
                        .get(c)
                        .copied()
                        .ok_or_else(|| format!("operand e-class {c} not emitted"))
                })
                .collect::<Result<_, String>>()?;
            let mut types = Vec::with_capacity(n.num_results as usize);
            for r in 0..n.num_results {
                types.push(if r == n.result {
                    ty_of(id)?
                } else {
                    sibling_type(eg, n, r, &children)?
                });
            }
            let attrs = n
                .attrs
                .as_ref()
                .map(|a| a.attrs().clone())
                .unwrap_or_default();
            let rs = out.push_op(n.kind, operands, types, attrs, loc);
            let v = rs[n.result as usize];
            ops.insert(key, rs);
            Ok(Some(v))
        }
    }
}

/// The type of another result of the same op: from its e-class when the
/// e-graph has it, inferred otherwise (a result nothing uses).
fn sibling_type(eg: &TsrEGraph, n: &OpNode, r: u16, children: &[Id]) -> Result<TensorType, String> {
    let sib = OpNode {
        result: r,
        children: children.to_vec(),
        ..n.clone()
    };
    if let Some(t) = eg
        .lookup(TsrLang::Op(sib.clone()))
        .and_then(|c| eg[c].data.ty.clone())
    {
        return Ok(t);
    }
    let tys: Vec<Option<&TensorType>> = children.iter().map(|&c| eg[c].data.ty.as_ref()).collect();
    let consts: Vec<_> = children
        .iter()
        .map(|&c| eg[c].data.constant.as_ref())
        .collect();
    infer_result(&sib, &tys, &consts)
        .map_err(|e| format!("result #{r} of {}: {e}", n.kind.mnemonic()))
}
