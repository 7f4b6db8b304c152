//! Matrix products: `matmul` (numpy.matmul: batched, broadcast, 1-D
//! operands), `gemm` (alpha, beta, transposes, broadcast C) and `linear`
//! (matmul + bias + activation + residual). Each is restated as one
//! [`gemm::Problem`]; the engine in `gemm/` does the rest, with the
//! epilogue fused into the microkernel's store.

#[path = "gemm/mod.rs"]
pub mod gemm;

use super::LowerFn;
use crate::emit::kernel::{Buf, KernelCtx};
use gemm::{broadcast_strides, onto_output, strides, Act, Addend, Epilogue, Operand, Problem};
use tessera_ir::AttrAccess;

/// A row-major `rows x cols` matrix operand of `buf` whose leading dims
/// (`buf.shape[..batch_rank]`) broadcast onto `out_batch`.
fn batched(
    buf: &Buf,
    batch_rank: usize,
    out_batch: &[usize],
    (rs, cs): (usize, usize),
    item: usize,
) -> Result<Operand, String> {
    let st = broadcast_strides(&buf.shape[..batch_rank], out_batch)?;
    Ok(Operand {
        buf: buf.clone(),
        rs,
        cs,
        batch: st.iter().map(|s| s * item).collect(),
    })
}

/// The matmul part of `matmul` and `linear`, with an empty epilogue.
fn matmul_problem(k: &KernelCtx) -> Result<Problem, String> {
    let (a, b, out) = (k.operand(0)?, k.operand(1)?, k.result(0));
    if a.rank() == 0 || b.rank() == 0 {
        return Err("matmul operands must have rank >= 1".into());
    }
    if a.dtype != b.dtype || a.dtype != out.dtype {
        return Err(format!(
            "matmul element types differ: {} x {} -> {}",
            a.dtype, b.dtype, out.dtype
        ));
    }
    let (m, ka) = if a.rank() == 1 {
        (1, a.shape[0])
    } else {
        (a.shape[a.rank() - 2], a.shape[a.rank() - 1])
    };
    let (kb, n) = if b.rank() == 1 {
        (b.shape[0], 1)
    } else {
        (b.shape[b.rank() - 2], b.shape[b.rank() - 1])
    };
    if ka != kb {
        return Err(format!(
            "matmul contraction dims differ: {:?} x {:?}",
            a.shape, b.shape
        ));
    }
    let nbatch = out.rank() - usize::from(a.rank() > 1) - usize::from(b.rank() > 1);
    let out_batch = out.shape[..nbatch].to_vec();
    let k_ = ka;
    let a_op = if a.rank() == 1 {
        batched(a, 0, &out_batch, (0, 1), 0)?
    } else {
        batched(a, a.rank() - 2, &out_batch, (k_, 1), m * k_)?
    };
    let b_op = if b.rank() == 1 {
        batched(b, 0, &out_batch, (1, 0), 0)?
    } else {
        batched(b, b.rank() - 2, &out_batch, (n, 1), k_ * n)?
    };
    let out_op = Operand {
        buf: out.clone(),
        rs: n,
        cs: 1,
        batch: strides(&out_batch).iter().map(|s| s * m * n).collect(),
    };
    Ok(Problem {
        dtype: out.dtype,
        batch: out_batch,
        m,
        n,
        k: k_,
        a: a_op,
        b: b_op,
        out: out_op,
        epi: Epilogue::none(),
    })
}

fn lower_matmul(k: &mut KernelCtx) -> Result<(), String> {
    let p = matmul_problem(k)?;
    gemm::emit(k, p)
}

/// `act(a @ b + bias) + residual`, bias and residual broadcast onto the product.
fn lower_linear(k: &mut KernelCtx) -> Result<(), String> {
    let mut p = matmul_problem(k)?;
    if !p.dtype.is_float() {
        return Err(format!(
            "tsr.linear on {} is not supported (float types only)",
            p.dtype
        ));
    }
    let (a, b, out) = (k.operand(0)?, k.operand(1)?, k.result(0));
    let (has_m, has_n) = (a.rank() > 1, b.rank() > 1);
    let nbatch = p.batch.len();
    let addend = |i: usize| -> Result<Option<Addend>, String> {
        k.opt_operand(i)
            .map(|buf| {
                Ok(Addend {
                    op: onto_output(buf, &out.shape, nbatch, has_m, has_n)?,
                    scale: None,
                })
            })
            .transpose()
    };
    p.epi.pre.extend(addend(2)?);
    p.epi.post = addend(3)?;
    p.epi.act = Act::from_name(&k.op.string("activation")?)?;
    gemm::emit(k, p)
}

/// `alpha * op(a) @ op(b) + beta * c`.
fn lower_gemm(k: &mut KernelCtx) -> Result<(), String> {
    let (a, b, out) = (
        k.operand(0)?.clone(),
        k.operand(1)?.clone(),
        k.result(0).clone(),
    );
    if a.rank() != 2 || b.rank() != 2 {
        return Err(format!(
            "gemm operands must be 2-D, got ranks {} and {}",
            a.rank(),
            b.rank()
        ));
    }
    if a.dtype != b.dtype || a.dtype != out.dtype {
        return Err(format!(
            "gemm element types differ: {} x {} -> {}",
            a.dtype, b.dtype, out.dtype
        ));
    }
    let (ta, tb) = (k.op.int("transA")? != 0, k.op.int("transB")? != 0);
    let (alpha, beta) = (k.op.float("alpha")?, k.op.float("beta")?);
    let (m, n) = (out.shape[0], out.shape[1]);
    let kk = if ta { a.shape[0] } else { a.shape[1] };
    let mat = |buf: &Buf, trans: bool| Operand {
        buf: buf.clone(),
        // Stored [rows, cols] of op(X), or its transpose.
        rs: if trans { 1 } else { buf.shape[1] },
        cs: if trans { buf.shape[1] } else { 1 },
        batch: Vec::new(),
    };
    let mut epi = Epilogue::none();
    epi.alpha = (alpha != 1.0).then_some(alpha);
    // A zero beta drops C (so inf/NaN in C do not leak through 0 * C).
    if let (Some(c), true) = (k.opt_operand(2), beta != 0.0) {
        if c.rank() > 2 {
            return Err(format!("gemm bias must have rank <= 2, got {}", c.rank()));
        }
        if c.dtype != out.dtype {
            return Err(format!(
                "gemm bias element type {} differs from {}",
                c.dtype, out.dtype
            ));
        }
        epi.pre.push(Addend {
            op: onto_output(c, &out.shape, 0, true, true)?,
            scale: (beta != 1.0).then_some(beta),
        });
    }
    let p = Problem {
        dtype: out.dtype,
        batch: Vec::new(),
        m,
        n,
        k: kk,
        a: mat(&a, ta),
        b: mat(&b, tb),
        out: Operand {
            buf: out.clone(),
            rs: n,
            cs: 1,
            batch: Vec::new(),
        },
        epi,
    };
    gemm::emit(k, p)
}

pub const LOWERINGS: &[(&str, LowerFn)] = &[
    ("matmul", lower_matmul),
    ("gemm", lower_gemm),
    ("linear", lower_linear),
];
