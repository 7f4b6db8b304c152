//! matmul, gemm and linear on cpu against the reference interpreter: odd
//! shapes (tile remainders in M, N and K, several K blocks), batched and
//! broadcast batch dims, 1-D operands, every Gemm attribute combination,
//! constant and run-time B, every dtype, every `linear` epilogue; 1 and 2
//! threads must agree bit for bit (`common::check`).

use crate::common::check;

/// A graph under construction: several independent ops, one output each,
/// so one compilation covers many cases.
#[derive(Default)]
struct G {
    params: Vec<String>,
    body: Vec<String>,
    outs: Vec<(String, String)>,
    consts: Vec<String>,
    n: usize,
}

fn ty(shape: &[usize], d: &str) -> String {
    let mut s = String::from("tensor<");
    for n in shape {
        s.push_str(&format!("{n}x"));
    }
    s.push_str(d);
    s.push('>');
    s
}

/// numpy.matmul's result shape (written independently of the ir crate's).
fn matmul_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let r = ab.len().max(bb.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= r {
            s[i + s.len() - r]
        } else {
            1
        }
    };
    let mut out: Vec<usize> = (0..r).map(|i| dim(ab, i).max(dim(bb, i))).collect();
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    out
}

/// The f16 (or bf16) bits of `x`, which must be exactly representable
/// with a normal exponent (or zero).
fn half_bits(x: f32, bf16: bool) -> u16 {
    let b = x.to_bits();
    if bf16 {
        return (b >> 16) as u16;
    }
    if x == 0.0 {
        return ((b >> 16) & 0x8000) as u16;
    }
    let sign = (b >> 16) & 0x8000;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = (b >> 13) & 0x3ff;
    (sign | ((exp as u32) << 10) | mant) as u16
}

impl G {
    fn fresh(&mut self) -> usize {
        self.n += 1;
        self.n
    }

    fn input(&mut self, shape: &[usize], d: &str) -> String {
        let n = self.fresh();
        self.params.push(format!("%x{n}: {}", ty(shape, d)));
        format!("%x{n}")
    }

    /// A constant of deterministic pseudo-random small values.
    fn constant(&mut self, shape: &[usize], d: &str) -> String {
        let n = self.fresh();
        let len: usize = shape.iter().product();
        let vals: Vec<i64> = (0..len)
            .map(|i| ((i * 37 + n * 11) % 17) as i64 - 8)
            .collect();
        let body = match d {
            // Half types are written as little-endian bits; v / 8 is exact in both.
            "f16" | "bf16" => {
                let hex: String = vals
                    .iter()
                    .map(|&v| half_bits(v as f32 / 8.0, d == "bf16"))
                    .map(|b| format!("{:02x}{:02x}", b & 0xff, b >> 8))
                    .collect();
                format!("\"0x{hex}\"")
            }
            _ => {
                let items: Vec<String> = vals
                    .iter()
                    .map(|&v| {
                        if d.starts_with('i') {
                            format!("{v}")
                        } else {
                            format!("{:.3}", v as f64 / 8.0)
                        }
                    })
                    .collect();
                format!("[{}]", items.join(", "))
            }
        };
        self.consts
            .push(format!("  @w{n} = dense<{body}> : {}", ty(shape, d)));
        self.body.push(format!(
            "%w{n} = tsr.constant {{value = @w{n}}} : () -> {}",
            ty(shape, d)
        ));
        format!("%w{n}")
    }

    fn operand(&mut self, shape: &[usize], d: &str, constant: bool) -> String {
        if constant {
            self.constant(shape, d)
        } else {
            self.input(shape, d)
        }
    }

    /// `%y = tsr.<op> operands {attrs}` with an output of type `out`.
    fn op(&mut self, op: &str, operands: &[(String, String)], attrs: &str, out: &str) {
        let n = self.fresh();
        let names: Vec<&str> = operands.iter().map(|(v, _)| v.as_str()).collect();
        let tys: Vec<&str> = operands.iter().map(|(_, t)| t.as_str()).collect();
        self.body.push(format!(
            "%y{n} = tsr.{op} {}{attrs} : ({}) -> {out}",
            names.join(", "),
            tys.join(", ")
        ));
        self.outs.push((format!("%y{n}"), out.to_string()));
    }

