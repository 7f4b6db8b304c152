//! ONNX graph → Tessera [`Graph`].
//!
//! Inputs keep their names and symbolic dims; initializers and `Constant`
//! nodes become graph constants (stored once, by name); `Identity` nodes
//! disappear; every other node becomes the Tessera op [`registry::lookup`]
//! names, after the opset adapters, with its types from the op's `infer`.
//! Nodes whose operands are all constant are folded ([`crate::fold`]).
//!
//! The import goes on past unsupported or failing nodes so that one error
//! lists all of them.

use crate::error::{ImportError, NodeError, NodeInfo};
use crate::fold::{panic_message, try_fold, MAX_FOLDED_ELEMENTS, MAX_FOLD_COMPUTE};
use crate::proto::{self, dtype_from_onnx, tensor_from_proto};
use crate::registry::{self, Input, Node};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_shape_proto::dimension::Value as DimValue;
use onnx_protobuf::type_proto::Value as TypeValue;
use onnx_protobuf::{
    AttributeProto, GraphProto, ModelProto, NodeProto, SparseTensorProto, TypeProto, ValueInfoProto,
};
use protobuf::Enum;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use tessera_ir::builder::infer_op;
use tessera_ir::dim::parse_poly;
use tessera_ir::ops::{Arity, OpKind, Results};
use tessera_ir::tensor::SharedTensor;
use tessera_ir::{Attr, Attrs, DType, Dim, Graph, Loc, Tensor, TensorType, ValueId};

