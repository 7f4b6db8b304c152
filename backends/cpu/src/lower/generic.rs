//! Shared building blocks: `linalg.generic` over broadcast operands, with the
//! scalar body written by the caller (the elementwise ops themselves are in
//! [`super::elementwise`]).

use crate::emit::kernel::{Buf, KernelCtx};
use std::fmt::Write;

/// The indexing map reading `shape` (right-aligned, numpy broadcasting) inside
/// an iteration space of rank `rank` over `out` sizes: broadcast dims read
/// index 0.
pub fn broadcast_map(shape: &[usize], out: &[usize]) -> String {
    let rank = out.len();
    let dims: Vec<String> = (0..rank).map(|d| format!("d{d}")).collect();
    let lead = rank - shape.len();
    let exprs: Vec<String> = shape
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            if n == 1 && out[lead + i] != 1 {
                "0".to_string()
            } else {
                format!("d{}", lead + i)
            }
        })
        .collect();
    format!(
        "affine_map<({}) -> ({})>",
        dims.join(", "),
        exprs.join(", ")
    )
}

/// The scalar region of a `linalg.generic`: block arguments and body lines.
pub struct Region<'k, 'a> {
    pub k: &'k mut KernelCtx<'a>,
    lines: String,
}

impl Region<'_, '_> {
    /// Emits `%r = <rhs>` and returns `%r`.
    pub fn op(&mut self, rhs: impl AsRef<str>) -> String {
        let r = self.k.fresh("s");
        writeln!(self.lines, "      {r} = {}", rhs.as_ref()).unwrap();
        r
    }
    pub fn raw(&mut self, line: impl AsRef<str>) {
        writeln!(self.lines, "      {}", line.as_ref()).unwrap();
    }
}

/// `affine_map<(d0, ..., d{rank-1}) -> (exprs...)>`.
pub fn affine_map(rank: usize, exprs: &[String]) -> String {
    let dims: Vec<String> = (0..rank).map(|d| format!("d{d}")).collect();
    format!(
        "affine_map<({}) -> ({})>",
        dims.join(", "),
        exprs.join(", ")
    )
}

/// `out[i] = body(ins[i]...)` with numpy broadcasting of every input to the
/// output's shape. `body` gets the scalar names of the inputs (in order) and
/// returns the scalar to store.
pub fn elementwise(
    k: &mut KernelCtx,
    ins: &[Buf],
    out: &Buf,
    body: impl FnOnce(&mut Region, &[String]) -> Result<String, String>,
) -> Result<(), String> {
    let maps: Vec<String> = ins
        .iter()
        .map(|b| broadcast_map(&b.shape, &out.shape))
        .collect();
    generic(k, ins, &maps, out, body)
}

/// One parallel `linalg.generic` over `out`'s index space: input `i` is read
/// through `maps[i]` (any affine map from the output's dims: permutations,
/// strided windows, `mod` for tiling), the result is stored in order. The
/// body may use `linalg.index` and load from other buffers (gathers).
pub fn generic(
    k: &mut KernelCtx,
    ins: &[Buf],
    maps: &[String],
    out: &Buf,
    body: impl FnOnce(&mut Region, &[String]) -> Result<String, String>,
) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    let rank = out.rank();
    let mut maps = maps.to_vec();
    maps.push(broadcast_map(&out.shape, &out.shape));
    let iters = vec!["\"parallel\""; rank].join(", ");
    let args: Vec<String> = (0..ins.len()).map(|i| format!("%e{i}")).collect();
    let mut region = Region {
        k,
        lines: String::new(),
    };
    let r = body(&mut region, &args)?;
    let lines = region.lines;
    let mut bb: Vec<String> = ins
        .iter()
        .enumerate()
        .map(|(i, b)| format!("%e{i}: {}", b.elem()))
        .collect();
    bb.push(format!("%eo: {}", out.elem()));
    let ins_list = if ins.is_empty() {
        String::new()
    } else {
        format!(
            "ins({} : {}) ",
            ins.iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            ins.iter()
                .map(|b| b.ty.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    k.line(format!(
        "linalg.generic {{indexing_maps = [{}], iterator_types = [{iters}]}} {ins_list}outs({} : {}) {{",
        maps.join(", "),
        out.name,
        out.ty
    ));
    k.line(format!("^bb0({}):", bb.join(", ")));
    let mut text = lines;
    writeln!(text, "      linalg.yield {r} : {}", out.elem()).unwrap();
    k.text(&text);
    k.line("}");
    Ok(())
}
