//! Tessera IR (specialized, static shapes) → one MLIR module in upstream
//! dialects: a kernel function per op, written by the op's lowering, and the
//! entry function `@tsr_main` that runs them in graph order on views of the
//! caller's buffers, the arena and the weights blob.
//!
//! Entry ABI (bare-pointer memref convention, so it is a plain C function):
//! `i32 tsr_main(u8* in0, ..., u8* out0, ..., u8* arena, const u8* weights)`.
//! Every buffer is bytes; the entry views them at their planned offsets.
//! It returns 0, or 1 + the index of the first op whose kernel found bad
//! run-time input (see [`Emitted::failures`] for what each reports).

pub mod kernel;

use crate::lower;
use crate::plan::{plan, Base, MemoryPlan, Place, ALIGN};
use kernel::{memref_type, Helpers, KernelCtx};
use std::collections::HashMap;
use std::fmt::Write;
use tessera_ir::tensor::SharedTensor;
use tessera_ir::{DType, Diagnostic, Graph, OpKind, Tensor, ValueId};

/// One graph input or output as the ABI sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct IoDesc {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: usize,
}

/// The emitted module and everything needed to run it.
pub struct Emitted {
    pub mlir: String,
    pub weights: Vec<u8>,
    pub plan: MemoryPlan,
    pub inputs: Vec<IoDesc>,
    pub outputs: Vec<IoDesc>,
    pub kernels: usize,
    /// The kernels that check their run-time input: what the entry's
    /// nonzero status means.
    pub failures: Vec<Failure>,
}

/// A kernel that can fail at run time, by its status code.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The entry's return value when this kernel failed first.
    pub status: i32,
    pub what: String,
    pub op: String,
    pub loc: Option<tessera_ir::Loc>,
}

impl Failure {
    pub fn diagnostic(&self) -> Diagnostic {
        Diagnostic::new(self.what.clone())
            .op(self.op.clone())
            .at(self.loc.clone())
    }
}

#[derive(Clone, Debug)]
pub struct EmitOptions {
    pub threads: usize,
}

/// The dims of a value of a specialized graph (every shape is static there).
fn static_dims(g: &Graph, v: ValueId) -> Vec<usize> {
    g.ty(v)
        .static_shape()
        .unwrap_or_default()
        .into_iter()
        .map(|n| n as usize)
        .collect()
}

fn io(g: &Graph, name: String, v: ValueId) -> IoDesc {
    let ty = g.ty(v);
    let shape = static_dims(g, v);
    IoDesc {
        name,
        dtype: ty.dtype(),
        bytes: crate::plan::byte_size(g, v),
        shape,
    }
}

fn align_blob(blob: &mut Vec<u8>) {
    blob.resize(blob.len().div_ceil(ALIGN) * ALIGN, 0);
}

fn op_error(op: &tessera_ir::Op, msg: String) -> Diagnostic {
    Diagnostic::new(msg)
        .op(format!("tsr.{}", op.kind.mnemonic()))
        .at(op.loc.clone())
}

