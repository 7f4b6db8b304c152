//! Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
//! MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv.

#[allow(unused_imports)]
use super::*;
