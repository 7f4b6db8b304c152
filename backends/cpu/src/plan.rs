//! The static memory plan: where every value of a specialized graph lives.
//!
//! Graph inputs and outputs live in the caller's buffers, constants in the
//! weights blob, and every intermediate in one arena whose layout is decided
//! here from liveness, so peak memory is known at compile time. Ops that only
//! reinterpret a shape (reshape, flatten, squeeze, unsqueeze, identity) get no
//! buffer of their own: their result is a view of their operand's storage.

use tessera_ir::{Graph, OpKind, ValueId};

/// Byte alignment of every buffer in the arena and the weights blob: one
/// cache line, which is also one AVX-512 vector.
pub const ALIGN: usize = 64;

/// The buffer a value's bytes live in, at a byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base {
    Input(usize),
    Output(usize),
    Arena,
    Weights,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub base: Base,
    pub offset: usize,
}

/// Result of [`plan`].
#[derive(Clone, Debug, Default)]
pub struct MemoryPlan {
    /// Per value; `None` for values nothing stores (dead, or absent).
    pub place: Vec<Option<Place>>,
    pub arena_bytes: usize,
    /// Offset in the arena of the run's status word (an i32), when some
    /// kernel can report bad run-time input (see `KernelCtx::fail_if`).
    pub status: Option<usize>,
    /// Graph outputs whose value lives elsewhere (a graph input, a constant,
    /// a view, or a value that is also an earlier output) and is copied into
    /// the caller's output buffer at the end: (output index, value).
    pub copies: Vec<(usize, ValueId)>,
    /// Sum of the sizes of all intermediates, i.e. the arena a plan without
    /// reuse would need; the ratio to `arena_bytes` is the planner's saving.
    pub unshared_bytes: usize,
}

/// Ops whose single result is its first operand's bytes under another shape.
pub fn is_view(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Reshape | OpKind::Flatten | OpKind::Squeeze | OpKind::Unsqueeze | OpKind::Identity
    )
}

impl MemoryPlan {
    /// Reserves the status word after the intermediates.
    pub fn reserve_status(&mut self) {
        let at = self.arena_bytes.div_ceil(ALIGN) * ALIGN;
        self.status = Some(at);
        self.arena_bytes = at + ALIGN;
    }
}

