//! `merge-projections`: matrix products that read the same activations
//! through constant weights with the same contraction size (the Q, K and V
//! projections of an attention layer) become one product on the
//! concatenated weights (and biases), and a `split` gives back the original
//! results.
//!
//! One wide GEMM reads the activations once and keeps the machine busier
//! than three narrow ones. Every result element is still the same dot
//! product over the same K values, and a bias is still added per element,
//! so the rewrite is exact on the reference interpreter.
//!
//! This is a graph pass, not an e-graph rule: the merged product is one
//! e-class feeding several splits, a multi-output choice that a per-class
//! extractor never takes.

use crate::{Pass, PassArgs, PassStats};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tessera_ir::builder::infer_op;
use tessera_ir::tensor::SharedTensor;
use tessera_ir::{
    Attr, Attrs, ConstId, DType, Data, Diagnostic, ElemType, Graph, Loc, Op, OpKind, Tensor,
    TensorType, ValueId,
};

/// Groups smaller than this stay as they are by default: two products
/// (an MLP's gate and up projections) usually lose more by giving up their
/// own epilogue fusions than they gain.
pub const DEFAULT_MIN_GROUP: usize = 3;

pub struct MergeProjections {
    /// The fewest products merged into one.
    pub min_group: usize,
}

impl Default for MergeProjections {
    fn default() -> Self {
        MergeProjections {
            min_group: DEFAULT_MIN_GROUP,
        }
    }
}

impl MergeProjections {
    /// The pass from its pipeline options (`merge-projections{min=2}`).
    pub fn from_args(args: &PassArgs) -> Result<MergeProjections, String> {
        let mut p = MergeProjections::default();
        for (k, v) in &args.0 {
            match k.as_str() {
                "min" => {
                    p.min_group = v
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n >= 2)
                        .ok_or_else(|| format!("option min={v}: expected an integer >= 2"))?
                }
                _ => return Err(format!("unknown option '{k}' (known: min)")),
            }
        }
        Ok(p)
    }
}

/// How the products of a group are written; only products written the same
/// way merge, so the merged one is written that way too.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Form {
    /// `matmul(x, w)`, or `matmul(x, w) + b` when `bias`.
    Matmul { bias: bool },
    /// `linear(x, w, [b])` without a residual.
    Linear { bias: bool, activation: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    input: ValueId,
    k: usize,
    dtype: DType,
    form: Form,
}

/// One product that may join a group.
struct Projection {
    /// The `matmul` or `linear` op.
    op: usize,
    /// The `add` taking the bias of a `matmul`.
    bias_add: Option<usize>,
    weight: (ConstId, SharedTensor),
    bias: Option<(ConstId, SharedTensor)>,
    /// The value the rest of the program reads.
    result: ValueId,
}

/// Reads a graph's constants and uses.
struct View<'g> {
    g: &'g Graph,
    producers: Vec<Option<usize>>,
    users: Vec<Vec<usize>>,
    is_output: Vec<bool>,
}

