//! The e-class analysis: every e-class is one tensor value, so it has one
//! type (shape with symbolic dims, element type), maybe a known constant
//! value, and a representative source location for the ops the export emits.
//!
//! Types come from each op's own `infer`, so the analysis covers every op of
//! the table. Constants fold through each op's `eval` (small results only) and
//! `modify` puts a constant leaf into the folded e-class, which is how rules
//! like `(x*c1)*c2 -> x*(c1*c2)` end up with one constant.

use super::lang::{OpNode, TsrLang};
use egg::{Analysis, DidMerge, EGraph, Id};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tessera_ir::ops::InferCtx;
use tessera_ir::tensor::SharedTensor;
use tessera_ir::{DType, Loc, TensorType};

pub type TsrEGraph = EGraph<TsrLang, TsrAnalysis>;

/// Folded constants larger than this stay computed: as in `fold-constants`,
/// folding a big broadcast would bloat the weights for no gain.
pub const MAX_FOLDED_ELEMENTS: i64 = 1 << 16;

#[derive(Clone, Debug, Default)]
pub struct ClassData {
    /// `None` for the absent-operand class, or when inference failed for
    /// every e-node (which the rule guard never lets happen for rewrites).
    pub ty: Option<TensorType>,
    pub constant: Option<SharedTensor>,
    /// Where the value came from; kept through merges (the first one wins).
    pub loc: Option<Loc>,
}

#[derive(Clone, Debug, Default)]
pub struct TsrAnalysis {
    /// Constants by [`TsrLang::Const`] index: the source graph's constants
    /// first (same indices as their `ConstId`), then folded ones.
    pub pool: Vec<SharedTensor>,
    /// Folded constants by content, so equal folds share one pool entry.
    folded: HashMap<Vec<u8>, u32>,
    /// Types of the graph inputs, by position.
    pub input_types: Vec<TensorType>,
    /// The type the next added op e-node gets instead of an inferred one:
    /// the importer's types can be sharper than `infer` alone (symbolic
    /// shapes computed by the shape arithmetic), and they are verified.
    pub hint: Option<TensorType>,
    /// How many rewrites each rule's guard refused (shape- or type-invalid).
    pub refused: BTreeMap<String, usize>,
}

impl TsrAnalysis {
    pub fn new(pool: Vec<SharedTensor>, input_types: Vec<TensorType>) -> TsrAnalysis {
        TsrAnalysis {
            pool,
            input_types,
            ..Default::default()
        }
    }

    /// The pool index of a folded value, adding it once.
    pub fn intern(&mut self, t: SharedTensor) -> u32 {
        let mut key = t.dtype.name().as_bytes().to_vec();
        key.push(0);
        for d in &t.shape {
            key.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        key.extend_from_slice(&t.to_bytes());
        if let Some(&i) = self.folded.get(&key) {
            return i;
        }
        self.pool.push(t);
        let i = self.pool.len() as u32 - 1;
        self.folded.insert(key, i);
        i
    }

    /// The type of a pool constant.
    pub fn type_of_const(&self, c: u32) -> Option<TensorType> {
        let t = self.pool.get(c as usize)?;
        Some(TensorType::fixed(
            &t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
            t.dtype,
        ))
    }
}

/// Both types are the same, provably: equal element types and every dim
/// known and equal. Unknown dims never prove anything, so a rewrite that
/// touches one is refused.
pub fn same_type(a: &TensorType, b: &TensorType) -> bool {
    a.elem == b.elem
        && a.rank() == b.rank()
        && a.shape.iter().zip(&b.shape).all(|(x, y)| x.same_as(y))
}

/// Runs an op's `infer` on operand types and constant values and returns
/// the type of result `node.result`.
pub fn infer_result(
    node: &OpNode,
    operands: &[Option<&TensorType>],
    consts: &[Option<&SharedTensor>],
) -> Result<TensorType, String> {
    let empty = tessera_ir::Attrs::new();
    let attrs = node.attrs.as_ref().map(|a| a.attrs()).unwrap_or(&empty);
    let def = node.kind.def();
    let ctx = InferCtx {
        def,
        attrs,
        operands: operands.to_vec(),
        consts: consts.to_vec(),
        syms: vec![None; operands.len()],
        num_results: node.num_results as usize,
    };
    // An op's infer must not panic, but one bad rule must not take the
    // compiler down either.
    let tys = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (def.infer)(&ctx)))
        .unwrap_or_else(|_| Err(format!("internal error inferring {}", def.mnemonic)))?;
    tys.into_iter()
        .nth(node.result as usize)
        .ok_or_else(|| format!("{} has no result #{}", def.mnemonic, node.result))
}