pub fn byte_size(g: &Graph, v: ValueId) -> usize {
    let ty = g.ty(v);
    let n = ty.num_elements().unwrap_or(0).max(0) as usize;
    (n * ty.dtype().bits()).div_ceil(8)
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Plans `g` (static shapes). `weights` gives each constant value's place in
/// the weights blob (decided by the emitter, which also packs derived data).
pub fn plan(g: &Graph, weights: &dyn Fn(ValueId) -> Option<usize>) -> MemoryPlan {
    let nv = g.values.len();
    // Every value's root: the value that owns the bytes it is a view of.
    let mut root: Vec<usize> = (0..nv).collect();
    for op in &g.ops {
        if is_view(op.kind) {
            if let (Some(src), [r]) = (op.operand(0), &op.results[..]) {
                root[r.0 as usize] = root[src.0 as usize];
            }
        }
    }
    let mut place: Vec<Option<Place>> = vec![None; nv];
    for (i, v) in g.inputs.iter().enumerate() {
        place[v.0 as usize] = Some(Place {
            base: Base::Input(i),
            offset: 0,
        });
    }
    for op in &g.ops {
        if op.kind == OpKind::Constant {
            for r in &op.results {
                if let Some(off) = weights(*r) {
                    place[r.0 as usize] = Some(Place {
                        base: Base::Weights,
                        offset: off,
                    });
                }
            }
        }
    }
    // An output is written in place by its producer when it owns its bytes
    // and no earlier output took them.
    let mut copies = Vec::new();
    for (k, (_, v)) in g.outputs.iter().enumerate() {
        let vi = v.0 as usize;
        if root[vi] == vi && place[vi].is_none() {
            place[vi] = Some(Place {
                base: Base::Output(k),
                offset: 0,
            });
        } else {
            copies.push((k, *v));
        }
    }
    // Live ranges of the roots still without a place, in op positions.
    let mut first = vec![usize::MAX; nv];
    let mut last = vec![0usize; nv];
    for (i, op) in g.ops.iter().enumerate() {
        for r in &op.results {
            let ri = root[r.0 as usize];
            first[ri] = first[ri].min(i);
            last[ri] = last[ri].max(i);
        }
        for v in op.operands.iter().flatten() {
            let ri = root[v.0 as usize];
            last[ri] = last[ri].max(i);
        }
    }
    // The final copies read their sources after the last op.
    for (_, v) in &copies {
        last[root[v.0 as usize]] = g.ops.len();
    }
    // Constants live in the weights blob or nowhere (a lowering that packed
    // them never reads the original).
    let mut constant = vec![false; nv];
    for op in &g.ops {
        if op.kind == OpKind::Constant {
            for r in &op.results {
                constant[r.0 as usize] = true;
            }
        }
    }
    let mut todo: Vec<usize> = (0..nv)
        .filter(|&i| root[i] == i && place[i].is_none() && first[i] != usize::MAX && !constant[i])
        .collect();
    // Largest first, then by definition order: the classic greedy-by-size
    // offset assignment (as in TFLite's and tract's planners).
    todo.sort_by_key(|&i| (std::cmp::Reverse(byte_size(g, ValueId(i as u32))), first[i]));
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // (offset, size, first, last)
    let mut arena = 0usize;
    let mut unshared = 0usize;
    for i in todo {
        let size = align(byte_size(g, ValueId(i as u32)).max(1));
        unshared += size;
        let mut overlapping: Vec<(usize, usize)> = placed
            .iter()
            .filter(|p| p.2 <= last[i] && first[i] <= p.3)
            .map(|p| (p.0, p.1))
            .collect();
        overlapping.sort();
        let mut offset = 0;
        for (o, s) in overlapping {
            if offset + size <= o {
                break;
            }
            offset = offset.max(o + s);
        }
        placed.push((offset, size, first[i], last[i]));
        arena = arena.max(offset + size);
        place[i] = Some(Place {
            base: Base::Arena,
            offset,
        });
    }
    for i in 0..nv {
        if place[i].is_none() && root[i] != i {
            place[i] = place[root[i]];
        }
    }
    MemoryPlan {
        place,
        arena_bytes: arena,
        status: None,
        copies,
        unshared_bytes: unshared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_ir::parse_graph;

    /// No two intermediates that are live at the same time share a byte.
    fn assert_disjoint(g: &Graph, p: &MemoryPlan) {
        let n = g.ops.len();
        let mut live: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (i, op) in g.ops.iter().enumerate() {
            for r in &op.results {
                if let Some(Place {
                    base: Base::Arena,
                    offset,
                }) = p.place[r.0 as usize]
                {
                    if is_view(op.kind) {
                        continue;
                    }
                    let last = g
                        .ops
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| o.operands.iter().flatten().any(|v| v == r))
                        .map(|(j, _)| j)
                        .max()
                        .unwrap_or(n);
                    live.push((offset, byte_size(g, *r), i, last));
                }
            }
        }
        for a in &live {
            for b in &live {
                if a == b {
                    continue;
                }
                let time = a.2 <= b.3 && b.2 <= a.3;
                let space = a.0 < b.0 + b.1 && b.0 < a.0 + a.1;
                assert!(!(time && space), "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn chain_reuses_dead_buffers() {
        let g = parse_graph(
            "tsr.graph @g(%x: tensor<1024xf32>) -> (\"y\": tensor<1024xf32>) {\n\
               %a = tsr.neg %x : (tensor<1024xf32>) -> tensor<1024xf32>\n\
               %b = tsr.neg %a : (tensor<1024xf32>) -> tensor<1024xf32>\n\
               %c = tsr.neg %b : (tensor<1024xf32>) -> tensor<1024xf32>\n\
               %d = tsr.neg %c : (tensor<1024xf32>) -> tensor<1024xf32>\n\
               %y = tsr.neg %d : (tensor<1024xf32>) -> tensor<1024xf32>\n\
               tsr.return %y\n\
             }\n",
        )
        .expect("test graph parses");
        let p = plan(&g, &|_| None);
        // a,b,c,d are 4 KiB each and only two are ever live at once.
        assert_eq!(p.arena_bytes, 2 * 4096);
        assert_eq!(p.unshared_bytes, 4 * 4096);
        assert_disjoint(&g, &p);
        assert!(p.copies.is_empty());
    }
}
