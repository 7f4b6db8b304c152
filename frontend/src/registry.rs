//! Which Tessera op an ONNX node becomes, and the opset adapters that rewrite
//! older node forms into the newest signature (the one every [`OpKind`]
//! follows).
//!
//! Names: the mnemonic is the ONNX op type in snake_case (`LayerNormalization`
//! → `layer_normalization`, `GatherND` → `gather_nd`), with `MatMul`,
//! `QLinear` and `NBits` read as one word (`matmul`, `qlinear_matmul`,
//! `matmul_nbits`), `ms.` in front for the `com.microsoft` domain and `ml.`
//! for `ai.onnx.ml`.
//! [`EXCEPTIONS`] lists the ops that do not follow the rule.

use crate::proto::{dtype_from_onnx, dtype_from_onnx_name};
use std::collections::HashMap;
use std::sync::OnceLock;
use tessera_ir::ops::OpKind;
use tessera_ir::{Attr, AttrKind, Attrs, DType, Tensor, TensorType, ValueId};

/// ONNX ops whose Tessera name does not follow the default rule:
/// (domain, op type, mnemonic). The domain is "" for the default domain.
pub const EXCEPTIONS: &[(&str, &str, &str)] = &[
    // Deprecated ops with a newer equivalent of the same signature (after
    // the adapters below).
    ("", "Upsample", "resize"),
    ("", "Scatter", "scatter_elements"),
    // onnxruntime registers these contrib ops in the default domain too.
    (
        "",
        "SimplifiedLayerNormalization",
        "ms.simplified_layer_normalization",
    ),
    (
        "",
        "SkipSimplifiedLayerNormalization",
        "ms.skip_simplified_layer_normalization",
    ),
    // Acronyms the snake_case rule would split.
    ("", "IsNaN", "is_nan"),
    ("", "IsInf", "is_inf"),
    ("", "PRelu", "prelu"),
];

/// Words the snake_case rule keeps whole.
const WORDS: &[(&str, &str)] = &[
    ("MatMul", "Matmul"),
    ("QLinear", "Qlinear"),
    ("NBits", "Nbits"),
];

/// `LayerNormalization` → `layer_normalization`, `GatherND` → `gather_nd`,
/// `MatMulNBits` → `matmul_nbits`, `Col2Im` → `col2im`.
pub fn snake_case(op_type: &str) -> String {
    let mut s = op_type.to_string();
    for (from, to) in WORDS {
        s = s.replace(from, to);
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            // A new word starts after a lowercase letter, or where an
            // acronym ends (the `L` of `RMSLayer`).
            if prev.is_ascii_lowercase() || (prev.is_ascii_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The default domain's spellings.
pub fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// The mnemonic the default rule gives, or None for domains Tessera has no ops for.
pub fn default_mnemonic(domain: &str, op_type: &str) -> Option<String> {
    let dom = if is_default_domain(domain) {
        ""
    } else {
        domain
    };
    if let Some((_, _, m)) = EXCEPTIONS
        .iter()
        .find(|(d, t, _)| *d == dom && *t == op_type)
    {
        return Some(m.to_string());
    }
    match dom {
        "" => Some(snake_case(op_type)),
        "com.microsoft" => Some(format!("ms.{}", snake_case(op_type))),
        "ai.onnx.ml" => Some(format!("ml.{}", snake_case(op_type))),
        _ => None,
    }
}

/// Mnemonics with the underscores removed, for names the rule splits
/// differently from the op's author (`arg_max` / `argmax`). Only unambiguous
/// ones are kept.
fn loose_names() -> &'static HashMap<String, Option<OpKind>> {
    static MAP: OnceLock<HashMap<String, Option<OpKind>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut m: HashMap<String, Option<OpKind>> = HashMap::new();
        for k in OpKind::ALL {
            let key = k.mnemonic().replace('_', "");
            m.entry(key).and_modify(|e| *e = None).or_insert(Some(*k));
        }
        m
    })
}

/// The Tessera op for an ONNX (domain, op type), if there is one.
pub fn lookup(domain: &str, op_type: &str) -> Option<OpKind> {
    let m = default_mnemonic(domain, op_type)?;
    if let Some(k) = OpKind::from_mnemonic(&m) {
        return Some(k);
    }
    loose_names().get(&m.replace('_', "")).copied().flatten()
}

