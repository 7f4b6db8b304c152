//! The nn lowerings (softmax, normalizations, rotary embedding, attention)
//! against the reference interpreter: odd sizes, every axis, optional
//! operands and outputs, 1 vs 2 threads bit-identical.

/// `common::check`, first writing the emitted MLIR to `$TESSERA_DUMP_MLIR`
/// when set (to debug a lowering with mlir-opt).
fn check(text: &str) {
    if let Ok(path) = std::env::var("TESSERA_DUMP_MLIR") {
        let g = crate::common::graph(text);
        let env = std::collections::HashMap::new();
        match tessera_cpu::emit_mlir(&g, &env, &tessera_cpu::CpuOptions::default()) {
            Ok(e) => std::fs::write(path, e.mlir).expect("write the MLIR dump"),
            Err(e) => eprintln!("emit failed: {e}"),
        }
    }
    crate::common::check(text)
}

/// A graph of one op `%y = tsr.<op_text>` over the inputs `ins` (name, type).
fn one(ins: &[(&str, &str)], op_text: &str, outs: &[(&str, &str)]) -> String {
    let params: Vec<String> = ins
        .iter()
        .map(|(n, t)| format!("%{n}: tensor<{t}>"))
        .collect();
    let results: Vec<String> = outs
        .iter()
        .map(|(n, t)| format!("\"{n}\": tensor<{t}>"))
        .collect();
    let names: Vec<String> = outs.iter().map(|(n, _)| format!("%{n}")).collect();
    format!(
        "tsr.graph @g({}) -> ({}) {{\n  {} = {op_text}\n  tsr.return {}\n}}\n",
        params.join(", "),
        results.join(", "),
        names.join(", "),
        names.join(", ")
    )
}

#[test]
fn softmax_every_axis() {
    for axis in [-1, 0, 1, 2] {
        for op in ["softmax", "log_softmax"] {
            check(&one(
                &[("x", "3x5x7xf32")],
                &format!(
                    "tsr.{op} %x {{axis = {axis}}} : (tensor<3x5x7xf32>) -> tensor<3x5x7xf32>"
                ),
                &[("y", "3x5x7xf32")],
            ));
        }
    }
}

#[test]
fn softmax_half_and_f64() {
    for t in ["f16", "f64"] {
        check(&one(
            &[("x", &format!("4x9x{t}"))],
            &format!("tsr.softmax %x : (tensor<4x9x{t}>) -> tensor<4x9x{t}>"),
            &[("y", &format!("4x9x{t}"))],
        ));
    }
}

#[test]
fn layer_norm_with_stats_and_bias() {
    check(&one(
        &[("x", "2x3x10xf32"), ("s", "10xf32"), ("b", "10xf32")],
        "tsr.layer_normalization %x, %s, %b {axis = -1, epsilon = 1e-5} : (tensor<2x3x10xf32>, tensor<10xf32>, tensor<10xf32>) -> (tensor<2x3x10xf32>, tensor<2x3x1xf32>, tensor<2x3x1xf32>)",
        &[("y", "2x3x10xf32"), ("m", "2x3x1xf32"), ("r", "2x3x1xf32")],
    ));
}

#[test]
fn layer_norm_over_two_axes_without_bias() {
    check(&one(
        &[("x", "3x4x5xf32"), ("s", "4x5xf32")],
        "tsr.layer_normalization %x, %s {axis = 1} : (tensor<3x4x5xf32>, tensor<4x5xf32>) -> tensor<3x4x5xf32>",
        &[("y", "3x4x5xf32")],
    ));
}

#[test]
fn rms_norm() {
    check(&one(
        &[("x", "2x5x12xf32"), ("s", "12xf32")],
        "tsr.rms_normalization %x, %s {epsilon = 1e-6} : (tensor<2x5x12xf32>, tensor<12xf32>) -> tensor<2x5x12xf32>",
        &[("y", "2x5x12xf32")],
    ));
}

