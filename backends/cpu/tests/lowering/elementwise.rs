//! Elementwise lowerings against the reference interpreter: every op on odd
//! and broadcast shapes and rank 0, each dtype it accepts, and the tricky
//! semantics (cast rounding and saturation, integer division, remainders,
//! shifts) on hand-picked inputs, some with hand-computed expected values.

use crate::common::{check, graph, run_cpu};
use tessera_backend::compare::{compare, Tolerance};
use tessera_ir::{DType, Tensor};

fn unary_text(op: &str, attrs: &str, shape: &str, d: &str, out: &str) -> String {
    format!(
        "tsr.graph @g(%x: tensor<{shape}{d}>) -> (\"y\": tensor<{shape}{out}>) {{\n\
           %y = tsr.{op} %x{attrs} : (tensor<{shape}{d}>) -> tensor<{shape}{out}>\n\
           tsr.return %y\n}}\n"
    )
}

fn binary_text(op: &str, attrs: &str, a: &str, b: &str, out: &str) -> String {
    format!(
        "tsr.graph @g(%a: tensor<{a}>, %b: tensor<{b}>) -> (\"y\": tensor<{out}>) {{\n\
           %y = tsr.{op} %a, %b{attrs} : (tensor<{a}>, tensor<{b}>) -> tensor<{out}>\n\
           tsr.return %y\n}}\n"
    )
}

/// cpu (1 and 2 threads) against the reference on the given inputs; float
/// results within the dtype's tolerance, or bit for bit when `exact` (NaNs
/// only need to be NaN on both sides).
fn check_inputs(text: &str, ins: &[Tensor], exact: bool) {
    let g = graph(text);
    let want = tessera_reference::run(&g, ins).expect("reference run");
    let got = run_cpu(&g, ins, 1);
    let got2 = run_cpu(&g, ins, 2);
    for (i, ((a, b), w)) in got.iter().zip(&got2).zip(&want).enumerate() {
        assert_eq!(
            a.to_bytes(),
            b.to_bytes(),
            "output {i}: 1 vs 2 threads differ"
        );
        if exact {
            assert_same(a, w, text);
        } else {
            let c = compare(a, w, Tolerance::for_dtype(w.dtype));
            assert!(c.ok, "output {i}: cpu vs ref: {c:?}\n{text}");
        }
    }
}

/// Bit-exact equality (as values: NaN matches NaN, -0 differs from +0).
fn assert_same(got: &Tensor, want: &Tensor, ctx: &str) {
    assert_eq!(got.dtype, want.dtype, "{ctx}");
    assert_eq!(got.shape, want.shape, "{ctx}");
    for i in 0..got.len() {
        if got.dtype.is_float() {
            let (a, b) = (got.get_f64(i), want.get_f64(i));
            assert!(
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits(),
                "element {i}: got {a}, expected {b}\n{ctx}"
            );
        } else {
            assert_eq!(got.get_i64(i), want.get_i64(i), "element {i}\n{ctx}");
        }
    }
}

fn run1(text: &str, ins: &[Tensor]) -> Tensor {
    run_cpu(&graph(text), ins, 1).remove(0)
}

const FLOAT_UNARY: &[&str] = &[
    "exp",
    "log",
    "sqrt",
    "erf",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "floor",
    "ceil",
    "round",
    "reciprocal",
    "sigmoid",
    "softplus",
    "softsign",
    "mish",
    "swish",
    "gelu",
    "hard_sigmoid",
    "hard_swish",
    "leaky_relu",
    "elu",
    "selu",
    "celu",
    "thresholded_relu",
    "shrink",
    "abs",
    "neg",
    "sign",
    "relu",
];

#[test]
fn float_unary_ops_on_every_float_type() {
    for d in ["f32", "f64", "f16", "bf16"] {
        for op in FLOAT_UNARY {
            check(&unary_text(op, "", "3x5x7x", d, d));
        }
    }
}

