//! Op definitions. **One [`OpDef`] per op** drives its parsing and printing
//! (mnemonic, attributes), verification (operand/result counts, attribute
//! kinds and defaults), shape/type inference (`infer`) and reference semantics
//! (`eval`). Adding an op is: write its `OpDef` in the family file, add one
//! line to [`op_table!`] below.
//!
//! The families: [`core`] (constant, identity), [`elementwise`], [`linalg`],
//! [`shape`], [`reduce`], [`nn`], [`quant`], [`generate`], [`contrib`]
//! (com.microsoft ops).

pub mod util;

pub mod contrib;
pub mod core;
pub mod elementwise;
pub mod fused;
pub mod generate;
pub mod linalg;
pub mod ml;
pub mod nn;
pub mod quant;
pub mod reduce;
pub mod shape;
pub mod symbolic;
#[cfg(test)]
pub(crate) mod testing;
pub mod text;

use crate::attr::{Attr, AttrKind, Attrs};
use crate::dtype::DType;
use crate::tensor::{SharedTensor, Tensor};
use crate::types::TensorType;
use std::collections::HashMap;
use std::sync::OnceLock;

/// How many values an operand slot takes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Arity {
    One,
    Optional,
    /// Zero or more; only the last slot may be variadic.
    Variadic,
}

#[derive(Copy, Clone, Debug)]
pub struct OperandSpec {
    pub name: &'static str,
    pub arity: Arity,
}

pub const fn req(name: &'static str) -> OperandSpec {
    OperandSpec {
        name,
        arity: Arity::One,
    }
}
pub const fn opt(name: &'static str) -> OperandSpec {
    OperandSpec {
        name,
        arity: Arity::Optional,
    }
}
pub const fn variadic(name: &'static str) -> OperandSpec {
    OperandSpec {
        name,
        arity: Arity::Variadic,
    }
}

/// Result count: fixed, or a range decided per op instance (Split, TopK's
/// optional outputs, Dropout's mask).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Results {
    Fixed(usize),
    Range(usize, usize),
}

/// An attribute's default when absent.
#[derive(Copy, Clone, Debug)]
pub enum Default {
    /// Must be present.
    Required,
    /// May be absent; the op's code decides what absence means.
    Absent,
    Int(i64),
    Float(f64),
    Str(&'static str),
    Ints(&'static [i64]),
}

#[derive(Copy, Clone, Debug)]
pub struct AttrSpec {
    pub name: &'static str,
    pub kind: AttrKind,
    pub default: Default,
}

pub const fn attr(name: &'static str, kind: AttrKind, default: Default) -> AttrSpec {
    AttrSpec {
        name,
        kind,
        default,
    }
}

/// Properties passes rely on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Trait {
    /// Result element i depends only on operand elements i (after broadcast).
    Elementwise,
    /// Operands 0 and 1 may be swapped.
    Commutative,
    /// The result is random (RandomNormal, Dropout in training): never folded.
    Random,
    /// Only metadata of the operand is read (Shape, Size): foldable from types.
    ShapeOnly,
}

pub type InferFn = fn(&InferCtx) -> Result<Vec<TensorType>, String>;
pub type EvalFn = fn(&EvalCtx) -> Result<Vec<Tensor>, String>;

/// The definition of one op.
pub struct OpDef {
    /// Printed as `tsr.<mnemonic>`.
    pub mnemonic: &'static str,
    /// One line; the docs and `--help` show it.
    pub summary: &'static str,
    pub operands: &'static [OperandSpec],
    pub results: Results,
    pub attrs: &'static [AttrSpec],
    pub traits: &'static [Trait],
    /// Result types from operand types, attributes and constant operands.
    pub infer: InferFn,
    /// Reference semantics; `None` until the op has them.
    pub eval: Option<EvalFn>,
}

impl OpDef {
    pub fn attr_spec(&self, name: &str) -> Option<&AttrSpec> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn has_trait(&self, t: Trait) -> bool {
        self.traits.contains(&t)
    }
}

macro_rules! op_table {
    ($($variant:ident => $def:path,)*) => {
        /// Every op of the Tessera dialect.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OpKind { $($variant,)* }

        impl OpKind {
            pub const ALL: &'static [OpKind] = &[$(OpKind::$variant,)*];

            pub fn def(self) -> &'static OpDef {
                match self { $(OpKind::$variant => &$def,)* }
            }
        }
    };
}

