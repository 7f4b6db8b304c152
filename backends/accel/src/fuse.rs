//! Fusion of consecutive vector-unit row kernels.
//!
//! Every row op lowers to its own [`RowKernel`], which loads its operands
//! from DRAM and stores its result back. A chain of row kernels over the same
//! rows (the quantize steps `abs → reduce_max → max → mul → recip → mul →
//! round → clip → cast`, a dequantize epilogue, a residual add and a norm)
//! becomes one kernel here: each op's slots are renumbered into the fused
//! kernel, an operand another op of the group produced is read from the
//! producer's slot instead of DRAM, and a value is stored only when something
//! outside the group reads it. Per-row values (`[rows, 1]`: row maxima,
//! scales, reciprocals) are narrow slots of the fused kernel.
//!
//! The fused kernel performs the same vector instructions on the same words
//! in the same order per element as the separate kernels, only at other
//! accumulator addresses, so its results are bit-identical.
//!
//! Kernels are matched by what their DRAM addresses name: they are built with
//! [`TagValues`], which gives every graph value a tag address, and the fused
//! kernel is [`relocate`]d to the segment's buffers once the segment knows
//! which values it stores.

use crate::lower::Addrs;
use crate::vector::{OutFmt, RowKernel, Slot, Src1, Step};
use std::collections::{HashMap, HashSet};
use tessera_ir::ValueId;

/// Bit set in the tag address of a graph value (real DRAM addresses are
/// 32-bit).
const VALUE_TAG: u64 = 1 << 62;
/// Bit set in the tag address of image data during planning.
const IMAGE_TAG: u64 = 1 << 61;

fn value_tag(v: ValueId) -> u64 {
    VALUE_TAG | v.0 as u64
}

/// Addresses for fusion: graph values by tag, image data through `image`.
pub(crate) struct TagValues<'a, A: Addrs> {
    pub image: &'a mut A,
}

impl<A: Addrs> Addrs for TagValues<'_, A> {
    fn value(&mut self, v: ValueId) -> u64 {
        value_tag(v)
    }
    fn image(&mut self, key: (ValueId, u8), bytes: &[u8]) -> u64 {
        self.image.image(key, bytes)
    }
}

/// Image addresses for planning: one distinct tag per image key (as the
/// segment's image gives one address per key), no bytes kept.
#[derive(Default)]
pub(crate) struct ImageTags {
    keys: HashMap<(ValueId, u8), u64>,
}

impl Addrs for ImageTags {
    fn value(&mut self, v: ValueId) -> u64 {
        value_tag(v)
    }
    fn image(&mut self, key: (ValueId, u8), _: &[u8]) -> u64 {
        let n = self.keys.len() as u64;
        *self.keys.entry(key).or_insert(IMAGE_TAG | n)
    }
}

/// What a kernel address refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Value(ValueId),
    /// Constant data in the image, by address.
    Image(u64),
}

fn source(addr: u64) -> Source {
    if addr & VALUE_TAG != 0 {
        Source::Value(ValueId((addr & !VALUE_TAG) as u32))
    } else {
        Source::Image(addr)
    }
}

/// Replaces the value tags of a fused kernel by the values' buffers.
pub(crate) fn relocate(
    k: &mut RowKernel,
    buffer: &dyn Fn(ValueId) -> Option<u64>,
) -> Result<(), String> {
    let fix = |a: &mut u64| -> Result<(), String> {
        if let Source::Value(v) = source(*a) {
            *a = buffer(v).ok_or_else(|| {
                format!("internal error: fused kernel value %{} has no buffer", v.0)
            })?;
        }
        Ok(())
    };
    for (_, a) in &mut k.inputs {
        fix(a)?;
    }
    for (a, _) in &mut k.consts {
        fix(a)?;
    }
    for (_, a, _) in &mut k.outputs {
        fix(a)?;
    }
    Ok(())
}