/// Evaluates result `node.result` when every present operand is constant
/// and the result is small.
pub fn fold_result(
    node: &OpNode,
    ty: Option<&TensorType>,
    consts: &[Option<SharedTensor>],
    present: &[bool],
) -> Option<SharedTensor> {
    let small = ty
        .and_then(TensorType::num_elements)
        .is_some_and(|n| n <= MAX_FOLDED_ELEMENTS);
    if !small || ty.is_some_and(|t| t.dtype() == DType::Str) {
        return None;
    }
    let attrs = node.attrs.as_ref()?.attrs();
    let values =
        tessera_ir::fold::fold_op(node.kind, attrs, consts, present, node.num_results as usize)?
            .ok()?;
    values.into_iter().nth(node.result as usize).map(Arc::new)
}

impl Analysis<TsrLang> for TsrAnalysis {
    type Data = ClassData;

    fn make(eg: &mut TsrEGraph, enode: &TsrLang, _id: Id) -> ClassData {
        match enode {
            TsrLang::Input(i) => ClassData {
                ty: eg.analysis.input_types.get(*i as usize).cloned(),
                ..Default::default()
            },
            TsrLang::Const(c) => ClassData {
                ty: eg.analysis.type_of_const(*c),
                constant: eg.analysis.pool.get(*c as usize).cloned(),
                loc: None,
            },
            TsrLang::Absent => ClassData::default(),
            TsrLang::Op(node) => {
                let hint = eg.analysis.hint.take();
                let kids: Vec<&ClassData> = node.children.iter().map(|&c| &eg[c].data).collect();
                let tys: Vec<Option<&TensorType>> = kids.iter().map(|d| d.ty.as_ref()).collect();
                let consts: Vec<Option<&SharedTensor>> =
                    kids.iter().map(|d| d.constant.as_ref()).collect();
                let ty = hint.or_else(|| infer_result(node, &tys, &consts).ok());
                let present: Vec<bool> = node.children.iter().map(|&c| !is_absent(eg, c)).collect();
                let all_const = consts.iter().zip(&present).all(|(c, p)| c.is_some() || !p);
                let constant = if all_const {
                    let owned: Vec<Option<SharedTensor>> =
                        consts.iter().map(|c| c.cloned()).collect();
                    fold_result(node, ty.as_ref(), &owned, &present)
                } else {
                    None
                };
                ClassData {
                    ty,
                    constant,
                    loc: None,
                }
            }
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        let (mut a_changed, mut b_changed) = (false, false);
        match (&a.ty, b.ty) {
            (None, Some(t)) => {
                a.ty = Some(t);
                a_changed = true;
            }
            (Some(_), None) => b_changed = true,
            (Some(x), Some(y)) => b_changed |= *x != y,
            (None, None) => {}
        }
        match (&a.constant, b.constant) {
            (None, Some(t)) => {
                a.constant = Some(t);
                a_changed = true;
            }
            (Some(_), None) => b_changed = true,
            _ => {}
        }
        // Locations do not flow to parents, so they do not count as changes.
        if a.loc.is_none() {
            a.loc = b.loc;
        }
        DidMerge(a_changed, b_changed)
    }

    fn modify(eg: &mut TsrEGraph, id: Id) {
        let Some(value) = eg[id].data.constant.clone() else {
            return;
        };
        if eg[id].nodes.iter().any(|n| matches!(n, TsrLang::Const(_))) {
            return;
        }
        let c = eg.analysis.intern(value);
        let leaf = eg.add(TsrLang::Const(c));
        eg.union(id, leaf);
    }
}

pub fn is_absent(eg: &TsrEGraph, id: Id) -> bool {
    eg[id].nodes.iter().any(|n| matches!(n, TsrLang::Absent))
}
