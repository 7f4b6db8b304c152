//! The textual form. One generic syntax for every op, so printing is written
//! once, never per op:
//!
//! ```text
//! tsr.graph @main(%input_ids: tensor<[batch]x[seq]xi64>) -> ("logits": tensor<[batch]x[seq]x1000xf32>) opsets {"" = 17} {
//!   %0 = tsr.constant {value = @"wte.weight"} : () -> tensor<1000x128xf32>
//!   %1 = tsr.gather %0, %input_ids {axis = 0} : (tensor<1000x128xf32>, tensor<[batch]x[seq]xi64>) -> tensor<[batch]x[seq]x128xf32> loc("/wte/Gather"("Gather"))
//!   tsr.return %1
//! }
//! tsr.constants {
//!   @"wte.weight" = dense<"0x...."> : tensor<1000x128xf32>
//! }
//! ```
//!
//! Omitted optional operands print as `_`. Constants print as a literal list
//! when small and as hex bytes (packed for sub-byte types) otherwise; with
//! [`PrintOptions::elide_constants_over`] large ones are elided (not
//! parseable), which snapshot tests use.

use crate::attr::Attr;
use crate::dtype::DType;
use crate::graph::{ConstId, Graph, ValueId};
use crate::tensor::{Data, Tensor};
use crate::types::{ElemType, QParam, TensorType};
use std::fmt::Write;

#[derive(Clone, Debug)]
pub struct PrintOptions {
    /// Constants with more elements than this are written as hex bytes.
    pub literal_max: usize,
    /// Constants with more elements than this are elided (with a checksum).
    pub elide_constants_over: Option<usize>,
    /// Print `loc(...)` trailers.
    pub locations: bool,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions {
            literal_max: 16,
            elide_constants_over: None,
            locations: true,
        }
    }
}

impl PrintOptions {
    /// Readable and stable for snapshots: big weights elided.
    pub fn snapshot() -> PrintOptions {
        PrintOptions {
            elide_constants_over: Some(16),
            ..Default::default()
        }
    }
}

pub fn print_graph(g: &Graph) -> String {
    print_graph_with(g, &PrintOptions::default())
}

/// Quotes a string with the escapes the parser reads back.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A bare identifier when possible, else quoted.
pub fn ident_or_quoted(s: &str) -> String {
    let ok = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        s.to_string()
    } else {
        quote(s)
    }
}

struct Printer<'g> {
    g: &'g Graph,
    opts: &'g PrintOptions,
    names: Vec<String>,
}

impl Printer<'_> {
    fn value(&self, v: ValueId) -> &str {
        &self.names[v.0 as usize]
    }

    fn const_ref(&self, c: ConstId) -> String {
        match self.g.constants.get(c.0 as usize) {
            Some(k) => format!("@{}", ident_or_quoted(&k.name)),
            None => format!("@<invalid constant {}>", c.0),
        }
    }

    fn ty(&self, t: &TensorType) -> String {
        match &t.elem {
            ElemType::Plain(_) => t.to_string(),
            ElemType::Quant(q) => {
                let p = |p: &QParam| match p {
                    QParam::Imm(v) => format!("{v:?}"),
                    QParam::Const(c) => self.const_ref(*c),
                };
                let mut s = String::from("tensor<");
                for d in &t.shape {
                    let _ = write!(s, "{d}x");
                }
                let _ = write!(
                    s,
                    "!tsr.quant<{}:{}, {}, scale = {}",
                    q.storage,
                    q.expressed,
                    q.granularity,
                    p(&q.scale)
                );
                if let Some(zp) = &q.zero_point {
                    let _ = write!(s, ", zp = {}", p(zp));
                }
                s.push_str(">>");
                s
            }
        }
    }

    fn attr(&self, a: &Attr) -> String {
        match a {
            Attr::Int(i) => i.to_string(),
            Attr::Float(f) => fmt_f64(*f),
            Attr::Str(s) => quote(s),
            Attr::Ints(v) => format!(
                "[{}]",
                v.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Attr::Floats(v) => format!(
                "[{}]",
                v.iter().map(|f| fmt_f64(*f)).collect::<Vec<_>>().join(", ")
            ),
            Attr::Strs(v) => format!(
                "[{}]",
                v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
            ),
            Attr::Type(d) => d.to_string(),
            Attr::Tensor(t) => literal(t, self.opts),
            Attr::Const(c) => self.const_ref(*c),
        }
    }
}

/// f64 in a form that reads back exactly and never looks like an integer.
pub fn fmt_f64(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{f:?}")
    }
}

fn fmt_f32(f: f32) -> String {
    if f.is_finite() {
        format!("{f:?}")
    } else {
        fmt_f64(f as f64)
    }
}