/// An input of a node under adaptation.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Value(ValueId),
    /// An omitted optional input.
    Absent,
    /// A constant an adapter made from an attribute; the importer adds it to the graph.
    Const(Tensor),
}

/// An ONNX node on its way to becoming a Tessera op.
pub struct Node {
    pub op_type: String,
    pub opset: i64,
    pub attrs: Attrs,
    pub inputs: Vec<Input>,
    /// Types of the inputs that are graph values (None for absent/new ones).
    pub input_types: Vec<Option<TensorType>>,
    pub num_outputs: usize,
}

impl Node {
    fn input_dtype(&self, i: usize) -> Result<DType, String> {
        self.input_types
            .get(i)
            .and_then(|t| t.as_ref())
            .map(|t| t.dtype())
            .ok_or_else(|| format!("input #{i} is missing"))
    }

    fn has_input(&self, i: usize) -> bool {
        !matches!(self.inputs.get(i), None | Some(Input::Absent))
    }

    fn set_input(&mut self, i: usize, t: Tensor) -> Result<(), String> {
        if self.has_input(i) {
            return Err(format!(
                "input #{i} is given both as an input and as an attribute"
            ));
        }
        if self.inputs.len() <= i {
            self.inputs.resize(i + 1, Input::Absent);
        }
        self.inputs[i] = Input::Const(t);
        Ok(())
    }

    /// Moves an integer-list attribute to input `i` as a 1-D i64 tensor.
    fn ints_to_input(&mut self, name: &str, i: usize) -> Result<(), String> {
        match self.attrs.remove(name) {
            None => Ok(()),
            Some(Attr::Ints(v)) => self.set_input(i, Tensor::i64(vec![v.len()], v)),
            Some(Attr::Int(v)) => self.set_input(i, Tensor::i64(vec![1], vec![v])),
            Some(a) => Err(format!(
                "attribute '{name}' must be a list of integers, got {:?}",
                a.kind()
            )),
        }
    }

    /// Moves a float attribute to input `i` as a scalar of `dtype`.
    fn float_to_input(&mut self, name: &str, i: usize, dtype: DType) -> Result<(), String> {
        match self.attrs.remove(name) {
            None => Ok(()),
            Some(Attr::Float(v)) => self.set_input(i, Tensor::from_f64(dtype, vec![], &[v])),
            Some(Attr::Int(v)) => self.set_input(i, Tensor::from_f64(dtype, vec![], &[v as f64])),
            Some(a) => Err(format!(
                "attribute '{name}' must be a float, got {:?}",
                a.kind()
            )),
        }
    }

    fn drop_attr(&mut self, name: &str) {
        self.attrs.remove(name);
    }

    /// Moves input `from` to position `to`, leaving `from` absent.
    fn shift_input(&mut self, from: usize, to: usize) {
        if let Some(v) = self.inputs.get(from).cloned() {
            self.inputs[from] = Input::Absent;
            if self.inputs.len() <= to {
                self.inputs.resize(to + 1, Input::Absent);
            }
            self.inputs[to] = v;
        }
    }
}

/// Reductions whose `axes` became an input in opset 18 (ReduceSum: 13).
const REDUCE_OPS_18: &[&str] = &[
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

/// Binary ops that had the pre-opset-7 `broadcast`/`axis` attributes.
const LEGACY_BROADCAST_OPS: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less", "Gemm",
    "PRelu",
];

