//! Shared pieces of op definitions: broadcasting, axis handling and the
//! generic elementwise kernels that whole families are built from.

use crate::dim::Dim;
use crate::dtype::DType;
use crate::tensor::{strides_of, Data, Tensor};
use crate::types::TensorType;

/// Normalizes a possibly negative axis against `rank` (ONNX convention).
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast_dims(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, String> {
    let n = a.len().max(b.len());
    let one = Dim::fixed(1);
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                &a[i + a.len() - n]
            } else {
                &one
            };
            let db = if i + b.len() >= n {
                &b[i + b.len() - n]
            } else {
                &one
            };
            match (da.as_fixed(), db.as_fixed()) {
                (Some(1), _) => Ok(db.clone()),
                (_, Some(1)) => Ok(da.clone()),
                _ if da.same_as(db) => Ok(da.clone()),
                (Some(x), Some(y)) => Err(format!("shapes do not broadcast: dim {x} vs {y}")),
                // A symbolic dim against a fixed one (or another symbol): the
                // model promises they agree at run time.
                (Some(_), None) => Ok(da.clone()),
                (None, Some(_)) => Ok(db.clone()),
                (None, None) => Ok(da.clone()),
            }
        })
        .collect()
}

/// Broadcasts any number of shapes.
pub fn broadcast_all<'a>(shapes: impl IntoIterator<Item = &'a [Dim]>) -> Result<Vec<Dim>, String> {
    shapes
        .into_iter()
        .try_fold(Vec::new(), |acc, s| broadcast_dims(&acc, s))
}

/// Concrete broadcast of static shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                (x, y) => Err(format!(
                    "shapes {a:?} and {b:?} do not broadcast ({x} vs {y})"
                )),
            }
        })
        .collect()
}

/// For each element of `out_shape` (row-major), the flat index into a tensor
/// of `in_shape` broadcast to it.
pub fn broadcast_index_map(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    if in_shape == out_shape {
        return (0..n).collect();
    }
    let rank = out_shape.len();
    let in_strides = strides_of(in_shape);
    // stride per output dim (0 where broadcast)
    let mut st = vec![0usize; rank];
    for i in 0..in_shape.len() {
        let o = rank - in_shape.len() + i;
        st[o] = if in_shape[i] == 1 { 0 } else { in_strides[i] };
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(off);
        for d in (0..rank).rev() {
            idx[d] += 1;
            off += st[d];
            if idx[d] < out_shape[d] {
                break;
            }
            off -= st[d] * idx[d];
            idx[d] = 0;
        }
    }
    out
}

/// Infers a broadcasting op: result shape from all operands, dtype from the
/// first (or `out` when given, e.g. bool for comparisons).
pub fn infer_broadcast(
    ctx: &super::InferCtx,
    out: Option<DType>,
) -> Result<Vec<TensorType>, String> {
    let mut shapes = Vec::new();
    let mut dtype = None;
    for t in ctx.operands.iter().flatten() {
        if let Some(d) = dtype {
            if t.dtype() != d && out.is_none() {
                return Err(format!(
                    "operand element types differ: {d} vs {}",
                    t.dtype()
                ));
            }
        }
        dtype.get_or_insert(t.dtype());
        shapes.push(t.shape.as_slice());
    }
    let dtype = out.or(dtype).ok_or("no operands")?;
    Ok(vec![TensorType::new(broadcast_all(shapes)?, dtype)])
}

/// Same type as operand 0 (unary elementwise ops).
pub fn infer_same(ctx: &super::InferCtx) -> Result<Vec<TensorType>, String> {
    Ok(vec![ctx.input(0)?.clone()])
}

/// A binary elementwise kernel with broadcasting. Floats are computed in f64
/// and rounded once to the result type (exact for + - * / on f32, since f64
/// has more than twice the precision); integers in i64, wrapped to the type.
pub fn eval_binary(
    a: &Tensor,
    b: &Tensor,
    out_dtype: DType,
    ff: impl Fn(f64, f64) -> f64,
    fi: impl Fn(i64, i64) -> Result<i64, String>,
) -> Result<Tensor, String> {
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let ia = broadcast_index_map(&a.shape, &shape);
    let ib = broadcast_index_map(&b.shape, &shape);
    if let (Data::F32(x), Data::F32(y), DType::F32) = (&a.data, &b.data, out_dtype) {
        let v = ia
            .iter()
            .zip(&ib)
            .map(|(&i, &j)| ff(x[i] as f64, y[j] as f64) as f32)
            .collect();
        return Tensor::new(DType::F32, shape, Data::F32(v));
    }
    if a.dtype.is_float() || out_dtype.is_float() {
        let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
        let v: Vec<f64> = ia.iter().zip(&ib).map(|(&i, &j)| ff(x[i], y[j])).collect();
        return Ok(Tensor::from_f64(out_dtype, shape, &v));
    }
    let (x, y) = (a.to_i64_vec(), b.to_i64_vec());
    let v = ia
        .iter()
        .zip(&ib)
        .map(|(&i, &j)| fi(x[i], y[j]))
        .collect::<Result<Vec<i64>, String>>()?;
    Ok(Tensor::from_i64(out_dtype, shape, &v))
}

/// A unary elementwise kernel on floats (f32 fast path, others via f64).
pub fn eval_unary_float(x: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor, String> {
    if !x.dtype.is_float() {
        return Err(format!("expects a float tensor, got {}", x.dtype));
    }
    if let Data::F32(v) = &x.data {
        let out = v.iter().map(|&e| f(e as f64) as f32).collect();
        return Tensor::new(DType::F32, x.shape.clone(), Data::F32(out));
    }
    let v: Vec<f64> = x.to_f64_vec().into_iter().map(f).collect();
    Ok(Tensor::from_f64(x.dtype, x.shape.clone(), &v))
}

/// Converts a tensor of shape values (i64) into dims.
pub fn dims_of_const(t: &Tensor) -> Vec<i64> {
    t.to_i64_vec()
}

/// Static shape as usize, from a type whose dims are all bound.
pub fn to_usize_shape(v: &[i64]) -> Result<Vec<usize>, String> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_index_map_matches_numpy() {
        // [2,1] against [2,3]
        assert_eq!(
            broadcast_index_map(&[2, 1], &[2, 3]),
            vec![0, 0, 0, 1, 1, 1]
        );
        // [3] against [2,3]
        assert_eq!(broadcast_index_map(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(
            broadcast_shapes(&[2, 1, 4], &[3, 1]).unwrap(),
            vec![2, 3, 4]
        );
        assert!(broadcast_shapes(&[2], &[3]).is_err());
    }

    #[test]
    fn symbolic_broadcast() {
        let b = Dim::sym("batch");
        let r = broadcast_dims(&[b.clone(), Dim::fixed(1)], &[Dim::fixed(4)]).unwrap();
        assert_eq!(r, vec![b, Dim::fixed(4)]);
    }
}
