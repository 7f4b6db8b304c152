//! Each rewrite checked numerically: the reference interpreter runs the
//! contrib op (its own `eval`) and the legalized core ops on the same seeded
//! random inputs, and the results must agree.

use super::LegalizeContrib;
use crate::Pass;
use std::collections::HashMap;
use tessera_ir::{parse_graph, verify, Graph, Tensor};

/// A graph of one op line (`%a, %b = tsr.ms...`) over inputs and constants
/// (`(name, literal, type)`), returning `outs`.
fn graph(
    ins: &[(&str, &str)],
    consts: &[(&str, &str, &str)],
    op: &str,
    outs: &[(&str, &str)],
) -> Graph {
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
    for (n, lit, t) in consts {
        // Dense literals are flat lists in row-major order.
        let lit = format!("[{}]", lit.replace(['[', ']'], ""));
        body += &format!("  %{n} = tsr.constant {{value = @{n}}} : () -> tensor<{t}>\n");
        table += &format!("  @{n} = dense<{lit}> : tensor<{t}>\n");
    }
    let text = format!(
        "tsr.graph @g({}) -> ({}) {{\n{body}  {op}\n  tsr.return {}\n}}\n{}",
        params.join(", "),
        results.join(", "),
        names.join(", "),
        if table.is_empty() {
            String::new()
        } else {
            format!("tsr.constants {{\n{table}}}\n")
        }
    );
    let g = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    verify(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    g
}

fn legalized(g: &Graph) -> Graph {
    let mut l = g.clone();
    let stats = LegalizeContrib::default()
        .run(&mut l)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.changes, 1, "the contrib op was not rewritten");
    verify(&l).unwrap_or_else(|e| panic!("{e}"));
    for op in &l.ops {
        assert!(
            !op.kind.mnemonic().starts_with("ms."),
            "tsr.{} left after legalization",
            op.kind.mnemonic()
        );
    }
    l
}

fn agree(want: &Tensor, got: &Tensor, what: &str) {
    assert_eq!((want.dtype, &want.shape), (got.dtype, &got.shape), "{what}");
    // f32 results: the contrib semantics round once from f64, the core ops
    // once per op.
    let tol = if want.dtype.is_float() { 2e-5 } else { 0.0 };
    for i in 0..want.len() {
        let (w, g) = (want.get_f64(i), got.get_f64(i));
        assert!(
            (w - g).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: contrib {w} vs legalized {g}"
        );
    }
}

/// The contrib op and its legalization agree on two random input sets.
fn check(g: &Graph) {
    let l = legalized(g);
    for seed in [7, 8] {
        let ins = tessera_reference::diff::random_inputs(g, seed, &HashMap::new()).unwrap();
        let want = tessera_reference::run(g, &ins).unwrap_or_else(|e| panic!("contrib: {e}"));
        let got = tessera_reference::run(&l, &ins).unwrap_or_else(|e| panic!("legalized: {e}"));
        assert_eq!(want.len(), got.len());
        for (i, (w, o)) in want.iter().zip(&got).enumerate() {
            agree(w, o, &format!("output {i}"));
        }
    }
}

/// Legalization refuses with a message containing `needle`.
fn refuses(g: &Graph, needle: &str) {
    let mut l = g.clone();
    let e = LegalizeContrib::default()
        .run(&mut l)
        .expect_err("legalization should refuse");
    let text = e.to_string();
    assert!(text.contains(needle), "{text}");
}

const X: &str = "2x3x8xf32";

