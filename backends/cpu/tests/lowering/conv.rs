//! Conv, ConvTranspose and the pools against the reference interpreter:
//! 1-D, 2-D and 3-D windows with odd sizes, asymmetric pads, strides,
//! dilations, groups, auto_pad, ceil_mode, count_include_pad, storage_order,
//! windows that fall entirely in padding, rows long enough for the vector
//! path, every dtype each op accepts; 1 vs 2 threads bit-identical.
//! Result shapes are worked out by hand in the comments (the verifier
//! checks them against shape inference).

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

/// A graph of one op over the inputs `ins` (name, type) with results `outs`
/// (name, type); the op's operands are the inputs in order.
fn one(op: &str, attrs: &str, ins: &[(&str, &str)], outs: &[(&str, &str)]) -> String {
    let params: Vec<String> = ins
        .iter()
        .map(|(n, t)| format!("%{n}: tensor<{t}>"))
        .collect();
    let operands: Vec<String> = ins.iter().map(|(n, _)| format!("%{n}")).collect();
    let in_tys: Vec<String> = ins.iter().map(|(_, t)| format!("tensor<{t}>")).collect();
    let results: Vec<String> = outs
        .iter()
        .map(|(n, t)| format!("\"{n}\": tensor<{t}>"))
        .collect();
    let names: Vec<String> = outs.iter().map(|(n, _)| format!("%{n}")).collect();
    let out_tys: Vec<String> = outs.iter().map(|(_, t)| format!("tensor<{t}>")).collect();
    let out_ty = if outs.len() == 1 {
        out_tys[0].clone()
    } else {
        format!("({})", out_tys.join(", "))
    };
    let attrs = if attrs.is_empty() {
        String::new()
    } else {
        format!(" {{{attrs}}}")
    };
    format!(
        "tsr.graph @g({}) -> ({}) {{\n  {} = tsr.{op} {}{attrs} : ({}) -> {out_ty}\n  tsr.return {}\n}}\n",
        params.join(", "),
        results.join(", "),
        names.join(", "),
        operands.join(", "),
        in_tys.join(", "),
        names.join(", ")
    )
}

fn conv(attrs: &str, x: &str, w: &str, b: Option<&str>, y: &str) {
    let mut ins = vec![("x", x), ("w", w)];
    ins.extend(b.map(|b| ("b", b)));
    check(&one("conv", attrs, &ins, &[("y", y)]));
}

#[test]
fn conv_1d() {
    // eff 5, span 11 + 3 = 14: (14 - 5) / 2 + 1 = 5.
    conv(
        "pads = [1, 2], strides = [2], dilations = [2]",
        "2x3x11xf32",
        "4x3x3xf32",
        Some("4xf32"),
        "2x4x5xf32",
    );
    // Outputs 3 and 4 read only end padding: bias alone.
    conv(
        "pads = [0, 3]",
        "1x2x3xf32",
        "2x2x2xf32",
        Some("2xf32"),
        "1x2x5xf32",
    );
}

#[test]
fn conv_2d_vector_rows() {
    // Two groups, pads 1: interior outputs 1..20 of each 21-wide row, two
    // vectors of 8 then scalar edges.
    conv(
        "group = 2, pads = [1, 1, 1, 1]",
        "2x4x6x21xf32",
        "6x2x3x3xf32",
        Some("6xf32"),
        "2x6x6x21xf32",
    );
    // Dilations and asymmetric pads: h span 8, eff 3 -> 6; w span 32,
    // eff 7 -> 26 (interior 2..26, three vectors).
    conv(
        "pads = [0, 2, 1, 0], dilations = [2, 3]",
        "1x3x7x30xf32",
        "2x3x2x3xf32",
        None,
        "1x2x6x26xf32",
    );
}

