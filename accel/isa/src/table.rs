//! The instruction table: one definition per instruction drives the encoder, the
//! decoder, the assembler, the disassembler and the generated reference in
//! `docs/accel-isa.md`. Changing a field here changes all of them at once, so the
//! contract and the tools cannot drift apart.

use crate::IsaError;

/// How a field's value is written in assembly text (and whether it is signed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    /// Unsigned, printed in decimal.
    Dec,
    /// Unsigned, printed as `0x…` (addresses).
    Hex,
    /// Two's complement, sign-extended on decode.
    Signed,
    /// An index into a list of names; indices past the list are invalid encodings.
    Enum(&'static [&'static str]),
}

#[derive(Clone, Copy, Debug)]
pub struct FieldDef {
    pub name: &'static str,
    /// Lowest bit of the field inside the 128-bit instruction word.
    pub lo: u32,
    pub width: u32,
    pub fmt: Fmt,
    pub doc: &'static str,
}

impl FieldDef {
    pub fn min(&self) -> i64 {
        match self.fmt {
            Fmt::Signed => -(1i64 << (self.width - 1)),
            _ => 0,
        }
    }
    pub fn max(&self) -> i64 {
        match self.fmt {
            Fmt::Signed => (1i64 << (self.width - 1)) - 1,
            Fmt::Enum(names) => names.len() as i64 - 1,
            _ => (1i64 << self.width) - 1,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct InsnDef {
    pub opcode: u8,
    pub mnemonic: &'static str,
    pub doc: &'static str,
    pub fields: &'static [FieldDef],
}

/// Bits [0, 3): opcode. Bits [3, 7): dependency flags. Op fields start at bit 7.
pub const OPCODE_BITS: u32 = 3;
pub const DEP_LO: u32 = 3;
pub const FIELD_LO: u32 = 7;

pub const MEM_NAMES: &[&str] = &["sp", "acc"];
pub const ELEM_BYTES_NAMES: &[&str] = &["1", "2", "4"];
pub const STORE_FMT_NAMES: &[&str] = &["i8", "i32", "bf16"];
pub const GEMM_MODE_NAMES: &[&str] = &["i8xi8", "i8xi4", "i8xi2", "bf16xi2"];
pub const ACC_MODE_NAMES: &[&str] = &["overwrite", "accumulate", "first_overwrite"];
pub const VEC_OP_NAMES: &[&str] = &[
    "copy",
    "add",
    "sub",
    "mul",
    "max",
    "min",
    "exp",
    "rsqrt",
    "recip",
    "sqrt",
    "reduce_sum",
    "reduce_max",
    "gelu",
    "gelu_tanh",
    "silu",
    "sigmoid",
    "tanh",
    "rotary",
    "i2f",
    "f2i",
    "div",
    "erf",
];
pub const VEC_DTYPE_NAMES: &[&str] = &["f32", "i32"];
pub const SRC1_MODE_NAMES: &[&str] = &["tensor", "row", "scalar", "imm"];
pub const CONFIG_REG_NAMES: &[&str] = &["store_zero_point", "gemm_a_zero_point"];

macro_rules! isa {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident = $opcode:literal, $mn:literal {
            $( $(#[doc = $fdoc:literal])* $f:ident : $ty:ty = [$lo:literal, $w:literal] $fmt:expr ),* $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
            pub struct $name { $( $(#[doc = $fdoc])* pub $f: $ty, )* }
        )*

        /// The operation part of an instruction (everything but the dependency flags).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op { $( $name($name), )* }

        pub static INSNS: &[InsnDef] = &[
            $( InsnDef {
                opcode: $opcode,
                mnemonic: $mn,
                doc: concat!($($doc, "\n",)*),
                fields: &[ $( FieldDef {
                    name: stringify!($f), lo: $lo, width: $w, fmt: $fmt,
                    doc: concat!($($fdoc,)*),
                } ),* ],
            } ),*
        ];

        impl Op {
            pub fn opcode(&self) -> u8 {
                match self { $( Op::$name(_) => $opcode, )* }
            }
            pub fn def(&self) -> &'static InsnDef {
                def_by_opcode(self.opcode()).expect("every Op variant is in INSNS")
            }
            /// Field values in table order, widened to i64.
            pub fn values(&self) -> Vec<i64> {
                match self { $( Op::$name(_x) => vec![ $( _x.$f as i64 ),* ], )* }
            }
            /// Rebuilds an op from table-ordered values; the values must already be
            /// range-checked against the field widths.
            pub fn from_values(opcode: u8, _v: &[i64]) -> Option<Op> {
                match opcode {
                    $( $opcode => {
                        let mut _it = _v.iter();
                        Some(Op::$name($name { $( $f: *_it.next()? as $ty, )* }))
                    } )*
                    _ => None,
                }
            }
        }
    };
}

isa! {
    /// 2D strided DMA from DRAM into the scratchpad (`mem=sp`) or the accumulator
    /// (`mem=acc`, 4-byte elements only), with zero padding around the block.
    /// `y_size` rows of `x_size` elements are read from DRAM at `dram + row *
    /// x_stride * elem_bytes`; the SRAM block is dense with rows of `pad_left +
    /// x_size + pad_right` elements and `pad_top + y_size + pad_bottom` rows;
    /// padding elements are written as zero. Runs on the load queue.
    Load = 1, "load" {
        /// Target memory: `sp` (scratchpad, address in 16-byte granules) or `acc` (accumulator, address in 32-bit words).
        mem: u8 = [7, 2] Fmt::Enum(MEM_NAMES),
        /// Element size in bytes.
        elem_bytes: u8 = [9, 2] Fmt::Enum(ELEM_BYTES_NAMES),
        /// DRAM byte address of the first element.
        dram: u32 = [11, 32] Fmt::Hex,
        /// SRAM address (granules for `sp`, words for `acc`).
        sram: u32 = [43, 16] Fmt::Dec,
        /// Rows read from DRAM.
        y_size: u32 = [59, 10] Fmt::Dec,
        /// Elements per row read from DRAM.
        x_size: u32 = [69, 12] Fmt::Dec,
        /// DRAM row stride in elements (must be >= x_size when y_size > 1).
        x_stride: u32 = [81, 16] Fmt::Dec,
        /// Zero rows written before the block.
        pad_top: u8 = [97, 4] Fmt::Dec,
        /// Zero rows written after the block.
        pad_bottom: u8 = [101, 4] Fmt::Dec,
        /// Zero elements written before each row.
        pad_left: u8 = [105, 4] Fmt::Dec,
        /// Zero elements written after each row.
        pad_right: u8 = [109, 4] Fmt::Dec,
    }

    /// 2D strided DMA from the accumulator to DRAM, converting each 32-bit word on
    /// the way: `i8` requantizes (see the requantization section), `i32` copies the
    /// word, `bf16` rounds the word (read as f32) to bf16, nearest-even. Reads a
    /// dense block of `y_size` rows of `x_size` words at `sram`; writes row `r` at
    /// `dram + r * x_stride * out_bytes`. Runs on the store queue.
    Store = 2, "store" {
        /// Output format: `i8` (requantized), `i32` (raw word), `bf16` (f32 word rounded).
        fmt: u8 = [7, 2] Fmt::Enum(STORE_FMT_NAMES),
        /// DRAM byte address of the first element.
        dram: u32 = [9, 32] Fmt::Hex,
        /// Accumulator word address.
        sram: u32 = [41, 16] Fmt::Dec,
        /// Rows.
        y_size: u32 = [57, 9] Fmt::Dec,
        /// Words per row.
        x_size: u32 = [66, 9] Fmt::Dec,
        /// DRAM row stride in output elements.
        x_stride: u32 = [75, 16] Fmt::Dec,
        /// Requantization multiplier (`i8` only): out = round(acc * mult / 2^shift).
        mult: u32 = [91, 16] Fmt::Dec,
        /// Requantization right shift (`i8` only), rounding half to even.
        shift: u8 = [107, 5] Fmt::Dec,
        /// Lower clamp bound (`i8` only).
        clamp_lo: i8 = [112, 8] Fmt::Signed,
        /// Upper clamp bound (`i8` only).
        clamp_hi: i8 = [120, 8] Fmt::Signed,
    }

    /// Matrix multiply on the DIMxDIM weight-stationary systolic array:
    /// `C[m x n] (+)= A[m x k] . W[n x k]^T` for each iteration of a 2-level loop
    /// (`iter_out` x `iter_in`). Each iteration is one fold of the array. Operand
    /// tiles are dense; the loop factors step the tile addresses in units of whole
    /// tiles (see the GEMM section). Runs on the compute queue.
    Gemm = 3, "gemm" {
        /// Operand types: activations x weights.
        mode: u8 = [7, 2] Fmt::Enum(GEMM_MODE_NAMES),
        /// `overwrite` C, `accumulate` into C, or `first_overwrite` (overwrite when the inner index is 0, accumulate otherwise).
        acc_mode: u8 = [9, 2] Fmt::Enum(ACC_MODE_NAMES),
        /// Rows of A streamed through the array (T in the cycle model), 1..=1023.
        m: u32 = [11, 10] Fmt::Dec,
        /// Reduction length, 1..=DIM (array rows used).
        k: u32 = [21, 8] Fmt::Dec,
        /// Output columns, 1..=DIM (array columns used).
        n: u32 = [29, 8] Fmt::Dec,
        /// Scratchpad granule address of the first A tile.
        a: u32 = [37, 16] Fmt::Dec,
        /// Scratchpad granule address of the first W tile.
        w: u32 = [53, 16] Fmt::Dec,
        /// Accumulator word address of the first C tile.
        c: u32 = [69, 16] Fmt::Dec,
        /// Outer loop trip count, 1..=31.
        iter_out: u8 = [85, 5] Fmt::Dec,
        /// Inner loop trip count, 1..=31.
        iter_in: u8 = [90, 5] Fmt::Dec,
        /// A tile step per outer iteration (in A tiles).
        a_out: u8 = [95, 5] Fmt::Dec,
        /// A tile step per inner iteration.
        a_in: u8 = [100, 5] Fmt::Dec,
        /// W tile step per outer iteration (in W tiles).
        w_out: u8 = [105, 5] Fmt::Dec,
        /// W tile step per inner iteration.
        w_in: u8 = [110, 5] Fmt::Dec,
        /// C tile step per outer iteration (in C tiles).
        c_out: u8 = [115, 5] Fmt::Dec,
        /// C tile step per inner iteration.
        c_in: u8 = [120, 5] Fmt::Dec,
    }

    /// Vector unit: `rows` rows of `len` accumulator words. Row `r` of the
    /// destination is at `dst + r * dst_stride`, of src0 at `src0 + r * stride`.
    /// src1 is a tensor (`src1 + r * stride`), one value per row (`src1 + r`), one
    /// scalar (`src1`), or an immediate held in the src1 field (bf16 bits for f32,
    /// a signed 16-bit integer for i32). Reductions write one word per row. All
    /// sources of a row are read before any result of that row is written. Runs
    /// on the compute queue.
    Vector = 4, "vec" {
        /// Operation (see the vector-unit table for semantics and precision).
        op: u8 = [7, 5] Fmt::Enum(VEC_OP_NAMES),
        /// Word interpretation: `f32` or `i32` (wrapping).
        dtype: u8 = [12, 1] Fmt::Enum(VEC_DTYPE_NAMES),
        /// How src1 is addressed.
        src1_mode: u8 = [13, 2] Fmt::Enum(SRC1_MODE_NAMES),
        /// Destination word address.
        dst: u32 = [15, 16] Fmt::Dec,
        /// First source word address.
        src0: u32 = [31, 16] Fmt::Dec,
        /// Second source word address, or the immediate.
        src1: u32 = [47, 16] Fmt::Dec,
        /// Elements per row, 1..=4095.
        len: u32 = [63, 12] Fmt::Dec,
        /// Rows, 1..=4095.
        rows: u32 = [75, 12] Fmt::Dec,
        /// Source row stride in words.
        stride: u32 = [87, 16] Fmt::Dec,
        /// Destination row stride in words.
        dst_stride: u32 = [103, 16] Fmt::Dec,
    }

    /// Writes a unit register. `store_zero_point` (store queue) is added after the
    /// requantizing shift and before the clamp; `gemm_a_zero_point` (compute queue)
    /// is subtracted from every integer activation before the multiply. Both reset
    /// to 0 at the start of a stream.
    Config = 5, "config" {
        /// The register written; it also selects the queue.
        reg: u8 = [7, 4] Fmt::Enum(CONFIG_REG_NAMES),
        /// The value.
        value: i32 = [11, 32] Fmt::Signed,
    }

    /// Ends the stream. Must be the last instruction; runs on the compute queue.
    Finish = 6, "finish" {}
}

pub fn def_by_opcode(opcode: u8) -> Option<&'static InsnDef> {
    INSNS.iter().find(|d| d.opcode == opcode)
}

pub fn def_by_mnemonic(mn: &str) -> Option<&'static InsnDef> {
    INSNS.iter().find(|d| d.mnemonic == mn)
}

/// The three in-order queues. `prev`/`next` in the dependency flags refer to the
/// neighbour in the order load -> compute -> store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Queue {
    Load = 0,
    Compute = 1,
    Store = 2,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Load, Queue::Compute, Queue::Store];
    pub fn name(self) -> &'static str {
        match self {
            Queue::Load => "load",
            Queue::Compute => "compute",
            Queue::Store => "store",
        }
    }
    pub fn prev(self) -> Option<Queue> {
        match self {
            Queue::Load => None,
            Queue::Compute => Some(Queue::Load),
            Queue::Store => Some(Queue::Compute),
        }
    }
    pub fn next(self) -> Option<Queue> {
        match self {
            Queue::Load => Some(Queue::Compute),
            Queue::Compute => Some(Queue::Store),
            Queue::Store => None,
        }
    }
}

/// Dependency-token flags carried by every instruction (VTA-style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Deps {
    /// Wait for and consume a token pushed by the previous queue.
    pub pop_prev: bool,
    /// Wait for and consume a token pushed by the next queue.
    pub pop_next: bool,
    /// On completion, push a token to the previous queue.
    pub push_prev: bool,
    /// On completion, push a token to the next queue.
    pub push_next: bool,
}