#[test]
fn gelu_family() {
    let t = format!("tensor<{X}>");
    let cases = [
        format!("%y = tsr.ms.gelu %x : ({t}) -> {t}"),
        format!("%y = tsr.ms.quick_gelu %x {{alpha = 1.5}} : ({t}) -> {t}"),
        format!("%y = tsr.ms.quick_gelu %x : ({t}) -> {t}"),
        format!("%y = tsr.ms.bias_gelu %x, %b : ({t}, tensor<8xf32>) -> {t}"),
        format!("%y = tsr.ms.fast_gelu %x, %b : ({t}, tensor<8xf32>) -> {t}"),
        format!("%y = tsr.ms.fast_gelu %x, _ : ({t}) -> {t}"),
        format!("%y = tsr.ms.bias_add %x, %b, %x : ({t}, tensor<8xf32>, {t}) -> {t}"),
    ];
    for op in &cases {
        let g = graph(&[("x", X), ("b", "8xf32")], &[], op, &[("y", X)]);
        check(&g);
    }
}

#[test]
fn skip_layer_norms_with_every_output() {
    let stat = "2x3x1xf32";
    for (skip, bias) in [("2x3x8xf32", true), ("3x8xf32", false), ("1x3x8xf32", true)] {
        let (bias_op, bias_ty) = if bias {
            ("%bias", ", tensor<8xf32>")
        } else {
            ("_", "")
        };
        let g = graph(
            &[("x", X), ("s", skip), ("gamma", "8xf32"), ("beta", "8xf32"), ("bias", "8xf32")],
            &[],
            &format!(
                "%y, %m, %i, %sum = tsr.ms.skip_layer_normalization %x, %s, %gamma, %beta, {bias_op} {{epsilon = 1e-5}} : (tensor<{X}>, tensor<{skip}>, tensor<8xf32>, tensor<8xf32>{bias_ty}) -> (tensor<{X}>, tensor<{stat}>, tensor<{stat}>, tensor<{X}>)"
            ),
            &[("y", X), ("m", stat), ("i", stat), ("sum", X)],
        );
        check(&g);
        let g = graph(
            &[("x", X), ("s", skip), ("gamma", "8xf32"), ("bias", "8xf32")],
            &[],
            &format!(
                "%y, %m, %i, %sum = tsr.ms.skip_simplified_layer_normalization %x, %s, %gamma, {bias_op} : (tensor<{X}>, tensor<{skip}>, tensor<8xf32>{bias_ty}) -> (tensor<{X}>, tensor<{stat}>, tensor<{stat}>, tensor<{X}>)"
            ),
            &[("y", X), ("m", stat), ("i", stat), ("sum", X)],
        );
        check(&g);
    }
    // A skip that does not repeat over the input is refused, not broadcast.
    let g = graph(
        &[("x", X), ("s", "2x1x8xf32"), ("gamma", "8xf32")],
        &[],
        &format!("%y = tsr.ms.skip_layer_normalization %x, %s, %gamma : (tensor<{X}>, tensor<2x1x8xf32>, tensor<8xf32>) -> tensor<{X}>"),
        &[("y", X)],
    );
    refuses(&g, "does not match input");
}

#[test]
fn simplified_layer_norm_over_trailing_axes() {
    for (axis, scale, stat) in [
        (-1, "8xf32", "2x3x1xf32"),
        (1, "3x8xf32", "2x1x1xf32"),
        (1, "8xf32", "2x1x1xf32"),
    ] {
        let g = graph(
            &[("x", X), ("scale", scale)],
            &[],
            &format!("%y, %inv = tsr.ms.simplified_layer_normalization %x, %scale {{axis = {axis}, epsilon = 1e-5}} : (tensor<{X}>, tensor<{scale}>) -> (tensor<{X}>, tensor<{stat}>)"),
            &[("y", X), ("inv", stat)],
        );
        check(&g);
    }
}