pub fn emit_module(g: &Graph, opts: &EmitOptions) -> Result<Emitted, Diagnostic> {
    let producers = g.producers();
    let consts = |v: ValueId| -> Option<SharedTensor> { g.constant_value(v, &producers).cloned() };

    // Kernels, in graph order. Views need none: the plan aliases them.
    let mut helpers = Helpers::default();
    let mut kernels: Vec<(usize, String, Vec<KernelArg>)> = Vec::new();
    let mut derived: Vec<Vec<Tensor>> = Vec::new();
    let mut failures = Vec::new();
    for (i, op) in g.ops.iter().enumerate() {
        if op.kind == OpKind::Constant || crate::plan::is_view(op.kind) {
            continue;
        }
        let symbol = format!("k{i}_{}", op.kind.mnemonic().replace('.', "_"));
        let mut k = KernelCtx::new(g, op, symbol.clone(), &consts, opts.threads, &mut helpers)
            .map_err(|e| op_error(op, e))?;
        lower::lower(&mut k).map_err(|e| op_error(op, e))?;
        let mut args = Vec::new();
        for b in k.used_operands() {
            args.push(KernelArg::Value(
                b.value.expect("operands are graph values"),
                b.ty.clone(),
            ));
        }
        for (j, d) in k.derived.iter().enumerate() {
            args.push(KernelArg::Derived(derived.len(), j, d.buf.ty.clone()));
        }
        derived.push(k.derived.iter().map(|d| d.tensor.clone()).collect());
        for b in k.passed_results() {
            args.push(KernelArg::Value(
                b.value.expect("results are graph values"),
                b.ty.clone(),
            ));
        }
        if let Some(what) = k.failure() {
            args.push(KernelArg::Status);
            failures.push(Failure {
                status: i as i32 + 1,
                what: what.to_string(),
                op: format!("tsr.{}", op.kind.mnemonic()),
                loc: op.loc.clone(),
            });
        }
        kernels.push((i, k.finish(), args));
    }

    // The weights blob: the constants something reads at run time (through
    // views too), then the derived constants.
    let mut root: HashMap<ValueId, ValueId> = HashMap::new();
    for op in &g.ops {
        if crate::plan::is_view(op.kind) {
            if let (Some(src), [r]) = (op.operand(0), &op.results[..]) {
                let base = *root.get(&src).unwrap_or(&src);
                root.insert(*r, base);
            }
        }
    }
    let mut needed: Vec<ValueId> = Vec::new();
    let mut need = |v: ValueId| {
        let r = *root.get(&v).unwrap_or(&v);
        if !needed.contains(&r) {
            needed.push(r);
        }
    };
    for (_, _, args) in &kernels {
        for a in args {
            if let KernelArg::Value(v, _) = a {
                need(*v);
            }
        }
    }
    for (_, v) in &g.outputs {
        need(*v);
    }
    let mut weights: Vec<u8> = Vec::new();
    let mut const_offset: HashMap<ValueId, usize> = HashMap::new();
    for v in needed {
        let Some(t) = consts(v) else { continue };
        if t.dtype == DType::Str {
            return Err(Diagnostic::new(
                "string tensors are not supported by the cpu target",
            ));
        }
        align_blob(&mut weights);
        const_offset.insert(v, weights.len());
        weights.extend_from_slice(&t.to_bytes());
    }
    let mut derived_offset: Vec<Vec<usize>> = Vec::new();
    for ts in &derived {
        let mut offs = Vec::new();
        for t in ts {
            align_blob(&mut weights);
            offs.push(weights.len());
            weights.extend_from_slice(&t.to_bytes());
        }
        derived_offset.push(offs);
    }
    align_blob(&mut weights);
    for (_, _, args) in &mut kernels {
        for a in args.iter_mut() {
            if let KernelArg::Derived(k, j, ty) = a {
                *a = KernelArg::Weights(derived_offset[*k][*j], std::mem::take(ty));
            }
        }
    }

    let mut plan = plan(g, &|v| const_offset.get(&v).copied());
    if !failures.is_empty() {
        plan.reserve_status();
    }
    let inputs: Vec<IoDesc> = g
        .inputs
        .iter()
        .map(|v| {
            io(
                g,
                g.values[v.0 as usize].name.clone().unwrap_or_default(),
                *v,
            )
        })
        .collect();
    let outputs: Vec<IoDesc> = g
        .outputs
        .iter()
        .map(|(n, v)| io(g, n.clone(), *v))
        .collect();

    let mut m = String::from("module {\n");
    for f in helpers.funcs.values() {
        m.push_str(f);
    }
    for (_, text, _) in &kernels {
        m.push_str(text);
    }
    let entry = Entry::new(g, &plan, &inputs, &outputs, weights.len());
    m.push_str(&entry.emit(g, &kernels)?);
    m.push_str("}\n");
    Ok(Emitted {
        mlir: m,
        weights,
        plan,
        inputs,
        outputs,
        kernels: kernels.len(),
        failures,
    })
}

/// A kernel call argument.
enum KernelArg {
    Value(ValueId, String),
    /// Derived constant `j` of kernel `k`, before the blob is laid out.
    Derived(usize, usize, String),
    /// A derived constant at this weights offset.
    Weights(usize, String),
    /// The run's status word (the kernel checks its run-time input).
    Status,
}

struct Entry<'a> {
    plan: &'a MemoryPlan,
    /// Base buffer SSA names and types, by [`Base`].
    bases: Vec<(Base, String, String)>,
    views: HashMap<(Base, usize, String), String>,
    body: String,
    next: usize,
    offsets: HashMap<usize, String>,
}