pub const DEP_NAMES: [&str; 4] = ["pop_prev", "pop_next", "push_prev", "push_next"];

impl Deps {
    pub fn bits(&self) -> u8 {
        self.pop_prev as u8
            | (self.pop_next as u8) << 1
            | (self.push_prev as u8) << 2
            | (self.push_next as u8) << 3
    }
    pub fn from_bits(b: u8) -> Deps {
        Deps {
            pop_prev: b & 1 != 0,
            pop_next: b & 2 != 0,
            push_prev: b & 4 != 0,
            push_next: b & 8 != 0,
        }
    }
}

/// One 128-bit instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub deps: Deps,
    pub op: Op,
}

impl Insn {
    pub fn new(op: Op) -> Insn {
        Insn {
            deps: Deps::default(),
            op,
        }
    }
    pub fn with_deps(
        mut self,
        pop_prev: bool,
        pop_next: bool,
        push_prev: bool,
        push_next: bool,
    ) -> Insn {
        self.deps = Deps {
            pop_prev,
            pop_next,
            push_prev,
            push_next,
        };
        self
    }

    /// The queue that executes this instruction.
    pub fn queue(&self) -> Queue {
        match &self.op {
            Op::Load(_) => Queue::Load,
            Op::Store(_) => Queue::Store,
            Op::Gemm(_) | Op::Vector(_) | Op::Finish(_) => Queue::Compute,
            Op::Config(c) => match c.reg {
                0 => Queue::Store,
                _ => Queue::Compute,
            },
        }
    }

