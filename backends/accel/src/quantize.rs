//! The quantization scheme of the accel target, written as Tessera IR so the
//! reference interpreter runs the very graph the accelerator implements.
//!
//! Every float matmul with a constant weight (`MatMul`, `Gemm`, and
//! `com.microsoft.MatMulNBits`, whose block-dequantized weights are
//! re-quantized) becomes:
//!
//! ```text
//! amax = max(ReduceMax(Abs(x), axes=[-1]), 2^-100)     per row (token)
//! xs   = amax * (1/127)                                activation scale
//! xq   = Cast<i8>(Clip(Round(x * Reciprocal(xs)), -127, 127))
//! acc  = MatMulInteger(xq, Wq)                         i32, exact
//! y    = Cast<f32>(acc) * xs * ws                      ws: per output channel
//! ```
//!
//! `Wq = clamp(round_half_even(W / ws), -127, 127)` with
//! `ws[n] = max_k |W[k, n]| / 127`. Every float step is a single IEEE operation
//! the vector unit performs with the same rounding (x·(1/s), not x/s), so the
//! accelerator's result is bit-identical to the interpreter's on the same input.
//!
//! Matmuls whose second operand is computed at run time, and fused attention,
//! take the variant of [`crate::attention`] (per-matrix scale for that operand).

use crate::OpAttrs;
use std::sync::Arc;
use tessera_ir::ops::AttrAccess;
use tessera_ir::{
    Attr, Attrs, Builder, DType, Diagnostic, Graph, Loc, Op, OpKind, Tensor, ValueId,
};

/// What the rewrite did, for the compile report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuantStats {
    /// Node names of the matmuls that were quantized.
    pub quantized: Vec<String>,
    /// Node names of the activation x activation matmuls and attention ops
    /// rewritten into the runtime-operand scheme.
    pub runtime: Vec<String>,
    /// Node names of the `DynamicQuantizeLinear` ops whose u8 activations
    /// were re-centred for the array (`dynamic_quant.rs`).
    pub dynamic: Vec<String>,
}

/// Per-output-channel symmetric int8 quantization of a `[K, N]` weight.
/// Returns (`Wq` as `[K, N]` i8, `ws` as `[N]` f32).
pub fn quantize_weight(w: &[f32], k: usize, n: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; n];
    for (j, s) in scales.iter_mut().enumerate() {
        let amax = (0..k).map(|i| w[i * n + j].abs()).fold(0f32, f32::max);
        // An all-zero column quantizes to zeros under any scale.
        *s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
    }
    let q = (0..k * n)
        .map(|i| {
            let v = (w[i] / scales[i % n]).round_ties_even();
            v.clamp(-127.0, 127.0) as i8
        })
        .collect();
    (q, scales)
}

pub(crate) struct Rewriter<'g> {
    pub(crate) b: Builder<'g>,
    pub(crate) node: String,
}

