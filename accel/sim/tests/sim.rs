use std::collections::BTreeMap;
use tessera_accel_isa::asm::assemble;
use tessera_accel_isa::{bf16_to_f32, f32_to_bf16, HwConfig, Stream};
use tessera_sim::{chrome_trace, Report, SimError, SimErrorKind, SimOutput, Simulator};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
}

fn run_text(
    cfg: HwConfig,
    text: &str,
    inputs: &[(&str, Vec<u8>)],
) -> Result<(SimOutput, Report), SimError> {
    let s = assemble(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let inputs: BTreeMap<String, Vec<u8>> = inputs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Simulator::new(cfg).run(&s, &inputs)
}

fn hexdata(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(|c| {
            format!(
                ".data {}\n",
                c.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    I8,
    I4,
    I2,
    Bf16Lut,
}

/// C[8x32] = A[8x32] . W[32x32]^T on the 16x16 edge array: 2 K-chunks (inner
/// loop, first_overwrite) x 2 N-tiles (outer loop), then a requantizing store
/// (integer modes) or a raw f32 store (LUT mode).
fn gemm_stream(mode: Mode, w: &[i64]) -> String {
    let (m, k, n) = (8usize, 32usize, 32usize);
    let wbits = match mode {
        Mode::I8 => 8,
        Mode::I4 => 4,
        _ => 2,
    };
    let abytes = if mode == Mode::Bf16Lut { 2 } else { 1 };
    // DRAM: A at 0, W (image) at 0x400, output at 0x800.
    let mut wimg = vec![0u8; n * k * wbits / 8];
    for j in 0..n {
        for kk in 0..k {
            let bit = (j * k + kk) * wbits;
            let v = (w[j * k + kk] as u8) & ((1u16 << wbits) - 1) as u8;
            wimg[bit / 8] |= v << (bit % 8);
        }
    }
    let mut t = String::from(".tsa 2\n.config_hash 0x0000000000000000\n.dram_size 4096\n");
    t += &format!(
        ".buffer input a {} [8,32] @0x0\n",
        if abytes == 2 { "bf16" } else { "i8" }
    );
    t += ".buffer output c i8 [8,32] @0x800\n";
    let a_tile_g = m * 16 * abytes / 16;
    for kt in 0..2 {
        t += &format!(
            "load mem=sp elem_bytes={abytes} dram={:#x} sram={} y_size={m} x_size=16 x_stride=32\n",
            kt * 16 * abytes,
            kt * a_tile_g
        );
    }
    let w_row_dram = k * wbits / 8;
    let w_tile_row = 16 * wbits / 8;
    let w_tile_g = 16 * w_tile_row / 16;
    for nt in 0..2 {
        for kt in 0..2 {
            let last = nt == 1 && kt == 1;
            t += &format!(
                "load{} mem=sp dram={:#x} sram={} y_size=16 x_size={w_tile_row} x_stride={w_row_dram}\n",
                if last { " push_next" } else { "" },
                0x400 + nt * 16 * w_row_dram + kt * w_tile_row,
                4096 + (nt * 2 + kt) * w_tile_g
            );
        }
    }
    let mode_name = ["i8xi8", "i8xi4", "i8xi2", "bf16xi2"][mode as usize];
    if mode != Mode::Bf16Lut {
        t += "config reg=gemm_a_zero_point value=3\n";
    }
    t += &format!(
        "gemm pop_prev push_next mode={mode_name} acc_mode=first_overwrite m=8 k=16 n=16 w=4096 iter_out=2 iter_in=2 a_in=1 w_out=2 w_in=1 c_out=1\n"
    );
    if mode == Mode::Bf16Lut {
        t += "store pop_prev fmt=i32 dram=0x800 y_size=8 x_size=16 x_stride=32\n";
        t += "store push_prev fmt=i32 dram=0x840 sram=128 y_size=8 x_size=16 x_stride=32\n";
    } else {
        t += "config reg=store_zero_point value=-5\n";
        t += "store pop_prev dram=0x800 y_size=8 x_size=16 x_stride=32 mult=20000 shift=18 clamp_lo=-100 clamp_hi=120\n";
        t += "store push_prev dram=0x810 sram=128 y_size=8 x_size=16 x_stride=32 mult=20000 shift=18 clamp_lo=-100 clamp_hi=120\n";
    }
    t += "finish pop_next\n";
    t += ".image 0x400\n";
    t += &hexdata(&wimg);
    t
}

fn gemm_case(mode: Mode, seed: u64) {
    let mut rng = Rng(seed);
    let (m, k, n) = (8usize, 32usize, 32usize);
    let (wlo, whi) = match mode {
        Mode::I8 => (-20, 20),
        Mode::I4 => (-8, 7),
        Mode::I2 => (-2, 1),
        Mode::Bf16Lut => (-1, 1), // ternary
    };
    let a: Vec<i64> = (0..m * k).map(|_| rng.int(-20, 20)).collect();
    let w: Vec<i64> = (0..n * k).map(|_| rng.int(wlo, whi)).collect();
    // bf16 activations: multiples of 1/8 in [-8, 8], so every partial sum is exact.
    let af: Vec<f32> = (0..m * k).map(|_| rng.int(-64, 64) as f32 / 8.0).collect();
    let text = gemm_stream(mode, &w);
    let input: Vec<u8> = if mode == Mode::Bf16Lut {
        af.iter()
            .flat_map(|&x| f32_to_bf16(x).to_le_bytes())
            .collect()
    } else {
        a.iter().map(|&x| x as i8 as u8).collect()
    };
    let (out, rep) = run_text(HwConfig::edge(), &text, &[("a", input)]).unwrap();
    if mode == Mode::Bf16Lut {
        for r in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|kk| af[r * k + kk] as f64 * w[j * k + kk] as f64)
                    .sum();
                let at = 0x800 + (r * 32 + j) * 4;
                let got = f32::from_le_bytes(out.dram[at..at + 4].try_into().unwrap());
                assert_eq!(got as f64, want, "C[{r}][{j}]");
            }
        }
    } else {
        let c = &out.outputs["c"];
        for r in 0..m {
            for j in 0..n {
                let acc: i64 = (0..k).map(|kk| (a[r * k + kk] - 3) * w[j * k + kk]).sum();
                let q = ((acc as f64) * 20000.0 / (1u64 << 18) as f64).round_ties_even() - 5.0;
                let want = q.clamp(-100.0, 120.0) as i8;
                assert_eq!(c[r * n + j] as i8, want, "C[{r}][{j}] acc={acc}");
            }
        }
    }
    assert_eq!(rep.macs, (m * k * n) as u64);
    assert_eq!(rep.insn_counts["gemm"], 1);
    assert_eq!(rep.insn_counts["load"], 6);
    // 4 folds of 2*16 + 16 + 8 - 2 cycles; A and W tiles sit in different banks.
    assert_eq!(rep.gemm_busy_cycles, 4 * 54);
    assert_eq!(rep.bank_conflict_cycles, 0);
}

#[test]
fn int8_gemm_with_requantize_matches_reference() {
    gemm_case(Mode::I8, 1);
    gemm_case(Mode::I8, 2);
}

#[test]
fn int4_weight_gemm_matches_reference() {
    gemm_case(Mode::I4, 3);
}

#[test]
fn int2_weight_gemm_matches_reference() {
    gemm_case(Mode::I2, 4);
}

#[test]
fn ternary_lut_bf16_gemm_matches_reference() {
    gemm_case(Mode::Bf16Lut, 5);
}

#[test]
fn softmax_on_the_vector_unit() {
    let (rows, len) = (4usize, 40usize);
    let mut rng = Rng(11);
    let x: Vec<f32> = (0..rows * len)
        .map(|_| rng.int(-4000, 4000) as f32 / 1000.0)
        .collect();
    let text = "\
.tsa 2
.config_hash 0x0000000000000000
.dram_size 2048
.buffer input x f32 [4,40] @0x0
.buffer output y f32 [4,40] @0x400
load push_next mem=acc elem_bytes=4 y_size=4 x_size=40 x_stride=40
vec pop_prev op=reduce_max dst=200 len=40 rows=4 stride=40 dst_stride=1
vec op=sub src1_mode=row src1=200 len=40 rows=4 stride=40 dst_stride=40
vec op=exp len=40 rows=4 stride=40 dst_stride=40
vec op=reduce_sum dst=210 len=40 rows=4 stride=40 dst_stride=1
vec op=recip dst=210 src0=210 len=1 rows=4 stride=1 dst_stride=1
vec push_next op=mul src1_mode=row src1=210 len=40 rows=4 stride=40 dst_stride=40
store pop_prev push_prev fmt=i32 dram=0x400 y_size=4 x_size=40 x_stride=40
finish pop_next
";
    let input: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (out, rep) = run_text(HwConfig::edge(), text, &[("x", input)]).unwrap();
    let y = &out.outputs["y"];
    // Documented bound: one rounding per op, len roundings in the sum, and the
    // rounding of (x - max) amplified by |x - max| <= 8 inside exp.
    let tol = (len as f64 + 4.0 + 8.0) * 2f64.powi(-24);
    for r in 0..rows {
        let row = &x[r * len..(r + 1) * len];
        let mx = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
        for i in 0..len {
            let want = (row[i] as f64 - mx).exp() / sum;
            let got = f32::from_le_bytes(
                y[(r * len + i) * 4..(r * len + i) * 4 + 4]
                    .try_into()
                    .unwrap(),
            ) as f64;
            assert!(
                (got - want).abs() <= tol * want,
                "row {r} col {i}: {got} vs {want}"
            );
        }
    }
    assert_eq!(rep.insn_counts["vec"], 6);
    // exp on 4 rows x 3 lane groups at II 4, plus the pipeline latency.
    assert!(rep.vec_busy_cycles > 0 && rep.actions.vec_special == 164);
}

#[test]
fn vector_elementwise_ops_against_f64() {
    // Each op reads words 0..32 and writes 100.., stored as raw words.
    let xs: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * 0.37).collect();
    let erf = |x: f64| tessera_sim::exec::erf(x);
    type F = fn(f64) -> f64;
    let ops: [(&str, F); 7] = [
        ("exp", |x| x.exp()),
        ("sigmoid", |x| 1.0 / (1.0 + (-x).exp())),
        ("silu", |x| x / (1.0 + (-x).exp())),
        ("tanh", |x| x.tanh()),
        ("gelu_tanh", |x| {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }),
        ("recip", |x| 1.0 / x),
        ("gelu", |x| x * 0.5 * erfc_by_quadrature(-x / 2f64.sqrt())),
    ];
    for (name, f) in ops {
        let text = format!(
            ".tsa 2\n.config_hash 0x0000000000000000\n.dram_size 1024\n.buffer input x f32 [32] @0x0\n.buffer output y i32 [32] @0x100\n\
             load push_next mem=acc elem_bytes=4 y_size=1 x_size=32\nvec pop_prev push_next op={name} dst=100 len=32 rows=1\n\
             store pop_prev push_prev fmt=i32 dram=0x100 sram=100 y_size=1 x_size=32\nfinish pop_next\n"
        );
        let input: Vec<u8> = xs.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (out, _) = run_text(HwConfig::edge(), &text, &[("x", input)]).unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let got =
                f32::from_le_bytes(out.outputs["y"][i * 4..i * 4 + 4].try_into().unwrap()) as f64;
            let want = f(x as f64);
            // Documented: within 1 ulp of f32 (the simulator rounds an f64 result once).
            assert!(
                (got - want).abs() <= 2f64.powi(-23) * want.abs() + 1e-45,
                "{name}({x}) = {got}, want {want}"
            );
        }
    }
    assert!((erf(1.0) - 0.8427007929497149).abs() < 1e-15);
    assert!((erf(-0.5) + 0.5204998778130465).abs() < 1e-15);
    assert!((erf(3.5) - 0.9999992569016276).abs() < 1e-15);
    assert!((erf(3.0) - 0.9999779095030014).abs() < 1e-15);
    assert!((erf(2.5) - 0.999593047982555).abs() < 1e-15);
    assert!((erf(5.0) - 0.9999999999984626).abs() < 1e-15);
}

