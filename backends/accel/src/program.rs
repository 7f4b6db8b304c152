//! A compiled accel program: the quantized, specialized graph split into host
//! steps and accelerator segments (one instruction stream each, with the
//! weights in its DRAM image), and how to run it.

use crate::emit::Emitter;
use crate::fuse::{self, ImageTags, TagValues};
use crate::gemm::{plan_gemm, Tiling};
use crate::lower::{build, host_reason, Addrs, Ctx, Kernel};
use crate::quantize::{quantize_graph, QuantStats};
use crate::specialize::{specialize, Bindings};
use crate::vector::RowKernel;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tessera_accel_isa::{asm, Buffer, HwConfig, Role, Stream, VERSION};
use tessera_ir::ops::EvalCtx;
use tessera_ir::{Attr, DType, Diagnostic, Graph, Op, OpKind, Tensor, ValueId};
use tessera_sim::{Report, Simulator};

/// A host op, with why it is not on the accelerator.
#[derive(Clone, Debug)]
pub struct HostOp {
    pub op: usize,
    pub node: String,
    pub mnemonic: String,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Segment {
    pub ops: Vec<usize>,
    pub stream: Stream,
    /// Graph values read from and written to the stream's buffers.
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Values computed by the segment that never leave the accumulator
    /// (fused row kernels store only what something outside reads).
    pub internal: Vec<ValueId>,
    /// One line per kernel (op, kernel shape, tiles).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Step {
    Host(HostOp),
    Accel(Segment),
}

/// Compilation choices that change the emitted program, not its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Fuse consecutive vector-unit row kernels (`fuse.rs`); off emits one
    /// kernel per op.
    pub fuse_rows: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { fuse_rows: true }
    }
}

pub struct Program {
    pub cfg: HwConfig,
    pub bindings: Bindings,
    pub graph: Graph,
    pub quant: QuantStats,
    pub steps: Vec<Step>,
}

pub fn node_name(op: &Op) -> String {
    op.loc.as_ref().map_or_else(
        || format!("tsr.{}", op.kind.def().mnemonic),
        |l| l.name.clone(),
    )
}

fn buf_name(v: ValueId) -> String {
    format!("v{}", v.0)
}

fn isa_dtype(d: DType) -> Option<tessera_accel_isa::DType> {
    use tessera_accel_isa::DType as S;
    Some(match d {
        DType::F32 => S::F32,
        DType::I8 => S::I8,
        DType::U8 => S::U8,
        DType::I32 => S::I32,
        _ => return None,
    })
}

/// Addresses for a placement trial: everything at 0.
struct Dry;
impl Addrs for Dry {
    fn value(&mut self, _: ValueId) -> u64 {
        0
    }
    fn image(&mut self, _: (ValueId, u8), _: &[u8]) -> u64 {
        0
    }
}

struct SegAddrs {
    addr: HashMap<ValueId, u64>,
    image_base: u64,
    image: Vec<u8>,
    placed: HashMap<(ValueId, u8), u64>,
}

impl Addrs for SegAddrs {
    fn value(&mut self, v: ValueId) -> u64 {
        self.addr.get(&v).copied().unwrap_or(0)
    }
    fn image(&mut self, key: (ValueId, u8), bytes: &[u8]) -> u64 {
        if let Some(&a) = self.placed.get(&key) {
            return a;
        }
        while !self.image.len().is_multiple_of(64) {
            self.image.push(0);
        }
        let a = self.image_base + self.image.len() as u64;
        self.image.extend_from_slice(bytes);
        self.placed.insert(key, a);
        a
    }
}

/// Whether the kernel fits the configuration; a GEMM's tiling, chosen here
/// once, is reused when the segment is emitted (planning prices every
/// candidate tiling).
fn check_fits(cfg: &HwConfig, k: &Kernel) -> Result<Option<Tiling>, String> {
    match k {
        Kernel::Row(r) => r.chunk_rows(cfg.acc_words()).map(|_| None),
        Kernel::Gemm(s) => plan_gemm(s, cfg).map(|p| Some(p.tiling)),
        Kernel::Staged(k) => k.check(cfg).map(|_| None),
        Kernel::Gemms(k) => k.check(cfg).map(|_| None),
    }
}