    /// Encodes to the 128-bit word (little-endian when serialized).
    pub fn encode(&self) -> Result<u128, IsaError> {
        let def = self.op.def();
        let mut word = def.opcode as u128 | (self.deps.bits() as u128) << DEP_LO;
        for (f, v) in def.fields.iter().zip(self.op.values()) {
            if v < f.min() || v > f.max() {
                return Err(IsaError::new(format!(
                    "{}: field {}={} out of range [{}, {}]",
                    def.mnemonic,
                    f.name,
                    v,
                    f.min(),
                    f.max()
                )));
            }
            let mask = (1u128 << f.width) - 1;
            word |= ((v as u128) & mask) << f.lo;
        }
        Ok(word)
    }

    /// Decodes one instruction word; `index` names the instruction in errors.
    pub fn decode(word: u128, index: usize) -> Result<Insn, IsaError> {
        let opcode = (word & ((1 << OPCODE_BITS) - 1)) as u8;
        let def = def_by_opcode(opcode)
            .ok_or_else(|| IsaError::at(index, format!("bad opcode {opcode}")))?;
        let deps = Deps::from_bits(((word >> DEP_LO) & 0xf) as u8);
        let mut used: u128 = (1u128 << FIELD_LO) - 1;
        let mut vals = Vec::with_capacity(def.fields.len());
        for f in def.fields {
            let mask = (1u128 << f.width) - 1;
            used |= mask << f.lo;
            let raw = ((word >> f.lo) & mask) as i64;
            let v = match f.fmt {
                Fmt::Signed if raw >= 1 << (f.width - 1) => raw - (1i64 << f.width),
                _ => raw,
            };
            if v > f.max() {
                return Err(IsaError::at(
                    index,
                    format!("{}: field {} has invalid value {}", def.mnemonic, f.name, v),
                ));
            }
            vals.push(v);
        }
        if word & !used != 0 {
            return Err(IsaError::at(
                index,
                format!("{}: reserved bits are not zero", def.mnemonic),
            ));
        }
        let op = Op::from_values(opcode, &vals)
            .ok_or_else(|| IsaError::at(index, format!("bad opcode {opcode}")))?;
        let insn = Insn { deps, op };
        insn.validate().map_err(|e| IsaError::at(index, e))?;
        Ok(insn)
    }

