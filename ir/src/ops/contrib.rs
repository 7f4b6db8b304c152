//! com.microsoft ops that onnxruntime's exporters and quantizers emit:
//! MatMulNBits, GroupQueryAttention, SkipLayerNormalization,
//! SimplifiedLayerNormalization, BiasGelu, FastGelu, Attention,
//! EmbedLayerNormalization, QLinearAdd/Mul/Softmax...

#[allow(unused_imports)]
use super::*;