#[test]
fn embed_layer_norm_with_segments_mask_and_positions() {
    let ids = ("ids", "[[1, 5, 7, 2], [0, 3, 19, 4]]", "2x4xi32");
    let seg = ("seg", "[[0, 0, 1, 1], [0, 1, 1, 1]]", "2x4xi32");
    let mask = ("mask", "[[1, 1, 1, 0], [1, 1, 0, 0]]", "2x4xi32");
    let tables = [
        ("word", "20x8xf32"),
        ("pos", "6x8xf32"),
        ("segt", "2x8xf32"),
        ("gamma", "8xf32"),
        ("beta", "8xf32"),
    ];
    let g = graph(
        &tables,
        &[ids, seg, mask],
        "%y, %mi, %sum = tsr.ms.embed_layer_normalization %ids, %seg, %word, %pos, %segt, %gamma, %beta, %mask {epsilon = 1e-5} : (tensor<2x4xi32>, tensor<2x4xi32>, tensor<20x8xf32>, tensor<6x8xf32>, tensor<2x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<2x4xi32>) -> (tensor<2x4x8xf32>, tensor<2xi32>, tensor<2x4x8xf32>)",
        &[("y", "2x4x8xf32"), ("mi", "2xi32"), ("sum", "2x4x8xf32")],
    );
    check(&g);
    let pids = ("pids", "[[5, 0, 2, 1]]", "1x4xi64");
    let g = graph(
        &tables,
        &[ids, pids],
        "%y, %mi = tsr.ms.embed_layer_normalization %ids, _, %word, %pos, _, %gamma, %beta, _, %pids : (tensor<2x4xi32>, tensor<20x8xf32>, tensor<6x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<1x4xi64>) -> (tensor<2x4x8xf32>, tensor<2xi32>)",
        &[("y", "2x4x8xf32"), ("mi", "2xi32")],
    );
    check(&g);
}

#[test]
fn rotary_embedding_forms() {
    let caches = [("cos", "16x8xf32"), ("sin", "16x8xf32")];
    let pos = ("p", "[[0, 1, 2, 3], [7, 3, 9, 15]]", "2x4xi64");
    for inter in [0, 1] {
        let g = graph(
            &[("x", "2x4x32xf32"), caches[0], caches[1]],
            &[pos],
            &format!("%y = tsr.ms.rotary_embedding %x, %p, %cos, %sin {{interleaved = {inter}, num_heads = 2}} : (tensor<2x4x32xf32>, tensor<2x4xi64>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<2x4x32xf32>"),
            &[("y", "2x4x32xf32")],
        );
        check(&g);
    }
    // 4-D input with one offset; a partial rotation from a narrower cache.
    let g = graph(
        &[("x", "2x2x4x16xf32"), caches[0], caches[1]],
        &[("p", "[3]", "1xi64")],
        "%y = tsr.ms.rotary_embedding %x, %p, %cos, %sin : (tensor<2x2x4x16xf32>, tensor<1xi64>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<2x2x4x16xf32>",
        &[("y", "2x2x4x16xf32")],
    );
    check(&g);
    let g = graph(
        &[("x", "2x4x32xf32"), ("cos", "16x4xf32"), ("sin", "16x4xf32")],
        &[pos],
        "%y = tsr.ms.rotary_embedding %x, %p, %cos, %sin {num_heads = 2, rotary_embedding_dim = 8} : (tensor<2x4x32xf32>, tensor<2x4xi64>, tensor<16x4xf32>, tensor<16x4xf32>) -> tensor<2x4x32xf32>",
        &[("y", "2x4x32xf32")],
    );
    check(&g);
    // A position outside the cache is refused when it is known.
    let g = graph(
        &[("x", "2x4x32xf32"), caches[0], caches[1]],
        &[("p", "[[0, 1, 2, 3], [7, 3, 9, 16]]", "2x4xi64")],
        "%y = tsr.ms.rotary_embedding %x, %p, %cos, %sin {num_heads = 2} : (tensor<2x4x32xf32>, tensor<2x4xi64>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<2x4x32xf32>",
        &[("y", "2x4x32xf32")],
    );
    refuses(&g, "outside the cache");
}