    /// Structural checks that need no hardware configuration: dependency flags
    /// that name a neighbour the queue has, non-zero sizes, and field combinations
    /// the semantics define. Size limits of a particular configuration are checked
    /// by the simulator.
    pub fn validate(&self) -> Result<(), String> {
        let q = self.queue();
        let mn = self.op.def().mnemonic;
        if q.prev().is_none() && (self.deps.pop_prev || self.deps.push_prev) {
            return Err(format!(
                "{mn}: the {} queue has no previous queue",
                q.name()
            ));
        }
        if q.next().is_none() && (self.deps.pop_next || self.deps.push_next) {
            return Err(format!("{mn}: the {} queue has no next queue", q.name()));
        }
        match &self.op {
            Op::Load(l) => {
                if l.y_size == 0 || l.x_size == 0 {
                    return Err("load: empty block".into());
                }
                if l.mem == 1 && l.elem_bytes != 2 {
                    return Err("load: accumulator loads move 4-byte elements".into());
                }
                if l.y_size > 1 && l.x_stride < l.x_size {
                    return Err("load: x_stride is smaller than x_size".into());
                }
            }
            Op::Store(s) => {
                if s.y_size == 0 || s.x_size == 0 {
                    return Err("store: empty block".into());
                }
                if s.y_size > 1 && s.x_stride < s.x_size {
                    return Err("store: x_stride is smaller than x_size".into());
                }
                if s.fmt != 0 && (s.mult != 0 || s.shift != 0 || s.clamp_lo != 0 || s.clamp_hi != 0)
                {
                    return Err("store: requantization fields are only used with fmt=i8".into());
                }
                if s.fmt == 0 && s.clamp_lo > s.clamp_hi {
                    return Err("store: clamp_lo > clamp_hi".into());
                }
            }
            Op::Gemm(g) => {
                if g.m == 0 || g.k == 0 || g.n == 0 {
                    return Err("gemm: m, k and n must be at least 1".into());
                }
                if g.iter_out == 0 || g.iter_in == 0 {
                    return Err("gemm: loop trip counts must be at least 1".into());
                }
            }
            Op::Vector(v) => {
                if v.len == 0 || v.rows == 0 {
                    return Err("vec: len and rows must be at least 1".into());
                }
                let op = VecOp::from_index(v.op).ok_or("vec: bad op")?;
                if v.dtype == 1 && !op.allows_i32() {
                    return Err(format!("vec: {} has no i32 form", op.name()));
                }
                if !op.uses_src1() && (v.src1_mode != 0 || v.src1 != 0) {
                    return Err(format!("vec: {} takes no src1", op.name()));
                }
                if op == VecOp::Rotary && (v.src1_mode != 0 || !v.len.is_multiple_of(2)) {
                    return Err("vec: rotary needs an even len and a tensor src1".into());
                }
            }
            Op::Config(_) | Op::Finish(_) => {}
        }
        Ok(())
    }
}

