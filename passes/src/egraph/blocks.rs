//! Repeated blocks: a transformer is the same layer N times, so the layer is
//! saturated and extracted once and the result is stamped onto every copy.
//!
//! Finding them is structural hashing over the ops in program order
//! (constant ops aside): an op's label is its kind, attributes, result types
//! and, per operand, whether it is absent, a constant (small ones by value,
//! weights by element type and shape only), or a computed value of some
//! type. The longest run of a period `p` in the label sequence gives the
//! candidate blocks; each copy is then checked to be wired exactly like the
//! first (same operand positions inside the block, same small constants).
//!
//! The program is cut into segments — the prefix before the blocks, each
//! block, the suffix — and every segment becomes a standalone graph whose
//! inputs are the values it reads from outside and whose outputs are the
//! values read after it. Segments are optimized separately (each block kind
//! once) and stitched back in order. In a block's graph the weights are
//! inputs, not constants, so no rewrite can depend on one copy's values.
//! What is lost: rewrites across a segment boundary.

use super::stages::Stage;
use super::{optimize_with, Config, Report};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use tessera_ir::types::ElemType;
use tessera_ir::{Attr, ConstId, Graph, Loc, OpKind, ValueId};

/// Constants with at most this many elements are compared by value (shapes,
/// axes, epsilons, scales); larger ones are weights, compared by type.
pub const SMALL_CONST: usize = 16;

/// Blocks shorter than this are not worth a separate optimization.
pub const MIN_BLOCK_OPS: usize = 8;

/// The repeated blocks found in a program.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockReport {
    /// Ops of one block (constant ops not counted).
    pub block_ops: usize,
    pub instances: usize,
    /// Ops before the first block and after the last.
    pub prefix_ops: usize,
    pub suffix_ops: usize,
    /// The block was optimized with its weights as constants (false: as
    /// inputs, because some rewrite depended on their values).
    pub weights_as_constants: bool,
}

/// Where the blocks are, in positions of the non-constant op sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocks {
    pub start: usize,
    pub period: usize,
    pub count: usize,
}

fn is_constant_op(g: &Graph, i: usize) -> bool {
    g.ops[i].kind == OpKind::Constant
}

/// The constant an operand reads, if a constant op produces it.
fn const_of(g: &Graph, producers: &[Option<usize>], v: ValueId) -> Option<ConstId> {
    let p = producers[v.0 as usize]?;
    match (g.ops[p].kind, g.ops[p].attrs.get("value")) {
        (OpKind::Constant, Some(Attr::Const(c))) => Some(*c),
        _ => None,
    }
}

fn is_small(g: &Graph, c: ConstId) -> bool {
    g.constant(c).value.len() <= SMALL_CONST
}

fn hash_const(g: &Graph, c: ConstId, h: &mut DefaultHasher) {
    let t = &g.constant(c).value;
    t.dtype.name().hash(h);
    t.shape.hash(h);
    if t.len() <= SMALL_CONST {
        t.to_bytes().hash(h);
    }
}

/// Position-independent labels of the non-constant ops.
fn labels(g: &Graph, seq: &[usize], producers: &[Option<usize>]) -> Vec<u64> {
    seq.iter()
        .map(|&i| {
            let op = &g.ops[i];
            let mut h = DefaultHasher::new();
            op.kind.mnemonic().hash(&mut h);
            for (k, a) in &op.attrs {
                k.hash(&mut h);
                match a {
                    Attr::Const(c) => hash_const(g, *c, &mut h),
                    other => format!("{other:?}").hash(&mut h),
                }
            }
            for r in &op.results {
                g.ty(*r).to_string().hash(&mut h);
            }
            for o in &op.operands {
                match o {
                    None => 0u8.hash(&mut h),
                    Some(v) => match const_of(g, producers, *v) {
                        Some(c) => {
                            1u8.hash(&mut h);
                            hash_const(g, c, &mut h);
                        }
                        None => {
                            2u8.hash(&mut h);
                            g.ty(*v).to_string().hash(&mut h);
                        }
                    },
                }
            }
            h.finish()
        })
        .collect()
}

/// The period and phase covering the most ops with at least two
/// consecutive copies; ties go to the shorter period (one layer, not two).
fn best_period(l: &[u64]) -> Option<Blocks> {
    let n = l.len();
    let mut best: Option<(usize, Blocks)> = None;
    for p in MIN_BLOCK_OPS..=n / 2 {
        let mut i = 0;
        while i + p < n {
            if l[i] != l[i + p] {
                i += 1;
                continue;
            }
            let a = i;
            while i + p < n && l[i] == l[i + p] {
                i += 1;
            }
            let count = (i - a + p) / p;
            if count >= 2 && best.as_ref().is_none_or(|(c, _)| count * p > *c) {
                best = Some((
                    count * p,
                    Blocks {
                        start: a,
                        period: p,
                        count,
                    },
                ));
            }
        }
    }
    best.map(|(_, b)| b)
}