op_table! {
    // core
    Constant => core::CONSTANT,
    Dims => symbolic::DIMS,
    Identity => core::IDENTITY,
    // elementwise
    Add => elementwise::ADD,
    Sub => elementwise::SUB,
    Mul => elementwise::MUL,
    Div => elementwise::DIV,
    Relu => elementwise::RELU,
    Mod => elementwise::MOD,
    Pow => elementwise::POW,
    Max => elementwise::MAX,
    Min => elementwise::MIN,
    Sum => elementwise::SUM,
    Mean => elementwise::MEAN,
    Reciprocal => elementwise::RECIPROCAL,
    Floor => elementwise::FLOOR,
    Ceil => elementwise::CEIL,
    Round => elementwise::ROUND,
    Sqrt => elementwise::SQRT,
    Exp => elementwise::EXP,
    Log => elementwise::LOG,
    Erf => elementwise::ERF,
    Sin => elementwise::SIN,
    Cos => elementwise::COS,
    Tan => elementwise::TAN,
    Asin => elementwise::ASIN,
    Acos => elementwise::ACOS,
    Atan => elementwise::ATAN,
    Sinh => elementwise::SINH,
    Cosh => elementwise::COSH,
    Tanh => elementwise::TANH,
    Asinh => elementwise::ASINH,
    Acosh => elementwise::ACOSH,
    Atanh => elementwise::ATANH,
    Sigmoid => elementwise::SIGMOID,
    HardSigmoid => elementwise::HARD_SIGMOID,
    HardSwish => elementwise::HARD_SWISH,
    LeakyRelu => elementwise::LEAKY_RELU,
    Elu => elementwise::ELU,
    Selu => elementwise::SELU,
    Celu => elementwise::CELU,
    Mish => elementwise::MISH,
    Softplus => elementwise::SOFTPLUS,
    Softsign => elementwise::SOFTSIGN,
    ThresholdedRelu => elementwise::THRESHOLDED_RELU,
    Swish => elementwise::SWISH,
    Gelu => elementwise::GELU,
    Abs => elementwise::ABS,
    Neg => elementwise::NEG,
    Sign => elementwise::SIGN,
    Shrink => elementwise::SHRINK,
    PRelu => elementwise::PRELU,
    Clip => elementwise::CLIP,
    IsInf => elementwise::IS_INF,
    IsNaN => elementwise::IS_NAN,
    Equal => elementwise::EQUAL,
    Greater => elementwise::GREATER,
    GreaterOrEqual => elementwise::GREATER_OR_EQUAL,
    Less => elementwise::LESS,
    LessOrEqual => elementwise::LESS_OR_EQUAL,
    And => elementwise::AND,
    Or => elementwise::OR,
    Xor => elementwise::XOR,
    Not => elementwise::NOT,
    BitwiseAnd => elementwise::BITWISE_AND,
    BitwiseOr => elementwise::BITWISE_OR,
    BitwiseXor => elementwise::BITWISE_XOR,
    BitwiseNot => elementwise::BITWISE_NOT,
    BitShift => elementwise::BIT_SHIFT,
    Where => elementwise::WHERE,
    Cast => elementwise::CAST,
    CastLike => elementwise::CAST_LIKE,
    BitCast => elementwise::BIT_CAST,
    Dropout => elementwise::DROPOUT,
    // linalg
    MatMul => linalg::MATMUL,
    Gemm => linalg::GEMM,
    Einsum => linalg::EINSUM,
    Det => linalg::DET,
    Dft => linalg::DFT,
    Stft => linalg::STFT,
    // shape
    Reshape => shape::RESHAPE,
    Transpose => shape::TRANSPOSE,
    Concat => shape::CONCAT,
    Split => shape::SPLIT,
    Slice => shape::SLICE,
    Gather => shape::GATHER,
    GatherElements => shape::GATHER_ELEMENTS,
    GatherNd => shape::GATHER_ND,
    ScatterElements => shape::SCATTER_ELEMENTS,
    ScatterNd => shape::SCATTER_ND,
    TensorScatter => shape::TENSOR_SCATTER,
    Squeeze => shape::SQUEEZE,
    Unsqueeze => shape::UNSQUEEZE,
    Flatten => shape::FLATTEN,
    Expand => shape::EXPAND,
    Tile => shape::TILE,
    Pad => shape::PAD,
    CenterCropPad => shape::CENTER_CROP_PAD,
    Shape => shape::SHAPE,
    Size => shape::SIZE,
    DepthToSpace => shape::DEPTH_TO_SPACE,
    SpaceToDepth => shape::SPACE_TO_DEPTH,
    Compress => shape::COMPRESS,
    NonZero => shape::NON_ZERO,
    ReverseSequence => shape::REVERSE_SEQUENCE,
    Unique => shape::UNIQUE,
    Resize => shape::RESIZE,
    // reduce
    ReduceSum => reduce::REDUCE_SUM,
    ReduceMean => reduce::REDUCE_MEAN,
    ReduceMax => reduce::REDUCE_MAX,
    ReduceMin => reduce::REDUCE_MIN,
    ReduceProd => reduce::REDUCE_PROD,
    ReduceL1 => reduce::REDUCE_L1,
    ReduceL2 => reduce::REDUCE_L2,
    ReduceLogSum => reduce::REDUCE_LOG_SUM,
    ReduceLogSumExp => reduce::REDUCE_LOG_SUM_EXP,
    ReduceSumSquare => reduce::REDUCE_SUM_SQUARE,
    ArgMax => reduce::ARG_MAX,
    ArgMin => reduce::ARG_MIN,
    TopK => reduce::TOP_K,
    CumSum => reduce::CUM_SUM,
    CumProd => reduce::CUM_PROD,
    // nn
    Softmax => nn::SOFTMAX,
    LogSoftmax => nn::LOG_SOFTMAX,
    Hardmax => nn::HARDMAX,
    LayerNormalization => nn::LAYER_NORMALIZATION,
    RmsNormalization => nn::RMS_NORMALIZATION,
    GroupNormalization => nn::GROUP_NORMALIZATION,
    InstanceNormalization => nn::INSTANCE_NORMALIZATION,
    BatchNormalization => nn::BATCH_NORMALIZATION,
    LpNormalization => nn::LP_NORMALIZATION,
    MeanVarianceNormalization => nn::MEAN_VARIANCE_NORMALIZATION,
    Lrn => nn::LRN,
    Attention => nn::ATTENTION,
    RotaryEmbedding => nn::ROTARY_EMBEDDING,
    Conv => nn::CONV,
    ConvTranspose => nn::CONV_TRANSPOSE,
    AveragePool => nn::AVERAGE_POOL,
    MaxPool => nn::MAX_POOL,
    LpPool => nn::LP_POOL,
    GlobalAveragePool => nn::GLOBAL_AVERAGE_POOL,
    GlobalMaxPool => nn::GLOBAL_MAX_POOL,
    GlobalLpPool => nn::GLOBAL_LP_POOL,
    MaxUnpool => nn::MAX_UNPOOL,
    NegativeLogLikelihoodLoss => nn::NEGATIVE_LOG_LIKELIHOOD_LOSS,
    SoftmaxCrossEntropyLoss => nn::SOFTMAX_CROSS_ENTROPY_LOSS,
    SwiGlu => nn::SWIGLU,
    Rnn => nn::rnn::RNN,
    Gru => nn::rnn::GRU,
    Lstm => nn::rnn::LSTM,
    GridSample => nn::spatial::GRID_SAMPLE,
    AffineGrid => nn::spatial::AFFINE_GRID,
    RoiAlign => nn::spatial::ROI_ALIGN,
    Col2Im => nn::spatial::COL2IM,
    NonMaxSuppression => nn::spatial::NON_MAX_SUPPRESSION,
    DeformConv => nn::spatial::DEFORM_CONV,
    CausalConvWithState => nn::spatial::CAUSAL_CONV_WITH_STATE,
    LinearAttention => nn::spatial::LINEAR_ATTENTION,
    // quant
    QuantizeLinear => quant::QUANTIZE_LINEAR,
    DequantizeLinear => quant::DEQUANTIZE_LINEAR,
    DynamicQuantizeLinear => quant::DYNAMIC_QUANTIZE_LINEAR,
    MatMulInteger => quant::MATMUL_INTEGER,
    QLinearMatMul => quant::QLINEAR_MATMUL,
    ConvInteger => quant::CONV_INTEGER,
    QLinearConv => quant::QLINEAR_CONV,
    // generate
    ConstantOfShape => generate::CONSTANT_OF_SHAPE,
    Range => generate::RANGE,
    EyeLike => generate::EYE_LIKE,
    Trilu => generate::TRILU,
    OneHot => generate::ONE_HOT,
    RandomNormal => generate::RANDOM_NORMAL,
    RandomUniform => generate::RANDOM_UNIFORM,
    RandomNormalLike => generate::RANDOM_NORMAL_LIKE,
    RandomUniformLike => generate::RANDOM_UNIFORM_LIKE,
    Bernoulli => generate::BERNOULLI,
    HannWindow => generate::HANN_WINDOW,
    HammingWindow => generate::HAMMING_WINDOW,
    BlackmanWindow => generate::BLACKMAN_WINDOW,
    // contrib
    MsGelu => contrib::GELU,
    MsQuickGelu => contrib::QUICK_GELU,
    MsBiasGelu => contrib::BIAS_GELU,
    MsFastGelu => contrib::FAST_GELU,
    MsBiasAdd => contrib::BIAS_ADD,
    MsSkipLayerNormalization => contrib::SKIP_LAYER_NORMALIZATION,
    MsSkipSimplifiedLayerNormalization => contrib::SKIP_SIMPLIFIED_LAYER_NORMALIZATION,
    MsSimplifiedLayerNormalization => contrib::SIMPLIFIED_LAYER_NORMALIZATION,
    MsEmbedLayerNormalization => contrib::EMBED_LAYER_NORMALIZATION,
    MsMatMulNBits => contrib::MATMUL_NBITS,
    MsRotaryEmbedding => contrib::ROTARY_EMBEDDING,
    MsAttention => contrib::ATTENTION,
    MsGroupQueryAttention => contrib::GROUP_QUERY_ATTENTION,
    MsQLinearAdd => contrib::QLINEAR_ADD,
    MsQLinearMul => contrib::QLINEAR_MUL,
    MsQLinearSoftmax => contrib::QLINEAR_SOFTMAX,
    MsDynamicQuantizeMatMul => contrib::DYNAMIC_QUANTIZE_MATMUL,
    MsMatMulIntegerToFloat => contrib::MATMUL_INTEGER_TO_FLOAT,
    MsQuantizeLinear => contrib::MS_QUANTIZE_LINEAR,
    MsDequantizeLinear => contrib::MS_DEQUANTIZE_LINEAR,
    // text
    StringConcat => text::STRING_CONCAT,
    StringSplit => text::STRING_SPLIT,
    StringNormalizer => text::STRING_NORMALIZER,
    RegexFullMatch => text::REGEX_FULL_MATCH,
    TfIdfVectorizer => text::TF_IDF_VECTORIZER,
    // ml
    MlLabelEncoder => ml::LABEL_ENCODER,
    MlBinarizer => ml::BINARIZER,
    MlArrayFeatureExtractor => ml::ARRAY_FEATURE_EXTRACTOR,
    MlTreeEnsemble => ml::TREE_ENSEMBLE,
    MelWeightMatrix => ml::MEL_WEIGHT_MATRIX,
    // fused (Tessera's own)
    Linear => fused::LINEAR,
}

