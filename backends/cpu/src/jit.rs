//! From the emitted MLIR to code in this process: MLIR lowering, translation,
//! the C-callable wrappers, LLVM O3, and the JIT. The executable compiles
//! once per distinct set of input shapes and reuses the code afterwards.

use crate::emit::{self, Emitted};
use crate::{llvm, mlir, CompileStats, CpuOptions};
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
use inkwell::module::Module;
use inkwell::targets::TargetMachine;
use inkwell::AddressSpace;
use std::collections::HashMap;
use std::time::Instant;
use tessera_backend::Executable;
use tessera_ir::{Diagnostic, Graph, Tensor};

/// Where [`compile_module`] stopped.
pub enum Lowered<'ctx> {
    /// The module in the LLVM dialect, as text.
    MlirText(String),
    /// Optimized LLVM IR, its target machine and per-phase times.
    Module(
        Module<'ctx>,
        TargetMachine,
        Vec<(&'static str, std::time::Duration)>,
    ),
}

/// Symbol of the packed entry: `i32 tsr_run_packed(u8** buffers, i32 threads)`
/// with buffers = inputs, outputs, arena, weights; returns `tsr_main`'s
/// status (0, or 1 + the index of the op that found bad run-time input).
pub const PACKED: &str = "tsr_run_packed";

/// Adds `tsr_run_packed`, which unpacks an array of buffer pointers, sets the
/// thread count and calls `tsr_main`.
pub fn add_packed_entry(module: &Module, buffers: usize) -> Result<(), String> {
    let ctx = module.get_context();
    let ptr = ctx.ptr_type(AddressSpace::default());
    let i32t = ctx.i32_type();
    let main = module
        .get_function("tsr_main")
        .ok_or("internal error: the module has no tsr_main")?;
    let set_threads = module
        .get_function("omp_set_num_threads")
        .unwrap_or_else(|| {
            module.add_function(
                "omp_set_num_threads",
                ctx.void_type().fn_type(&[i32t.into()], false),
                None,
            )
        });
    let f = module.add_function(
        PACKED,
        i32t.fn_type(&[ptr.into(), i32t.into()], false),
        None,
    );
    let b = ctx.create_builder();
    b.position_at_end(ctx.append_basic_block(f, "entry"));
    let err = |e: inkwell::builder::BuilderError| format!("internal error: {e}");
    let array = f.get_nth_param(0).unwrap().into_pointer_value();
    let threads = f.get_nth_param(1).unwrap();
    b.build_call(set_threads, &[threads.into()], "")
        .map_err(err)?;
    let mut args = Vec::new();
    for i in 0..buffers {
        // SAFETY: the index is within the array the caller passes.
        let slot = unsafe {
            b.build_in_bounds_gep(ptr, array, &[ctx.i64_type().const_int(i as u64, false)], "")
        }
        .map_err(err)?;
        args.push(b.build_load(ptr, slot, "").map_err(err)?.into());
    }
    let status = b.build_call(main, &args, "").map_err(err)?;
    let status = status
        .try_as_basic_value()
        .basic()
        .ok_or("internal error: tsr_main returns no status")?;
    b.build_return(Some(&status)).map_err(err)?;
    Ok(())
}

/// MLIR → LLVM dialect → LLVM IR (+ packed entry) → O3.
pub fn compile_module<'ctx>(
    ctx: &'ctx Context,
    emitted: &Emitted,
    opts: &CpuOptions,
    stop_at_llvm_dialect: bool,
) -> Result<Lowered<'ctx>, Diagnostic> {
    let mut phases = Vec::new();
    let t = Instant::now();
    let m = mlir::Mlir::new();
    let mut module = m.parse(&emitted.mlir).map_err(Diagnostic::new)?;
    m.run_pipeline(&mut module, mlir::LOWERING_PIPELINE)
        .map_err(Diagnostic::new)?;
    phases.push(("mlir lowering", t.elapsed()));
    if stop_at_llvm_dialect {
        return Ok(Lowered::MlirText(module.as_operation().to_string()));
    }
    let t = Instant::now();
    let lm = m.translate(&module, ctx).map_err(Diagnostic::new)?;
    let buffers = emitted.inputs.len() + emitted.outputs.len() + 2;
    add_packed_entry(&lm, buffers).map_err(Diagnostic::new)?;
    phases.push(("translate to llvm", t.elapsed()));
    let t = Instant::now();
    let resolved = opts.target.resolve();
    let tm = llvm::target_machine(&resolved, true).map_err(Diagnostic::new)?;
    llvm::optimize(&lm, &tm, &resolved).map_err(Diagnostic::new)?;
    phases.push(("llvm O3", t.elapsed()));
    Ok(Lowered::Module(lm, tm, phases))
}

