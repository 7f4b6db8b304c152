//! Quantization lowerings against the reference interpreter: integer
//! results bit-exact (per tensor, per axis, blocked; saturation and
//! round-half-to-even), float results within tolerance, 1 vs 2 threads
//! identical.

use crate::common::check;

/// A graph with inputs `ins`, constants `consts` (name, type, dense literal)
/// and one op producing `outs`.
fn graph(
    ins: &[(&str, &str)],
    consts: &[(&str, &str, &str)],
    op_text: &str,
    outs: &[(&str, &str)],
) -> String {
    let params: Vec<String> = ins
        .iter()
        .map(|(n, t)| format!("%{n}: tensor<{t}>"))
        .collect();
    let results: Vec<String> = outs
        .iter()
        .map(|(n, t)| format!("\"{n}\": tensor<{t}>"))
        .collect();
    let names: Vec<String> = outs.iter().map(|(n, _)| format!("%{n}")).collect();
    let mut body = String::new();
    let mut table = String::new();
    for (n, t, v) in consts {
        body.push_str(&format!(
            "  %{n} = tsr.constant {{value = @{n}}} : () -> tensor<{t}>\n"
        ));
        // Scalars are written as one-element lists.
        let v = if v.starts_with('[') {
            v.to_string()
        } else {
            format!("[{v}]")
        };
        table.push_str(&format!("  @{n} = dense<{v}> : tensor<{t}>\n"));
    }
    let table = if consts.is_empty() {
        String::new()
    } else {
        format!("tsr.constants {{\n{table}}}\n")
    };
    format!(
        "tsr.graph @g({}) -> ({}) {{\n{body}  {} = {op_text}\n  tsr.return {}\n}}\n{table}",
        params.join(", "),
        results.join(", "),
        names.join(", "),
        names.join(", ")
    )
}

#[test]
fn dequantize_per_tensor_axis_and_block() {
    check(&graph(
        &[("x", "3x5xi8")],
        &[("s", "f32", "0.25"), ("z", "i8", "-3")],
        "tsr.dequantize_linear %x, %s, %z : (tensor<3x5xi8>, tensor<f32>, tensor<i8>) -> tensor<3x5xf32>",
        &[("y", "3x5xf32")],
    ));
    check(&graph(
        &[("x", "2x3x4xu8"), ("s", "3xf32")],
        &[("z", "3xu8", "[0, 128, 255]")],
        "tsr.dequantize_linear %x, %s, %z {axis = 1} : (tensor<2x3x4xu8>, tensor<3xf32>, tensor<3xu8>) -> tensor<2x3x4xf32>",
        &[("y", "2x3x4xf32")],
    ));
    check(&graph(
        &[("x", "2x7xi8"), ("s", "2x3xf32")],
        &[],
        "tsr.dequantize_linear %x, %s {axis = 1, block_size = 3} : (tensor<2x7xi8>, tensor<2x3xf32>) -> tensor<2x7xf32>",
        &[("y", "2x7xf32")],
    ));
    check(&graph(
        &[("x", "4x3xi32"), ("s", "3xf32")],
        &[],
        "tsr.dequantize_linear %x, %s {axis = -1} : (tensor<4x3xi32>, tensor<3xf32>) -> tensor<4x3xf32>",
        &[("y", "4x3xf32")],
    ));
}

#[test]
fn quantize_saturates_and_rounds_half_to_even() {
    // Small scales push most values past the int8 range: saturation.
    check(&graph(
        &[("x", "4x6xf32")],
        &[("s", "f32", "0.01"), ("z", "i8", "5")],
        "tsr.quantize_linear %x, %s, %z : (tensor<4x6xf32>, tensor<f32>, tensor<i8>) -> tensor<4x6xi8>",
        &[("y", "4x6xi8")],
    ));
    // Exact halves: x / 1 with x in {-2.5, -1.5, -0.5, 0.5, 1.5, 2.5}.
    check(&graph(
        &[],
        &[
            ("x", "6xf32", "[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]"),
            ("s", "f32", "1.0"),
            ("z", "u8", "10"),
        ],
        "tsr.quantize_linear %x, %s, %z : (tensor<6xf32>, tensor<f32>, tensor<u8>) -> tensor<6xu8>",
        &[("y", "6xu8")],
    ));
    check(&graph(
        &[("x", "3x4xf32"), ("s", "4xf32")],
        &[("z", "4xu8", "[0, 7, 128, 250]")],
        "tsr.quantize_linear %x, %s, %z {axis = 1} : (tensor<3x4xf32>, tensor<4xf32>, tensor<4xu8>) -> tensor<3x4xu8>",
        &[("y", "3x4xu8")],
    ));
}