impl Rewriter<'_> {
    fn loc(&self, step: &str) -> Option<Loc> {
        Some(Loc {
            name: format!("{}/accel_quant/{step}", self.node),
            op_type: step.to_string(),
        })
    }

    pub(crate) fn op(
        &mut self,
        step: &str,
        kind: OpKind,
        operands: Vec<ValueId>,
        attrs: Attrs,
    ) -> Result<ValueId, Diagnostic> {
        let loc = self.loc(step);
        let r = self
            .b
            .op(
                kind,
                operands.into_iter().map(Some).collect(),
                attrs,
                1,
                loc,
            )
            .map_err(|e| Diagnostic::new(format!("{}: quantizing: {e}", self.node)))?;
        Ok(r[0])
    }

    pub(crate) fn constant(&mut self, step: &str, t: Tensor) -> ValueId {
        let name = format!("{}/accel_quant/{step}", self.node);
        let loc = self.loc(step);
        self.b.constant(&name, Arc::new(t), loc)
    }

    /// Emits the scheme for `x @ w` (`w` float `[K, N]`) and returns `y`.
    fn quantized_matmul(
        &mut self,
        x: ValueId,
        w: &[f32],
        k: usize,
        n: usize,
    ) -> Result<ValueId, Diagnostic> {
        let (wq, ws) = quantize_weight(w, k, n);
        let (xq, xs) = self.quantize_rows("", x)?;
        let wq_t = Tensor::new(DType::I8, vec![k, n], tessera_ir::Data::I8(wq))
            .map_err(Diagnostic::new)?;
        let wq = self.constant("wq", wq_t);
        let acc = self.op(
            "matmul_integer",
            OpKind::MatMulInteger,
            vec![xq, wq],
            Attrs::new(),
        )?;
        let accf = self.cast("cast_f32", acc, DType::F32)?;
        let y = self.op("dequant_x", OpKind::Mul, vec![accf, xs], Attrs::new())?;
        let ws = self.constant("ws", Tensor::f32(vec![n], ws));
        self.op("dequant_w", OpKind::Mul, vec![y, ws], Attrs::new())
    }

    pub(crate) fn cast(
        &mut self,
        step: &str,
        x: ValueId,
        to: DType,
    ) -> Result<ValueId, Diagnostic> {
        let mut a = Attrs::new();
        a.insert("to".into(), Attr::Type(to));
        self.op(step, OpKind::Cast, vec![x], a)
    }

    /// `ReduceMax(x, axes=[-1], keepdims=1)`.
    pub(crate) fn row_max(&mut self, step: &str, x: ValueId) -> Result<ValueId, Diagnostic> {
        let axes = self.constant(&format!("{step}_axes"), Tensor::i64(vec![1], vec![-1]));
        let mut keep = Attrs::new();
        keep.insert("keepdims".into(), Attr::Int(1));
        self.op(step, OpKind::ReduceMax, vec![x, axes], keep)
    }

    /// `amax -> scale = max(amax, 2^-100) * (1/127)` and its reciprocal
    /// (what the quantize step multiplies by).
    pub(crate) fn scale_of(
        &mut self,
        tag: &str,
        amax: ValueId,
    ) -> Result<(ValueId, ValueId), Diagnostic> {
        let floor = self.constant(
            &format!("{tag}floor"),
            Tensor::f32(vec![], vec![2f32.powi(-100)]),
        );
        let amax = self.op(
            &format!("{tag}max"),
            OpKind::Max,
            vec![amax, floor],
            Attrs::new(),
        )?;
        let inv127 = self.constant(
            &format!("{tag}inv127"),
            Tensor::f32(vec![], vec![1.0 / 127.0]),
        );
        let xs = self.op(
            &format!("{tag}scale"),
            OpKind::Mul,
            vec![amax, inv127],
            Attrs::new(),
        )?;
        let inv = self.op(
            &format!("{tag}inv_scale"),
            OpKind::Reciprocal,
            vec![xs],
            Attrs::new(),
        )?;
        Ok((xs, inv))
    }

    /// `Cast<i8>(Clip(Round(x * inv), -127, 127))`.
    pub(crate) fn int8_of(
        &mut self,
        tag: &str,
        x: ValueId,
        inv: ValueId,
    ) -> Result<ValueId, Diagnostic> {
        let t = self.op(
            &format!("{tag}scaled"),
            OpKind::Mul,
            vec![x, inv],
            Attrs::new(),
        )?;
        let r = self.op(&format!("{tag}round"), OpKind::Round, vec![t], Attrs::new())?;
        let lo = self.constant(&format!("{tag}lo"), Tensor::f32(vec![], vec![-127.0]));
        let hi = self.constant(&format!("{tag}hi"), Tensor::f32(vec![], vec![127.0]));
        let c = self.op(
            &format!("{tag}clip"),
            OpKind::Clip,
            vec![r, lo, hi],
            Attrs::new(),
        )?;
        self.cast(&format!("{tag}cast_i8"), c, DType::I8)
    }

    /// Symmetric int8 per row (last axis) with a runtime scale:
    /// returns (`xq` i8, `xs` `[..., rows, 1]`).
    pub(crate) fn quantize_rows(
        &mut self,
        tag: &str,
        x: ValueId,
    ) -> Result<(ValueId, ValueId), Diagnostic> {
        let ax = self.op(&format!("{tag}abs"), OpKind::Abs, vec![x], Attrs::new())?;
        let amax = self.row_max(&format!("{tag}reduce_max"), ax)?;
        let (xs, inv) = self.scale_of(tag, amax)?;
        Ok((self.int8_of(tag, x, inv)?, xs))
    }
}

