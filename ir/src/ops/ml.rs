//! Ops of the `ai.onnx.ml` domain (mnemonic prefix `ml.`): LabelEncoder,
//! Binarizer, ArrayFeatureExtractor and TreeEnsemble; and the default-domain
//! MelWeightMatrix, a feature-extraction matrix of the same flavour.

use super::elementwise::sigmoid;
use super::shape::{concat_flat, take, take_along};
use super::text::{string_tensor, strings, strs_attr};
use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::dtype::DType;
use crate::tensor::Data;
use std::collections::HashMap;

/// Which one of the attributes `{prefix}floats`, `{prefix}int64s`,
/// `{prefix}strings`, `{prefix}tensor` is set, as a 1-D tensor.
fn one_of_lists(ctx: &dyn AttrAccess, prefix: &str) -> Result<Tensor, String> {
    let name = |s: &str| format!("{prefix}{s}");
    let set: Vec<String> = ["floats", "int64s", "strings", "tensor"]
        .iter()
        .map(|s| name(s))
        .filter(|n| ctx.has_attr(n))
        .collect();
    let [which] = set.as_slice() else {
        return Err(format!(
            "ml.label_encoder needs exactly one of the {prefix}* attributes, got {set:?}"
        ));
    };
    let which = which.trim_start_matches(prefix);
    Ok(match which {
        "floats" => {
            let v = ctx.floats(&name(which))?;
            Tensor::from_f64(DType::F32, vec![v.len()], &v)
        }
        "int64s" => {
            let v = ctx.ints(&name(which))?;
            Tensor::i64(vec![v.len()], v)
        }
        "strings" => {
            let v = strs_attr(ctx, &name(which))?;
            string_tensor(vec![v.len()], v)?
        }
        _ => {
            let t = ctx.tensor_attr(&name(which))?;
            Tensor {
                shape: vec![t.len()],
                ..(*t).clone()
            }
        }
    })
}

// ---------------------------------------------------------------- label_encoder

/// The value for keys not found: `default_tensor` for `values_tensor` (or
/// the spec's per-type default), else the `default_*` of the values' type.
fn label_default(ctx: &dyn AttrAccess, values: &Tensor) -> Result<Tensor, String> {
    if ctx.has_attr("values_tensor") {
        if ctx.has_attr("default_tensor") {
            let d = ctx.tensor_attr("default_tensor")?;
            if d.len() != 1 || d.dtype != values.dtype {
                return Err(format!(
                    "ml.label_encoder default_tensor must be one {} value, got {} of shape {:?}",
                    values.dtype, d.dtype, d.shape
                ));
            }
            return Ok(Tensor {
                shape: vec![1],
                ..(*d).clone()
            });
        }
        return Ok(match values.dtype {
            DType::Str => string_tensor(vec![1], vec!["_Unused".into()])?,
            d if d.is_float() => Tensor::from_f64(d, vec![1], &[-0.0]),
            d => Tensor::from_i64(d, vec![1], &[-1]),
        });
    }
    Ok(match values.dtype {
        DType::Str => string_tensor(vec![1], vec![ctx.string("default_string")?])?,
        DType::I64 => Tensor::i64(vec![1], vec![ctx.int("default_int64")?]),
        _ => Tensor::from_f64(DType::F32, vec![1], &[ctx.float("default_float")?]),
    })
}

/// Keys by value. Floats are keyed by their bits after making every NaN one
/// NaN and -0 equal to +0, so that NaN keys match any NaN input.
enum KeyIndex {
    Str(HashMap<String, usize>),
    Int(HashMap<i64, usize>),
    Float(HashMap<u64, usize>),
}

fn float_key(x: f64) -> u64 {
    if x.is_nan() {
        f64::NAN.to_bits()
    } else if x == 0.0 {
        0
    } else {
        x.to_bits()
    }
}

impl KeyIndex {
    /// Later repeats of a key win, as the spec says.
    fn new(keys: &Tensor) -> Result<KeyIndex, String> {
        Ok(match &keys.data {
            Data::Str(v) => {
                KeyIndex::Str(v.iter().enumerate().map(|(i, k)| (k.clone(), i)).collect())
            }
            _ if keys.dtype.is_int() => KeyIndex::Int(
                keys.to_i64_vec()
                    .into_iter()
                    .enumerate()
                    .map(|(i, k)| (k, i))
                    .collect(),
            ),
            _ if keys.dtype.is_float() => KeyIndex::Float(
                keys.to_f64_vec()
                    .into_iter()
                    .enumerate()
                    .map(|(i, k)| (float_key(k), i))
                    .collect(),
            ),
            _ => return Err(format!("ml.label_encoder cannot use {} keys", keys.dtype)),
        })
    }

    /// For each element of `x`, the index of its key, or `missing`.
    fn lookup(&self, x: &Tensor, missing: usize) -> Result<Vec<usize>, String> {
        let found = |o: Option<&usize>| o.copied().unwrap_or(missing);
        Ok(match self {
            KeyIndex::Str(m) => strings(x, "ml.label_encoder X")?
                .iter()
                .map(|s| found(m.get(s)))
                .collect(),
            KeyIndex::Int(m) => x.to_i64_vec().iter().map(|k| found(m.get(k))).collect(),
            KeyIndex::Float(m) => x
                .to_f64_vec()
                .into_iter()
                .map(|k| found(m.get(&float_key(k))))
                .collect(),
        })
    }
}