fn types_fit(g: &Graph, op: &Op, producers: &[Option<usize>]) -> Result<(), String> {
    for v in op.operands.iter().flatten().chain(&op.results) {
        let ty = g.ty(*v);
        // i64 constants are compile-time parameters (reduction axes).
        if ty.dtype() == DType::I64 && g.constant_value(*v, producers).is_some() {
            continue;
        }
        if isa_dtype(ty.dtype()).is_none() {
            return Err(format!(
                "{} values do not live on the accelerator",
                ty.dtype()
            ));
        }
        if ty.static_shape().is_none() {
            return Err(format!("shape {ty} is not static"));
        }
    }
    Ok(())
}

impl Program {
    /// Quantizes, specializes and partitions `graph`, then emits every
    /// segment, with the default [`Options`].
    pub fn compile(
        graph: &Graph,
        cfg: &HwConfig,
        bindings: &Bindings,
    ) -> Result<Program, Diagnostic> {
        Program::compile_with(graph, cfg, bindings, Options::default())
    }

    pub fn compile_with(
        graph: &Graph,
        cfg: &HwConfig,
        bindings: &Bindings,
        options: Options,
    ) -> Result<Program, Diagnostic> {
        let mut g = graph.clone();
        let dynamic = crate::dynamic_quant::rewrite_dynamic_quantization(&mut g)?;
        let mut quant = quantize_graph(&mut g)?;
        quant.dynamic = dynamic;
        specialize(&mut g, bindings);
        // Rewrites that need concrete sizes (causal attention masks) apply now.
        quant.runtime.extend(quantize_graph(&mut g)?.runtime);
        crate::conv::im2col_convs(&mut g, &mut quant)?;
        crate::movement::split_to_slices(&mut g)?;
        crate::movement::materialize_broadcasts(&mut g)?;
        let producers = g.producers();
        let cx = Ctx {
            g: &g,
            producers: &producers,
        };
        // Placement.
        let mut placed: Vec<Option<Result<Option<Tiling>, String>>> =
            Vec::with_capacity(g.ops.len());
        let mut row_ops = HashSet::new();
        for (i, op) in g.ops.iter().enumerate() {
            if op.kind == OpKind::Constant {
                placed.push(None);
                continue;
            }
            let r = types_fit(&g, op, &producers)
                .and_then(|_| build(&cx, op, &mut Dry))
                .and_then(|k| {
                    if matches!(k, Kernel::Row(_)) {
                        row_ops.insert(i);
                    }
                    check_fits(cfg, &k)
                });
            placed.push(Some(r));
        }
        let fusion = Fusion::new(&g, row_ops);
        let fusion = options.fuse_rows.then_some(&fusion);
        let mut steps: Vec<Step> = Vec::new();
        let mut run: Vec<usize> = Vec::new();
        let mut tilings: HashMap<usize, Tiling> = HashMap::new();
        for (i, p) in placed.iter().enumerate() {
            let op = &g.ops[i];
            match p {
                None => {}
                Some(Ok(tiling)) => {
                    run.push(i);
                    if let Some(t) = tiling {
                        tilings.insert(i, *t);
                    }
                }
                Some(Err(why)) => {
                    let Some(reason) = host_reason(op.kind) else {
                        return Err(Diagnostic::new(format!(
                            "not supported on the accel target: no accelerator lowering ({why}) \
                             and not an op the host runs"
                        ))
                        .at(op.loc.clone())
                        .op(format!("tsr.{}", op.kind.def().mnemonic)));
                    };
                    if !run.is_empty() {
                        steps.push(Step::Accel(emit_segment(
                            &cx,
                            cfg,
                            std::mem::take(&mut run),
                            &tilings,
                            fusion,
                        )?));
                    }
                    steps.push(Step::Host(HostOp {
                        op: i,
                        node: node_name(op),
                        mnemonic: format!("tsr.{}", op.kind.def().mnemonic),
                        reason: format!("{reason} ({why})"),
                    }));
                }
            }
        }
        if !run.is_empty() {
            steps.push(Step::Accel(emit_segment(&cx, cfg, run, &tilings, fusion)?));
        }
        Ok(Program {
            cfg: cfg.clone(),
            bindings: bindings.clone(),
            graph: g,
            quant,
            steps,
        })
    }

