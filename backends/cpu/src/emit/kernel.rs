//! What a lowering sees: one op of a specialized graph as a kernel function
//! over memrefs, and helpers to write its body in upstream MLIR.
//!
//! Every op becomes `func.func private @kN_<mnemonic>(operands..., results...)`
//! whose arguments are static-shape memrefs with the identity layout; the
//! entry function calls the kernels on views of the caller's buffers, the
//! arena and the weights. Lowerings only write the body.

use std::collections::BTreeMap;
use std::fmt::Write;
use tessera_ir::tensor::SharedTensor;
use tessera_ir::{DType, Graph, Op, Tensor, ValueId};

/// The MLIR element type that stores `d` (signless integers: signedness is
/// in the ops a lowering picks, not the type).
pub fn elem(d: DType) -> Result<&'static str, String> {
    Ok(match d {
        DType::F64 => "f64",
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::I64 | DType::U64 => "i64",
        DType::I32 | DType::U32 => "i32",
        DType::I16 | DType::U16 => "i16",
        DType::I8 | DType::U8 => "i8",
        DType::Bool => "i1",
        other => {
            return Err(format!(
                "element type {other} is not supported by the cpu target"
            ))
        }
    })
}

/// `memref<2x3xf32>`, `memref<f32>` for rank 0.
pub fn memref_type(shape: &[usize], d: DType) -> Result<String, String> {
    let mut s = String::from("memref<");
    for n in shape {
        write!(s, "{n}x").unwrap();
    }
    s.push_str(elem(d)?);
    s.push('>');
    Ok(s)
}

/// A kernel argument: an operand or result buffer.
#[derive(Clone, Debug)]
pub struct Buf {
    /// SSA name in the kernel, `%a0`.
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Its MLIR type, `memref<2x3xf32>`.
    pub ty: String,
    /// The graph value, when it is one (derived constants have none).
    pub value: Option<ValueId>,
    /// Its contents, when they are known at compile time.
    pub constant: Option<SharedTensor>,
}

impl Buf {
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn elem(&self) -> &'static str {
        elem(self.dtype).expect("checked when the buffer was made")
    }
}

/// A constant a lowering derives at compile time (e.g. weights packed into
/// the GEMM's panel layout); it goes into the weights blob.
#[derive(Clone, Debug)]
pub struct Derived {
    pub buf: Buf,
    pub tensor: Tensor,
}

/// Module-level functions shared by kernels (e.g. the GEMM microkernel),
/// emitted once per module whatever the number of callers.
#[derive(Default)]
pub struct Helpers {
    pub funcs: BTreeMap<String, String>,
}

pub struct KernelCtx<'a> {
    pub graph: &'a Graph,
    pub op: &'a Op,
    /// The kernel's symbol, `@k12_matmul`.
    pub symbol: String,
    pub operands: Vec<Option<Buf>>,
    pub results: Vec<Buf>,
    pub derived: Vec<Derived>,
    /// Threads the caller asked for (>= 1); lowerings may use it to size
    /// their work split, never to change results.
    pub threads: usize,
    body: String,
    next: usize,
    index_consts: BTreeMap<i64, String>,
    pub helpers: &'a mut Helpers,
    /// What [`KernelCtx::fail_if`] reports, once a lowering called it.
    failure: Option<String>,
}

/// The kernel parameter through which run-time input errors are reported
/// (see [`KernelCtx::fail_if`]).
pub const STATUS: &str = "%status";
pub const STATUS_TY: &str = "memref<1xi32>";