impl<'g> View<'g> {
    fn new(g: &'g Graph) -> View<'g> {
        let mut users = vec![Vec::new(); g.values.len()];
        for (i, op) in g.ops.iter().enumerate() {
            for v in op.operands.iter().flatten() {
                if users[v.0 as usize].last() != Some(&i) {
                    users[v.0 as usize].push(i);
                }
            }
        }
        let mut is_output = vec![false; g.values.len()];
        for (_, v) in &g.outputs {
            is_output[v.0 as usize] = true;
        }
        View {
            g,
            producers: g.producers(),
            users,
            is_output,
        }
    }

    fn constant(&self, v: ValueId) -> Option<(ConstId, SharedTensor)> {
        let op = &self.g.ops[self.producers[v.0 as usize]?];
        match (op.kind, op.attrs.get("value")) {
            (OpKind::Constant, Some(Attr::Const(c))) => {
                Some((*c, self.g.constant(*c).value.clone()))
            }
            _ => None,
        }
    }

    fn plain_float(&self, v: ValueId) -> Option<DType> {
        match &self.g.ty(v).elem {
            ElemType::Plain(d) if d.is_float() => Some(*d),
            _ => None,
        }
    }

    /// A constant `[N]` vector of `dtype`.
    fn bias_vector(&self, v: ValueId, n: usize, dtype: DType) -> Option<(ConstId, SharedTensor)> {
        self.constant(v)
            .filter(|(_, t)| t.dtype == dtype && t.shape == [n])
    }

    /// `op` as a projection of its first operand, and the group it may join.
    fn projection(&self, i: usize) -> Option<(GroupKey, Projection)> {
        let op = &self.g.ops[i];
        let (x, w) = (op.operand(0)?, op.operand(1)?);
        let dtype = self.plain_float(x)?;
        let weight = self
            .constant(w)
            .filter(|(_, t)| t.dtype == dtype && concatenable(t))?;
        let [k, n] = weight.1.shape[..] else {
            return None;
        };
        let result = op.results[0];
        let (form, bias, bias_add, result) = match op.kind {
            OpKind::MatMul => {
                // The bias is taken along only when the add is the product's
                // one use: otherwise the bare product is needed as well.
                let add = match &self.users[result.0 as usize][..] {
                    [j] if !self.is_output[result.0 as usize] => Some(*j),
                    _ => None,
                };
                let bias = add.and_then(|j| {
                    let a = &self.g.ops[j];
                    let other = match (a.operand(0), a.operand(1)) {
                        (Some(l), Some(r)) if l == result => r,
                        (Some(l), Some(r)) if r == result => l,
                        _ => return None,
                    };
                    let same_type = self.g.ty(a.results[0]) == self.g.ty(result);
                    (a.kind == OpKind::Add && same_type)
                        .then(|| self.bias_vector(other, n, dtype))
                        .flatten()
                        .map(|b| (j, b))
                });
                match bias {
                    Some((j, b)) => (
                        Form::Matmul { bias: true },
                        Some(b),
                        Some(j),
                        self.g.ops[j].results[0],
                    ),
                    None => (Form::Matmul { bias: false }, None, None, result),
                }
            }
            OpKind::Linear => {
                if op.operand(3).is_some() {
                    return None;
                }
                let bias = match op.operand(2) {
                    Some(b) => Some(self.bias_vector(b, n, dtype)?),
                    None => None,
                };
                let activation = match op.attrs.get("activation") {
                    None => "none".to_string(),
                    Some(Attr::Str(s)) => s.clone(),
                    Some(_) => return None,
                };
                let form = Form::Linear {
                    bias: bias.is_some(),
                    activation,
                };
                (form, bias, None, result)
            }
            _ => return None,
        };
        let key = GroupKey {
            input: x,
            k,
            dtype,
            form,
        };
        Some((
            key,
            Projection {
                op: i,
                bias_add,
                weight,
                bias,
                result,
            },
        ))
    }
}

/// The projections of `g`, grouped by what they read, in program order.
fn groups(g: &Graph) -> Vec<(GroupKey, Vec<Projection>)> {
    let view = View::new(g);
    let mut index: HashMap<GroupKey, usize> = HashMap::new();
    let mut out: Vec<(GroupKey, Vec<Projection>)> = Vec::new();
    for i in 0..g.ops.len() {
        let Some((key, p)) = view.projection(i) else {
            continue;
        };
        match index.get(&key) {
            Some(&at) => out[at].1.push(p),
            None => {
                index.insert(key.clone(), out.len());
                out.push((key, vec![p]));
            }
        }
    }
    out
}

fn loc_name(g: &Graph, op: usize) -> String {
    g.ops[op]
        .loc
        .as_ref()
        .map(|l| l.name.clone())
        .unwrap_or_else(|| format!("op{op}"))
}

fn joined(names: impl Iterator<Item = String>) -> String {
    names.collect::<Vec<_>>().join("+")
}

fn unique_const_name(g: &Graph, base: &str) -> String {
    let taken: HashSet<&str> = g.constants.iter().map(|c| c.name.as_str()).collect();
    if !taken.contains(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}.{i}"))
        .find(|n| !taken.contains(n.as_str()))
        .expect("some suffix is free")
}

/// Rows of `width[i]` elements from each part in turn: the row-major
/// concatenation along the last axis.
fn interleave<T: Copy>(parts: &[&[T]], widths: &[usize], rows: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(rows * widths.iter().sum::<usize>());
    for r in 0..rows {
        for (p, &w) in parts.iter().zip(widths) {
            out.extend_from_slice(&p[r * w..(r + 1) * w]);
        }
    }
    out
}

/// The storage [`concat_last`] copies (every float type's).
fn concatenable(t: &Tensor) -> bool {
    matches!(
        t.data,
        Data::F64(_) | Data::F32(_) | Data::F16(_) | Data::BF16(_) | Data::U8(_)
    )
}

/// Tensors of one element type with equal leading dims, concatenated along
/// the last axis (a copy of the stored values: weights are large).
fn concat_last(tensors: &[SharedTensor]) -> Result<Tensor, String> {
    let first = tensors.first().ok_or("nothing to concatenate")?;
    let lead = &first.shape[..first.rank().saturating_sub(1)];
    if tensors.iter().any(|t| {
        t.dtype != first.dtype || t.rank() != first.rank() || &t.shape[..lead.len()] != lead
    }) {
        return Err("the tensors differ in type or leading dims".into());
    }
    let rows: usize = lead.iter().product();
    let widths: Vec<usize> = tensors
        .iter()
        .map(|t| t.shape.last().copied().unwrap_or(1))
        .collect();
    macro_rules! by_variant {
        ($($v:ident),*) => {
            match &first.data {
                $(Data::$v(_) => {
                    let parts: Vec<&[_]> = tensors
                        .iter()
                        .filter_map(|t| match &t.data {
                            Data::$v(x) => Some(x.as_slice()),
                            _ => None,
                        })
                        .collect();
                    Data::$v(interleave(&parts, &widths, rows))
                })*
                _ => return Err(format!("cannot concatenate {} weights", first.dtype)),
            }
        };
    }
    let data = by_variant!(F64, F32, F16, BF16, U8);
    let mut shape = lead.to_vec();
    shape.push(widths.iter().sum());
    Tensor::new(first.dtype, shape, data)
}

/// Builds the ops replacing a group, in program order, and appends the
/// constants and values they define to `g`.
struct Emit<'g> {
    g: &'g mut Graph,
    ops: Vec<Op>,
    consts: HashMap<ValueId, SharedTensor>,
    loc: Option<Loc>,
}

