//! Shape specialization: native code is generated for concrete shapes, so
//! every symbolic dim (`[batch]`, `[seq]`) is bound first — from the inputs
//! of a run, or from `--dim name=N` for an ahead-of-time library — and the
//! shape arithmetic that depended on them folds away.

use std::collections::HashMap;
use tessera_ir::{Diagnostic, Dim, Graph};
use tessera_passes::{PassManager, PassOptions};

/// `g` with every dim concrete. Fails, naming the value and the symbol, when
/// a dim stays unknown.
pub fn specialize(g: &Graph, env: &HashMap<String, i64>) -> Result<Graph, Diagnostic> {
    let mut g = g.clone();
    let bind = |s: &str| env.get(s).copied();
    for v in &mut g.values {
        for d in &mut v.ty.shape {
            if let Some(n) = d.eval(&bind) {
                *d = Dim::fixed(n);
            }
        }
    }
    fold_dims(&mut g, env)?;
    tessera_ir::symbolic::simplify_shapes(&mut g);
    // com.microsoft ops become core ops once shapes (and the small integer
    // operands the JIT binds by value) are known: folding first makes
    // lengths computed from bound inputs constant.
    let pm = PassManager::parse(
        "fold-constants,legalize-contrib,fold-constants,canonicalize,dce",
        PassOptions::default(),
    )?;
    pm.run(&mut g, &mut |_, _| {})?;
    check_static(&g)?;
    Ok(g)
}

/// Replaces each `tsr.dims` (a shape vector computed from symbolic dims) by
/// the constant it is once the symbols are bound.
fn fold_dims(g: &mut Graph, env: &HashMap<String, i64>) -> Result<(), Diagnostic> {
    use tessera_ir::{AttrAccess, OpKind};
    for i in 0..g.ops.len() {
        if g.ops[i].kind != OpKind::Dims {
            continue;
        }
        let op = &g.ops[i];
        let exprs = op.attr("exprs");
        let Some(tessera_ir::Attr::Strs(exprs)) = exprs else {
            continue;
        };
        let mut vals = Vec::new();
        for e in &exprs {
            let p = tessera_ir::dim::parse_poly(e).map_err(Diagnostic::new)?;
            match p.eval(&|s| env.get(s).copied()) {
                Some(v) => vals.push(v),
                None => break,
            }
        }
        if vals.len() != exprs.len() {
            continue;
        }
        let r = op.results[0];
        let dtype = g.ty(r).dtype();
        let t = tessera_ir::Tensor::from_i64(dtype, vec![vals.len()], &vals);
        let c = g.add_constant(&format!("dims_{i}"), std::sync::Arc::new(t));
        let mut attrs = tessera_ir::Attrs::new();
        attrs.insert("value".into(), tessera_ir::Attr::Const(c));
        let loc = g.ops[i].loc.clone();
        g.ops[i] = tessera_ir::Op {
            kind: OpKind::Constant,
            operands: vec![],
            results: vec![r],
            attrs,
            loc,
        };
    }
    Ok(())
}

/// Every value has a fully known shape.
pub fn check_static(g: &Graph) -> Result<(), Diagnostic> {
    let producers = g.producers();
    for (i, v) in g.values.iter().enumerate() {
        if v.ty.static_shape().is_some() {
            continue;
        }
        let mut syms: Vec<String> = Vec::new();
        for d in &v.ty.shape {
            match d {
                Dim::Known(p) => syms.extend(p.symbols().cloned()),
                Dim::Unknown => syms.push("?".into()),
            }
        }
        let mut d = Diagnostic::new(format!(
            "the cpu target compiles for concrete shapes, but a value of type {} keeps \
             dims {} unknown; bind them with --dim NAME=N (or run with inputs)",
            v.ty,
            syms.join(", ")
        ));
        if let Some(op) = producers[i].map(|p| &g.ops[p]) {
            d = d.op(format!("tsr.{}", op.kind.mnemonic()));
            if let Some(loc) = &op.loc {
                d = d.at(Some(loc.clone()));
            }
        }
        return Err(d);
    }
    Ok(())
}

/// The symbols of the graph inputs, bound from `--dim name=N` pairs. Missing
/// ones are an error listing them.
pub fn env_from_dims(
    g: &Graph,
    dims: &[(String, i64)],
) -> Result<HashMap<String, i64>, Diagnostic> {
    let env: HashMap<String, i64> = dims.iter().cloned().collect();
    let mut missing = Vec::new();
    for v in &g.inputs {
        for d in &g.ty(*v).shape {
            if let Dim::Known(p) = d {
                for s in p.symbols() {
                    if !env.contains_key(s) && !missing.contains(s) {
                        missing.push(s.clone());
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(Diagnostic::new(format!(
            "the model has symbolic input dims ({}); give each a size with --dim NAME=N",
            missing.join(", ")
        )));
    }
    Ok(env)
}
