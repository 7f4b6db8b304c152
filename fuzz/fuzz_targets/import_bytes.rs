//! Any byte string given to the importer yields a graph or an error, never a
//! panic, an abort or unbounded allocation. Seed the corpus with the bundled
//! models: `cp ../tests/models/*/model.onnx corpus/import_bytes/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // No base directory: a fuzzed model must not read files.
    if let Err(e) = tessera_frontend::import_bytes(data, None) {
        // Rendering the error is part of the contract too.
        let _ = e.to_string();
    }
});