/// Vector-unit operations, in the order of their encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VecOp {
    Copy,
    Add,
    Sub,
    Mul,
    Max,
    Min,
    Exp,
    Rsqrt,
    Recip,
    Sqrt,
    ReduceSum,
    ReduceMax,
    Gelu,
    GeluTanh,
    Silu,
    Sigmoid,
    Tanh,
    Rotary,
    I2f,
    F2i,
    /// Since version 2.
    Div,
    /// Since version 2.
    Erf,
}

impl VecOp {
    const ALL: [VecOp; 22] = [
        VecOp::Copy,
        VecOp::Add,
        VecOp::Sub,
        VecOp::Mul,
        VecOp::Max,
        VecOp::Min,
        VecOp::Exp,
        VecOp::Rsqrt,
        VecOp::Recip,
        VecOp::Sqrt,
        VecOp::ReduceSum,
        VecOp::ReduceMax,
        VecOp::Gelu,
        VecOp::GeluTanh,
        VecOp::Silu,
        VecOp::Sigmoid,
        VecOp::Tanh,
        VecOp::Rotary,
        VecOp::I2f,
        VecOp::F2i,
        VecOp::Div,
        VecOp::Erf,
    ];
    pub fn from_index(i: u8) -> Option<VecOp> {
        Self::ALL.get(i as usize).copied()
    }
    pub fn index(self) -> u8 {
        Self::ALL.iter().position(|&o| o == self).unwrap_or(0) as u8
    }
    pub fn name(self) -> &'static str {
        VEC_OP_NAMES[self.index() as usize]
    }
    pub fn uses_src1(self) -> bool {
        matches!(
            self,
            VecOp::Add
                | VecOp::Sub
                | VecOp::Mul
                | VecOp::Div
                | VecOp::Max
                | VecOp::Min
                | VecOp::Rotary
        )
    }
    pub fn allows_i32(self) -> bool {
        matches!(
            self,
            VecOp::Copy
                | VecOp::Add
                | VecOp::Sub
                | VecOp::Mul
                | VecOp::Max
                | VecOp::Min
                | VecOp::ReduceSum
                | VecOp::ReduceMax
        )
    }
    pub fn is_reduction(self) -> bool {
        matches!(self, VecOp::ReduceSum | VecOp::ReduceMax)
    }
    /// Transcendental ops and division are multi-cycle in hardware (iterative
    /// or table-plus-polynomial units), so they issue at a lower rate
    /// (`vec_special_ii` in the config).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            VecOp::Exp
                | VecOp::Rsqrt
                | VecOp::Recip
                | VecOp::Sqrt
                | VecOp::Gelu
                | VecOp::GeluTanh
                | VecOp::Silu
                | VecOp::Sigmoid
                | VecOp::Tanh
                | VecOp::Div
                | VecOp::Erf
        )
    }
}

