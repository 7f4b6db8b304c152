//! Specialization of symbolic dims (`batch`, `seq`, ...) to concrete sizes, so
//! every tile the backend emits is static.

use std::collections::BTreeMap;
use tessera_ir::symbolic::reinfer;
use tessera_ir::{Diagnostic, Dim, Graph};

/// Concrete values of the graph's dimension symbols.
pub type Bindings = BTreeMap<String, i64>;

/// Rewrites every type of `g` with the symbols of `bind` substituted, then
/// re-infers types so dims that depended on values (Reshape targets, ...)
/// become fixed too.
pub fn specialize(g: &mut Graph, bind: &Bindings) {
    substitute(g, bind);
    // Inference may name dims symbolically again (`tsr.dims` yields symbols),
    // so substitute once more after it settles.
    for _ in 0..4 {
        if reinfer(g) == 0 {
            break;
        }
    }
    substitute(g, bind);
}

fn substitute(g: &mut Graph, bind: &Bindings) {
    let lookup = |s: &str| bind.get(s).copied();
    for v in &mut g.values {
        for d in &mut v.ty.shape {
            if let Some(n) = d.eval(&lookup) {
                *d = Dim::fixed(n);
            }
        }
    }
}

/// Parses `batch=2,seq=16`.
pub fn parse_bindings(spec: &str) -> Result<Bindings, String> {
    let mut b = Bindings::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}': expected NAME=SIZE"))?;
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| format!("'{part}': the size is not an integer"))?;
        if n < 0 {
            return Err(format!("'{part}': negative size"));
        }
        b.insert(k.trim().to_string(), n);
    }
    Ok(b)
}

/// The symbols of the graph inputs that `bind` leaves open.
pub fn unbound_symbols(g: &Graph, bind: &Bindings) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    for v in &g.inputs {
        for d in &g.ty(*v).shape {
            if let Dim::Known(p) = d {
                for s in p.symbols() {
                    if !bind.contains_key(s) && !open.contains(s) {
                        open.push(s.clone());
                    }
                }
            }
        }
    }
    open
}

pub fn require_bound(g: &Graph, bind: &Bindings) -> Result<(), Diagnostic> {
    let open = unbound_symbols(g, bind);
    if open.is_empty() {
        return Ok(());
    }
    Err(Diagnostic::new(format!(
        "the accel target compiles static shapes; the inputs have symbolic dims {} \
         (bind them with --dim NAME=N, e.g. {})",
        open.join(", "),
        open.iter()
            .map(|s| format!("{s}=1"))
            .collect::<Vec<_>>()
            .join(",")
    )))
}