    pub fn host_ops(&self) -> impl Iterator<Item = &HostOp> {
        self.steps.iter().filter_map(|s| match s {
            Step::Host(h) => Some(h),
            _ => None,
        })
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.steps.iter().filter_map(|s| match s {
            Step::Accel(a) => Some(a),
            _ => None,
        })
    }

    /// The partition and kernel summary that heads `--emit asm`.
    pub fn header(&self) -> String {
        let mut s = format!(
            "# tessera accel program for '{}' on config '{}' (hash {:#018x})\n",
            self.graph.name,
            self.cfg.name,
            self.cfg.hash()
        );
        let binds: Vec<String> = self
            .bindings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s += &format!(
            "# shapes specialized to: {}\n",
            if binds.is_empty() {
                "(static)".into()
            } else {
                binds.join(",")
            }
        );
        s += &format!(
            "# quantized matmuls (int8 per-channel weights, per-token dynamic int8 activations): {}\n",
            self.quant.quantized.len()
        );
        s += &format!(
            "# activation x activation matmuls and attention ops (int8 per row x per matrix): {}\n",
            self.quant.runtime.len()
        );
        let accel_ops: usize = self.segments().map(|g| g.ops.len()).sum();
        let hosts: Vec<&HostOp> = self.host_ops().collect();
        s += &format!(
            "# partition: {} ops on the accelerator in {} segments, {} ops on the host\n",
            accel_ops,
            self.segments().count(),
            hosts.len()
        );
        for h in hosts {
            s += &format!("#   host {} {}: {}\n", h.mnemonic, h.node, h.reason);
        }
        s
    }

    /// `--emit asm`: the header, then each segment's disassembly.
    pub fn asm(&self) -> String {
        let mut s = self.header();
        for (k, seg) in self.segments().enumerate() {
            s += &format!("\n# segment {k}: {} ops\n", seg.ops.len());
            for n in &seg.notes {
                s += &format!("#   {n}\n");
            }
            s += &asm::disassemble(&seg.stream);
        }
        s
    }