/// What a slot of the fused kernel holds between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    Free,
    /// A value (or image data) later steps or the stores may read.
    Source(Source),
    /// A working slot of the op being added.
    Scratch,
}

struct Fuser<'a> {
    k: RowKernel,
    wide: Vec<Held>,
    narrow: Vec<Held>,
    /// Slots stored at the end of a chunk: never overwritten.
    pinned: HashSet<Slot>,
    /// Where each source currently lives.
    at: HashMap<Source, Slot>,
    /// Output format of each value the group produced.
    produced: HashMap<ValueId, OutFmt>,
    consts: HashMap<(u64, u64), u8>,
    /// Sources read by each member's kernel, for liveness.
    reads: Vec<HashSet<Source>>,
    keep: &'a dyn Fn(ValueId) -> bool,
}

impl Fuser<'_> {
    fn held(&mut self, s: Slot) -> &mut Held {
        match s {
            Slot::Wide(i) => &mut self.wide[i as usize],
            Slot::Narrow(i) => &mut self.narrow[i as usize],
        }
    }

    /// A new slot (`reuse`: a free one if any). Loads happen before any
    /// compute of a chunk, so an input slot is never one an earlier op used.
    fn slot(&mut self, narrow: bool, reuse: bool) -> Result<Slot, String> {
        let (held, make): (&mut Vec<Held>, fn(u8) -> Slot) = if narrow {
            (&mut self.narrow, Slot::Narrow)
        } else {
            (&mut self.wide, Slot::Wide)
        };
        if reuse {
            if let Some(i) = held.iter().position(|h| *h == Held::Free) {
                held[i] = Held::Scratch;
                return Ok(make(i as u8));
            }
        }
        if held.len() >= u8::MAX as usize {
            return Err("too many slots for one fused kernel".into());
        }
        held.push(Held::Scratch);
        let s = make(held.len() as u8 - 1);
        self.k.wide = self.wide.len() as u8;
        self.k.narrow = self.narrow.len() as u8;
        Ok(s)
    }

    /// Whether `s` must survive member `i`: a later member reads it or it
    /// is stored.
    fn needed_after(&self, s: Source, i: usize) -> bool {
        let stored =
            matches!(s, Source::Value(v) if self.produced.contains_key(&v) && (self.keep)(v));
        stored || self.reads[i + 1..].iter().any(|r| r.contains(&s))
    }

    fn add(&mut self, i: usize, m: &RowKernel) -> Result<(), String> {
        // A `[rows, 1]` kernel's slots hold one word per row: narrow slots
        // of the fused kernel.
        let narrow_map = m.len == 1;
        let is_narrow = |s: Slot| narrow_map || matches!(s, Slot::Narrow(_));
        let mut bind: HashMap<Slot, Slot> = HashMap::new();
        for &(s, addr) in &m.inputs {
            let src = source(addr);
            let loc = match self.at.get(&src) {
                Some(&loc) => {
                    if let Source::Value(v) = src {
                        if self.produced.get(&v).is_some_and(|f| *f != OutFmt::Word) {
                            return Err(format!("%{} is stored narrowed, not read in place", v.0));
                        }
                    }
                    if matches!(loc, Slot::Narrow(_)) != is_narrow(s) {
                        return Err("an operand read in another row shape".into());
                    }
                    loc
                }
                None => {
                    if matches!(src, Source::Value(v) if self.produced.contains_key(&v)) {
                        return Err("internal error: a fused value was overwritten".into());
                    }
                    let loc = self.slot(is_narrow(s), false)?;
                    self.k.inputs.push((loc, addr));
                    *self.held(loc) = Held::Source(src);
                    self.at.insert(src, loc);
                    loc
                }
            };
            bind.insert(s, loc);
        }
        let mut cmap = Vec::with_capacity(m.consts.len());
        for &(addr, words) in &m.consts {
            if matches!(source(addr), Source::Value(v) if self.produced.contains_key(&v)) {
                // Constants are loaded before the first chunk computes.
                return Err("a kernel constant computed in the group".into());
            }
            let n = self.consts.len();
            let c = *self.consts.entry((addr, words)).or_insert(n as u8);
            if c as usize == n {
                if n >= u8::MAX as usize {
                    return Err("too many constants for one fused kernel".into());
                }
                self.k.consts.push((addr, words));
            }
            cmap.push(c);
        }
        let get = |bind: &HashMap<Slot, Slot>, s: Slot| {
            bind.get(&s)
                .copied()
                .ok_or_else(|| format!("internal error: {s:?} read before it is written"))
        };
        let last_read = last_reads(m);
        let outputs: HashSet<Slot> = m.outputs.iter().map(|o| o.0).collect();
        for (j, st) in m.steps.iter().enumerate() {
            let src0 = get(&bind, st.src0)?;
            let src1 = match st.src1 {
                Src1::None => Src1::None,
                Src1::Tensor(s) => Src1::Tensor(get(&bind, s)?),
                Src1::Row(n) => match get(&bind, Slot::Narrow(n))? {
                    Slot::Narrow(j) => Src1::Row(j),
                    Slot::Wide(_) => {
                        return Err("internal error: a row operand in a wide slot".into())
                    }
                },
                Src1::Scalar(c) => Src1::Scalar(cmap[c as usize]),
                Src1::Imm(v) => Src1::Imm(v),
                Src1::ConstRow(c) if !narrow_map => Src1::ConstRow(cmap[c as usize]),
                Src1::ConstRow(_) => return Err("a row constant on a [rows, 1] value".into()),
            };
            // A working slot read for the last time here may take this
            // step's result (the vector unit reads a row before writing it).
            for (ks, loc) in bind.clone() {
                let dead = last_read.get(&ks).is_none_or(|&r| r <= j) && !outputs.contains(&ks);
                let unique = bind.values().filter(|l| **l == loc).count() == 1;
                if dead && unique && *self.held(loc) == Held::Scratch {
                    bind.remove(&ks);
                    *self.held(loc) = Held::Free;
                }
            }
            let dst = self.dst(i, st.dst, is_narrow(st.dst), &mut bind)?;
            self.k.steps.push(Step {
                op: st.op,
                int: st.int,
                dst,
                src0,
                src1,
            });
        }
        for &(s, addr, fmt) in &m.outputs {
            let Source::Value(v) = source(addr) else {
                return Err("internal error: a kernel output in the image".into());
            };
            let loc = get(&bind, s)?;
            if *self.held(loc) != Held::Scratch {
                return Err("an output that aliases an operand".into());
            }
            *self.held(loc) = Held::Source(Source::Value(v));
            self.at.insert(Source::Value(v), loc);
            self.produced.insert(v, fmt);
            if (self.keep)(v) {
                self.k.outputs.push((loc, addr, fmt));
                self.pinned.insert(loc);
            }
        }
        // Working slots and values nobody reads any more are free for the
        // next ops.
        let slots: Vec<Slot> = (0..self.wide.len() as u8)
            .map(Slot::Wide)
            .chain((0..self.narrow.len() as u8).map(Slot::Narrow))
            .collect();
        for s in slots {
            let free = match *self.held(s) {
                Held::Scratch => true,
                Held::Source(src) => !self.needed_after(src, i) && !self.pinned.contains(&s),
                Held::Free => false,
            };
            if free {
                if let Held::Source(src) = *self.held(s) {
                    self.at.remove(&src);
                }
                *self.held(s) = Held::Free;
            }
        }
        Ok(())
    }

    /// The slot a step of member `i` writes: in place when what the slot
    /// holds is needed by nobody else, else a fresh slot the member's
    /// slot is rebound to.
    fn dst(
        &mut self,
        i: usize,
        s: Slot,
        narrow: bool,
        bind: &mut HashMap<Slot, Slot>,
    ) -> Result<Slot, String> {
        if let Some(&loc) = bind.get(&s) {
            match *self.held(loc) {
                Held::Scratch => return Ok(loc),
                Held::Source(src) => {
                    let shared = bind.iter().any(|(k, l)| *k != s && *l == loc);
                    if !shared && !self.pinned.contains(&loc) && !self.needed_after(src, i) {
                        self.at.remove(&src);
                        *self.held(loc) = Held::Scratch;
                        return Ok(loc);
                    }
                }
                Held::Free => return Err("internal error: a bound slot is free".into()),
            }
        }
        let loc = self.slot(narrow, true)?;
        bind.insert(s, loc);
        Ok(loc)
    }
}

