//! Differential testing: run a graph before and after a transformation on the
//! same seeded random inputs and report the largest difference. Every rewrite
//! and every backend is checked this way.

use std::collections::HashMap;
use tessera_ir::{AttrAccess, DType, Dim, Graph, Op, Tensor, ValueId};

/// A small deterministic PRNG (SplitMix64): reproducible inputs without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly standard normal (sum of uniforms; plenty for test inputs).
    pub fn normal(&mut self) -> f64 {
        (0..4).map(|_| self.uniform()).sum::<f64>() * 3f64.sqrt() - 2.0 * 3f64.sqrt()
    }
}

struct OpAttrs<'a>(&'a Op);

impl AttrAccess for OpAttrs<'_> {
    fn def(&self) -> &'static tessera_ir::ops::OpDef {
        self.0.kind.def()
    }
    fn attrs(&self) -> &tessera_ir::Attrs {
        &self.0.attrs
    }
}

/// For integer graph inputs used as gather indices (token ids), the size of
/// the table they index, so random ids stay valid.
fn index_bounds(g: &Graph) -> HashMap<ValueId, i64> {
    let mut bounds = HashMap::new();
    for op in &g.ops {
        if op.kind.mnemonic() != "gather" {
            continue;
        }
        if let (Some(data), Some(idx)) = (op.operand(0), op.operand(1)) {
            if g.inputs.contains(&idx) {
                let axis = OpAttrs(op).int("axis").unwrap_or(0);
                let shape = &g.ty(data).shape;
                let ax = if axis < 0 {
                    axis + shape.len() as i64
                } else {
                    axis
                };
                if let Some(n) = shape.get(ax as usize).and_then(Dim::as_fixed) {
                    let e = bounds.entry(idx).or_insert(n);
                    *e = (*e).min(n);
                }
            }
        }
    }
    bounds
}

/// Random inputs for every graph input. Symbolic dims take their size from
/// `dims` (default 4). Float inputs are normal; gather indices are valid ids;
/// other integers (masks, positions) are 1 for names containing "mask" and
/// small non-negative values otherwise; bools are random.
pub fn random_inputs(
    g: &Graph,
    seed: u64,
    dims: &HashMap<String, i64>,
) -> Result<Vec<Tensor>, String> {
    let mut rng = Rng::new(seed);
    let bounds = index_bounds(g);
    g.inputs
        .iter()
        .map(|v| {
            let ty = g.ty(*v);
            let name = g.values[v.0 as usize].name.clone().unwrap_or_default();
            let shape = ty
                .shape
                .iter()
                .map(|d| {
                    d.eval(&|s| Some(dims.get(s).copied().unwrap_or(4)))
                        .map(|n| n as usize)
                })
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| format!("input '{name}' has a dimension no size binds"))?;
            let n: usize = shape.iter().product();
            let dtype = ty.dtype();
            Ok(if dtype.is_float() {
                let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
                Tensor::from_f64(dtype, shape, &v)
            } else if dtype == DType::Bool {
                let v: Vec<i64> = (0..n).map(|_| (rng.next_u64() & 1) as i64).collect();
                Tensor::from_i64(dtype, shape, &v)
            } else if name.contains("mask") {
                Tensor::from_i64(dtype, shape, &vec![1; n])
            } else {
                let hi = bounds.get(v).copied().unwrap_or(4).max(1) as u64;
                let v: Vec<i64> = (0..n).map(|_| (rng.next_u64() % hi) as i64).collect();
                Tensor::from_i64(dtype, shape, &v)
            })
        })
        .collect()
}

/// Runs both graphs on the same random inputs; returns the largest absolute
/// difference over all outputs (infinite on a shape or dtype difference or a
/// NaN in one side only).
pub fn max_difference(
    before: &Graph,
    after: &Graph,
    seed: u64,
    dims: &HashMap<String, i64>,
) -> Result<f64, String> {
    let inputs = random_inputs(before, seed, dims)?;
    let a = crate::run(before, &inputs).map_err(|e| format!("before: {e}"))?;
    let b = crate::run(after, &inputs).map_err(|e| format!("after: {e}"))?;
    if a.len() != b.len() {
        return Ok(f64::INFINITY);
    }
    let mut worst = 0f64;
    for (x, y) in a.iter().zip(&b) {
        if x.dtype != y.dtype || x.shape != y.shape {
            return Ok(f64::INFINITY);
        }
        for i in 0..x.len() {
            let (p, q) = (x.get_f64(i), y.get_f64(i));
            let d = if p.is_nan() && q.is_nan() {
                0.0
            } else {
                (p - q).abs()
            };
            worst = worst.max(if d.is_nan() { f64::INFINITY } else { d });
        }
    }
    Ok(worst)
}