    /// `--emit stream`: a plain stream when the whole program is one segment,
    /// else a bundle (see docs/accel-backend.md).
    pub fn stream_bytes(&self) -> Result<Vec<u8>, Diagnostic> {
        let segs: Vec<&Segment> = self.segments().collect();
        let err = |e: tessera_accel_isa::IsaError| Diagnostic::new(e.to_string());
        if segs.len() == 1 && self.steps.len() == 1 {
            return segs[0].stream.to_bytes().map_err(err);
        }
        let mut out = Vec::new();
        out.extend_from_slice(BUNDLE_MAGIC);
        out.extend_from_slice(&1u32.to_le_bytes());
        let manifest = self.header();
        out.extend_from_slice(&(manifest.len() as u64).to_le_bytes());
        out.extend_from_slice(manifest.as_bytes());
        out.extend_from_slice(&(segs.len() as u32).to_le_bytes());
        for s in segs {
            let b = s.stream.to_bytes().map_err(err)?;
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    /// Runs the program: host steps through the reference semantics, segments
    /// on the simulator. Returns the outputs and one report per segment.
    pub fn run(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Report>), Diagnostic> {
        let g = &self.graph;
        // Constants are available to every step.
        let mut vals = initial_values(g, inputs);
        for op in &g.ops {
            if op.kind == OpKind::Constant {
                bind_constant(g, op, &mut vals);
            }
        }
        let sim = Simulator::new(self.cfg.clone());
        let mut reports = Vec::new();
        for step in &self.steps {
            match step {
                Step::Host(h) => eval_host(g, &g.ops[h.op], &mut vals)?,
                Step::Accel(seg) => {
                    let mut bytes = BTreeMap::new();
                    for v in &seg.inputs {
                        let t = vals[v.0 as usize].as_ref().ok_or_else(|| {
                            Diagnostic::new(format!("segment input %{} has no value", v.0))
                        })?;
                        bytes.insert(buf_name(*v), t.to_bytes());
                    }
                    let (out, rep) = sim
                        .run(&seg.stream, &bytes)
                        .map_err(|e| Diagnostic::new(format!("simulator: {e}")))?;
                    for v in &seg.outputs {
                        let ty = g.ty(*v);
                        let shape: Vec<usize> = ty
                            .static_shape()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|d| d as usize)
                            .collect();
                        let b = out.outputs.get(&buf_name(*v)).ok_or_else(|| {
                            Diagnostic::new(format!("segment output %{} missing", v.0))
                        })?;
                        let t =
                            Tensor::from_bytes(ty.dtype(), shape, b).map_err(Diagnostic::new)?;
                        vals[v.0 as usize] = Some(Arc::new(t));
                    }
                    reports.push(rep);
                }
            }
        }
        let outs = g
            .outputs
            .iter()
            .map(|(name, v)| {
                vals[v.0 as usize]
                    .as_ref()
                    .map(|t| (**t).clone())
                    .ok_or_else(|| Diagnostic::new(format!("output '{name}' was not computed")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((outs, reports))
    }
}

pub const BUNDLE_MAGIC: &[u8; 4] = b"TSRP";

fn eval_host(g: &Graph, op: &Op, vals: &mut [Option<Arc<Tensor>>]) -> Result<(), Diagnostic> {
    let def = op.kind.def();
    let fail = |m: String| {
        Diagnostic::new(m)
            .at(op.loc.clone())
            .op(format!("tsr.{}", def.mnemonic))
    };
    let eval = def
        .eval
        .ok_or_else(|| fail("has no reference semantics".into()))?;
    let mut inputs = Vec::with_capacity(op.operands.len());
    for o in &op.operands {
        inputs.push(match o {
            Some(v) => Some(
                vals[v.0 as usize]
                    .as_deref()
                    .ok_or_else(|| fail(format!("operand %{} has no value", v.0)))?,
            ),
            None => None,
        });
    }
    let ctx = EvalCtx {
        def,
        attrs: &op.attrs,
        inputs,
        num_results: op.results.len(),
    };
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval(&ctx)))
        .map_err(|_| fail("internal error in the reference semantics".into()))?
        .map_err(fail)?;
    let _ = g;
    for (r, t) in op.results.iter().zip(out) {
        vals[r.0 as usize] = Some(Arc::new(t));
    }
    Ok(())
}

/// What fusion needs to know about the graph: who reads each value.
struct Fusion {
    /// Ops reading each value (by value index).
    readers: Vec<Vec<usize>>,
    outputs: HashSet<ValueId>,
    /// Ops whose kernel is a row kernel.
    row_ops: HashSet<usize>,
}

impl Fusion {
    fn new(g: &Graph, row_ops: HashSet<usize>) -> Fusion {
        let mut readers = vec![Vec::new(); g.values.len()];
        for (i, op) in g.ops.iter().enumerate() {
            for v in op.operands.iter().flatten() {
                readers[v.0 as usize].push(i);
            }
        }
        Fusion {
            readers,
            outputs: g.outputs.iter().map(|(_, v)| *v).collect(),
            row_ops,
        }
    }

    /// Whether something outside `group` reads `v` (so it must be stored).
    fn keep(&self, group: &[usize], v: ValueId) -> bool {
        self.outputs.contains(&v)
            || self.readers[v.0 as usize]
                .iter()
                .any(|o| !group.contains(o))
    }

    /// The segment's ops in groups: fused row kernels and single ops.
    fn groups(&self, cx: &Ctx, cfg: &HwConfig, ops: &[usize]) -> Vec<Vec<usize>> {
        let mut tags = ImageTags::default();
        let mut rows = HashMap::new();
        for &i in ops.iter().filter(|i| self.row_ops.contains(i)) {
            // An op that fails to build here is emitted alone and reports
            // its error there.
            if let Ok(Kernel::Row(k)) = build(cx, &cx.g.ops[i], &mut TagValues { image: &mut tags })
            {
                rows.insert(i, k);
            }
        }
        fuse::plan(ops, &rows, cfg.acc_words(), &|g, v| self.keep(g, v))
    }
}

fn op_diag(op: &Op, m: String) -> Diagnostic {
    Diagnostic::new(m)
        .at(op.loc.clone())
        .op(format!("tsr.{}", op.kind.def().mnemonic))
}

/// Lays out DRAM for a run of accel ops and emits their kernels as one stream.
fn emit_segment(
    cx: &Ctx,
    cfg: &HwConfig,
    ops: Vec<usize>,
    tilings: &HashMap<usize, Tiling>,
    fusion: Option<&Fusion>,
) -> Result<Segment, Diagnostic> {
    let g = cx.g;
    let groups = match fusion {
        Some(f) => f.groups(cx, cfg, &ops),
        None => ops.iter().map(|&i| vec![i]).collect(),
    };
    let mut internal: Vec<ValueId> = Vec::new();
    if let Some(f) = fusion {
        for group in groups.iter().filter(|gr| gr.len() > 1) {
            for &i in group {
                let results = g.ops[i].results.iter();
                internal.extend(results.filter(|v| !f.keep(group, **v)));
            }
        }
    }
    let mut produced: Vec<ValueId> = Vec::new();
    let mut inputs: Vec<ValueId> = Vec::new();
    for &i in &ops {
        let op = &g.ops[i];
        for v in op.operands.iter().flatten() {
            let is_const = cx.g.constant_value(*v, cx.producers).is_some();
            if !is_const && !produced.contains(v) && !inputs.contains(v) {
                inputs.push(*v);
            }
        }
        produced.extend(op.results.iter().copied());
    }
    produced.retain(|v| !internal.contains(v));
    let mut addr = HashMap::new();
    let mut buffers = Vec::new();
    let mut next = 0u64;
    for (role, vs) in [(Role::Input, &inputs), (Role::Output, &produced)] {
        for v in vs {
            let ty = g.ty(*v);
            let shape: Vec<u64> = ty
                .static_shape()
                .unwrap_or_default()
                .into_iter()
                .map(|d| d as u64)
                .collect();
            let dtype = isa_dtype(ty.dtype()).ok_or_else(|| {
                Diagnostic::new(format!("{} value on the accelerator", ty.dtype()))
            })?;
            let b = Buffer {
                name: buf_name(*v),
                role,
                dtype,
                shape,
                addr: next,
            };
            addr.insert(*v, next);
            next = (next + b.bytes()).div_ceil(64) * 64;
            buffers.push(b);
        }
    }
    let mut a = SegAddrs {
        addr,
        image_base: next,
        image: Vec::new(),
        placed: HashMap::new(),
    };
    let mut em = Emitter::new(cfg);
    let mut notes = Vec::new();
    for group in &groups {
        let note = match (group.as_slice(), fusion) {
            (&[i], _) => emit_op(cx, i, &mut a, &mut em, tilings)?,
            (_, Some(f)) => emit_fused(cx, group, f, &mut a, &mut em)?,
            (_, None) => {
                return Err(Diagnostic::new(
                    "internal error: ops grouped without fusion",
                ))
            }
        };
        notes.push(note);
    }
    let insns = em.finish();
    let image_len = a.image.len() as u64;
    Ok(Segment {
        ops,
        stream: Stream {
            version: VERSION,
            config_hash: cfg.hash(),
            dram_size: (a.image_base + image_len).max(64),
            buffers,
            insns,
            image_base: a.image_base,
            image: a.image,
        },
        inputs,
        outputs: produced,
        internal,
        notes,
    })
}

/// Emits one op's kernel; returns its note.
fn emit_op(
    cx: &Ctx,
    i: usize,
    a: &mut SegAddrs,
    em: &mut Emitter,
    tilings: &HashMap<usize, Tiling>,
) -> Result<String, Diagnostic> {
    let op = &cx.g.ops[i];
    let fail = |m: String| op_diag(op, m);
    let k = build(cx, op, a).map_err(fail)?;
    let head = format!("{} {}", op.kind.def().mnemonic, node_name(op));
    Ok(match &k {
        Kernel::Row(r) => {
            r.emit(em).map_err(fail)?;
            format!(
                "{head}: vector, {} rows x {} ({} steps)",
                r.rows,
                r.len,
                r.steps.len()
            )
        }
        Kernel::Gemms(k) => {
            k.emit(em).map_err(fail)?;
            format!("{head}: {}", k.note())
        }
        Kernel::Staged(k) => {
            k.emit(em).map_err(fail)?;
            format!("{head}: {}", k.note())
        }
        Kernel::Gemm(s) => {
            let t = *tilings.get(&i).ok_or_else(|| {
                fail("internal error: the GEMM was placed without a tiling".into())
            })?;
            em.gemm(s, t).map_err(fail)?;
            format!(
                "{head}: gemm {}x{}x{}, tiles m{} n{} k{} {:?}",
                s.m, s.k, s.n, t.m_tile, t.n_tile, t.k_tile, t.order
            )
        }
    })
}

/// Emits the row kernels of `group` as one fused kernel; its note names
/// every op.
fn emit_fused(
    cx: &Ctx,
    group: &[usize],
    f: &Fusion,
    a: &mut SegAddrs,
    em: &mut Emitter,
) -> Result<String, Diagnostic> {
    let mut kernels = Vec::with_capacity(group.len());
    for &i in group {
        let op = &cx.g.ops[i];
        match build(cx, op, &mut TagValues { image: &mut *a }) {
            Ok(Kernel::Row(k)) => kernels.push(k),
            Ok(_) => {
                return Err(op_diag(
                    op,
                    "internal error: a fused op is not a row kernel".into(),
                ))
            }
            Err(m) => return Err(op_diag(op, m)),
        }
    }
    let names: Vec<String> = group
        .iter()
        .map(|&i| {
            let op = &cx.g.ops[i];
            format!("{} {}", op.kind.def().mnemonic, node_name(op))
        })
        .collect();
    let fail = |m: String| Diagnostic::new(format!("fused row kernel [{}]: {m}", names.join(", ")));
    let refs: Vec<&RowKernel> = kernels.iter().collect();
    let mut k = fuse::fuse(&refs, &|v| f.keep(group, v)).map_err(fail)?;
    fuse::relocate(&mut k, &|v| a.addr.get(&v).copied()).map_err(fail)?;
    k.emit(em).map_err(fail)?;
    Ok(format!(
        "fused [{}]: vector, {} rows x {} ({} steps, {} wide + {} narrow slots, {} stores)",
        names.join(", "),
        k.rows,
        k.len,
        k.steps.len(),
        k.wide,
        k.narrow,
        k.outputs.len()
    ))
}

/// How one segment output compares with the reference semantics on the same
/// segment inputs.
#[derive(Clone, Debug)]
pub struct ValueCheck {
    pub node: String,
    pub mnemonic: String,
    pub dtype: DType,
    pub elements: usize,
    /// Elements whose bits differ (any difference, for integers).
    pub mismatches: usize,
    /// Largest distance in units in the last place (f32 only).
    pub max_ulp: u64,
}

fn ulp_distance(a: f32, b: f32) -> u64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        return 0;
    }
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 {
            i64::from(i32::MIN) - i64::from(i)
        } else {
            i64::from(i)
        }
    };
    key(a).abs_diff(key(b))
}

