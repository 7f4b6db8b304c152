//! Graph-building helpers shared by the accel integration tests.
#![allow(dead_code)]

use tessera_ir::{Attrs, Builder, Loc, OpKind, ValueId};

/// `n` deterministic values in `[-scale, scale)` (an LCG, so every test
/// sees the same data).
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect()
}

/// A one-result op named `name` (its location, so errors and notes name it).
pub fn op(b: &mut Builder, kind: OpKind, xs: &[ValueId], attrs: Attrs, name: &str) -> ValueId {
    let loc = Some(Loc {
        name: name.into(),
        op_type: name.into(),
    });
    b.op(kind, xs.iter().map(|&v| Some(v)).collect(), attrs, 1, loc)
        .unwrap()[0]
}
