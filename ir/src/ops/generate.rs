//! Ops that make tensors from shapes or parameters: ConstantOfShape, Range,
//! EyeLike, OneHot, Trilu, random generators.

#[allow(unused_imports)]
use super::*;
