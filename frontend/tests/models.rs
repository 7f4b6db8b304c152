//! The bundled test models (tests/models/*/model.onnx) import completely, and
//! damaged copies of them fail cleanly instead of panicking.

use std::path::PathBuf;
use std::time::Instant;
use tessera_frontend::{import_bytes, import_model};

fn model_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/models");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn fixture_models_import_without_unsupported_ops() {
    let dirs = model_dirs();
    assert!(
        dirs.len() >= 10,
        "expected the bundled models, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let start = Instant::now();
        match import_model(dir.join("model.onnx")) {
            Ok(g) => println!(
                "{name}: {} ops, {} constants, imported in {:.1?}",
                g.ops.len(),
                g.constants.len(),
                start.elapsed()
            ),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} models fail to import:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `TESSERA_DAMAGE_ROUNDS=n` runs n rounds over every fixture (a poor man's
/// fuzzer for machines without cargo-fuzz); by default one quick round on
/// the smallest model.
#[test]
fn damaged_models_fail_cleanly() {
    let rounds: u64 = std::env::var("TESSERA_DAMAGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut dirs = model_dirs();
    dirs.sort_by_key(|d| {
        std::fs::metadata(d.join("model.onnx"))
            .map(|m| m.len())
            .unwrap_or(u64::MAX)
    });
    if rounds == 0 {
        damage_round(&dirs[0], 0);
    }
    for r in 0..rounds {
        for dir in &dirs {
            damage_round(dir, r + 1);
        }
    }
}

fn damage_round(dir: &std::path::Path, seed: u64) {
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut outcomes = (0, 0);
    let mut count = |r: Result<_, _>| match r {
        Ok(_) => outcomes.0 += 1,
        Err(e) => {
            // Every error renders as a readable message.
            assert!(!format!("{e}").is_empty());
            outcomes.1 += 1
        }
    };
    for _ in 0..40 {
        let cut = rng.below(bytes.len());
        count(import_bytes(&bytes[..cut], None));
    }
    // Structure lives at the start and end of the file (the weights are in
    // between), so flip bits there more often.
    for i in 0..120 {
        let mut damaged = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let pos = match i % 3 {
                0 => rng.below(4096.min(bytes.len())),
                1 => bytes.len() - 1 - rng.below(65536.min(bytes.len())),
                _ => rng.below(bytes.len()),
            };
            damaged[pos] ^= 1 << rng.below(8);
        }
        count(import_bytes(&damaged, None));
    }
    assert!(outcomes.1 > 0, "truncated files must fail");
    let err = import_bytes(&bytes[..bytes.len() / 2], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
}