fn label_encoder_types(ctx: &dyn AttrAccess, x: DType) -> Result<(Tensor, Tensor), String> {
    let (keys, values) = (one_of_lists(ctx, "keys_")?, one_of_lists(ctx, "values_")?);
    if keys.len() != values.len() {
        return Err(format!(
            "ml.label_encoder has {} keys but {} values",
            keys.len(),
            values.len()
        ));
    }
    if keys.dtype != x {
        return Err(format!(
            "ml.label_encoder keys are {} but the input is {x}",
            keys.dtype
        ));
    }
    Ok((keys, values))
}

pub static LABEL_ENCODER: OpDef = OpDef {
    mnemonic: "ml.label_encoder",
    summary: "Maps each element through a key -> value table, with a default for unknown keys",
    operands: &[req("X")],
    results: Results::Fixed(1),
    attrs: &[
        attr("default_float", AttrKind::Float, Default::Float(-0.0)),
        attr("default_int64", AttrKind::Int, Default::Int(-1)),
        attr("default_string", AttrKind::Str, Default::Str("_Unused")),
        attr("default_tensor", AttrKind::Tensor, Default::Absent),
        attr("keys_floats", AttrKind::Floats, Default::Absent),
        attr("keys_int64s", AttrKind::Ints, Default::Absent),
        attr("keys_strings", AttrKind::Strs, Default::Absent),
        attr("keys_tensor", AttrKind::Tensor, Default::Absent),
        attr("values_floats", AttrKind::Floats, Default::Absent),
        attr("values_int64s", AttrKind::Ints, Default::Absent),
        attr("values_strings", AttrKind::Strs, Default::Absent),
        attr("values_tensor", AttrKind::Tensor, Default::Absent),
    ],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let (_, values) = label_encoder_types(ctx, x.dtype())?;
        label_default(ctx, &values)?;
        Ok(vec![x.with_dtype(values.dtype)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let (keys, values) = label_encoder_types(ctx, x.dtype)?;
        let table = concat_flat(&[&values, &label_default(ctx, &values)?])?;
        let idx = KeyIndex::new(&keys)?.lookup(x, values.len())?;
        Ok(vec![take(&table, &idx, x.shape.clone())?])
    }),
};

// ---------------------------------------------------------------- binarizer

pub static BINARIZER: OpDef = OpDef {
    mnemonic: "ml.binarizer",
    summary: "1 where the element is greater than the threshold, else 0",
    operands: &[req("X")],
    results: Results::Fixed(1),
    attrs: &[attr("threshold", AttrKind::Float, Default::Float(0.0))],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let x = ctx.input(0)?;
        if !(x.dtype().is_float() || x.dtype().is_int()) {
            return Err(format!("ml.binarizer takes a numeric tensor, got {x}"));
        }
        Ok(vec![x.clone()])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        if !(x.dtype.is_float() || x.dtype.is_int()) {
            return Err(format!(
                "ml.binarizer takes a numeric tensor, got {}",
                x.dtype
            ));
        }
        // The threshold is an f32 attribute; f64 holds it and every input
        // exactly enough for `>` (i64 beyond 2^53 aside).
        let t = ctx.float("threshold")?;
        let v: Vec<f64> = x
            .to_f64_vec()
            .into_iter()
            .map(|e| f64::from(u8::from(e > t)))
            .collect();
        Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), &v)])
    }),
};

// ---------------------------------------------------------------- array_feature_extractor

pub static ARRAY_FEATURE_EXTRACTOR: OpDef = OpDef {
    mnemonic: "ml.array_feature_extractor",
    summary: "Picks the given indices of the last axis (a 1-D input gives one row)",
    operands: &[req("X"), req("Y")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let (x, y) = (ctx.input(0)?, ctx.input(1)?);
        if y.dtype() != DType::I64 {
            return Err(format!(
                "ml.array_feature_extractor indices must be i64, got {y}"
            ));
        }
        let k = y.shape.iter().fold(Dim::fixed(1), |acc, d| acc.mul(d));
        let shape = match x.shape.as_slice() {
            [] => return Err("ml.array_feature_extractor needs an input of rank >= 1".into()),
            [_] => vec![Dim::fixed(1), k],
            [outer @ .., _] => outer.iter().cloned().chain([k]).collect(),
        };
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(|ctx| {
        let (x, y) = (ctx.input(0)?, ctx.input(1)?);
        let x = match x.rank() {
            0 => return Err("ml.array_feature_extractor needs an input of rank >= 1".into()),
            1 => Tensor {
                shape: vec![1, x.len()],
                ..x.clone()
            },
            _ => x.clone(),
        };
        let axis = x.rank() - 1;
        let picks = y
            .to_i64_vec()
            .into_iter()
            .map(|i| {
                usize::try_from(i)
                    .map_err(|_| format!("ml.array_feature_extractor index {i} is negative"))
            })
            .collect::<Result<Vec<usize>, String>>()?;
        Ok(vec![take_along(&x, axis, &picks)?])
    }),
};

// ---------------------------------------------------------------- tree_ensemble

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Branch {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Member,
}

impl Branch {
    fn from_code(c: i64) -> Result<Branch, String> {
        Ok(match c {
            0 => Branch::Leq,
            1 => Branch::Lt,
            2 => Branch::Gte,
            3 => Branch::Gt,
            4 => Branch::Eq,
            5 => Branch::Neq,
            6 => Branch::Member,
            _ => {
                return Err(format!(
                    "ml.tree_ensemble node mode {c} is not one of 0..=6"
                ))
            }
        })
    }
}

/// Where a branch goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Next {
    Node(usize),
    Leaf(usize),
}

