//! Row kernels on the vector unit: a tensor seen as `rows x len` f32 words
//! (`len` = the last dim), processed in chunks of rows that fit half the
//! accumulator, with a short program of `vec` instructions per chunk.

use crate::emit::{load_acc_flat, store_flat, vec_insn, Emitter, FMT_I32, FMT_I8};
use tessera_accel_isa::{bf16_to_f32, f32_to_bf16, VecOp};

/// A per-chunk accumulator slot: `Wide` holds `len` words per row, `Narrow`
/// one word per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Wide(u8),
    Narrow(u8),
}

/// The second source of a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Src1 {
    None,
    /// A slot of the same shape as src0.
    Tensor(Slot),
    /// One word per row (a narrow slot), broadcast along the row.
    Row(u8),
    /// One kernel constant word for every element.
    Scalar(u8),
    /// An immediate (must be exact in bf16).
    Imm(f32),
    /// A kernel constant of `len` words, the same for every row.
    ConstRow(u8),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub op: VecOp,
    pub int: bool,
    pub dst: Slot,
    pub src0: Slot,
    pub src1: Src1,
}

impl Step {
    pub fn f(op: VecOp, dst: Slot, src0: Slot, src1: Src1) -> Step {
        Step {
            op,
            int: false,
            dst,
            src0,
            src1,
        }
    }
}

/// How an output slot leaves the chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFmt {
    /// The raw 32-bit word (f32 or i32 tensors).
    Word,
    /// An i32 word clamped to `[lo, hi]` and stored as i8.
    I8 { lo: i8, hi: i8 },
}

#[derive(Clone, Debug, Default)]
pub struct RowKernel {
    pub rows: u64,
    pub len: u64,
    pub wide: u8,
    pub narrow: u8,
    /// Per-chunk inputs: slot and DRAM address of row 0 (4-byte words).
    pub inputs: Vec<(Slot, u64)>,
    /// Kernel constants loaded once: DRAM address and word count (1 or `len`).
    pub consts: Vec<(u64, u64)>,
    pub steps: Vec<Step>,
    pub outputs: Vec<(Slot, u64, OutFmt)>,
}

/// A bf16-exact immediate, or None.
pub fn imm(v: f32) -> Option<f32> {
    (bf16_to_f32(f32_to_bf16(v)).to_bits() == v.to_bits()).then_some(v)
}

impl RowKernel {
    fn const_words(&self) -> u64 {
        self.consts.iter().map(|c| c.1).sum()
    }

    fn words_per_row(&self) -> u64 {
        self.wide as u64 * self.len + self.narrow as u64
    }

    /// Whether every step is elementwise over whole wide slots, so the
    /// `rows x len` view may be refolded into shorter rows.
    fn elementwise(&self) -> bool {
        self.narrow == 0
            && self.steps.iter().all(|s| {
                !s.op.is_reduction()
                    && s.op != VecOp::Rotary
                    && !matches!(s.src1, Src1::Row(_) | Src1::ConstRow(_))
            })
    }

    /// The kernel as emitted: an elementwise kernel whose rows are too long
    /// for the accumulator is refolded to the longest row length that fits
    /// (a divisor of `len`, so the flat layout is unchanged).
    pub fn fitted(&self, acc_words: u64) -> Result<RowKernel, String> {
        if self.fits_rows(acc_words).is_ok() || !self.elementwise() {
            return self.fits_rows(acc_words).map(|_| self.clone());
        }
        let total = self.rows * self.len;
        for l in (1..self.len).rev().filter(|l| self.len.is_multiple_of(*l)) {
            let k = RowKernel {
                rows: total / l,
                len: l,
                ..self.clone()
            };
            if k.fits_rows(acc_words).is_ok() {
                return Ok(k);
            }
        }
        self.fits_rows(acc_words).map(|_| self.clone())
    }

    /// Rows per chunk on this accelerator.
    pub fn chunk_rows(&self, acc_words: u64) -> Result<u64, String> {
        self.fitted(acc_words)?.fits_rows(acc_words)
    }

    fn fits_rows(&self, acc_words: u64) -> Result<u64, String> {
        if self.len == 0 || self.len > 4095 {
            return Err(format!(
                "rows of {} elements exceed the vector unit's 4095",
                self.len
            ));
        }
        let half = acc_words.saturating_sub(self.const_words()) / 2;
        let r = (half / self.words_per_row().max(1))
            .min(4095)
            .min(self.rows.max(1));
        if r == 0 {
            return Err(format!(
                "one row of {} words does not fit half the accumulator ({half} words)",
                self.words_per_row()
            ));
        }
        Ok(r)
    }

    pub fn emit(&self, em: &mut Emitter) -> Result<(), String> {
        let acc_words = em.cfg.acc_words();
        self.fitted(acc_words)?.emit_fitted(em)
    }