impl<'a> Entry<'a> {
    fn new(
        _g: &Graph,
        plan: &'a MemoryPlan,
        inputs: &[IoDesc],
        outputs: &[IoDesc],
        weights: usize,
    ) -> Entry<'a> {
        let mut bases = Vec::new();
        for (i, d) in inputs.iter().enumerate() {
            bases.push((
                Base::Input(i),
                format!("%in{i}"),
                format!("memref<{}xi8>", d.bytes.max(1)),
            ));
        }
        for (i, d) in outputs.iter().enumerate() {
            bases.push((
                Base::Output(i),
                format!("%out{i}"),
                format!("memref<{}xi8>", d.bytes.max(1)),
            ));
        }
        bases.push((
            Base::Arena,
            "%arena".into(),
            format!("memref<{}xi8>", plan.arena_bytes.max(1)),
        ));
        bases.push((
            Base::Weights,
            "%weights".into(),
            format!("memref<{}xi8>", weights.max(1)),
        ));
        Entry {
            plan,
            bases,
            views: HashMap::new(),
            body: String::new(),
            next: 0,
            offsets: HashMap::new(),
        }
    }

    fn base(&self, b: Base) -> (&str, &str) {
        let e = self
            .bases
            .iter()
            .find(|x| x.0 == b)
            .expect("every base is declared");
        (&e.1, &e.2)
    }

    fn offset(&mut self, off: usize) -> String {
        if let Some(n) = self.offsets.get(&off) {
            return n.clone();
        }
        let name = format!("%off{off}");
        writeln!(self.body, "    {name} = arith.constant {off} : index").unwrap();
        self.offsets.insert(off, name.clone());
        name
    }

    /// A typed view of `place`, made once per (place, type).
    fn view(&mut self, place: Place, ty: &str) -> String {
        let key = (place.base, place.offset, ty.to_string());
        if let Some(n) = self.views.get(&key) {
            return n.clone();
        }
        let off = self.offset(place.offset);
        self.next += 1;
        let name = format!("%v{}", self.next);
        let (b, bty) = self.base(place.base);
        let (b, bty) = (b.to_string(), bty.to_string());
        writeln!(
            self.body,
            "    {name} = memref.view {b}[{off}][] : {bty} to {ty}"
        )
        .unwrap();
        self.views.insert(key, name.clone());
        name
    }

    fn value_view(&mut self, g: &Graph, v: ValueId, ty: &str) -> Result<String, Diagnostic> {
        let place = self.plan.place[v.0 as usize].ok_or_else(|| {
            Diagnostic::new(format!(
                "internal error: the memory plan has no place for a value of type {}",
                g.ty(v)
            ))
        })?;
        Ok(self.view(place, ty))
    }

    fn emit(
        mut self,
        g: &Graph,
        kernels: &[(usize, String, Vec<KernelArg>)],
    ) -> Result<String, Diagnostic> {
        // The status word starts at i32::MAX ("no failure"); failing
        // kernels lower it to their op index (atomic min).
        let status = self.plan.status.map(|off| {
            let v = self.view(
                Place {
                    base: Base::Arena,
                    offset: off,
                },
                kernel::STATUS_TY,
            );
            writeln!(
                self.body,
                "    %st_ok = arith.constant {} : i32\n    %st_c0 = arith.constant 0 : index\n    memref.store %st_ok, {v}[%st_c0] : {}",
                i32::MAX,
                kernel::STATUS_TY
            )
            .unwrap();
            v
        });
        for (op_index, _, args) in kernels {
            let op = &g.ops[*op_index];
            let mut names = Vec::new();
            let mut tys = Vec::new();
            for a in args {
                match a {
                    KernelArg::Value(v, ty) => {
                        names.push(self.value_view(g, *v, ty)?);
                        tys.push(ty.clone());
                    }
                    KernelArg::Derived(..) => unreachable!("laid out before the entry"),
                    KernelArg::Status => {
                        names.push(status.clone().ok_or_else(|| {
                            Diagnostic::new("internal error: a kernel reports status but the plan has no status word")
                        })?);
                        tys.push(kernel::STATUS_TY.to_string());
                    }
                    KernelArg::Weights(off, ty) => {
                        names.push(self.view(
                            Place {
                                base: Base::Weights,
                                offset: *off,
                            },
                            ty,
                        ));
                        tys.push(ty.clone());
                    }
                }
            }
            writeln!(
                self.body,
                "    func.call @k{op_index}_{}({}) : ({}) -> ()",
                op.kind.mnemonic().replace('.', "_"),
                names.join(", "),
                tys.join(", ")
            )
            .unwrap();
        }
        for &(k, v) in &self.plan.copies.clone() {
            let mty = memref_type(&static_dims(g, v), g.ty(v).dtype()).map_err(Diagnostic::new)?;
            let src = self.value_view(g, v, &mty)?;
            let dst = self.view(
                Place {
                    base: Base::Output(k),
                    offset: 0,
                },
                &mty,
            );
            writeln!(self.body, "    memref.copy {src}, {dst} : {mty} to {mty}").unwrap();
        }
        let params: Vec<String> = self
            .bases
            .iter()
            .map(|(_, n, t)| format!("{n}: {t}"))
            .collect();
        // 0, or 1 + the op index of the first failure.
        match &status {
            Some(v) => writeln!(
                self.body,
                "    %st = memref.load {v}[%st_c0] : {}\n    %st_none = arith.cmpi eq, %st, %st_ok : i32\n    %st_one = arith.constant 1 : i32\n    %st_code = arith.addi %st, %st_one : i32\n    %st_zero = arith.constant 0 : i32\n    %ret = arith.select %st_none, %st_zero, %st_code : i32",
                kernel::STATUS_TY
            ),
            None => writeln!(self.body, "    %ret = arith.constant 0 : i32"),
        }
        .unwrap();
        Ok(format!(
            "  func.func @tsr_main({}) -> i32 {{\n{}    return %ret : i32\n  }}\n",
            params.join(", "),
            self.body
        ))
    }
}