/// Per value of `g`: the graph inputs bound, nothing else yet.
fn initial_values(g: &Graph, inputs: &[Tensor]) -> Vec<Option<Arc<Tensor>>> {
    let mut vals: Vec<Option<Arc<Tensor>>> = vec![None; g.values.len()];
    for (v, t) in g.inputs.iter().zip(inputs) {
        vals[v.0 as usize] = Some(Arc::new(t.clone()));
    }
    vals
}

/// The value of a `Constant` op (shared, not copied).
fn bind_constant(g: &Graph, op: &Op, vals: &mut [Option<Arc<Tensor>>]) {
    if let Some(Attr::Const(c)) = op.attrs.get("value") {
        vals[op.results[0].0 as usize] = Some(g.constant(*c).value.clone());
    }
}

impl Program {
    /// Evaluates the whole graph with the reference semantics, then runs each
    /// segment on the reference values of its inputs and compares every value
    /// it stores with the reference value (values a fused kernel keeps in
    /// the accumulator, `Segment::internal`, have no buffer to compare).
    pub fn differential(&self, inputs: &[Tensor]) -> Result<Vec<ValueCheck>, Diagnostic> {
        let g = &self.graph;
        let mut vals = initial_values(g, inputs);
        for op in &g.ops {
            if op.kind == OpKind::Constant {
                bind_constant(g, op, &mut vals);
            } else {
                eval_host(g, op, &mut vals)?;
            }
        }
        let producers = g.producers();
        let sim = Simulator::new(self.cfg.clone());
        let mut checks = Vec::new();
        for seg in self.segments() {
            let mut bytes = BTreeMap::new();
            for v in &seg.inputs {
                let t = vals[v.0 as usize]
                    .as_ref()
                    .ok_or_else(|| Diagnostic::new(format!("no reference value for %{}", v.0)))?;
                bytes.insert(buf_name(*v), t.to_bytes());
            }
            let (out, _) = sim
                .run(&seg.stream, &bytes)
                .map_err(|e| Diagnostic::new(format!("simulator: {e}")))?;
            for v in &seg.outputs {
                let want = vals[v.0 as usize]
                    .as_ref()
                    .ok_or_else(|| Diagnostic::new(format!("no reference value for %{}", v.0)))?;
                let got = out.outputs.get(&buf_name(*v)).cloned().unwrap_or_default();
                let got = Tensor::from_bytes(want.dtype, want.shape.clone(), &got)
                    .map_err(Diagnostic::new)?;
                let op = producers[v.0 as usize].map(|i| &g.ops[i]);
                let (mut mismatches, mut max_ulp) = (0, 0);
                if want.dtype == DType::F32 {
                    for (a, b) in got.to_f32_vec().into_iter().zip(want.to_f32_vec()) {
                        let d = ulp_distance(a, b);
                        mismatches += (d != 0) as usize;
                        max_ulp = max_ulp.max(d);
                    }
                } else {
                    mismatches = got
                        .to_i64_vec()
                        .into_iter()
                        .zip(want.to_i64_vec())
                        .filter(|(a, b)| a != b)
                        .count();
                }
                checks.push(ValueCheck {
                    node: op.map(node_name).unwrap_or_default(),
                    mnemonic: op
                        .map_or(String::new(), |o| format!("tsr.{}", o.kind.def().mnemonic)),
                    dtype: want.dtype,
                    elements: want.len(),
                    mismatches,
                    max_ulp,
                });
            }
        }
        Ok(checks)
    }
}