struct TreeNode {
    mode: Branch,
    split: f64,
    /// The set of a `Member` node.
    members: Vec<f64>,
    feature: usize,
    nan_goes_true: bool,
    on_true: Next,
    on_false: Next,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Aggregate {
    Average,
    Sum,
    Min,
    Max,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

struct Ensemble {
    nodes: Vec<TreeNode>,
    leaf_weights: Vec<f64>,
    leaf_targets: Vec<usize>,
    roots: Vec<usize>,
    n_targets: usize,
    aggregate: Aggregate,
    post: PostTransform,
}

fn index(v: i64, len: usize, what: &str) -> Result<usize, String> {
    usize::try_from(v)
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| format!("ml.tree_ensemble {what} {v} is out of range for {len} entries"))
}

/// The per-node attribute `name`, checked to have one entry per node.
fn per_node(ctx: &dyn AttrAccess, name: &str, n: usize) -> Result<Vec<i64>, String> {
    let v = ctx.ints(name)?;
    if v.len() != n {
        return Err(format!(
            "ml.tree_ensemble {name} has {} entries for {n} nodes",
            v.len()
        ));
    }
    Ok(v)
}

fn n_targets(ctx: &dyn AttrAccess) -> Result<usize, String> {
    if ctx.has_attr("n_targets") {
        let n = ctx.int("n_targets")?;
        return usize::try_from(n)
            .map_err(|_| format!("ml.tree_ensemble n_targets must be >= 0, got {n}"));
    }
    // Absent: enough targets for every leaf.
    let max = ctx.ints("leaf_targetids")?.into_iter().max().unwrap_or(-1);
    Ok(usize::try_from(max + 1).unwrap_or(0))
}

impl Ensemble {
    fn new(ctx: &dyn AttrAccess) -> Result<Ensemble, String> {
        let modes = ctx.tensor_attr("nodes_modes")?.to_i64_vec();
        let n = modes.len();
        let splits = ctx.tensor_attr("nodes_splits")?.to_f64_vec();
        if splits.len() != n {
            return Err(format!(
                "ml.tree_ensemble nodes_splits has {} entries for {n} nodes",
                splits.len()
            ));
        }
        let features = per_node(ctx, "nodes_featureids", n)?;
        let (true_ids, false_ids) = (
            per_node(ctx, "nodes_truenodeids", n)?,
            per_node(ctx, "nodes_falsenodeids", n)?,
        );
        let (true_leafs, false_leafs) = (
            per_node(ctx, "nodes_trueleafs", n)?,
            per_node(ctx, "nodes_falseleafs", n)?,
        );
        let nan_true = if ctx.has_attr("nodes_missing_value_tracks_true") {
            per_node(ctx, "nodes_missing_value_tracks_true", n)?
        } else {
            vec![0; n]
        };
        let leaf_weights = ctx.tensor_attr("leaf_weights")?.to_f64_vec();
        let leaf_targets = ctx.ints("leaf_targetids")?;
        if leaf_targets.len() != leaf_weights.len() {
            return Err(format!(
                "ml.tree_ensemble has {} leaf_targetids for {} leaf_weights",
                leaf_targets.len(),
                leaf_weights.len()
            ));
        }
        let n_targets = n_targets(ctx)?;
        let leaf_targets = leaf_targets
            .into_iter()
            .map(|t| index(t, n_targets, "leaf target id"))
            .collect::<Result<Vec<_>, _>>()?;
        // Member sets follow the order of the Member nodes, each closed by a NaN.
        let membership = if ctx.has_attr("membership_values") {
            ctx.tensor_attr("membership_values")?.to_f64_vec()
        } else {
            Vec::new()
        };
        let mut sets = membership.split(|v| v.is_nan());
        let next = |is_leaf: i64, id: i64| -> Result<Next, String> {
            Ok(if is_leaf != 0 {
                Next::Leaf(index(id, leaf_weights.len(), "leaf id")?)
            } else {
                Next::Node(index(id, n, "node id")?)
            })
        };
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mode = Branch::from_code(modes[i])?;
            let members = if mode == Branch::Member {
                sets.next()
                    .filter(|_| !membership.is_empty())
                    .ok_or_else(|| {
                        format!("ml.tree_ensemble membership_values has no set for member node {i}")
                    })?
            } else {
                &[][..]
            };
            nodes.push(TreeNode {
                mode,
                split: splits[i],
                members: members.to_vec(),
                feature: usize::try_from(features[i])
                    .map_err(|_| format!("negative feature id {}", features[i]))?,
                nan_goes_true: nan_true[i] != 0,
                on_true: next(true_leafs[i], true_ids[i])?,
                on_false: next(false_leafs[i], false_ids[i])?,
            });
        }
        let roots = ctx
            .ints("tree_roots")?
            .into_iter()
            .map(|r| index(r, n, "tree root"))
            .collect::<Result<Vec<_>, _>>()?;
        let aggregate = match ctx.int("aggregate_function")? {
            0 => Aggregate::Average,
            1 => Aggregate::Sum,
            2 => Aggregate::Min,
            3 => Aggregate::Max,
            a => {
                return Err(format!(
                    "ml.tree_ensemble aggregate_function {a} is not one of 0..=3"
                ))
            }
        };
        let post = match ctx.int("post_transform")? {
            0 => PostTransform::None,
            1 => PostTransform::Softmax,
            2 => PostTransform::Logistic,
            3 => PostTransform::SoftmaxZero,
            4 => PostTransform::Probit,
            p => {
                return Err(format!(
                    "ml.tree_ensemble post_transform {p} is not one of 0..=4"
                ))
            }
        };
        Ok(Ensemble {
            nodes,
            leaf_weights,
            leaf_targets,
            roots,
            n_targets,
            aggregate,
            post,
        })
    }