#[test]
fn conv_2d_strides_and_auto_pad() {
    // SAME_LOWER, stride 2 on h: ceil(7 / 2) = 4, w kept at 8.
    conv(
        "auto_pad = \"SAME_LOWER\", strides = [2, 1]",
        "1x2x7x8xf32",
        "3x2x4x3xf32",
        None,
        "1x3x4x8xf32",
    );
    // VALID with stride 3 on w: (17 - 3) / 3 + 1 = 5.
    conv(
        "auto_pad = \"VALID\", strides = [1, 3]",
        "1x2x4x17xf32",
        "2x2x2x3xf32",
        Some("2xf32"),
        "1x2x3x5xf32",
    );
}

#[test]
fn conv_3d() {
    // pads [1,0,1 | 0,1,1]: d span 6 -> 5; h span 7, eff 3, s 2 -> 3;
    // w span 9, eff 3 -> 7.
    conv(
        "pads = [1, 0, 1, 0, 1, 1], strides = [1, 2, 1], dilations = [1, 1, 2]",
        "1x2x5x6x7xf32",
        "3x2x2x3x2xf32",
        Some("3xf32"),
        "1x3x5x3x7xf32",
    );
}

#[test]
fn conv_half_and_double() {
    for t in ["f16", "bf16"] {
        // Depthwise, pads 1: 19-wide rows take the vector path.
        conv(
            "group = 3, pads = [1, 1, 1, 1]",
            &format!("1x3x5x19x{t}"),
            &format!("3x1x3x3x{t}"),
            Some(&format!("3x{t}")),
            &format!("1x3x5x19x{t}"),
        );
    }
    conv(
        "pads = [1, 1, 1, 1], strides = [2, 2]",
        "1x2x5x5xf64",
        "2x2x3x3xf64",
        None,
        "1x2x3x3xf64",
    );
}

/// At least 32 taps per output: the padded-scratch path, with full vector
/// blocks, a masked tail block, output-channel blocks of 4, 3 and 1, strides
/// (strided loads) and dilations.
#[test]
fn conv_padded_scratch_path() {
    // h span 10 -> 8; w span 24 -> 22 (two blocks of 8 and a tail of 6).
    conv(
        "group = 2, pads = [1, 2, 0, 1]",
        "1x8x9x21xf32",
        "8x4x3x3xf32",
        Some("8xf32"),
        "1x8x8x22xf32",
    );
    // h span 13, eff 3, s 2 -> 6; w span 19, eff 7, s 3 -> 5.
    conv(
        "strides = [2, 3], dilations = [1, 2], pads = [1, 1, 1, 1]",
        "2x3x11x17xf32",
        "6x3x3x4xf32",
        Some("6xf32"),
        "2x6x6x5xf32",
    );
    conv(
        "pads = [2, 2]",
        "2x8x30xf32",
        "5x8x5xf32",
        None,
        "2x5x30xf32",
    );
    for t in ["f16", "bf16"] {
        // Pads 1 on every axis, kernel 2: each axis grows by one.
        conv(
            "pads = [1, 1, 1, 1, 1, 1]",
            &format!("1x4x4x5x9x{t}"),
            &format!("4x4x2x2x2x{t}"),
            Some(&format!("4x{t}")),
            &format!("1x4x5x6x10x{t}"),
        );
    }
}

fn conv_transpose(attrs: &str, x: &str, w: &str, b: Option<&str>, y: &str) {
    let mut ins = vec![("x", x), ("w", w)];
    ins.extend(b.map(|b| ("b", b)));
    check(&one("conv_transpose", attrs, &ins, &[("y", y)]));
}

#[test]
fn conv_transpose_1d_2d() {
    // 2 * 3 + 2 + 1 = 9.
    conv_transpose("strides = [2]", "1x2x4xf32", "2x3x3xf32", None, "1x3x9xf32");
    // Two groups of 2 -> 4 outputs; h: 2*2 + 1 + 2 + 1 - 1 = 7;
    // w: 3*3 + 2 + 1 - 1 = 11.
    conv_transpose(
        "group = 2, strides = [2, 3], pads = [1, 0, 0, 1], dilations = [1, 2], output_padding = [1, 0]",
        "2x4x3x4xf32",
        "4x2x3x2xf32",
        Some("4xf32"),
        "2x4x7x11xf32",
    );
    // output_shape past the natural 9x7: negative padding.
    conv_transpose(
        "strides = [3, 2], output_shape = [10, 8]",
        "1x1x3x3xf32",
        "1x2x3x3xf32",
        None,
        "1x2x10x8xf32",
    );
}