/// ms.attention on x [2, 4, 16] with 2 heads, an optional mask constant and
/// extra operands / attributes.
fn ms_attention(
    mask: Option<(&str, &str)>,
    extra: &str,
    attrs: &str,
    outs: &[(&str, &str)],
) -> Graph {
    let consts: Vec<(&str, &str, &str)> = mask.iter().map(|(lit, t)| ("m", *lit, *t)).collect();
    let (m, mt) = match mask {
        Some((_, t)) => ("%m".to_string(), format!(", tensor<{t}>")),
        None => ("_".to_string(), String::new()),
    };
    let mut ins = vec![("x", "2x4x16xf32"), ("w", "16x48xf32"), ("b", "48xf32")];
    let (past, pt) = if extra.contains("past") {
        ins.push(("past", "2x2x2x3x8xf32"));
        ("%past", ", tensor<2x2x2x3x8xf32>")
    } else {
        ("_", "")
    };
    let result_tys: Vec<String> = outs.iter().map(|(_, t)| format!("tensor<{t}>")).collect();
    let names: Vec<String> = outs.iter().map(|(n, _)| format!("%{n}")).collect();
    let op = format!(
        "{} = tsr.ms.attention %x, %w, %b, {m}, {past} {{num_heads = 2{attrs}}} : (tensor<2x4x16xf32>, tensor<16x48xf32>, tensor<48xf32>{mt}{pt}) -> ({})",
        names.join(", "),
        result_tys.join(", ")
    );
    graph(&ins, &consts, &op, outs)
}

#[test]
fn ms_attention_masks() {
    let y = [("y", "2x4x16xf32")];
    check(&ms_attention(None, "", "", &y));
    check(&ms_attention(
        Some(("[[1, 1, 0, 1], [1, 0, 0, 0]]", "2x4xi32")),
        "",
        "",
        &y,
    ));
    check(&ms_attention(
        Some(("[[[1, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], [[1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 0, 1], [1, 0, 1, 0]]]", "2x4x4xi32")),
        "",
        ", mask_filter_value = -1e9",
        &y,
    ));
    check(&ms_attention(
        Some(("[3, 1]", "2xi32")),
        "",
        ", unidirectional = 1",
        &y,
    ));
    check(&ms_attention(
        Some(("[3, 4, 1, 0]", "4xi32")),
        "",
        ", scale = 0.3",
        &y,
    ));
    let present = [("y", "2x4x16xf32"), ("present", "2x2x2x7x8xf32")];
    check(&ms_attention(
        Some(("[6, 7]", "2xi32")),
        "past",
        ", unidirectional = 1",
        &present,
    ));
    check(&ms_attention(None, "past", "", &present));
    let g = ms_attention(Some(("[[1, 1, 0], [1, 0, 0]]", "2x3xi32")), "", "", &y);
    refuses(&g, "mask_index of shape [2, 3] is not supported");
}

#[test]
fn ms_attention_qkv_sizes_and_bias() {
    let g = graph(
        &[("x", "2x4x16xf32"), ("w", "16x40xf32"), ("b", "40xf32"), ("ab", "1x2x4x4xf32")],
        &[],
        "%y = tsr.ms.attention %x, %w, %b, _, _, %ab {num_heads = 2, qkv_hidden_sizes = [16, 16, 8], scale = 0.3} : (tensor<2x4x16xf32>, tensor<16x40xf32>, tensor<40xf32>, tensor<1x2x4x4xf32>) -> tensor<2x4x8xf32>",
        &[("y", "2x4x8xf32")],
    );
    check(&g);
}