/// Element type of a GEMM mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmMode {
    I8xI8,
    I8xI4,
    I8xI2,
    Bf16xI2,
}

impl GemmMode {
    pub fn from_index(i: u8) -> Option<GemmMode> {
        [
            GemmMode::I8xI8,
            GemmMode::I8xI4,
            GemmMode::I8xI2,
            GemmMode::Bf16xI2,
        ]
        .get(i as usize)
        .copied()
    }
    pub fn act_bytes(self) -> u64 {
        if self == GemmMode::Bf16xI2 {
            2
        } else {
            1
        }
    }
    pub fn weight_bits(self) -> u64 {
        match self {
            GemmMode::I8xI8 => 8,
            GemmMode::I8xI4 => 4,
            GemmMode::I8xI2 | GemmMode::Bf16xI2 => 2,
        }
    }
}

pub const GRANULE: u64 = 16;

impl Gemm {
    pub fn gemm_mode(&self) -> GemmMode {
        GemmMode::from_index(self.mode).unwrap_or(GemmMode::I8xI8)
    }
    /// Bytes of one packed weight row (k weights).
    pub fn w_row_bytes(&self) -> u64 {
        (self.k as u64 * self.gemm_mode().weight_bits()).div_ceil(8)
    }
    /// Footprint of one A tile in scratchpad granules.
    pub fn a_tile_granules(&self) -> u64 {
        (self.m as u64 * self.k as u64 * self.gemm_mode().act_bytes()).div_ceil(GRANULE)
    }
    pub fn w_tile_granules(&self) -> u64 {
        (self.n as u64 * self.w_row_bytes()).div_ceil(GRANULE)
    }
    pub fn c_tile_words(&self) -> u64 {
        self.m as u64 * self.n as u64
    }
}