impl Rewriter<'_> {
    /// `act(y + bias) + residual` of a fused `tsr.linear`, as separate ops.
    pub(crate) fn linear_epilogue(
        &mut self,
        op: &Op,
        mut y: ValueId,
    ) -> Result<ValueId, Diagnostic> {
        if let Some(b) = op.operand(2) {
            y = self.op("bias", OpKind::Add, vec![y, b], Attrs::new())?;
        }
        let act = OpAttrs(op).string("activation").map_err(Diagnostic::new)?;
        let mut gelu = Attrs::new();
        y = match act.as_str() {
            "none" => y,
            "relu" => self.op("relu", OpKind::Relu, vec![y], Attrs::new())?,
            "gelu" => self.op("gelu", OpKind::Gelu, vec![y], gelu)?,
            "gelu_tanh" => {
                gelu.insert("approximate".into(), Attr::Str("tanh".into()));
                self.op("gelu", OpKind::Gelu, vec![y], gelu)?
            }
            "sigmoid" => self.op("sigmoid", OpKind::Sigmoid, vec![y], Attrs::new())?,
            "tanh" => self.op("tanh", OpKind::Tanh, vec![y], Attrs::new())?,
            "silu" => {
                let s = self.op("sigmoid", OpKind::Sigmoid, vec![y], Attrs::new())?;
                self.op("silu", OpKind::Mul, vec![y, s], Attrs::new())?
            }
            other => {
                return Err(
                    Diagnostic::new(format!("linear activation '{other}'")).at(op.loc.clone())
                )
            }
        };
        if let Some(r) = op.operand(3) {
            y = self.op("residual", OpKind::Add, vec![y, r], Attrs::new())?;
        }
        Ok(y)
    }
}

/// `W [K, N]` when `v` is the transpose of a constant `[N, K]` matrix (tied
/// embeddings: the LM head multiplies by the embedding table transposed), so
/// it gets the constant-weight scheme rather than a runtime transpose.
fn transposed_constant(
    probe: &Graph,
    producers: &[Option<usize>],
    v: ValueId,
) -> Option<(Vec<f32>, usize, usize)> {
    let op = &probe.ops[producers.get(v.0 as usize).copied().flatten()?];
    let t = probe.constant_value(op.operand(0)?, producers)?;
    let perm = OpAttrs(op).ints("perm").unwrap_or_default();
    if op.kind != OpKind::Transpose
        || t.rank() != 2
        || t.dtype != DType::F32
        || !(perm.is_empty() || perm == [1, 0])
    {
        return None;
    }
    let (n, k) = (t.shape[0], t.shape[1]);
    let x = t.to_f32_vec();
    Some(((0..k * n).map(|i| x[(i % n) * k + i / n]).collect(), k, n))
}

/// A float weight `[K, N]` the op multiplies by, when it is a constant.
fn constant_weight(
    g: &Graph,
    probe: &Graph,
    op: &Op,
    producers: &[Option<usize>],
) -> Result<Option<(Vec<f32>, usize, usize)>, String> {
    // `g` is being rebuilt: types come from it, constants from the original
    // graph (values the rewrite added are never constants).
    let constant = |v: tessera_ir::ValueId| {
        if (v.0 as usize) < producers.len() {
            probe.constant_value(v, producers)
        } else {
            None
        }
    };
    let f32_operand = |i: usize| op.operand(i).is_some_and(|v| g.ty(v).dtype() == DType::F32);
    let konst = |i: usize| op.operand(i).and_then(constant);
    match op.kind {
        OpKind::MatMul | OpKind::Linear if f32_operand(0) => {
            let Some(w) = konst(1) else {
                return Ok(op
                    .operand(1)
                    .and_then(|v| transposed_constant(probe, producers, v)));
            };
            let a_rank = op.operand(0).map_or(0, |v| g.ty(v).rank());
            if w.rank() != 2 || a_rank < 2 {
                return Ok(None);
            }
            Ok(Some((w.to_f32_vec(), w.shape[0], w.shape[1])))
        }
        OpKind::Gemm if f32_operand(0) => {
            let a = OpAttrs(op);
            let (alpha, trans_a, trans_b) = (a.float("alpha")?, a.int("transA")?, a.int("transB")?);
            let Some(w) = konst(1) else { return Ok(None) };
            if alpha != 1.0 || trans_a != 0 || w.rank() != 2 {
                return Ok(None);
            }
            let (r, c) = (w.shape[0], w.shape[1]);
            let v = w.to_f32_vec();
            if trans_b == 0 {
                Ok(Some((v, r, c)))
            } else {
                let t = (0..r * c).map(|i| v[(i % r) * c + i / r]).collect();
                Ok(Some((t, c, r)))
            }
        }
        OpKind::MsMatMulNBits if f32_operand(0) => {
            let a = OpAttrs(op);
            let (k, n) = (a.int("K")? as usize, a.int("N")? as usize);
            // Operands after A must all be constants to dequantize at compile time.
            let mut consts = Vec::new();
            for i in 1..op.operands.len() {
                match op.operand(i) {
                    Some(v) => match constant(v) {
                        Some(c) => consts.push(Some(c.clone())),
                        None => return Ok(None),
                    },
                    None => consts.push(None),
                }
            }
            if op.operand(5).is_some() {
                return Ok(None); // bias: keep the op whole (host)
            }
            // The op's own semantics on an identity input give W exactly:
            // every output element is one product with 1.0.
            let mut eye = vec![0f32; k * k];
            for i in 0..k {
                eye[i * k + i] = 1.0;
            }
            let eye = Tensor::f32(vec![k, k], eye);
            let mut inputs: Vec<Option<&Tensor>> = vec![Some(&eye)];
            inputs.extend(consts.iter().map(|c| c.as_deref()));
            let def = op.kind.def();
            let eval = def.eval.ok_or("MatMulNBits has no reference semantics")?;
            let out = eval(&tessera_ir::ops::EvalCtx {
                def,
                attrs: &op.attrs,
                inputs,
                num_results: 1,
            })?;
            Ok(Some((out[0].to_f32_vec(), k, n)))
        }
        _ => Ok(None),
    }
}

