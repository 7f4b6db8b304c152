//! Reductions and scans: Reduce*, ArgMax/ArgMin, TopK, CumSum.

#[allow(unused_imports)]
use super::*;
