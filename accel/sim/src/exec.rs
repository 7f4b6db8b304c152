//! Functional semantics and per-instruction cost of each instruction. The
//! scheduler in `lib.rs` decides when an instruction runs; this module decides
//! what it does to the machine state and how long it keeps its unit busy.

use serde::Serialize;
use tessera_accel_isa::{
    bf16_to_f32, f32_to_bf16, Config, Gemm, GemmMode, HwConfig, Load, Store, VecOp, Vector, GRANULE,
};

/// Action counts (the inputs of the energy model).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Actions {
    pub mac_i8: u64,
    pub mac_i4: u64,
    pub mac_i2: u64,
    pub mac_bf16_lut: u64,
    pub sp_read_bytes: u64,
    pub sp_write_bytes: u64,
    pub acc_read_words: u64,
    pub acc_write_words: u64,
    pub dram_read_bytes: u64,
    pub dram_write_bytes: u64,
    pub vec_simple: u64,
    pub vec_special: u64,
}

impl Actions {
    pub fn add(&mut self, o: &Actions) {
        self.mac_i8 += o.mac_i8;
        self.mac_i4 += o.mac_i4;
        self.mac_i2 += o.mac_i2;
        self.mac_bf16_lut += o.mac_bf16_lut;
        self.sp_read_bytes += o.sp_read_bytes;
        self.sp_write_bytes += o.sp_write_bytes;
        self.acc_read_words += o.acc_read_words;
        self.acc_write_words += o.acc_write_words;
        self.dram_read_bytes += o.dram_read_bytes;
        self.dram_write_bytes += o.dram_write_bytes;
        self.vec_simple += o.vec_simple;
        self.vec_special += o.vec_special;
    }
    pub fn macs(&self) -> u64 {
        self.mac_i8 + self.mac_i4 + self.mac_i2 + self.mac_bf16_lut
    }
}

/// What one instruction costs: cycles on its unit (of which `conflict` are
/// scratchpad bank-conflict cycles) and its actions.
#[derive(Clone, Debug, Default)]
pub struct Cost {
    pub cycles: u64,
    pub conflict: u64,
    pub actions: Actions,
}

pub struct Machine {
    pub dram: Vec<u8>,
    pub sp: Vec<u8>,
    pub acc: Vec<u32>,
    pub store_zero_point: i32,
    pub gemm_a_zero_point: i32,
}

fn check_range(what: &str, start: u64, len: u64, size: u64) -> Result<(), String> {
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(format!(
            "{what} range [{start}, {}) is outside its memory of {size}",
            start.saturating_add(len)
        )),
    }
}

/// DMA time: a fixed latency plus the bytes over the DRAM bandwidth.
pub fn dma_cycles(cfg: &HwConfig, bytes: u64) -> u64 {
    cfg.dram_latency_cycles + (bytes as f64 / cfg.dram_bytes_per_cycle()).ceil() as u64
}

/// Rounds `p / 2^s` to the nearest integer, ties to even.
pub fn round_shift(p: i64, s: u32) -> i64 {
    if s == 0 {
        return p;
    }
    let q = p >> s;
    let rem = p - (q << s);
    let half = 1i64 << (s - 1);
    if rem > half || (rem == half && q & 1 == 1) {
        q + 1
    } else {
        q
    }
}

pub fn requantize(v: i32, mult: u32, shift: u32, zero_point: i32, lo: i8, hi: i8) -> i8 {
    let r = round_shift(v as i64 * mult as i64, shift) + zero_point as i64;
    r.clamp(lo as i64, hi as i64) as i8
}

