//! The stream container: header, buffer table, instructions and DRAM image.
//!
//! Binary layout (little-endian): a 48-byte header (magic `TSRA`, u16 version,
//! u16 reserved = 0, u64 config hash, u64 DRAM size, u32 instruction count, u32
//! buffer count, u64 image base, u64 image length), the buffer table, the
//! instructions (16 bytes each), then the DRAM image bytes.

use crate::{Insn, IsaError};

pub const MAGIC: [u8; 4] = *b"TSRA";
/// Version 2 added the vector ops `div` and `erf` (enum codes 20 and 21).
pub const VERSION: u16 = 2;
pub const HEADER_BYTES: usize = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
    Weight,
}

pub const ROLE_NAMES: &[&str] = &["input", "output", "weight"];

impl Role {
    pub fn name(self) -> &'static str {
        ROLE_NAMES[self as usize]
    }
    pub fn from_index(i: u8) -> Option<Role> {
        [Role::Input, Role::Output, Role::Weight]
            .get(i as usize)
            .copied()
    }
    pub fn parse(s: &str) -> Option<Role> {
        ROLE_NAMES
            .iter()
            .position(|n| *n == s)
            .and_then(|i| Role::from_index(i as u8))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    I8,
    U8,
    I32,
    F32,
    Bf16,
    /// Two per byte, low nibble first.
    I4,
    /// Four per byte, lowest bits first.
    I2,
}

pub const DTYPE_NAMES: &[&str] = &["i8", "u8", "i32", "f32", "bf16", "i4", "i2"];

impl DType {
    const ALL: [DType; 7] = [
        DType::I8,
        DType::U8,
        DType::I32,
        DType::F32,
        DType::Bf16,
        DType::I4,
        DType::I2,
    ];
    pub fn name(self) -> &'static str {
        DTYPE_NAMES[self as usize]
    }
    pub fn from_index(i: u8) -> Option<DType> {
        Self::ALL.get(i as usize).copied()
    }
    pub fn parse(s: &str) -> Option<DType> {
        DTYPE_NAMES
            .iter()
            .position(|n| *n == s)
            .and_then(|i| DType::from_index(i as u8))
    }
    pub fn bits(self) -> u64 {
        match self {
            DType::I8 | DType::U8 => 8,
            DType::I32 | DType::F32 => 32,
            DType::Bf16 => 16,
            DType::I4 => 4,
            DType::I2 => 2,
        }
    }
}

/// A named DRAM region the stream reads or writes (how a runtime binds tensors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub name: String,
    pub role: Role,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub addr: u64,
}