/// Rows of at least 16 f32 take the vector path: the widest of 64/32/16
/// lanes dividing the row, then a scalar tail (50 = 3 x 16 + 2), with mean,
/// variance and the normalization vectorized.
#[test]
fn norms_vector_rows_with_tails() {
    check(&one(
        &[("x", "3x2x50xf32"), ("s", "50xf32"), ("b", "50xf32")],
        "tsr.layer_normalization %x, %s, %b {axis = -1, epsilon = 1e-5} : (tensor<3x2x50xf32>, tensor<50xf32>, tensor<50xf32>) -> (tensor<3x2x50xf32>, tensor<3x2x1xf32>, tensor<3x2x1xf32>)",
        &[("y", "3x2x50xf32"), ("m", "3x2x1xf32"), ("r", "3x2x1xf32")],
    ));
    check(&one(
        &[("x", "4x768xf32"), ("s", "768xf32")],
        "tsr.rms_normalization %x, %s {epsilon = 1e-6} : (tensor<4x768xf32>, tensor<768xf32>) -> tensor<4x768xf32>",
        &[("y", "4x768xf32")],
    ));
    check(&one(
        &[("x", "3x2x35xf32"), ("s", "2x35xf32")],
        "tsr.layer_normalization %x, %s {axis = 1} : (tensor<3x2x35xf32>, tensor<2x35xf32>) -> tensor<3x2x35xf32>",
        &[("y", "3x2x35xf32")],
    ));
}

/// One `tsr.attention` with the given operands, attributes and results.
fn attention(ins: &[(&str, &str)], attrs: &str, outs: &[(&str, &str)]) -> String {
    let names: Vec<String> = ins
        .iter()
        .map(|(n, _)| {
            if n.is_empty() {
                String::new()
            } else {
                format!("%{n}")
            }
        })
        .collect();
    let in_tys: Vec<String> = ins
        .iter()
        .filter(|(n, _)| !n.is_empty())
        .map(|(_, t)| format!("tensor<{t}>"))
        .collect();
    let out_tys: Vec<String> = outs.iter().map(|(_, t)| format!("tensor<{t}>")).collect();
    let real: Vec<(&str, &str)> = ins.iter().copied().filter(|(n, _)| !n.is_empty()).collect();
    one(
        &real,
        &format!(
            "tsr.attention {} {{{attrs}}} : ({}) -> ({})",
            names.join(", ").replace(", ,", ", _,"),
            in_tys.join(", "),
            out_tys.join(", ")
        ),
        outs,
    )
}

#[test]
fn attention_4d_bool_mask_broadcast() {
    check(&attention(
        &[
            ("q", "2x3x5x8xf32"),
            ("k", "2x3x7x8xf32"),
            ("v", "2x3x7x8xf32"),
            ("m", "2x1x5x7xi1"),
        ],
        "is_causal = 0",
        &[("y", "2x3x5x8xf32")],
    ));
}

/// The vectorized f32 path (no causal limit, key count a multiple of 8,
/// float mask): keys transposed per task, 64-key score blocks, vector exp.
#[test]
fn attention_f32_wide_keys_float_mask() {
    check(&attention(
        &[
            ("q", "1x2x24x64xf32"),
            ("k", "1x2x72x64xf32"),
            ("v", "1x2x72x64xf32"),
            ("m", "1x1x24x72xf32"),
        ],
        "is_causal = 0",
        &[("y", "1x2x24x64xf32")],
    ));
    // BERT's packed 3-D layout, grouped heads, 16 keys.
    check(&attention(
        &[
            ("q", "2x16x128xf32"),
            ("k", "2x16x64xf32"),
            ("v", "2x16x64xf32"),
        ],
        "is_causal = 0, q_num_heads = 4, kv_num_heads = 2",
        &[("y", "2x16x128xf32")],
    ));
    // Query lengths blocked by 2 and by 1 row, a mask row per query and
    // one shared by every query (BERT's padding mask), value head 32.
    for (sq, m) in [(6, "1x2x6x40xf32"), (5, "2x1x1x40xf32")] {
        check(&attention(
            &[
                ("q", &format!("2x2x{sq}x16xf32")),
                ("k", "2x2x40x16xf32"),
                ("v", "2x2x40x32xf32"),
                ("m", m),
            ],
            "is_causal = 0",
            &[("y", &format!("2x2x{sq}x32xf32"))],
        ));
    }
}

#[test]
fn attention_3d_gqa_causal_float_mask_odd_heads() {
    // 4 query heads share 2 KV heads; head size 5 takes the scalar path.
    check(&attention(
        &[
            ("q", "2x6x20xf32"),
            ("k", "2x6x10xf32"),
            ("v", "2x6x6xf32"),
            ("m", "6x6xf32"),
        ],
        "is_causal = 1, q_num_heads = 4, kv_num_heads = 2",
        &[("y", "2x6x12xf32")],
    ));
}