/// Imports an ONNX model file. External data is read relative to its directory.
pub fn import_model(path: impl AsRef<Path>) -> Result<Graph, ImportError> {
    let path = path.as_ref();
    let bytes = proto::read_file(path)?;
    let dir = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    import_bytes(&bytes, dir).map_err(|e| match e {
        ImportError::Parse(m) => ImportError::Parse(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// Imports a serialized ONNX model. `base_dir` is where its external data
/// files are; without one, a model with external data fails to import.
pub fn import_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Graph, ImportError> {
    let model = proto::parse_model(bytes)?;
    import_proto(&model, base_dir)
}

/// Imports a parsed ONNX model.
pub fn import_proto(model: &ModelProto, base_dir: Option<&Path>) -> Result<Graph, ImportError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Invalid("the model has no graph".into()))?;
    let mut opsets = BTreeMap::new();
    for o in &model.opset_import {
        let dom = if registry::is_default_domain(&o.domain) {
            ""
        } else {
            o.domain.as_str()
        };
        opsets.insert(dom.to_string(), o.version);
    }
    // Models of other domains only (ai.onnx.ml...) may leave the default opset out.
    let uses_default = graph
        .node
        .iter()
        .any(|n| registry::is_default_domain(&n.domain));
    if uses_default && !opsets.contains_key("") {
        return Err(ImportError::Invalid(
            "the model uses ONNX ops but imports no version of the default opset".into(),
        ));
    }
    Importer::new(graph, opsets, base_dir).run()
}

/// What an ONNX name stands for during import.
#[derive(Clone)]
enum Slot {
    Value(ValueId),
    /// An initializer not used yet; it becomes a constant op at its first use.
    Init(SharedTensor),
    /// The output of a node that could not be imported: consumers are
    /// skipped without further errors.
    Poisoned,
}

struct Importer<'a> {
    onnx: &'a GraphProto,
    base_dir: Option<&'a Path>,
    g: Graph,
    env: HashMap<String, Slot>,
    consts: HashMap<ValueId, SharedTensor>,
    const_names: HashSet<String>,
    /// ONNX names read as integer operands past the first (shapes, axes,
    /// sizes): folded values feeding them are kept whatever their size.
    shape_feeds: HashSet<String>,
    dim_names: HashSet<String>,
    fresh_dims: usize,
    unsupported: Vec<NodeInfo>,
    failed: Vec<NodeError>,
}

impl<'a> Importer<'a> {
    fn new(
        onnx: &'a GraphProto,
        opsets: BTreeMap<String, i64>,
        base_dir: Option<&'a Path>,
    ) -> Importer<'a> {
        let mut g = Graph::new(&onnx.name);
        g.opsets = opsets;
        let shape_feeds = onnx
            .node
            .iter()
            .flat_map(|n| {
                let all = matches!(n.op_type.as_str(), "ConstantOfShape" | "Range");
                n.input.iter().skip(if all { 0 } else { 1 }).cloned()
            })
            .collect();
        Importer {
            onnx,
            base_dir,
            g,
            env: HashMap::new(),
            consts: HashMap::new(),
            const_names: HashSet::new(),
            shape_feeds,
            dim_names: HashSet::new(),
            fresh_dims: 0,
            unsupported: Vec::new(),
            failed: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Graph, ImportError> {
        self.collect_dim_names();
        for init in &self.onnx.initializer {
            let t = tensor_from_proto(init, self.base_dir)
                .map_err(|e| ImportError::Invalid(format!("initializer '{}': {e}", init.name)))?;
            self.env.insert(init.name.clone(), Slot::Init(Arc::new(t)));
        }
        for sparse in &self.onnx.sparse_initializer {
            let name = sparse.values.name.clone();
            let t = sparse_to_dense(sparse, self.base_dir)
                .map_err(|e| ImportError::Invalid(format!("sparse initializer '{name}': {e}")))?;
            self.env.insert(name, Slot::Init(Arc::new(t)));
        }
        for vi in &self.onnx.input {
            // Old exporters list initializers as inputs too; they are constants.
            if self.env.contains_key(&vi.name) {
                continue;
            }
            let ty = self
                .value_type(vi)
                .map_err(|e| ImportError::Invalid(format!("graph input '{}': {e}", vi.name)))?;
            let v = self.g.add_input(&vi.name, ty);
            self.env.insert(vi.name.clone(), Slot::Value(v));
        }
        for (idx, node) in topological_order(self.onnx)? {
            self.import_node(idx, node)?;
        }
        if !self.unsupported.is_empty() {
            return Err(ImportError::Unsupported {
                nodes: self.unsupported,
                failed: self.failed,
            });
        }
        if !self.failed.is_empty() {
            return Err(ImportError::Nodes(self.failed));
        }
        for vi in &self.onnx.output {
            let v = match self.use_name(&vi.name) {
                Some(Slot::Value(v)) => v,
                _ => {
                    return Err(ImportError::Invalid(format!(
                        "graph output '{}' is never computed",
                        vi.name
                    )))
                }
            };
            self.check_output(vi, v)?;
            self.g.add_output(&vi.name, v);
        }
        self.g.remove_dead();
        // Shape arithmetic over symbolic dims (Shape -> Gather -> Concat ->
        // Reshape) becomes constants, 0/-1 reshape targets or one tsr.dims op.
        let mut g = self.g;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
            tessera_ir::symbolic::simplify_shapes(&mut g)
        })) {
            return Err(ImportError::Invalid(format!(
                "internal error while simplifying shapes: {}",
                panic_message(&*p)
            )));
        }
        match catch_unwind(AssertUnwindSafe(|| tessera_ir::verify(&g))) {
            Ok(Ok(())) => Ok(g),
            Ok(Err(d)) => Err(ImportError::Verify(d)),
            Err(p) => Err(ImportError::Invalid(format!(
                "internal error while verifying: {}",
                panic_message(&*p)
            ))),
        }
    }

    /// Names already used as dim symbols, so generated ones do not collide.
    fn collect_dim_names(&mut self) {
        let all = self
            .onnx
            .input
            .iter()
            .chain(&self.onnx.output)
            .chain(&self.onnx.value_info);
        for vi in all {
            if let Some(TypeValue::TensorType(t)) = &vi.type_.value {
                for d in &t.shape.dim {
                    if let Some(DimValue::DimParam(p)) = &d.value {
                        self.dim_names.insert(p.clone());
                    }
                }
            }
        }
    }

    fn fresh_dim(&mut self) -> Dim {
        loop {
            let name = format!("unk{}", self.fresh_dims);
            self.fresh_dims += 1;
            if self.dim_names.insert(name.clone()) {
                return Dim::sym(&name);
            }
        }
    }

    /// The Tessera type of a graph input: tensors with a rank only.
    fn value_type(&mut self, vi: &ValueInfoProto) -> Result<TensorType, String> {
        let (elem, shape) = tensor_type_parts(vi.type_.as_ref())?;
        let shape = shape.ok_or("it has no shape (unranked tensors are not supported)")?;
        let dtype = dtype_from_onnx(elem)?;
        let mut dims = Vec::with_capacity(shape.dim.len());
        for d in &shape.dim {
            dims.push(match &d.value {
                Some(DimValue::DimValue(n)) if *n >= 0 => Dim::fixed(*n),
                Some(DimValue::DimParam(p)) if !p.is_empty() => symbolic_dim(p),
                _ => self.fresh_dim(),
            });
        }
        Ok(TensorType::new(dims, dtype))
    }

    /// Resolves a name, turning an initializer into a constant op at first use.
    fn use_name(&mut self, name: &str) -> Option<Slot> {
        match self.env.get(name)?.clone() {
            Slot::Init(t) => {
                let v = self.push_constant(name, t);
                self.env.insert(name.to_string(), Slot::Value(v));
                Some(Slot::Value(v))
            }
            s => Some(s),
        }
    }

    fn push_constant(&mut self, name: &str, t: SharedTensor) -> ValueId {
        let mut unique = name.to_string();
        let mut k = 1;
        while !self.const_names.insert(unique.clone()) {
            unique = format!("{name}_{k}");
            k += 1;
        }
        let v = self.g.push_constant(&unique, t.clone(), None);
        self.consts.insert(v, t);
        v
    }

    fn node_info(&self, idx: usize, node: &NodeProto) -> NodeInfo {
        let default = registry::is_default_domain(&node.domain);
        let key = if default { "" } else { node.domain.as_str() };
        NodeInfo {
            name: if node.name.is_empty() {
                format!("{}_{idx}", node.op_type)
            } else {
                node.name.clone()
            },
            op_type: node.op_type.clone(),
            domain: if default {
                "ai.onnx".into()
            } else {
                node.domain.clone()
            },
            opset: self.g.opsets.get(key).copied().unwrap_or(1),
        }
    }

    fn poison(&mut self, node: &NodeProto) {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            self.env.insert(o.clone(), Slot::Poisoned);
        }
    }

    fn fail(&mut self, info: NodeInfo, node: &NodeProto, message: String) {
        self.failed.push(NodeError {
            node: info,
            message,
        });
        self.poison(node);
    }

    /// Imports one node. Problems with the node itself are collected; only a
    /// malformed graph (an undefined name) stops the import.
    fn import_node(&mut self, idx: usize, node: &NodeProto) -> Result<(), ImportError> {
        let info = self.node_info(idx, node);
        let mut inputs = Vec::with_capacity(node.input.len());
        let mut poisoned = false;
        for name in &node.input {
            if name.is_empty() {
                inputs.push(Input::Absent);
                continue;
            }
            match self.use_name(name) {
                Some(Slot::Value(v)) => inputs.push(Input::Value(v)),
                Some(_) => {
                    poisoned = true;
                    inputs.push(Input::Absent);
                }
                None => {
                    return Err(ImportError::Invalid(format!(
                        "node {info} reads '{name}', which nothing defines"
                    )))
                }
            }
        }
        let default_domain = info.domain == "ai.onnx";
        if default_domain && node.op_type == "Constant" {
            return self.import_constant(info, node);
        }
        if default_domain && node.op_type == "Identity" && !poisoned {
            if let (Some(Input::Value(v)), Some(out)) = (inputs.first(), node.output.first()) {
                self.env.insert(out.clone(), Slot::Value(*v));
                return Ok(());
            }
        }
        let Some(kind) = registry::lookup(&node.domain, &node.op_type) else {
            self.unsupported.push(info);
            self.poison(node);
            return Ok(());
        };
        if poisoned {
            self.poison(node);
            return Ok(());
        }
        match self.build_op(kind, &info, node, inputs) {
            Ok(results) => {
                for (name, v) in node.output.iter().zip(results) {
                    if !name.is_empty() {
                        self.env.insert(name.clone(), Slot::Value(v));
                    }
                }
            }
            Err(m) => self.fail(info, node, m),
        }
        Ok(())
    }

    fn import_constant(&mut self, info: NodeInfo, node: &NodeProto) -> Result<(), ImportError> {
        let [out] = &node.output[..] else {
            self.fail(info, node, "a Constant node has exactly one output".into());
            return Ok(());
        };
        let [a] = &node.attribute[..] else {
            self.fail(
                info,
                node,
                "a Constant node has exactly one value attribute".into(),
            );
            return Ok(());
        };
        match constant_value(a, self.base_dir) {
            Ok(t) => {
                let v = self.push_constant(out, Arc::new(t));
                self.env.insert(out.clone(), Slot::Value(v));
            }
            Err(m) => self.fail(info, node, m),
        }
        Ok(())
    }

    /// Adapts, folds or infers one node; returns its result values.
    fn build_op(
        &mut self,
        kind: OpKind,
        info: &NodeInfo,
        node: &NodeProto,
        inputs: Vec<Input>,
    ) -> Result<Vec<ValueId>, String> {
        let def = kind.def();
        let mut attrs = Attrs::new();
        for a in &node.attribute {
            attrs.insert(a.name.clone(), convert_attr(a, self.base_dir)?);
        }
        let num_outputs = node
            .output
            .iter()
            .rposition(|o| !o.is_empty())
            .map_or(0, |i| i + 1);
        let input_types = inputs
            .iter()
            .map(|i| match i {
                Input::Value(v) => Some(self.g.ty(*v).clone()),
                _ => None,
            })
            .collect();
        let mut n = Node {
            op_type: node.op_type.clone(),
            opset: info.opset,
            attrs,
            inputs,
            input_types,
            num_outputs,
        };
        registry::adapt(&mut n)?;
        registry::normalize_attrs(kind, &mut n)?;
        let unknown: Vec<&String> = n
            .attrs
            .keys()
            .filter(|k| def.attr_spec(k).is_none())
            .collect();
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.iter().map(|k| format!("'{k}'")).collect();
            return Err(format!(
                "tsr.{} does not support attribute(s) {}",
                def.mnemonic,
                names.join(", ")
            ));
        }
        while matches!(n.inputs.last(), Some(Input::Absent)) {
            n.inputs.pop();
        }
        let variadic = def
            .operands
            .last()
            .is_some_and(|o| o.arity == Arity::Variadic);
        if n.inputs.len() > def.operands.len() && !variadic {
            return Err(format!(
                "{} inputs given, tsr.{} takes at most {}",
                n.inputs.len(),
                def.mnemonic,
                def.operands.len()
            ));
        }
        let num_results = match def.results {
            Results::Fixed(k) if num_outputs <= k => k,
            Results::Range(lo, hi) if num_outputs <= hi => num_outputs.max(lo),
            Results::Fixed(k) | Results::Range(_, k) => {
                return Err(format!(
                    "{num_outputs} outputs, tsr.{} has at most {k}",
                    def.mnemonic
                ))
            }
        };
        let mut operands = Vec::with_capacity(n.inputs.len());
        for (i, input) in n.inputs.into_iter().enumerate() {
            operands.push(match input {
                Input::Value(v) => Some(v),
                Input::Absent => None,
                Input::Const(t) => {
                    let name = def.operands.get(i).map_or("input", |s| s.name);
                    Some(self.push_constant(&format!("{}.{name}", info.name), Arc::new(t)))
                }
            });
        }
        let attrs = n.attrs;
        let consts = &self.consts;
        let g = &self.g;
        let inferred = catch_unwind(AssertUnwindSafe(|| {
            infer_op(g, kind, &operands, &attrs, num_results, &|v| {
                consts.get(&v).cloned()
            })
        }));
        let types = match inferred {
            Ok(r) => r?,
            Err(p) => {
                return Err(format!(
                    "internal error in the type inference of tsr.{}: {}",
                    def.mnemonic,
                    panic_message(&*p)
                ))
            }
        };
        // Fold only what inference proves small enough to compute here.
        let total = types.iter().try_fold(0i64, |acc, t| {
            t.num_elements().map(|n| acc.saturating_add(n))
        });
        if total.is_some_and(|n| n <= MAX_FOLD_COMPUTE) {
            if let Some(values) =
                try_fold(&self.g, kind, &operands, &attrs, num_results, &self.consts)
            {
                if self.keep_folded(node, &values) {
                    let names: Vec<String> = (0..values.len())
                        .map(|i| {
                            node.output
                                .get(i)
                                .filter(|o| !o.is_empty())
                                .cloned()
                                .unwrap_or_else(|| format!("{}.{i}", info.name))
                        })
                        .collect();
                    return Ok(values
                        .into_iter()
                        .zip(names)
                        .map(|(t, name)| self.push_constant(&name, Arc::new(t)))
                        .collect());
                }
            }
        }
        let loc = Loc {
            name: info.name.clone(),
            op_type: if info.domain == "ai.onnx" {
                info.op_type.clone()
            } else {
                format!("{}.{}", info.domain, info.op_type)
            },
        };
        Ok(self.g.push_op(kind, operands, types, attrs, Some(loc)))
    }

    /// Small folded values are kept; large ones only when they feed shape operands.
    fn keep_folded(&self, node: &NodeProto, values: &[Tensor]) -> bool {
        values.iter().zip(&node.output).all(|(t, name)| {
            t.len() <= MAX_FOLDED_ELEMENTS || (t.dtype.is_int() && self.shape_feeds.contains(name))
        })
    }

    /// Checks a graph output against its declared type, and names symbolic
    /// dims the inference could not (data-dependent ones) after the declaration.
    fn check_output(&mut self, vi: &ValueInfoProto, v: ValueId) -> Result<(), ImportError> {
        let Ok((elem, Some(shape))) = tensor_type_parts(vi.type_.as_ref()) else {
            return Ok(());
        };
        let bad = |m: String| ImportError::Invalid(format!("graph output '{}': {m}", vi.name));
        let ty = self.g.ty(v).clone();
        if elem != 0 {
            let declared = dtype_from_onnx(elem).map_err(bad)?;
            if declared != ty.dtype() {
                return Err(bad(format!(
                    "declared {declared}, but the graph computes {ty}"
                )));
            }
        }
        if shape.dim.len() != ty.rank() {
            return Err(bad(format!(
                "declared with rank {}, but the graph computes {ty}",
                shape.dim.len()
            )));
        }
        let mut refined = ty.shape.clone();
        for (d, r) in shape.dim.iter().zip(refined.iter_mut()) {
            match &d.value {
                Some(DimValue::DimValue(n)) if *n >= 0 => {
                    if r.as_fixed().is_some_and(|x| x != *n) {
                        return Err(bad(format!(
                            "declared dim {n}, but the graph computes {ty}"
                        )));
                    }
                    if *r == Dim::Unknown {
                        *r = Dim::fixed(*n);
                    }
                }
                Some(DimValue::DimParam(p)) if !p.is_empty() && *r == Dim::Unknown => {
                    *r = symbolic_dim(p)
                }
                _ => {}
            }
        }
        self.g.values[v.0 as usize].ty = ty.with_shape(refined);
        Ok(())
    }
}