/// How an operand of a block op is wired.
#[derive(Clone, Debug, PartialEq)]
enum Wire {
    Absent,
    /// Result `r` of the block's op at local position `k`.
    Inner(usize, usize),
    SmallConst(Vec<u8>, String),
    /// The n-th distinct value read from outside (an earlier op, a graph
    /// input or a weight), numbered in order of first use.
    Outer(usize),
}

/// The wiring of one copy, and where each of its values sits.
fn wiring(g: &Graph, ops: &[usize], producers: &[Option<usize>]) -> Vec<Vec<Wire>> {
    let local: HashMap<usize, usize> = ops.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut outer: HashMap<ValueId, usize> = HashMap::new();
    ops.iter()
        .map(|&i| {
            g.ops[i]
                .operands
                .iter()
                .map(|o| {
                    let Some(v) = o else { return Wire::Absent };
                    if let Some(c) = const_of(g, producers, *v).filter(|&c| is_small(g, c)) {
                        let t = &g.constant(c).value;
                        return Wire::SmallConst(
                            t.to_bytes(),
                            format!("{}{:?}", t.dtype.name(), t.shape),
                        );
                    }
                    match producers[v.0 as usize].and_then(|p| local.get(&p)) {
                        Some(&k) => {
                            let r = g.ops[ops[k]].results.iter().position(|x| x == v);
                            Wire::Inner(k, r.unwrap_or(0))
                        }
                        None => {
                            let n = outer.len();
                            Wire::Outer(*outer.entry(*v).or_insert(n))
                        }
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Finds repeated blocks wired identically. `None` when the program has
/// none worth reusing or uses what segments cannot carry (quantized types,
/// constant-valued attributes on computing ops).
pub fn find_blocks(g: &Graph) -> Option<Blocks> {
    if g.values
        .iter()
        .any(|v| matches!(v.ty.elem, ElemType::Quant(_)))
    {
        return None;
    }
    let seq: Vec<usize> = (0..g.ops.len())
        .filter(|&i| !is_constant_op(g, i))
        .collect();
    if seq
        .iter()
        .any(|&i| g.ops[i].attrs.values().any(|a| matches!(a, Attr::Const(_))))
    {
        return None;
    }
    let producers = g.producers();
    let b = best_period(&labels(g, &seq, &producers))?;
    let copy = |j: usize| &seq[b.start + j * b.period..b.start + (j + 1) * b.period];
    let first = wiring(g, copy(0), &producers);
    let same = (1..b.count)
        .take_while(|&j| wiring(g, copy(j), &producers) == first)
        .count();
    (same >= 1).then_some(Blocks {
        count: same + 1,
        ..b
    })
}

/// How a segment's graph holds the weights (constants too big to compare
/// by value) it reads.
#[derive(Copy, Clone, PartialEq)]
enum Weights {
    /// As themselves: the segment is optimized for this copy only.
    Own,
    /// As graph inputs: nothing can depend on their values.
    Inputs,
    /// As constants named [`WEIGHT`]`k` filled with pseudo-random values from
    /// this seed: rewrites that need constness (a bias fused into a
    /// product) still apply, and optimizing under two fillings tells
    /// whether any rewrite depended on the values.
    Placeholders(u64),
    /// Named like placeholders but holding the copy's own values (shared,
    /// not copied): for the copies a block's result is stamped onto.
    Named,
}

/// Name prefix of placeholder weights in a block's graph.
const WEIGHT: &str = "tessera.block.weight.";

/// A contiguous run of the op sequence as a standalone graph.
struct Segment {
    graph: Graph,
    /// The outside value behind each graph input, in order.
    inputs: Vec<ValueId>,
    /// The inside value behind each graph output, in order.
    outputs: Vec<ValueId>,
    /// The outside value behind each placeholder weight, in order.
    weights: Vec<ValueId>,
}

/// A tensor of `like`'s type with values from a small LCG: never a splat,
/// different for different seeds.
fn placeholder(like: &tessera_ir::Tensor, seed: u64) -> tessera_ir::Tensor {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f64> = (0..like.len())
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Small integers: exact in every element type, and distinct neighbours.
            ((x >> 33) % 7) as f64 + 2.0 + (i % 2) as f64
        })
        .collect();
    if like.dtype.is_float() {
        tessera_ir::Tensor::from_f64(like.dtype, like.shape.clone(), &v)
    } else {
        let v: Vec<i64> = v.iter().map(|&f| f as i64).collect();
        tessera_ir::Tensor::from_i64(like.dtype, like.shape.clone(), &v)
    }
}

/// Builds the graph of `ops` (indices into `g.ops`, constant ops excluded).
/// Outputs are the values used after the segment (`used_later`) — by
/// position when `positions` is given, so every copy of a block exports the
/// same ones.
fn segment(
    g: &Graph,
    ops: &[usize],
    producers: &[Option<usize>],
    outputs: &[(usize, usize)],
    mode: Weights,
) -> Segment {
    let mut s = Graph::new(&g.name);
    s.opsets = g.opsets.clone();
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    let mut inputs = Vec::new();
    let mut weights = Vec::new();
    for &i in ops {
        let op = &g.ops[i];
        let mut operands = Vec::with_capacity(op.operands.len());
        for o in &op.operands {
            let Some(v) = *o else {
                operands.push(None);
                continue;
            };
            if let Some(&m) = map.get(&v) {
                operands.push(Some(m));
                continue;
            }
            let loc = || producers[v.0 as usize].and_then(|p| g.ops[p].loc.clone());
            let m = match (const_of(g, producers, v), mode) {
                (Some(c), Weights::Placeholders(seed)) if !is_small(g, c) => {
                    let value = placeholder(&g.constant(c).value, seed + weights.len() as u64);
                    weights.push(v);
                    s.push_constant(
                        &format!("{WEIGHT}{}", weights.len() - 1),
                        value.into(),
                        loc(),
                    )
                }
                (Some(c), Weights::Named) if !is_small(g, c) => {
                    weights.push(v);
                    let value = g.constant(c).value.clone();
                    s.push_constant(&format!("{WEIGHT}{}", weights.len() - 1), value, loc())
                }
                (Some(c), _) if mode != Weights::Inputs || is_small(g, c) => {
                    let k = g.constant(c);
                    s.push_constant(&k.name, k.value.clone(), loc())
                }
                _ => {
                    inputs.push(v);
                    s.add_input(&format!("in{}", inputs.len() - 1), g.ty(v).clone())
                }
            };
            map.insert(v, m);
            operands.push(Some(m));
        }
        let types = op.results.iter().map(|r| g.ty(*r).clone()).collect();
        let rs = s.push_op(op.kind, operands, types, op.attrs.clone(), op.loc.clone());
        for (r, n) in op.results.iter().zip(rs) {
            map.insert(*r, n);
        }
    }
    let mut outs = Vec::new();
    for (k, &(pos, r)) in outputs.iter().enumerate() {
        let v = g.ops[ops[pos]].results[r];
        s.add_output(&format!("out{k}"), map[&v]);
        outs.push(v);
    }
    Segment {
        graph: s,
        inputs,
        outputs: outs,
        weights,
    }
}

/// The (local op, result) pairs of `ops` whose values are read outside it.
fn exports(
    g: &Graph,
    ops: &[usize],
    readers: &[Vec<usize>],
    outputs: &[bool],
) -> Vec<(usize, usize)> {
    let inside: std::collections::HashSet<usize> = ops.iter().copied().collect();
    let mut out = Vec::new();
    for (k, &i) in ops.iter().enumerate() {
        for (r, v) in g.ops[i].results.iter().enumerate() {
            let vi = v.0 as usize;
            if outputs[vi] || readers[vi].iter().any(|u| !inside.contains(u)) {
                out.push((k, r));
            }
        }
    }
    out
}

/// Appends `seg_graph`, the optimized graph of `seg`, to `out`: its inputs
/// read `map`ped outside values, its outputs define the segment's exports
/// in `map`.
fn stitch(
    out: &mut Graph,
    seg_graph: &Graph,
    seg: &Segment,
    map: &mut HashMap<ValueId, ValueId>,
    consts: &mut HashMap<ConstId, ConstId>,
    locs: &HashMap<Loc, Loc>,
) -> Result<(), String> {
    let (inputs, exported, weights) = (&seg.inputs, &seg.outputs, &seg.weights);
    let mut local: HashMap<ValueId, ValueId> = HashMap::new();
    for (k, &v) in seg_graph.inputs.iter().enumerate() {
        let outer = map
            .get(&inputs[k])
            .copied()
            .ok_or_else(|| format!("segment input %{} is not defined yet", inputs[k].0))?;
        local.insert(v, outer);
    }
    for op in &seg_graph.ops {
        if let (OpKind::Constant, Some(Attr::Const(c))) = (op.kind, op.attrs.get("value")) {
            let name = &seg_graph.constant(*c).name;
            if let Some(k) = name.strip_prefix(WEIGHT) {
                // A placeholder stands for this copy's own weight.
                let w = k
                    .parse::<usize>()
                    .ok()
                    .and_then(|k| weights.get(k))
                    .and_then(|w| map.get(w))
                    .ok_or_else(|| format!("placeholder {name} has no weight"))?;
                local.insert(op.results[0], *w);
                continue;
            }
        }
        let mut attrs = op.attrs.clone();
        for a in attrs.values_mut() {
            if let Attr::Const(c) = a {
                let nc = *consts.entry(*c).or_insert_with(|| {
                    let k = seg_graph.constant(*c);
                    out.add_constant(&k.name, k.value.clone())
                });
                *a = Attr::Const(nc);
            }
        }
        let operands = op.operands.iter().map(|o| o.map(|v| local[&v])).collect();
        let types = op
            .results
            .iter()
            .map(|r| seg_graph.ty(*r).clone())
            .collect();
        // A copy's ops keep their own source locations.
        let loc = op.loc.as_ref().map(|l| locs.get(l).unwrap_or(l).clone());
        let rs = out.push_op(op.kind, operands, types, attrs, loc);
        for (r, n) in op.results.iter().zip(rs) {
            local.insert(*r, n);
        }
    }
    for ((_, v), e) in seg_graph.outputs.iter().zip(exported) {
        map.insert(*e, local[v]);
    }
    Ok(())
}

/// Optimizes `g` block-wise; `None` when it has no repeated blocks.
pub fn optimize_blocks(
    g: &Graph,
    cfg: &Config,
    stages: &[Stage],
) -> Result<Option<(Graph, Report)>, String> {
    let Some(b) = find_blocks(g) else {
        return Ok(None);
    };
    let producers = g.producers();
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); g.values.len()];
    for (i, op) in g.ops.iter().enumerate() {
        for v in op.operands.iter().flatten() {
            readers[v.0 as usize].push(i);
        }
    }
    let mut is_output = vec![false; g.values.len()];
    for (_, v) in &g.outputs {
        is_output[v.0 as usize] = true;
    }
    let seq: Vec<usize> = (0..g.ops.len())
        .filter(|&i| !is_constant_op(g, i))
        .collect();
    let end = b.start + b.count * b.period;
    let copy = |j: usize| &seq[b.start + j * b.period..b.start + (j + 1) * b.period];

    // Every copy exports the union of what any copy exports.
    let mut shared: Vec<(usize, usize)> = (0..b.count)
        .flat_map(|j| exports(g, copy(j), &readers, &is_output))
        .collect();
    shared.sort_unstable();
    shared.dedup();

    // Weights as placeholder constants, under two fillings: the same result
    // both times means no rewrite looked at their values, so every copy can
    // take it with its own weights. Otherwise weights become inputs.
    let mut report = Report::default();
    let (a, b2) = (Weights::Placeholders(1), Weights::Placeholders(1 << 20));
    let (opt_a, report_a) = optimize_with(
        &segment(g, copy(0), &producers, &shared, a).graph,
        cfg,
        stages,
    )?;
    let (opt_b, _) = optimize_with(
        &segment(g, copy(0), &producers, &shared, b2).graph,
        cfg,
        stages,
    )?;
    let (mode, rep_opt, rep_report) = if same_modulo_weights(&opt_a, &opt_b) {
        (a, opt_a, report_a)
    } else {
        let seg = segment(g, copy(0), &producers, &shared, Weights::Inputs);
        let (o, r) = optimize_with(&seg.graph, cfg, stages)?;
        (Weights::Inputs, o, r)
    };
    let mode = if mode == Weights::Inputs {
        mode
    } else {
        Weights::Named
    };
    let rep = segment(g, copy(0), &producers, &shared, mode);
    // Copies must read their outside values in the same pattern (a value
    // read twice by one copy is read twice by every copy).
    let copies: Vec<Segment> = (0..b.count)
        .map(|j| segment(g, copy(j), &producers, &shared, mode))
        .collect();
    let shape_of = |s: &Segment| {
        (
            s.graph.inputs.len(),
            s.weights.len(),
            s.graph
                .ops
                .iter()
                .map(|o| o.operands.clone())
                .collect::<Vec<_>>(),
        )
    };
    if copies.iter().any(|c| shape_of(c) != shape_of(&rep)) {
        return Err("repeated blocks differ in how they read outside values".into());
    }
    report.absorb(&rep_report, b.count);

    let mut out = Graph::new(&g.name);
    out.opsets = g.opsets.clone();
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &v in &g.inputs {
        let name = g.values[v.0 as usize].name.clone().unwrap_or_default();
        map.insert(v, out.add_input(&name, g.ty(v).clone()));
    }
    // Constant ops first: they have no operands, and every segment may read them.
    let mut g_consts: HashMap<ConstId, ConstId> = HashMap::new();
    for (i, op) in g.ops.iter().enumerate() {
        if let (OpKind::Constant, Some(Attr::Const(c))) = (op.kind, op.attrs.get("value")) {
            let nc = *g_consts.entry(*c).or_insert_with(|| {
                let k = g.constant(*c);
                out.add_constant(&k.name, k.value.clone())
            });
            let mut attrs = op.attrs.clone();
            attrs.insert("value".into(), Attr::Const(nc));
            let r = out.push_op(
                OpKind::Constant,
                vec![],
                vec![g.ty(op.results[0]).clone()],
                attrs,
                op.loc.clone(),
            );
            map.insert(g.ops[i].results[0], r[0]);
        }
    }

    let mut rep_consts: HashMap<ConstId, ConstId> = HashMap::new();
    let optimize_piece = |ops: &[usize],
                          out: &mut Graph,
                          map: &mut HashMap<ValueId, ValueId>,
                          report: &mut Report|
     -> Result<(), String> {
        if ops.is_empty() {
            return Ok(());
        }
        let seg = segment(
            g,
            ops,
            &producers,
            &exports(g, ops, &readers, &is_output),
            Weights::Own,
        );
        let (opt, r) = optimize_with(&seg.graph, cfg, stages)?;
        report.absorb(&r, 1);
        stitch(out, &opt, &seg, map, &mut HashMap::new(), &HashMap::new())
    };
    optimize_piece(&seq[..b.start], &mut out, &mut map, &mut report)?;
    for (j, inst) in copies.iter().enumerate() {
        let locs: HashMap<Loc, Loc> = copy(0)
            .iter()
            .zip(copy(j))
            .filter_map(|(&a, &b)| Some((g.ops[a].loc.clone()?, g.ops[b].loc.clone()?)))
            .collect();
        stitch(&mut out, &rep_opt, inst, &mut map, &mut rep_consts, &locs)?;
    }
    optimize_piece(&seq[end..], &mut out, &mut map, &mut report)?;

    for (name, v) in &g.outputs {
        let nv = *map
            .get(v)
            .ok_or_else(|| format!("output '{name}' has no value after stitching"))?;
        let slot = &mut out.values[nv.0 as usize].name;
        if slot.is_none() {
            *slot = g.values[v.0 as usize].name.clone();
        }
        out.outputs.push((name.clone(), nv));
    }
    out.remove_dead();
    out.compact_constants();
    out.compact_values();
    report.blocks = Some(BlockReport {
        block_ops: b.period,
        instances: b.count,
        prefix_ops: b.start,
        suffix_ops: seq.len() - end,
        weights_as_constants: mode == Weights::Named,
    });
    Ok(Some((out, report)))
}

/// Both graphs are the same program except for the values of placeholder
/// weights.
fn same_modulo_weights(a: &Graph, b: &Graph) -> bool {
    let value = |g: &Graph, c: &ConstId| {
        let k = g.constant(*c);
        if k.name.starts_with(WEIGHT) {
            (k.name.clone(), None)
        } else {
            (String::new(), Some(k.value.clone()))
        }
    };
    let attrs_eq = |x: &tessera_ir::Attrs, y: &tessera_ir::Attrs| {
        x.len() == y.len()
            && x.iter().zip(y).all(|((kx, ax), (ky, ay))| {
                kx == ky
                    && match (ax, ay) {
                        (Attr::Const(cx), Attr::Const(cy)) => value(a, cx) == value(b, cy),
                        _ => ax == ay,
                    }
            })
    };
    a.inputs == b.inputs
        && a.outputs == b.outputs
        && a.ops.len() == b.ops.len()
        && a.ops.iter().zip(&b.ops).all(|(x, y)| {
            x.kind == y.kind
                && x.operands == y.operands
                && x.results == y.results
                && attrs_eq(&x.attrs, &y.attrs)
                && x.results.iter().all(|r| a.ty(*r) == b.ty(*r))
        })
}