    fn matmul(&mut self, a: &[usize], b: &[usize], d: &str, const_b: bool) {
        let x = self.input(a, d);
        let w = self.operand(b, d, const_b);
        let out = ty(&matmul_shape(a, b), d);
        self.op("matmul", &[(x, ty(a, d)), (w, ty(b, d))], "", &out);
    }

    fn text(&self) -> String {
        let outs: Vec<String> = self
            .outs
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("\"y{i}\": {t}"))
            .collect();
        let names: Vec<&str> = self.outs.iter().map(|(v, _)| v.as_str()).collect();
        let mut s = format!(
            "tsr.graph @g({}) -> ({}) {{\n",
            self.params.join(", "),
            outs.join(", ")
        );
        for l in &self.body {
            s.push_str(&format!("  {l}\n"));
        }
        s.push_str(&format!("  tsr.return {}\n}}\n", names.join(", ")));
        if !self.consts.is_empty() {
            s.push_str(&format!(
                "tsr.constants {{\n{}\n}}\n",
                self.consts.join("\n")
            ));
        }
        s
    }

    fn check(&self) {
        check(&self.text());
    }
}

const ODD: &[[usize; 3]] = &[
    [1, 1, 1],
    [7, 13, 5],
    [33, 65, 17],
    [130, 257, 70],
    [15, 600, 33],
    [29, 31, 97],
];

#[test]
fn f32_odd_shapes_with_constant_and_runtime_b() {
    let mut g = G::default();
    for &[m, k, n] in ODD {
        for const_b in [true, false] {
            g.matmul(&[m, k], &[k, n], "f32", const_b);
        }
    }
    g.check();
}

#[test]
fn f32_batched_broadcast_and_one_d() {
    let mut g = G::default();
    for const_b in [true, false] {
        g.matmul(&[2, 3, 5, 7], &[7, 4], "f32", const_b);
        g.matmul(&[2, 1, 5, 7], &[3, 7, 4], "f32", const_b);
        g.matmul(&[5, 7], &[2, 3, 7, 40], "f32", const_b);
        g.matmul(&[3, 1, 9, 20], &[1, 2, 20, 35], "f32", const_b);
        g.matmul(&[7], &[7, 4], "f32", const_b);
        g.matmul(&[2, 3, 7], &[7], "f32", const_b);
        g.matmul(&[7], &[7], "f32", const_b);
        g.matmul(&[7], &[2, 7, 33], "f32", const_b);
        // Zero-size operands (K = 0, empty outputs) are left out: kernels
        // with zero-size memref arguments do not lower yet (func-to-llvm's
        // bare-pointer convention rejects them).
    }
    g.check();
}

#[test]
fn f32_tall_projection_folds_batch_into_rows() {
    // [batch, seq, K] @ [K, N] with a K of several blocks and N of several
    // panels and thread blocks.
    let mut g = G::default();
    g.matmul(&[2, 67, 300], &[300, 200], "f32", true);
    g.matmul(&[2, 67, 300], &[300, 200], "f32", false);
    g.check();
}

#[test]
fn other_dtypes() {
    for d in ["f64", "f16", "bf16", "i32", "i64", "i8"] {
        let mut g = G::default();
        g.matmul(&[7, 13], &[13, 5], d, false);
        g.matmul(&[2, 1, 5, 7], &[3, 7, 4], d, true);
        g.matmul(&[7], &[2, 7, 3], d, false);
        g.check();
    }
}

/// Every transA x transB x alpha x beta x C-broadcast combination.
fn gemm_cases(d: &str, const_b: bool, alphas: &[&str], betas: &[&str]) -> G {
    let (m, k, n) = (9, 21, 35);
    let mut g = G::default();
    let c_shapes: &[Option<&[usize]>] = &[
        None,
        Some(&[]),
        Some(&[n]),
        Some(&[1, n]),
        Some(&[m, 1]),
        Some(&[m, n]),
    ];
    for ta in [0, 1] {
        for tb in [0, 1] {
            for alpha in alphas {
                for beta in betas {
                    for c in c_shapes {
                        let ash: Vec<usize> = if ta == 1 { vec![k, m] } else { vec![m, k] };
                        let bsh: Vec<usize> = if tb == 1 { vec![n, k] } else { vec![k, n] };
                        let x = g.input(&ash, d);
                        let w = g.operand(&bsh, d, const_b);
                        let mut ops = vec![(x, ty(&ash, d)), (w, ty(&bsh, d))];
                        if let Some(c) = c {
                            let cv = g.input(c, d);
                            ops.push((cv, ty(c, d)));
                        }
                        let attrs = format!(
                            " {{alpha = {alpha}, beta = {beta}, transA = {ta}, transB = {tb}}}"
                        );
                        g.op("gemm", &ops, &attrs, &ty(&[m, n], d));
                    }
                }
            }
        }
    }
    g
}