/// FNV-1a, for elided-constant checksums.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// `dense<[...]> : tensor<...>` or `dense<"0x..."> : tensor<...>`.
pub fn literal(t: &Tensor, opts: &PrintOptions) -> String {
    let ty = TensorType::fixed(
        &t.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        t.dtype,
    );
    let n = t.len();
    if let Some(max) = opts.elide_constants_over {
        if n > max {
            return format!("dense<elided {:016x}> : {ty}", checksum(&t.to_bytes()));
        }
    }
    let listable = matches!(t.data, Data::Str(_))
        || n <= opts.literal_max
            && (matches!(t.dtype, DType::F32 | DType::F64 | DType::Bool)
                || t.dtype.is_int() && !t.dtype.is_sub_byte());
    let body = if listable {
        let items: Vec<String> = match &t.data {
            Data::F32(v) => v.iter().map(|&x| fmt_f32(x)).collect(),
            Data::F64(v) => v.iter().map(|&x| fmt_f64(x)).collect(),
            Data::Bool(v) => v.iter().map(|&b| b.to_string()).collect(),
            Data::Str(v) => v.iter().map(|s| quote(s)).collect(),
            Data::U64(v) => v.iter().map(|x| x.to_string()).collect(),
            _ => t.to_i64_vec().iter().map(|x| x.to_string()).collect(),
        };
        format!("[{}]", items.join(", "))
    } else {
        // Weights can be hundreds of MB: hex-encode through a table, not `write!`.
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let bytes = t.to_bytes();
        let mut s = Vec::with_capacity(4 + 2 * bytes.len());
        s.extend_from_slice(b"\"0x");
        for b in bytes {
            s.push(HEX[(b >> 4) as usize]);
            s.push(HEX[(b & 15) as usize]);
        }
        s.push(b'"');
        String::from_utf8(s).expect("hex digits are ASCII")
    };
    format!("dense<{body}> : {ty}")
}

pub fn print_graph_with(g: &Graph, opts: &PrintOptions) -> String {
    let mut names = vec![String::new(); g.values.len()];
    let mut used = std::collections::HashSet::new();
    for (i, v) in g.inputs.iter().enumerate() {
        let raw = g.values[v.0 as usize]
            .name
            .clone()
            .unwrap_or_else(|| format!("arg{i}"));
        let mut n = format!("%{}", ident_or_quoted(&raw));
        if !used.insert(n.clone()) || raw.chars().all(|c| c.is_ascii_digit()) {
            n = format!("%arg{i}");
            used.insert(n.clone());
        }
        names[v.0 as usize] = n;
    }
    let mut next = 0;
    for op in &g.ops {
        for r in &op.results {
            names[r.0 as usize] = format!("%{next}");
            next += 1;
        }
    }
    let p = Printer { g, opts, names };
    let mut out = String::new();
    let _ = write!(out, "tsr.graph @{}(", ident_or_quoted(&g.name));
    for (i, v) in g.inputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: {}", p.value(*v), p.ty(g.ty(*v)));
    }
    out.push_str(") -> (");
    for (i, (name, v)) in g.outputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: {}", quote(name), p.ty(g.ty(*v)));
    }
    out.push(')');
    if !g.opsets.is_empty() {
        let items: Vec<String> = g
            .opsets
            .iter()
            .map(|(d, v)| format!("{} = {v}", quote(d)))
            .collect();
        let _ = write!(out, " opsets {{{}}}", items.join(", "));
    }
    out.push_str(" {\n");
    for op in &g.ops {
        out.push_str("  ");
        if !op.results.is_empty() {
            let rs: Vec<&str> = op.results.iter().map(|r| p.value(*r)).collect();
            let _ = write!(out, "{} = ", rs.join(", "));
        }
        let _ = write!(out, "tsr.{}", op.kind.mnemonic());
        let mut operand_types = Vec::new();
        for (i, o) in op.operands.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            match o {
                Some(v) => {
                    out.push_str(p.value(*v));
                    operand_types.push(p.ty(g.ty(*v)));
                }
                None => out.push('_'),
            }
        }
        if !op.attrs.is_empty() {
            let items: Vec<String> = op
                .attrs
                .iter()
                .map(|(k, v)| format!("{} = {}", ident_or_quoted(k), p.attr(v)))
                .collect();
            let _ = write!(out, " {{{}}}", items.join(", "));
        }
        let results: Vec<String> = op.results.iter().map(|r| p.ty(g.ty(*r))).collect();
        let _ = write!(out, " : ({}) -> ", operand_types.join(", "));
        if results.len() == 1 {
            out.push_str(&results[0]);
        } else {
            let _ = write!(out, "({})", results.join(", "));
        }
        if opts.locations {
            if let Some(loc) = &op.loc {
                let _ = write!(out, " loc({}({}))", quote(&loc.name), quote(&loc.op_type));
            }
        }
        out.push('\n');
    }
    let outs: Vec<&str> = g.outputs.iter().map(|(_, v)| p.value(*v)).collect();
    let _ = writeln!(out, "  tsr.return {}", outs.join(", "));
    out.push_str("}\n");
    if !g.constants.is_empty() {
        out.push_str("tsr.constants {\n");
        for c in &g.constants {
            let _ = writeln!(
                out,
                "  @{} = {}",
                ident_or_quoted(&c.name),
                literal(&c.value, opts)
            );
        }
        out.push_str("}\n");
    }
    out
}