impl Machine {
    pub fn load(&mut self, cfg: &HwConfig, l: &Load) -> Result<Cost, String> {
        let eb = 1u64 << l.elem_bytes;
        let (y, x, stride) = (l.y_size as u64, l.x_size as u64, l.x_stride as u64);
        let row_elems = l.pad_left as u64 + x + l.pad_right as u64;
        let rows = l.pad_top as u64 + y + l.pad_bottom as u64;
        let dram_span = ((y - 1) * stride + x) * eb;
        check_range(
            "load: DRAM",
            l.dram as u64,
            dram_span,
            self.dram.len() as u64,
        )?;
        let total = rows * row_elems * eb;
        let dst_base = match l.mem {
            0 => {
                let base = l.sram as u64 * GRANULE;
                check_range("load: scratchpad", base, total, self.sp.len() as u64)?;
                base
            }
            _ => {
                check_range(
                    "load: accumulator",
                    l.sram as u64,
                    total / 4,
                    self.acc.len() as u64,
                )?;
                l.sram as u64 * 4
            }
        };
        // Build the padded block, then copy it in one go.
        let mut block = vec![0u8; total as usize];
        for r in 0..y {
            let src = (l.dram as u64 + r * stride * eb) as usize;
            let dst = (((r + l.pad_top as u64) * row_elems + l.pad_left as u64) * eb) as usize;
            let n = (x * eb) as usize;
            block[dst..dst + n].copy_from_slice(&self.dram[src..src + n]);
        }
        let mut a = Actions {
            dram_read_bytes: y * x * eb,
            ..Default::default()
        };
        if l.mem == 0 {
            self.sp[dst_base as usize..(dst_base + total) as usize].copy_from_slice(&block);
            a.sp_write_bytes = total;
        } else {
            let w0 = (dst_base / 4) as usize;
            for (i, c) in block.chunks_exact(4).enumerate() {
                self.acc[w0 + i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            a.acc_write_words = total / 4;
        }
        Ok(Cost {
            cycles: dma_cycles(cfg, y * x * eb),
            conflict: 0,
            actions: a,
        })
    }

    pub fn store(&mut self, cfg: &HwConfig, s: &Store) -> Result<Cost, String> {
        let (y, x, stride) = (s.y_size as u64, s.x_size as u64, s.x_stride as u64);
        let ob: u64 = match s.fmt {
            0 => 1,
            1 => 4,
            _ => 2,
        };
        check_range(
            "store: accumulator",
            s.sram as u64,
            y * x,
            self.acc.len() as u64,
        )?;
        check_range(
            "store: DRAM",
            s.dram as u64,
            ((y - 1) * stride + x) * ob,
            self.dram.len() as u64,
        )?;
        for r in 0..y {
            for c in 0..x {
                let w = self.acc[(s.sram as u64 + r * x + c) as usize];
                let at = (s.dram as u64 + (r * stride + c) * ob) as usize;
                match s.fmt {
                    0 => {
                        let q = requantize(
                            w as i32,
                            s.mult,
                            s.shift as u32,
                            self.store_zero_point,
                            s.clamp_lo,
                            s.clamp_hi,
                        );
                        self.dram[at] = q as u8;
                    }
                    1 => self.dram[at..at + 4].copy_from_slice(&w.to_le_bytes()),
                    _ => self.dram[at..at + 2]
                        .copy_from_slice(&f32_to_bf16(f32::from_bits(w)).to_le_bytes()),
                }
            }
        }
        let a = Actions {
            acc_read_words: y * x,
            dram_write_bytes: y * x * ob,
            ..Default::default()
        };
        Ok(Cost {
            cycles: dma_cycles(cfg, y * x * ob),
            conflict: 0,
            actions: a,
        })
    }

    pub fn config(&mut self, c: &Config) {
        match c.reg {
            0 => self.store_zero_point = c.value,
            _ => self.gemm_a_zero_point = c.value,
        }
    }

    fn weight(&self, mode: GemmMode, row: usize, kk: usize) -> i32 {
        match mode {
            GemmMode::I8xI8 => self.sp[row + kk] as i8 as i32,
            GemmMode::I8xI4 => {
                let b = self.sp[row + kk / 2];
                let nib = if kk.is_multiple_of(2) {
                    b & 0xf
                } else {
                    b >> 4
                };
                ((nib << 4) as i8 >> 4) as i32
            }
            GemmMode::I8xI2 | GemmMode::Bf16xI2 => {
                let b = (self.sp[row + kk / 4] >> (2 * (kk % 4))) & 3;
                ((b << 6) as i8 >> 6) as i32
            }
        }
    }

    pub fn gemm(&mut self, cfg: &HwConfig, g: &Gemm) -> Result<Cost, String> {
        let dim = cfg.array_dim as u64;
        if g.k as u64 > dim || g.n as u64 > dim {
            return Err(format!(
                "gemm: k={} n={} exceed the {dim}x{dim} array",
                g.k, g.n
            ));
        }
        let mode = GemmMode::from_index(g.mode).ok_or("gemm: bad mode")?;
        let (m, k, n) = (g.m as usize, g.k as usize, g.n as usize);
        let ab = mode.act_bytes() as usize;
        let wrow = g.w_row_bytes() as usize;
        let bank_bytes = cfg.sp_bytes / cfg.sp_banks as u64;
        let fold = 2 * dim + dim + m as u64 - 2;
        let mut cost = Cost::default();
        for o in 0..g.iter_out as u64 {
            for i in 0..g.iter_in as u64 {
                let a_base = (g.a as u64
                    + (o * g.a_out as u64 + i * g.a_in as u64) * g.a_tile_granules())
                    * GRANULE;
                let w_base = (g.w as u64
                    + (o * g.w_out as u64 + i * g.w_in as u64) * g.w_tile_granules())
                    * GRANULE;
                let c_base =
                    g.c as u64 + (o * g.c_out as u64 + i * g.c_in as u64) * g.c_tile_words();
                check_range(
                    "gemm: A tile",
                    a_base,
                    (m * k * ab) as u64,
                    self.sp.len() as u64,
                )?;
                check_range(
                    "gemm: W tile",
                    w_base,
                    (n * wrow) as u64,
                    self.sp.len() as u64,
                )?;
                check_range(
                    "gemm: C tile",
                    c_base,
                    (m * n) as u64,
                    self.acc.len() as u64,
                )?;
                let overwrite = g.acc_mode == 0 || (g.acc_mode == 2 && i == 0);
                let (a_base, w_base, c_base) = (a_base as usize, w_base as usize, c_base as usize);
                for r in 0..m {
                    for j in 0..n {
                        let w_row = w_base + j * wrow;
                        let ci = c_base + r * n + j;
                        if mode == GemmMode::Bf16xI2 {
                            let mut acc = if overwrite {
                                0.0f32
                            } else {
                                f32::from_bits(self.acc[ci])
                            };
                            for g0 in (0..k).step_by(4) {
                                let mut p: Option<f32> = None;
                                for kk in g0..(g0 + 4).min(k) {
                                    let at = a_base + (r * k + kk) * 2;
                                    let a = bf16_to_f32(u16::from_le_bytes([
                                        self.sp[at],
                                        self.sp[at + 1],
                                    ]));
                                    let prod = a * self.weight(mode, w_row, kk) as f32;
                                    p = Some(match p {
                                        None => prod,
                                        Some(s) => s + prod,
                                    });
                                }
                                acc += p.unwrap_or(0.0);
                            }
                            self.acc[ci] = acc.to_bits();
                        } else {
                            let mut acc = if overwrite { 0i32 } else { self.acc[ci] as i32 };
                            for kk in 0..k {
                                let a = (self.sp[a_base + r * k + kk] as i8 as i32)
                                    .wrapping_sub(self.gemm_a_zero_point);
                                acc =
                                    acc.wrapping_add(a.wrapping_mul(self.weight(mode, w_row, kk)));
                            }
                            self.acc[ci] = acc as u32;
                        }
                    }
                }
                let macs = (m * k * n) as u64;
                let act = &mut cost.actions;
                match mode {
                    GemmMode::I8xI8 => act.mac_i8 += macs,
                    GemmMode::I8xI4 => act.mac_i4 += macs,
                    GemmMode::I8xI2 => act.mac_i2 += macs,
                    GemmMode::Bf16xI2 => act.mac_bf16_lut += macs,
                }
                act.sp_read_bytes += (m * k * ab + n * wrow) as u64;
                if !overwrite {
                    act.acc_read_words += (m * n) as u64;
                }
                act.acc_write_words += (m * n) as u64;
                // Weight fill and input streaming share one port when both tiles
                // start in the same bank: the fill of k rows cannot overlap.
                let conflict = if cfg.model_bank_conflicts
                    && a_base as u64 / bank_bytes == w_base as u64 / bank_bytes
                {
                    k as u64
                } else {
                    0
                };
                cost.cycles += fold + conflict;
                cost.conflict += conflict;
            }
        }
        Ok(cost)
    }

    pub fn vector(&mut self, cfg: &HwConfig, v: &Vector) -> Result<Cost, String> {
        let op = VecOp::from_index(v.op).ok_or("vec: bad op")?;
        let (len, rows) = (v.len as u64, v.rows as u64);
        let words = self.acc.len() as u64;
        let out_len = if op.is_reduction() { 1 } else { len };
        check_range(
            "vec: dst",
            v.dst as u64 + (rows - 1) * v.dst_stride as u64,
            out_len,
            words,
        )?;
        check_range(
            "vec: src0",
            v.src0 as u64 + (rows - 1) * v.stride as u64,
            len,
            words,
        )?;
        if op.uses_src1() {
            match v.src1_mode {
                0 => check_range(
                    "vec: src1",
                    v.src1 as u64 + (rows - 1) * v.stride as u64,
                    len,
                    words,
                )?,
                1 => check_range("vec: src1", v.src1 as u64, rows, words)?,
                2 => check_range("vec: src1", v.src1 as u64, 1, words)?,
                _ => {}
            }
        }
        let int = v.dtype == 1;
        let mut src1_reads = 0u64;
        for r in 0..rows {
            let s0 = (v.src0 as u64 + r * v.stride as u64) as usize;
            let x: Vec<u32> = self.acc[s0..s0 + len as usize].to_vec();
            let y: Vec<u32> = if op.uses_src1() {
                match v.src1_mode {
                    0 => {
                        let s1 = (v.src1 as u64 + r * v.stride as u64) as usize;
                        src1_reads += len;
                        self.acc[s1..s1 + len as usize].to_vec()
                    }
                    1 => {
                        src1_reads += 1;
                        vec![self.acc[(v.src1 as u64 + r) as usize]; len as usize]
                    }
                    2 => {
                        src1_reads += 1;
                        vec![self.acc[v.src1 as usize]; len as usize]
                    }
                    _ => {
                        let imm = if int {
                            v.src1 as u16 as i16 as i32 as u32
                        } else {
                            bf16_to_f32(v.src1 as u16).to_bits()
                        };
                        vec![imm; len as usize]
                    }
                }
            } else {
                vec![]
            };
            let out = if int {
                vec_i32(op, &x, &y)
            } else {
                vec_f32(op, &x, &y)
            };
            let d = (v.dst as u64 + r * v.dst_stride as u64) as usize;
            self.acc[d..d + out.len()].copy_from_slice(&out);
        }
        let groups = len.div_ceil(cfg.vec_lanes as u64);
        let ii = if op.is_special() {
            cfg.vec_special_ii as u64
        } else {
            1
        };
        let tree = if op.is_reduction() {
            (cfg.vec_lanes as u64).next_power_of_two().trailing_zeros() as u64
        } else {
            0
        };
        let cycles = rows * (groups * ii + tree) + cfg.vec_latency;
        let mut a = Actions {
            acc_read_words: rows * len + src1_reads,
            acc_write_words: rows * out_len,
            ..Default::default()
        };
        if op.is_special() {
            a.vec_special = rows * len;
        } else {
            a.vec_simple = rows * len;
        }
        Ok(Cost {
            cycles,
            conflict: 0,
            actions: a,
        })
    }
}

fn vec_i32(op: VecOp, x: &[u32], y: &[u32]) -> Vec<u32> {
    let xi = x.iter().map(|&b| b as i32);
    let bin = |f: fn(i32, i32) -> i32| -> Vec<u32> {
        x.iter()
            .zip(y)
            .map(|(&a, &b)| f(a as i32, b as i32) as u32)
            .collect()
    };
    match op {
        VecOp::Add => bin(i32::wrapping_add),
        VecOp::Sub => bin(i32::wrapping_sub),
        VecOp::Mul => bin(i32::wrapping_mul),
        VecOp::Max => bin(i32::max),
        VecOp::Min => bin(i32::min),
        VecOp::ReduceSum => vec![xi.fold(0i32, i32::wrapping_add) as u32],
        VecOp::ReduceMax => vec![xi.max().unwrap_or(i32::MIN) as u32],
        // Copy, and (unreachable after validation) float-only ops: bit copy.
        _ => x.to_vec(),
    }
}

/// NaN-propagating max/min (IEEE maximum/minimum), unlike `f32::max`.
fn fmax(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a == b {
        // +0 is larger than -0.
        if a.is_sign_negative() {
            b
        } else {
            a
        }
    } else {
        a.max(b)
    }
}

fn fmin(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a == b {
        if a.is_sign_negative() {
            a
        } else {
            b
        }
    } else {
        a.min(b)
    }
}

/// erfc in f64 with full relative precision for large positive x (where
/// 1 - erf(x) would cancel).
pub fn erfc(x: f64) -> f64 {
    if x > 27.0 {
        0.0 // erfc underflows f64 past 27
    } else if x >= 1.5 {
        // The fraction converges more slowly near 1.5 than at erf's 2.5.
        erfc_cf(x, 80)
    } else {
        1.0 - erf(x)
    }
}

/// Laplace continued fraction for erfc, `a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))`,
/// evaluated bottom-up at a fixed depth (60 terms reach f64 precision at 2.5,
/// 80 at 1.5).
fn erfc_cf(a: f64, terms: u32) -> f64 {
    let mut f = a;
    for k in (1..=terms).rev() {
        f = a + f64::from(k) / 2.0 / f;
    }
    (-a * a).exp() / std::f64::consts::PI.sqrt() / f
}

/// erf in f64, to about 1e-15 relative: below 2.5 the series of positive
/// terms `2/sqrt(pi) * exp(-a^2) * sum 2^n a^(2n+1) / (1*3*...*(2n+1))` (no
/// cancellation), 1 - erfc by continued fraction up to 6, and +-1 past 6
/// (erfc(6) < 2.2e-17, below half an ulp of 1).
///
/// This is the interpreter's `Erf` (tessera-ir `ops::elementwise::erf`)
/// operation for operation, so the vector unit's `erf` rounds to the same f32
/// (the simulator cannot depend on the compiler; the test
/// `backends/accel/tests/vec_div_erf.rs` compares the two over 10^6 inputs).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        let a2 = a * a;
        let (mut term, mut sum, mut n) = (a, a, 0u32);
        while term > sum * 1e-17 {
            n += 1;
            term *= 2.0 * a2 / f64::from(2 * n + 1);
            sum += term;
        }
        std::f64::consts::FRAC_2_SQRT_PI * (-a2).exp() * sum
    } else if a < 6.0 {
        1.0 - erfc_cf(a, 60)
    } else {
        1.0
    };
    r.copysign(x)
}