/// A `dim_param` as a dim: a polynomial when it reads as one (`batch`,
/// `past+seq`), else a symbol with the characters the IR syntax lacks replaced.
fn symbolic_dim(p: &str) -> Dim {
    if let Ok(poly) = parse_poly(p) {
        return Dim::Known(poly);
    }
    let clean: String = p
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = if clean.starts_with(|c: char| c.is_ascii_digit()) {
        format!("d{clean}")
    } else {
        clean
    };
    Dim::sym(&clean)
}

/// The element type code and shape (None when unranked) of a tensor type.
fn tensor_type_parts(
    tp: Option<&TypeProto>,
) -> Result<(i32, Option<&onnx_protobuf::TensorShapeProto>), String> {
    match tp.and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => Ok((t.elem_type, t.shape.as_ref())),
        Some(TypeValue::SequenceType(_)) => Err("sequences are not supported, only tensors".into()),
        Some(TypeValue::MapType(_)) => Err("maps are not supported, only tensors".into()),
        Some(TypeValue::OptionalType(_)) => {
            Err("optional values are not supported, only tensors".into())
        }
        Some(TypeValue::SparseTensorType(_)) => Err("sparse tensors are not supported".into()),
        Some(_) => Err("unknown value kind".into()),
        None => Err("it has no type".into()),
    }
}

