//! Import of hand-built ONNX graphs: naming, constants, error reporting.

use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{self, Value as TypeValue};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use tessera_frontend::{import_bytes, tensor_to_proto, ImportError};
use tessera_ir::{Attr, DType, Dim, OpKind, Tensor};

/// A tensor value info; dims are numbers or dim_param names ("" = unnamed dynamic).
fn vi(name: &str, elem: i32, dims: &[&str]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = Dimension::new();
        dim.value = match d.parse::<i64>() {
            Ok(n) => Some(dimension::Value::DimValue(n)),
            Err(_) if d.is_empty() => None,
            Err(_) => Some(dimension::Value::DimParam(d.to_string())),
        };
        shape.dim.push(dim);
    }
    let mut t = type_proto::Tensor::new();
    t.elem_type = elem;
    t.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(TypeValue::TensorType(t));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(tp).into();
    v
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = name.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n
}

fn with_domain(mut n: NodeProto, domain: &str) -> NodeProto {
    n.domain = domain.into();
    n
}

fn tensor_attr(name: &str, t: &Tensor) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::TENSOR.into();
    a.t = Some(tensor_to_proto("", t).unwrap()).into();
    a
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

struct ModelSpec {
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<(String, Tensor)>,
    opset: i64,
}

fn build(spec: ModelSpec) -> Vec<u8> {
    let mut g = GraphProto::new();
    g.name = "test_graph".into();
    g.node = spec.nodes;
    g.input = spec.inputs;
    g.output = spec.outputs;
    g.initializer = spec
        .inits
        .iter()
        .map(|(n, t)| tensor_to_proto(n, t).unwrap())
        .collect();
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.graph = Some(g).into();
    for (dom, v) in [("", spec.opset), ("com.microsoft", 1)] {
        let mut o = OperatorSetIdProto::new();
        o.domain = dom.into();
        o.version = v;
        m.opset_import.push(o);
    }
    m.write_to_bytes().unwrap()
}

const F32: i32 = 1;

#[test]
fn names_dims_constants_and_identity() {
    let w = Tensor::f32(vec![4, 3], (0..12).map(|i| i as f32).collect());
    let mut shape_node = node("Constant", "", &[], &["shape"]);
    shape_node
        .attribute
        .push(tensor_attr("value", &Tensor::i64(vec![2], vec![0, -1])));
    let bytes = build(ModelSpec {
        nodes: vec![
            // Deliberately out of order: the importer sorts.
            node("Reshape", "flat", &["mm", "shape"], &["y"]),
            node("Identity", "id", &["x"], &["x2"]),
            node("MatMul", "mm", &["x2", "w"], &["mm"]),
            shape_node,
        ],
        // `w` is also listed as an input, as old exporters did.
        inputs: vec![vi("x", F32, &["batch", "", "4"]), vi("w", F32, &["4", "3"])],
        outputs: vec![vi("y", F32, &["batch", ""])],
        inits: vec![("w".into(), w.clone())],
        opset: 13,
    });
    let g = import_bytes(&bytes, None).unwrap();
    assert_eq!(g.name, "test_graph");
    assert_eq!(g.opsets.get(""), Some(&13));
    assert_eq!(g.inputs.len(), 1, "initializers are not inputs");
    let x = g.ty(g.inputs[0]);
    assert_eq!(
        x.shape,
        vec![Dim::sym("batch"), Dim::sym("unk0"), Dim::fixed(4)]
    );
    assert_eq!(g.values[g.inputs[0].0 as usize].name.as_deref(), Some("x"));
    assert_eq!(g.outputs[0].0, "y");
    let kinds: Vec<OpKind> = g.ops.iter().map(|o| o.kind).collect();
    assert!(!kinds.contains(&OpKind::Identity));
    assert_eq!(kinds.iter().filter(|k| **k == OpKind::Constant).count(), 2);
    let w_const = g.constants.iter().find(|c| c.name == "w").unwrap();
    assert_eq!(*w_const.value, w);
    let mm = g.ops.iter().find(|o| o.kind == OpKind::MatMul).unwrap();
    assert_eq!(mm.loc.as_ref().unwrap().name, "mm");
    assert_eq!(
        mm.operands[0],
        Some(g.inputs[0]),
        "Identity's user reads its input"
    );
    // Reshape to [0, -1] keeps batch and merges the rest symbolically.
    let y = g.ty(g.outputs[0].1);
    assert_eq!(
        y.shape,
        vec![Dim::sym("batch"), Dim::sym("unk0").mul(&Dim::fixed(3))]
    );
    let reshape = g.ops.iter().find(|o| o.kind == OpKind::Reshape).unwrap();
    assert_eq!(reshape.loc.as_ref().unwrap().op_type, "Reshape");
}

