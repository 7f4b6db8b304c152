//! `.tsa` assembly text. One instruction per line: the mnemonic, then dependency
//! flags (`pop_prev pop_next push_prev push_next`), then `field=value` pairs in any
//! order (omitted fields are 0). Directives: `.tsa VERSION`, `.config_hash HEX`,
//! `.dram_size N`, `.buffer ROLE NAME DTYPE [D0,D1,..] @ADDR`, `.image ADDR`, and
//! `.data HEX` (appends bytes to the image). `#` and `;` start comments.
//!
//! [`disassemble`] prints the canonical form (directives, instructions, image;
//! zero-valued fields left out), and `disassemble(assemble(t)) == t` holds for
//! every canonical text `t`, as does `assemble(disassemble(s)) == s`.

use crate::stream::{Buffer, DType, Role, Stream};
use crate::table::{def_by_mnemonic, Deps, Fmt, Insn, Op, DEP_NAMES};
use crate::IsaError;
use std::fmt::Write;

const DATA_BYTES_PER_LINE: usize = 32;

fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let v = match body.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => body.parse::<i64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// Formats one instruction in canonical form.
pub fn format_insn(insn: &Insn) -> String {
    let def = insn.op.def();
    let mut s = def.mnemonic.to_string();
    let flags = [
        insn.deps.pop_prev,
        insn.deps.pop_next,
        insn.deps.push_prev,
        insn.deps.push_next,
    ];
    for (name, on) in DEP_NAMES.iter().zip(flags) {
        if on {
            s.push(' ');
            s.push_str(name);
        }
    }
    for (f, v) in def.fields.iter().zip(insn.op.values()) {
        if v == 0 {
            continue;
        }
        let _ = match f.fmt {
            Fmt::Enum(names) => write!(
                s,
                " {}={}",
                f.name,
                names.get(v as usize).copied().unwrap_or("?")
            ),
            Fmt::Hex => write!(s, " {}={:#x}", f.name, v),
            Fmt::Dec | Fmt::Signed => write!(s, " {}={}", f.name, v),
        };
    }
    s
}

/// Parses one instruction line (no comments, not empty).
pub fn parse_insn(line: &str) -> Result<Insn, String> {
    let mut toks = line.split_whitespace();
    let mn = toks.next().ok_or("empty instruction")?;
    let def = def_by_mnemonic(mn).ok_or_else(|| format!("unknown mnemonic '{mn}'"))?;
    let mut deps = Deps::default();
    let mut vals: Vec<Option<i64>> = vec![None; def.fields.len()];
    for t in toks {
        match t {
            "pop_prev" => deps.pop_prev = true,
            "pop_next" => deps.pop_next = true,
            "push_prev" => deps.push_prev = true,
            "push_next" => deps.push_next = true,
            _ => {
                let (k, v) = t
                    .split_once('=')
                    .ok_or_else(|| format!("expected field=value, got '{t}'"))?;
                let i = def
                    .fields
                    .iter()
                    .position(|f| f.name == k)
                    .ok_or_else(|| format!("{mn} has no field '{k}'"))?;
                if vals[i].is_some() {
                    return Err(format!("field '{k}' given twice"));
                }
                let f = &def.fields[i];
                let n = match f.fmt {
                    Fmt::Enum(names) => names
                        .iter()
                        .position(|n| *n == v)
                        .map(|p| p as i64)
                        .ok_or_else(|| {
                            format!("field {k}: '{v}' is not one of {}", names.join(", "))
                        })?,
                    _ => parse_int(v).ok_or_else(|| format!("field {k}: bad number '{v}'"))?,
                };
                if n < f.min() || n > f.max() {
                    return Err(format!(
                        "field {k}={n} out of range [{}, {}]",
                        f.min(),
                        f.max()
                    ));
                }
                vals[i] = Some(n);
            }
        }
    }
    let vals: Vec<i64> = vals.into_iter().map(|v| v.unwrap_or(0)).collect();
    let op = Op::from_values(def.opcode, &vals).ok_or("internal: field count mismatch")?;
    let insn = Insn { deps, op };
    insn.validate()?;
    Ok(insn)
}

