//! Shared by the integration tests: where the fixture models live.

use std::path::{Path, PathBuf};

pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

/// The fixture models (directories of tests/models with a model.onnx), sorted.
pub fn model_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(models_dir())
        .expect("tests/models exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 11,
        "expected the 11 fixture models, found {names:?}"
    );
    names
}