    /// The leaf a row reaches from `root`.
    fn leaf(&self, root: usize, row: &[f64]) -> Result<usize, String> {
        let mut at = root;
        // A well-formed tree visits each node at most once.
        for _ in 0..=self.nodes.len() {
            let node = &self.nodes[at];
            // A single-leaf tree: both branches name the same leaf.
            let next = if node.on_true == node.on_false {
                node.on_true
            } else {
                let x = *row.get(node.feature).ok_or_else(|| {
                    format!(
                        "ml.tree_ensemble feature {} is out of range for {} features",
                        node.feature,
                        row.len()
                    )
                })?;
                let hit = match node.mode {
                    Branch::Leq => x <= node.split,
                    Branch::Lt => x < node.split,
                    Branch::Gte => x >= node.split,
                    Branch::Gt => x > node.split,
                    Branch::Eq => x == node.split,
                    Branch::Neq => x != node.split,
                    Branch::Member => node.members.contains(&x),
                };
                if hit || (node.nan_goes_true && x.is_nan()) {
                    node.on_true
                } else {
                    node.on_false
                }
            };
            match next {
                Next::Leaf(l) => return Ok(l),
                Next::Node(n) => at = n,
            }
        }
        Err(format!("ml.tree_ensemble tree at node {root} has a cycle"))
    }

    /// The aggregated, transformed targets of one row.
    fn predict(&self, row: &[f64]) -> Result<Vec<f64>, String> {
        let mut acc: Vec<Option<f64>> = vec![None; self.n_targets];
        for &root in &self.roots {
            let leaf = self.leaf(root, row)?;
            let (w, t) = (self.leaf_weights[leaf], self.leaf_targets[leaf]);
            acc[t] = Some(match (acc[t], self.aggregate) {
                (None, _) => w,
                (Some(a), Aggregate::Sum | Aggregate::Average) => a + w,
                (Some(a), Aggregate::Min) => a.min(w),
                (Some(a), Aggregate::Max) => a.max(w),
            });
        }
        let trees = self.roots.len().max(1) as f64;
        // Targets no leaf contributes to are 0, as in onnxruntime.
        let mut v: Vec<f64> = acc
            .into_iter()
            .map(|a| match (a, self.aggregate) {
                (Some(a), Aggregate::Average) => a / trees,
                (a, _) => a.unwrap_or(0.0),
            })
            .collect();
        post_transform(&mut v, self.post);
        Ok(v)
    }
}

/// The inverse of the standard normal CDF (Acklam's rational approximation,
/// relative error below 1.2e-9).
pub fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    const LOW: f64 = 0.02425;
    let poly = |c: &[f64], x: f64| c.iter().fold(0.0, |acc, &k| acc * x + k);
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        poly(&C, q) / (poly(&D, q) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        poly(&A, r) * q / (poly(&B, r) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -poly(&C, q) / (poly(&D, q) * q + 1.0)
    }
}

fn post_transform(v: &mut [f64], post: PostTransform) {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match post {
        PostTransform::None => {}
        PostTransform::Logistic => v.iter_mut().for_each(|x| *x = sigmoid(*x)),
        PostTransform::Probit => v.iter_mut().for_each(|x| *x = probit(*x)),
        PostTransform::Softmax | PostTransform::SoftmaxZero => {
            // SOFTMAX_ZERO leaves zero scores at zero (absent classes).
            let zero = post == PostTransform::SoftmaxZero;
            v.iter_mut().for_each(|x| {
                *x = if zero && *x == 0.0 {
                    0.0
                } else {
                    (*x - max).exp()
                }
            });
            let sum: f64 = v.iter().sum();
            if sum > 0.0 {
                v.iter_mut().for_each(|x| *x /= sum);
            }
        }
    }
}

