//! Rotary embedding, constant-index gathers and im2col convolutions on the
//! accelerator: placement (no host op), exactness of the data movement, and
//! agreement with the reference interpreter.

mod support;
use support::{op, values};

use std::sync::Arc;
use tessera_accel::conv::{dma_blocks, Block};
use tessera_accel::program::Program;
use tessera_accel::specialize::Bindings;
use tessera_accel_isa::HwConfig;
use tessera_ir::{Attr, Attrs, Builder, DType, Graph, OpKind, Tensor, TensorType};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    a.to_f32_vec()
        .iter()
        .zip(b.to_f32_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A rotary embedding with runtime per-token caches, 4-D or 3-D input.
fn rotary_graph(x_shape: &[i64], attrs: Attrs, half: i64) -> Graph {
    let (b, s) = if x_shape.len() == 4 {
        (x_shape[0], x_shape[2])
    } else {
        (x_shape[0], x_shape[1])
    };
    let mut g = Graph::new("rotary");
    let x = g.add_input("x", TensorType::fixed(x_shape, DType::F32));
    let c = g.add_input("cos", TensorType::fixed(&[b, s, half], DType::F32));
    let si = g.add_input("sin", TensorType::fixed(&[b, s, half], DType::F32));
    let mut bl = Builder::new(&mut g);
    let y = op(&mut bl, OpKind::RotaryEmbedding, &[x, c, si], attrs, "rope");
    g.add_output("y", y);
    g
}

fn rotary_inputs(x_shape: &[usize], cache: [usize; 3]) -> Vec<Tensor> {
    let n: usize = x_shape.iter().product();
    let m = cache.iter().product();
    let angles = values(m, 5, 3.0);
    vec![
        Tensor::f32(x_shape.to_vec(), values(n, 1, 2.0)),
        Tensor::f32(cache.to_vec(), angles.iter().map(|a| a.cos()).collect()),
        Tensor::f32(cache.to_vec(), angles.iter().map(|a| a.sin()).collect()),
    ]
}

fn check_rotary(g: &Graph, inputs: &[Tensor], cfg: &HwConfig) {
    let p = Program::compile(g, cfg, &Bindings::new()).unwrap();
    assert_eq!(p.host_ops().count(), 0, "{}", p.header());
    let (out, reports) = p.run(inputs).unwrap();
    assert_eq!(reports[0].unconsumed_tokens, 0);
    let want = tessera_reference::run(g, inputs).unwrap();
    // The reference rounds once from f64, the vector unit after each product
    // and the sum: a few ulps of the operands (|x| <= 2, |cos|,|sin| <= 1).
    let d = max_abs_diff(&out[0], &want[0]);
    assert!(d <= 4.0 * 2f32.powi(-22), "max |diff| {d}");
    // Elements past a partial rotary dim are copied exactly; every element
    // must have been written (a missed row would read as 0).
    assert!(out[0].to_f32_vec().iter().all(|v| v.is_finite()));
}

#[test]
fn rotary_4d_half_split_runs_on_the_vector_unit() {
    let mut a = Attrs::new();
    a.insert("num_heads".into(), Attr::Int(3));
    let g = rotary_graph(&[2, 3, 5, 8], a, 4);
    let inputs = rotary_inputs(&[2, 3, 5, 8], [2, 5, 4]);
    for cfg in [HwConfig::edge(), HwConfig::server()] {
        check_rotary(&g, &inputs, &cfg);
    }
}

#[test]
fn rotary_3d_partial_dim_runs_on_the_vector_unit() {
    // [B, S, H*D] with H = 2, D = 12, rotating the first 8 of each head.
    let mut a = Attrs::new();
    a.insert("num_heads".into(), Attr::Int(2));
    a.insert("rotary_embedding_dim".into(), Attr::Int(8));
    let g = rotary_graph(&[2, 7, 24], a, 4);
    let inputs = rotary_inputs(&[2, 7, 24], [2, 7, 4]);
    check_rotary(&g, &inputs, &HwConfig::edge());
    // The unrotated tail of every head is the input, bit for bit.
    let p = Program::compile(&g, &HwConfig::edge(), &Bindings::new()).unwrap();
    let (out, _) = p.run(&inputs).unwrap();
    let (x, y) = (inputs[0].to_f32_vec(), out[0].to_f32_vec());
    for (i, (a, b)) in x.iter().zip(&y).enumerate() {
        if i % 12 >= 8 {
            assert_eq!(a.to_bits(), b.to_bits(), "element {i}");
        }
    }
}

#[test]
fn interleaved_rotary_stays_on_the_host_with_its_reason() {
    let mut a = Attrs::new();
    a.insert("interleaved".into(), Attr::Int(1));
    let g = rotary_graph(&[1, 2, 4, 8], a, 4);
    let p = Program::compile(&g, &HwConfig::edge(), &Bindings::new()).unwrap();
    let header = p.header();
    assert!(
        header.contains("host tsr.rotary_embedding rope"),
        "{header}"
    );
    assert!(header.contains("interleaved"), "{header}");
}

#[test]
fn dma_blocks_of_a_patch_im2col() {
    // One 2x2 patch per channel of a 2-channel 4x4 image, patch (0, 1):
    // rows of 2 contiguous elements, 4 apart, then the next channel.
    let mut src = Vec::new();
    for c in 0..2u64 {
        for ky in 0..2u64 {
            for kx in 0..2u64 {
                src.push(c * 16 + ky * 4 + 2 + kx);
            }
        }
    }
    let b = |src, y, x, stride| Block { src, y, x, stride };
    // Channel 1 starts 14 after channel 0's second row: a new block.
    assert_eq!(dma_blocks(&src), vec![b(2, 2, 2, 4), b(18, 2, 2, 4)]);
    // A transpose: runs of one element at a constant distance.
    assert_eq!(
        dma_blocks(&[0, 3, 6, 1, 4, 7]),
        vec![b(0, 3, 1, 3), b(1, 3, 1, 3)]
    );
    assert_eq!(dma_blocks(&[5, 6, 7, 8]), vec![b(5, 1, 4, 4)]);
}

/// `Conv(x, W, b)` with a constant weight; with `flatten`, followed by the
/// ViT patch-embedding `Reshape [N, OC, P]` → `Transpose [0, 2, 1]`.
fn conv_graph(x: [i64; 4], oc: usize, k: usize, stride: i64, flatten: bool) -> Graph {
    let mut g = Graph::new("conv");
    let xin = g.add_input("x", TensorType::fixed(&x, DType::F32));
    let mut b = Builder::new(&mut g);
    let c = x[1] as usize;
    let w = b.constant(
        "w",
        Arc::new(Tensor::f32(
            vec![oc, c, k, k],
            values(oc * c * k * k, 7, 0.2),
        )),
        None,
    );
    let bias = b.constant(
        "b",
        Arc::new(Tensor::f32(vec![oc], values(oc, 8, 0.5))),
        None,
    );
    let mut a = Attrs::new();
    a.insert("kernel_shape".into(), Attr::Ints(vec![k as i64; 2]));
    a.insert("strides".into(), Attr::Ints(vec![stride; 2]));
    let y = op(&mut b, OpKind::Conv, &[xin, w, bias], a, "patch_conv");
    let y = if flatten {
        let ys = b.graph.ty(y).static_shape().unwrap();
        let shape = b.constant(
            "shape",
            Arc::new(Tensor::i64(vec![3], vec![ys[0], ys[1], ys[2] * ys[3]])),
            None,
        );
        let r = op(
            &mut b,
            OpKind::Reshape,
            &[y, shape],
            Attrs::new(),
            "flatten",
        );
        let mut p = Attrs::new();
        p.insert("perm".into(), Attr::Ints(vec![0, 2, 1]));
        op(&mut b, OpKind::Transpose, &[r], p, "to_tokens")
    } else {
        y
    };
    g.add_output("y", y);
    g
}

fn check_conv(g: &Graph, x: Tensor) {
    for cfg in [HwConfig::edge(), HwConfig::server()] {
        let p = Program::compile(g, &cfg, &Bindings::new()).unwrap();
        assert_eq!(p.host_ops().count(), 0, "{}", p.header());
        assert_eq!(p.quant.quantized.len(), 1, "{}", p.header());
        let inputs = std::slice::from_ref(&x);
        // Gathers move words: bit-exact; the quantized GEMM's integers too.
        let checks = p.differential(inputs).unwrap();
        let gathers: Vec<_> = checks
            .iter()
            .filter(|c| c.mnemonic == "tsr.gather_nd")
            .collect();
        assert!(!gathers.is_empty(), "{checks:?}");
        for c in checks
            .iter()
            .filter(|c| c.dtype != DType::F32 || c.mnemonic == "tsr.gather_nd")
        {
            assert_eq!(c.mismatches, 0, "{c:?}");
        }
        let (out, reports) = p.run(inputs).unwrap();
        assert!(reports.iter().all(|r| r.unconsumed_tokens == 0));
        // Same quantized graph on the interpreter: the rest (dequantize, bias)
        // is f32 on the vector unit with the same roundings.
        let same = tessera_reference::run(&p.graph, inputs).unwrap();
        assert!(
            max_abs_diff(&out[0], &same[0]) <= 1e-5,
            "vs quantized reference"
        );
        // The float conv: int8 quantization error only.
        let float = tessera_reference::run(g, inputs).unwrap();
        let range = float[0]
            .to_f32_vec()
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&out[0], &float[0]);
        assert!(d <= 0.02 * range, "max |diff| {d} vs range {range}");
    }
}

#[test]
fn patch_embedding_conv_is_an_im2col_gemm() {
    let g = conv_graph([2, 3, 16, 16], 24, 4, 4, true);
    check_conv(
        &g,
        Tensor::f32(vec![2, 3, 16, 16], values(2 * 3 * 256, 3, 1.0)),
    );
}

#[test]
fn overlapping_conv_in_nchw_layout_is_an_im2col_gemm() {
    // Stride 1 < kernel 3: overlapping patches; the result is gathered back
    // into [N, OC, OH, OW].
    let g = conv_graph([1, 2, 9, 7], 5, 3, 1, false);
    check_conv(&g, Tensor::f32(vec![1, 2, 9, 7], values(2 * 63, 4, 1.0)));
}
