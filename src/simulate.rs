//! `tessera simulate`: runs an accelerator instruction stream on the
//! simulator, with the same .pb inputs/outputs and `--check` as `tessera run`.
//! The simulator knows only the ISA; this is where tensors meet its buffers.

use crate::cli::SimulateArgs;
use crate::runner::numbered_files;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tessera_accel_isa::{asm, HwConfig, Role, Stream};
use tessera_backend::compare::{compare, Tolerance};
use tessera_frontend::{read_named_tensor_pb, read_tensor_pb, write_tensor_pb};
use tessera_ir::{DType, Tensor};
use tessera_sim::{chrome_trace, Simulator};

/// The IR element type of a stream buffer type (same little-endian and
/// sub-byte packing, so bytes pass through unchanged).
fn ir_dtype(d: tessera_accel_isa::DType) -> DType {
    use tessera_accel_isa::DType as S;
    match d {
        S::I8 => DType::I8,
        S::U8 => DType::U8,
        S::I32 => DType::I32,
        S::F32 => DType::F32,
        S::Bf16 => DType::BF16,
        S::I4 => DType::I4,
        S::I2 => DType::I2,
    }
}

fn load_stream(path: &Path) -> Result<Stream, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_text = path.extension().is_some_and(|e| e == "tsa") || bytes.starts_with(b".tsa");
    let s = if is_text {
        let text =
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
        asm::assemble(&text)
    } else {
        Stream::from_bytes(&bytes)
    };
    s.map_err(|e| format!("{}: {e}", path.display()))
}

fn load_config(spec: &str) -> Result<HwConfig, String> {
    let p = Path::new(spec);
    if p.exists() {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{spec}: {e}"))?;
        HwConfig::from_toml(&text).map_err(|e| format!("{spec}: {e}"))
    } else {
        HwConfig::preset(spec)
    }
}

fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    match paths {
        [] => Ok(Vec::new()),
        [dir] if dir.is_dir() => numbered_files(dir, "input_"),
        files => Ok(files.to_vec()),
    }
}

pub fn simulate(a: SimulateArgs) -> Result<ExitCode, String> {
    let stream = load_stream(&a.stream)?;
    let cfg = load_config(&a.config)?;
    let mut inputs = BTreeMap::new();
    for f in input_files(&a.inputs)? {
        let (name, t) = read_named_tensor_pb(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let b = stream
            .buffer(&name)
            .filter(|b| b.role == Role::Input)
            .ok_or_else(|| format!("{}: the stream has no input buffer '{name}'", f.display()))?;
        let want_shape: Vec<usize> = b.shape.iter().map(|&d| d as usize).collect();
        if t.dtype != ir_dtype(b.dtype) || t.shape != want_shape {
            return Err(format!(
                "input '{name}': the stream expects {} {:?}, the file holds {} {:?}",
                ir_dtype(b.dtype),
                want_shape,
                t.dtype,
                t.shape
            ));
        }
        inputs.insert(name, t.to_bytes());
    }
    for b in stream.buffers.iter().filter(|b| b.role == Role::Input) {
        if !inputs.contains_key(&b.name) {
            return Err(format!("input buffer '{}' was given no .pb file", b.name));
        }
    }
    let sim = Simulator::new(cfg.clone());
    let (out, report) = sim.run(&stream, &inputs).map_err(|e| e.to_string())?;
    if let Some(path) = &a.trace {
        std::fs::write(path, chrome_trace(&out.trace, cfg.clock_mhz))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut outputs = Vec::new();
    for b in stream.buffers.iter().filter(|b| b.role == Role::Output) {
        let bytes = out
            .outputs
            .get(&b.name)
            .ok_or_else(|| format!("output buffer '{}' was not produced", b.name))?;
        let shape: Vec<usize> = b.shape.iter().map(|&d| d as usize).collect();
        let t = Tensor::from_bytes(ir_dtype(b.dtype), shape, bytes)
            .map_err(|e| format!("output '{}': {e}", b.name))?;
        outputs.push((b.name.clone(), t));
    }
    if let Some(dir) = &a.output {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (k, (name, t)) in outputs.iter().enumerate() {
            let p = dir.join(format!("output_{k}.pb"));
            write_tensor_pb(&p, name, t).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    println!(
        "{}",
        if a.json {
            report.to_json()
        } else {
            report.to_text()
        }
    );
    if let Some(dir) = &a.check {
        let files = numbered_files(dir, "output_")?;
        if files.len() != outputs.len() {
            return Err(format!(
                "{} expected outputs in {}, the stream has {}",
                files.len(),
                dir.display(),
                outputs.len()
            ));
        }
        let mut ok = true;
        for ((name, t), f) in outputs.iter().zip(&files) {
            let expected = read_tensor_pb(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let c = compare(t, &expected, Tolerance::for_dtype(expected.dtype));
            ok &= c.ok;
            println!("{} {name}: {c}", if c.ok { "ok      " } else { "MISMATCH" });
        }
        if !ok {
            eprintln!("error: outputs differ from {}", dir.display());
            return Ok(ExitCode::FAILURE);
        }
        println!("all {} outputs match {}", outputs.len(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
