//! Every fixture model compiles for accel, simulates, is bit-exact with the
//! reference semantics on its integer values (segment by segment, on the same
//! inputs), and agrees with onnxruntime's float outputs within the
//! quantization tolerance of docs/accel-backend.md.

use std::path::{Path, PathBuf};
use tessera_accel::program::Program;
use tessera_accel::specialize::Bindings;
use tessera_accel::RunSummary;
use tessera_accel_isa::HwConfig;
use tessera_ir::{DType, Tensor};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/models")
}

fn sets(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("test_data_set_")
        })
        .collect();
    v.sort();
    v
}

fn read(set: &Path, prefix: &str, n: usize) -> Vec<Tensor> {
    (0..n)
        .map(|k| tessera_frontend::read_tensor_pb(set.join(format!("{prefix}_{k}.pb"))).unwrap())
        .collect()
}

/// The documented tolerance against onnxruntime's float outputs: int8
/// per-token activations and per-channel weights give about 1% relative error
/// per matmul; after a few layers the error stays below 5% of the output's
/// range (plus a small absolute floor for near-zero outputs).
fn within_quant_tolerance(got: &Tensor, want: &Tensor) -> Result<f64, String> {
    if got.shape != want.shape {
        return Err(format!("shape {:?} vs {:?}", got.shape, want.shape));
    }
    if want.dtype != DType::F32 {
        return if got.to_i64_vec() == want.to_i64_vec() {
            Ok(0.0)
        } else {
            Err("integers differ".into())
        };
    }
    let (g, w) = (got.to_f32_vec(), want.to_f32_vec());
    let range = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1.0) as f64;
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0f64, f64::max);
    if worst.is_nan() || worst > 0.05 * range {
        return Err(format!(
            "max |diff| {worst} exceeds 5% of the range {range}"
        ));
    }
    Ok(worst / range)
}

fn check_model(name: &str, cfg: &HwConfig) {
    let dir = models().join(name);
    let g = tessera_frontend::import_model(dir.join("model.onnx")).unwrap();
    for set in sets(&dir) {
        let inputs = read(&set, "input", g.inputs.len());
        let expected = read(&set, "output", g.outputs.len());
        let env = tessera_reference::bind_inputs(&g, &inputs).unwrap();
        let bind: Bindings = env.into_iter().collect();
        let p = Program::compile(&g, cfg, &bind)
            .unwrap_or_else(|e| panic!("{name}/{}: compile: {e}", set.display()));
        // Integer parts: bit-exact with the reference semantics.
        let checks = p.differential(&inputs).unwrap();
        if std::env::var("ACCEL_DEBUG").is_ok() {
            for c in checks.iter().filter(|c| c.max_ulp > 100000) {
                eprintln!("f32 far: {:?}", c);
            }
        }
        let ints: Vec<_> = checks.iter().filter(|c| c.dtype != DType::F32).collect();
        for c in &ints {
            assert_eq!(
                c.mismatches, 0,
                "{name}: {} {} differs from the reference",
                c.mnemonic, c.node
            );
        }
        // The whole program on the simulator vs the reference interpreter on
        // the same quantized graph, and vs onnxruntime.
        let (outs, reports) = p.run(&inputs).unwrap();
        let reference = tessera_reference::run(&p.graph, &inputs).unwrap();
        for ((o, r), e) in outs.iter().zip(&reference).zip(&expected) {
            if std::env::var("ACCEL_DEBUG").is_ok() {
                eprintln!(
                    "ref vs ort: {:?}; accel vs ort: {:?}",
                    within_quant_tolerance(r, e),
                    within_quant_tolerance(o, e)
                );
            }
            within_quant_tolerance(o, r).unwrap_or_else(|m| panic!("{name}: vs reference: {m}"));
            let rel = within_quant_tolerance(o, e)
                .unwrap_or_else(|m| panic!("{name}: vs onnxruntime: {m}"));
            let s = RunSummary::of(cfg, &reports, p.host_ops().count());
            eprintln!(
                "{name} {}: {} cycles, {} segments, {} host ops, {} integer values bit-exact, max err vs ORT {:.4} of range, util {:.1}%",
                set.file_name().unwrap().to_string_lossy(),
                s.total_cycles,
                s.segments,
                s.host_ops,
                ints.len(),
                rel,
                100.0 * s.array_utilization
            );
        }
        assert!(
            p.segments().count() > 0,
            "{name}: nothing ran on the accelerator"
        );
    }
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_model(stringify!($name), &HwConfig::edge());
        }
    )*};
}

fixtures!(
    bert_dynamo_op23,
    bert_int8_dynamic,
    bert_legacy_op17,
    gpt2_dynamo_op23,
    gpt2_legacy_op17,
    llama_dynamo_op23,
    llama_int4_matmulnbits,
    llama_kvcache_legacy_op17,
    llama_legacy_op17,
    vit_dynamo_op23,
    vit_legacy_op17,
);

#[test]
fn server_preset_runs_bert() {
    check_model("bert_legacy_op17", &HwConfig::server());
}
