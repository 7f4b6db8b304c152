//! Plain loops for the element types the packed path does not cover (f64,
//! f16, bf16, integers): one parallel iteration per output row, a
//! sequential dot product per element in the compute type (f32 for the
//! half types, rounded once at the store; integers wrap in their own width,
//! which equals the reference's wrapping i64 arithmetic truncated).

use super::epilogue::{self, Arith, Params};
use super::text::{fconst, flat, Emit};
use super::{Operand, Problem};
use crate::emit::kernel::KernelCtx;
use tessera_ir::DType;

/// The type a dot product accumulates in, and how it computes.
fn compute_type(d: DType, elem: &str) -> Result<(&str, Arith), String> {
    Ok(match d {
        DType::F16 | DType::BF16 => ("f32", Arith::Float),
        DType::F32 | DType::F64 => (elem, Arith::Float),
        d if d.is_int() => (elem, Arith::Int),
        d => {
            return Err(format!(
                "matrix products on {d} are not supported by the cpu target"
            ))
        }
    })
}

/// A scalar constant of the compute type.
fn constant(
    e: &mut dyn Emit,
    ct: &str,
    arith: Arith,
    v: f64,
    what: &str,
) -> Result<String, String> {
    match arith {
        Arith::Float => Ok(fconst(e, ct, v)),
        Arith::Int => {
            if v.fract() != 0.0 || v.abs() >= 9.2e18 {
                return Err(format!(
                    "{what} = {v} is not an integer, which integer products need"
                ));
            }
            Ok(e.op(format!("arith.constant {} : {ct}", v as i64)))
        }
    }
}

pub fn emit(k: &mut KernelCtx, p: &Problem) -> Result<(), String> {
    let elem = p.out.buf.elem();
    let (ct, arith) = compute_type(p.dtype, elem)?;
    let widen = ct != elem;
    if p.dtype == DType::F64 {
        for (sym, decl) in epilogue::libm_decls(p.epi.act) {
            k.helper(sym, || decl.to_string());
        }
    }
    let view = |k: &mut KernelCtx, o: &Operand| {
        let len = o.buf.len().max(1) as u64;
        flat(k, &o.buf, len)
    };
    let a = view(k, &p.a);
    let b = view(k, &p.b);
    let out = view(k, &p.out);
    let addends: Vec<(String, &Operand)> = p.epi.operands().map(|o| (view(k, o), o)).collect();
    let params = Params {
        alpha: match p.epi.alpha {
            Some(v) => Some(constant(k, ct, arith, v, "alpha")?),
            None => None,
        },
        scales: p
            .epi
            .addends()
            .map(|a| {
                a.scale
                    .map(|s| constant(k, ct, arith, s, "beta"))
                    .transpose()
            })
            .collect::<Result<_, _>>()?,
    };
    let zero = match arith {
        Arith::Float => fconst(k, ct, 0.0),
        Arith::Int => k.op(format!("arith.constant 0 : {ct}")),
    };
    let (add, mul) = match arith {
        Arith::Float => ("arith.addf", "arith.mulf"),
        Arith::Int => ("arith.addi", "arith.muli"),
    };
    let load = |e: &mut dyn Emit, buf: &str, at: &str, len: usize| -> String {
        let x = e.op(format!("memref.load {buf}[{at}] : memref<{len}x{elem}>"));
        if widen {
            e.op(format!("arith.extf {x} : {elem} to {ct}"))
        } else {
            x
        }
    };
    let len = |o: &Operand| o.buf.len().max(1);

    let ivs: Vec<String> = (0..=p.batch.len()).map(|_| k.fresh("i")).collect();
    let c0 = k.idx(0);
    let c1 = k.idx(1);
    let mut uppers: Vec<String> = p.batch.iter().map(|&n| k.idx(n as i64)).collect();
    uppers.push(k.idx(p.m as i64));
    k.line(format!(
        "scf.parallel ({}) = ({}) to ({}) step ({}) {{",
        ivs.join(", "),
        vec![c0.as_str(); ivs.len()].join(", "),
        uppers.join(", "),
        vec![c1.as_str(); ivs.len()].join(", ")
    ));
    let (bivs, i) = (&ivs[..p.batch.len()], &ivs[p.batch.len()]);
    let base = |k: &mut KernelCtx, o: &Operand| {
        let b = k.dot(bivs, &o.batch);
        k.add_mul_c(&b, i, o.rs)
    };
    let a_row = base(k, &p.a);
    let b_base = k.dot(bivs, &p.b.batch);
    let out_row = base(k, &p.out);
    let add_rows: Vec<String> = addends.iter().map(|(_, o)| base(k, o)).collect();
    let j = k.fresh("j");
    let n = k.idx(p.n as i64);
    k.line(format!("scf.for {j} = {c0} to {n} step {c1} {{"));
    let pk = k.fresh("p");
    let s = k.fresh("s");
    let kk = k.idx(p.k as i64);
    let b_col = k.add_mul_c(&b_base, &j, p.b.cs);
    let acc = k.fresh("acc");
    k.line(format!(
        "{acc} = scf.for {pk} = {c0} to {kk} step {c1} iter_args({s} = {zero}) -> ({ct}) {{"
    ));
    let at = k.add_mul_c(&a_row, &pk, p.a.cs);
    let x = load(k, &a, &at, len(&p.a));
    let at = k.add_mul_c(&b_col, &pk, p.b.rs);
    let y = load(k, &b, &at, len(&p.b));
    let xy = k.op(format!("{mul} {x}, {y} : {ct}"));
    let s2 = k.op(format!("{add} {s}, {xy} : {ct}"));
    k.line(format!("scf.yield {s2} : {ct}"));
    k.line("}");
    let shape = p.epi.shape();
    let mut load_addend = |e: &mut dyn Emit, idx: usize| -> String {
        let (buf, o) = &addends[idx];
        let at = e.add_mul_c(&add_rows[idx], &j, o.cs);
        load(e, buf, &at, len(o))
    };
    let r = epilogue::apply(k, &shape, ct, arith, acc, &params, &mut load_addend)?;
    let r = if widen {
        k.op(format!("arith.truncf {r} : {ct} to {elem}"))
    } else {
        r
    };
    let at = k.add_mul_c(&out_row, &j, p.out.cs);
    k.line(format!(
        "memref.store {r}, {out}[{at}] : memref<{}x{elem}>",
        len(&p.out)
    ));
    k.line("}");
    k.line("}");
    Ok(())
}