pub fn disassemble(s: &Stream) -> String {
    let mut out = String::new();
    let _ = writeln!(out, ".tsa {}", s.version);
    let _ = writeln!(out, ".config_hash {:#018x}", s.config_hash);
    let _ = writeln!(out, ".dram_size {}", s.dram_size);
    for b in &s.buffers {
        let dims: Vec<String> = b.shape.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(
            out,
            ".buffer {} {} {} [{}] @{:#x}",
            b.role.name(),
            b.name,
            b.dtype.name(),
            dims.join(","),
            b.addr
        );
    }
    for insn in &s.insns {
        out.push_str(&format_insn(insn));
        out.push('\n');
    }
    if !s.image.is_empty() || s.image_base != 0 {
        let _ = writeln!(out, ".image {:#x}", s.image_base);
        for chunk in s.image.chunks(DATA_BYTES_PER_LINE) {
            out.push_str(".data ");
            for b in chunk {
                let _ = write!(out, "{b:02x}");
            }
            out.push('\n');
        }
    }
    out
}

pub fn assemble(text: &str) -> Result<Stream, IsaError> {
    let mut s = Stream::default();
    for (ln, raw) in text.lines().enumerate() {
        let line = raw.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |m: String| IsaError::new(format!("line {}: {m}", ln + 1));
        if let Some(dir) = line.strip_prefix('.') {
            let mut toks = dir.split_whitespace();
            let name = toks.next().unwrap_or("");
            let rest: Vec<&str> = toks.collect();
            let one = |what: &str| -> Result<i64, IsaError> {
                match rest.as_slice() {
                    [v] => parse_int(v)
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| err(format!("{what}: bad number '{v}'"))),
                    _ => Err(err(format!("{what} takes one argument"))),
                }
            };
            match name {
                "tsa" => {
                    let v = one(".tsa")?;
                    if v != crate::VERSION as i64 {
                        return Err(err(format!(
                            "unsupported version {v} (this build reads {}; recompile the stream)",
                            crate::VERSION
                        )));
                    }
                    s.version = v as u16;
                }
                "config_hash" => {
                    let v = rest
                        .first()
                        .and_then(|h| h.strip_prefix("0x"))
                        .and_then(|h| u64::from_str_radix(h, 16).ok());
                    s.config_hash =
                        v.ok_or_else(|| err(".config_hash takes one hex number".into()))?;
                }
                "dram_size" => s.dram_size = one(".dram_size")? as u64,
                "image" => s.image_base = one(".image")? as u64,
                "data" => {
                    let hex: String = rest.concat();
                    if !hex.len().is_multiple_of(2) {
                        return Err(err(".data needs an even number of hex digits".into()));
                    }
                    for i in (0..hex.len()).step_by(2) {
                        let b = hex
                            .get(i..i + 2)
                            .and_then(|p| u8::from_str_radix(p, 16).ok());
                        s.image
                            .push(b.ok_or_else(|| err(format!(".data: bad hex at digit {i}")))?);
                    }
                }
                "buffer" => s.buffers.push(parse_buffer(&rest).map_err(err)?),
                _ => return Err(err(format!("unknown directive '.{name}'"))),
            }
            continue;
        }
        let index = s.insns.len();
        let insn =
            parse_insn(line).map_err(|m| IsaError::at(index, format!("line {}: {m}", ln + 1)))?;
        s.insns.push(insn);
    }
    Ok(s)
}

fn parse_buffer(rest: &[&str]) -> Result<Buffer, String> {
    let usage = ".buffer ROLE NAME DTYPE [D0,D1,..] @ADDR";
    let [role, name, dtype, shape, addr] = rest else {
        return Err(format!("expected {usage}"));
    };
    let role = Role::parse(role).ok_or_else(|| format!("bad buffer role '{role}'"))?;
    let dtype = DType::parse(dtype).ok_or_else(|| format!("bad buffer dtype '{dtype}'"))?;
    let inner = shape
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .ok_or_else(|| format!("bad shape '{shape}' (write [D0,D1,..] without spaces)"))?;
    let shape = if inner.is_empty() {
        vec![]
    } else {
        inner
            .split(',')
            .map(|d| d.parse::<u64>().map_err(|_| format!("bad dim '{d}'")))
            .collect::<Result<Vec<_>, _>>()?
    };
    let addr = addr
        .strip_prefix('@')
        .and_then(parse_int)
        .filter(|a| *a >= 0)
        .ok_or_else(|| format!("bad address '{addr}'"))? as u64;
    Ok(Buffer {
        name: name.to_string(),
        role,
        dtype,
        shape,
        addr,
    })
}