/// GroupQueryAttention with 4 query and 2 KV heads of size 16; `past`
/// rows of cache; seqlens_k and total_sequence_length as constants.
fn gqa(
    b: usize,
    s: usize,
    past: usize,
    (seqlens, total): (&str, usize),
    extra_ins: &[(&str, &str)],
    tail: &str,
    attrs: &str,
) -> Graph {
    let q = format!("{b}x{s}x64xf32");
    let kv = format!("{b}x{s}x32xf32");
    let pk = format!("{b}x2x{past}x16xf32");
    let present = format!("{b}x2x{}x16xf32", past.max(total));
    let mut ins: Vec<(&str, &str)> = vec![("q", &q), ("k", &kv), ("v", &kv)];
    let (pops, ptys) = if past > 0 {
        ins.push(("pk", &pk));
        ins.push(("pv", &pk));
        (
            "%pk, %pv".to_string(),
            format!(", tensor<{pk}>, tensor<{pk}>"),
        )
    } else {
        ("_, _".to_string(), String::new())
    };
    ins.extend_from_slice(extra_ins);
    let tot = total.to_string();
    let seq_ty = format!("{b}xi32");
    let consts = [
        ("sl", seqlens, seq_ty.as_str()),
        ("tot", tot.as_str(), "i32"),
    ];
    let (tail_ops, tail_tys) = tail.split_once('|').unwrap_or(("", ""));
    let op = format!(
        "%y, %pko, %pvo = tsr.ms.group_query_attention %q, %k, %v, {pops}, %sl, %tot{tail_ops} {{kv_num_heads = 2, num_heads = 4{attrs}}} : (tensor<{q}>, tensor<{kv}>, tensor<{kv}>{ptys}, tensor<{b}xi32>, tensor<i32>{tail_tys}) -> (tensor<{q}>, tensor<{present}>, tensor<{present}>)"
    );
    graph(
        &ins,
        &consts,
        &op,
        &[("y", &q), ("pko", &present), ("pvo", &present)],
    )
}

#[test]
fn gqa_prompts_and_decodes() {
    check(&gqa(1, 5, 0, ("[4]", 5), &[], "", ""));
    check(&gqa(1, 3, 4, ("[6]", 7), &[], "", ""));
    check(&gqa(2, 1, 6, ("[6, 6]", 7), &[], "", ""));
    check(&gqa(
        1,
        6,
        0,
        ("[5]", 6),
        &[],
        "",
        ", local_window_size = 2",
    ));
    check(&gqa(
        2,
        1,
        4,
        ("[4, 4]", 5),
        &[],
        "",
        ", scale = 0.5, softcap = 2.0",
    ));
    // A padded first prompt without the causal mask sees only its valid keys.
    check(&gqa(2, 4, 0, ("[3, 1]", 4), &[], "", ", causal = 0"));
}

#[test]
fn gqa_rotary_bias_and_sinks() {
    let cs = [("cos", "32x8xf32"), ("sin", "32x8xf32")];
    check(&gqa(
        1,
        4,
        3,
        ("[6]", 7),
        &cs,
        ", %cos, %sin|, tensor<32x8xf32>, tensor<32x8xf32>",
        ", do_rotary = 1",
    ));
    check(&gqa(
        2,
        3,
        0,
        ("[2, 1]", 3),
        &cs,
        ", %cos, %sin|, tensor<32x8xf32>, tensor<32x8xf32>",
        ", do_rotary = 1, rotary_interleaved = 1",
    ));
    let ab = [("ab", "1x4x3x5xf32")];
    check(&gqa(
        1,
        3,
        2,
        ("[4]", 5),
        &ab,
        ", _, _, _, %ab|, tensor<1x4x3x5xf32>",
        ", softcap = 1.5",
    ));
    let narrow = [("ab", "1x1x3x4xf32")];
    check(&gqa(
        1,
        3,
        2,
        ("[4]", 5),
        &narrow,
        ", _, _, _, %ab|, tensor<1x1x3x4xf32>",
        "",
    ));
    let sink = [("sink", "4xf32")];
    check(&gqa(
        1,
        2,
        3,
        ("[4]", 5),
        &sink,
        ", _, _, _, _, %sink|, tensor<4xf32>",
        "",
    ));
    check(&gqa(1, 2, 3, ("[4]", 5), &[], "", ", smooth_softmax = 1"));
    check(&gqa(
        1,
        4,
        0,
        ("[3]", 4),
        &sink,
        ", _, _, _, _, %sink|, tensor<4xf32>",
        ", local_window_size = 2",
    ));
}