/// erfc from its integral (Simpson's rule over [z, z + 12]), independent of the
/// simulator's series/continued-fraction implementation and free of the
/// cancellation in 1 - erf for large z.
fn erfc_by_quadrature(z: f64) -> f64 {
    if z < 0.0 {
        return 2.0 - erfc_by_quadrature(-z);
    }
    let n = 40000;
    let h = 12.0 / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(z) + f(z + 12.0);
    for i in 1..n {
        s += f(z + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn vector_integer_rotary_and_conversions() {
    // words 0..8: i32 data; 8..16: rotary x; 16..24: cos|sin; results from 100.
    let mut words: Vec<u32> = vec![5, -7i32 as u32, 100, -100i32 as u32, 0, 1, 2, 3];
    let rx = [1.0f32, 2.0, 3.0, 4.0, 0.5, -1.0, 2.5, -3.0];
    let cs = [0.6f32, 1.0, 0.0, -0.8, 0.8, 0.0, 1.0, 0.6];
    words.extend(rx.iter().map(|v| v.to_bits()));
    words.extend(cs.iter().map(|v| v.to_bits()));
    words.extend([2.5f32, 3.5, -2.5, 1e10].iter().map(|v| v.to_bits()));
    let text = "\
.tsa 2
.config_hash 0x0000000000000000
.dram_size 1024
.buffer input x i32 [28] @0x0
.buffer output y i32 [32] @0x200
load push_next mem=acc elem_bytes=4 y_size=1 x_size=28
vec pop_prev op=mul dtype=i32 src1_mode=imm src1=65533 dst=100 len=8 rows=1
vec op=reduce_sum dtype=i32 dst=108 len=8 rows=1
vec op=rotary src0=8 src1=16 dst=110 len=8 rows=1
vec op=f2i src0=24 dst=118 len=4 rows=1
vec push_next op=i2f src0=0 dst=122 len=2 rows=1
store pop_prev push_prev fmt=i32 dram=0x200 sram=100 y_size=1 x_size=24
finish pop_next
";
    let input: Vec<u8> = words.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (out, _) = run_text(HwConfig::edge(), text, &[("x", input)]).unwrap();
    let y: Vec<u32> = out.outputs["y"]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let yi = |i: usize| y[i] as i32;
    // imm 65533 = -3 as i16
    assert_eq!(
        (0..8).map(yi).collect::<Vec<_>>(),
        vec![-15, 21, -300, 300, 0, -3, -6, -9]
    );
    assert_eq!(yi(8), 5 - 7 + 100 - 100 + 1 + 2 + 3);
    // rotary, half-split pairs (x[i], x[i+4]) with cos = cs[i], sin = cs[i+4]
    let rot: Vec<f32> = (10..18).map(|i| f32::from_bits(y[i])).collect();
    for i in 0..4 {
        let (a, b, c, s) = (
            rx[i] as f64,
            rx[i + 4] as f64,
            cs[i] as f64,
            cs[i + 4] as f64,
        );
        assert!((rot[i] as f64 - (a * c - b * s)).abs() < 1e-6);
        assert!((rot[i + 4] as f64 - (b * c + a * s)).abs() < 1e-6);
    }
    assert_eq!(
        (18..22).map(yi).collect::<Vec<_>>(),
        vec![2, 4, -2, i32::MAX]
    ); // ties to even, saturating
    assert_eq!((f32::from_bits(y[22]), f32::from_bits(y[23])), (5.0, -7.0));
}

#[test]
fn bf16_store_rounds_to_nearest_even() {
    let vals = [1.0f32 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -3.3, 65504.0];
    let text = "\
.tsa 2
.config_hash 0x0000000000000000
.dram_size 256
.buffer input x f32 [4] @0x0
.buffer output y bf16 [4] @0x80
load push_next mem=acc elem_bytes=4 y_size=1 x_size=4
finish pop_prev push_next
store pop_prev fmt=bf16 dram=0x80 y_size=1 x_size=4
";
    // finish must be last: reorder so the store precedes it.
    let text = text.replace("finish pop_prev push_next\nstore pop_prev fmt=bf16 dram=0x80 y_size=1 x_size=4\n",
        "vec pop_prev push_next op=copy len=4 rows=1\nstore pop_prev push_prev fmt=bf16 dram=0x80 y_size=1 x_size=4\nfinish pop_next\n");
    let input: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (out, _) = run_text(HwConfig::edge(), &text, &[("x", input)]).unwrap();
    let got: Vec<u16> = out.outputs["y"]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(got[0], 0x3f80);
    assert_eq!(got[1], 0x3f82);
    assert_eq!(bf16_to_f32(got[2]), -3.296875);
    assert_eq!(got[3], 0x4780); // 65504 rounds up to 65536
}

#[test]
fn requantize_rounding_ties_to_even() {
    use tessera_sim::exec::{requantize, round_shift};
    let cases = [
        (5, 1, 2),
        (7, 1, 4),
        (-5, 1, -2),
        (-7, 1, -4),
        (6, 2, 2),
        (-6, 2, -2),
        (-3, 2, -1),
        (5, 2, 1),
        (-5, 2, -1),
        (9, 0, 9),
    ];
    for (p, s, want) in cases {
        assert_eq!(round_shift(p, s), want, "{p} >> {s}");
    }
    assert_eq!(requantize(1000, 3, 4, 0, -128, 127), 127); // 187.5 -> clamp
    assert_eq!(requantize(-1000, 3, 4, 10, -128, 127), -128); // -187.5 -> -188 + 10, clamped
    assert_eq!(requantize(-100, 3, 4, 10, -128, 127), -9); // -18.75 -> -19 + 10
    assert_eq!(requantize(-40, 3, 4, 10, -128, 127), 2); // -7.5 -> -8 (tie to even) + 10
    assert_eq!(
        requantize(i32::MIN, 65535, 31, 0, -128, 127),
        (-65535i64).clamp(-128, 127) as i8
    );
}

const EDGE_FOLD: u64 = 2 * 16 + 16 - 2; // plus T

#[test]
fn single_gemm_tile_cycles_follow_the_fill_drain_formula() {
    for m in [1u64, 40, 1023] {
        let text = format!("gemm m={m} k=16 n=16 w=4096 iter_out=1 iter_in=1\nfinish\n");
        let (_, rep) = run_text(HwConfig::edge(), &text, &[]).unwrap();
        let fold = EDGE_FOLD + m;
        assert_eq!(rep.gemm_busy_cycles, fold);
        // gemm dispatched at 0 and starts at 1; finish waits for the unit, 1 cycle.
        assert_eq!(rep.total_cycles, 1 + fold + 1);
        assert_eq!(rep.compute.busy_cycles, fold + 1);
        let util = (m * 256) as f64 / (256.0 * fold as f64);
        assert!((rep.array_utilization - util).abs() < 1e-12);
    }
    // A partially used array costs the same time: the formula uses the array dims.
    let (_, rep) = run_text(
        HwConfig::edge(),
        "gemm m=40 k=3 n=5 w=4096 iter_out=1 iter_in=1\nfinish\n",
        &[],
    )
    .unwrap();
    assert_eq!(rep.gemm_busy_cycles, EDGE_FOLD + 40);
    assert!((rep.array_utilization - (40.0 * 15.0) / (256.0 * 86.0)).abs() < 1e-12);
    // Server: 64x64 array.
    let (_, rep) = run_text(
        HwConfig::server(),
        "gemm m=40 k=64 n=64 w=8192 iter_out=1 iter_in=1\nfinish\n",
        &[],
    )
    .unwrap();
    assert_eq!(rep.gemm_busy_cycles, 2 * 64 + 64 + 40 - 2);
    // 2x3 loop: six folds.
    let (_, rep) = run_text(
        HwConfig::edge(),
        "gemm m=40 k=16 n=16 w=4096 iter_out=2 iter_in=3\nfinish\n",
        &[],
    )
    .unwrap();
    assert_eq!(rep.gemm_busy_cycles, 6 * (EDGE_FOLD + 40));
    // Same bank for A and W: +k cycles per fold.
    let (_, rep) = run_text(
        HwConfig::edge(),
        "gemm m=40 k=16 n=16 iter_out=1 iter_in=1\nfinish\n",
        &[],
    )
    .unwrap();
    assert_eq!(rep.gemm_busy_cycles, EDGE_FOLD + 40 + 16);
    assert_eq!(rep.bank_conflict_cycles, 16);
    let mut cfg = HwConfig::edge();
    cfg.model_bank_conflicts = false;
    let (_, rep) = run_text(
        cfg,
        "gemm m=40 k=16 n=16 iter_out=1 iter_in=1\nfinish\n",
        &[],
    )
    .unwrap();
    assert_eq!(rep.gemm_busy_cycles, EDGE_FOLD + 40);
}

#[test]
fn dma_latency_bandwidth_tokens_and_energy() {
    let text = "\
.tsa 2
.config_hash 0x0000000000000000
.dram_size 2048
load push_next mem=sp y_size=10 x_size=100 x_stride=100
gemm pop_prev m=40 k=16 n=16 w=4096 iter_out=1 iter_in=1
finish
";
    let cfg = HwConfig::edge();
    let (out, rep) = run_text(cfg.clone(), text, &[]).unwrap();
    let dma = 100 + 1000u64.div_ceil(16);
    assert_eq!(rep.load.busy_cycles, dma);
    // load runs [1, 1+dma); the gemm (ready at 2) waits for the token until 1+dma.
    assert_eq!(rep.compute.stall_cycles, dma - 1);
    let total = 1 + dma + 86 + 1;
    assert_eq!(rep.total_cycles, total);
    assert_eq!(rep.bytes.dram_read, 1000);
    assert_eq!(rep.bytes.sp_write, 1000);
    assert_eq!(rep.bytes.sp_read, 40 * 16 + 16 * 16);
    assert_eq!(rep.bytes.acc_write, 40 * 16 * 4);
    let e = &cfg.energy;
    let want = 1000.0 * e.dram_byte
        + 1000.0 * e.sp_write_byte
        + 896.0 * e.sp_read_byte
        + 640.0 * e.acc_write_word
        + 10240.0 * e.mac_i8
        + total as f64 * e.static_per_cycle;
    assert!(
        (rep.energy.total_pj - want).abs() < 1e-6 * want,
        "{} vs {want}",
        rep.energy.total_pj
    );

    let trace: serde_json::Value =
        serde_json::from_str(&chrome_trace(&out.trace, cfg.clock_mhz)).unwrap();
    let evs = trace["traceEvents"].as_array().unwrap();
    let slices: Vec<&serde_json::Value> = evs.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(slices.len(), 3);
    assert_eq!(slices[1]["name"], "gemm");
    assert_eq!(slices[1]["args"]["start_cycle"], 1 + dma);
    assert_eq!(slices[1]["ts"].as_f64().unwrap(), (1 + dma) as f64 / 500.0);
    assert!(evs.iter().filter(|e| e["name"] == "thread_name").count() >= 4);
    assert!(rep.to_text().contains(&format!("{total} cycles")));
    let json: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
    assert_eq!(json["total_cycles"], total);
}

#[test]
fn double_buffered_loads_overlap_compute() {
    // Two load/gemm pairs with tokens: the second load runs while the first gemm computes.
    let text = "\
.dram_size 1024
load push_next mem=sp y_size=1 x_size=256
load push_next mem=sp sram=16 y_size=1 x_size=256
gemm pop_prev m=100 k=16 n=16 w=4096 iter_out=1 iter_in=1
gemm pop_prev m=100 k=16 n=16 a=16 w=4112 c=2000 iter_out=1 iter_in=1
finish
";
    let (_, rep) = run_text(HwConfig::edge(), text, &[]).unwrap();
    let dma = 100 + 16;
    let fold = EDGE_FOLD + 100;
    // load0 [1, 1+dma), load1 [1+dma, 1+2dma), gemm0 [1+dma, 1+dma+fold), gemm1 after gemm0.
    assert_eq!(rep.total_cycles, 1 + dma + 2 * fold + 1);
    assert!(rep.total_cycles < 1 + 2 * dma + 2 * fold + 1);
}

fn expect_err(cfg: HwConfig, text: &str, kind: SimErrorKind, index: usize, needle: &str) {
    let e = run_text(cfg, text, &[]).unwrap_err();
    assert_eq!(e.kind, kind, "{e}");
    assert_eq!(e.index, Some(index), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("instruction {index}: ")), "{msg}");
    assert!(msg.contains(needle), "{msg}");
}

#[test]
fn out_of_range_addresses_are_errors() {
    // 16383 granules * 16 + 32 bytes overruns the 256 KiB scratchpad.
    expect_err(
        HwConfig::edge(),
        ".dram_size 64\nload sram=16383 y_size=1 x_size=32\nfinish\n",
        SimErrorKind::Invalid,
        0,
        "scratchpad",
    );
    expect_err(
        HwConfig::edge(),
        ".dram_size 64\nload y_size=2 x_size=32 x_stride=40\nfinish\n",
        SimErrorKind::Invalid,
        0,
        "DRAM",
    );
    expect_err(
        HwConfig::edge(),
        ".dram_size 64\ngemm m=1 k=1 n=1 iter_out=1 iter_in=1\nstore fmt=i32 dram=0x3c y_size=1 x_size=2\nfinish\n",
        SimErrorKind::Invalid,
        1,
        "store: DRAM",
    );
    expect_err(
        HwConfig::edge(),
        "gemm m=64 k=16 n=16 c=16000 iter_out=1 iter_in=1\nfinish\n",
        SimErrorKind::Invalid,
        0,
        "C tile",
    );
    expect_err(
        HwConfig::edge(),
        "gemm m=1 k=17 n=16 iter_out=1 iter_in=1\nfinish\n",
        SimErrorKind::Invalid,
        0,
        "exceed the 16x16 array",
    );
    expect_err(
        HwConfig::edge(),
        "vec op=exp src0=16380 len=8 rows=1\nfinish\n",
        SimErrorKind::Invalid,
        0,
        "src0",
    );
}

#[test]
fn token_underflow_names_the_instruction() {
    expect_err(
        HwConfig::edge(),
        ".dram_size 64\nload y_size=1 x_size=1\nload y_size=1 x_size=1\ngemm pop_prev m=1 k=1 n=1 iter_out=1 iter_in=1\nfinish\n",
        SimErrorKind::TokenUnderflow,
        2,
        "token underflow",
    );
    // The load queue still has work, but nothing there pushes to compute.
    expect_err(
        HwConfig::edge(),
        ".dram_size 64\ngemm pop_prev m=1 k=1 n=1 iter_out=1 iter_in=1\nload y_size=1 x_size=1\nfinish\n",
        SimErrorKind::TokenUnderflow,
        0,
        "no remaining instruction there pushes one",
    );
    // The second pop has no token: the first is consumed by instruction 1.
    expect_err(
        HwConfig::edge(),
        ".dram_size 64\nload push_next y_size=1 x_size=1\ngemm pop_prev m=1 k=1 n=1 iter_out=1 iter_in=1\nvec pop_prev op=copy len=1 rows=1\nfinish\n",
        SimErrorKind::TokenUnderflow,
        2,
        "load queue",
    );
}

#[test]
fn deadlocks_are_detected() {
    // Load waits for compute, compute waits for load.
    let e = run_text(
        HwConfig::edge(),
        "load pop_next push_next y_size=1 x_size=1\ngemm pop_prev push_prev m=1 k=1 n=1 iter_out=1 iter_in=1\nfinish\n",
        &[],
    )
    .unwrap_err();
    assert_eq!((e.kind, e.index), (SimErrorKind::Deadlock, Some(0)));
    let msg = e.to_string();
    assert!(
        msg.contains("deadlock")
            && msg.contains("instruction 0 (load queue)")
            && msg.contains("instruction 1 (compute queue)"),
        "{msg}"
    );

    // A full compute queue keeps the dispatcher from ever reaching the load that
    // would feed it.
    let mut cfg = HwConfig::edge();
    cfg.insn_queue_depth = 2;
    let e = run_text(
        cfg,
        "gemm pop_prev m=1 k=1 n=1 iter_out=1 iter_in=1\nvec op=copy len=1 rows=1\nvec op=copy len=1 rows=1\nload push_next y_size=1 x_size=1\nfinish\n",
        &[],
    )
    .unwrap_err();
    assert_eq!((e.kind, e.index), (SimErrorKind::Deadlock, Some(0)));
    assert!(e.msg.contains("dispatcher holds instruction 2"), "{e}");

    // A full token FIFO with no consumer left blocks the producer.
    let mut text = String::new();
    for _ in 0..9 {
        text += "vec push_next op=copy len=1 rows=1\n";
    }
    text += "store fmt=i32 y_size=1 x_size=1\nfinish\n";
    let mut cfg = HwConfig::edge();
    cfg.token_queue_depth = 8;
    let e = run_text(cfg, &format!(".dram_size 64\n{text}"), &[]).unwrap_err();
    assert_eq!((e.kind, e.index), (SimErrorKind::Deadlock, Some(8)), "{e}");
    assert!(e.msg.contains("space in the token FIFO"), "{e}");
}

#[test]
fn malformed_streams_are_errors_not_panics() {
    // Bad opcode in the binary: the decoder names the instruction.
    let s = assemble("load y_size=1 x_size=1\ngemm m=1 k=1 n=1 iter_out=1 iter_in=1\nfinish\n")
        .unwrap();
    let mut bytes = s.to_bytes().unwrap();
    bytes[48 + 16] |= 7;
    let e = Stream::from_bytes(&bytes).unwrap_err();
    assert_eq!(e.index, Some(1));
    assert!(
        e.to_string().starts_with("instruction 1: bad opcode 7"),
        "{e}"
    );

    expect_err(
        HwConfig::edge(),
        "gemm m=1 k=1 n=1 iter_out=1 iter_in=1\n",
        SimErrorKind::Invalid,
        0,
        "does not end with finish",
    );
    expect_err(
        HwConfig::edge(),
        "finish\nfinish\n",
        SimErrorKind::Invalid,
        0,
        "not the last",
    );
    // A programmatically built stream that skipped validation.
    let mut s = assemble("vec op=copy len=1 rows=1\nfinish\n").unwrap();
    if let tessera_accel_isa::Op::Vector(v) = &mut s.insns[0].op {
        v.rows = 0;
    }
    let e = Simulator::new(HwConfig::edge())
        .run(&s, &BTreeMap::new())
        .unwrap_err();
    assert_eq!((e.kind, e.index), (SimErrorKind::Invalid, Some(0)));

    let mut s = assemble("finish\n").unwrap();
    s.config_hash = HwConfig::server().hash();
    let e = Simulator::new(HwConfig::edge())
        .run(&s, &BTreeMap::new())
        .unwrap_err();
    assert!(e.msg.contains("config hash"), "{e}");
    let s = assemble(".dram_size 64\n.buffer input x i8 [4] @0x0\nfinish\n").unwrap();
    let e = Simulator::new(HwConfig::edge())
        .run(&s, &BTreeMap::new())
        .unwrap_err();
    assert!(e.msg.contains("input 'x' was not given"), "{e}");

    // Random garbage never panics: decode errors or runs.
    let mut rng = Rng(99);
    for _ in 0..2000 {
        let mut b = s.to_bytes().unwrap();
        let mut w = [0u8; 16];
        for x in w.iter_mut() {
            *x = rng.next() as u8;
        }
        b.truncate(b.len() - 16);
        b.extend_from_slice(&w);
        let _ = Stream::from_bytes(&b);
    }
}

#[test]
fn the_documented_example_runs() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/accel-isa.md"
    ))
    .unwrap();
    let start =
        doc.find("## Assembly (`.tsa`)\n\n```\n").unwrap() + "## Assembly (`.tsa`)\n\n```\n".len();
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let s = assemble(text).unwrap();
    assert_eq!(
        tessera_accel_isa::asm::disassemble(&s),
        text,
        "the example is canonical"
    );
    let x: Vec<u8> = [1i8, 2, 3, 4, 5, 6, 7, 8]
        .iter()
        .map(|&v| v as u8)
        .collect();
    let (out, rep) = run_text(HwConfig::edge(), text, &[("x", x)]).unwrap();
    // w = [[1,2,3,4],[-1,-2,-3,-4],[0,1,0,-1]]; x.w^T = [[30,-30,-2],[70,-70,-2]]; times 0.5.
    let y: Vec<i8> = out.outputs["y"].iter().map(|&b| b as i8).collect();
    assert_eq!(y, vec![15, -15, -1, 35, -35, -1]);
    assert_eq!(rep.unconsumed_tokens, 0);
}