impl OpKind {
    pub fn mnemonic(self) -> &'static str {
        self.def().mnemonic
    }

    pub fn from_mnemonic(s: &str) -> Option<OpKind> {
        static MAP: OnceLock<HashMap<&'static str, OpKind>> = OnceLock::new();
        MAP.get_or_init(|| OpKind::ALL.iter().map(|k| (k.mnemonic(), *k)).collect())
            .get(s)
            .copied()
    }
}

/// Attribute access with the defaults of the op's [`OpDef`], shared by the
/// inference and evaluation contexts.
/// Backends read an op's attributes (with the OpDef's defaults) directly.
impl AttrAccess for crate::graph::Op {
    fn def(&self) -> &'static OpDef {
        self.kind.def()
    }
    fn attrs(&self) -> &Attrs {
        &self.attrs
    }
}

pub trait AttrAccess {
    fn def(&self) -> &'static OpDef;
    fn attrs(&self) -> &Attrs;

    /// The attribute, or its default as an [`Attr`] (None when absent with no default).
    fn attr(&self, name: &str) -> Option<Attr> {
        if let Some(a) = self.attrs().get(name) {
            return Some(a.clone());
        }
        let spec = self.def().attr_spec(name)?;
        match spec.default {
            Default::Required | Default::Absent => None,
            Default::Int(i) => Some(Attr::Int(i)),
            Default::Float(f) => Some(Attr::Float(f)),
            Default::Str(s) => Some(Attr::Str(s.to_string())),
            Default::Ints(v) => Some(Attr::Ints(v.to_vec())),
        }
    }