/// Points uses of `op`'s (single) result at `y`, which must have its type.
fn replace(
    g: &Graph,
    subst: &mut Vec<Option<ValueId>>,
    op: &Op,
    y: ValueId,
) -> Result<(), Diagnostic> {
    let old = op.results[0];
    if g.ty(y) != g.ty(old) {
        return Err(Diagnostic::new(format!(
            "quantized result has type {}, the op had {}",
            g.ty(y),
            g.ty(old)
        ))
        .at(op.loc.clone()));
    }
    if subst.len() < g.values.len() {
        subst.resize(g.values.len(), None);
    }
    subst[old.0 as usize] = Some(y);
    Ok(())
}

/// Rewrites every float matmul into the int8 scheme: constant weights per
/// output channel, runtime ("activation x activation") operands and fused
/// attention as in [`crate::attention`].
pub fn quantize_graph(g: &mut Graph) -> Result<QuantStats, Diagnostic> {
    let mut stats = QuantStats::default();
    let old_ops = std::mem::take(&mut g.ops);
    // The producers of the original graph decide which weights are constant.
    let mut probe = g.clone();
    probe.ops = old_ops.clone();
    let producers = probe.producers();
    let mut subst: Vec<Option<ValueId>> = vec![None; g.values.len()];
    let mut masks = crate::attention::MaskBiases::default();
    let resolve = |subst: &[Option<ValueId>], v: ValueId| {
        subst.get(v.0 as usize).copied().flatten().unwrap_or(v)
    };
    for mut op in old_ops {
        for o in op.operands.iter_mut().flatten() {
            *o = resolve(&subst, *o);
        }
        let node = op.loc.as_ref().map_or_else(
            || format!("tsr.{}", op.kind.def().mnemonic),
            |l| l.name.clone(),
        );
        let weight = constant_weight(g, &probe, &op, &producers)
            .map_err(|e| Diagnostic::new(e).at(op.loc.clone()))?;
        let Some((w, k, n)) = weight else {
            // Activation x activation products and fused attention.
            match crate::attention::rewrite(g, &op, &node, &mut masks)? {
                Some(y) => {
                    replace(g, &mut subst, &op, y)?;
                    stats.runtime.push(node);
                }
                None => g.ops.push(op),
            }
            continue;
        };
        let x = op.operands[0].ok_or_else(|| Diagnostic::new("matmul without A"))?;
        let mut rw = Rewriter {
            b: Builder::new(g),
            node: node.clone(),
        };
        let mut y = rw.quantized_matmul(x, &w, k, n)?;
        if op.kind == OpKind::Gemm {
            if let Some(c) = op.operand(2) {
                let beta = OpAttrs(&op).float("beta").map_err(Diagnostic::new)?;
                let c = if beta == 1.0 {
                    c
                } else {
                    let bt = rw.constant("beta", Tensor::f32(vec![], vec![beta as f32]));
                    rw.op("beta_c", OpKind::Mul, vec![c, bt], Attrs::new())?
                };
                y = rw.op("bias", OpKind::Add, vec![y, c], Attrs::new())?;
            }
        }
        if op.kind == OpKind::Linear {
            y = rw.linear_epilogue(&op, y)?;
        }
        replace(g, &mut subst, &op, y)?;
        stats.quantized.push(node);
    }
    for (_, v) in g.outputs.iter_mut() {
        *v = resolve(&subst, *v);
    }
    // Keep the graph output names on the values they now point at.
    let names: Vec<(ValueId, String)> = g.outputs.iter().map(|(n, v)| (*v, n.clone())).collect();
    for (v, n) in names {
        if g.values[v.0 as usize].name.is_none() {
            g.values[v.0 as usize].name = Some(n);
        }
    }
    g.remove_dead();
    Ok(stats)
}