impl Emit<'_> {
    fn constant(&mut self, name: &str, t: Tensor) -> ValueId {
        let t: SharedTensor = Arc::new(t);
        let ty = TensorType::fixed(
            &t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
            t.dtype,
        );
        let name = unique_const_name(self.g, name);
        let c = self.g.add_constant(&name, t.clone());
        let v = self.g.add_value(ty);
        let mut attrs = Attrs::new();
        attrs.insert("value".into(), Attr::Const(c));
        self.ops.push(Op {
            kind: OpKind::Constant,
            operands: vec![],
            results: vec![v],
            attrs,
            loc: self.loc.clone(),
        });
        self.consts.insert(v, t);
        v
    }

    fn infer(
        &self,
        kind: OpKind,
        operands: &[Option<ValueId>],
        attrs: &Attrs,
        n: usize,
    ) -> Result<Vec<TensorType>, String> {
        infer_op(self.g, kind, operands, attrs, n, &|v| {
            self.consts.get(&v).cloned()
        })
    }

    /// Adds an op with fresh results of inferred types.
    fn op(
        &mut self,
        kind: OpKind,
        operands: Vec<Option<ValueId>>,
        attrs: Attrs,
        loc: Option<Loc>,
    ) -> Result<ValueId, String> {
        let ty = self.infer(kind, &operands, &attrs, 1)?.remove(0);
        let v = self.g.add_value(ty);
        self.ops.push(Op {
            kind,
            operands,
            results: vec![v],
            attrs,
            loc,
        });
        Ok(v)
    }
}