impl Buffer {
    /// Size in bytes; saturates (and then fails any range check) on absurd shapes.
    pub fn bytes(&self) -> u64 {
        let elems = self.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        elems
            .and_then(|e| e.checked_mul(self.dtype.bits()))
            .map_or(u64::MAX, |b| b.div_ceil(8))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub version: u16,
    /// `HwConfig::hash` of the configuration the stream was compiled for; 0 = any.
    pub config_hash: u64,
    /// DRAM bytes the stream touches (buffers, image, scratch).
    pub dram_size: u64,
    pub buffers: Vec<Buffer>,
    pub insns: Vec<Insn>,
    /// DRAM address where `image` (weights, constants) is placed before execution.
    pub image_base: u64,
    pub image: Vec<u8>,
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            version: VERSION,
            config_hash: 0,
            dram_size: 0,
            buffers: vec![],
            insns: vec![],
            image_base: 0,
            image: vec![],
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], IsaError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(e) => {
                let s = &self.b[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => Err(IsaError::new(format!(
                "stream truncated while reading {what} at byte {}",
                self.pos
            ))),
        }
    }
    fn u8(&mut self, w: &str) -> Result<u8, IsaError> {
        Ok(self.take(1, w)?[0])
    }
    fn u16(&mut self, w: &str) -> Result<u16, IsaError> {
        Ok(u16::from_le_bytes(
            self.take(2, w)?.try_into().unwrap_or_default(),
        ))
    }
    fn u32(&mut self, w: &str) -> Result<u32, IsaError> {
        Ok(u32::from_le_bytes(
            self.take(4, w)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self, w: &str) -> Result<u64, IsaError> {
        Ok(u64::from_le_bytes(
            self.take(8, w)?.try_into().unwrap_or_default(),
        ))
    }
}

impl Stream {
    pub fn buffer(&self, name: &str) -> Option<&Buffer> {
        self.buffers.iter().find(|b| b.name == name)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, IsaError> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.insns.len() * 16 + self.image.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.config_hash.to_le_bytes());
        out.extend_from_slice(&self.dram_size.to_le_bytes());
        out.extend_from_slice(&(self.insns.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.buffers.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.image_base.to_le_bytes());
        out.extend_from_slice(&(self.image.len() as u64).to_le_bytes());
        for b in &self.buffers {
            if b.name.is_empty() || b.name.len() > 255 || b.shape.len() > 255 {
                return Err(IsaError::new(format!(
                    "buffer '{}': name or rank too long",
                    b.name
                )));
            }
            out.push(b.role as u8);
            out.push(b.dtype as u8);
            out.push(b.shape.len() as u8);
            out.push(b.name.len() as u8);
            out.extend_from_slice(&b.addr.to_le_bytes());
            for d in &b.shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(b.name.as_bytes());
        }
        for (i, insn) in self.insns.iter().enumerate() {
            let w = insn.encode().map_err(|e| IsaError::at(i, e.msg))?;
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.image);
        Ok(out)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Stream, IsaError> {
        let mut r = Reader { b: bytes, pos: 0 };
        if r.take(4, "magic")? != MAGIC {
            return Err(IsaError::new("not a Tessera stream (bad magic)"));
        }
        let version = r.u16("version")?;
        if version != VERSION {
            return Err(IsaError::new(format!(
                "unsupported stream version {version} (this build reads {VERSION}; recompile the stream)"
            )));
        }
        if r.u16("reserved")? != 0 {
            return Err(IsaError::new("header reserved field is not zero"));
        }
        let config_hash = r.u64("config hash")?;
        let dram_size = r.u64("dram size")?;
        let n_insns = r.u32("instruction count")? as usize;
        let n_bufs = r.u32("buffer count")? as usize;
        let image_base = r.u64("image base")?;
        let image_len = r.u64("image length")?;
        let mut buffers = Vec::new();
        for _ in 0..n_bufs {
            let role = r.u8("buffer role")?;
            let role = Role::from_index(role)
                .ok_or_else(|| IsaError::new(format!("bad buffer role {role}")))?;
            let dt = r.u8("buffer dtype")?;
            let dtype = DType::from_index(dt)
                .ok_or_else(|| IsaError::new(format!("bad buffer dtype {dt}")))?;
            let rank = r.u8("buffer rank")? as usize;
            let name_len = r.u8("buffer name length")? as usize;
            let addr = r.u64("buffer address")?;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(r.u64("buffer dim")?);
            }
            let name = String::from_utf8(r.take(name_len, "buffer name")?.to_vec())
                .map_err(|_| IsaError::new("buffer name is not UTF-8"))?;
            buffers.push(Buffer {
                name,
                role,
                dtype,
                shape,
                addr,
            });
        }
        let mut insns = Vec::with_capacity(n_insns.min(bytes.len() / 16));
        for i in 0..n_insns {
            let w = u128::from_le_bytes(r.take(16, "instruction")?.try_into().unwrap_or_default());
            insns.push(Insn::decode(w, i)?);
        }
        let image_len = usize::try_from(image_len).map_err(|_| IsaError::new("image too large"))?;
        let image = r.take(image_len, "DRAM image")?.to_vec();
        if r.pos != bytes.len() {
            return Err(IsaError::new(format!(
                "{} trailing bytes after the DRAM image",
                bytes.len() - r.pos
            )));
        }
        Ok(Stream {
            version,
            config_hash,
            dram_size,
            buffers,
            insns,
            image_base,
            image,
        })
    }
}