    fn emit_fitted(&self, em: &mut Emitter) -> Result<(), String> {
        let acc_words = em.cfg.acc_words();
        let cr = self.fits_rows(acc_words)?;
        let cbase = 0u64;
        let mut caddr = Vec::new();
        let mut off = cbase;
        for &(_, words) in &self.consts {
            caddr.push(off as u32);
            off += words;
        }
        let half_size = cr * self.words_per_row();
        let data_base = off;
        if data_base + 2 * half_size > acc_words || data_base + 2 * half_size > 65536 {
            return Err("the kernel does not fit the accumulator's addressable words".into());
        }
        let len = self.len;
        let mut first = true;
        let mut r0 = 0;
        while r0 < self.rows {
            let rc = cr.min(self.rows - r0);
            let base = data_base + (em.next_chunk() as u64 % 2) * half_size;
            let addr = |s: Slot| -> u32 {
                (match s {
                    Slot::Wide(i) => base + i as u64 * cr * len,
                    Slot::Narrow(i) => base + self.wide as u64 * cr * len + i as u64 * cr,
                }) as u32
            };
            let mut loads = Vec::new();
            if first {
                for (&(dram, words), &a) in self.consts.iter().zip(&caddr) {
                    loads.extend(load_acc_flat(dram, a, words));
                }
            }
            for &(slot, dram) in &self.inputs {
                let (words, start) = match slot {
                    Slot::Wide(_) => (rc * len, dram + r0 * len * 4),
                    Slot::Narrow(_) => (rc, dram + r0 * 4),
                };
                loads.extend(load_acc_flat(start, addr(slot), words));
            }
            let mut compute = Vec::new();
            for st in &self.steps {
                self.emit_step(st, rc, &addr, &caddr, &mut compute)?;
            }
            let mut stores = Vec::new();
            for &(slot, dram, fmt) in &self.outputs {
                let (words, elem) = match slot {
                    Slot::Wide(_) => (rc * len, r0 * len),
                    Slot::Narrow(_) => (rc, r0),
                };
                stores.extend(match fmt {
                    OutFmt::Word => store_flat(FMT_I32, dram + elem * 4, addr(slot), words, (0, 0)),
                    OutFmt::I8 { lo, hi } => {
                        store_flat(FMT_I8, dram + elem, addr(slot), words, (lo, hi))
                    }
                });
            }
            em.chunk(loads, compute, stores);
            first = false;
            r0 += rc;
        }
        em.sync();
        Ok(())
    }

    fn emit_step(
        &self,
        st: &Step,
        rc: u64,
        addr: &dyn Fn(Slot) -> u32,
        caddr: &[u32],
        out: &mut Vec<tessera_accel_isa::Insn>,
    ) -> Result<(), String> {
        let len = self.len;
        let wide_src = matches!(st.src0, Slot::Wide(_));
        let (n, stride) = if wide_src { (len, len) } else { (1, 1) };
        let dst_stride = if matches!(st.dst, Slot::Wide(_)) {
            len
        } else {
            1
        };
        if matches!(st.dst, Slot::Wide(_)) && !wide_src {
            return Err("a wide result needs a wide first source".into());
        }
        if st.op.is_reduction() && !matches!(st.dst, Slot::Narrow(_)) {
            return Err("a reduction writes a narrow slot".into());
        }
        let dtype = st.int as u8;
        let (dst, src0) = (addr(st.dst), addr(st.src0));
        let one = |mode: u8, src1: u32| {
            vec_insn(
                st.op, dtype, mode, dst, src0, src1, n, rc, stride, dst_stride,
            )
        };
        match st.src1 {
            Src1::None => out.push(one(0, 0)),
            Src1::Tensor(s) => {
                if matches!(s, Slot::Wide(_)) != wide_src {
                    return Err("tensor operands of one step must have the same shape".into());
                }
                out.push(one(0, addr(s)));
            }
            Src1::Row(i) => out.push(one(1, addr(Slot::Narrow(i)))),
            Src1::Scalar(c) => out.push(one(2, caddr[c as usize])),
            Src1::Imm(v) => {
                let bits = f32_to_bf16(imm(v).ok_or_else(|| format!("{v} is not exact in bf16"))?);
                out.push(one(3, bits as u32));
            }
            Src1::ConstRow(c) => {
                if !wide_src {
                    return Err("a row constant applies to wide slots".into());
                }
                for r in 0..rc {
                    let o = (r * len) as u32;
                    out.push(vec_insn(
                        st.op,
                        dtype,
                        0,
                        dst + o,
                        src0 + o,
                        caddr[c as usize],
                        len,
                        1,
                        len,
                        len,
                    ));
                }
            }
        }
        Ok(())
    }
}
