//! f32 GEMM throughput of the cpu target against this CPU's FMA peak and a
//! plain reference (`matrixmultiply`), measured in the same run.
//!
//! `cargo run --release -p tessera-cpu --example gemm_bench -- [--threads N] [--runs R]`
//!
//! Each shape is a one-op graph `a[M, K] @ b[K, N]` with b constant (a
//! weight), compiled through the crate API; the timed call is the compiled
//! entry on preallocated buffers (no tensor conversion), R runs after a
//! warm-up; GFLOP/s from the best run (the machine may be shared), the
//! median shown beside it. The peak is measured, not assumed: a loop of
//! independent 512-bit FMAs per thread gives the achievable flop rate at the
//! clock the cores actually run. `TESSERA_GEMM_TILE=MRxNRxKCxMC[xNC[xU]]`
//! overrides the blocking, to tune it. `--asm` prints the microkernel's
//! machine code instead (to check for zmm FMAs with broadcast memory
//! operands and no spills in the K loop).

use std::time::Instant;
use tessera_cpu::emit::Emitted;
use tessera_cpu::{jit, llvm, CpuOptions};
use tessera_ir::{Attrs, Builder, DType, Graph, OpKind, Tensor, TensorType};

const SHAPES: &[(&str, [usize; 3])] = &[
    ("square", [1024, 1024, 1024]),
    ("tall", [4096, 768, 768]),
    ("bert-ffn1", [128, 768, 3072]),
    ("bert-ffn2", [128, 3072, 768]),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn graph(m: usize, k: usize, n: usize) -> Result<Graph, String> {
    let mut g = Graph::new("gemm");
    let a = g.add_input("a", TensorType::fixed(&[m as i64, k as i64], DType::F32));
    let mut b = Builder::new(&mut g);
    let w = b.constant("w", Tensor::f32(vec![k, n], values(k * n, 2)).into(), None);
    let y = b.op(
        OpKind::MatMul,
        vec![Some(a), Some(w)],
        Attrs::new(),
        1,
        None,
    )?[0];
    g.add_output("y", y);
    Ok(g)
}

/// A compiled graph called directly on byte buffers.
struct Compiled {
    _engine: inkwell::execution_engine::ExecutionEngine<'static>,
    entry: extern "C" fn(*const *mut u8, i32) -> i32,
    arena: Vec<u8>,
    weights: Vec<u8>,
}

fn compile(g: &Graph, threads: usize) -> Result<Compiled, String> {
    let opts = CpuOptions {
        threads,
        ..CpuOptions::default()
    };
    let emitted: Emitted =
        tessera_cpu::emit_mlir(g, &Default::default(), &opts).map_err(|e| e.to_string())?;
    // The context must outlive the engine; a benchmark leaks it.
    let ctx: &'static inkwell::context::Context =
        Box::leak(Box::new(inkwell::context::Context::create()));
    let module =
        match jit::compile_module(ctx, &emitted, &opts, false).map_err(|e| e.to_string())? {
            jit::Lowered::Module(m, _, _) => m,
            jit::Lowered::MlirText(_) => return Err("expected an LLVM module".into()),
        };
    let j = llvm::Jit::new(&module)?;
    let addr = j.address(jit::PACKED)?;
    // SAFETY: the packed entry has this signature (jit::add_packed_entry).
    let entry: extern "C" fn(*const *mut u8, i32) -> i32 = unsafe { std::mem::transmute(addr) };
    Ok(Compiled {
        _engine: j.into_engine(),
        entry,
        arena: vec![0; emitted.plan.arena_bytes.max(1)],
        weights: emitted.weights,
    })
}

/// Seconds per call after two warm-up calls: (best, median) of `runs`.
/// On a shared machine the best run is the one least disturbed by others.
fn time(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    f();
    let v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    (v.iter().copied().fold(f64::INFINITY, f64::min), median(v))
}

/// GFLOP/s of `threads` threads each running independent 512-bit FMAs.
fn fma_peak(threads: usize) -> f64 {
    #[target_feature(enable = "avx512f")]
    fn chains(iters: u64) -> f32 {
        use std::arch::x86_64::*;
        let mut acc = [_mm512_set1_ps(0.0); 16];
        let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        acc.iter().map(|a| _mm512_reduce_add_ps(*a)).sum()
    }
    if !std::arch::is_x86_feature_detected!("avx512f") {
        return f64::NAN;
    }
    let iters = 2_000_000u64;
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                // SAFETY: avx512f was detected above.
                std::hint::black_box(unsafe { chains(iters) })
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    (threads as u64 * iters * 16 * 16 * 2) as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn print_microkernel_asm() -> Result<(), String> {
    use tessera_backend::{Artifact, Backend, Stage};
    let cpu = tessera_cpu::Cpu {
        opts: CpuOptions::default(),
    };
    let asm = match cpu
        .emit(&graph(64, 64, 64)?, Stage::Asm)
        .map_err(|e| e.to_string())?
    {
        Artifact::Text(t) => t,
        Artifact::Binary(_) => return Err("expected assembly text".into()),
    };
    let mut inside = false;
    for line in asm.lines() {
        if line.starts_with("tsr_sgemm_") {
            inside = true;
        }
        if inside {
            println!("{line}");
            if line.contains(".Lfunc_end") {
                break;
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|s| s.parse::<usize>())
    };
    let thread_counts: Vec<usize> = match arg("--threads") {
        Some(t) => vec![t.map_err(|e| format!("--threads: {e}"))?],
        None => vec![1, 2],
    };
    let runs = arg("--runs")
        .transpose()
        .map_err(|e| format!("--runs: {e}"))?
        .unwrap_or(15);
    if args.iter().any(|a| a == "--asm") {
        return print_microkernel_asm();
    }

    // The best of several short runs: the clock the cores reach when the
    // machine is not shared.
    let peaks: Vec<(usize, f64)> = thread_counts
        .iter()
        .map(|&t| (t, (0..10).map(|_| fma_peak(t)).fold(0.0, f64::max)))
        .collect();
    for (t, p) in &peaks {
        println!(
            "fp32 FMA peak, {t} thread(s): {p:.1} GFLOP/s (= {:.2} GHz x 64 flop/cycle per core)",
            p / 64.0 / *t as f64
        );
    }
    println!(
        "{:<10} {:>16} {:>4} {:>9} {:>9} {:>8} {:>7} {:>16}",
        "shape", "MxKxN", "thr", "best ms", "median ms", "GFLOP/s", "%peak", "matrixmultiply"
    );
    for (name, [m, k, n]) in SHAPES {
        let (m, k, n) = (*m, *k, *n);
        let g = graph(m, k, n)?;
        let flop = 2.0 * (m * k * n) as f64;
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        // The reference, single-threaded.
        let mut want = vec![0f32; m * n];
        let (t_ref, _) = time(runs.min(5), || unsafe {
            // SAFETY: the slices hold m*k, k*n and m*n elements, row-major.
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                want.as_mut_ptr(),
                n as isize,
                1,
            );
        });
        for (t, peak) in &peaks {
            let mut c = compile(&g, *t)?;
            let mut a_bytes: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
            let mut y_bytes = vec![0u8; m * n * 4];
            let ptrs = [
                a_bytes.as_mut_ptr(),
                y_bytes.as_mut_ptr(),
                c.arena.as_mut_ptr(),
                c.weights.as_mut_ptr(),
            ];
            let entry = c.entry;
            let (secs, med) = time(runs, || {
                entry(ptrs.as_ptr(), *t as i32);
            });
            let got: Vec<f32> = y_bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let err = got
                .iter()
                .zip(&want)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            if err > 1e-3 * (k as f32).sqrt() {
                return Err(format!(
                    "{name}: result differs from matrixmultiply by {err}"
                ));
            }
            let gf = flop / secs / 1e9;
            println!(
                "{name:<10} {:>16} {t:>4} {:>9.3} {:>9.3} {gf:>8.1} {:>6.1}% {:>11.1} GF/s",
                format!("{m}x{k}x{n}"),
                secs * 1e3,
                med * 1e3,
                100.0 * gf / peak,
                flop / t_ref / 1e9
            );
        }
    }
    Ok(())
}
