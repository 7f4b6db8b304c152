//! The MLIR half of the pipeline, through melior: parse the upstream-dialect
//! module the emitter wrote, verify it, run the lowering pipeline down to the
//! LLVM dialect, and translate to LLVM IR.
//!
//! The emitter writes MLIR text rather than building ops through melior's
//! builder API: the text is what `--emit mlir` shows and what snapshot tests
//! pin, and MLIR's own parser and verifier then check every line of it.

use melior::dialect::DialectRegistry;
use melior::ir::Module;
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::Context;
use std::cell::RefCell;
use std::rc::Rc;

/// The lowering from linalg/scf/vector/arith/math/memref on memrefs to the
/// LLVM dialect. Static shapes only (the backend specializes symbolic dims
/// before emitting), so memrefs cross function boundaries as bare pointers.
/// Parallel linalg dimensions become `scf.parallel`, then OpenMP work-sharing
/// loops. `convert-func-to-llvm` must run before `convert-openmp-to-llvm`,
/// which otherwise converts the functions itself, without the bare-pointer
/// convention.
/// `canonicalize` right after `convert-scf-to-openmp` inlines the
/// `memref.alloca_scope` it wraps every loop body in (when the body allocates
/// nothing); left in place, `convert-scf-to-cf` turns nested loops into
/// several blocks, which that single-block op rejects.
pub const LOWERING_PIPELINE: &str = "builtin.module(\
    func.func(convert-linalg-to-parallel-loops),\
    func.func(affine-loop-invariant-code-motion),\
    lower-affine,\
    convert-scf-to-openmp,\
    canonicalize,\
    convert-vector-to-scf,\
    lower-affine,\
    convert-scf-to-cf,\
    convert-vector-to-llvm{enable-x86vector=1},\
    convert-math-to-llvm,\
    convert-math-to-libm,\
    expand-strided-metadata,\
    lower-affine,\
    finalize-memref-to-llvm,\
    convert-arith-to-llvm,\
    convert-index-to-llvm,\
    convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},\
    convert-openmp-to-llvm,\
    convert-cf-to-llvm,\
    reconcile-unrealized-casts,\
    canonicalize,cse)";

/// One MLIR context with every upstream dialect, pass and LLVM translation
/// registered. Contexts are not shared between threads.
pub struct Mlir {
    context: Context,
    messages: Rc<RefCell<Vec<String>>>,
}

impl Default for Mlir {
    fn default() -> Self {
        Self::new()
    }
}

impl Mlir {
    pub fn new() -> Mlir {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        let context = Context::new();
        context.append_dialect_registry(&registry);
        context.load_all_available_dialects();
        register_all_llvm_translations(&context);
        register_all_passes();
        // Big models make big modules; MLIR's own threading would compete
        // with the compile of other models in the test suite.
        context.enable_multi_threading(false);
        let messages: Rc<RefCell<Vec<String>>> = Rc::default();
        let sink = messages.clone();
        context.attach_diagnostic_handler(move |d| {
            sink.borrow_mut().push(format!("{}: {}", d.location(), d));
            true
        });
        Mlir { context, messages }
    }

    fn take_messages(&self) -> String {
        let m = self.messages.borrow_mut().drain(..).collect::<Vec<_>>();
        m.join("\n")
    }

    /// Parses and verifies `text`.
    pub fn parse<'c>(&'c self, text: &str) -> Result<Module<'c>, String> {
        let module = Module::parse(&self.context, text).ok_or_else(|| {
            format!(
                "internal error: the emitted MLIR does not parse:\n{}",
                self.take_messages()
            )
        })?;
        if !module.as_operation().verify() {
            return Err(format!(
                "internal error: the emitted MLIR does not verify:\n{}",
                self.take_messages()
            ));
        }
        Ok(module)
    }

    /// Runs `pipeline` (textual pass pipeline) on `module`.
    pub fn run_pipeline(&self, module: &mut Module, pipeline: &str) -> Result<(), String> {
        let pm = PassManager::new(&self.context);
        parse_pass_pipeline(pm.as_operation_pass_manager(), pipeline)
            .map_err(|e| format!("internal error: bad MLIR pass pipeline: {e}"))?;
        pm.run(module).map_err(|e| {
            format!(
                "internal error: MLIR lowering failed ({e}):\n{}",
                self.take_messages()
            )
        })
    }

    /// Translates a module in the LLVM dialect to LLVM IR owned by `llvm`.
    pub fn translate<'l>(
        &self,
        module: &Module,
        llvm: &'l inkwell::context::Context,
    ) -> Result<inkwell::module::Module<'l>, String> {
        // SAFETY: melior and inkwell link the same LLVM, so the context
        // pointer types name the same C++ object; the returned module is
        // owned by `llvm` and wrapped exactly once.
        let raw = unsafe {
            mlir_sys::mlirTranslateModuleToLLVMIR(
                module.as_operation().to_raw(),
                llvm.raw() as mlir_sys::LLVMContextRef,
            )
        };
        if raw.is_null() {
            return Err(format!(
                "internal error: MLIR → LLVM IR translation failed:\n{}",
                self.take_messages()
            ));
        }
        Ok(unsafe { inkwell::module::Module::new(raw as llvm_sys::prelude::LLVMModuleRef) })
    }
}