    fn has_attr(&self, name: &str) -> bool {
        self.attrs().contains_key(name)
    }

    fn int(&self, name: &str) -> Result<i64, String> {
        match self.attr(name) {
            Some(Attr::Int(i)) => Ok(i),
            other => Err(self.attr_err(name, "an integer", other)),
        }
    }

    fn float(&self, name: &str) -> Result<f64, String> {
        match self.attr(name) {
            Some(Attr::Float(f)) => Ok(f),
            Some(Attr::Int(i)) => Ok(i as f64),
            other => Err(self.attr_err(name, "a float", other)),
        }
    }

    fn string(&self, name: &str) -> Result<String, String> {
        match self.attr(name) {
            Some(Attr::Str(s)) => Ok(s),
            other => Err(self.attr_err(name, "a string", other)),
        }
    }

    fn ints(&self, name: &str) -> Result<Vec<i64>, String> {
        match self.attr(name) {
            Some(Attr::Ints(v)) => Ok(v),
            other => Err(self.attr_err(name, "a list of integers", other)),
        }
    }

    fn floats(&self, name: &str) -> Result<Vec<f64>, String> {
        match self.attr(name) {
            Some(Attr::Floats(v)) => Ok(v),
            Some(Attr::Ints(v)) if v.is_empty() => Ok(Vec::new()),
            other => Err(self.attr_err(name, "a list of floats", other)),
        }
    }