#[test]
fn every_unsupported_node_is_listed_once() {
    let bytes = build(ModelSpec {
        nodes: vec![
            node("FancyOp", "fancy1", &["x"], &["a"]),
            // Consumes the unsupported op's output: skipped, not reported.
            node("Relu", "relu", &["a"], &["b"]),
            with_domain(node("FusedThing", "", &["b"], &["c"]), "com.example"),
            node("Add", "add", &["c", "x"], &["y"]),
        ],
        inputs: vec![vi("x", F32, &["2"])],
        outputs: vec![vi("y", F32, &["2"])],
        inits: vec![],
        opset: 20,
    });
    let err = import_bytes(&bytes, None).unwrap_err();
    let nodes = err.unsupported_nodes();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].name, "fancy1");
    assert_eq!((nodes[0].domain.as_str(), nodes[0].opset), ("ai.onnx", 20));
    assert_eq!(
        nodes[1].name, "FusedThing_2",
        "unnamed nodes get <op_type>_<index>"
    );
    assert_eq!(nodes[1].opset, 1);
    assert_eq!(
        err.unsupported_op_types(),
        vec!["FancyOp".to_string(), "com.example::FusedThing".to_string()]
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("unsupported ONNX operations (2): 'fancy1' (FancyOp, ai.onnx opset 20), 'FusedThing_2' (FusedThing, com.example opset 1)"),
        "{msg}"
    );
}

#[test]
fn failing_inference_names_the_node() {
    let bytes = build(ModelSpec {
        nodes: vec![node("MatMul", "bad_mm", &["x", "z"], &["y"])],
        inputs: vec![vi("x", F32, &["2", "3"]), vi("z", F32, &["4", "5"])],
        outputs: vec![vi("y", F32, &["2", "5"])],
        inits: vec![],
        opset: 17,
    });
    let err = import_bytes(&bytes, None).unwrap_err();
    assert!(matches!(err, ImportError::Nodes(_)));
    let msg = err.to_string();
    assert!(msg.contains("'bad_mm' (MatMul, ai.onnx opset 17)"), "{msg}");
    assert!(msg.contains("3 vs 4"), "{msg}");
}

#[test]
fn unknown_attribute_is_an_error() {
    let mut n = node("Relu", "r", &["x"], &["y"]);
    n.attribute.push(ints_attr("mystery", &[1]));
    let bytes = build(ModelSpec {
        nodes: vec![n],
        inputs: vec![vi("x", F32, &["2"])],
        outputs: vec![vi("y", F32, &["2"])],
        inits: vec![],
        opset: 17,
    });
    let msg = import_bytes(&bytes, None).unwrap_err().to_string();
    assert!(
        msg.contains("does not support attribute(s) 'mystery'"),
        "{msg}"
    );
}

#[test]
fn constant_operands_fold() {
    let a = Tensor::f32(vec![2], vec![1.0, 2.0]);
    let b = Tensor::f32(vec![2], vec![10.0, 20.0]);
    let bytes = build(ModelSpec {
        nodes: vec![
            node("Add", "sum", &["a", "b"], &["s"]),
            node("Mul", "scale", &["x", "s"], &["y"]),
        ],
        inputs: vec![vi("x", F32, &["2"])],
        outputs: vec![vi("y", F32, &["2"])],
        inits: vec![("a".into(), a), ("b".into(), b)],
        opset: 17,
    });
    let g = import_bytes(&bytes, None).unwrap();
    assert!(
        g.ops.iter().all(|o| o.kind != OpKind::Add),
        "Add of constants is folded"
    );
    assert_eq!(
        g.constants.len(),
        1,
        "unused inputs of the folded op are dropped"
    );
    assert_eq!(g.constants[0].name, "s");
    assert_eq!(
        *g.constants[0].value,
        Tensor::f32(vec![2], vec![11.0, 22.0])
    );
    assert!(matches!(g.ops[0].attrs.get("value"), Some(Attr::Const(_))));
}

#[test]
fn graph_output_type_is_checked() {
    let bytes = build(ModelSpec {
        nodes: vec![node("Relu", "r", &["x"], &["y"])],
        inputs: vec![vi("x", F32, &["2"])],
        outputs: vec![vi("y", 7, &["2"])],
        inits: vec![],
        opset: 17,
    });
    let msg = import_bytes(&bytes, None).unwrap_err().to_string();
    assert!(msg.contains("graph output 'y': declared i64"), "{msg}");
}

#[test]
fn undefined_names_and_missing_shapes_are_invalid() {
    let bytes = build(ModelSpec {
        nodes: vec![node("Relu", "r", &["nope"], &["y"])],
        inputs: vec![vi("x", F32, &["2"])],
        outputs: vec![vi("y", F32, &["2"])],
        inits: vec![],
        opset: 17,
    });
    let msg = import_bytes(&bytes, None).unwrap_err().to_string();
    assert!(msg.contains("reads 'nope', which nothing defines"), "{msg}");

    let mut x = vi("x", F32, &[]);
    if let Some(TypeValue::TensorType(t)) = &mut x.type_.as_mut().unwrap().value {
        t.shape = None.into();
    }
    let bytes = build(ModelSpec {
        nodes: vec![node("Relu", "r", &["x"], &["y"])],
        inputs: vec![x],
        outputs: vec![vi("y", F32, &["2"])],
        inits: vec![],
        opset: 17,
    });
    let msg = import_bytes(&bytes, None).unwrap_err().to_string();
    assert!(msg.contains("graph input 'x': it has no shape"), "{msg}");
    let _ = DType::F32;
}