#[test]
fn gemm_every_attribute_combination_f32() {
    gemm_cases("f32", false, &["1.0", "0.5"], &["1.0", "0.0", "-2.0"]).check();
    gemm_cases("f32", true, &["1.0", "-1.5"], &["1.0", "0.25"]).check();
}

#[test]
fn gemm_other_dtypes() {
    gemm_cases("f64", false, &["1.0", "0.5"], &["1.0", "-2.0"]).check();
    gemm_cases("f16", true, &["1.0", "0.5"], &["0.0", "2.0"]).check();
    gemm_cases("i32", false, &["1.0", "3.0"], &["1.0", "-2.0", "0.0"]).check();
}

#[test]
fn linear_every_epilogue() {
    for d in ["f32", "f16", "f64"] {
        let mut g = G::default();
        for act in [
            "none",
            "relu",
            "gelu",
            "gelu_tanh",
            "silu",
            "sigmoid",
            "tanh",
        ] {
            // Bias per column, residual per element, batched activations.
            let (a, b) = ([2, 19, 40], [40, 37]);
            let out = [2, 19, 37];
            let x = g.input(&a, d);
            let w = g.constant(&b, d);
            let bias = g.constant(&[37], d);
            let res = g.input(&out, d);
            let ops = [
                (x, ty(&a, d)),
                (w, ty(&b, d)),
                (bias, ty(&[37], d)),
                (res, ty(&out, d)),
            ];
            g.op(
                "linear",
                &ops,
                &format!(" {{activation = \"{act}\"}}"),
                &ty(&out, d),
            );
        }
        // Optional operands absent, per-row bias, broadcast residual, runtime B.
        let x = g.input(&[19, 40], d);
        let w = g.input(&[40, 37], d);
        g.op(
            "linear",
            &[(x.clone(), ty(&[19, 40], d)), (w.clone(), ty(&[40, 37], d))],
            " {activation = \"gelu\"}",
            &ty(&[19, 37], d),
        );
        let bias = g.input(&[19, 1], d);
        let res = g.input(&[37], d);
        let ops = [
            (x, ty(&[19, 40], d)),
            (w, ty(&[40, 37], d)),
            (bias, ty(&[19, 1], d)),
            (res, ty(&[37], d)),
        ];
        g.op(
            "linear",
            &ops,
            " {activation = \"silu\"}",
            &ty(&[19, 37], d),
        );
        g.check();
    }
}

#[test]
fn linear_residual_per_batch_item_keeps_batches_apart() {
    // A bias that differs per batch item cannot fold the batch into rows.
    let mut g = G::default();
    let x = g.input(&[3, 10, 16], "f32");
    let w = g.constant(&[16, 20], "f32");
    let bias = g.input(&[3, 1, 20], "f32");
    let ops = [
        (x, ty(&[3, 10, 16], "f32")),
        (w, ty(&[16, 20], "f32")),
        (bias, ty(&[3, 1, 20], "f32")),
    ];
    g.op(
        "linear",
        &ops,
        " {activation = \"relu\"}",
        &ty(&[3, 10, 20], "f32"),
    );
    g.check();
}

/// Weights of 1 MiB and more take the microkernel that prefetches the next
/// B panel: odd M (a partial row panel), K past one KC block and not a
/// multiple of it (the next-K-block target and the end-of-buffer clamp),
/// N with a partial column panel, plain and batched A.
#[test]
fn big_constant_b_prefetches_the_next_panel() {
    let mut g = G::default();
    g.matmul(&[37, 600], &[600, 500], "f32", true);
    g.matmul(&[2, 19, 520], &[520, 530], "f32", true);
    let text = g.text();
    let graph = crate::common::graph(&text);
    let emitted = tessera_cpu::emit_mlir(
        &graph,
        &Default::default(),
        &tessera_cpu::CpuOptions::default(),
    )
    .expect("emit");
    assert!(
        emitted.mlir.contains("memref.prefetch"),
        "the 1 MiB weights did not take the prefetching microkernel"
    );
    check(&text);
}