#[test]
fn conv_transpose_3d_same_and_halves() {
    // SAME_UPPER: out = in * stride.
    conv_transpose(
        "auto_pad = \"SAME_UPPER\", strides = [2, 1, 2]",
        "1x1x2x3x2xf32",
        "1x2x2x2x3xf32",
        None,
        "1x2x4x3x4xf32",
    );
    for t in ["f16", "bf16"] {
        conv_transpose(
            "strides = [2, 2], pads = [1, 1, 1, 1]",
            &format!("1x2x3x3x{t}"),
            &format!("2x2x3x3x{t}"),
            Some(&format!("2x{t}")),
            &format!("1x2x5x5x{t}"),
        );
    }
}

fn pool(op: &str, attrs: &str, x: &str, outs: &[(&str, &str)]) {
    check(&one(op, attrs, &[("x", x)], outs));
}

#[test]
fn max_pool_ceil_pads_indices() {
    // h: span 9, eff 3, s 2, ceil -> 4; w: span 9, eff 2, s 3, ceil -> 4,
    // minus the window starting in the end padding -> 3.
    pool(
        "max_pool",
        "kernel_shape = [3, 2], strides = [2, 3], pads = [1, 1, 1, 0], ceil_mode = 1",
        "1x2x7x8xf32",
        &[("y", "1x2x4x3xf32"), ("i", "1x2x4x3xi64")],
    );
    // Column-major indices, dilations.
    pool(
        "max_pool",
        "kernel_shape = [2, 2], dilations = [2, 2], storage_order = 1",
        "2x1x6x7xf32",
        &[("y", "2x1x4x5xf32"), ("i", "2x1x4x5xi64")],
    );
    // Outputs 3 and 4 lie in the end padding: -inf and index -1.
    pool(
        "max_pool",
        "kernel_shape = [2], pads = [0, 3]",
        "1x2x3xf32",
        &[("y", "1x2x5xf32"), ("i", "1x2x5xi64")],
    );
}

#[test]
fn max_pool_dtypes_and_ranks() {
    for t in ["i8", "u8", "i32", "i64", "u16"] {
        // (12 - 3) / 2 + 1 = 5.
        pool(
            "max_pool",
            "kernel_shape = [3], strides = [2], pads = [1, 1]",
            &format!("2x3x10x{t}"),
            &[("y", &format!("2x3x5x{t}"))],
        );
    }
    for t in ["f16", "bf16", "f64"] {
        pool(
            "max_pool",
            "kernel_shape = [2, 2, 2], auto_pad = \"SAME_UPPER\"",
            &format!("1x2x4x5x6x{t}"),
            &[("y", &format!("1x2x4x5x6x{t}"))],
        );
    }
}

#[test]
fn average_pool_padding_counts() {
    for include in [0, 1] {
        // span 9, eff 3, s 2, ceil -> 4.
        pool(
            "average_pool",
            &format!(
                "kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], ceil_mode = 1, count_include_pad = {include}"
            ),
            "1x3x7x7xf32",
            &[("y", "1x3x4x4xf32")],
        );
        // The last window (4, 5) reaches past the input with no end
        // padding: position 5 is never counted.
        pool(
            "average_pool",
            &format!(
                "kernel_shape = [2], strides = [2], ceil_mode = 1, count_include_pad = {include}"
            ),
            "1x2x5xf32",
            &[("y", "1x2x3xf32")],
        );
        // d span 7, eff 3 -> 5; h span 7, eff 2, s 2 -> 3; w span 8, eff 3,
        // s 2 -> 3.
        pool(
            "average_pool",
            &format!(
                "kernel_shape = [2, 2, 2], dilations = [2, 1, 2], pads = [1, 0, 1, 1, 1, 0], strides = [1, 2, 2], count_include_pad = {include}"
            ),
            "1x2x5x6x7xf32",
            &[("y", "1x2x5x3x3xf32")],
        );
    }
    for t in ["f16", "bf16", "f64"] {
        pool(
            "average_pool",
            "kernel_shape = [3, 2], auto_pad = \"SAME_LOWER\"",
            &format!("2x2x5x6x{t}"),
            &[("y", &format!("2x2x5x6x{t}"))],
        );
    }
}