/// The ops computing a group's results at once.
fn merge(g: &mut Graph, key: &GroupKey, members: &[Projection]) -> Result<Vec<Op>, String> {
    let weights: Vec<SharedTensor> = members.iter().map(|p| p.weight.1.clone()).collect();
    let sizes: Vec<i64> = weights.iter().map(|w| w.shape[1] as i64).collect();
    let w = concat_last(&weights)?;
    let bias = match members
        .iter()
        .map(|p| p.bias.clone())
        .collect::<Option<Vec<_>>>()
    {
        Some(b) if !b.is_empty() => {
            let parts: Vec<SharedTensor> = b.iter().map(|(_, t)| t.clone()).collect();
            let names = joined(b.iter().map(|(c, _)| g.constant(*c).name.clone()));
            Some((names, concat_last(&parts)?))
        }
        _ => None,
    };
    let w_name = joined(members.iter().map(|p| g.constant(p.weight.0).name.clone()));
    let op_type = |i: usize| {
        g.ops[i]
            .loc
            .as_ref()
            .map(|l| l.op_type.clone())
            .unwrap_or_else(|| g.ops[i].kind.mnemonic().to_string())
    };
    let product_loc = Loc {
        name: joined(members.iter().map(|p| loc_name(g, p.op))),
        op_type: op_type(members[0].op),
    };
    let add_loc = members[0].bias_add.map(|a| Loc {
        name: joined(
            members
                .iter()
                .filter_map(|p| p.bias_add)
                .map(|i| loc_name(g, i)),
        ),
        op_type: op_type(a),
    });
    let rank = g.ty(members[0].result).rank();
    let results: Vec<ValueId> = members.iter().map(|p| p.result).collect();

    let mut e = Emit {
        g,
        ops: Vec::new(),
        consts: HashMap::new(),
        loc: Some(product_loc.clone()),
    };
    let wv = e.constant(&w_name, w);
    let bv = bias.map(|(name, t)| e.constant(&name, t));
    let y = match &key.form {
        Form::Matmul { .. } => {
            let m = e.op(
                OpKind::MatMul,
                vec![Some(key.input), Some(wv)],
                Attrs::new(),
                Some(product_loc.clone()),
            )?;
            match bv {
                Some(b) => e.op(OpKind::Add, vec![Some(m), Some(b)], Attrs::new(), add_loc)?,
                None => m,
            }
        }
        Form::Linear { activation, .. } => {
            let mut attrs = Attrs::new();
            if activation != "none" {
                attrs.insert("activation".into(), Attr::Str(activation.clone()));
            }
            e.op(
                OpKind::Linear,
                vec![Some(key.input), Some(wv), bv, None],
                attrs,
                Some(product_loc.clone()),
            )?
        }
    };
    let sizes_v = e.constant(
        &format!("{}.split", product_loc.name),
        Tensor::i64(vec![sizes.len()], sizes),
    );
    let mut attrs = Attrs::new();
    attrs.insert("axis".into(), Attr::Int(rank as i64 - 1));
    let operands = vec![Some(y), Some(sizes_v)];
    let tys = e.infer(OpKind::Split, &operands, &attrs, results.len())?;
    for (r, t) in results.iter().zip(&tys) {
        if e.g.ty(*r) != t {
            return Err(format!(
                "the split result {t} differs from the product's type {}",
                e.g.ty(*r)
            ));
        }
    }
    e.ops.push(Op {
        kind: OpKind::Split,
        operands,
        results,
        attrs,
        loc: Some(product_loc),
    });
    Ok(e.ops)
}

