//! The `--emit lib` contract, end to end: `tessera compile --target cpu
//! --emit lib` writes a shared library and a C header; a C program written
//! against that header (compiled here with the system C compiler) links the
//! library, runs the model on a fixture's inputs, and its outputs match
//! onnxruntime's reference outputs for that fixture.

use std::path::{Path, PathBuf};
use std::process::Command;
use tessera_backend::compare::{compare, Tolerance};
use tessera_ir::{DType, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

fn c_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::I64 => "int64_t",
        DType::I32 => "int32_t",
        DType::U8 | DType::Bool => "uint8_t",
        other => panic!("the test's C program does not handle {other}"),
    }
}

/// A C program that reads raw inputs from `argv[1]/inK.bin`, calls the
/// library's entry point through the generated header, and writes
/// `argv[1]/outK.bin`.
fn c_program(
    name: &str,
    inputs: &[(String, Tensor)],
    outputs: &[(String, DType, usize)],
) -> String {
    let upper = name.to_ascii_uppercase();
    let mut c = format!(
        "#include \"{name}.h\"\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n\
         static void* slurp(const char* dir, const char* file, size_t n) {{\n\
           char path[4096]; snprintf(path, sizeof path, \"%s/%s\", dir, file);\n\
           FILE* f = fopen(path, \"rb\"); if (!f) {{ perror(path); exit(2); }}\n\
           void* p = malloc(n ? n : 1); if (fread(p, 1, n, f) != n) {{ fprintf(stderr, \"short read %s\\n\", path); exit(2); }}\n\
           fclose(f); return p;\n}}\n\
         static void spill(const char* dir, const char* file, const void* p, size_t n) {{\n\
           char path[4096]; snprintf(path, sizeof path, \"%s/%s\", dir, file);\n\
           FILE* f = fopen(path, \"wb\"); if (!f || fwrite(p, 1, n, f) != n) {{ perror(path); exit(2); }}\n\
           fclose(f);\n}}\n\n\
         int main(int argc, char** argv) {{\n\
           if (argc != 3) {{ fprintf(stderr, \"usage: run DIR THREADS\\n\"); return 2; }}\n\
           if ({upper}_NUM_INPUTS != {} || {upper}_NUM_OUTPUTS != {}) {{ fprintf(stderr, \"header disagrees\\n\"); return 3; }}\n",
        inputs.len(),
        outputs.len()
    );
    let mut args = Vec::new();
    for (i, (_, t)) in inputs.iter().enumerate() {
        let n = t.to_bytes().len();
        c.push_str(&format!(
            "  {ty}* in{i} = ({ty}*)slurp(argv[1], \"in{i}.bin\", {n});\n",
            ty = c_type(t.dtype)
        ));
        args.push(format!("in{i}"));
    }
    for (i, (_, d, n)) in outputs.iter().enumerate() {
        c.push_str(&format!(
            "  {ty}* out{i} = ({ty}*)calloc(1, {n} ? {n} : 1);\n",
            ty = c_type(*d)
        ));
        args.push(format!("out{i}"));
    }
    c.push_str(&format!(
        "  size_t ws_bytes = ({upper}_WORKSPACE_BYTES + 63) / 64 * 64;\n\
         void* ws = aligned_alloc(64, ws_bytes);\n\
         int32_t status = {name}_run({}, ws, atoi(argv[2]));\n\
         if (status != 0) {{\n\
           fprintf(stderr, \"%s\\n\", {name}_status_message(status));\n\
           return 2;\n\
         }}\n",
        args.join(", ")
    ));
    for (i, (_, _, n)) in outputs.iter().enumerate() {
        c.push_str(&format!("  spill(argv[1], \"out{i}.bin\", out{i}, {n});\n"));
    }
    c.push_str("  return 0;\n}\n");
    c
}

fn numbered(dir: &Path, prefix: &str) -> Vec<(String, Tensor)> {
    (0..)
        .map(|k| dir.join(format!("{prefix}{k}.pb")))
        .take_while(|p| p.exists())
        .map(|p| tessera_frontend::read_named_tensor_pb(&p).expect("fixture .pb"))
        .collect()
}

#[test]
fn c_program_links_the_library_and_matches_onnxruntime() {
    let fixture = root().join("tests/models/bert_legacy_op17");
    let model = fixture.join("model.onnx");
    let data = fixture.join("test_data_set_0");
    let inputs = numbered(&data, "input_");
    let expected = numbered(&data, "output_");
    let shape = &inputs[0].1.shape;
    let out = tempdir("cpu_lib");
    let lib_dir = out.join("lib");
    let status = tessera()
        .args(["compile", "--target", "cpu", "--emit", "lib", "-o"])
        .arg(&lib_dir)
        .arg(&model)
        .args(["--dim", &format!("batch={}", shape[0])])
        .args(["--dim", &format!("seq={}", shape[1])])
        .output()
        .expect("tessera runs");
    assert!(
        status.status.success(),
        "tessera compile --emit lib failed:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let name = "bert_legacy_op17";
    let header = std::fs::read_to_string(lib_dir.join(format!("{name}.h"))).expect("header");
    assert!(header.contains(&format!("int32_t {name}_run(")), "{header}");

    let outputs: Vec<(String, DType, usize)> = expected
        .iter()
        .map(|(n, t)| (n.clone(), t.dtype, t.to_bytes().len()))
        .collect();
    let src = out.join("main.c");
    std::fs::write(&src, c_program(name, &inputs, &outputs)).unwrap();
    let exe = out.join("run_model");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let build = Command::new(&cc)
        .args(["-O2", "-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&lib_dir)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib_dir.display()))
        .arg(format!("-l{name}"))
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .output()
        .expect("the C compiler runs");
    assert!(
        build.status.success(),
        "the C program does not compile against the header:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let io = out.join("io");
    std::fs::create_dir_all(&io).unwrap();
    for (i, (_, t)) in inputs.iter().enumerate() {
        std::fs::write(io.join(format!("in{i}.bin")), t.to_bytes()).unwrap();
    }
    for threads in ["1", "2"] {
        let run = Command::new(&exe)
            .arg(&io)
            .arg(threads)
            .output()
            .expect("runs");
        assert!(
            run.status.success(),
            "the C program failed:\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        for (i, (n, want)) in expected.iter().enumerate() {
            let bytes = std::fs::read(io.join(format!("out{i}.bin"))).unwrap();
            let got = Tensor::from_bytes(want.dtype, want.shape.clone(), &bytes).unwrap();
            let c = compare(&got, want, Tolerance::for_dtype(want.dtype));
            assert!(c.ok, "output '{n}' with {threads} thread(s): {c}");
        }
    }

    // A token id past the vocabulary: a nonzero status whose message names
    // the embedding node, not a clamped row.
    let ids = &inputs[0].1;
    let mut bad = ids.to_i64_vec();
    bad[0] = 1 << 40;
    let bad = Tensor::from_i64(ids.dtype, ids.shape.clone(), &bad);
    std::fs::write(io.join("in0.bin"), bad.to_bytes()).unwrap();
    let run = Command::new(&exe).arg(&io).arg("2").output().expect("runs");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("node '") && err.contains("out of range"),
        "{err}"
    );
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
