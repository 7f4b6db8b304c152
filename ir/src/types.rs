//! Tensor types: a shape of [`Dim`]s and an element type, which is either a
//! plain [`DType`] or a quantized type carrying its scale and zero point.

use crate::dim::Dim;
use crate::dtype::DType;
use crate::graph::ConstId;
use std::fmt;

/// How quantization parameters are shared across a tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One scale and zero point for the whole tensor.
    PerTensor,
    /// One per slice along `axis` (per-channel weights).
    PerAxis { axis: i64 },
    /// One per `block` consecutive elements along `axis` (MatMulNBits, MX formats).
    PerBlock { axis: i64, block: i64 },
}

/// A scale or zero point: an immediate for per-tensor parameters, or a
/// constant tensor (by handle, never copied) for per-axis and per-block ones.
#[derive(Clone, Debug, PartialEq)]
pub enum QParam {
    Imm(f64),
    Const(ConstId),
}

/// `real = (stored - zero_point) * scale`, with parameters shared per
/// [`Granularity`]. `expressed` is the float type the values stand for.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantType {
    pub storage: DType,
    pub expressed: DType,
    pub granularity: Granularity,
    pub scale: QParam,
    pub zero_point: Option<QParam>,
}

/// The element type of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum ElemType {
    Plain(DType),
    Quant(Box<QuantType>),
}

impl ElemType {
    /// The type elements are stored as.
    pub fn storage(&self) -> DType {
        match self {
            ElemType::Plain(d) => *d,
            ElemType::Quant(q) => q.storage,
        }
    }
}

impl From<DType> for ElemType {
    fn from(d: DType) -> Self {
        ElemType::Plain(d)
    }
}

/// A ranked tensor type. (ONNX unranked values are given a rank at import or
/// rejected; every value in Tessera has a rank.)
#[derive(Clone, Debug, PartialEq)]
pub struct TensorType {
    pub shape: Vec<Dim>,
    pub elem: ElemType,
}

impl TensorType {
    pub fn new(shape: Vec<Dim>, dtype: DType) -> TensorType {
        TensorType {
            shape,
            elem: ElemType::Plain(dtype),
        }
    }

    pub fn fixed(shape: &[i64], dtype: DType) -> TensorType {
        TensorType::new(shape.iter().map(|&d| Dim::fixed(d)).collect(), dtype)
    }

    pub fn scalar(dtype: DType) -> TensorType {
        TensorType::new(Vec::new(), dtype)
    }

    pub fn dtype(&self) -> DType {
        self.elem.storage()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The static shape, if every dim is fixed.
    pub fn static_shape(&self) -> Option<Vec<i64>> {
        self.shape.iter().map(Dim::as_fixed).collect()
    }

    /// Element count when static.
    pub fn num_elements(&self) -> Option<i64> {
        self.static_shape().map(|s| s.iter().product())
    }

    pub fn with_dtype(&self, dtype: DType) -> TensorType {
        TensorType::new(self.shape.clone(), dtype)
    }

    pub fn with_shape(&self, shape: Vec<Dim>) -> TensorType {
        TensorType {
            shape,
            elem: self.elem.clone(),
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Granularity::PerTensor => f.write_str("tensor"),
            Granularity::PerAxis { axis } => write!(f, "axis({axis})"),
            Granularity::PerBlock { axis, block } => write!(f, "block({axis}, {block})"),
        }
    }
}

impl fmt::Display for QParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QParam::Imm(v) => write!(f, "{v:?}"),
            QParam::Const(c) => write!(f, "@{}", c.0),
        }
    }
}

impl fmt::Display for ElemType {
    /// `f32`, or `!tsr.quant<u4:f32, block(1, 32), scale = @3, zp = 8.0>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemType::Plain(d) => write!(f, "{d}"),
            ElemType::Quant(q) => {
                write!(
                    f,
                    "!tsr.quant<{}:{}, {}, scale = {}",
                    q.storage, q.expressed, q.granularity, q.scale
                )?;
                if let Some(zp) = &q.zero_point {
                    write!(f, ", zp = {zp}")?;
                }
                f.write_str(">")
            }
        }
    }
}

impl fmt::Display for TensorType {
    /// `tensor<[batch]x[seq]x128xf32>`, `tensor<f32>` for scalars.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor<")?;
        for d in &self.shape {
            write!(f, "{d}x")?;
        }
        write!(f, "{}>", self.elem)
    }
}

/// Constants a type refers to (quantization scales and zero points).
pub fn quant_consts(t: &TensorType) -> Vec<ConstId> {
    match &t.elem {
        ElemType::Plain(_) => Vec::new(),
        ElemType::Quant(q) => [Some(&q.scale), q.zero_point.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| match p {
                QParam::Const(c) => Some(*c),
                QParam::Imm(_) => None,
            })
            .collect(),
    }
}

/// Rewrites the constant handles a type refers to.
pub fn quant_consts_mut(t: &mut TensorType, f: &dyn Fn(&mut ConstId)) {
    if let ElemType::Quant(q) = &mut t.elem {
        if let QParam::Const(c) = &mut q.scale {
            f(c);
        }
        if let Some(QParam::Const(c)) = &mut q.zero_point {
            f(c);
        }
    }
}