/// Renders the per-instruction field tables in Markdown (the generated part of
/// `docs/accel-isa.md`).
pub fn reference_markdown() -> String {
    let mut s = String::new();
    s.push_str("Every instruction: bits [0,3) opcode, bit 3 `pop_prev`, bit 4 `pop_next`, bit 5 `push_prev`, bit 6 `push_next`. Bits not listed are reserved and must be zero.\n");
    for d in INSNS {
        s.push_str(&format!("\n### `{}` (opcode {})\n\n", d.mnemonic, d.opcode));
        s.push_str(
            d.doc
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .trim(),
        );
        s.push_str("\n\n");
        if d.fields.is_empty() {
            s.push_str("No fields.\n");
            continue;
        }
        s.push_str("| field | bits | values | meaning |\n|---|---|---|---|\n");
        for f in d.fields {
            let vals = match f.fmt {
                Fmt::Enum(names) => names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" "),
                Fmt::Signed => format!("{}..={} (signed)", f.min(), f.max()),
                Fmt::Hex | Fmt::Dec => format!("0..={}", f.max()),
            };
            s.push_str(&format!(
                "| `{}` | [{}, {}) | {} | {} |\n",
                f.name,
                f.lo,
                f.lo + f.width,
                vals,
                f.doc.trim()
            ));
        }
    }
    s
}