    fn dtype_attr(&self, name: &str) -> Result<DType, String> {
        match self.attr(name) {
            Some(Attr::Type(d)) => Ok(d),
            other => Err(self.attr_err(name, "an element type", other)),
        }
    }

    fn tensor_attr(&self, name: &str) -> Result<std::sync::Arc<Tensor>, String> {
        match self.attr(name) {
            Some(Attr::Tensor(t)) => Ok(t),
            other => Err(self.attr_err(name, "a tensor", other)),
        }
    }

    fn attr_err(&self, name: &str, want: &str, got: Option<Attr>) -> String {
        match got {
            None => format!("attribute '{name}' is required"),
            Some(a) => format!("attribute '{name}' must be {want}, got {:?}", a.kind()),
        }
    }
}

/// What `infer` sees: operand types, constant operand values (for shapes that
/// depend on values, like Reshape's target), attributes, and the number of
/// results the op instance has.
pub struct InferCtx<'a> {
    pub def: &'static OpDef,
    pub attrs: &'a Attrs,
    pub operands: Vec<Option<&'a TensorType>>,
    pub consts: Vec<Option<&'a SharedTensor>>,
    /// Symbolic values of small integer operands that are computed from
    /// shapes (`[batch, seq, 4, 32]`), when known; see [`crate::symbolic`].
    pub syms: Vec<Option<Vec<crate::dim::Dim>>>,
    pub num_results: usize,
}