#[test]
fn attention_kv_cache_gqa_with_present_outputs() {
    check(&attention(
        &[
            ("q", "1x4x3x16xf32"),
            ("k", "1x2x3x16xf32"),
            ("v", "1x2x3x8xf32"),
            ("", ""),
            ("pk", "1x2x5x16xf32"),
            ("pv", "1x2x5x8xf32"),
        ],
        "is_causal = 1",
        &[
            ("y", "1x4x3x8xf32"),
            ("ck", "1x2x8x16xf32"),
            ("cv", "1x2x8x8xf32"),
        ],
    ));
}

#[test]
fn attention_past_without_present_softcap_scale_short_mask() {
    check(&attention(
        &[
            ("q", "2x2x4x8xf32"),
            ("k", "2x2x4x8xf32"),
            ("v", "2x2x4x8xf32"),
            ("m", "4x6xf32"),
            ("pk", "2x2x3x8xf32"),
            ("pv", "2x2x3x8xf32"),
        ],
        "scale = 0.3, softcap = 2.0",
        &[("y", "2x2x4x8xf32")],
    ));
}

#[test]
fn attention_sliding_window_f16() {
    check(&attention(
        &[
            ("q", "1x2x6x4xf16"),
            ("k", "1x2x6x4xf16"),
            ("v", "1x2x6x4xf16"),
        ],
        "is_causal = 1, left_window_size = 2",
        &[("y", "1x2x6x4xf16")],
    ));
}

#[test]
fn rotary_4d_batch_caches_partial_rotation() {
    check(&one(
        &[("x", "2x3x4x10xf32"), ("c", "2x4x3xf32"), ("s", "2x4x3xf32")],
        "tsr.rotary_embedding %x, %c, %s {rotary_embedding_dim = 6} : (tensor<2x3x4x10xf32>, tensor<2x4x3xf32>, tensor<2x4x3xf32>) -> tensor<2x3x4x10xf32>",
        &[("y", "2x3x4x10xf32")],
    ));
}

#[test]
fn rotary_3d_position_ids_interleaved() {
    for inter in [0, 1] {
        check(&format!(
            "tsr.graph @g(%x: tensor<2x3x16xf32>, %c: tensor<7x4xf32>, %s: tensor<7x4xf32>) -> (\"y\": tensor<2x3x16xf32>) {{\n\
               %p = tsr.constant {{value = @pos}} : () -> tensor<2x3xi64>\n\
               %y = tsr.rotary_embedding %x, %c, %s, %p {{num_heads = 2, interleaved = {inter}}} : (tensor<2x3x16xf32>, tensor<7x4xf32>, tensor<7x4xf32>, tensor<2x3xi64>) -> tensor<2x3x16xf32>\n\
               tsr.return %y\n}}\n\
             tsr.constants {{\n  @pos = dense<[0, 1, 2, 6, 3, 5]> : tensor<2x3xi64>\n}}\n"
        ));
    }
}

#[test]
fn conv_patch_embedding_and_padded_grouped_dilated() {
    // ViT patch embedding: stride = kernel, no padding, bias.
    check(&one(
        &[("x", "2x3x8x8xf32"), ("w", "5x3x4x4xf32"), ("b", "5xf32")],
        "tsr.conv %x, %w, %b {kernel_shape = [4, 4], strides = [4, 4]} : (tensor<2x3x8x8xf32>, tensor<5x3x4x4xf32>, tensor<5xf32>) -> tensor<2x5x2x2xf32>",
        &[("y", "2x5x2x2xf32")],
    ));
    // Two groups, asymmetric pads, stride 2, dilation 2 on W.
    check(&one(
        &[("x", "1x4x7x9xf32"), ("w", "6x2x3x2xf32")],
        "tsr.conv %x, %w {group = 2, pads = [1, 0, 2, 1], strides = [2, 1], dilations = [1, 2]} : (tensor<1x4x7x9xf32>, tensor<6x2x3x2xf32>) -> tensor<1x6x4x8xf32>",
        &[("y", "1x6x4x8xf32")],
    ));
    check(&one(
        &[("x", "1x2x5x5xf32"), ("w", "3x2x3x3xf32")],
        "tsr.conv %x, %w {auto_pad = \"SAME_UPPER\", strides = [2, 2]} : (tensor<1x2x5x5xf32>, tensor<3x2x3x3xf32>) -> tensor<1x3x3x3xf32>",
        &[("y", "1x3x3x3xf32")],
    ));
}
