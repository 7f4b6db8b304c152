//! Print → parse → print is the identity, and the verifier accepts and rejects what it should.

use std::sync::Arc;
use tessera_ir::*;

fn sample() -> Graph {
    let mut g = Graph::new("main");
    g.opsets.insert(String::new(), 17);
    let b = Dim::sym("batch");
    let x = g.add_input(
        "x",
        TensorType::new(vec![b.clone(), Dim::fixed(4)], DType::F32),
    );
    let mut bld = Builder::new(&mut g);
    let w = bld.constant(
        "w",
        Arc::new(Tensor::f32(
            vec![4, 2],
            (0..8).map(|i| i as f32 * 0.1).collect(),
        )),
        None,
    );
    let loc = Some(Loc {
        name: "/l0/MatMul".into(),
        op_type: "MatMul".into(),
    });
    let y = bld
        .op(OpKind::MatMul, vec![Some(x), Some(w)], Attrs::new(), 1, loc)
        .unwrap()[0];
    let r = bld
        .op(OpKind::Relu, vec![Some(y)], Attrs::new(), 1, None)
        .unwrap()[0];
    let shape = bld.constant("shape", Arc::new(Tensor::i64(vec![2], vec![-1, 1])), None);
    let z = bld
        .op(
            OpKind::Reshape,
            vec![Some(r), Some(shape)],
            Attrs::new(),
            1,
            None,
        )
        .unwrap()[0];
    g.add_output("out", z);
    g
}

#[test]
fn print_parse_print_is_identity() {
    let g = sample();
    verify(&g).unwrap();
    let text = print_graph(&g);
    assert!(text.contains("tensor<[batch]x4xf32>"), "{text}");
    assert!(text.contains("tensor<[2*batch]x1xf32>"), "{text}");
    let g2 = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(print_graph(&g2), text);
    assert_eq!(g2, g);
    verify(&g2).unwrap();
}

#[test]
fn verifier_reports_bad_types_with_the_node() {
    let mut g = sample();
    // Corrupt the matmul result type.
    let mm = g.ops.iter().position(|o| o.kind == OpKind::MatMul).unwrap();
    let r = g.ops[mm].results[0];
    g.values[r.0 as usize].ty = TensorType::fixed(&[3, 3], DType::F32);
    let err = verify(&g).unwrap_err().to_string();
    assert!(
        err.contains("node '/l0/MatMul' (MatMul)") && err.contains("tsr.matmul"),
        "{err}"
    );
}

#[test]
fn parse_errors_have_positions() {
    let e = parse_graph(
        "tsr.graph @m() -> () {\n  %0 = tsr.nosuchop : () -> tensor<f32>\n  tsr.return\n}\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("unknown op"), "{e}");
}
