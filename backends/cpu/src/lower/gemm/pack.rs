//! Constant B, packed at compile time into the microkernel's panel layout,
//! so the compiled code never repacks weights.
//!
//! Layout, per distinct B matrix ("item"): K blocks of `KC` rows (the last
//! may be shorter), each `[ceil(N / NR)][kc][NR]`, row `p` of panel `q`
//! holding `B[k0 + p, q*NR .. q*NR + NR]`, zero past N. A GEMM reads a K
//! block's panels in order, so each K block is one sequential stream that
//! the hardware prefetcher follows across panels (weights come from DRAM).

/// Packs `items` matrices of `data` (item `t` at `t * k * n`, element
/// `(p, j)` at `p * rs + j * cs` within it).
pub fn pack_b(
    data: &[f32],
    items: usize,
    k: usize,
    n: usize,
    (rs, cs): (usize, usize),
    nr: usize,
    kc: usize,
) -> Vec<f32> {
    let panels = n.div_ceil(nr);
    let mut out = vec![0f32; items * panels * k * nr];
    for t in 0..items {
        let src = &data[t * k * n..];
        for p in 0..k {
            let at = offset(t, p, k, panels, nr, kc);
            for q in 0..panels {
                for jj in 0..nr.min(n - q * nr) {
                    out[at.0 + q * at.1 + jj] = src[p * rs + (q * nr + jj) * cs];
                }
            }
        }
    }
    out
}

/// Where row `p` of item `t`'s panel 0 lies, and the distance between
/// panels within that row's K block.
fn offset(t: usize, p: usize, k: usize, panels: usize, nr: usize, kc: usize) -> (usize, usize) {
    let k0 = p / kc * kc;
    let kcur = kc.min(k - k0);
    (
        t * panels * k * nr + k0 * panels * nr + (p - k0) * nr,
        kcur * nr,
    )
}

/// Elements of the packed form of `items` `k x n` matrices.
pub fn packed_len(items: usize, k: usize, n: usize, nr: usize) -> usize {
    items * n.div_ceil(nr) * k * nr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_are_row_major_and_zero_padded() {
        // B = [[1, 2, 3], [4, 5, 6]] (k = 2, n = 3), panels of 2 columns.
        let b = [1., 2., 3., 4., 5., 6.];
        let p = pack_b(&b, 1, 2, 3, (3, 1), 2, 2);
        assert_eq!(p, vec![1., 2., 4., 5., 3., 0., 6., 0.]);
        // The same B stored transposed ([n, k]) packs the same.
        let bt = [1., 4., 2., 5., 3., 6.];
        assert_eq!(pack_b(&bt, 1, 2, 3, (1, 2), 2, 2), p);
        // K blocks of one row: each block's panels are adjacent.
        let p1 = pack_b(&b, 1, 2, 3, (3, 1), 2, 1);
        assert_eq!(p1, vec![1., 2., 3., 0., 4., 5., 6., 0.]);
        assert_eq!(packed_len(1, 2, 3, 2), 8);
    }
}