/// Rewrites an older ONNX form of a node into the newest signature.
pub fn adapt(node: &mut Node) -> Result<(), String> {
    let v = node.opset;
    // Obsolete memory-planning hint of opsets 1-5.
    node.drop_attr("consumed_inputs");
    if v < 7 && LEGACY_BROADCAST_OPS.contains(&node.op_type.as_str()) {
        node.drop_attr("broadcast");
        if node.op_type != "Gemm" && node.attrs.remove("axis").is_some() {
            return Err("the pre-opset-7 'axis' broadcast form is not supported".into());
        }
    }
    match node.op_type.as_str() {
        "Split" if v < 13 => node.ints_to_input("split", 1)?,
        "Squeeze" | "Unsqueeze" if v < 13 => node.ints_to_input("axes", 1)?,
        "ReduceSum" if v < 13 => node.ints_to_input("axes", 1)?,
        op if v < 18 && REDUCE_OPS_18.contains(&op) => node.ints_to_input("axes", 1)?,
        "Clip" if v < 11 => {
            let dt = node.input_dtype(0)?;
            node.float_to_input("min", 1, dt)?;
            node.float_to_input("max", 2, dt)?;
        }
        "Pad" if v < 11 => {
            let dt = node.input_dtype(0)?;
            if let Some(p) = node.attrs.remove("paddings") {
                node.attrs.insert("pads".into(), p);
            }
            node.ints_to_input("pads", 1)?;
            node.float_to_input("value", 2, dt)?;
        }
        "Slice" if v < 10 => {
            node.ints_to_input("starts", 1)?;
            node.ints_to_input("ends", 2)?;
            node.ints_to_input("axes", 3)?;
        }
        "TopK" if v < 10 => node.ints_to_input("k", 1)?,
        "DFT" if v < 20 => {
            // The axis became an input in opset 20, and its default changed
            // from 1 to -2: the old default must be made explicit.
            let axis = match node.attrs.remove("axis") {
                None => 1,
                Some(Attr::Int(a)) => a,
                Some(a) => {
                    return Err(format!(
                        "attribute 'axis' must be an integer, got {:?}",
                        a.kind()
                    ))
                }
            };
            node.set_input(2, Tensor::scalar_i64(axis))?;
        }
        "Reshape" if v < 5 => node.ints_to_input("shape", 1)?,
        "Dropout" if v < 12 => {
            node.drop_attr("is_test");
            node.float_to_input("ratio", 1, DType::F32)?;
        }
        "BatchNormalization" => {
            node.drop_attr("is_test");
            if let Some(Attr::Int(s)) = node.attrs.remove("spatial") {
                if s == 0 {
                    return Err("BatchNormalization with spatial=0 is not supported".into());
                }
            }
        }
        "Upsample" => upsample_to_resize(node)?,
        // RoiAlign-10 had no coordinate mode and behaved as `output_half_pixel`;
        // opset 16 added the attribute with the `half_pixel` default.
        "RoiAlign" if v < 16 => {
            node.attrs
                .entry("coordinate_transformation_mode".into())
                .or_insert_with(|| Attr::Str("output_half_pixel".into()));
        }
        "Resize" if v < 11 => {
            // Resize-10 is Upsample-9: (X, scales), asymmetric coordinates.
            node.shift_input(1, 2);
            legacy_resize_modes(node);
        }
        "Softmax" | "LogSoftmax" | "Hardmax" if v < 13 => {
            // Before opset 13 the input was coerced to 2-D at `axis`; that equals
            // the new per-axis form only when the axis is the last one.
            let axis = match node.attrs.get("axis") {
                Some(Attr::Int(a)) => *a,
                _ => 1,
            };
            let rank = node
                .input_types
                .first()
                .and_then(|t| t.as_ref())
                .map(|t| t.rank() as i64);
            match rank {
                Some(r) if axis == r - 1 || axis == -1 => {
                    node.attrs.insert("axis".into(), Attr::Int(-1));
                }
                _ => {
                    return Err(format!(
                    "{} before opset 13 flattens at axis {axis}; only the last axis is supported",
                    node.op_type
                ))
                }
            }
        }
        "Cast" if v < 6 => {
            if let Some(Attr::Str(s)) = node.attrs.get("to") {
                let d = dtype_from_onnx_name(s)?;
                node.attrs.insert("to".into(), Attr::Type(d));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Upsample (opsets 7-9) is Resize with `scales` and asymmetric coordinates.
fn upsample_to_resize(node: &mut Node) -> Result<(), String> {
    if node.opset < 9 {
        match node.attrs.remove("scales") {
            Some(Attr::Floats(s)) => {
                let t = Tensor::f32(vec![s.len()], s.iter().map(|&x| x as f32).collect());
                node.set_input(2, t)?;
            }
            Some(a) => {
                return Err(format!(
                    "attribute 'scales' must be a list of floats, got {:?}",
                    a.kind()
                ))
            }
            None => return Err("Upsample needs 'scales'".into()),
        }
    } else {
        node.shift_input(1, 2);
    }
    if let Some(Attr::Str(m)) = node.attrs.get("mode") {
        if m == "bilinear" {
            node.attrs.insert("mode".into(), Attr::Str("linear".into()));
        }
    }
    legacy_resize_modes(node);
    Ok(())
}

fn legacy_resize_modes(node: &mut Node) {
    node.attrs.insert(
        "coordinate_transformation_mode".into(),
        Attr::Str("asymmetric".into()),
    );
    let nearest = match node.attrs.get("mode") {
        None => true,
        Some(m) => *m == Attr::Str("nearest".into()),
    };
    if nearest {
        node.attrs
            .insert("nearest_mode".into(), Attr::Str("floor".into()));
    }
}

/// Post-adapter attribute fixes driven by the op definition: integer type
/// codes become [`Attr::Type`]; `Split`-like ops without explicit sizes get
/// their output count.
pub fn normalize_attrs(kind: OpKind, node: &mut Node) -> Result<(), String> {
    let def = kind.def();
    for spec in def.attrs {
        if spec.kind != AttrKind::Type {
            continue;
        }
        if let Some(Attr::Int(code)) = node.attrs.get(spec.name) {
            let d = dtype_from_onnx(*code as i32)
                .map_err(|e| format!("attribute '{}': {e}", spec.name))?;
            node.attrs.insert(spec.name.into(), Attr::Type(d));
        }
    }
    if node.op_type == "Split" && def.attr_spec("num_outputs").is_some() && !node.has_input(1) {
        node.attrs
            .entry("num_outputs".into())
            .or_insert(Attr::Int(node.num_outputs as i64));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_follows_the_convention() {
        for (onnx, want) in [
            ("MatMul", "matmul"),
            ("LayerNormalization", "layer_normalization"),
            ("GatherND", "gather_nd"),
            ("ReduceSumSquare", "reduce_sum_square"),
            ("QLinearMatMul", "qlinear_matmul"),
            ("MatMulNBits", "matmul_nbits"),
            ("MatMulInteger", "matmul_integer"),
            ("RMSNormalization", "rms_normalization"),
            ("LSTM", "lstm"),
            ("Col2Im", "col2im"),
            ("DequantizeLinear", "dequantize_linear"),
            ("TopK", "top_k"),
        ] {
            assert_eq!(snake_case(onnx), want, "{onnx}");
        }
        assert_eq!(
            default_mnemonic("com.microsoft", "MatMulNBits").as_deref(),
            Some("ms.matmul_nbits")
        );
        assert_eq!(
            default_mnemonic("ai.onnx", "Upsample").as_deref(),
            Some("resize")
        );
        assert_eq!(
            default_mnemonic("ai.onnx.ml", "LabelEncoder").as_deref(),
            Some("ml.label_encoder")
        );
        assert_eq!(default_mnemonic("ai.onnx.preview.training", "Adam"), None);
    }

    #[test]
    fn existing_ops_are_found() {
        assert_eq!(lookup("", "MatMul"), Some(OpKind::MatMul));
        assert_eq!(lookup("ai.onnx", "Add"), Some(OpKind::Add));
        assert_eq!(lookup("", "NoSuchOp"), None);
        assert_eq!(lookup("com.microsoft", "Add"), None);
    }

    fn node(op: &str, opset: i64, attrs: Attrs, inputs: usize) -> Node {
        Node {
            op_type: op.into(),
            opset,
            attrs,
            inputs: (0..inputs)
                .map(|i| Input::Value(ValueId(i as u32)))
                .collect(),
            input_types: (0..inputs)
                .map(|_| Some(TensorType::fixed(&[2, 3], DType::F16)))
                .collect(),
            num_outputs: 1,
        }
    }

    #[test]
    fn old_roi_align_keeps_its_coordinate_mode() {
        let mut n = node("RoiAlign", 10, Attrs::new(), 3);
        adapt(&mut n).unwrap();
        assert_eq!(
            n.attrs.get("coordinate_transformation_mode"),
            Some(&Attr::Str("output_half_pixel".into()))
        );
        let mut n = node("RoiAlign", 16, Attrs::new(), 3);
        adapt(&mut n).unwrap();
        assert!(!n.attrs.contains_key("coordinate_transformation_mode"));
    }

    #[test]
    fn attributes_become_inputs() {
        let mut n = node(
            "Unsqueeze",
            11,
            Attrs::from([("axes".into(), Attr::Ints(vec![0, 2]))]),
            1,
        );
        adapt(&mut n).unwrap();
        assert!(n.attrs.is_empty());
        assert_eq!(n.inputs[1], Input::Const(Tensor::i64(vec![2], vec![0, 2])));

        let mut n = node(
            "Clip",
            6,
            Attrs::from([("max".into(), Attr::Float(6.0))]),
            1,
        );
        adapt(&mut n).unwrap();
        assert_eq!(n.inputs[1], Input::Absent);
        assert_eq!(
            n.inputs[2],
            Input::Const(Tensor::from_f64(DType::F16, vec![], &[6.0]))
        );

        let mut n = node(
            "Slice",
            9,
            Attrs::from([
                ("starts".into(), Attr::Ints(vec![1])),
                ("ends".into(), Attr::Ints(vec![3])),
            ]),
            1,
        );
        adapt(&mut n).unwrap();
        assert_eq!(n.inputs.len(), 3);
        assert_eq!(n.inputs[2], Input::Const(Tensor::i64(vec![1], vec![3])));

        // Newer opsets are left alone.
        let mut n = node(
            "ReduceMean",
            18,
            Attrs::from([("keepdims".into(), Attr::Int(0))]),
            2,
        );
        adapt(&mut n).unwrap();
        assert_eq!(n.inputs.len(), 2);
        // An attribute and an input for the same thing is an error.
        let mut n = node(
            "Squeeze",
            11,
            Attrs::from([("axes".into(), Attr::Ints(vec![0]))]),
            2,
        );
        assert!(adapt(&mut n).is_err());
    }

    #[test]
    fn old_dft_axis_default_is_explicit() {
        let mut n = node("DFT", 17, Attrs::new(), 1);
        adapt(&mut n).unwrap();
        assert_eq!(n.inputs[2], Input::Const(Tensor::scalar_i64(1)));
        let mut n = node("DFT", 19, Attrs::from([("axis".into(), Attr::Int(2))]), 2);
        adapt(&mut n).unwrap();
        assert_eq!(n.inputs[1], Input::Value(ValueId(1)));
        assert_eq!(n.inputs[2], Input::Const(Tensor::scalar_i64(2)));
        let mut n = node("DFT", 20, Attrs::new(), 1);
        adapt(&mut n).unwrap();
        assert_eq!(n.inputs.len(), 1);
    }

    #[test]
    fn upsample_becomes_resize() {
        let mut n = node(
            "Upsample",
            7,
            Attrs::from([
                ("scales".into(), Attr::Floats(vec![1.0, 2.0])),
                ("mode".into(), Attr::Str("nearest".into())),
            ]),
            1,
        );
        adapt(&mut n).unwrap();
        assert_eq!(n.inputs[1], Input::Absent);
        assert_eq!(
            n.inputs[2],
            Input::Const(Tensor::f32(vec![2], vec![1.0, 2.0]))
        );
        assert_eq!(
            n.attrs.get("nearest_mode"),
            Some(&Attr::Str("floor".into()))
        );
        assert_eq!(
            n.attrs.get("coordinate_transformation_mode"),
            Some(&Attr::Str("asymmetric".into()))
        );
        let mut n = node("Upsample", 9, Attrs::new(), 2);
        adapt(&mut n).unwrap();
        assert_eq!(
            n.inputs,
            vec![
                Input::Value(ValueId(0)),
                Input::Absent,
                Input::Value(ValueId(1))
            ]
        );
    }

    #[test]
    fn old_softmax_only_on_the_last_axis() {
        let mut n = node("Softmax", 11, Attrs::new(), 1);
        assert!(adapt(&mut n).is_ok()); // default axis 1 is the last of rank 2
        let mut n = node(
            "Softmax",
            11,
            Attrs::from([("axis".into(), Attr::Int(0))]),
            1,
        );
        assert!(adapt(&mut n).unwrap_err().contains("flattens"));
    }
}