pub static TREE_ENSEMBLE: OpDef = OpDef {
    mnemonic: "ml.tree_ensemble",
    summary: "Evaluates an ensemble of decision trees on each row of [N, F], aggregating leaf weights per target",
    operands: &[req("X")],
    results: Results::Fixed(1),
    attrs: &[
        attr("aggregate_function", AttrKind::Int, Default::Int(1)),
        attr("leaf_targetids", AttrKind::Ints, Default::Required),
        attr("leaf_weights", AttrKind::Tensor, Default::Required),
        attr("membership_values", AttrKind::Tensor, Default::Absent),
        attr("n_targets", AttrKind::Int, Default::Absent),
        attr("nodes_falseleafs", AttrKind::Ints, Default::Required),
        attr("nodes_falsenodeids", AttrKind::Ints, Default::Required),
        attr("nodes_featureids", AttrKind::Ints, Default::Required),
        attr("nodes_hitrates", AttrKind::Tensor, Default::Absent),
        attr("nodes_missing_value_tracks_true", AttrKind::Ints, Default::Absent),
        attr("nodes_modes", AttrKind::Tensor, Default::Required),
        attr("nodes_splits", AttrKind::Tensor, Default::Required),
        attr("nodes_trueleafs", AttrKind::Ints, Default::Required),
        attr("nodes_truenodeids", AttrKind::Ints, Default::Required),
        attr("post_transform", AttrKind::Int, Default::Int(0)),
        attr("tree_roots", AttrKind::Ints, Default::Required),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        if !x.dtype().is_float() {
            return Err(format!("ml.tree_ensemble takes a float tensor, got {x}"));
        }
        let n = match x.shape.as_slice() {
            [n, _] => n.clone(),
            _ => return Err(format!("ml.tree_ensemble takes an [N, F] input, got {x}")),
        };
        Ensemble::new(ctx)?;
        Ok(vec![TensorType::new(vec![n, Dim::fixed(n_targets(ctx)? as i64)], x.dtype())])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let [n, f] = x.shape[..] else {
            return Err(format!("ml.tree_ensemble takes an [N, F] input, got shape {:?}", x.shape));
        };
        if !x.dtype.is_float() {
            return Err(format!("ml.tree_ensemble takes a float tensor, got {}", x.dtype));
        }
        let ens = Ensemble::new(ctx)?;
        let xs = x.to_f64_vec();
        let mut out = Vec::with_capacity(n * ens.n_targets);
        for r in 0..n {
            out.extend(ens.predict(&xs[r * f..(r + 1) * f])?);
        }
        Ok(vec![Tensor::from_f64(x.dtype, vec![n, ens.n_targets], &out)])
    }),
};

// ---------------------------------------------------------------- mel_weight_matrix

/// The one value of a scalar (or one-element) operand, as f64.
fn scalar_f64(t: &Tensor, what: &str) -> Result<f64, String> {
    if t.len() != 1 {
        return Err(format!(
            "mel_weight_matrix {what} must be a scalar, got shape {:?}",
            t.shape
        ));
    }
    Ok(t.get_f64(0))
}

fn scalar_int(t: &Tensor, what: &str, min: i64) -> Result<usize, String> {
    if t.len() != 1 || !t.dtype.is_int() {
        return Err(format!(
            "mel_weight_matrix {what} must be an integer scalar, got {} {:?}",
            t.dtype, t.shape
        ));
    }
    let v = t.get_i64(0);
    if v < min {
        return Err(format!(
            "mel_weight_matrix {what} must be >= {min}, got {v}"
        ));
    }
    Ok(v as usize)
}

fn output_datatype(ctx: &dyn AttrAccess) -> Result<DType, String> {
    if ctx.has_attr("output_datatype") {
        ctx.dtype_attr("output_datatype")
    } else {
        Ok(DType::F32)
    }
}

