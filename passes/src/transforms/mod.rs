//! The passes, one module each.

pub mod canonicalize;
pub mod dce;
pub mod fold;