/// One specialization, compiled and loaded.
struct Loaded {
    // Field order is drop order: the engine (and the code) before the
    // context that owns the module.
    _engine: ExecutionEngine<'static>,
    _ctx: Box<Context>,
    entry: extern "C" fn(*const *mut u8, i32) -> i32,
    /// What a nonzero status from `entry` means.
    failures: Vec<emit::Failure>,
    weights: Vec<u8>,
    arena: Vec<u8>,
    emitted_inputs: Vec<emit::IoDesc>,
    emitted_outputs: Vec<emit::IoDesc>,
    stats: CompileStats,
    /// Graph inputs compiled in as constants (value specialization).
    skip: Vec<usize>,
}

/// Compiles `g` for the shapes bound in `env` and loads it.
fn load(g: &Graph, env: &HashMap<String, i64>, opts: &CpuOptions) -> Result<Loaded, Diagnostic> {
    let t = Instant::now();
    let emitted = crate::emit_mlir(g, env, opts)?;
    let emit_time = t.elapsed();
    let ctx = Box::new(Context::create());
    // SAFETY: the context lives in a Box owned by `Loaded`, declared after
    // the engine so it is dropped last; its address never changes.
    let ctx_ref: &'static Context = unsafe { &*(ctx.as_ref() as *const Context) };
    let (module, _tm, mut phases) = match compile_module(ctx_ref, &emitted, opts, false)? {
        Lowered::Module(m, tm, p) => (m, tm, p),
        Lowered::MlirText(_) => unreachable!("asked for the LLVM module"),
    };
    phases.insert(0, ("emit mlir", emit_time));
    let t = Instant::now();
    let jit = llvm::Jit::new(&module).map_err(Diagnostic::new)?;
    let addr = jit.address(PACKED).map_err(Diagnostic::new)?;
    phases.push(("jit codegen", t.elapsed()));
    // SAFETY: the packed entry has exactly this signature (add_packed_entry).
    let entry: extern "C" fn(*const *mut u8, i32) -> i32 = unsafe { std::mem::transmute(addr) };
    let stats = CompileStats {
        kernels: emitted.kernels,
        arena_bytes: emitted.plan.arena_bytes,
        unshared_bytes: emitted.plan.unshared_bytes,
        weights_bytes: emitted.weights.len(),
        io_bytes: emitted
            .inputs
            .iter()
            .chain(&emitted.outputs)
            .map(|d| d.bytes)
            .sum(),
        phases,
    };
    Ok(Loaded {
        _engine: jit.into_engine(),
        _ctx: ctx,
        entry,
        failures: emitted.failures,
        arena: vec![0u8; emitted.plan.arena_bytes.max(1)],
        weights: emitted.weights,
        emitted_inputs: emitted.inputs,
        emitted_outputs: emitted.outputs,
        stats,
        skip: Vec::new(),
    })
}

/// Input shapes, and the bytes of the inputs specialized on by value.
type Key = (Vec<Vec<usize>>, Vec<Vec<u8>>);

/// Graph inputs small enough to specialize on by value: integer tensors of
/// at most 64 elements (shape-like operands).
fn value_inputs(g: &Graph, inputs: &[Tensor]) -> Vec<usize> {
    g.inputs
        .iter()
        .zip(inputs)
        .enumerate()
        .filter(|(_, (_, t))| t.dtype.is_int() && t.len() <= 64)
        .map(|(i, _)| i)
        .collect()
}

/// `g` with the inputs `idx` replaced by constants holding their values.
fn bind_values(g: &Graph, inputs: &[Tensor], idx: &[usize]) -> Graph {
    let mut g = g.clone();
    let mut consts = Vec::new();
    for &i in idx {
        let v = g.inputs[i];
        let name = format!("bound_input_{i}");
        let c = g.add_constant(&name, std::sync::Arc::new(inputs[i].clone()));
        let mut attrs = tessera_ir::Attrs::new();
        attrs.insert("value".into(), tessera_ir::Attr::Const(c));
        consts.push(tessera_ir::Op {
            kind: tessera_ir::OpKind::Constant,
            operands: vec![],
            results: vec![v],
            attrs,
            loc: None,
        });
    }
    g.ops.splice(0..0, consts);
    let bound: Vec<_> = idx.iter().map(|&i| g.inputs[i]).collect();
    g.inputs.retain(|v| !bound.contains(v));
    g
}

/// `tessera run --target cpu`: compiles on first use of each input shape.
pub struct CpuExecutable {
    graph: Graph,
    opts: CpuOptions,
    cache: HashMap<Key, Loaded>,
    /// For shapes compiled with value specialization: which inputs.
    value_inputs: HashMap<Vec<Vec<usize>>, Vec<usize>>,
    /// Statistics of the last compilation.
    pub last_stats: Option<CompileStats>,
}

impl CpuExecutable {
    pub fn new(graph: Graph, opts: CpuOptions) -> CpuExecutable {
        CpuExecutable {
            graph,
            opts,
            cache: HashMap::new(),
            value_inputs: HashMap::new(),
            last_stats: None,
        }
    }