/// Nodes in an order where every value is defined before use: the file's
/// order when it already is one (the common case), else a stable
/// topological sort.
fn topological_order(g: &GraphProto) -> Result<Vec<(usize, &NodeProto)>, ImportError> {
    let mut known: HashSet<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
    known.extend(g.initializer.iter().map(|t| t.name.as_str()));
    known.extend(g.sparse_initializer.iter().map(|t| t.values.name.as_str()));
    let mut defined = known.clone();
    let sorted = g.node.iter().all(|n| {
        let ok = n
            .input
            .iter()
            .all(|i| i.is_empty() || defined.contains(i.as_str()));
        defined.extend(n.output.iter().map(|o| o.as_str()));
        ok
    });
    if sorted {
        return Ok(g.node.iter().enumerate().collect());
    }
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o.as_str(), i);
        }
    }
    // Kahn's algorithm, always taking the earliest ready node.
    let mut pending = vec![0usize; g.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); g.node.len()];
    for (i, n) in g.node.iter().enumerate() {
        for inp in n
            .input
            .iter()
            .filter(|s| !s.is_empty() && !known.contains(s.as_str()))
        {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    pending[i] += 1;
                    users[p].push(i);
                }
                None => {
                    return Err(ImportError::Invalid(format!(
                        "node '{}' ({}) reads '{inp}', which nothing defines",
                        n.name, n.op_type
                    )))
                }
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..g.node.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(g.node.len());
    while let Some(i) = ready.pop_first() {
        order.push((i, &g.node[i]));
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != g.node.len() {
        return Err(ImportError::Invalid("the graph has a cycle".into()));
    }
    Ok(order)
}

/// Converts an ONNX attribute. Subgraphs and type attributes have no Tessera form.
fn convert_attr(a: &AttributeProto, base_dir: Option<&Path>) -> Result<Attr, String> {
    let ty = a.type_.value();
    let strs = |v: &[Vec<u8>]| {
        v.iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let err = |what: &str| {
        Err(format!(
            "attribute '{}': {what} attributes are not supported",
            a.name
        ))
    };
    Ok(match ty {
        t if t == AttributeType::FLOAT.value() => Attr::Float(a.f as f64),
        t if t == AttributeType::INT.value() => Attr::Int(a.i),
        t if t == AttributeType::STRING.value() => {
            Attr::Str(String::from_utf8_lossy(&a.s).into_owned())
        }
        t if t == AttributeType::FLOATS.value() => {
            Attr::Floats(a.floats.iter().map(|&f| f as f64).collect())
        }
        t if t == AttributeType::INTS.value() => Attr::Ints(a.ints.clone()),
        t if t == AttributeType::STRINGS.value() => Attr::Strs(strs(&a.strings)),
        t if t == AttributeType::TENSOR.value() => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| format!("attribute '{}' has no tensor", a.name))?;
            Attr::Tensor(Arc::new(
                tensor_from_proto(t, base_dir)
                    .map_err(|e| format!("attribute '{}': {e}", a.name))?,
            ))
        }
        t if t == AttributeType::SPARSE_TENSOR.value() => {
            let s = a
                .sparse_tensor
                .as_ref()
                .ok_or_else(|| format!("attribute '{}' has no tensor", a.name))?;
            Attr::Tensor(Arc::new(
                sparse_to_dense(s, base_dir).map_err(|e| format!("attribute '{}': {e}", a.name))?,
            ))
        }
        t if t == AttributeType::GRAPH.value() || t == AttributeType::GRAPHS.value() => {
            return err("subgraph")
        }
        t if t == AttributeType::TENSORS.value() || t == AttributeType::SPARSE_TENSORS.value() => {
            return err("tensor list")
        }
        t if t == AttributeType::TYPE_PROTO.value() || t == AttributeType::TYPE_PROTOS.value() => {
            return err("type")
        }
        // Very old files leave the type out; the field that is set tells it.
        0 if !a.floats.is_empty() => Attr::Floats(a.floats.iter().map(|&f| f as f64).collect()),
        0 if !a.ints.is_empty() => Attr::Ints(a.ints.clone()),
        0 if !a.strings.is_empty() => Attr::Strs(strs(&a.strings)),
        0 if !a.s.is_empty() => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
        0 if a.f != 0.0 => Attr::Float(a.f as f64),
        0 => Attr::Int(a.i),
        t => return Err(format!("attribute '{}' has unknown type #{t}", a.name)),
    })
}