/// Random streams (small loop bounds so debug builds stay fast) either run or
/// fail with an error; they never panic and always terminate.
#[test]
fn random_streams_never_panic() {
    use tessera_accel_isa::{Insn, Op, INSNS};
    let mut rng = Rng(2024);
    let mut outcomes = [0usize; 2];
    for _ in 0..1000 {
        let mut insns = vec![];
        while insns.len() < 6 {
            let def = &INSNS[rng.int(0, INSNS.len() as i64 - 2) as usize]; // no finish
            let vals: Vec<i64> = def
                .fields
                .iter()
                .map(|f| match (f.name, rng.int(0, 3)) {
                    ("m" | "len" | "rows" | "y_size" | "x_size", _) => rng.int(1, 24),
                    ("iter_out" | "iter_in", _) => rng.int(1, 3),
                    ("k" | "n", _) => rng.int(1, 17),
                    (_, 0) => 0,
                    (_, 1) => rng.int(f.min().max(-2), f.max().min(40)),
                    _ => rng.int(f.min(), f.max()),
                })
                .collect();
            let b = if rng.int(0, 5) == 0 { rng.next() } else { 0 };
            let insn = Insn::new(Op::from_values(def.opcode, &vals).unwrap()).with_deps(
                b & 1 != 0,
                b & 2 != 0,
                b & 4 != 0,
                b & 8 != 0,
            );
            if insn.validate().is_ok() {
                insns.push(insn);
            }
        }
        insns.push(Insn::new(Op::Finish(tessera_accel_isa::Finish {})));
        let s = Stream {
            dram_size: 4096,
            insns,
            ..Default::default()
        };
        let r = Simulator::new(HwConfig::edge()).run(&s, &BTreeMap::new());
        outcomes[r.is_ok() as usize] += 1;
        if let Err(e) = r {
            assert!(e.index.is_some(), "{e}");
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// One `vec` instruction over `x` (loaded at word 0): `src1` words follow `x`
/// at word `x.len()`; the result is stored from word 100 as raw words.
fn run_one_vec(vec_line: &str, x: &[f32], src1: &[f32], out_words: usize) -> (Vec<u32>, Report) {
    let words: Vec<u8> = x.iter().chain(src1).flat_map(|v| v.to_le_bytes()).collect();
    let n = x.len() + src1.len();
    let text = format!(
        ".tsa 2\n.config_hash 0x0000000000000000\n.dram_size 1024\n.buffer input x f32 [{n}] @0x0\n.buffer output y i32 [{out_words}] @0x200\n\
         load push_next mem=acc elem_bytes=4 y_size=1 x_size={n}\n{vec_line}\n\
         store pop_prev push_prev fmt=i32 dram=0x200 sram=100 y_size=1 x_size={out_words}\nfinish pop_next\n"
    );
    let (out, rep) = run_text(HwConfig::edge(), &text, &[("x", words)]).unwrap();
    let y = out.outputs["y"]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (y, rep)
}

fn same_f32(got: u32, want: f32) -> bool {
    let g = f32::from_bits(got);
    (g.is_nan() && want.is_nan()) || got == want.to_bits()
}

#[test]
fn vector_div_is_correctly_rounded_ieee_division() {
    let tiny = f32::from_bits(1); // the smallest subnormal
                                  // (dividend, divisor, quotient written out by hand)
    let cases: [(f32, f32, f32); 12] = [
        (9.0, 10.0, 0.9), // 9 * (1/10) rounds to 0.90000004: division must not go through recip
        (13.0, 10.0, 1.3),
        (5.0, 3.0, 1.6666666),
        (-7.5, 2.5, -3.0),
        (0.0, 0.0, f32::NAN),
        (1.0, 0.0, f32::INFINITY),
        (-1.0, 0.0, f32::NEG_INFINITY),
        (1.0, -0.0, f32::NEG_INFINITY),
        (f32::INFINITY, f32::INFINITY, f32::NAN),
        (-0.0, 5.0, -0.0),
        (tiny, 2.0, 0.0), // a tie between 0 and the smallest subnormal: to even
        (3.0 * tiny, 2.0, 2.0 * tiny), // 1.5 ulp: a tie, to even
    ];
    let x: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let y: Vec<f32> = cases.iter().map(|c| c.1).collect();
    let n = cases.len();
    let line = format!(
        "vec pop_prev push_next op=div src1={n} dst=100 len={n} rows=1 stride={n} dst_stride={n}"
    );
    let (out, rep) = run_one_vec(&line, &x, &y, n);
    for (i, &(a, b, q)) in cases.iter().enumerate() {
        assert!(
            same_f32(out[i], q),
            "{a} / {b} = {}, want {q}",
            f32::from_bits(out[i])
        );
    }
    // A multi-cycle op: issued at vec_special_ii (4 on edge), counted as special.
    assert_eq!(rep.actions.vec_special, n as u64);
    assert_eq!(rep.actions.vec_simple, 0);

    // The broadcast forms: one word per row, one scalar word, a bf16 immediate.
    let x: Vec<f32> = vec![9.0, 13.0, 1.0, 2.0, 7.0, 5.0];
    let forms = [
        (
            "src1_mode=row src1=6",
            vec![10.0f32, 3.0],
            [0.9f32, 1.3, 0.1, 0.6666667, 2.3333333, 1.6666666],
        ),
        (
            "src1_mode=scalar src1=6",
            vec![10.0],
            [0.9, 1.3, 0.1, 0.2, 0.7, 0.5],
        ),
        // 0x4040 is 3.0 in bf16.
        (
            "src1_mode=imm src1=16448",
            vec![],
            [3.0, 4.3333335, 0.33333334, 0.6666667, 2.3333333, 1.6666666],
        ),
    ];
    for (mode, src1, want) in forms {
        let line = format!(
            "vec pop_prev push_next op=div {mode} dst=100 len=3 rows=2 stride=3 dst_stride=3"
        );
        let (out, _) = run_one_vec(&line, &x, &src1, 6);
        for i in 0..6 {
            assert!(
                same_f32(out[i], want[i]),
                "{mode}: element {i} = {}, want {}",
                f32::from_bits(out[i]),
                want[i]
            );
        }
    }
}

#[test]
fn vector_erf_against_quadrature_and_specials() {
    let mut xs: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * 0.37).collect();
    xs.extend([2.5, -2.5, 6.0, 1e-20]);
    let n = xs.len();
    let line = format!("vec pop_prev push_next op=erf dst=100 len={n} rows=1");
    let (out, rep) = run_one_vec(&line, &xs, &[], n);
    for (i, &x) in xs.iter().enumerate() {
        let got = f32::from_bits(out[i]) as f64;
        let want = if x.abs() < 1e-3 {
            // erf(x) = 2x/sqrt(pi) (1 - x^2/3 + ...): exact to f64 this close to 0.
            2.0 * x as f64 / std::f64::consts::PI.sqrt()
        } else {
            1.0 - erfc_by_quadrature(x as f64)
        };
        assert!(
            (got - want).abs() <= 2f64.powi(-23) * want.abs(),
            "erf({x}) = {got}, want {want}"
        );
    }
    assert_eq!(rep.actions.vec_special, n as u64);
    let specials = [
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        100.0,
    ];
    let want = [0.0f32, -0.0, 1.0, -1.0, f32::NAN, 1.0];
    let (out, _) = run_one_vec(
        "vec pop_prev push_next op=erf dst=100 len=6 rows=1",
        &specials,
        &[],
        6,
    );
    for i in 0..6 {
        assert!(
            same_f32(out[i], want[i]),
            "erf({}) = {}",
            specials[i],
            f32::from_bits(out[i])
        );
    }
}