#[test]
fn gqa_refuses_what_core_attention_cannot_express() {
    // Batch entries continuing different past lengths share one buffer.
    refuses(&gqa(2, 1, 6, ("[6, 4]", 7), &[], "", ""), "past ++ new");
    // Lengths only known at run time.
    let g = graph(
        &[("q", "1x5x64xf32"), ("k", "1x5x32xf32"), ("v", "1x5x32xf32"), ("sl", "1xi32"), ("tot", "i32")],
        &[],
        "%y = tsr.ms.group_query_attention %q, %k, %v, _, _, %sl, %tot {kv_num_heads = 2, num_heads = 4} : (tensor<1x5x64xf32>, tensor<1x5x32xf32>, tensor<1x5x32xf32>, tensor<1xi32>, tensor<i32>) -> tensor<1x5x64xf32>",
        &[("y", "1x5x64xf32")],
    );
    refuses(&g, "must be known when compiling");
}

#[test]
fn qlinear_elementwise_and_softmax() {
    for t in ["u8", "i8"] {
        for op in ["qlinear_add", "qlinear_mul"] {
            let a = format!("2x3x4x{t}");
            let z = t.to_string();
            let g = graph(
                &[("a", &a), ("sa", "f32"), ("b", &format!("4x{t}")), ("sb", "f32"), ("sc", "f32")],
                &[("za", "[2]", &z), ("zb", "[1]", &z), ("zc", "[3]", &z)],
                &format!("%c = tsr.ms.{op} %a, %sa, %za, %b, %sb, %zb, %sc, %zc : (tensor<{a}>, tensor<f32>, tensor<{t}>, tensor<4x{t}>, tensor<f32>, tensor<{t}>, tensor<f32>, tensor<{t}>) -> tensor<{a}>"),
                &[("c", &a)],
            );
            check(&g);
        }
        for (opset, axis) in [(13, -1), (1, 1)] {
            let x = format!("2x3x5x{t}");
            let z = t.to_string();
            let g = graph(
                &[("x", &x), ("sx", "f32")],
                &[("zx", "[1]", &z), ("sy", "[0.00390625]", "f32"), ("zy", "[0]", &z)],
                &format!("%y = tsr.ms.qlinear_softmax %x, %sx, %zx, %sy, %zy {{axis = {axis}, opset = {opset}}} : (tensor<{x}>, tensor<f32>, tensor<{t}>, tensor<f32>, tensor<{t}>) -> tensor<{x}>"),
                &[("y", &x)],
            );
            check(&g);
        }
    }
}

#[test]
fn integer_matmuls_with_float_results() {
    let g = graph(
        &[("a", "2x3x16xf32"), ("b", "16x8xi8"), ("bs", "8xf32"), ("bias", "8xf32")],
        &[],
        "%y = tsr.ms.dynamic_quantize_matmul %a, %b, %bs, _, %bias : (tensor<2x3x16xf32>, tensor<16x8xi8>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x3x8xf32>",
        &[("y", "2x3x8xf32")],
    );
    check(&g);
    let g = graph(
        &[("a", "3x16xf32"), ("b", "16x8xu8"), ("bs", "f32")],
        &[("bz", "[2]", "u8")],
        "%y = tsr.ms.dynamic_quantize_matmul %a, %b, %bs, %bz : (tensor<3x16xf32>, tensor<16x8xu8>, tensor<f32>, tensor<u8>) -> tensor<3x8xf32>",
        &[("y", "3x8xf32")],
    );
    check(&g);
    let g = graph(
        &[("a", "2x3x16xu8"), ("b", "16x8xi8"), ("as", "f32"), ("bs", "8xf32"), ("bias", "8xf32")],
        &[("az", "[3]", "u8")],
        "%y = tsr.ms.matmul_integer_to_float %a, %b, %as, %bs, %az, _, %bias : (tensor<2x3x16xu8>, tensor<16x8xi8>, tensor<f32>, tensor<8xf32>, tensor<u8>, tensor<8xf32>) -> tensor<2x3x8xf32>",
        &[("y", "2x3x8xf32")],
    );
    check(&g);
}

