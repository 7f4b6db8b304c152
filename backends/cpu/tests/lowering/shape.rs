//! Data-movement lowerings against the reference interpreter: odd shapes,
//! rank 0 and 1, several dtypes, negative steps and indices, every pad mode.

use crate::common::{check, graph, run_cpu};
use tessera_ir::{DType, Tensor};

/// A one-op graph: inputs `%x...` (given as `name: type`), constant operands
/// (`@name = dense<...> : type`), the op line and its result type.
fn one_op(inputs: &[&str], consts: &[&str], op: &str, out: &str) -> String {
    let mut s = format!("tsr.graph @g({}) -> (\"y\": {out}) {{\n", inputs.join(", "));
    for (i, c) in consts.iter().enumerate() {
        let ty = c.rsplit(" : ").next().expect("typed constant");
        s.push_str(&format!(
            "  %k{i} = tsr.constant {{value = @c{i}}} : () -> {ty}\n"
        ));
    }
    s.push_str(&format!("  %y = {op}\n  tsr.return %y\n}}\n"));
    if !consts.is_empty() {
        s.push_str("tsr.constants {\n");
        for (i, c) in consts.iter().enumerate() {
            s.push_str(&format!("  @c{i} = {c}\n"));
        }
        s.push_str("}\n");
    }
    s
}

fn run1(text: &str, ins: &[Tensor]) -> Tensor {
    run_cpu(&graph(text), ins, 1).remove(0)
}

#[test]
fn transpose_permutations() {
    for d in ["f32", "i64", "f16", "i1", "u8"] {
        check(&one_op(
            &[&format!("%x: tensor<2x3x5x{d}>")],
            &[],
            &format!(
                "tsr.transpose %x {{perm = [2, 0, 1]}} : (tensor<2x3x5x{d}>) -> tensor<5x2x3x{d}>"
            ),
            &format!("tensor<5x2x3x{d}>"),
        ));
    }
    check(&one_op(
        &["%x: tensor<3x7xf32>"],
        &[],
        "tsr.transpose %x : (tensor<3x7xf32>) -> tensor<7x3xf32>",
        "tensor<7x3xf32>",
    ));
    check(&one_op(
        &["%x: tensor<2x3x4x5xf32>"],
        &[],
        "tsr.transpose %x {perm = [0, 2, 1, 3]} : (tensor<2x3x4x5xf32>) -> tensor<2x4x3x5xf32>",
        "tensor<2x4x3x5xf32>",
    ));
    let x = Tensor::from_i64(DType::I32, vec![2, 3], &[1, 2, 3, 4, 5, 6]);
    let y = run1(
        &one_op(
            &["%x: tensor<2x3xi32>"],
            &[],
            "tsr.transpose %x : (tensor<2x3xi32>) -> tensor<3x2xi32>",
            "tensor<3x2xi32>",
        ),
        &[x],
    );
    assert_eq!(y.to_i64_vec(), vec![1, 4, 2, 5, 3, 6]);
}

#[test]
fn concat_along_each_axis() {
    for (axis, out) in [(0, "5x3x4"), (1, "2x7x4"), (-1, "2x3x9")] {
        let (a, b) = match axis {
            0 => ("2x3x4", "3x3x4"),
            1 => ("2x3x4", "2x4x4"),
            _ => ("2x3x4", "2x3x5"),
        };
        check(&one_op(
            &[&format!("%a: tensor<{a}xf32>"), &format!("%b: tensor<{b}xf32>")],
            &[],
            &format!("tsr.concat %a, %b, %a {{axis = {axis}}} : (tensor<{a}xf32>, tensor<{b}xf32>, tensor<{a}xf32>) -> tensor<{}xf32>", bump(out, axis, a)),
            &format!("tensor<{}xf32>", bump(out, axis, a)),
        ));
    }
    check(&one_op(
        &["%a: tensor<3xi64>", "%b: tensor<0xi64>", "%c: tensor<1xi64>"],
        &[],
        "tsr.concat %a, %b, %c {axis = 0} : (tensor<3xi64>, tensor<0xi64>, tensor<1xi64>) -> tensor<4xi64>",
        "tensor<4xi64>",
    ));
    let y = run1(
        &one_op(
            &["%a: tensor<2x1xi32>", "%b: tensor<2x2xi32>"],
            &[],
            "tsr.concat %a, %b {axis = 1} : (tensor<2x1xi32>, tensor<2x2xi32>) -> tensor<2x3xi32>",
            "tensor<2x3xi32>",
        ),
        &[
            Tensor::from_i64(DType::I32, vec![2, 1], &[1, 2]),
            Tensor::from_i64(DType::I32, vec![2, 2], &[3, 4, 5, 6]),
        ],
    );
    assert_eq!(y.to_i64_vec(), vec![1, 3, 4, 2, 5, 6]);
}