/// The value of a `Constant` node from whichever `value*` attribute it has.
fn constant_value(a: &AttributeProto, base_dir: Option<&Path>) -> Result<Tensor, String> {
    let attr = convert_attr(a, base_dir)?;
    let strs = |v: Vec<String>| Tensor::new(DType::Str, vec![v.len()], tessera_ir::Data::Str(v));
    match (a.name.as_str(), attr) {
        ("value" | "sparse_value", Attr::Tensor(t)) => Ok((*t).clone()),
        ("value_float", Attr::Float(f)) => Ok(Tensor::f32(vec![], vec![f as f32])),
        ("value_floats", Attr::Floats(v)) => Ok(Tensor::f32(
            vec![v.len()],
            v.iter().map(|&f| f as f32).collect(),
        )),
        ("value_floats", Attr::Ints(v)) if v.is_empty() => Ok(Tensor::f32(vec![0], vec![])),
        ("value_int", Attr::Int(i)) => Ok(Tensor::scalar_i64(i)),
        ("value_ints", Attr::Ints(v)) => Ok(Tensor::i64(vec![v.len()], v)),
        ("value_string", Attr::Str(s)) => {
            Tensor::new(DType::Str, vec![], tessera_ir::Data::Str(vec![s]))
        }
        ("value_strings", Attr::Strs(v)) => strs(v),
        (name, a) => Err(format!(
            "unsupported Constant attribute '{name}' of kind {:?}",
            a.kind()
        )),
    }
}