/// The last step of `m` reading each of its slots.
fn last_reads(m: &RowKernel) -> HashMap<Slot, usize> {
    let mut last = HashMap::new();
    for (j, st) in m.steps.iter().enumerate() {
        last.insert(st.src0, j);
        match st.src1 {
            Src1::Tensor(s) => {
                last.insert(s, j);
            }
            Src1::Row(n) => {
                last.insert(Slot::Narrow(n), j);
            }
            _ => {}
        }
    }
    last
}

/// Fuses the row kernels of consecutive ops (in order) into one. `keep(v)`
/// says whether a value the group produces is read outside the group (it is
/// then stored). Fails when the kernels do not share their rows, when a
/// kernel constant is computed within the group, or when an i8 result would
/// be read in place.
pub(crate) fn fuse(
    members: &[&RowKernel],
    keep: &dyn Fn(ValueId) -> bool,
) -> Result<RowKernel, String> {
    let first = members
        .first()
        .ok_or("internal error: an empty fusion group")?;
    let rows = first.rows;
    let len = members.iter().map(|m| m.len).max().unwrap_or(1);
    if let Some(m) = members
        .iter()
        .find(|m| m.rows != rows || (m.len != 1 && m.len != len))
    {
        return Err(format!(
            "rows {} x {} do not match the group's {rows} x {len}",
            m.rows, m.len
        ));
    }
    let mut f = Fuser {
        k: RowKernel {
            rows,
            len,
            ..Default::default()
        },
        wide: Vec::new(),
        narrow: Vec::new(),
        pinned: HashSet::new(),
        at: HashMap::new(),
        produced: HashMap::new(),
        consts: HashMap::new(),
        reads: members
            .iter()
            .map(|m| m.inputs.iter().map(|&(_, a)| source(a)).collect())
            .collect(),
        keep,
    };
    for (i, m) in members.iter().enumerate() {
        f.add(i, m)?;
    }
    Ok(f.k)
}

/// Groups of consecutive ops of a segment: ops whose kernels are row kernels
/// (`row[i]`) join the open group while the fused kernel builds and fits the
/// accumulator; any other op stands alone. `keep(group, v)`: whether a value
/// is read outside `group`.
pub(crate) fn plan(
    ops: &[usize],
    row: &HashMap<usize, RowKernel>,
    acc_words: u64,
    keep: &dyn Fn(&[usize], ValueId) -> bool,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let fits = |g: &[usize]| {
        let ks: Vec<&RowKernel> = g.iter().map(|i| &row[i]).collect();
        fuse(&ks, &|v| keep(g, v)).is_ok_and(|k| k.fitted(acc_words).is_ok())
    };
    for &i in ops {
        if !row.contains_key(&i) {
            if !open.is_empty() {
                groups.push(std::mem::take(&mut open));
            }
            groups.push(vec![i]);
            continue;
        }
        open.push(i);
        if open.len() > 1 && !fits(&open) {
            open.pop();
            groups.push(std::mem::replace(&mut open, vec![i]));
        }
    }
    if !open.is_empty() {
        groups.push(open);
    }
    groups
}