/// The concat result shape: `out` with the concat axis grown by a third
/// operand of shape `a` (the tests concatenate a, b, a).
fn bump(out: &str, axis: i64, a: &str) -> String {
    let mut o: Vec<usize> = out.split('x').map(|v| v.parse().unwrap()).collect();
    let a: Vec<usize> = a.split('x').map(|v| v.parse().unwrap()).collect();
    let ax = if axis < 0 { o.len() - 1 } else { axis as usize };
    o[ax] += a[ax];
    o.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

#[test]
fn split_into_pieces() {
    let text = "tsr.graph @g(%x: tensor<3x10xf32>) -> (\"a\": tensor<3x2xf32>, \"b\": tensor<3x5xf32>, \"c\": tensor<3x3xf32>) {\n\
                  %s = tsr.constant {value = @s} : () -> tensor<3xi64>\n\
                  %a, %b, %c = tsr.split %x, %s {axis = 1} : (tensor<3x10xf32>, tensor<3xi64>) -> (tensor<3x2xf32>, tensor<3x5xf32>, tensor<3x3xf32>)\n\
                  tsr.return %a, %b, %c\n}\n\
                tsr.constants {\n  @s = dense<[2, 5, 3]> : tensor<3xi64>\n}\n";
    check(text);
    check("tsr.graph @g(%x: tensor<7x2xi32>) -> (\"a\": tensor<3x2xi32>, \"b\": tensor<3x2xi32>, \"c\": tensor<1x2xi32>) {\n\
             %a, %b, %c = tsr.split %x {axis = 0} : (tensor<7x2xi32>) -> (tensor<3x2xi32>, tensor<3x2xi32>, tensor<1x2xi32>)\n\
             tsr.return %a, %b, %c\n}\n");
    // Runs of whole 16-lane vectors plus a tail (the vector copy), in a
    // half type, and booleans (the per-element copy).
    check("tsr.graph @g(%x: tensor<4x3x100xf16>) -> (\"a\": tensor<4x3x48xf16>, \"b\": tensor<4x3x33xf16>, \"c\": tensor<4x3x19xf16>) {\n\
             %s = tsr.constant {value = @s} : () -> tensor<3xi64>\n\
             %a, %b, %c = tsr.split %x, %s {axis = 2} : (tensor<4x3x100xf16>, tensor<3xi64>) -> (tensor<4x3x48xf16>, tensor<4x3x33xf16>, tensor<4x3x19xf16>)\n\
             tsr.return %a, %b, %c\n}\n\
           tsr.constants {\n  @s = dense<[48, 33, 19]> : tensor<3xi64>\n}\n");
    check("tsr.graph @g(%x: tensor<2x40xi1>, %y: tensor<2x9xi1>) -> (\"a\": tensor<2x49xi1>) {\n\
             %a = tsr.concat %x, %y {axis = 1} : (tensor<2x40xi1>, tensor<2x9xi1>) -> tensor<2x49xi1>\n\
             tsr.return %a\n}\n");
}

fn slice_text(
    shape: &str,
    d: &str,
    starts: &str,
    ends: &str,
    axes: &str,
    steps: &str,
    out: &str,
) -> String {
    let n = starts.split(',').count();
    one_op(
        &[&format!("%x: tensor<{shape}x{d}>")],
        &[
            &format!("dense<[{starts}]> : tensor<{n}xi64>"),
            &format!("dense<[{ends}]> : tensor<{n}xi64>"),
            &format!("dense<[{axes}]> : tensor<{n}xi64>"),
            &format!("dense<[{steps}]> : tensor<{n}xi64>"),
        ],
        &format!(
            "tsr.slice %x, %k0, %k1, %k2, %k3 : (tensor<{shape}x{d}>, tensor<{n}xi64>, tensor<{n}xi64>, tensor<{n}xi64>, tensor<{n}xi64>) -> tensor<{out}x{d}>"
        ),
        &format!("tensor<{out}x{d}>"),
    )
}

#[test]
fn slice_with_negative_steps_and_clamped_bounds() {
    for d in ["f32", "i8", "bf16"] {
        check(&slice_text("6x9", d, "1, 2", "5, 9", "0, 1", "1, 3", "4x3"));
        // Reversed: start clamps to the last index, end -1000 to before 0.
        check(&slice_text(
            "6x9", d, "100, -2", "-1000, 0", "0, 1", "-1, -2", "6x4",
        ));
        check(&slice_text("4x5x7", d, "-3", "1000", "-1", "2", "4x5x2"));
        // A plain prefix on one axis, reversed on another.
        check(&slice_text(
            "6x9", d, "0, 7", "4, 1", "0, 1", "1, -3", "4x2",
        ));
    }
    let x = Tensor::from_i64(DType::I64, vec![7], &[0, 1, 2, 3, 4, 5, 6]);
    let y = run1(&slice_text("7", "i64", "5", "0", "0", "-2", "3"), &[x]);
    assert_eq!(y.to_i64_vec(), vec![5, 3, 1]);
}

#[test]
fn expand_and_tile() {
    for d in ["f32", "i32", "i1"] {
        check(&one_op(
            &[&format!("%x: tensor<3x1x{d}>")],
            &["dense<[2, 1, 4]> : tensor<3xi64>"],
            &format!("tsr.expand %x, %k0 : (tensor<3x1x{d}>, tensor<3xi64>) -> tensor<2x3x4x{d}>"),
            &format!("tensor<2x3x4x{d}>"),
        ));
        check(&one_op(
            &[&format!("%x: tensor<2x3x{d}>")],
            &["dense<[3, 2]> : tensor<2xi64>"],
            &format!("tsr.tile %x, %k0 : (tensor<2x3x{d}>, tensor<2xi64>) -> tensor<6x6x{d}>"),
            &format!("tensor<6x6x{d}>"),
        ));
    }
    check(&one_op(
        &["%x: tensor<f32>"],
        &["dense<[5]> : tensor<1xi64>"],
        "tsr.expand %x, %k0 : (tensor<f32>, tensor<1xi64>) -> tensor<5xf32>",
        "tensor<5xf32>",
    ));
}

#[test]
fn gather_runtime_and_constant_indices() {
    // Runtime indices: random in [0, 4) by the test inputs.
    for (axis, ind, out) in [(0, "2x3", "2x3x5x6"), (1, "4", "4x4x6"), (2, "", "4x5")] {
        check(&one_op(
            &["%x: tensor<4x5x6xf32>", &format!("%i: tensor<{ind}{}i64>", if ind.is_empty() { "" } else { "x" })],
            &[],
            &format!(
                "tsr.gather %x, %i {{axis = {axis}}} : (tensor<4x5x6xf32>, tensor<{ind}{}i64>) -> tensor<{out}xf32>",
                if ind.is_empty() { "" } else { "x" }
            ),
            &format!("tensor<{out}xf32>"),
        ));
    }
    // Negative indices count from the end.
    let text = one_op(
        &["%x: tensor<5x2xi32>", "%i: tensor<4xi32>"],
        &[],
        "tsr.gather %x, %i {axis = 0} : (tensor<5x2xi32>, tensor<4xi32>) -> tensor<4x2xi32>",
        "tensor<4x2xi32>",
    );
    let x = Tensor::from_i64(
        DType::I32,
        vec![5, 2],
        &[0, 1, 10, 11, 20, 21, 30, 31, 40, 41],
    );
    let i = Tensor::from_i64(DType::I32, vec![4], &[-1, 0, -5, 3]);
    let y = run1(&text, &[x.clone(), i.clone()]);
    assert_eq!(y.to_i64_vec(), vec![40, 41, 0, 1, 0, 1, 30, 31]);
    let want = tessera_reference::run(&graph(&text), &[x, i]).unwrap();
    assert_eq!(y.to_i64_vec(), want[0].to_i64_vec());
    // Constant data (an embedding table) with runtime token ids.
    check(&one_op(
        &["%i: tensor<2x3xi64>"],
        &["dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]> : tensor<4x2xf32>"],
        "tsr.gather %k0, %i {axis = 0} : (tensor<4x2xf32>, tensor<2x3xi64>) -> tensor<2x3x2xf32>",
        "tensor<2x3x2xf32>",
    ));
    // Constant indices are checked when compiling.
    check(&one_op(
        &["%x: tensor<4x3xf32>"],
        &["dense<[-1, 2]> : tensor<2xi64>"],
        "tsr.gather %x, %k0 {axis = 1} : (tensor<4x3xf32>, tensor<2xi64>) -> tensor<4x2xf32>",
        "tensor<4x2xf32>",
    ));
}

#[test]
fn gather_elements_along_axes() {
    for axis in [0, 1, -1] {
        check(&one_op(
            &["%x: tensor<4x5xf32>", "%i: tensor<3x5xi64>"],
            &[],
            &format!("tsr.gather_elements %x, %i {{axis = {axis}}} : (tensor<4x5xf32>, tensor<3x5xi64>) -> tensor<3x5xf32>"),
            "tensor<3x5xf32>",
        ));
    }
    let text = one_op(
        &["%x: tensor<2x3xi64>", "%i: tensor<2x2xi64>"],
        &[],
        "tsr.gather_elements %x, %i {axis = 1} : (tensor<2x3xi64>, tensor<2x2xi64>) -> tensor<2x2xi64>",
        "tensor<2x2xi64>",
    );
    let x = Tensor::from_i64(DType::I64, vec![2, 3], &[1, 2, 3, 4, 5, 6]);
    let i = Tensor::from_i64(DType::I64, vec![2, 2], &[-1, 0, 1, -3]);
    assert_eq!(run1(&text, &[x, i]).to_i64_vec(), vec![3, 1, 5, 4]);
}

#[test]
fn pad_every_mode() {
    for mode in ["constant", "reflect", "edge", "wrap"] {
        for d in ["f32", "i32"] {
            check(&one_op(
                &[&format!("%x: tensor<3x4x{d}>")],
                &["dense<[1, 2, 2, 0]> : tensor<4xi64>"],
                &format!("tsr.pad %x, %k0 {{mode = \"{mode}\"}} : (tensor<3x4x{d}>, tensor<4xi64>) -> tensor<6x6x{d}>"),
                &format!("tensor<6x6x{d}>"),
            ));
        }
    }
    // Negative pads crop; a constant fill value; pads on listed axes only.
    check(&one_op(
        &["%x: tensor<3x5xf32>"],
        &[
            "dense<[0, -1, 1, 2]> : tensor<4xi64>",
            "dense<[1.5]> : tensor<f32>",
        ],
        "tsr.pad %x, %k0, %k1 : (tensor<3x5xf32>, tensor<4xi64>, tensor<f32>) -> tensor<4x6xf32>",
        "tensor<4x6xf32>",
    ));
    check(&one_op(
        &["%x: tensor<2x3x4xf32>"],
        &["dense<[1, 3]> : tensor<2xi64>", "dense<[-2]> : tensor<1xi64>"],
        "tsr.pad %x, %k0, _, %k1 {mode = \"reflect\"} : (tensor<2x3x4xf32>, tensor<2xi64>, tensor<1xi64>) -> tensor<2x7x4xf32>",
        "tensor<2x7x4xf32>",
    ));
    let y = run1(
        &one_op(&["%x: tensor<3xi32>"], &["dense<[2, 1]> : tensor<2xi64>"], "tsr.pad %x, %k0 {mode = \"reflect\"} : (tensor<3xi32>, tensor<2xi64>) -> tensor<6xi32>", "tensor<6xi32>"),
        &[Tensor::from_i64(DType::I32, vec![3], &[1, 2, 3])],
    );
    assert_eq!(y.to_i64_vec(), vec![3, 2, 1, 2, 3, 2]);
}

#[test]
fn trilu_upper_and_lower() {
    for upper in [0, 1] {
        check(&one_op(
            &["%x: tensor<2x4x5xf32>"],
            &["dense<[-1]> : tensor<i64>"],
            &format!("tsr.trilu %x, %k0 {{upper = {upper}}} : (tensor<2x4x5xf32>, tensor<i64>) -> tensor<2x4x5xf32>"),
            "tensor<2x4x5xf32>",
        ));
        check(&one_op(
            &["%x: tensor<5x3xi64>"],
            &[],
            &format!("tsr.trilu %x {{upper = {upper}}} : (tensor<5x3xi64>) -> tensor<5x3xi64>"),
            "tensor<5x3xi64>",
        ));
    }
}

#[test]
fn range_shape_and_size() {
    // Range with constant bounds (folded before lowering: no kernel).
    let text = "tsr.graph @g(%x: tensor<5xf32>) -> (\"y\": tensor<5xf32>) {\n\
             %s = tsr.constant {value = @s} : () -> tensor<f32>\n\
             %l = tsr.constant {value = @l} : () -> tensor<f32>\n\
             %d = tsr.constant {value = @d} : () -> tensor<f32>\n\
             %r = tsr.range %s, %l, %d : (tensor<f32>, tensor<f32>, tensor<f32>) -> tensor<5xf32>\n\
             %y = tsr.add %x, %r : (tensor<5xf32>, tensor<5xf32>) -> tensor<5xf32>\n\
             tsr.return %y\n}\n\
           tsr.constants {\n  @s = dense<[0.5]> : tensor<f32>\n  @l = dense<[2.0]> : tensor<f32>\n  @d = dense<[0.3]> : tensor<f32>\n}\n";
    check(text);
    check(&one_op(
        &["%x: tensor<2x3x4xf32>"],
        &[],
        "tsr.shape %x {start = 1} : (tensor<2x3x4xf32>) -> tensor<2xi64>",
        "tensor<2xi64>",
    ));
    check(&one_op(
        &["%x: tensor<2x3x4xf32>"],
        &[],
        "tsr.size %x : (tensor<2x3x4xf32>) -> tensor<i64>",
        "tensor<i64>",
    ));
}

/// A run-time index outside `[-n, n)` fails the run with an error naming
/// the node (the reference rejects it too), never a clamped wrong value;
/// in-range indices (negative ones included) on the same compiled code
/// still run, and the run after a failure is clean.
#[test]
fn out_of_range_runtime_indices_fail_naming_the_node() {
    use tessera_backend::Backend;
    let text = "tsr.graph @g(%x: tensor<5x3xf32>, %i: tensor<4xi64>, %j: tensor<2x3xi64>) -> (\"y\": tensor<4x3xf32>, \"z\": tensor<2x3xf32>) {\n\
                  %y = tsr.gather %x, %i {axis = 0} : (tensor<5x3xf32>, tensor<4xi64>) -> tensor<4x3xf32> loc(\"emb\"(\"Gather\"))\n\
                  %z = tsr.gather_elements %x, %j {axis = 0} : (tensor<5x3xf32>, tensor<2x3xi64>) -> tensor<2x3xf32> loc(\"pick\"(\"GatherElements\"))\n\
                  tsr.return %y, %z\n}\n";
    let g = crate::common::graph(text);
    let x = Tensor::f32(vec![5, 3], (0..15).map(|v| v as f32).collect());
    let j_ok = Tensor::from_i64(DType::I64, vec![2, 3], &[0, 4, -5, 1, 2, 3]);
    let cpu = tessera_cpu::Cpu {
        opts: tessera_cpu::CpuOptions::default(),
    };
    let mut exe = cpu.prepare(&g).expect("prepare");
    let run = |exe: &mut Box<dyn tessera_backend::Executable>, i: &[i64], j: &Tensor| {
        exe.run(&[
            x.clone(),
            Tensor::from_i64(DType::I64, vec![4], i),
            j.clone(),
        ])
    };
    let y = run(&mut exe, &[4, -1, 0, -5], &j_ok).expect("in-range indices run");
    assert_eq!(
        y[0].to_f32_vec(),
        vec![12., 13., 14., 12., 13., 14., 0., 1., 2., 0., 1., 2.]
    );
    for bad in [5, -6, i64::MAX, i64::MIN] {
        let e = run(&mut exe, &[0, bad, 1, 2], &j_ok)
            .expect_err(&format!("index {bad} must fail"))
            .to_string();
        assert!(
            e.contains("node 'emb'") && e.contains("out of range"),
            "{e}"
        );
    }
    let j_bad = Tensor::from_i64(DType::I64, vec![2, 3], &[0, 1, 2, 3, 7, 0]);
    let e = run(&mut exe, &[0, 1, 2, 3], &j_bad)
        .expect_err("gather_elements index 7 must fail")
        .to_string();
    assert!(e.contains("node 'pick'"), "{e}");
    // Both bad: the first op in graph order is reported.
    let e = run(&mut exe, &[9, 1, 2, 3], &j_bad)
        .expect_err("fails")
        .to_string();
    assert!(e.contains("node 'emb'"), "{e}");
    run(&mut exe, &[1, 1, 1, 1], &j_ok).expect("a clean run after failures");
}