impl<'a> KernelCtx<'a> {
    pub fn new(
        graph: &'a Graph,
        op: &'a Op,
        symbol: String,
        consts: &dyn Fn(ValueId) -> Option<SharedTensor>,
        threads: usize,
        helpers: &'a mut Helpers,
    ) -> Result<KernelCtx<'a>, String> {
        let buf = |name: String, v: ValueId| -> Result<Buf, String> {
            let ty = graph.ty(v);
            let shape: Vec<usize> = ty
                .static_shape()
                .ok_or_else(|| format!("value of type {ty} has no static shape"))?
                .into_iter()
                .map(|n| n as usize)
                .collect();
            Ok(Buf {
                ty: memref_type(&shape, ty.dtype())?,
                name,
                shape,
                dtype: ty.dtype(),
                value: Some(v),
                constant: consts(v),
            })
        };
        let mut operands = Vec::new();
        for (i, v) in op.operands.iter().enumerate() {
            operands.push(match v {
                Some(v) => Some(buf(format!("%in{i}"), *v)?),
                None => None,
            });
        }
        let mut results = Vec::new();
        for (i, v) in op.results.iter().enumerate() {
            results.push(buf(format!("%out{i}"), *v)?);
        }
        Ok(KernelCtx {
            graph,
            op,
            symbol,
            operands,
            results,
            derived: Vec::new(),
            threads,
            body: String::new(),
            next: 0,
            index_consts: BTreeMap::new(),
            helpers,
            failure: None,
        })
    }

    pub fn operand(&self, i: usize) -> Result<&Buf, String> {
        self.operands
            .get(i)
            .and_then(|b| b.as_ref())
            .ok_or_else(|| format!("operand #{i} is missing"))
    }

    pub fn opt_operand(&self, i: usize) -> Option<&Buf> {
        self.operands.get(i).and_then(|b| b.as_ref())
    }

    pub fn result(&self, i: usize) -> &Buf {
        &self.results[i]
    }

    /// A fresh SSA name, `%{hint}{n}`.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("%{hint}{}", self.next)
    }

    /// Appends one line to the body.
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.body.push_str("    ");
        self.body.push_str(s.as_ref());
        self.body.push('\n');
    }

    /// Appends lines verbatim (already indented).
    pub fn text(&mut self, s: &str) {
        self.body.push_str(s);
        if !s.ends_with('\n') {
            self.body.push('\n');
        }
    }

    /// An `index` constant, defined once per kernel at the top of the body.
    pub fn idx(&mut self, v: i64) -> String {
        if let Some(n) = self.index_consts.get(&v) {
            return n.clone();
        }
        let name = if v >= 0 {
            format!("%c{v}")
        } else {
            format!("%cm{}", -v)
        };
        self.index_consts.insert(v, name.clone());
        name
    }

    /// Adds a compile-time constant argument (placed in the weights blob).
    pub fn derived_constant(&mut self, tensor: Tensor) -> Result<Buf, String> {
        let name = format!("%d{}", self.derived.len());
        let buf = Buf {
            ty: memref_type(&tensor.shape, tensor.dtype)?,
            name,
            shape: tensor.shape.clone(),
            dtype: tensor.dtype,
            value: None,
            constant: None,
        };
        self.derived.push(Derived {
            buf: buf.clone(),
            tensor,
        });
        Ok(buf)
    }

    /// Registers a module-level helper function once (by symbol).
    pub fn helper(&mut self, symbol: &str, make: impl FnOnce() -> String) {
        if !self.helpers.funcs.contains_key(symbol) {
            let text = make();
            self.helpers.funcs.insert(symbol.to_string(), text);
        }
    }

    /// Whether the body reads `name` (an SSA name followed by a non-name
    /// character, so `%in1` does not match `%in10`).
    fn mentions(&self, name: &str) -> bool {
        self.body.match_indices(name).any(|(i, _)| {
            !self.body[i + name.len()..]
                .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
    }

    /// Operands the body reads. A lowering that replaced a constant operand
    /// by a derived one (packed weights) never reads the original, which then
    /// is neither passed nor stored.
    ///
    /// Zero-element buffers are not passed either (the bare-pointer calling
    /// convention has no representation for them); the kernel declares them
    /// locally, and no code can touch their (absent) elements.
    pub fn used_operands(&self) -> Vec<&Buf> {
        self.operands
            .iter()
            .flatten()
            .filter(|b| !b.is_empty() && self.mentions(&b.name))
            .collect()
    }

    /// Results the caller passes (all but zero-element ones).
    pub fn passed_results(&self) -> Vec<&Buf> {
        self.results.iter().filter(|b| !b.is_empty()).collect()
    }

    /// The kernel's arguments in call order: used operands, derived
    /// constants, results.
    pub fn args(&self) -> Vec<&Buf> {
        let mut v = self.used_operands();
        v.extend(self.derived.iter().map(|d| &d.buf));
        v.extend(self.passed_results());
        v
    }

    /// The op's position in the graph: the code a failing kernel records.
    fn op_index(&self) -> usize {
        self.graph
            .ops
            .iter()
            .position(|o| std::ptr::eq(o, self.op))
            .expect("the kernel's op is in its graph")
    }

    /// Bad run-time input (e.g. an index out of range) is an error, not a
    /// wrong answer: where the i1 `cond` holds, the kernel records its op in
    /// the run's status word (the smallest op index wins: kernels run in
    /// graph order, so that is the first failure). The kernel must still
    /// keep every access in bounds (it runs on); the entry returns the status
    /// and the caller reports `what` with the op's node. Returns the text,
    /// for callers that emit into a region of their own.
    pub fn fail_if_text(&mut self, cond: &str, what: &str) -> String {
        self.failure.get_or_insert_with(|| what.to_string());
        let code = self.op_index();
        let c0 = self.idx(0);
        let (v, r) = (self.fresh("code"), self.fresh("prev"));
        format!(
            "scf.if {cond} {{\n  {v} = arith.constant {code} : i32\n  {r} = memref.atomic_rmw mins {v}, {STATUS}[{c0}] : (i32, {STATUS_TY}) -> i32\n}}"
        )
    }

    /// [`KernelCtx::fail_if_text`] emitted into the kernel body.
    pub fn fail_if(&mut self, cond: &str, what: &str) {
        let t = self.fail_if_text(cond, what);
        self.line(t);
    }

    /// What the kernel reports when its status check fails, if it has one.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The finished `func.func`.
    pub fn finish(self) -> String {
        let mut args: Vec<String> = self
            .args()
            .iter()
            .map(|b| format!("{}: {}", b.name, b.ty))
            .collect();
        if self.failure.is_some() {
            args.push(format!("{STATUS}: {STATUS_TY}"));
        }
        let mut s = format!(
            "  func.func private @{}({}) {{\n",
            self.symbol.trim_start_matches('@'),
            args.join(", ")
        );
        for (v, name) in &self.index_consts {
            writeln!(s, "    {name} = arith.constant {v} : index").unwrap();
        }
        for b in self.operands.iter().flatten().chain(&self.results) {
            if b.is_empty() && self.mentions(&b.name) {
                writeln!(s, "    {} = memref.alloca() : {}", b.name, b.ty).unwrap();
            }
        }
        s.push_str(&self.body);
        s.push_str("    return\n  }\n");
        s
    }
}
