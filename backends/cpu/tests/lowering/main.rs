//! Every cpu lowering against the reference interpreter, one test binary
//! (the crate links LLVM and MLIR statically, so each binary costs a long
//! link): small graphs per op family with odd shapes, broadcasting, every
//! dtype a lowering accepts, and 1 vs 2 threads bit-identical.

mod common;

mod basic;
mod conv;
mod elementwise;
mod matmul;
mod nn;
mod quant;
mod reduce;
mod shape;