#[test]
fn float_unary_ops_on_wide_and_special_values() {
    let v = [
        0.0,
        -0.0,
        0.5,
        -0.5,
        1.0,
        -1.0,
        2.5,
        -2.5,
        3.5,
        7.9,
        -7.9,
        20.0,
        -20.0,
        90.0,
        -90.0,
        1e-6,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for d in [DType::F32, DType::F64] {
        let x = Tensor::from_f64(d, vec![v.len()], &v);
        for op in FLOAT_UNARY {
            let text = unary_text(
                op,
                "",
                &format!("{}x", v.len()),
                &d.to_string(),
                &d.to_string(),
            );
            check_inputs(&text, std::slice::from_ref(&x), false);
        }
    }
}

#[test]
fn activation_attributes() {
    for (op, attrs) in [
        ("gelu", " {approximate = \"tanh\"}"),
        ("gelu", " {approximate = \"none\"}"),
        ("leaky_relu", " {alpha = 0.25}"),
        ("elu", " {alpha = 0.5}"),
        ("celu", " {alpha = 2.0}"),
        ("selu", " {alpha = 2.0, gamma = 3.0}"),
        ("hard_sigmoid", " {alpha = 0.5, beta = 0.25}"),
        ("thresholded_relu", " {alpha = 0.3}"),
        ("shrink", " {bias = 1.5, lambd = 0.25}"),
        ("swish", " {alpha = 1.702}"),
    ] {
        check(&unary_text(op, attrs, "4x9x", "f32", "f32"));
    }
}

#[test]
fn rank_zero_and_empty() {
    check(&unary_text("tanh", "", "", "f32", "f32"));
    check(&binary_text("add", "", "f32", "2x3xf32", "2x3xf32"));
    check(&binary_text("mul", "", "0x3xf32", "3xf32", "0x3xf32"));
}

#[test]
fn integer_unary_ops() {
    let v = [0, 1, -1, 5, -7, 127, -128];
    for (d, ops) in [
        (DType::I8, &["abs", "neg", "sign", "relu"][..]),
        (DType::I32, &["abs", "neg", "sign", "relu"]),
        (DType::I64, &["abs", "neg", "sign", "relu"]),
        (DType::U8, &["abs", "sign"]),
        (DType::U32, &["abs", "sign"]),
    ] {
        let x = Tensor::from_i64(d, vec![v.len()], &v);
        for op in ops {
            let text = unary_text(
                op,
                "",
                &format!("{}x", v.len()),
                &d.to_string(),
                &d.to_string(),
            );
            check_inputs(&text, std::slice::from_ref(&x), true);
        }
    }
    // |MIN| wraps to MIN; -MIN too.
    let x = Tensor::from_i64(DType::I8, vec![2], &[-128, 3]);
    let y = run1(&unary_text("abs", "", "2x", "i8", "i8"), &[x]);
    assert_eq!(y.to_i64_vec(), vec![-128, 3]);
}

#[test]
fn binary_arithmetic_every_type_with_broadcasting() {
    for d in [
        "f32", "f64", "f16", "bf16", "i64", "i32", "i16", "i8", "u64", "u32", "u16", "u8",
    ] {
        for op in ["add", "sub", "mul", "max", "min"] {
            check(&binary_text(
                op,
                "",
                &format!("2x3x5x{d}"),
                &format!("3x1x{d}"),
                &format!("2x3x5x{d}"),
            ));
            check(&binary_text(
                op,
                "",
                d,
                &format!("4x{d}"),
                &format!("4x{d}"),
            ));
        }
    }
    for d in ["f32", "f64", "f16", "bf16"] {
        check(&binary_text(
            "div",
            "",
            &format!("7x{d}"),
            &format!("1x7x{d}"),
            &format!("1x7x{d}"),
        ));
        check(&binary_text(
            "prelu",
            "",
            &format!("2x3x4x{d}"),
            &format!("3x1x{d}"),
            &format!("2x3x4x{d}"),
        ));
    }
}

#[test]
fn integer_division_truncates() {
    let a = Tensor::from_i64(DType::I32, vec![6], &[7, -7, 7, -7, i32::MIN as i64, 9]);
    let b = Tensor::from_i64(DType::I32, vec![6], &[2, 2, -2, -2, -1, 3]);
    let text = binary_text("div", "", "6xi32", "6xi32", "6xi32");
    check_inputs(&text, &[a.clone(), b.clone()], true);
    assert_eq!(
        run1(&text, &[a, b]).to_i64_vec(),
        vec![3, -3, -3, 3, i32::MIN as i64, 3]
    );
    for d in [DType::I8, DType::I64, DType::U8, DType::U64] {
        let a = Tensor::from_i64(d, vec![4], &[100, -100, 55, 1]);
        let b = Tensor::from_i64(d, vec![4], &[3, 7, -6, 9]);
        let text = binary_text(
            "div",
            "",
            &format!("4x{d}"),
            &format!("4x{d}"),
            &format!("4x{d}"),
        );
        check_inputs(&text, &[a, b], true);
    }
    // Division by zero gives 0 (the reference rejects it; a kernel cannot).
    let a = Tensor::from_i64(DType::I16, vec![2], &[5, -5]);
    let b = Tensor::from_i64(DType::I16, vec![2], &[0, 0]);
    assert_eq!(
        run1(&binary_text("div", "", "2xi16", "2xi16", "2xi16"), &[a, b]).to_i64_vec(),
        vec![0, 0]
    );
}

#[test]
fn remainders_take_the_right_sign() {
    let (av, bv) = ([7, -7, 7, -7, 6, -6, 5], [3, 3, -3, -3, 3, -3, 1]);
    for d in [DType::I8, DType::I32, DType::I64] {
        for fmod in [0, 1] {
            let a = Tensor::from_i64(d, vec![7], &av);
            let b = Tensor::from_i64(d, vec![7], &bv);
            let text = binary_text(
                "mod",
                &format!(" {{fmod = {fmod}}}"),
                &format!("7x{d}"),
                &format!("7x{d}"),
                &format!("7x{d}"),
            );
            check_inputs(&text, &[a, b], true);
        }
    }
    let text = binary_text("mod", "", "7xi32", "7xi32", "7xi32");
    let y = run1(
        &text,
        &[
            Tensor::from_i64(DType::I32, vec![7], &av),
            Tensor::from_i64(DType::I32, vec![7], &bv),
        ],
    );
    assert_eq!(y.to_i64_vec(), vec![1, 2, -2, -1, 0, 0, 0]);
    let u = |v: &[i64]| Tensor::from_i64(DType::U8, vec![3], v);
    check_inputs(
        &binary_text("mod", "", "3xu8", "3xu8", "3xu8"),
        &[u(&[200, 7, 9]), u(&[7, 200, 3])],
        true,
    );
    let fa = [5.5, -5.5, 5.5, -5.5, 6.0, -6.0, 1.0];
    let fb = [2.0, 2.0, -2.0, -2.0, 3.0, 3.0, f64::INFINITY];
    for d in [DType::F32, DType::F64, DType::F16] {
        for fmod in [0, 1] {
            let text = binary_text(
                "mod",
                &format!(" {{fmod = {fmod}}}"),
                &format!("7x{d}"),
                &format!("7x{d}"),
                &format!("7x{d}"),
            );
            check_inputs(
                &text,
                &[
                    Tensor::from_f64(d, vec![7], &fa),
                    Tensor::from_f64(d, vec![7], &fb),
                ],
                true,
            );
        }
    }
}

#[test]
fn comparisons_return_bool() {
    for d in ["f32", "f16", "bf16", "f64", "i64", "i32", "i8", "u8", "u64"] {
        for op in [
            "equal",
            "less",
            "less_or_equal",
            "greater",
            "greater_or_equal",
        ] {
            check(&binary_text(
                op,
                "",
                &format!("3x4x{d}"),
                &format!("4x{d}"),
                "3x4xi1",
            ));
        }
    }
    check(&binary_text("equal", "", "5xi1", "1xi1", "5xi1"));
    // Unsigned order: 200 > 100 for u8 (a signed compare would say less).
    let a = Tensor::from_i64(DType::U8, vec![2], &[200, 5]);
    let b = Tensor::from_i64(DType::U8, vec![2], &[100, 5]);
    let y = run1(&binary_text("greater", "", "2xu8", "2xu8", "2xi1"), &[a, b]);
    assert_eq!(y.to_i64_vec(), vec![1, 0]);
    // NaN compares false, even to itself.
    let n = Tensor::from_f64(DType::F32, vec![1], &[f64::NAN]);
    let y = run1(
        &binary_text("equal", "", "1xf32", "1xf32", "1xi1"),
        &[n.clone(), n],
    );
    assert_eq!(y.to_i64_vec(), vec![0]);
}

#[test]
fn logic_and_bitwise() {
    for op in ["and", "or", "xor"] {
        check(&binary_text(op, "", "3x4xi1", "4xi1", "3x4xi1"));
    }
    check(&unary_text("not", "", "6x", "i1", "i1"));
    for d in ["i8", "i32", "u16", "i64"] {
        for op in ["bitwise_and", "bitwise_or", "bitwise_xor"] {
            check(&binary_text(
                op,
                "",
                &format!("2x5x{d}"),
                &format!("5x{d}"),
                &format!("2x5x{d}"),
            ));
        }
    }
    let x = Tensor::from_i64(DType::U8, vec![3], &[0, 5, 255]);
    let y = run1(&unary_text("bitwise_not", "", "3x", "u8", "u8"), &[x]);
    assert_eq!(y.to_i64_vec(), vec![255, 250, 0]);
    let x = Tensor::from_i64(DType::I32, vec![2], &[0, -6]);
    check_inputs(
        &unary_text("bitwise_not", "", "2x", "i32", "i32"),
        &[x],
        true,
    );
}

#[test]
fn bit_shifts_in_and_out_of_range() {
    let xs = [1, -16, 100, -1, 5, 7];
    let ss = [3, 2, 9, 40, -1, 0];
    for d in [DType::I8, DType::I32, DType::I64, DType::U8, DType::U32] {
        for dir in ["LEFT", "RIGHT"] {
            let text = binary_text(
                "bit_shift",
                &format!(" {{direction = \"{dir}\"}}"),
                &format!("6x{d}"),
                &format!("6x{d}"),
                &format!("6x{d}"),
            );
            check_inputs(
                &text,
                &[
                    Tensor::from_i64(d, vec![6], &xs),
                    Tensor::from_i64(d, vec![6], &ss),
                ],
                true,
            );
        }
    }
    let text = binary_text(
        "bit_shift",
        " {direction = \"RIGHT\"}",
        "3xi8",
        "3xi8",
        "3xi8",
    );
    let y = run1(
        &text,
        &[
            Tensor::from_i64(DType::I8, vec![3], &[-16, -16, 64]),
            Tensor::from_i64(DType::I8, vec![3], &[2, 8, 8]),
        ],
    );
    assert_eq!(y.to_i64_vec(), vec![-4, -1, 0]);
}

#[test]
fn pow_of_every_type_pair() {
    check(&binary_text("pow", "", "3x4xf32", "4xf32", "3x4xf32"));
    check(&binary_text("pow", "", "3x4xf16", "4xf16", "3x4xf16"));
    check(&binary_text("pow", "", "3x4xf64", "f64", "3x4xf64"));
    check(&binary_text("pow", "", "3x4xf32", "4xi64", "3x4xf32"));
    let b = Tensor::from_i64(DType::I32, vec![7], &[2, -3, 7, 1, -1, -1, 5]);
    let e = Tensor::from_i64(DType::I64, vec![7], &[10, 3, 30, -5, -3, -4, -1]);
    let text = binary_text("pow", "", "7xi32", "7xi64", "7xi32");
    check_inputs(&text, &[b.clone(), e.clone()], true);
    // 7^30 wraps; negative exponents truncate toward zero.
    let want = (0..30).fold(1i32, |a, _| a.wrapping_mul(7)) as i64;
    assert_eq!(
        run1(&text, &[b, e]).to_i64_vec(),
        vec![1024, -27, want, 1, -1, 1, 0]
    );
    let b = Tensor::from_i64(DType::I64, vec![3], &[9, 2, 10]);
    let e = Tensor::from_f64(DType::F32, vec![3], &[0.5, -1.0, 2.5]);
    check_inputs(
        &binary_text("pow", "", "3xi64", "3xf32", "3xi64"),
        &[b, e],
        true,
    );
}

#[test]
fn variadic_sum_mean_max_min() {
    for op in ["sum", "mean", "max", "min"] {
        for d in ["f32", "f16", "bf16", "f64"] {
            let text = format!(
                "tsr.graph @g(%a: tensor<2x3x{d}>, %b: tensor<3x{d}>, %c: tensor<2x1x{d}>) -> (\"y\": tensor<2x3x{d}>) {{\n\
                   %y = tsr.{op} %a, %b, %c : (tensor<2x3x{d}>, tensor<3x{d}>, tensor<2x1x{d}>) -> tensor<2x3x{d}>\n\
                   tsr.return %y\n}}\n"
            );
            check(&text);
        }
    }
    check(&unary_text("sum", "", "4x", "i32", "i32"));
    check(&binary_text("max", "", "4xu8", "4xu8", "4xu8"));
    // NaN propagates through max and min.
    let a = Tensor::from_f64(DType::F32, vec![2], &[f64::NAN, 1.0]);
    let b = Tensor::from_f64(DType::F32, vec![2], &[3.0, f64::NAN]);
    let y = run1(&binary_text("max", "", "2xf32", "2xf32", "2xf32"), &[a, b]);
    assert!(y.get_f64(0).is_nan() && y.get_f64(1).is_nan());
}

#[test]
fn where_broadcasts_any_type() {
    for d in ["f32", "i64", "f16", "i1", "u8"] {
        check(&format!(
            "tsr.graph @g(%c: tensor<3x1xi1>, %x: tensor<4x{d}>, %y: tensor<{d}>) -> (\"r\": tensor<3x4x{d}>) {{\n\
               %r = tsr.where %c, %x, %y : (tensor<3x1xi1>, tensor<4x{d}>, tensor<{d}>) -> tensor<3x4x{d}>\n\
               tsr.return %r\n}}\n"
        ));
    }
}

#[test]
fn clip_with_optional_bounds() {
    for d in ["f32", "f16", "i32", "u8"] {
        check(&format!(
            "tsr.graph @g(%x: tensor<5x3x{d}>, %lo: tensor<{d}>, %hi: tensor<1x{d}>) -> (\"y\": tensor<5x3x{d}>, \"z\": tensor<5x3x{d}>) {{\n\
               %y = tsr.clip %x, %lo, %hi : (tensor<5x3x{d}>, tensor<{d}>, tensor<1x{d}>) -> tensor<5x3x{d}>\n\
               %z = tsr.clip %x, %lo : (tensor<5x3x{d}>, tensor<{d}>) -> tensor<5x3x{d}>\n\
               tsr.return %y, %z\n}}\n"
        ));
    }
    // min > max gives max; NaN stays NaN.
    let text = "tsr.graph @g(%x: tensor<3xf32>, %lo: tensor<f32>, %hi: tensor<f32>) -> (\"y\": tensor<3xf32>) {\n\
                  %y = tsr.clip %x, %lo, %hi : (tensor<3xf32>, tensor<f32>, tensor<f32>) -> tensor<3xf32>\n\
                  tsr.return %y\n}\n";
    let ins = [
        Tensor::from_f64(DType::F32, vec![3], &[-5.0, 5.0, f64::NAN]),
        Tensor::from_f64(DType::F32, vec![], &[2.0]),
        Tensor::from_f64(DType::F32, vec![], &[1.0]),
    ];
    check_inputs(text, &ins, true);
    let y = run1(text, &ins);
    assert_eq!((y.get_f64(0), y.get_f64(1)), (1.0, 1.0));
    assert!(y.get_f64(2).is_nan());
}

#[test]
fn is_nan_and_is_inf() {
    let x = Tensor::from_f64(
        DType::F32,
        vec![5],
        &[1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0],
    );
    check_inputs(
        &unary_text("is_nan", "", "5x", "f32", "i1"),
        std::slice::from_ref(&x),
        true,
    );
    for attrs in ["", " {detect_negative = 0}", " {detect_positive = 0}"] {
        check_inputs(
            &unary_text("is_inf", attrs, "5x", "f32", "i1"),
            std::slice::from_ref(&x),
            true,
        );
    }
    let y = run1(
        &unary_text("is_inf", " {detect_negative = 0}", "5x", "f32", "i1"),
        &[x],
    );
    assert_eq!(y.to_i64_vec(), vec![0, 0, 1, 0, 0]);
}

const CAST_TYPES: &[DType] = &[
    DType::F64,
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I64,
    DType::I32,
    DType::I16,
    DType::I8,
    DType::U64,
    DType::U32,
    DType::U16,
    DType::U8,
    DType::Bool,
];

/// Values that exercise rounding, truncation, saturation and wrapping.
fn cast_source(d: DType) -> Tensor {
    if d.is_float() {
        let v = [
            0.0,
            -0.0,
            0.4,
            -0.6,
            1.5,
            2.5,
            -2.5,
            3.7,
            -3.7,
            127.9,
            128.5,
            255.5,
            256.0,
            300.0,
            -129.0,
            32768.5,
            65504.0,
            70000.0,
            1e10,
            -1e10,
            3.0e38,
            1e-8,
            1.0000001,
            0.1,
            2147483647.0,
            4294967296.0,
            1.8446744e19,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        Tensor::from_f64(d, vec![v.len()], &v)
    } else {
        let v = [
            0,
            1,
            -1,
            127,
            -128,
            255,
            256,
            32767,
            -32768,
            65535,
            2049,
            2051,
            16_777_217,
            1_077_936_129,
            i32::MAX as i64,
            i32::MIN as i64,
            (1 << 53) + 1,
            i64::MAX,
            i64::MIN,
            -(1 << 40) - 3,
        ];
        // Wrapped to the type as a cast would (bools are 0/1).
        let w: Vec<i64> = v
            .iter()
            .map(|&x| if d == DType::Bool { x & 1 } else { x })
            .collect();
        tessera_ir::ops::elementwise::int_tensor(
            d,
            vec![w.len()],
            &w.iter().map(|&x| x as i128).collect::<Vec<_>>(),
        )
    }
}

#[test]
fn cast_every_pair_matches_the_reference_bit_for_bit() {
    for &from in CAST_TYPES {
        let x = cast_source(from);
        for &to in CAST_TYPES {
            let n = x.len();
            let text = unary_text(
                "cast",
                &format!(" {{to = {to}}}"),
                &format!("{n}x"),
                &from.to_string(),
                &to.to_string(),
            );
            check_inputs(&text, std::slice::from_ref(&x), true);
        }
    }
}

#[test]
fn cast_hand_checked() {
    let x = Tensor::from_f64(DType::F32, vec![5], &[3.7, -3.7, 300.0, f64::NAN, -1.5]);
    // Truncation toward zero, then the low 8 bits of the i32; NaN is INT_MIN.
    assert_eq!(
        run1(
            &unary_text("cast", " {to = i8}", "5x", "f32", "i8"),
            std::slice::from_ref(&x)
        )
        .to_i64_vec(),
        vec![3, -3, 44, 0, -1]
    );
    assert_eq!(
        run1(&unary_text("cast", " {to = u8}", "5x", "f32", "u8"), &[x]).to_i64_vec(),
        vec![3, 253, 44, 0, 255]
    );
    // 2^30 + 2^22 + 1 rounds up in bf16 (a rounding through f32 would tie to 2^30).
    let x = Tensor::from_i64(DType::I64, vec![3], &[1_077_936_129, 2049, 2051]);
    let y = run1(
        &unary_text("cast", " {to = bf16}", "3x", "i64", "bf16"),
        std::slice::from_ref(&x),
    );
    assert_eq!(y.get_f64(0), 1_082_130_432.0);
    let y = run1(&unary_text("cast", " {to = f16}", "3x", "i64", "f16"), &[x]);
    assert_eq!((y.get_f64(1), y.get_f64(2)), (2048.0, 2052.0));
    // f64 → bf16 rounds once, not through f32.
    let x = Tensor::from_f64(DType::F64, vec![1], &[1.0 + 2f64.powi(-8) + 2f64.powi(-30)]);
    let y = run1(
        &unary_text("cast", " {to = bf16}", "1x", "f64", "bf16"),
        &[x],
    );
    assert_eq!(y.get_f64(0), 1.0 + 2f64.powi(-7));
}

#[test]
fn cast_like_and_bit_cast() {
    check(
        "tsr.graph @g(%x: tensor<3x4xf32>, %t: tensor<1xi32>) -> (\"y\": tensor<3x4xi32>) {\n\
             %y = tsr.cast_like %x, %t : (tensor<3x4xf32>, tensor<1xi32>) -> tensor<3x4xi32>\n\
             tsr.return %y\n}\n",
    );
    let x = Tensor::from_f64(DType::F32, vec![2], &[1.0, -2.0]);
    let y = run1(
        &unary_text("bit_cast", " {to = i32}", "2x", "f32", "i32"),
        &[x],
    );
    assert_eq!(
        y.to_i64_vec(),
        vec![0x3F80_0000, 0xC000_0000u32 as i32 as i64]
    );
}

#[test]
fn swiglu_and_inference_dropout() {
    for d in ["f32", "f16", "bf16"] {
        check(&binary_text(
            "swiglu",
            " {alpha = 1.5}",
            &format!("3x5x{d}"),
            &format!("3x5x{d}"),
            &format!("3x5x{d}"),
        ));
    }
    check(
        "tsr.graph @g(%x: tensor<4x3xf32>) -> (\"y\": tensor<4x3xf32>, \"m\": tensor<4x3xi1>) {\n\
             %y, %m = tsr.dropout %x : (tensor<4x3xf32>) -> (tensor<4x3xf32>, tensor<4x3xi1>)\n\
             tsr.return %y, %m\n}\n",
    );
}
