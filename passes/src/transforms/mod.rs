//! The passes, one module each.

pub mod canonicalize;
pub mod dce;
pub mod fold;
pub mod legalize_contrib;
pub mod merge_projections;
