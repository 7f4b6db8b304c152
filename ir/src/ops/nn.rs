//! Neural-network ops: softmax, normalizations, activations with parameters,
//! attention, rotary embedding, convolution and pooling.

#[allow(unused_imports)]
use super::*;
