//! Writing MLIR lines: one [`Emit`] interface over a kernel body and a
//! module-level helper's body, and the index arithmetic both need.

use crate::emit::kernel::{Buf, KernelCtx};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Elements in the flat view of a buffer passed to the shared helpers: their
/// signatures need one static type whatever the caller's buffer size (the
/// bare-pointer calling convention takes static shapes only); every access
/// stays within the caller's real buffer.
pub const FLAT: u64 = 1 << 40;

pub trait Emit {
    /// Emits `%r = <rhs>` and returns `%r`.
    fn op(&mut self, rhs: String) -> String;
    /// Emits a line as is.
    fn raw(&mut self, line: String);
    /// Emits `%r:<n> = <rhs>` and returns `%r`.
    fn ops(&mut self, n: usize, rhs: String) -> String;
    /// An `index` constant usable anywhere in the function.
    fn idx(&mut self, v: i64) -> String;
    /// A fresh SSA name for a block argument or induction variable.
    fn name(&mut self, hint: &str) -> String;

    fn add(&mut self, a: &str, b: &str) -> String {
        self.op(format!("arith.addi {a}, {b} : index"))
    }
    fn sub(&mut self, a: &str, b: &str) -> String {
        self.op(format!("arith.subi {a}, {b} : index"))
    }
    fn mul(&mut self, a: &str, b: &str) -> String {
        self.op(format!("arith.muli {a}, {b} : index"))
    }
    fn min(&mut self, a: &str, b: &str) -> String {
        self.op(format!("arith.minsi {a}, {b} : index"))
    }
    /// `a * c`, folded when `c` is 0 or 1.
    fn mul_c(&mut self, a: &str, c: usize) -> String {
        match c {
            0 => self.idx(0),
            1 => a.to_string(),
            _ => {
                let c = self.idx(c as i64);
                self.mul(a, &c)
            }
        }
    }
    /// `a + b * c`, folded when `c` is 0 or 1.
    fn add_mul_c(&mut self, a: &str, b: &str, c: usize) -> String {
        if c == 0 {
            return a.to_string();
        }
        let t = self.mul_c(b, c);
        self.add(a, &t)
    }
    /// `a + c`, folded when `c` is 0.
    fn add_c(&mut self, a: &str, c: usize) -> String {
        if c == 0 {
            return a.to_string();
        }
        let c = self.idx(c as i64);
        self.add(a, &c)
    }
    /// `sum(ivs[d] * strides[d])`.
    fn dot(&mut self, ivs: &[String], strides: &[usize]) -> String {
        let mut acc = self.idx(0);
        for (iv, &s) in ivs.iter().zip(strides) {
            acc = self.add_mul_c(&acc, iv, s);
        }
        acc
    }
}

impl Emit for KernelCtx<'_> {
    fn op(&mut self, rhs: String) -> String {
        let r = self.fresh("t");
        self.line(format!("{r} = {rhs}"));
        r
    }
    fn raw(&mut self, line: String) {
        self.line(line);
    }
    fn ops(&mut self, n: usize, rhs: String) -> String {
        let r = self.fresh("t");
        self.line(format!("{r}:{n} = {rhs}"));
        r
    }
    fn idx(&mut self, v: i64) -> String {
        KernelCtx::idx(self, v)
    }
    fn name(&mut self, hint: &str) -> String {
        self.fresh(hint)
    }
}

/// The body of a module-level helper function.
#[derive(Default)]
pub struct Body {
    text: String,
    next: usize,
    consts: BTreeMap<i64, String>,
}

impl Body {
    /// The finished `func.func private @symbol(params) { body }`.
    pub fn finish(self, symbol: &str, params: &[String]) -> String {
        let mut s = format!("  func.func private @{symbol}({}) {{\n", params.join(", "));
        for (v, name) in &self.consts {
            writeln!(s, "    {name} = arith.constant {v} : index").unwrap();
        }
        s.push_str(&self.text);
        s.push_str("    return\n  }\n");
        s
    }
}

impl Emit for Body {
    fn op(&mut self, rhs: String) -> String {
        self.next += 1;
        let r = format!("%h{}", self.next);
        writeln!(self.text, "    {r} = {rhs}").unwrap();
        r
    }
    fn raw(&mut self, line: String) {
        writeln!(self.text, "    {line}").unwrap();
    }
    fn ops(&mut self, n: usize, rhs: String) -> String {
        self.next += 1;
        let r = format!("%h{}", self.next);
        writeln!(self.text, "    {r}:{n} = {rhs}").unwrap();
        r
    }
    fn idx(&mut self, v: i64) -> String {
        self.consts
            .entry(v)
            .or_insert_with(|| {
                if v >= 0 {
                    format!("%c{v}")
                } else {
                    format!("%cm{}", -v)
                }
            })
            .clone()
    }
    fn name(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("%{hint}{}", self.next)
    }
}

/// A float literal MLIR parses exactly (always with a '.' before the exponent).
pub fn float_lit(x: f64) -> String {
    if x.is_nan() {
        return "0x7FC00000".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "0x7F800000" } else { "0xFF800000" }.into();
    }
    format!("{x:.17e}")
}

/// A constant of type `ty` (a scalar float or a vector of one) holding `x`.
pub fn fconst(e: &mut dyn Emit, ty: &str, x: f64) -> String {
    if ty.starts_with("vector") {
        e.op(format!("arith.constant dense<{}> : {ty}", float_lit(x)))
    } else {
        e.op(format!("arith.constant {} : {ty}", float_lit(x)))
    }
}

/// `buf` viewed as a 1-D memref of `len` elements.
pub fn flat(e: &mut dyn Emit, buf: &Buf, len: u64) -> String {
    e.op(format!(
        "memref.reinterpret_cast {} to offset: [0], sizes: [{len}], strides: [1] : {} to memref<{len}x{}>",
        buf.name,
        buf.ty,
        buf.elem()
    ))
}

/// The `scf.for` header over `[lo, hi)` by `step` with loop-carried values.
pub fn for_iter(
    iv: &str,
    lo: &str,
    hi: &str,
    step: &str,
    carried: &[(String, String)],
    ty: &str,
) -> String {
    let args: Vec<String> = carried
        .iter()
        .map(|(a, init)| format!("{a} = {init}"))
        .collect();
    let tys = vec![ty; carried.len()].join(", ");
    format!(
        "scf.for {iv} = {lo} to {hi} step {step} iter_args({}) -> ({tys}) {{",
        args.join(", ")
    )
}