fn unary64(op: VecOp, x: f64) -> f64 {
    match op {
        VecOp::Exp => x.exp(),
        VecOp::Rsqrt => 1.0 / x.sqrt(),
        // 1 + erf(x/sqrt2) = erfc(-x/sqrt2), which keeps precision for negative x.
        VecOp::Gelu => 0.5 * x * erfc(-x / std::f64::consts::SQRT_2),
        VecOp::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        VecOp::Silu => x / (1.0 + (-x).exp()),
        VecOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        VecOp::Tanh => x.tanh(),
        VecOp::Erf => erf(x),
        _ => x,
    }
}

fn vec_f32(op: VecOp, x: &[u32], y: &[u32]) -> Vec<u32> {
    let xf: Vec<f32> = x.iter().map(|&b| f32::from_bits(b)).collect();
    let yf: Vec<f32> = y.iter().map(|&b| f32::from_bits(b)).collect();
    let bin = |f: &dyn Fn(f32, f32) -> f32| -> Vec<u32> {
        xf.iter()
            .zip(&yf)
            .map(|(&a, &b)| f(a, b).to_bits())
            .collect()
    };
    let map = |f: &dyn Fn(f32) -> f32| -> Vec<u32> { xf.iter().map(|&a| f(a).to_bits()).collect() };
    match op {
        VecOp::Copy => x.to_vec(),
        VecOp::Add => bin(&|a, b| a + b),
        VecOp::Sub => bin(&|a, b| a - b),
        VecOp::Mul => bin(&|a, b| a * b),
        VecOp::Div => bin(&|a, b| a / b),
        VecOp::Max => bin(&fmax),
        VecOp::Min => bin(&fmin),
        VecOp::Recip => map(&|a| 1.0 / a),
        VecOp::Sqrt => map(&f32::sqrt),
        VecOp::Exp
        | VecOp::Rsqrt
        | VecOp::Gelu
        | VecOp::GeluTanh
        | VecOp::Silu
        | VecOp::Sigmoid
        | VecOp::Tanh
        | VecOp::Erf => map(&|a| unary64(op, a as f64) as f32),
        VecOp::ReduceSum => vec![xf.iter().fold(0.0f32, |s, &a| s + a).to_bits()],
        VecOp::ReduceMax => vec![xf
            .iter()
            .fold(f32::NEG_INFINITY, |s, &a| fmax(s, a))
            .to_bits()],
        VecOp::Rotary => {
            let h = xf.len() / 2;
            let mut out = vec![0u32; xf.len()];
            for i in 0..h {
                let (a, b, c, s) = (xf[i], xf[i + h], yf[i], yf[i + h]);
                out[i] = (a * c - b * s).to_bits();
                out[i + h] = (b * c + a * s).to_bits();
            }
            out
        }
        VecOp::I2f => x.iter().map(|&b| (b as i32 as f32).to_bits()).collect(),
        VecOp::F2i => xf
            .iter()
            .map(|&a| a.round_ties_even() as i32 as u32)
            .collect(),
    }
}
