use super::*;

fn k(m: &str) -> OpKind {
    OpKind::from_mnemonic(m).unwrap()
}

fn cpu() -> TargetDesc {
    TargetDesc::builtin("cpu").unwrap()
}

fn accel() -> TargetDesc {
    TargetDesc::builtin("accel").unwrap()
}

fn tiled(t: [i64; 3]) -> Attrs {
    let mut a = Attrs::new();
    a.insert(TILE_ATTR.into(), Attr::Ints(t.to_vec()));
    a
}

const MIB4: f64 = 4.0 * 1024.0 * 1024.0;

fn square(n: i64, d: DType) -> TensorType {
    TensorType::fixed(&[n, n], d)
}

#[test]
fn matmul_counts_two_flops_per_multiply_add() {
    let a = TensorType::fixed(&[2, 8, 16], DType::F32);
    let b = TensorType::fixed(&[16, 4], DType::F32);
    let c = TensorType::fixed(&[2, 8, 4], DType::F32);
    let (f, by) = work(k("matmul"), &Attrs::new(), &[Some(&a), Some(&b)], &[&c], 32);
    assert_eq!(f, 2.0 * 2.0 * 8.0 * 4.0 * 16.0);
    assert_eq!(by, 4.0 * (256.0 + 64.0 + 64.0));
    let g = gemm_shape(k("matmul"), &Attrs::new(), &a, &b, &c, 32).unwrap();
    assert_eq!((g.batch, g.m, g.n, g.k), (2.0, 8.0, 4.0, 16.0));
}

#[test]
fn linear_is_the_product_plus_its_epilogue_without_intermediate_traffic() {
    let a = TensorType::fixed(&[64, 128], DType::F32);
    let b = TensorType::fixed(&[128, 32], DType::F32);
    let bias = TensorType::fixed(&[32], DType::F32);
    let y = TensorType::fixed(&[64, 32], DType::F32);
    let mut attrs = Attrs::new();
    attrs.insert("activation".into(), Attr::Str("gelu".into()));
    let ops = [Some(&a), Some(&b), Some(&bias), Some(&y)];
    let (f, by) = work(k("linear"), &attrs, &ops, &[&y], 1);
    let out = 64.0 * 32.0;
    // 2K per element for the product; bias 1, gelu 8, residual 1.
    assert_eq!(f, out * (2.0 * 128.0 + 1.0 + 8.0 + 1.0));
    // a, b, bias, residual and the result, once each.
    assert_eq!(by, 4.0 * (64.0 * 128.0 + 128.0 * 32.0 + 32.0 + 2.0 * out));
    // The unfused chain moves the product three more times each way.
    let (_, mm) = work(k("matmul"), &Attrs::new(), &[Some(&a), Some(&b)], &[&y], 1);
    let (_, add) = work(k("add"), &Attrs::new(), &[Some(&y), Some(&bias)], &[&y], 1);
    assert!(by < mm + 3.0 * add);
    let t = cpu();
    let lin = estimate(&t, k("linear"), &attrs, &ops, &[&y], 1);
    let prod = estimate(
        &t,
        k("matmul"),
        &Attrs::new(),
        &[Some(&a), Some(&b)],
        &[&y],
        1,
    );
    assert!(lin.flops > prod.flops && lin.seconds >= prod.seconds);
}

#[test]
fn tiled_traffic_per_level_follows_the_reread_formula() {
    // 1024^3 f32 on the cpu: A, B, C are 4 MiB each.
    let x = square(1024, DType::F32);
    let t = cpu();
    let e = estimate(
        &t,
        k("matmul"),
        &tiled([256, 256, 256]),
        &[Some(&x), Some(&x)],
        &[&x],
        1,
    );
    assert_eq!(e.tile, Some([256, 256, 256]));
    // The 768 KiB tile fits half the 2 MiB L2: DRAM sends A 4x, B 4x, C once.
    assert_eq!(e.level_bytes[2], MIB4 * (4.0 + 4.0 + 1.0));
    // It does not fit half the 48 KiB L1: L1 and L2 feed the 8x32
    // microtile, A 1024/32 times and B 1024/8 times.
    assert_eq!(e.level_bytes[1], MIB4 * (32.0 + 128.0 + 1.0));
    assert_eq!(e.level_bytes[0], MIB4 * (32.0 + 128.0 + 1.0));
    let flops = 2.0 * 1024f64.powi(3);
    assert_eq!(e.flops, flops);
    // Compute bound once tiled: 2 GFLOP at 332.8 GFLOP/s (6.45 ms) beats
    // 675 MB from L2 at 150 GB/s (4.5 ms); 64 tiles of 20 ns on top.
    assert_eq!(e.bound, Bound::Compute);
    let want = flops / 332.8e9 + 0.5e-6 + 64.0 * 20e-9;
    assert!((e.seconds - want).abs() < 1e-12, "{} vs {want}", e.seconds);
    // Untiled, DRAM feeds the microtile: 161 x 4 MiB at 20 GB/s.
    let u = estimate(
        &t,
        k("matmul"),
        &Attrs::new(),
        &[Some(&x), Some(&x)],
        &[&x],
        1,
    );
    assert_eq!(u.bound, Bound::Memory);
    assert!((u.seconds - (MIB4 * 161.0 / 20e9 + 0.5e-6)).abs() < 1e-12);
}