impl Pass for MergeProjections {
    fn name(&self) -> &'static str {
        "merge-projections"
    }

    fn run(&self, g: &mut Graph) -> Result<PassStats, Diagnostic> {
        let mut insert: BTreeMap<usize, Vec<Op>> = BTreeMap::new();
        let mut removed: HashSet<usize> = HashSet::new();
        let (mut merged_groups, mut merged_ops) = (0, 0);
        for (key, members) in groups(g) {
            if members.len() < self.min_group {
                continue;
            }
            let first = members[0].op;
            let ops = merge(g, &key, &members).map_err(|e| {
                let names = joined(members.iter().map(|p| loc_name(g, p.op)));
                Diagnostic::new(format!("merge-projections: merging {names}: {e}"))
                    .at(g.ops[first].loc.clone())
            })?;
            insert.insert(first, ops);
            for p in &members {
                removed.insert(p.op);
                removed.extend(p.bias_add);
            }
            merged_groups += 1;
            merged_ops += members.len();
        }
        if merged_groups == 0 {
            return Ok(PassStats::default());
        }
        // Every member reads only the shared input and constants, so the
        // merged ops can stand where the first member stood.
        let old = std::mem::take(&mut g.ops);
        for (i, op) in old.into_iter().enumerate() {
            if let Some(new) = insert.remove(&i) {
                g.ops.extend(new);
            }
            if !removed.contains(&i) {
                g.ops.push(op);
            }
        }
        // The separate weights are dead now; dropping them keeps one copy.
        g.remove_dead();
        Ok(PassStats {
            changes: merged_ops,
            counters: vec![
                ("groups merged".into(), merged_groups),
                ("products merged".into(), merged_ops),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PassManager;
    use tessera_ir::{verify, Builder};
    use tessera_reference::diff::{max_difference, Rng};

    fn loc(name: &str) -> Option<Loc> {
        Some(Loc {
            name: name.into(),
            op_type: "Test".into(),
        })
    }

    fn random_const(b: &mut Builder, rng: &mut Rng, shape: &[usize], name: &str) -> ValueId {
        let n = shape.iter().product();
        let v = (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
        b.constant(name, Arc::new(Tensor::f32(shape.to_vec(), v)), loc(name))
    }

    fn dim(rng: &mut Rng, lo: u64, hi: u64) -> usize {
        (lo + rng.next_u64() % (hi - lo + 1)) as usize
    }

    fn op(
        b: &mut Builder,
        kind: OpKind,
        operands: &[Option<ValueId>],
        attrs: Attrs,
        name: &str,
    ) -> ValueId {
        b.op(kind, operands.to_vec(), attrs, 1, loc(name))
            .unwrap_or_else(|e| panic!("test op {name}: {e}"))[0]
    }

    fn count(g: &Graph, kind: OpKind) -> usize {
        g.ops.iter().filter(|o| o.kind == kind).count()
    }

    fn run(g: &Graph, min: usize) -> (Graph, PassStats) {
        let mut out = g.clone();
        let stats = MergeProjections { min_group: min }.run(&mut out).unwrap();
        verify(&out).unwrap_or_else(|e| panic!("invalid result: {e}"));
        (out, stats)
    }

    /// Products of one input with `widths` output columns each (`bias`:
    /// a constant vector added, on alternating sides), every result an output.
    fn projections(seed: u64, widths: &[usize], form: &str) -> Graph {
        let mut rng = Rng::new(seed);
        let (bsz, s, k) = (
            dim(&mut rng, 1, 3),
            dim(&mut rng, 1, 5),
            dim(&mut rng, 1, 7),
        );
        let mut g = Graph::new("t");
        let x = g.add_input(
            "x",
            TensorType::fixed(&[bsz as i64, s as i64, k as i64], DType::F32),
        );
        let mut b = Builder::new(&mut g);
        let mut outs = Vec::new();
        for (i, &n) in widths.iter().enumerate() {
            let w = random_const(&mut b, &mut rng, &[k, n], &format!("w{i}"));
            let y = match form {
                "matmul" => op(
                    &mut b,
                    OpKind::MatMul,
                    &[Some(x), Some(w)],
                    Attrs::new(),
                    &format!("p{i}"),
                ),
                "matmul+bias" => {
                    let m = op(
                        &mut b,
                        OpKind::MatMul,
                        &[Some(x), Some(w)],
                        Attrs::new(),
                        &format!("p{i}"),
                    );
                    let c = random_const(&mut b, &mut rng, &[n], &format!("b{i}"));
                    let operands = if i % 2 == 0 {
                        [Some(m), Some(c)]
                    } else {
                        [Some(c), Some(m)]
                    };
                    op(
                        &mut b,
                        OpKind::Add,
                        &operands,
                        Attrs::new(),
                        &format!("a{i}"),
                    )
                }
                _ => {
                    let c = random_const(&mut b, &mut rng, &[n], &format!("b{i}"));
                    let mut a = Attrs::new();
                    a.insert("activation".into(), Attr::Str("gelu".into()));
                    op(
                        &mut b,
                        OpKind::Linear,
                        &[Some(x), Some(w), Some(c), None],
                        a,
                        &format!("p{i}"),
                    )
                }
            };
            outs.push(y);
        }
        for (i, y) in outs.into_iter().enumerate() {
            g.add_output(&format!("y{i}"), y);
        }
        verify(&g).unwrap();
        g
    }

    #[test]
    fn merged_products_compute_exactly_what_the_separate_ones_did() {
        for seed in [1, 2, 3, 4] {
            let mut rng = Rng::new(seed + 100);
            let widths: Vec<usize> = (0..3 + seed as usize % 2)
                .map(|_| dim(&mut rng, 1, 9))
                .collect();
            for form in ["matmul", "matmul+bias", "linear"] {
                let g = projections(seed, &widths, form);
                let (out, stats) = run(&g, 3);
                assert_eq!(stats.counters[0].1, 1, "{form}: one group");
                assert_eq!(stats.counters[1].1, widths.len(), "{form}");
                let products = count(&out, OpKind::MatMul) + count(&out, OpKind::Linear);
                assert_eq!(products, 1, "{form}:\n{}", tessera_ir::print_graph(&out));
                assert_eq!(count(&out, OpKind::Split), 1);
                let adds = if form == "matmul+bias" { 1 } else { 0 };
                assert_eq!(
                    count(&out, OpKind::Add),
                    adds,
                    "{form}: the biases are one add"
                );
                // Bit for bit: each element is the same dot product.
                let d = max_difference(&g, &out, seed, &HashMap::new()).unwrap();
                assert_eq!(d, 0.0, "{form} widths {widths:?}");
            }
        }
    }

    #[test]
    fn the_merged_op_is_named_after_its_sources() {
        let g = projections(7, &[2, 3, 4], "matmul+bias");
        let (out, _) = run(&g, 3);
        let m = out.ops.iter().find(|o| o.kind == OpKind::MatMul).unwrap();
        assert_eq!(m.loc.as_ref().unwrap().name, "p0+p1+p2");
        let a = out.ops.iter().find(|o| o.kind == OpKind::Add).unwrap();
        assert_eq!(a.loc.as_ref().unwrap().name, "a0+a1+a2");
        assert!(out.constants.iter().any(|c| c.name == "w0+w1+w2"));
        assert!(out.constants.iter().any(|c| c.name == "b0+b1+b2"));
        // The separate weights are gone.
        assert!(!out.constants.iter().any(|c| c.name == "w1"));
    }

    #[test]
    fn small_groups_and_mixed_forms_stay() {
        let g = projections(5, &[3, 3], "matmul");
        let (out, stats) = run(&g, 3);
        assert_eq!(stats.changes, 0);
        assert_eq!(out, g);
        // With min=2 the pair merges.
        let (out, _) = run(&g, 2);
        assert_eq!(count(&out, OpKind::MatMul), 1);

        // A product whose bare result is also read keeps its add apart, so it
        // does not join the products whose bias is taken along.
        let mut g = projections(6, &[2, 2, 2], "matmul+bias");
        let bare = g
            .ops
            .iter()
            .find(|o| o.kind == OpKind::MatMul)
            .unwrap()
            .results[0];
        g.add_output("bare", bare);
        let (out, stats) = run(&g, 3);
        assert_eq!(stats.changes, 0, "{}", tessera_ir::print_graph(&out));
        let (out, _) = run(&g, 2);
        assert_eq!(count(&out, OpKind::MatMul), 2);
        assert_eq!(max_difference(&g, &out, 1, &HashMap::new()).unwrap(), 0.0);
    }

    fn fixture(name: &str) -> Graph {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/models")
            .join(name)
            .join("model.onnx");
        tessera_frontend::import_model(&path).unwrap()
    }

    /// Products reading the same value, per input, with 3 or more.
    fn wide_groups(g: &Graph) -> usize {
        groups(g).iter().filter(|(_, m)| m.len() >= 3).count()
    }

    #[test]
    fn bert_gets_one_qkv_product_per_layer() {
        let mut g = fixture("bert_legacy_op17");
        let pm = PassManager::parse(crate::pipeline_for_level(2), Default::default()).unwrap();
        let before = {
            let mut f = g.clone();
            PassManager::parse("canonicalize,fold-constants", Default::default())
                .unwrap()
                .run(&mut f, &mut |_, _| {})
                .unwrap();
            wide_groups(&f)
        };
        assert_eq!(
            before, 2,
            "two layers, each with Q, K and V reading one input"
        );
        let reference = g.clone();
        pm.run(&mut g, &mut |_, _| {}).unwrap();
        verify(&g).unwrap();
        assert_eq!(
            count(&g, OpKind::Split),
            2,
            "{}",
            tessera_ir::print_graph(&g)
        );
        assert_eq!(wide_groups(&g), 0);
        // Each layer: QKV, the output projection and two MLP products.
        let products = count(&g, OpKind::MatMul) + count(&g, OpKind::Linear);
        assert_eq!(products, 2 * 4, "{}", tessera_ir::print_graph(&g));
        let dims: HashMap<String, i64> = [("batch".to_string(), 2), ("seq".to_string(), 5)].into();
        let d = max_difference(&reference, &g, 3, &dims).unwrap();
        assert!(d < 1e-4, "differs by {d}");
    }
}