#[test]
fn ms_quantize_and_dequantize() {
    let g = graph(
        &[("x", "2x3x4xf32")],
        &[("s", "[0.1, 0.02, 0.5]", "3xf32"), ("z", "[0, -3, 7]", "3xi8")],
        "%y = tsr.ms.quantize_linear %x, %s, %z {axis = 1} : (tensor<2x3x4xf32>, tensor<3xf32>, tensor<3xi8>) -> tensor<2x3x4xi8>",
        &[("y", "2x3x4xi8")],
    );
    check(&g);
    let g = graph(
        &[("x", "2x3x4xu8"), ("s", "f32")],
        &[("z", "[3]", "u8")],
        "%y = tsr.ms.dequantize_linear %x, %s, %z : (tensor<2x3x4xu8>, tensor<f32>, tensor<u8>) -> tensor<2x3x4xf32>",
        &[("y", "2x3x4xf32")],
    );
    check(&g);
}

#[test]
fn partial_mode_legalizes_symbolic_shapes_and_keeps_runtime_lengths() {
    let t = "tensor<[batch]x[seq]x8xf32>";
    let text = format!(
        "tsr.graph @g(%x: {t}, %s: {t}, %gamma: tensor<8xf32>, %bias: tensor<8xf32>, %q: tensor<1x5x64xf32>, %k: tensor<1x5x32xf32>, %sl: tensor<1xi32>, %tot: tensor<i32>) -> (\"y\": {t}, \"o\": tensor<1x5x64xf32>) {{\n\
         \x20 %y = tsr.ms.skip_layer_normalization %x, %s, %gamma, _, %bias : ({t}, {t}, tensor<8xf32>, tensor<8xf32>) -> {t}\n\
         \x20 %o = tsr.ms.group_query_attention %q, %k, %k, _, _, %sl, %tot {{kv_num_heads = 2, num_heads = 4}} : (tensor<1x5x64xf32>, tensor<1x5x32xf32>, tensor<1x5x32xf32>, tensor<1xi32>, tensor<i32>) -> tensor<1x5x64xf32>\n\
         \x20 tsr.return %y, %o\n}}\n"
    );
    let g = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut l = g.clone();
    let stats = LegalizeContrib { partial: true }.run(&mut l).unwrap();
    verify(&l).unwrap();
    assert_eq!(stats.changes, 1);
    let left: Vec<&str> = l
        .ops
        .iter()
        .map(|o| o.kind.mnemonic())
        .filter(|m| m.starts_with("ms."))
        .collect();
    assert_eq!(left, ["ms.group_query_attention"]);
    // The symbolic graph computes what the contrib op did, for any batch and seq.
    let dims = HashMap::from([("batch".to_string(), 3), ("seq".to_string(), 2)]);
    let mut ins = tessera_reference::diff::random_inputs(&g, 9, &dims).unwrap();
    ins[6] = Tensor::from_i64(tessera_ir::DType::I32, vec![1], &[4]);
    ins[7] = Tensor::from_i64(tessera_ir::DType::I32, vec![], &[5]);
    let want = tessera_reference::run(&g, &ins).unwrap();
    let got = tessera_reference::run(&l, &ins).unwrap();
    agree(&want[0], &got[0], "skip layer norm");
    agree(&want[1], &got[1], "kept attention");
    // Strict mode names what it cannot do.
    refuses(&g, "must be known when compiling");
}