#[test]
fn lp_pool_powers() {
    for p in [1, 2, 3] {
        // h span 6, eff 2 -> 5; w span 8, eff 3, s 2 -> 3.
        pool(
            "lp_pool",
            &format!("kernel_shape = [2, 3], pads = [1, 1, 0, 1], strides = [1, 2], p = {p}"),
            "1x2x5x6xf32",
            &[("y", "1x2x5x3xf32")],
        );
    }
    pool(
        "lp_pool",
        "kernel_shape = [3], strides = [2]",
        "2x2x9xf16",
        &[("y", "2x2x4xf16")],
    );
}

#[test]
fn global_pools() {
    for op in ["global_average_pool", "global_max_pool", "global_lp_pool"] {
        pool(op, "", "2x3x5x7xf32", &[("y", "2x3x1x1xf32")]);
        pool(op, "", "1x2x3x4x5xf16", &[("y", "1x2x1x1x1xf16")]);
        pool(op, "", "2x3x9xbf16", &[("y", "2x3x1xbf16")]);
    }
    pool(
        "global_lp_pool",
        "p = 3",
        "2x3x4x4xf64",
        &[("y", "2x3x1x1xf64")],
    );
}

#[test]
fn unsupported_combinations_are_errors() {
    use tessera_backend::Backend;
    let g = crate::common::graph(&one(
        "conv",
        "",
        &[("x", "1x2x5xf8e4m3"), ("w", "1x2x3xf8e4m3")],
        &[("y", "1x1x3xf8e4m3")],
    ));
    let cpu = tessera_cpu::Cpu {
        opts: tessera_cpu::CpuOptions::default(),
    };
    let mut exe = cpu.prepare(&g).expect("prepare");
    match exe.run(&crate::common::inputs(&g, 7)) {
        Ok(_) => panic!("an f8 conv must be refused"),
        Err(e) => assert!(e.to_string().contains("not supported"), "{e}"),
    }
}

/// MaxPool then MaxUnpool of its indices (valid, distinct indices), with
/// the natural output and with a larger output_shape.
#[test]
fn max_unpool_scatters_pooled_maxima() {
    // 6x9, kernel 2x3, strides 2x3: pooled 3x3, unpooled (3-1)*2+2 = 6 by
    // (3-1)*3+3 = 9, so the pool's indices address the unpooled planes.
    let graph = |out: &str, shape: Option<&str>| {
        let (shape_operand, shape_ty) = match shape {
            Some(_) => (", %s", ", tensor<4xi64>"),
            None => ("", ""),
        };
        let consts = match shape {
            Some(v) => format!("tsr.constants {{\n  @shape = dense<{v}> : tensor<4xi64>\n}}\n"),
            None => String::new(),
        };
        let shape_def = match shape {
            Some(_) => "  %s = tsr.constant {value = @shape} : () -> tensor<4xi64>\n",
            None => "",
        };
        format!(
            "tsr.graph @g(%x: tensor<2x3x6x9xf32>) -> (\"y\": tensor<{out}>) {{\n\
             {shape_def}\
               %p, %i = tsr.max_pool %x {{kernel_shape = [2, 3], strides = [2, 3]}} : (tensor<2x3x6x9xf32>) -> (tensor<2x3x3x3xf32>, tensor<2x3x3x3xi64>)\n\
               %y = tsr.max_unpool %p, %i{shape_operand} {{kernel_shape = [2, 3], strides = [2, 3]}} : (tensor<2x3x3x3xf32>, tensor<2x3x3x3xi64>{shape_ty}) -> tensor<{out}>\n\
               tsr.return %y\n}}\n{consts}"
        )
    };
    check(&graph("2x3x6x9xf32", None));
    check(&graph("2x3x7x10xf32", Some("[2, 3, 7, 10]")));
}