#[test]
fn a_problem_that_fits_a_level_is_read_once_from_beyond_it() {
    // 64^3 f32: 48 KiB in all, within half the L2 but not half the L1.
    let x = square(64, DType::F32);
    let e = estimate(
        &cpu(),
        k("matmul"),
        &Attrs::new(),
        &[Some(&x), Some(&x)],
        &[&x],
        1,
    );
    assert_eq!(e.dram_bytes(), 3.0 * 64.0 * 64.0 * 4.0);
    assert_eq!(e.level_bytes[1], 64.0 * 64.0 * 4.0 * (2.0 + 8.0 + 1.0));
}

#[test]
fn a_tile_beyond_the_scratchpad_buys_nothing_on_the_accelerator() {
    let x = square(1024, DType::BF16);
    let t = accel();
    let mm = |attrs: &Attrs| estimate(&t, k("matmul"), attrs, &[Some(&x), Some(&x)], &[&x], 1);
    let (untiled, big, fits) = (
        mm(&Attrs::new()),
        mm(&tiled([256, 256, 256])),
        mm(&tiled([128, 128, 128])),
    );
    // 256^2 * 3 * 2 bytes = 384 KiB > 128 KiB: DRAM still feeds the array.
    assert_eq!(big.dram_bytes(), untiled.dram_bytes());
    assert!(big.seconds > untiled.seconds);
    // 96 KiB fits: DRAM sends A and B 8 times each.
    let m2 = 1024.0 * 1024.0 * 2.0;
    assert_eq!(fits.dram_bytes(), m2 * 17.0);
    assert!(fits.dram_bytes() < untiled.dram_bytes());
}

#[test]
fn small_ops_are_overhead_bound_and_views_are_nearly_free() {
    let x = TensorType::fixed(&[16], DType::F32);
    let e = estimate(
        &cpu(),
        k("add"),
        &Attrs::new(),
        &[Some(&x), Some(&x)],
        &[&x],
        1,
    );
    assert_eq!(e.bound, Bound::Overhead);
    assert_eq!(e.flops, 16.0);
    let v = estimate(
        &cpu(),
        k("reshape"),
        &Attrs::new(),
        &[Some(&x), None],
        &[&x],
        1,
    );
    assert!(v.seconds > 0.0 && v.seconds < 1e-9);
}

#[test]
fn peaks_follow_the_element_type() {
    let t = cpu();
    assert_eq!(peak_ops(&t, DType::F32), 332.8e9);
    assert_eq!(peak_ops(&t, DType::BF16), 665.6e9);
    assert_eq!(peak_ops(&t, DType::I8), 1331.2e9);
    // The reference target has no bf16 peak: f32's applies.
    assert_eq!(
        peak_ops(&TargetDesc::builtin("ref").unwrap(), DType::BF16),
        1e9
    );
}

#[test]
fn symbolic_dims_take_the_given_size() {
    let x = TensorType::new(vec![Dim::sym("batch"), Dim::fixed(3)], DType::F16);
    let (f, by) = work(k("add"), &Attrs::new(), &[Some(&x), Some(&x)], &[&x], 10);
    assert_eq!(f, 30.0);
    assert_eq!(by, 3.0 * 30.0 * 2.0);
}

#[test]
fn candidates_fit_their_level_and_differ_between_targets() {
    let probe = Gemm {
        batch: 1.0,
        m: 1.0,
        n: 1.0,
        k: 1.0,
        elem_bytes: 4.0,
        out_bytes: 4.0,
    };
    let (c, a) = (tile_candidates(&cpu(), 4.0), tile_candidates(&accel(), 4.0));
    // Two per cache level on the cpu (L1, L2), two for the scratchpad.
    assert_eq!(c.len(), 4);
    assert_eq!(a.len(), 2);
    for t in &c[..2] {
        assert!(tile_bytes(&probe, *t) <= 49152.0 / 2.0, "{t:?}");
    }
    for t in &a {
        assert!(tile_bytes(&probe, *t) <= 262144.0 / 2.0, "{t:?}");
    }
    assert_ne!(c, a);
}

#[test]
fn only_well_formed_tiles_are_read() {
    assert_eq!(tile_attr(&tiled([8, 16, 32])), Some([8, 16, 32]));
    assert_eq!(tile_attr(&tiled([8, 0, 32])), None);
    assert_eq!(tile_attr(&Attrs::new()), None);
}
