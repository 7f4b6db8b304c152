//! The common runner behind `tessera run` for every target: read inputs from
//! .pb files, run through the target's [`Backend`], write and check outputs.

use std::path::{Path, PathBuf};
use tessera_backend::compare::{compare, Tolerance};
use tessera_backend::Backend;
use tessera_frontend::{read_named_tensor_pb, read_tensor_pb, write_tensor_pb};
use tessera_ir::{Graph, Tensor};

/// The `input_K.pb` (or `output_K.pb`) files of a test-data directory, in K order.
pub fn numbered_files(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let stem = p
                .file_name()?
                .to_str()?
                .strip_suffix(".pb")?
                .strip_prefix(prefix)?
                .to_string();
            Some((stem.parse().ok()?, p))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no {prefix}N.pb files", dir.display()));
    }
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Reads the inputs and puts them in graph input order: by the names stored in
/// the .pb files when they all match graph inputs, else by position.
pub fn read_inputs(g: &Graph, paths: &[PathBuf]) -> Result<Vec<Tensor>, String> {
    let files: Vec<PathBuf> = if paths.len() == 1 && paths[0].is_dir() {
        numbered_files(&paths[0], "input_")?
    } else {
        paths.to_vec()
    };
    let mut named = Vec::new();
    for f in &files {
        let (name, t) = read_named_tensor_pb(f).map_err(|e| format!("{}: {e}", f.display()))?;
        named.push((name, t, f.clone()));
    }
    let input_names: Vec<String> = g
        .inputs
        .iter()
        .map(|v| g.values[v.0 as usize].name.clone().unwrap_or_default())
        .collect();
    if named.len() != input_names.len() {
        return Err(format!(
            "the model takes {} inputs ({}), {} files given",
            input_names.len(),
            input_names.join(", "),
            named.len()
        ));
    }
    let by_name = named.iter().all(|(n, _, _)| input_names.contains(n));
    if by_name {
        let mut out = Vec::new();
        for want in &input_names {
            let (_, t, _) = named
                .iter()
                .find(|(n, _, _)| n == want)
                .ok_or_else(|| format!("no file for input '{want}'"))?;
            out.push(t.clone());
        }
        Ok(out)
    } else {
        Ok(named.into_iter().map(|(_, t, _)| t).collect())
    }
}

/// Runs `g` on `target` and returns its outputs and the target's timing rows.
pub fn run(
    backend: &dyn Backend,
    g: &Graph,
    inputs: &[Tensor],
) -> Result<(Vec<Tensor>, Vec<tessera_backend::TimingRow>), String> {
    let mut exe = backend.prepare(g).map_err(|e| e.to_string())?;
    let out = exe.run(inputs).map_err(|e| e.to_string())?;
    Ok((out, exe.timing_rows()))
}

pub fn write_outputs(g: &Graph, outputs: &[Tensor], dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (k, ((name, _), t)) in g.outputs.iter().zip(outputs).enumerate() {
        let path = dir.join(format!("output_{k}.pb"));
        write_tensor_pb(&path, name, t).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Compares outputs with the expected `output_K.pb` files of `dir`. Returns a
/// report line per output and whether all matched.
pub fn check_outputs(
    g: &Graph,
    outputs: &[Tensor],
    dir: &Path,
    atol: Option<f64>,
    rtol: Option<f64>,
) -> Result<(Vec<String>, bool), String> {
    let files = numbered_files(dir, "output_")?;
    if files.len() != outputs.len() {
        return Err(format!(
            "{} expected outputs in {}, the model has {}",
            files.len(),
            dir.display(),
            outputs.len()
        ));
    }
    let mut lines = Vec::new();
    let mut all_ok = true;
    for ((name, _), (t, f)) in g.outputs.iter().zip(outputs.iter().zip(&files)) {
        let expected = read_tensor_pb(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut tol = Tolerance::for_dtype(expected.dtype);
        if let Some(a) = atol {
            tol.atol = a;
        }
        if let Some(r) = rtol {
            tol.rtol = r;
        }
        let c = compare(t, &expected, tol);
        all_ok &= c.ok;
        lines.push(format!(
            "{} {name}: {c} (atol {:.0e}, rtol {:.0e})",
            if c.ok { "ok      " } else { "MISMATCH" },
            tol.atol,
            tol.rtol
        ));
    }
    Ok((lines, all_ok))
}