    /// The cache key of `inputs`: their shapes, plus the values of the
    /// inputs the compiled code was specialized on.
    fn key(&self, inputs: &[Tensor]) -> Key {
        let shapes = inputs.iter().map(|t| t.shape.clone()).collect();
        let values = match self.value_inputs.get(&shapes) {
            Some(idx) => idx.iter().map(|&i| inputs[i].to_bytes()).collect(),
            None => Vec::new(),
        };
        (shapes, values)
    }

    /// Compiles for these inputs' shapes now (so a benchmark can time the
    /// compilation apart from the runs).
    pub fn compile_for(&mut self, inputs: &[Tensor]) -> Result<&CompileStats, Diagnostic> {
        let key = self.key(inputs);
        if !self.cache.contains_key(&key) {
            let env = tessera_reference::bind_inputs(&self.graph, inputs)?;
            let loaded = match load(&self.graph, &env, &self.opts) {
                Ok(l) => l,
                Err(shape_error) => {
                    // Output shapes that depend on input *values* (Range
                    // bounds, Pad amounts, runtime axes): specialize on the
                    // values of the small integer inputs, as a JIT guard, and
                    // key the cache on them. Ahead-of-time stages cannot.
                    let idx = value_inputs(&self.graph, inputs);
                    if idx.is_empty() {
                        return Err(shape_error);
                    }
                    let g = bind_values(&self.graph, inputs, &idx);
                    let mut l = load(&g, &env, &self.opts).map_err(|_| shape_error)?;
                    l.skip = idx.clone();
                    self.value_inputs.insert(key.0.clone(), idx);
                    l
                }
            };
            self.last_stats = Some(loaded.stats.clone());
            let key = self.key(inputs);
            self.cache.insert(key, loaded);
        }
        let key = self.key(inputs);
        Ok(&self.cache[&key].stats)
    }
}

impl Executable for CpuExecutable {
    fn prepare_for(&mut self, inputs: &[Tensor]) -> Result<(), Diagnostic> {
        self.compile_for(inputs).map(|_| ())
    }

    fn timing_rows(&self) -> Vec<(String, f64, String)> {
        let Some(s) = &self.last_stats else {
            return Vec::new();
        };
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        let mut rows: Vec<(String, f64, String)> = s
            .phases
            .iter()
            .map(|(n, d)| (format!("cpu: {n}"), d.as_secs_f64(), String::new()))
            .collect();
        rows.push((
            "cpu: memory plan".into(),
            0.0,
            format!(
                "{} kernels; arena {:.2} MiB (without reuse {:.2} MiB), weights {:.2} MiB, \
                 inputs+outputs {:.2} MiB; peak {:.2} MiB",
                s.kernels,
                mib(s.arena_bytes),
                mib(s.unshared_bytes),
                mib(s.weights_bytes),
                mib(s.io_bytes),
                mib(s.peak_bytes())
            ),
        ));
        rows
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Diagnostic> {
        self.compile_for(inputs)?;
        let key = self.key(inputs);
        let threads = self.opts.threads.max(1) as i32;
        let l = self.cache.get_mut(&key).expect("compiled above");
        let mut in_bytes: Vec<Vec<u8>> = inputs
            .iter()
            .enumerate()
            .filter(|(i, _)| !l.skip.contains(i))
            .map(|(_, t)| t.to_bytes())
            .collect();
        for (b, d) in in_bytes.iter_mut().zip(&l.emitted_inputs) {
            if b.len() != d.bytes {
                return Err(Diagnostic::new(format!(
                    "graph input '{}': expected {} bytes, got {}",
                    d.name,
                    d.bytes,
                    b.len()
                )));
            }
            // A zero-size buffer still needs a valid address.
            if b.is_empty() {
                b.push(0);
            }
        }
        let mut out_bytes: Vec<Vec<u8>> = l
            .emitted_outputs
            .iter()
            .map(|d| vec![0u8; d.bytes.max(1)])
            .collect();
        let mut ptrs: Vec<*mut u8> = Vec::new();
        ptrs.extend(in_bytes.iter_mut().map(|b| b.as_mut_ptr()));
        ptrs.extend(out_bytes.iter_mut().map(|b| b.as_mut_ptr()));
        ptrs.push(l.arena.as_mut_ptr());
        ptrs.push(l.weights.as_mut_ptr());
        let status = (l.entry)(ptrs.as_ptr(), threads);
        if status != 0 {
            return Err(l
                .failures
                .iter()
                .find(|f| f.status == status)
                .map(emit::Failure::diagnostic)
                .unwrap_or_else(|| {
                    Diagnostic::new(format!("internal error: unknown run status {status}"))
                }));
        }
        l.emitted_outputs
            .iter()
            .zip(out_bytes)
            .map(|(d, b)| {
                Tensor::from_bytes(d.dtype, d.shape.clone(), &b[..d.bytes]).map_err(Diagnostic::new)
            })
            .collect()
    }
}