/// Sparse tensors are made dense; the size comes from the file's dims, so it
/// is bounded (a damaged file must not exhaust memory).
const MAX_SPARSE_DENSE: usize = 1 << 26;

/// A sparse tensor (values + linear or coordinate indices) made dense.
fn sparse_to_dense(s: &SparseTensorProto, base_dir: Option<&Path>) -> Result<Tensor, String> {
    let values = tensor_from_proto(s.values.as_ref().ok_or("no values")?, base_dir)?;
    let indices = tensor_from_proto(s.indices.as_ref().ok_or("no indices")?, base_dir)?;
    let (shape, n) = proto::element_count(&s.dims)?;
    if n > MAX_SPARSE_DENSE {
        return Err(format!(
            "sparse tensor of shape {shape:?} is too large to make dense"
        ));
    }
    if values.rank() != 1 {
        return Err("sparse values must be 1-D".into());
    }
    let nnz = values.len();
    let idx = indices.to_i64_vec();
    let strides = tessera_ir::tensor::strides_of(&shape);
    let linear: Vec<usize> = match indices.shape[..] {
        [k] if k == nnz => idx
            .iter()
            .map(|&i| usize::try_from(i).ok().filter(|&i| i < n))
            .collect::<Option<_>>(),
        [k, r] if k == nnz && r == shape.len() => idx
            .chunks(r.max(1))
            .map(|c| {
                c.iter()
                    .zip(&shape)
                    .zip(&strides)
                    .try_fold(0usize, |acc, ((&i, &d), &st)| {
                        usize::try_from(i)
                            .ok()
                            .filter(|&i| i < d)
                            .map(|i| acc + i * st)
                    })
            })
            .collect::<Option<_>>(),
        _ => None,
    }
    .ok_or("sparse indices do not match the values and shape")?;
    if values.dtype.is_float() {
        let mut dense = vec![0.0; n];
        for (k, &at) in linear.iter().enumerate() {
            dense[at] = values.get_f64(k);
        }
        Ok(Tensor::from_f64(values.dtype, shape, &dense))
    } else if values.dtype.is_int() || values.dtype == DType::Bool {
        let mut dense = vec![0i64; n];
        for (k, &at) in linear.iter().enumerate() {
            dense[at] = values.get_i64(k);
        }
        Ok(Tensor::from_i64(values.dtype, shape, &dense))
    } else {
        Err(format!(
            "sparse tensors of {} are not supported",
            values.dtype
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim_params_keep_names() {
        assert_eq!(symbolic_dim("batch"), Dim::sym("batch"));
        assert_eq!(
            symbolic_dim("past_seq + seq"),
            Dim::sym("past_seq").add(&Dim::sym("seq"))
        );
        assert_eq!(symbolic_dim("batch size"), Dim::sym("batch_size"));
    }
}