impl AttrAccess for InferCtx<'_> {
    fn def(&self) -> &'static OpDef {
        self.def
    }
    fn attrs(&self) -> &Attrs {
        self.attrs
    }
}

impl<'a> InferCtx<'a> {
    /// A required operand's type.
    pub fn input(&self, i: usize) -> Result<&'a TensorType, String> {
        self.operands
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("operand #{i} is missing"))
    }

    pub fn opt_input(&self, i: usize) -> Option<&'a TensorType> {
        self.operands.get(i).copied().flatten()
    }

    pub fn num_operands(&self) -> usize {
        self.operands.len()
    }

    /// The value of operand `i` when a constant defines it.
    pub fn const_input(&self, i: usize) -> Option<&'a Tensor> {
        self.consts.get(i).copied().flatten().map(|t| &**t)
    }

    /// The value of an integer operand as dims: from its constant value, or
    /// its symbolic value (a shape computed from symbolic dims). Use it for
    /// shape operands (Reshape, Expand, Range, Slice bounds...).
    pub fn sym_input(&self, i: usize) -> Option<Vec<crate::dim::Dim>> {
        if let Some(t) = self.const_input(i) {
            if t.dtype.is_int() && t.rank() <= 1 {
                return Some(
                    t.to_i64_vec()
                        .into_iter()
                        .map(crate::dim::Dim::fixed)
                        .collect(),
                );
            }
            return None;
        }
        self.syms.get(i).cloned().flatten()
    }
}

/// What `eval` sees: concrete operand values, attributes and result count.
pub struct EvalCtx<'a> {
    pub def: &'static OpDef,
    pub attrs: &'a Attrs,
    pub inputs: Vec<Option<&'a Tensor>>,
    pub num_results: usize,
}

impl AttrAccess for EvalCtx<'_> {
    fn def(&self) -> &'static OpDef {
        self.def
    }
    fn attrs(&self) -> &Attrs {
        self.attrs
    }
}

impl<'a> EvalCtx<'a> {
    pub fn input(&self, i: usize) -> Result<&'a Tensor, String> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("operand #{i} is missing"))
    }

    pub fn opt_input(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnemonics_are_unique_and_found() {
        let mut seen = std::collections::HashSet::new();
        for k in OpKind::ALL {
            assert!(
                seen.insert(k.mnemonic()),
                "duplicate mnemonic {}",
                k.mnemonic()
            );
            assert_eq!(OpKind::from_mnemonic(k.mnemonic()), Some(*k));
        }
    }

    #[test]
    fn variadic_operand_only_last() {
        for k in OpKind::ALL {
            let ops = k.def().operands;
            for (i, o) in ops.iter().enumerate() {
                if o.arity == Arity::Variadic {
                    assert_eq!(
                        i,
                        ops.len() - 1,
                        "{}: variadic operand not last",
                        k.mnemonic()
                    );
                }
            }
        }
    }
}