/// Triangular filters, peak 1, between mel-spaced points: `num_mel_bins + 2`
/// points evenly spaced in mel from the lower edge (the last one falls one
/// step short of the upper edge, as in the ONNX reference and onnxruntime),
/// snapped down to DFT bins. Row j is spectrogram bin j, column i filter i.
pub fn mel_weight_matrix(
    num_mel_bins: usize,
    dft_length: usize,
    sample_rate: usize,
    lower_hz: f64,
    upper_hz: f64,
) -> Result<Vec<f64>, String> {
    let n_spec = dft_length / 2 + 1;
    let hz_to_mel = |hz: f64| 2595.0 * (hz / 700.0).ln_1p() / std::f64::consts::LN_10;
    let mel_to_hz = |mel: f64| 700.0 * (mel / 2595.0 * std::f64::consts::LN_10).exp_m1();
    let (low, high) = (hz_to_mel(lower_hz), hz_to_mel(upper_hz));
    let step = (high - low) / (num_mel_bins + 2) as f64;
    let bins = (0..num_mel_bins + 2)
        .map(|i| {
            let b = ((dft_length + 1) as f64 * mel_to_hz(low + step * i as f64) / sample_rate as f64).floor();
            if b >= 0.0 && b < n_spec as f64 {
                Ok(b as usize)
            } else {
                Err(format!(
                    "mel_weight_matrix edge frequencies [{lower_hz}, {upper_hz}] Hz fall outside the {n_spec} bins of the spectrum"
                ))
            }
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let mut out = vec![0.0; n_spec * num_mel_bins];
    for (i, w) in bins.windows(3).enumerate() {
        let (left, center, right) = (w[0], w[1], w[2]);
        if center == left {
            out[center * num_mel_bins + i] = 1.0;
        } else {
            for j in left..=center {
                out[j * num_mel_bins + i] = (j - left) as f64 / (center - left) as f64;
            }
        }
        for j in center..right {
            out[j * num_mel_bins + i] = (right - j) as f64 / (right - center) as f64;
        }
    }
    Ok(out)
}

pub static MEL_WEIGHT_MATRIX: OpDef = OpDef {
    mnemonic: "mel_weight_matrix",
    summary: "A [dft_length/2+1, num_mel_bins] matrix of triangular mel filters",
    operands: &[
        req("num_mel_bins"),
        req("dft_length"),
        req("sample_rate"),
        req("lower_edge_hertz"),
        req("upper_edge_hertz"),
    ],
    results: Results::Fixed(1),
    attrs: &[attr("output_datatype", AttrKind::Type, Default::Absent)],
    traits: &[],
    infer: |ctx| {
        let one = |i: usize| match ctx.sym_input(i).as_deref() {
            Some([d]) => d.clone(),
            _ => Dim::Unknown,
        };
        let spec = match one(1).as_fixed() {
            Some(n) => Dim::fixed(n / 2 + 1),
            None => Dim::Unknown,
        };
        Ok(vec![TensorType::new(
            vec![spec, one(0)],
            output_datatype(ctx)?,
        )])
    },
    eval: Some(|ctx| {
        let mels = scalar_int(ctx.input(0)?, "num_mel_bins", 0)?;
        let dft = scalar_int(ctx.input(1)?, "dft_length", 1)?;
        let rate = scalar_int(ctx.input(2)?, "sample_rate", 1)?;
        let lo = scalar_f64(ctx.input(3)?, "lower_edge_hertz")?;
        let hi = scalar_f64(ctx.input(4)?, "upper_edge_hertz")?;
        let v = mel_weight_matrix(mels, dft, rate, lo, hi)?;
        Ok(vec![Tensor::from_f64(
            output_datatype(ctx)?,
            vec![dft / 2 + 1, mels],
            &v,
        )])
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attrs;
    use crate::ops::testing::{attrs, eval_with, some};
    use std::sync::Arc;

    fn run(def: &'static OpDef, attrs: &Attrs, inputs: &[&Tensor]) -> Result<Tensor, String> {
        Ok(eval_with(def, attrs, &some(inputs), 1)?.remove(0))
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn tensor(t: Tensor) -> Attr {
        Attr::Tensor(Arc::new(t))
    }

    #[test]
    fn label_encoder_maps_with_defaults() {
        let x = string_tensor(vec![5], strs(&["a", "b", "d", "c", "g"])).unwrap();
        let a = attrs(&[
            ("keys_strings", Attr::Strs(strs(&["a", "b", "c"]))),
            ("values_int64s", Attr::Ints(vec![0, 1, 2])),
        ]);
        assert_eq!(
            run(&LABEL_ENCODER, &a, &[&x]).unwrap(),
            Tensor::i64(vec![5], vec![0, 1, -1, 2, -1])
        );
        let a = attrs(&[
            ("keys_strings", Attr::Strs(strs(&["a", "b", "c"]))),
            (
                "values_tensor",
                tensor(Tensor::from_i64(DType::I16, vec![3], &[0, 1, 2])),
            ),
            (
                "default_tensor",
                tensor(Tensor::from_i64(DType::I16, vec![1], &[42])),
            ),
        ]);
        assert_eq!(
            run(&LABEL_ENCODER, &a, &[&x]).unwrap(),
            Tensor::from_i64(DType::I16, vec![5], &[0, 1, 42, 2, 42])
        );
    }

    #[test]
    fn label_encoder_float_keys_match_nan_and_signed_zero() {
        // Later duplicate keys win.
        let a = attrs(&[
            ("keys_floats", Attr::Floats(vec![f64::NAN, 0.0, 1.5, 1.5])),
            (
                "values_strings",
                Attr::Strs(strs(&["nan", "zero", "first", "last"])),
            ),
        ]);
        let x = Tensor::f32(vec![2, 2], vec![-f32::NAN, -0.0, 1.5, 2.0]);
        let out = run(&LABEL_ENCODER, &a, &[&x]).unwrap();
        assert_eq!(
            out,
            string_tensor(vec![2, 2], strs(&["nan", "zero", "last", "_Unused"])).unwrap()
        );
        // Keys must have the input's type.
        assert!(run(&LABEL_ENCODER, &a, &[&Tensor::i64(vec![1], vec![0])]).is_err());
        let both = attrs(&[
            ("keys_floats", Attr::Floats(vec![1.0])),
            ("keys_int64s", Attr::Ints(vec![1])),
            ("values_int64s", Attr::Ints(vec![1])),
        ]);
        assert!(run(&LABEL_ENCODER, &both, &[&Tensor::f32(vec![1], vec![1.0])]).is_err());
    }

    #[test]
    fn binarizer_and_feature_extractor() {
        let a = attrs(&[("threshold", Attr::Float(1.0))]);
        let x = Tensor::f32(vec![4], vec![1.0, 1.5, f32::NAN, -3.0]);
        assert_eq!(
            run(&BINARIZER, &a, &[&x]).unwrap(),
            Tensor::f32(vec![4], vec![0.0, 1.0, 0.0, 0.0])
        );
        assert_eq!(
            run(
                &BINARIZER,
                &Attrs::new(),
                &[&Tensor::i64(vec![3], vec![-1, 0, 7])]
            )
            .unwrap(),
            Tensor::i64(vec![3], vec![0, 0, 1])
        );
        let x = Tensor::f32(vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let y = Tensor::i64(vec![1, 3], vec![2, 0, 2]);
        let out = run(&ARRAY_FEATURE_EXTRACTOR, &Attrs::new(), &[&x, &y]).unwrap();
        assert_eq!(
            out,
            Tensor::f32(vec![2, 3], vec![2.0, 0.0, 2.0, 5.0, 3.0, 5.0])
        );
        let v = Tensor::i64(vec![3], vec![7, 8, 9]);
        let out = run(
            &ARRAY_FEATURE_EXTRACTOR,
            &Attrs::new(),
            &[&v, &Tensor::i64(vec![1], vec![1])],
        )
        .unwrap();
        assert_eq!(out, Tensor::i64(vec![1, 1], vec![8]));
        assert!(run(
            &ARRAY_FEATURE_EXTRACTOR,
            &Attrs::new(),
            &[&v, &Tensor::i64(vec![1], vec![3])]
        )
        .is_err());
        assert!(run(
            &ARRAY_FEATURE_EXTRACTOR,
            &Attrs::new(),
            &[&v, &Tensor::i64(vec![1], vec![-1])]
        )
        .is_err());
    }

    /// Two one-split trees on feature 0 (<= 0.5): tree 0 gives -1.5 | 2.0 to
    /// target 0, tree 1 gives 0.0 | 3.0 to target 2; target 1 gets nothing.
    fn two_stumps(aggregate: i64, post: i64) -> Attrs {
        attrs(&[
            ("aggregate_function", Attr::Int(aggregate)),
            ("post_transform", Attr::Int(post)),
            ("n_targets", Attr::Int(3)),
            ("tree_roots", Attr::Ints(vec![0, 1])),
            ("nodes_featureids", Attr::Ints(vec![0, 0])),
            (
                "nodes_modes",
                tensor(Tensor::from_i64(DType::U8, vec![2], &[0, 0])),
            ),
            ("nodes_splits", tensor(Tensor::f32(vec![2], vec![0.5, 0.5]))),
            ("nodes_truenodeids", Attr::Ints(vec![0, 2])),
            ("nodes_falsenodeids", Attr::Ints(vec![1, 3])),
            ("nodes_trueleafs", Attr::Ints(vec![1, 1])),
            ("nodes_falseleafs", Attr::Ints(vec![1, 1])),
            ("leaf_targetids", Attr::Ints(vec![0, 0, 2, 2])),
            (
                "leaf_weights",
                tensor(Tensor::f32(vec![4], vec![-1.5, 2.0, 0.0, 3.0])),
            ),
        ])
    }

    fn close(a: &Tensor, want: &[f64]) {
        let got = a.to_f64_vec();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < 1e-6 || (g.is_nan() && w.is_nan()) || g == w,
                "{got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn tree_ensemble_aggregates_and_transforms() {
        // Expectations from onnxruntime 1.31 on the same model (post-transform
        // codes as the ONNX spec numbers them).
        let x = Tensor::f32(vec![2, 1], vec![0.0, 1.0]);
        close(
            &run(&TREE_ENSEMBLE, &two_stumps(1, 0), &[&x]).unwrap(),
            &[-1.5, 0.0, 0.0, 2.0, 0.0, 3.0],
        );
        close(
            &run(&TREE_ENSEMBLE, &two_stumps(0, 0), &[&x]).unwrap(),
            &[-0.75, 0.0, 0.0, 1.0, 0.0, 1.5],
        );
        close(
            &run(&TREE_ENSEMBLE, &two_stumps(1, 1), &[&x]).unwrap(),
            &[
                0.10036756, 0.44981620, 0.44981620, 0.25949645, 0.03511902, 0.70538449,
            ],
        );
        close(
            &run(&TREE_ENSEMBLE, &two_stumps(1, 2), &[&x]).unwrap(),
            &[0.18242556, 0.5, 0.5, 0.88079708, 0.5, 0.95257413],
        );
        close(
            &run(&TREE_ENSEMBLE, &two_stumps(1, 3), &[&x]).unwrap(),
            &[1.0, 0.0, 0.0, 0.26894143, 0.0, 0.73105860],
        );
        let inf = f64::INFINITY;
        close(
            &run(&TREE_ENSEMBLE, &two_stumps(0, 4), &[&x]).unwrap(),
            &[f64::NAN, -inf, -inf, inf, -inf, f64::NAN],
        );
        let mut bad = two_stumps(1, 0);
        bad.insert("nodes_truenodeids".into(), Attr::Ints(vec![0, 9]));
        assert!(run(&TREE_ENSEMBLE, &bad, &[&x]).is_err());
    }

    #[test]
    fn tree_ensemble_set_membership_and_missing_values() {
        // Root: x <= 11 ? (x in {1.2, 3.7, 8, 9} ? leaf 0 : node 2) : leaf 1;
        // node 2: x in {12, 7} ? leaf 1 : leaf 3. NaN goes false at the root.
        let a = attrs(&[
            ("n_targets", Attr::Int(4)),
            ("tree_roots", Attr::Ints(vec![0])),
            ("nodes_featureids", Attr::Ints(vec![0, 0, 0])),
            (
                "nodes_modes",
                tensor(Tensor::from_i64(DType::U8, vec![3], &[0, 6, 6])),
            ),
            (
                "nodes_splits",
                tensor(Tensor::f32(vec![3], vec![11.0, 0.0, f32::NAN])),
            ),
            (
                "membership_values",
                tensor(Tensor::f32(
                    vec![8],
                    vec![1.2, 3.7, 8.0, 9.0, f32::NAN, 12.0, 7.0, f32::NAN],
                )),
            ),
            ("nodes_truenodeids", Attr::Ints(vec![1, 0, 1])),
            ("nodes_falsenodeids", Attr::Ints(vec![2, 2, 3])),
            ("nodes_trueleafs", Attr::Ints(vec![0, 1, 1])),
            ("nodes_falseleafs", Attr::Ints(vec![1, 0, 1])),
            ("leaf_targetids", Attr::Ints(vec![0, 1, 2, 3])),
            (
                "leaf_weights",
                tensor(Tensor::f32(vec![4], vec![1.0, 10.0, 1000.0, 100.0])),
            ),
        ]);
        let x = Tensor::f32(vec![4, 1], vec![1.2, 3.4, f32::NAN, 7.0]);
        #[rustfmt::skip]
        let want = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 1000.0, 0.0, 0.0, 10.0, 0.0, 0.0];
        close(&run(&TREE_ENSEMBLE, &a, &[&x]).unwrap(), &want);
        let mut nan_true = a.clone();
        nan_true.insert(
            "nodes_missing_value_tracks_true".into(),
            Attr::Ints(vec![1, 0, 0]),
        );
        let out = run(
            &TREE_ENSEMBLE,
            &nan_true,
            &[&Tensor::f32(vec![1, 1], vec![f32::NAN])],
        )
        .unwrap();
        close(&out, &[0.0, 0.0, 0.0, 100.0]);
    }

    #[test]
    fn probit_inverts_the_normal_cdf() {
        // scipy.stats.norm.ppf values.
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.01, -2.3263478740408408),
            (1e-10, -6.361340902404056),
        ] {
            assert!(
                (probit(p) - z).abs() < 1e-8 * z.abs().max(1.0),
                "{p}: {}",
                probit(p)
            );
        }
    }

    #[test]
    fn mel_weight_matrix_matches_the_reference() {
        // The ONNX reference implementation (onnx.reference) on 8 bins, dft 16,
        // 8192 Hz, [0, 4096] Hz: filter i peaks on row bins[i+1].
        let v = mel_weight_matrix(8, 16, 8192, 0.0, 4096.0).unwrap();
        #[rustfmt::skip]
        let want = [
            1., 1., 0., 0., 0., 0., 0., 0.,
            0., 0., 1., 1., 0., 0., 0., 0.,
            0., 0., 0., 0., 1., 0., 0., 0.,
            0., 0., 0., 0., 0., 1., 0., 0.,
            0., 0., 0., 0., 0., 0., 1., 0.,
            0., 0., 0., 0., 0., 0., 0., 1.,
            0., 0., 0., 0., 0., 0., 0., 0.,
            0., 0., 0., 0., 0., 0., 0., 0.,
            0., 0., 0., 0., 0., 0., 0., 0.,
        ];
        assert_eq!(v, want);
        // A wider spectrum gives sloped triangles: numpy reference, 4 bins,
        // dft 64, 16000 Hz, [100, 6000] Hz.
        let v = mel_weight_matrix(4, 64, 16000, 100.0, 6000.0).unwrap();
        #[rustfmt::skip]
        let nonzero = [
            (1, 0, 1.0), (2, 0, 0.5), (2, 1, 0.5), (3, 1, 1.0), (4, 1, 2.0 / 3.0), (4, 2, 1.0 / 3.0),
            (5, 1, 1.0 / 3.0), (5, 2, 2.0 / 3.0), (6, 2, 1.0), (7, 2, 0.75), (7, 3, 0.25), (8, 2, 0.5),
            (8, 3, 0.5), (9, 2, 0.25), (9, 3, 0.75), (10, 3, 1.0), (11, 3, 5.0 / 6.0), (12, 3, 4.0 / 6.0),
            (13, 3, 0.5), (14, 3, 2.0 / 6.0), (15, 3, 1.0 / 6.0),
        ];
        let mut want = vec![0.0; 33 * 4];
        for (r, c, w) in nonzero {
            want[r * 4 + c] = w;
        }
        assert_eq!(v, want);
        assert!(mel_weight_matrix(4, 16, 8000, 0.0, 40000.0).is_err());
    }
}