#[test]
fn dynamic_quantize() {
    for shape in ["5x7", "1x1", "2x3x16"] {
        check(&graph(
            &[("x", &format!("{shape}xf32"))],
            &[],
            &format!("tsr.dynamic_quantize_linear %x : (tensor<{shape}xf32>) -> (tensor<{shape}xu8>, tensor<f32>, tensor<u8>)"),
            &[("y", &format!("{shape}xu8")), ("s", "f32"), ("z", "u8")],
        ));
    }
}

#[test]
fn matmul_integer_zero_points() {
    check(&graph(
        &[("a", "2x3x7xu8"), ("b", "7x5xi8")],
        &[("za", "u8", "131"), ("zb", "i8", "-2")],
        "tsr.matmul_integer %a, %b, %za, %zb : (tensor<2x3x7xu8>, tensor<7x5xi8>, tensor<u8>, tensor<i8>) -> tensor<2x3x5xi32>",
        &[("y", "2x3x5xi32")],
    ));
    check(&graph(
        &[("a", "4x6xi8"), ("b", "6x3xu8")],
        &[("za", "4xi8", "[1, -1, 0, 100]"), ("zb", "3xu8", "[0, 9, 255]")],
        "tsr.matmul_integer %a, %b, %za, %zb : (tensor<4x6xi8>, tensor<6x3xu8>, tensor<4xi8>, tensor<3xu8>) -> tensor<4x3xi32>",
        &[("y", "4x3xi32")],
    ));
    check(&graph(
        &[("a", "2x3x4xu8"), ("b", "2x4x5xu8")],
        &[],
        "tsr.matmul_integer %a, %b : (tensor<2x3x4xu8>, tensor<2x4x5xu8>) -> tensor<2x3x5xi32>",
        &[("y", "2x3x5xi32")],
    ));
}

#[test]
fn matmul_nbits_4bit_partial_block_packed_zero_points_bias() {
    // K = 40 in blocks of 16: three blocks, the last one partial.
    check(&graph(
        &[("a", "2x3x40xf32"), ("b", "5x3x8xu8"), ("s", "15xf32"), ("z", "5x2xu8"), ("bias", "5xf32")],
        &[],
        "tsr.ms.matmul_nbits %a, %b, %s, %z, _, %bias {K = 40, N = 5, bits = 4, block_size = 16} : (tensor<2x3x40xf32>, tensor<5x3x8xu8>, tensor<15xf32>, tensor<5x2xu8>, tensor<5xf32>) -> tensor<2x3x5xf32>",
        &[("y", "2x3x5xf32")],
    ));
}

#[test]
fn matmul_nbits_default_zero_point_and_2_8_bits() {
    check(&graph(
        &[("a", "1x32xf32"), ("b", "3x1x16xu8"), ("s", "3xf32")],
        &[],
        "tsr.ms.matmul_nbits %a, %b, %s {K = 32, N = 3, bits = 4, block_size = 32} : (tensor<1x32xf32>, tensor<3x1x16xu8>, tensor<3xf32>) -> tensor<1x3xf32>",
        &[("y", "1x3xf32")],
    ));
    for (bits, blob) in [(2, 4), (8, 16)] {
        check(&graph(
            &[("a", "3x16xf32"), ("b", &format!("2x1x{blob}xu8")), ("s", "2xf32"), ("z", "2x1xf32")],
            &[],
            &format!("tsr.ms.matmul_nbits %a, %b, %s, %z {{K = 16, N = 2, bits = {bits}, block_size = 16}} : (tensor<3x16xf32>, tensor<2x1x{blob}xu8>, tensor<2xf32>, tensor<2x1xf32>) -> tensor<3x2xf32>"),
            &[("y", "3x2xf32")],
        ));
    }
}
