//! Greedy DAG extraction: the cost of a choice is the sum over the *set* of
//! e-classes it uses, so a subterm shared by two users is paid once (tree
//! costs count it twice and never pick a shared Q/K/V projection).
//!
//! E-classes are finalized in increasing cost order, as in Dijkstra's
//! algorithm: an e-node becomes a candidate only once every child e-class is
//! final, and a final choice never changes. Every edge of the result then
//! points to an e-class finalized earlier, so the program is acyclic by
//! construction (an e-node in its own e-class's cone is never a candidate).
//! A DAG cost only grows along edges (a node's set contains its children's),
//! which is what makes the order sound. Ties break on (e-class id, e-node
//! position), so the result is deterministic.

use super::analysis::TsrEGraph;
use super::convert::Choice;
use super::lang::TsrLang;
use egg::{Id, Language};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// A chosen program and its DAG cost.
pub struct Extraction {
    pub choice: Choice,
    pub cost: f64,
}

#[derive(PartialEq)]
struct Candidate {
    cost: f64,
    class: usize,
    node: usize,
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    // Reversed: BinaryHeap is a max-heap and we want the cheapest first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.cost
            .total_cmp(&self.cost)
            .then(o.class.cmp(&self.class))
            .then(o.node.cmp(&self.node))
    }
}

/// A set of e-classes (dense indices) as a bit vector.
#[derive(Clone)]
struct ClassSet(Vec<u64>);

impl ClassSet {
    fn new(n: usize) -> ClassSet {
        ClassSet(vec![0; n.div_ceil(64)])
    }
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn union_with(&mut self, o: &ClassSet) {
        self.0.iter_mut().zip(&o.0).for_each(|(a, b)| *a |= b);
    }
    fn sum(&self, cost: &[f64]) -> f64 {
        let mut s = 0.0;
        for (w, &bits) in self.0.iter().enumerate() {
            let mut b = bits;
            while b != 0 {
                s += cost[w * 64 + b.trailing_zeros() as usize];
                b &= b - 1;
            }
        }
        s
    }
}

/// Extracts the cheapest program computing `roots` by DAG cost from a
/// rebuilt e-graph.
pub fn extract_dag(
    eg: &TsrEGraph,
    roots: &[Id],
    node_cost: &dyn Fn(&TsrEGraph, Id, &TsrLang) -> f64,
) -> Result<Extraction, String> {
    if !eg.clean {
        return Err("extraction needs a rebuilt e-graph (call rebuild first)".into());
    }
    let mut ids: Vec<Id> = eg.classes().map(|c| c.id).collect();
    ids.sort();
    let n = ids.len();
    let dense: HashMap<Id, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let index = |id: Id| dense[&eg.find(id)];

    // Distinct child classes of every e-node, and who waits on each class.
    let mut kids: Vec<Vec<Vec<usize>>> = Vec::with_capacity(n);
    let mut waiting: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut pending: Vec<Vec<usize>> = Vec::with_capacity(n);
    let mut heap = BinaryHeap::new();
    let mut own: Vec<Vec<f64>> = Vec::with_capacity(n);
    for (ci, &id) in ids.iter().enumerate() {
        let class = &eg[id];
        let mut class_kids = Vec::with_capacity(class.nodes.len());
        let mut class_pending = Vec::with_capacity(class.nodes.len());
        let mut class_own = Vec::with_capacity(class.nodes.len());
        for (ni, node) in class.nodes.iter().enumerate() {
            let mut k: Vec<usize> = node.children().iter().map(|&c| index(c)).collect();
            k.sort_unstable();
            k.dedup();
            for &c in &k {
                waiting[c].push((ci, ni));
            }
            let cost = node_cost(eg, id, node);
            if k.is_empty() {
                heap.push(Candidate {
                    cost,
                    class: ci,
                    node: ni,
                });
            }
            class_pending.push(k.len());
            class_kids.push(k);
            class_own.push(cost);
        }
        kids.push(class_kids);
        pending.push(class_pending);
        own.push(class_own);
    }

    let mut chosen: Vec<Option<usize>> = vec![None; n];
    let mut sets: Vec<Option<ClassSet>> = vec![None; n];
    let mut cost = vec![0.0; n];
    let cone = |sets: &[Option<ClassSet>], k: &[usize]| {
        let mut s = ClassSet::new(n);
        for &c in k {
            s.union_with(sets[c].as_ref().expect("children are final"));
        }
        s
    };
    let root_idx: Vec<usize> = roots.iter().map(|&r| index(r)).collect();
    let mut roots_left = {
        let mut r = root_idx.clone();
        r.sort_unstable();
        r.dedup();
        r.len()
    };
    while let Some(Candidate { class, node, .. }) = heap.pop() {
        if chosen[class].is_some() {
            continue;
        }
        let mut set = cone(&sets, &kids[class][node]);
        debug_assert!(
            !set.contains(class),
            "a candidate's cone never holds its own class"
        );
        set.insert(class);
        chosen[class] = Some(node);
        cost[class] = own[class][node];
        sets[class] = Some(set);
        if root_idx.contains(&class) {
            roots_left -= 1;
            if roots_left == 0 {
                break;
            }
        }
        for &(pc, pn) in &waiting[class] {
            pending[pc][pn] -= 1;
            if pending[pc][pn] == 0 && chosen[pc].is_none() {
                let s = cone(&sets, &kids[pc][pn]);
                if !s.contains(pc) {
                    heap.push(Candidate {
                        cost: own[pc][pn] + s.sum(&cost),
                        class: pc,
                        node: pn,
                    });
                }
            }
        }
    }

    let mut all = ClassSet::new(n);
    for &r in &root_idx {
        let s = sets[r]
            .as_ref()
            .ok_or_else(|| format!("no acyclic program computes e-class {}", ids[r]))?;
        all.union_with(s);
    }
    let mut choice = Choice::new();
    for (ci, &id) in ids.iter().enumerate() {
        if all.contains(ci) {
            let ni = chosen[ci].expect("classes in a cone are final");
            choice.insert(id, eg[id].nodes[ni].clone());
        }
    }
    check_acyclic(eg, roots, &choice)?;
    Ok(Extraction {
        cost: all.sum(&cost),
        choice,
    })
}

/// Fails if following the chosen e-nodes from the roots ever comes back to
/// an e-class on the current path.
pub fn check_acyclic(eg: &TsrEGraph, roots: &[Id], choice: &Choice) -> Result<(), String> {
    // 1 = on the path, 2 = done
    let mut state: HashMap<Id, u8> = HashMap::new();
    let mut stack: Vec<(Id, bool)> = roots.iter().map(|&r| (eg.find(r), false)).collect();
    while let Some((id, exit)) = stack.pop() {
        if exit {
            state.insert(id, 2);
            continue;
        }
        match state.get(&id) {
            Some(2) => continue,
            Some(_) => return Err(format!("the chosen program is cyclic at e-class {id}")),
            None => {}
        }
        state.insert(id, 1);
        stack.push((id, true));
        let node = choice
            .get(&id)
            .ok_or_else(|| format!("no choice for e-class {id}"))?;
        for &c in node.children() {
            let c = eg.find(c);
            match state.get(&c) {
                Some(2) => {}
                Some(_) => return Err(format!("the chosen program is cyclic at e-class {c}")),
                None => stack.push((c, false)),
            }
        }
    }
    Ok(())
}
