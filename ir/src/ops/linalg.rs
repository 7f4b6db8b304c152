//! Contractions: MatMul, Gemm, Einsum, Det.
//!
//! Every contraction funnels into one batched-GEMM kernel ([`GemmElem`]):
//! f32 and f64 through `matrixmultiply`, integers through an exact i64 loop
//! that wraps to the element type. Narrow floats (f16, bf16, fp8) are widened
//! to f32, accumulated there and rounded once at the end.

use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::tensor::Data;
use half::{bf16, f16};
use std::borrow::Cow;

// ---------------------------------------------------------------------------
// Kernels shared by the contraction ops (and other families).

/// Copies a strided view of `src` into a new row-major vector: element `idx`
/// of the result is `src[sum(idx[d] * strides[d])]`. Permutations (permuted
/// strides), diagonals (summed strides) and broadcasts (stride 0) are all
/// such views. The caller guarantees every addressed element exists.
pub fn strided_copy<T: Copy>(src: &[T], shape: &[usize], strides: &[usize]) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let r = shape.len();
    if r == 0 {
        out.push(src[0]);
        return out;
    }
    let (last, last_stride) = (shape[r - 1], strides[r - 1]);
    let mut idx = vec![0usize; r - 1];
    let mut base = 0usize;
    loop {
        if last_stride == 1 {
            out.extend_from_slice(&src[base..base + last]);
        } else {
            out.extend((0..last).map(|j| src[base + j * last_stride]));
        }
        let mut d = r - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            base += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            base -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/// `data` (row-major, `shape`) transposed by `perm` (result dim i is input
/// dim `perm[i]`). Borrows when `perm` is the identity.
pub fn permute_data<'a, T: Copy>(data: &'a [T], shape: &[usize], perm: &[usize]) -> Cow<'a, [T]> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Cow::Borrowed(data);
    }
    let st = crate::tensor::strides_of(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out_strides: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    Cow::Owned(strided_copy(data, &out_shape, &out_strides))
}

/// An element type the GEMM kernel computes in.
pub trait GemmElem: Copy + std::default::Default + PartialEq + Send + Sync + 'static {
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn one() -> Self;
    /// `c = alpha * a @ b + beta * c` for one m×k by k×n product; a, b and c
    /// are addressed with (row, column) strides. When `beta` is zero `c` is
    /// not read.
    #[allow(clippy::too_many_arguments)]
    fn gemm_strided(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        a_strides: (usize, usize),
        b: &[Self],
        b_strides: (usize, usize),
        beta: Self,
        c: &mut [Self],
        c_strides: (usize, usize),
    );

    /// [`GemmElem::gemm_strided`] into a dense row-major `c`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        a_strides: (usize, usize),
        b: &[Self],
        b_strides: (usize, usize),
        beta: Self,
        c: &mut [Self],
    ) {
        Self::gemm_strided(m, k, n, alpha, a, a_strides, b, b_strides, beta, c, (n, 1));
    }
}

macro_rules! float_gemm_elem {
    ($t:ty, $f:path) => {
        impl GemmElem for $t {
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn one() -> Self {
                1.0
            }
            fn gemm_strided(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                (rsa, csa): (usize, usize),
                b: &[Self],
                (rsb, csb): (usize, usize),
                beta: Self,
                c: &mut [Self],
                (rsc, csc): (usize, usize),
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                let last = |rs: usize, cs: usize, rows: usize, cols: usize| {
                    (rows - 1) * rs + (cols - 1) * cs
                };
                assert!(c.len() > last(rsc, csc, m, n), "gemm output too small");
                if k == 0 {
                    for i in 0..m {
                        for j in 0..n {
                            let v = &mut c[i * rsc + j * csc];
                            *v = if beta == 0.0 { 0.0 } else { *v * beta };
                        }
                    }
                    return;
                }
                assert!(
                    a.len() > last(rsa, csa, m, k) && b.len() > last(rsb, csb, k, n),
                    "gemm operand too small"
                );
                // SAFETY: the asserts above bound every element addressed
                // through these strides (the largest offsets are the last
                // row/column), for c as well.
                unsafe {
                    $f(
                        m,
                        k,
                        n,
                        alpha,
                        a.as_ptr(),
                        rsa as isize,
                        csa as isize,
                        b.as_ptr(),
                        rsb as isize,
                        csb as isize,
                        beta,
                        c.as_mut_ptr(),
                        rsc as isize,
                        csc as isize,
                    );
                }
            }
        }
    };
}
float_gemm_elem!(f32, matrixmultiply::sgemm);
float_gemm_elem!(f64, matrixmultiply::dgemm);

/// Integers compute exactly in i64 with wrapping, which equals the result in
/// any narrower (or unsigned 64-bit) type after truncation.
impl GemmElem for i64 {
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    fn mul(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
    fn one() -> Self {
        1
    }
    fn gemm_strided(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        (rsa, csa): (usize, usize),
        b: &[Self],
        (rsb, csb): (usize, usize),
        beta: Self,
        c: &mut [Self],
        (rsc, csc): (usize, usize),
    ) {
        let mut acc = vec![0i64; n];
        for i in 0..m {
            acc.iter_mut().for_each(|v| *v = 0);
            for p in 0..k {
                let av = a[i * rsa + p * csa];
                if av == 0 {
                    continue;
                }
                let row = p * rsb;
                for (j, v) in acc.iter_mut().enumerate() {
                    *v = v.wrapping_add(av.wrapping_mul(b[row + j * csb]));
                }
            }
            for (j, v) in acc.iter().enumerate() {
                let out = &mut c[i * rsc + j * csc];
                let prev = if beta == 0 { 0 } else { out.wrapping_mul(beta) };
                *out = prev.wrapping_add(v.wrapping_mul(alpha));
            }
        }
    }
}

/// Row/column strides of a row-major `rows × cols` matrix read as its transpose when `trans`.
fn mat_strides(trans: bool, rows_of_op: usize, cols_of_op: usize) -> (usize, usize) {
    // op(X) is rows_of_op × cols_of_op; stored X is that or its transpose.
    if trans {
        (1, rows_of_op)
    } else {
        (cols_of_op, 1)
    }
}

/// Batched `c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i]` for `batch`
/// items, where op transposes when asked. `a` holds `batch` (or 1, then it is
/// broadcast) dense matrices of m×k (k×m when `trans_a`), `b` likewise k×n
/// (n×k when `trans_b`), `c` holds `batch` dense m×n matrices.
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched<T: GemmElem>(
    a: &[T],
    b: &[T],
    trans_a: bool,
    trans_b: bool,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    beta: T,
    c: &mut [T],
) -> Result<(), String> {
    let (sa, sb, sc) = (m * k, k * n, m * n);
    let a_step = match a.len() {
        l if l == sa * batch => sa,
        l if l == sa => 0,
        l => {
            return Err(format!(
                "gemm: lhs has {l} elements, expected {batch} x {m}x{k}"
            ))
        }
    };
    let b_step = match b.len() {
        l if l == sb * batch => sb,
        l if l == sb => 0,
        l => {
            return Err(format!(
                "gemm: rhs has {l} elements, expected {batch} x {k}x{n}"
            ))
        }
    };
    if c.len() != sc * batch {
        return Err(format!(
            "gemm: output has {} elements, expected {batch} x {m}x{n}",
            c.len()
        ));
    }
    let (a_st, b_st) = (mat_strides(trans_a, m, k), mat_strides(trans_b, k, n));
    // A batch of independent rows against one shared rhs is one tall GEMM.
    if b_step == 0 && a_step == sa && !trans_a && batch > 1 {
        T::gemm(batch * m, k, n, alpha, a, a_st, b, b_st, beta, c);
        return Ok(());
    }
    for i in 0..batch {
        T::gemm(
            m,
            k,
            n,
            alpha,
            &a[i * a_step..],
            a_st,
            &b[i * b_step..],
            b_st,
            beta,
            &mut c[i * sc..(i + 1) * sc],
        );
    }
    Ok(())
}

/// f32 batched GEMM with transposes (see [`gemm_batched`]); the entry point
/// for attention-style ops: `c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i]`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    a: &[f32],
    b: &[f32],
    trans_a: bool,
    trans_b: bool,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    c: &mut [f32],
) -> Result<(), String> {
    gemm_batched(a, b, trans_a, trans_b, batch, m, n, k, alpha, beta, c)
}

/// How a numeric dtype is computed: its data widened to one of the GEMM
/// element types, and narrowed back.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Compute {
    F32,
    F64,
    I64,
}

fn compute_class(d: DType) -> Result<Compute, String> {
    match d {
        DType::F64 => Ok(Compute::F64),
        d if d.is_float() => Ok(Compute::F32),
        d if d.is_int() => Ok(Compute::I64),
        d => Err(format!("element type {d} is not supported by contractions")),
    }
}

/// The tensor's elements as f32, borrowed when already f32.
fn f32_data(t: &Tensor) -> Cow<'_, [f32]> {
    match &t.data {
        Data::F32(v) => Cow::Borrowed(v.as_slice()),
        _ => Cow::Owned(t.to_f32_vec()),
    }
}

fn f64_data(t: &Tensor) -> Cow<'_, [f64]> {
    match &t.data {
        Data::F64(v) => Cow::Borrowed(v.as_slice()),
        _ => Cow::Owned(t.to_f64_vec()),
    }
}

fn i64_data(t: &Tensor) -> Cow<'_, [i64]> {
    match &t.data {
        Data::I64(v) => Cow::Borrowed(v.as_slice()),
        _ => Cow::Owned(t.to_i64_vec()),
    }
}

/// Rounds f32 results once into `dtype`.
fn from_f32(dtype: DType, shape: Vec<usize>, v: Vec<f32>) -> Tensor {
    match dtype {
        DType::F32 => Tensor {
            dtype,
            shape,
            data: Data::F32(v),
        },
        DType::F16 => Tensor {
            dtype,
            shape,
            data: Data::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
        },
        DType::BF16 => Tensor {
            dtype,
            shape,
            data: Data::BF16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        },
        _ => Tensor::from_f64(
            dtype,
            shape,
            &v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        ),
    }
}

// ---------------------------------------------------------------------------
// MatMul

/// numpy.matmul shape rule: 1-D operands are promoted and the added dim removed.
pub fn matmul_shape(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, String> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul operands must have rank >= 1".into());
    }
    let a2: Vec<Dim> = if a.len() == 1 {
        vec![Dim::fixed(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        vec![b[0].clone(), Dim::fixed(1)]
    } else {
        b.to_vec()
    };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if !ka.compatible(kb) {
        return Err(format!("contraction dims differ: {ka} vs {kb}"));
    }
    let batch = util::broadcast_dims(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(out)
}

/// A numpy.matmul of concrete shapes, resolved to dense batched GEMMs.
struct MatmulPlan {
    m: usize,
    k: usize,
    n: usize,
    /// Per output batch item, the matrix offsets into a and b.
    a_off: Vec<usize>,
    b_off: Vec<usize>,
    out_shape: Vec<usize>,
}

impl MatmulPlan {
    fn new(a: &[usize], b: &[usize]) -> Result<MatmulPlan, String> {
        if a.is_empty() || b.is_empty() {
            return Err("matmul operands must have rank >= 1".into());
        }
        let ash: Vec<usize> = if a.len() == 1 {
            vec![1, a[0]]
        } else {
            a.to_vec()
        };
        let bsh: Vec<usize> = if b.len() == 1 {
            vec![b[0], 1]
        } else {
            b.to_vec()
        };
        let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
        let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
        if k != k2 {
            return Err(format!("matmul contraction dims differ: {a:?} x {b:?}"));
        }
        let (abat, bbat) = (&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]);
        let batch = util::broadcast_shapes(abat, bbat)?;
        let a_off = util::broadcast_index_map(abat, &batch)
            .into_iter()
            .map(|i| i * m * k)
            .collect();
        let b_off = util::broadcast_index_map(bbat, &batch)
            .into_iter()
            .map(|i| i * k * n)
            .collect();
        let mut out_shape = batch;
        if a.len() > 1 {
            out_shape.push(m);
        }
        if b.len() > 1 {
            out_shape.push(n);
        }
        Ok(MatmulPlan {
            m,
            k,
            n,
            a_off,
            b_off,
            out_shape,
        })
    }

    fn run<T: GemmElem>(&self, a: &[T], b: &[T]) -> Vec<T> {
        let (m, k, n) = (self.m, self.k, self.n);
        let nb = self.a_off.len();
        let mut out = vec![T::default(); nb * m * n];
        // Rows of a contiguous lhs against a single rhs matrix: one tall GEMM.
        let one_rhs = self.b_off.iter().all(|&o| o == 0);
        let dense_lhs = self.a_off.iter().enumerate().all(|(i, &o)| o == i * m * k);
        if nb > 1 && one_rhs && dense_lhs {
            T::gemm(
                nb * m,
                k,
                n,
                T::one(),
                a,
                (k, 1),
                b,
                (n, 1),
                T::default(),
                &mut out,
            );
            return out;
        }
        for (i, (&ao, &bo)) in self.a_off.iter().zip(&self.b_off).enumerate() {
            T::gemm(
                m,
                k,
                n,
                T::one(),
                &a[ao..],
                (k, 1),
                &b[bo..],
                (n, 1),
                T::default(),
                &mut out[i * m * n..(i + 1) * m * n],
            );
        }
        out
    }
}

/// Batched matmul on f32 with broadcasting batch dims, through `matrixmultiply`.
/// Operands of other float types are widened to f32; the result is f32.
pub fn matmul_f32(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let plan = MatmulPlan::new(&a.shape, &b.shape)?;
    let out = plan.run(&f32_data(a), &f32_data(b));
    Tensor::new(DType::F32, plan.out_shape, Data::F32(out))
}

/// numpy.matmul for any numeric dtype, with the result in `a`'s dtype.
pub fn matmul_any(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    if a.dtype != b.dtype {
        return Err(format!(
            "matmul operand element types differ: {} vs {}",
            a.dtype, b.dtype
        ));
    }
    let plan = MatmulPlan::new(&a.shape, &b.shape)?;
    Ok(match compute_class(a.dtype)? {
        Compute::F32 => from_f32(
            a.dtype,
            plan.out_shape.clone(),
            plan.run(&f32_data(a), &f32_data(b)),
        ),
        Compute::F64 => Tensor::from_f64(
            a.dtype,
            plan.out_shape.clone(),
            &plan.run(&f64_data(a), &f64_data(b)),
        ),
        Compute::I64 => Tensor::from_i64(
            a.dtype,
            plan.out_shape.clone(),
            &plan.run(&i64_data(a), &i64_data(b)),
        ),
    })
}

fn infer_numeric(t: &TensorType, op: &str) -> Result<DType, String> {
    let d = t.dtype();
    if !d.is_numeric() {
        return Err(format!("{op} does not accept element type {d}"));
    }
    Ok(d)
}

pub static MATMUL: OpDef = OpDef {
    mnemonic: "matmul",
    summary: "Matrix product with numpy.matmul broadcasting",
    operands: &[req("a"), req("b")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        if a.dtype() != b.dtype() {
            return Err(format!(
                "operand element types differ: {} vs {}",
                a.dtype(),
                b.dtype()
            ));
        }
        let d = infer_numeric(a, "matmul")?;
        Ok(vec![TensorType::new(matmul_shape(&a.shape, &b.shape)?, d)])
    },
    eval: Some(|ctx| Ok(vec![matmul_any(ctx.input(0)?, ctx.input(1)?)?])),
};

// ---------------------------------------------------------------------------
// Gemm

/// Checks that `c` broadcasts one-directionally to (m, n).
fn gemm_bias_ok(c: &[Dim], m: &Dim, n: &Dim) -> Result<(), String> {
    if c.len() > 2 {
        return Err(format!("gemm bias must have rank <= 2, got {}", c.len()));
    }
    let target = [m, n];
    for (d, t) in c.iter().rev().zip(target.iter().rev()) {
        if d.as_fixed() != Some(1) && !d.compatible(t) {
            return Err(format!("gemm bias dim {d} does not broadcast to {t}"));
        }
    }
    Ok(())
}

fn gemm_mn(a: &[Dim], b: &[Dim], ta: bool, tb: bool) -> Result<(Dim, Dim), String> {
    if a.len() != 2 || b.len() != 2 {
        return Err(format!(
            "gemm operands must be 2-D, got ranks {} and {}",
            a.len(),
            b.len()
        ));
    }
    let (m, ka) = if ta { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (kb, n) = if tb { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    if !ka.compatible(kb) {
        return Err(format!("gemm contraction dims differ: {ka} vs {kb}"));
    }
    Ok((m.clone(), n.clone()))
}

fn dims_of(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::fixed(d as i64)).collect()
}

/// `alpha * P + beta * C` for a GEMM product `p` and broadcast bias `c`,
/// computed in type `T` (bias already broadcast to p's layout).
fn gemm_eval<T: GemmElem>(
    a: &[T],
    b: &[T],
    c: Option<Vec<T>>,
    (ta, tb): (bool, bool),
    (m, n, k): (usize, usize, usize),
    alpha: T,
    beta: T,
) -> Result<Vec<T>, String> {
    let (mut out, beta) = match c {
        Some(c) => (c, beta),
        None => (vec![T::default(); m * n], T::default()),
    };
    gemm_batched(a, b, ta, tb, 1, m, n, k, alpha, beta, &mut out)?;
    Ok(out)
}

fn eval_gemm(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let (a, b) = (ctx.input(0)?, ctx.input(1)?);
    let (ta, tb) = (ctx.int("transA")? != 0, ctx.int("transB")? != 0);
    let (alpha, beta) = (ctx.float("alpha")?, ctx.float("beta")?);
    if a.dtype != b.dtype {
        return Err(format!(
            "gemm operand element types differ: {} vs {}",
            a.dtype, b.dtype
        ));
    }
    let (m, n) = gemm_mn(&dims_of(&a.shape), &dims_of(&b.shape), ta, tb)?;
    let (m, n) = (
        m.as_fixed().unwrap_or(0) as usize,
        n.as_fixed().unwrap_or(0) as usize,
    );
    let k = if ta { a.shape[0] } else { a.shape[1] };
    // A zero beta drops C entirely (so inf/NaN in C do not leak through 0 * C).
    let bias = match ctx.opt_input(2) {
        Some(c) if beta != 0.0 => {
            gemm_bias_ok(
                &dims_of(&c.shape),
                &Dim::fixed(m as i64),
                &Dim::fixed(n as i64),
            )?;
            Some((c, util::broadcast_index_map(&c.shape, &[m, n])))
        }
        _ => None,
    };
    let gather = |v: &[f64]| {
        bias.as_ref()
            .map(|(_, map)| map.iter().map(|&i| v[i]).collect::<Vec<f64>>())
    };
    let shape = vec![m, n];
    let y = match compute_class(a.dtype)? {
        Compute::F32 => {
            let c = bias.as_ref().map(|(c, map)| {
                let v = f32_data(c);
                map.iter().map(|&i| v[i]).collect()
            });
            from_f32(
                a.dtype,
                shape,
                gemm_eval(
                    &f32_data(a),
                    &f32_data(b),
                    c,
                    (ta, tb),
                    (m, n, k),
                    alpha as f32,
                    beta as f32,
                )?,
            )
        }
        Compute::F64 => {
            let c = bias.as_ref().and_then(|(c, _)| gather(&c.to_f64_vec()));
            Tensor::from_f64(
                a.dtype,
                shape,
                &gemm_eval(
                    &f64_data(a),
                    &f64_data(b),
                    c,
                    (ta, tb),
                    (m, n, k),
                    alpha,
                    beta,
                )?,
            )
        }
        Compute::I64 => {
            let p = gemm_eval(&i64_data(a), &i64_data(b), None, (ta, tb), (m, n, k), 1, 0)?;
            let c = bias.as_ref().map(|(c, map)| {
                let v = c.to_i64_vec();
                map.iter().map(|&i| v[i]).collect::<Vec<i64>>()
            });
            let integral = |x: f64| x.fract() == 0.0 && x.abs() < 9.2e18;
            if integral(alpha) && integral(beta) {
                let (al, be) = (alpha as i64, beta as i64);
                let y: Vec<i64> = match c {
                    Some(c) => p
                        .iter()
                        .zip(&c)
                        .map(|(&p, &c)| p.wrapping_mul(al).wrapping_add(c.wrapping_mul(be)))
                        .collect(),
                    None => p.iter().map(|&p| p.wrapping_mul(al)).collect(),
                };
                Tensor::from_i64(a.dtype, shape, &y)
            } else {
                let y: Vec<f64> = match c {
                    Some(c) => p
                        .iter()
                        .zip(&c)
                        .map(|(&p, &c)| alpha * p as f64 + beta * c as f64)
                        .collect(),
                    None => p.iter().map(|&p| alpha * p as f64).collect(),
                };
                Tensor::from_f64(a.dtype, shape, &y)
            }
        }
    };
    Ok(vec![y])
}

pub static GEMM: OpDef = OpDef {
    mnemonic: "gemm",
    summary: "alpha * op(A) @ op(B) + beta * C, op transposing on request, C broadcast to (M, N)",
    operands: &[req("a"), req("b"), opt("c")],
    results: Results::Fixed(1),
    attrs: &[
        attr("alpha", AttrKind::Float, Default::Float(1.0)),
        attr("beta", AttrKind::Float, Default::Float(1.0)),
        attr("transA", AttrKind::Int, Default::Int(0)),
        attr("transB", AttrKind::Int, Default::Int(0)),
    ],
    traits: &[],
    infer: |ctx| {
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        if a.dtype() != b.dtype() {
            return Err(format!(
                "operand element types differ: {} vs {}",
                a.dtype(),
                b.dtype()
            ));
        }
        let d = infer_numeric(a, "gemm")?;
        let (m, n) = gemm_mn(
            &a.shape,
            &b.shape,
            ctx.int("transA")? != 0,
            ctx.int("transB")? != 0,
        )?;
        if let Some(c) = ctx.opt_input(2) {
            gemm_bias_ok(&c.shape, &m, &n)?;
        }
        Ok(vec![TensorType::new(vec![m, n], d)])
    },
    eval: Some(eval_gemm),
};

// ---------------------------------------------------------------------------
// Einsum

/// An einsum subscript: letters are their ASCII codes, ellipsis dims are
/// `ELLIPSIS + i` for broadcast position `i` (right-aligned across operands).
type Label = u32;
const ELLIPSIS: Label = 128;

/// A parsed einsum equation, with ellipses expanded for the operand ranks.
#[derive(Debug, PartialEq)]
struct Equation {
    inputs: Vec<Vec<Label>>,
    output: Vec<Label>,
}

/// One term's letters and whether (and where) it has an ellipsis.
fn parse_term(term: &str) -> Result<(Vec<Label>, Option<usize>), String> {
    let mut labels = Vec::new();
    let mut ellipsis = None;
    let mut rest = term;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("...") {
            if ellipsis.replace(labels.len()).is_some() {
                return Err(format!("einsum term '{term}' has more than one ellipsis"));
            }
            rest = after;
        } else if c.is_ascii_alphabetic() {
            labels.push(c as Label);
            rest = &rest[1..];
        } else {
            return Err(format!("einsum term '{term}' has invalid character '{c}'"));
        }
    }
    Ok((labels, ellipsis))
}

/// Inserts the ellipsis labels for `count` dims at `at`, right-aligned in `total`.
fn expand_ellipsis(labels: &[Label], at: Option<usize>, count: usize, total: usize) -> Vec<Label> {
    let Some(at) = at else { return labels.to_vec() };
    let mut out = labels[..at].to_vec();
    out.extend((total - count..total).map(|i| ELLIPSIS + i as Label));
    out.extend_from_slice(&labels[at..]);
    out
}

impl Equation {
    fn parse(equation: &str, ranks: &[usize]) -> Result<Equation, String> {
        let eq: String = equation.chars().filter(|&c| c != ' ').collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq.as_str(), None),
        };
        let terms: Vec<&str> = lhs.split(',').collect();
        if terms.len() != ranks.len() {
            return Err(format!(
                "einsum equation '{equation}' has {} terms for {} operands",
                terms.len(),
                ranks.len()
            ));
        }
        let parsed = terms
            .iter()
            .map(|t| parse_term(t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ell_lens = Vec::with_capacity(ranks.len());
        for ((labels, ell), &rank) in parsed.iter().zip(ranks) {
            let e = match ell {
                Some(_) if labels.len() <= rank => rank - labels.len(),
                None if labels.len() == rank => 0,
                _ => {
                    return Err(format!(
                        "einsum term with {} subscripts for an operand of rank {rank}",
                        labels.len()
                    ))
                }
            };
            ell_lens.push(e);
        }
        let total = ell_lens.iter().copied().max().unwrap_or(0);
        let inputs: Vec<Vec<Label>> = parsed
            .iter()
            .zip(&ell_lens)
            .map(|((labels, ell), &e)| expand_ellipsis(labels, *ell, e, total))
            .collect();
        let output = match rhs {
            Some(r) => {
                let (labels, ell) = parse_term(r)?;
                let out = expand_ellipsis(&labels, ell, total, total);
                for (i, l) in out.iter().enumerate() {
                    if out[..i].contains(l) {
                        return Err(format!("einsum output '{r}' repeats a subscript"));
                    }
                    if !inputs.iter().any(|t| t.contains(l)) {
                        return Err(format!("einsum output '{r}' has a subscript no input has"));
                    }
                }
                out
            }
            None => {
                // Implicit form: ellipsis dims first, then the letters seen
                // exactly once, in ASCII order.
                let mut out: Vec<Label> = (0..total).map(|i| ELLIPSIS + i as Label).collect();
                let mut letters: Vec<Label> = inputs
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|&l| l < ELLIPSIS)
                    .collect();
                letters.sort_unstable();
                let mut i = 0;
                while i < letters.len() {
                    let j = letters[i..]
                        .iter()
                        .take_while(|&&l| l == letters[i])
                        .count();
                    if j == 1 {
                        out.push(letters[i]);
                    }
                    i += j;
                }
                out
            }
        };
        Ok(Equation { inputs, output })
    }
}

fn einsum_infer(ctx: &InferCtx) -> Result<Vec<TensorType>, String> {
    let types: Vec<&TensorType> = ctx
        .operands
        .iter()
        .map(|t| t.ok_or("einsum operand missing"))
        .collect::<Result<_, _>>()?;
    let first = types.first().ok_or("einsum needs at least one operand")?;
    let dtype = infer_numeric(first, "einsum")?;
    if let Some(t) = types.iter().find(|t| t.dtype() != dtype) {
        return Err(format!(
            "einsum operand element types differ: {dtype} vs {}",
            t.dtype()
        ));
    }
    let ranks: Vec<usize> = types.iter().map(|t| t.rank()).collect();
    let eq = Equation::parse(&ctx.string("equation")?, &ranks)?;
    let mut sizes: Vec<(Label, Dim)> = Vec::new();
    for (labels, t) in eq.inputs.iter().zip(&types) {
        for (l, d) in labels.iter().zip(&t.shape) {
            match sizes.iter_mut().find(|(x, _)| x == l) {
                Some((_, cur)) => {
                    *cur = util::broadcast_dims(std::slice::from_ref(cur), std::slice::from_ref(d))?
                        .remove(0)
                }
                None => sizes.push((*l, d.clone())),
            }
        }
    }
    let shape = eq
        .output
        .iter()
        .map(|l| {
            sizes
                .iter()
                .find(|(x, _)| x == l)
                .map(|(_, d)| d.clone())
                .ok_or("einsum output subscript unknown")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![TensorType::new(shape, dtype)])
}

/// An einsum intermediate: dense row-major data with one distinct label per dim.
struct Labeled<T> {
    data: Vec<T>,
    labels: Vec<Label>,
    dims: Vec<usize>,
}

/// A strided view materialized (borrowed when it is already dense row-major).
fn view<'a, T: Copy>(data: &'a [T], shape: &[usize], strides: &[usize]) -> Cow<'a, [T]> {
    let dense = crate::tensor::strides_of(shape);
    let same = shape
        .iter()
        .zip(strides.iter().zip(&dense))
        .all(|(&n, (&s, &d))| n <= 1 || s == d);
    if same && data.len() == shape.iter().product::<usize>() {
        Cow::Borrowed(data)
    } else {
        Cow::Owned(strided_copy(data, shape, strides))
    }
}

impl<T: GemmElem> Labeled<T> {
    /// An operand with repeated labels reduced to their diagonal.
    fn new(data: Vec<T>, shape: &[usize], labels: &[Label]) -> Result<Labeled<T>, String> {
        let st = crate::tensor::strides_of(shape);
        let (mut ul, mut ud, mut us) = (Vec::new(), Vec::new(), Vec::new());
        for ((&l, &d), &s) in labels.iter().zip(shape).zip(&st) {
            match ul.iter().position(|&x| x == l) {
                Some(i) if ud[i] != d => {
                    return Err(format!(
                        "einsum diagonal over dims of sizes {} and {d}",
                        ud[i]
                    ))
                }
                Some(i) => us[i] += s,
                None => {
                    ul.push(l);
                    ud.push(d);
                    us.push(s);
                }
            }
        }
        let data = if ul.len() == labels.len() {
            data
        } else {
            strided_copy(&data, &ud, &us)
        };
        Ok(Labeled {
            data,
            labels: ul,
            dims: ud,
        })
    }

    fn dim(&self, l: Label) -> Option<usize> {
        self.labels
            .iter()
            .position(|&x| x == l)
            .map(|i| self.dims[i])
    }

    /// The data viewed with dims in `order`, each broadcast to `sizes`.
    fn arranged(&self, order: &[Label], sizes: &[usize]) -> Cow<'_, [T]> {
        let st = crate::tensor::strides_of(&self.dims);
        let strides: Vec<usize> = order
            .iter()
            .zip(sizes)
            .map(|(l, &n)| match self.labels.iter().position(|x| x == l) {
                Some(i) if self.dims[i] == n => st[i],
                _ => 0,
            })
            .collect();
        view(&self.data, sizes, &strides)
    }

    /// Sums over every label `keep` rejects.
    fn sum_out(self, keep: impl Fn(Label) -> bool) -> Labeled<T> {
        let (kept, summed): (Vec<usize>, Vec<usize>) =
            (0..self.labels.len()).partition(|&i| keep(self.labels[i]));
        if summed.is_empty() {
            return self;
        }
        let order: Vec<Label> = kept
            .iter()
            .chain(&summed)
            .map(|&i| self.labels[i])
            .collect();
        let sizes: Vec<usize> = kept.iter().chain(&summed).map(|&i| self.dims[i]).collect();
        let group: usize = summed.iter().map(|&i| self.dims[i]).product();
        let outer: usize = kept.iter().map(|&i| self.dims[i]).product();
        let v = self.arranged(&order, &sizes);
        let data: Vec<T> = if group == 0 {
            vec![T::default(); outer]
        } else {
            v.chunks_exact(group)
                .map(|c| c.iter().fold(T::default(), |a, &x| a.add(x)))
                .collect()
        };
        Labeled {
            data,
            labels: kept.iter().map(|&i| self.labels[i]).collect(),
            dims: kept.iter().map(|&i| self.dims[i]).collect(),
        }
    }

    /// The product of two operands, summed over shared labels `needed` rejects.
    fn contract(self, b: Labeled<T>, needed: impl Fn(Label) -> bool) -> Result<Labeled<T>, String> {
        let size = |l: Label| -> Result<usize, String> {
            match (self.dim(l), b.dim(l)) {
                (Some(x), Some(y)) if x == y || y == 1 => Ok(x),
                (Some(1), Some(y)) => Ok(y),
                (Some(x), Some(y)) => Err(format!(
                    "einsum dims {x} and {y} of one subscript do not broadcast"
                )),
                (Some(x), None) | (None, Some(x)) => Ok(x),
                (None, None) => Ok(1),
            }
        };
        let shared: Vec<Label> = self
            .labels
            .iter()
            .copied()
            .filter(|l| b.labels.contains(l))
            .collect();
        let (batch, contr): (Vec<Label>, Vec<Label>) = shared.iter().partition(|&&l| needed(l));
        let a_only: Vec<Label> = self
            .labels
            .iter()
            .copied()
            .filter(|l| !shared.contains(l))
            .collect();
        let b_only: Vec<Label> = b
            .labels
            .iter()
            .copied()
            .filter(|l| !shared.contains(l))
            .collect();
        let sizes_of = |ls: &[Label]| {
            ls.iter()
                .map(|&l| size(l))
                .collect::<Result<Vec<usize>, String>>()
        };
        let (bs, ms, ks, ns) = (
            sizes_of(&batch)?,
            sizes_of(&a_only)?,
            sizes_of(&contr)?,
            sizes_of(&b_only)?,
        );
        let prod = |v: &[usize]| v.iter().product::<usize>();
        let (nb, m, k, n) = (prod(&bs), prod(&ms), prod(&ks), prod(&ns));
        let cat = |x: &[Label], y: &[Label], z: &[Label]| [x, y, z].concat();
        let av = self.arranged(
            &cat(&batch, &a_only, &contr),
            &[bs.clone(), ms.clone(), ks.clone()].concat(),
        );
        let bv = b.arranged(
            &cat(&batch, &contr, &b_only),
            &[bs.clone(), ks, ns.clone()].concat(),
        );
        let mut data = vec![T::default(); nb * m * n];
        gemm_batched(
            &av,
            &bv,
            false,
            false,
            nb,
            m,
            n,
            k,
            T::one(),
            T::default(),
            &mut data,
        )?;
        Ok(Labeled {
            data,
            labels: cat(&batch, &a_only, &b_only),
            dims: [bs, ms, ns].concat(),
        })
    }
}

/// Evaluates an einsum by pairwise contraction, left to right: each operand
/// first loses its diagonals and the labels no one else needs, then meets the
/// running product in one batched GEMM.
fn einsum_run<T: GemmElem>(
    eq: &Equation,
    operands: Vec<(Vec<T>, &[usize])>,
) -> Result<(Vec<T>, Vec<usize>), String> {
    let mut acc: Option<Labeled<T>> = None;
    let count = operands.len();
    for (i, (data, shape)) in operands.into_iter().enumerate() {
        let later = &eq.inputs[i + 1..];
        let needed = |l: Label| eq.output.contains(&l) || later.iter().any(|t| t.contains(&l));
        let cur = Labeled::new(data, shape, &eq.inputs[i])?;
        acc = Some(match acc {
            None => cur.sum_out(needed),
            Some(a) => {
                let a = a.sum_out(|l| needed(l) || cur.labels.contains(&l));
                let cur = cur.sum_out(|l| needed(l) || a.labels.contains(&l));
                a.contract(cur, needed)?
            }
        });
    }
    let acc = acc.ok_or_else(|| format!("einsum needs at least one operand, got {count}"))?;
    let acc = acc.sum_out(|l| eq.output.contains(&l));
    let sizes: Vec<usize> = eq.output.iter().map(|&l| acc.dim(l).unwrap_or(1)).collect();
    let data = acc.arranged(&eq.output, &sizes).into_owned();
    Ok((data, sizes))
}

fn einsum_eval(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let xs: Vec<&Tensor> = ctx
        .inputs
        .iter()
        .map(|t| t.ok_or("einsum operand missing"))
        .collect::<Result<_, _>>()?;
    let dtype = xs.first().ok_or("einsum needs at least one operand")?.dtype;
    if let Some(t) = xs.iter().find(|t| t.dtype != dtype) {
        return Err(format!(
            "einsum operand element types differ: {dtype} vs {}",
            t.dtype
        ));
    }
    let ranks: Vec<usize> = xs.iter().map(|t| t.rank()).collect();
    let eq = Equation::parse(&ctx.string("equation")?, &ranks)?;
    let y = match compute_class(dtype)? {
        Compute::F32 => {
            let (v, s) = einsum_run(
                &eq,
                xs.iter()
                    .map(|t| (f32_data(t).into_owned(), t.shape.as_slice()))
                    .collect(),
            )?;
            from_f32(dtype, s, v)
        }
        Compute::F64 => {
            let (v, s) = einsum_run(
                &eq,
                xs.iter()
                    .map(|t| (f64_data(t).into_owned(), t.shape.as_slice()))
                    .collect(),
            )?;
            Tensor::from_f64(dtype, s, &v)
        }
        Compute::I64 => {
            let (v, s) = einsum_run(
                &eq,
                xs.iter()
                    .map(|t| (i64_data(t).into_owned(), t.shape.as_slice()))
                    .collect(),
            )?;
            Tensor::from_i64(dtype, s, &v)
        }
    };
    Ok(vec![y])
}

pub static EINSUM: OpDef = OpDef {
    mnemonic: "einsum",
    summary: "Einstein summation over the operands (explicit or implicit output, diagonals, ellipsis broadcasting)",
    operands: &[variadic("inputs")],
    results: Results::Fixed(1),
    attrs: &[attr("equation", AttrKind::Str, Default::Required)],
    traits: &[],
    infer: einsum_infer,
    eval: Some(einsum_eval),
};

// ---------------------------------------------------------------------------
// Det

/// Determinant of a dense n×n matrix by LU decomposition with partial pivoting.
fn det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut det = 1.0;
    for c in 0..n {
        let pivot = (c..n)
            .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
            .unwrap_or(c);
        if a[pivot * n + c] == 0.0 {
            return 0.0;
        }
        if pivot != c {
            for j in 0..n {
                a.swap(c * n + j, pivot * n + j);
            }
            det = -det;
        }
        let p = a[c * n + c];
        det *= p;
        for i in c + 1..n {
            let f = a[i * n + c] / p;
            if f != 0.0 {
                for j in c + 1..n {
                    a[i * n + j] -= f * a[c * n + j];
                }
            }
        }
    }
    det
}

pub static DET: OpDef = OpDef {
    mnemonic: "det",
    summary: "Determinant of each square matrix in the trailing two dims",
    operands: &[req("x")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        if !x.dtype().is_float() {
            return Err(format!("det expects a float tensor, got {}", x.dtype()));
        }
        let r = x.rank();
        if r < 2 || !x.shape[r - 2].compatible(&x.shape[r - 1]) {
            return Err(format!(
                "det expects square matrices in the last two dims, got {x}"
            ));
        }
        Ok(vec![x.with_shape(x.shape[..r - 2].to_vec())])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let r = x.rank();
        if !x.dtype.is_float() || r < 2 || x.shape[r - 1] != x.shape[r - 2] {
            return Err(format!(
                "det expects float square matrices, got {} {:?}",
                x.dtype, x.shape
            ));
        }
        let n = x.shape[r - 1];
        let v = x.to_f64_vec();
        let out: Vec<f64> = if n == 0 {
            vec![1.0; x.shape[..r - 2].iter().product()]
        } else {
            v.chunks_exact(n * n).map(|m| det(m.to_vec(), n)).collect()
        };
        Ok(vec![Tensor::from_f64(
            x.dtype,
            x.shape[..r - 2].to_vec(),
            &out,
        )])
    }),
};

// ---------------------------------------------------------------------------
// DFT / STFT

/// A complex value as (re, im).
type Cx = (f64, f64);

/// One 1-D discrete Fourier transform of length `n`: output bin `k` (for `k`
/// in `0..bins`) is `sum_j x[j] e^(∓2πi jk/n)`, over the first `n` inputs
/// (missing ones are zero), scaled by 1/n when `inverse`. Twiddles are indexed
/// by `jk mod n` so large products lose no accuracy.
struct Dft {
    n: usize,
    inverse: bool,
    twiddle: Vec<Cx>,
}

impl Dft {
    fn new(n: usize, inverse: bool) -> Dft {
        let sign = if inverse { 1.0 } else { -1.0 };
        let twiddle = (0..n)
            .map(|j| {
                let a = sign * 2.0 * std::f64::consts::PI * j as f64 / n as f64;
                (a.cos(), a.sin())
            })
            .collect();
        Dft {
            n,
            inverse,
            twiddle,
        }
    }

    fn run(&self, x: &[Cx], bins: usize) -> Vec<Cx> {
        let n = self.n;
        let scale = if self.inverse && n > 0 {
            1.0 / n as f64
        } else {
            1.0
        };
        (0..bins)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (j, &(xr, xi)) in x.iter().take(n).enumerate() {
                    let (c, s) = self.twiddle[(j * k) % n];
                    re += xr * c - xi * s;
                    im += xr * s + xi * c;
                }
                (re * scale, im * scale)
            })
            .collect()
    }

    /// Inverse real transform of a one-sided spectrum (numpy.fft.irfft): the
    /// full spectrum is its Hermitian extension, so the result is real.
    fn run_real_inverse(&self, half: &[Cx]) -> Vec<f64> {
        let n = self.n;
        let bin = |k: usize| half.get(k).copied().unwrap_or((0.0, 0.0));
        let full: Vec<Cx> = (0..n)
            .map(|k| match k {
                // DC and Nyquist bins of a real signal are real.
                0 => (bin(0).0, 0.0),
                k if 2 * k == n => (bin(k).0, 0.0),
                k if 2 * k < n => bin(k),
                k => {
                    let (re, im) = bin(n - k);
                    (re, -im)
                }
            })
            .collect();
        self.run(&full, n).into_iter().map(|(re, _)| re).collect()
    }
}

/// The complex values of a `[..., 1 | 2]` signal tensor.
fn complex_values(x: &Tensor, op: &str) -> Result<Vec<Cx>, String> {
    let v = x.to_f64_vec();
    match x.shape.last() {
        Some(1) => Ok(v.into_iter().map(|r| (r, 0.0)).collect()),
        Some(2) => Ok(v.chunks_exact(2).map(|c| (c[0], c[1])).collect()),
        _ => Err(format!(
            "{op} expects a last dim of 1 (real) or 2 (complex), got shape {:?}",
            x.shape
        )),
    }
}

fn check_signal_type(t: &TensorType, op: &str) -> Result<(), String> {
    if !t.dtype().is_float() {
        return Err(format!("{op} expects a float signal, got {}", t.dtype()));
    }
    match t.shape.last().map(Dim::as_fixed) {
        Some(Some(1 | 2)) | Some(None) => Ok(()),
        _ => Err(format!(
            "{op} expects a last dim of 1 (real) or 2 (complex), got {t}"
        )),
    }
}

/// DFT's axis: a signal axis, never the trailing real/imaginary one.
fn dft_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = util::norm_axis(axis, rank)?;
    if a + 1 == rank {
        return Err(format!("DFT axis {axis} is the complex-component dim"));
    }
    Ok(a)
}

fn scalar_operand(t: &Tensor, what: &str) -> Result<i64, String> {
    if t.len() != 1 {
        return Err(format!("{what} must be a scalar, got shape {:?}", t.shape));
    }
    Ok(t.get_i64(0))
}

fn eval_dft(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    if !x.dtype.is_float() || x.rank() < 2 {
        return Err(format!(
            "dft expects a float signal of rank >= 2, got {} {:?}",
            x.dtype, x.shape
        ));
    }
    let values = complex_values(x, "dft")?;
    let axis = match ctx.opt_input(2) {
        Some(a) => dft_axis(scalar_operand(a, "DFT axis")?, x.rank())?,
        None => x.rank() - 2,
    };
    let (inverse, onesided) = (ctx.int("inverse")? != 0, ctx.int("onesided")? != 0);
    let len = x.shape[axis];
    let n = match ctx.opt_input(1) {
        Some(t) => usize::try_from(scalar_operand(t, "dft_length")?)
            .map_err(|_| "dft_length must be non-negative")?,
        None if inverse && onesided => 2 * len.saturating_sub(1),
        None => len,
    };
    if n == 0 {
        return Err("dft_length must be positive".into());
    }
    let (bins, comps) = match (inverse, onesided) {
        (false, true) => (n / 2 + 1, 2),
        (true, true) => (n, 1),
        _ => (n, 2),
    };
    let lay_shape = &x.shape[..x.rank() - 1];
    let outer: usize = lay_shape[..axis].iter().product();
    let inner: usize = lay_shape[axis + 1..].iter().product();
    let dft = Dft::new(n, inverse);
    let mut out = vec![0.0; outer * bins * inner * comps];
    let mut lane = Vec::with_capacity(len);
    for o in 0..outer {
        for i in 0..inner {
            lane.clear();
            lane.extend((0..len).map(|j| values[(o * len + j) * inner + i]));
            let at = |k: usize| ((o * bins + k) * inner + i) * comps;
            if inverse && onesided {
                for (k, v) in dft.run_real_inverse(&lane).into_iter().enumerate() {
                    out[at(k)] = v;
                }
            } else {
                for (k, (re, im)) in dft.run(&lane, bins).into_iter().enumerate() {
                    out[at(k)] = re;
                    out[at(k) + 1] = im;
                }
            }
        }
    }
    let mut shape = x.shape.clone();
    shape[axis] = bins;
    *shape.last_mut().unwrap_or(&mut 0) = comps;
    Ok(vec![Tensor::from_f64(x.dtype, shape, &out)])
}

pub static DFT: OpDef = OpDef {
    mnemonic: "dft",
    summary: "Discrete Fourier transform along one axis (forward, inverse, one-sided real forms)",
    operands: &[req("input"), opt("dft_length"), opt("axis")],
    results: Results::Fixed(1),
    attrs: &[
        attr("inverse", AttrKind::Int, Default::Int(0)),
        attr("onesided", AttrKind::Int, Default::Int(0)),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        check_signal_type(x, "dft")?;
        let r = x.rank();
        if r < 2 {
            return Err(format!("dft expects a signal of rank >= 2, got {x}"));
        }
        let (inverse, onesided) = (ctx.int("inverse")? != 0, ctx.int("onesided")? != 0);
        let axis = match (ctx.opt_input(2), ctx.const_input(2)) {
            (None, _) => Some(r - 2),
            (Some(_), Some(a)) => Some(dft_axis(scalar_operand(a, "DFT axis")?, r)?),
            (Some(_), None) => None,
        };
        let mut shape = x.shape.clone();
        shape[r - 1] = Dim::fixed(if inverse && onesided { 1 } else { 2 });
        let Some(axis) = axis else {
            // Which dim changes is known only at run time.
            shape[..r - 1].iter_mut().for_each(|d| *d = Dim::Unknown);
            return Ok(vec![x.with_shape(shape)]);
        };
        let len = &x.shape[axis];
        let n = match (ctx.opt_input(1), ctx.sym_input(1)) {
            (None, _) if inverse && onesided => len.sub(&Dim::fixed(1)).mul(&Dim::fixed(2)),
            (None, _) => len.clone(),
            (Some(_), Some(v)) if v.len() == 1 => v[0].clone(),
            (Some(_), _) => Dim::Unknown,
        };
        shape[axis] = match (inverse, onesided) {
            (false, true) => n
                .as_fixed()
                .map(|n| Dim::fixed(n / 2 + 1))
                .unwrap_or(Dim::Unknown),
            _ => n,
        };
        Ok(vec![x.with_shape(shape)])
    },
    eval: Some(eval_dft),
};

/// STFT's frame length: the operand, else the window's length, else the whole signal.
fn stft_frame_length(
    frame_length: Option<i64>,
    window: Option<i64>,
    signal: i64,
) -> Result<i64, String> {
    match (frame_length, window) {
        (Some(f), Some(w)) if f != w => Err(format!(
            "STFT frame_length {f} differs from the window length {w}"
        )),
        (Some(f), _) => Ok(f),
        (None, Some(w)) => Ok(w),
        (None, None) => Ok(signal),
    }
}

fn eval_stft(ctx: &EvalCtx) -> Result<Vec<Tensor>, String> {
    let x = ctx.input(0)?;
    if !x.dtype.is_float() || x.rank() != 3 {
        return Err(format!(
            "stft expects a float signal [batch, length, 1|2], got {} {:?}",
            x.dtype, x.shape
        ));
    }
    let values = complex_values(x, "stft")?;
    let (batch, len) = (x.shape[0], x.shape[1]);
    let step = scalar_operand(ctx.input(1)?, "STFT frame_step")?;
    let window = ctx.opt_input(2).map(|w| w.to_f64_vec());
    let fl = stft_frame_length(
        ctx.opt_input(3)
            .map(|t| scalar_operand(t, "STFT frame_length"))
            .transpose()?,
        window.as_ref().map(|w| w.len() as i64),
        len as i64,
    )?;
    if step <= 0 || fl <= 0 || fl as usize > len {
        return Err(format!(
            "STFT needs frame_step > 0 and 0 < frame_length <= {len}, got {step} and {fl}"
        ));
    }
    let (step, fl) = (step as usize, fl as usize);
    let frames = (len - fl) / step + 1;
    let bins = if ctx.int("onesided")? != 0 {
        fl / 2 + 1
    } else {
        fl
    };
    let dft = Dft::new(fl, false);
    let mut out = Vec::with_capacity(batch * frames * bins * 2);
    let mut frame = Vec::with_capacity(fl);
    for b in 0..batch {
        for f in 0..frames {
            let start = b * len + f * step;
            frame.clear();
            frame.extend(
                values[start..start + fl]
                    .iter()
                    .enumerate()
                    .map(|(j, &(re, im))| {
                        let w = window.as_ref().map_or(1.0, |w| w[j]);
                        (re * w, im * w)
                    }),
            );
            out.extend(
                dft.run(&frame, bins)
                    .into_iter()
                    .flat_map(|(re, im)| [re, im]),
            );
        }
    }
    Ok(vec![Tensor::from_f64(
        x.dtype,
        vec![batch, frames, bins, 2],
        &out,
    )])
}

pub static STFT: OpDef = OpDef {
    mnemonic: "stft",
    summary: "Short-time Fourier transform of [batch, length, 1|2] signals",
    operands: &[
        req("signal"),
        req("frame_step"),
        opt("window"),
        opt("frame_length"),
    ],
    results: Results::Fixed(1),
    attrs: &[attr("onesided", AttrKind::Int, Default::Int(1))],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        check_signal_type(x, "stft")?;
        if x.rank() != 3 {
            return Err(format!(
                "stft expects a signal [batch, length, 1|2], got {x}"
            ));
        }
        let fixed = |i: usize| {
            ctx.const_input(i)
                .map(|t| scalar_operand(t, "STFT operand"))
                .transpose()
        };
        let window = ctx
            .opt_input(2)
            .and_then(|w| w.shape.first().and_then(Dim::as_fixed));
        let (step, fl_op, len) = (fixed(1)?, fixed(3)?, x.shape[1].as_fixed());
        let fl = match (ctx.opt_input(3), fl_op, ctx.opt_input(2)) {
            (Some(_), None, _) => None,
            (Some(_), Some(f), _) => Some(stft_frame_length(Some(f), window, 0)?),
            (None, _, Some(_)) => window,
            (None, _, None) => len,
        };
        let frames = match (len, fl, step) {
            (Some(l), Some(f), Some(s)) if s > 0 && f <= l => Dim::fixed((l - f) / s + 1),
            (_, Some(f), Some(1)) => x.shape[1].sub(&Dim::fixed(f - 1)),
            _ => Dim::Unknown,
        };
        let onesided = ctx.int("onesided")? != 0;
        let bins = fl
            .map(|f| Dim::fixed(if onesided { f / 2 + 1 } else { f }))
            .unwrap_or(Dim::Unknown);
        Ok(vec![x.with_shape(vec![
            x.shape[0].clone(),
            frames,
            bins,
            Dim::fixed(2),
        ])])
    },
    eval: Some(eval_stft),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::ops::testing;

    fn run(
        def: &'static OpDef,
        attrs: &[(&str, Attr)],
        inputs: &[&Tensor],
    ) -> Result<Tensor, String> {
        testing::run(def, &testing::some(inputs), attrs, 1).map(|mut v| v.remove(0))
    }

    fn einsum(eq: &str, inputs: &[&Tensor]) -> Tensor {
        run(&EINSUM, &[("equation", Attr::Str(eq.into()))], inputs).unwrap()
    }

    fn arange(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::f32(shape, (0..n).map(|i| i as f32).collect())
    }

    #[test]
    fn strided_copy_permutes_and_broadcasts() {
        // [[0,1,2],[3,4,5]] transposed
        assert_eq!(
            strided_copy(&[0, 1, 2, 3, 4, 5], &[3, 2], &[1, 3]),
            vec![0, 3, 1, 4, 2, 5]
        );
        assert_eq!(strided_copy(&[7, 8], &[2, 2], &[0, 1]), vec![7, 8, 7, 8]);
        assert_eq!(strided_copy(&[0, 1, 2, 3], &[2], &[3]), vec![0, 3]);
    }

    #[test]
    fn matmul_all_dtypes() {
        // [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]]
        for d in [
            DType::F32,
            DType::F64,
            DType::F16,
            DType::BF16,
            DType::I32,
            DType::I64,
            DType::U32,
            DType::U64,
        ] {
            let a = Tensor::from_f64(d, vec![2, 2], &[1.0, 2.0, 3.0, 4.0]);
            let b = Tensor::from_f64(d, vec![2, 2], &[5.0, 6.0, 7.0, 8.0]);
            let y = run(&MATMUL, &[], &[&a, &b]).unwrap();
            assert_eq!(y.dtype, d);
            assert_eq!(y.to_f64_vec(), vec![19.0, 22.0, 43.0, 50.0], "{d}");
        }
        // int32 wraps: 65536 * 65536 = 2^32 -> 0
        let a = Tensor::from_i64(DType::I32, vec![1, 1], &[65536]);
        assert_eq!(run(&MATMUL, &[], &[&a, &a]).unwrap().to_i64_vec(), vec![0]);
    }

    #[test]
    fn matmul_broadcast_and_vectors() {
        // numpy: (2,3,4) @ (4,) -> (2,3); rows dotted with [0,1,2,3]
        let a = arange(vec![2, 3, 4]);
        let v = Tensor::f32(vec![4], vec![0.0, 1.0, 2.0, 3.0]);
        let y = run(&MATMUL, &[], &[&a, &v]).unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        assert_eq!(y.to_f64_vec(), vec![14.0, 38.0, 62.0, 86.0, 110.0, 134.0]);
        // (3,) @ (2,3,2): batch broadcast of a vector lhs -> (2,2)
        let w = arange(vec![2, 3, 2]);
        let u = Tensor::f32(vec![3], vec![1.0, 1.0, 1.0]);
        let y = run(&MATMUL, &[], &[&u, &w]).unwrap();
        assert_eq!(y.shape, vec![2, 2]);
        assert_eq!(y.to_f64_vec(), vec![6.0, 9.0, 24.0, 27.0]);
    }

    #[test]
    fn gemm_f32_batched_transposes() {
        // a = [[1,2],[3,4]], b^T stored: b = [[5,7],[6,8]] means op(b) = [[5,6],[7,8]]
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [5.0f32, 7.0, 6.0, 8.0];
        let mut c = vec![1.0f32; 8];
        gemm_f32(&a, &b, false, true, 2, 2, 2, 2, 1.0, 1.0, &mut c).unwrap();
        assert_eq!(c, vec![20.0, 23.0, 44.0, 51.0, 20.0, 23.0, 44.0, 51.0]);
        // a^T: a stored [[1,3],[2,4]]
        let mut c = vec![0.0f32; 4];
        gemm_f32(
            &[1.0, 3.0, 2.0, 4.0],
            &[5.0, 6.0, 7.0, 8.0],
            true,
            false,
            1,
            2,
            2,
            2,
            2.0,
            0.0,
            &mut c,
        )
        .unwrap();
        assert_eq!(c, vec![38.0, 44.0, 86.0, 100.0]);
        assert!(gemm_f32(&a, &b, false, false, 1, 3, 2, 2, 1.0, 0.0, &mut c).is_err());
    }

    #[test]
    fn gemm_op_with_bias() {
        let a = Tensor::f32(vec![2, 2], vec![1.0, 3.0, 2.0, 4.0]); // transA -> [[1,2],[3,4]]
        let b = Tensor::f32(vec![2, 2], vec![5.0, 6.0, 7.0, 8.0]);
        let c = Tensor::f32(vec![2], vec![1.0, -1.0]);
        let attrs = [
            ("transA", Attr::Int(1)),
            ("alpha", Attr::Float(0.5)),
            ("beta", Attr::Float(2.0)),
        ];
        let y = run(&GEMM, &attrs, &[&a, &b, &c]).unwrap();
        // 0.5 * [[19,22],[43,50]] + 2 * [1,-1]
        assert_eq!(y.to_f64_vec(), vec![11.5, 9.0, 23.5, 23.0]);
        let ai = Tensor::from_i64(DType::I32, vec![1, 2], &[2, 3]);
        let bi = Tensor::from_i64(DType::I32, vec![2, 1], &[4, 5]);
        let ci = Tensor::from_i64(DType::I32, vec![], &[7]);
        assert_eq!(
            run(&GEMM, &[], &[&ai, &bi, &ci]).unwrap().to_i64_vec(),
            vec![30]
        );
    }

    #[test]
    fn einsum_parses_implicit_and_ellipsis() {
        let eq = Equation::parse("ij,jk", &[2, 2]).unwrap();
        assert_eq!(eq.output, vec!['i' as Label, 'k' as Label]);
        let eq = Equation::parse("...ij, ...jk -> ...ik", &[4, 2]).unwrap();
        assert_eq!(eq.inputs[1], vec!['j' as Label, 'k' as Label]);
        assert_eq!(
            eq.output,
            vec![ELLIPSIS, ELLIPSIS + 1, 'i' as Label, 'k' as Label]
        );
        assert_eq!(
            Equation::parse("Ba", &[2]).unwrap().output,
            vec!['B' as Label, 'a' as Label]
        );
        assert!(Equation::parse("ij", &[3]).is_err());
        assert!(Equation::parse("ij->k", &[2]).is_err());
        assert!(Equation::parse("i.j", &[2]).is_err());
    }

    // Expected values from numpy.einsum.
    #[test]
    fn einsum_matches_numpy() {
        let a = arange(vec![2, 3, 4]);
        let at = einsum("bij->bji", &[&a]);
        assert_eq!(at.shape, vec![2, 4, 3]);
        let y = einsum("bij,bjk->bik", &[&a, &at]);
        assert_eq!(y.to_f64_vec()[..3], [14.0, 38.0, 62.0]);
        assert_eq!(
            y.to_f64_vec()[10..],
            [950.0, 1166.0, 950.0, 1230.0, 1510.0, 1166.0, 1510.0, 1854.0]
        );
        let sq = arange(vec![3, 3]);
        assert_eq!(einsum("ii->i", &[&sq]).to_f64_vec(), vec![0.0, 4.0, 8.0]);
        assert_eq!(einsum("ii", &[&sq]).to_f64_vec(), vec![12.0]);
        let b = arange(vec![2, 3, 3]);
        assert_eq!(
            einsum("bii->bi", &[&b]).to_f64_vec(),
            vec![0.0, 4.0, 8.0, 9.0, 13.0, 17.0]
        );
        let y = arange(vec![4, 5]);
        let r = einsum("...ij,jk->...ik", &[&a, &y]);
        assert_eq!(r.shape, vec![2, 3, 5]);
        assert_eq!(r.to_f64_vec()[25..], [670.0, 756.0, 842.0, 928.0, 1014.0]);
        let u = Tensor::f32(vec![2], vec![1.0, 2.0]);
        let v = Tensor::f32(vec![3], vec![3.0, 4.0, 5.0]);
        assert_eq!(
            einsum("i,j->ij", &[&u, &v]).to_f64_vec(),
            vec![3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        );
        let p = arange(vec![2, 3, 4]);
        let q = arange(vec![3, 2, 5]);
        let r = einsum("ijk,jil->kl", &[&p, &q]);
        assert_eq!(r.shape, vec![4, 5]);
        assert_eq!(
            r.to_f64_vec()[..5],
            [1000.0, 1060.0, 1120.0, 1180.0, 1240.0]
        );
        assert_eq!(
            r.to_f64_vec()[15..],
            [1225.0, 1303.0, 1381.0, 1459.0, 1537.0]
        );
        // broadcast ellipsis of different lengths
        let m = arange(vec![2, 3]);
        let w = arange(vec![3]);
        assert_eq!(
            einsum("...i,...i->...", &[&m, &w]).to_f64_vec(),
            vec![5.0, 14.0]
        );
        // three operands, scalar result
        assert_eq!(einsum("i,i,i->", &[&w, &w, &w]).to_f64_vec(), vec![9.0]);
    }

    #[test]
    fn einsum_ints_and_f16() {
        let a = Tensor::from_i64(DType::I32, vec![2, 2], &[1, 2, 3, 4]);
        assert_eq!(
            einsum("ij,jk->ik", &[&a, &a]).to_i64_vec(),
            vec![7, 10, 15, 22]
        );
        let h = Tensor::from_f64(DType::F16, vec![2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let y = einsum("ij->", &[&h]);
        assert_eq!((y.dtype, y.to_f64_vec()), (DType::F16, vec![10.0]));
    }

    #[test]
    fn det_matches_numpy() {
        let x = Tensor::f32(
            vec![3, 3],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0],
        );
        let d = run(&DET, &[], &[&x]).unwrap().to_f64_vec()[0];
        assert!((d + 3.0).abs() < 1e-5, "{d}");
        let x = Tensor::f32(vec![2, 2, 2], vec![0.0, 1.0, 1.0, 0.0, 2.0, 1.0, 1.0, 3.0]);
        assert_eq!(run(&DET, &[], &[&x]).unwrap().to_f64_vec(), vec![-1.0, 5.0]);
    }

    #[test]
    fn matmul_infer_keeps_symbols() {
        let b = Dim::sym("batch");
        let a = TensorType::new(vec![b.clone(), Dim::sym("seq"), Dim::fixed(64)], DType::F32);
        let w = TensorType::fixed(&[64, 32], DType::F32);
        assert_eq!(
            matmul_shape(&a.shape, &w.shape).unwrap(),
            vec![b, Dim::sym("seq"), Dim::fixed(32)]
        );
    }

    /// A 1-D signal in DFT layout: [n, comps] f64.
    fn signal(v: &[f64], comps: usize) -> Tensor {
        Tensor::from_f64(DType::F64, vec![v.len() / comps, comps], v)
    }

    fn run_dft(attrs: &[(&str, Attr)], inputs: &[Option<&Tensor>]) -> Tensor {
        testing::run(&DFT, inputs, attrs, 1).unwrap().remove(0)
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        assert!(
            a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5),
            "{a:?} vs {b:?}"
        );
    }

    // Expected values from numpy.fft.
    #[test]
    fn dft_forms_match_numpy() {
        let x = signal(&[1.0, 2.0, 3.0, 4.0, 5.0], 1);
        let y = run_dft(&[], &[Some(&x)]);
        assert_eq!(y.shape, vec![5, 2]);
        close(&y.to_f64_vec()[..4], &[15.0, 0.0, -2.5, 3.440955]);
        close(&y.to_f64_vec()[8..], &[-2.5, -3.440955]);
        // rfft with dft_length 4 truncates the signal
        let n = Tensor::scalar_i64(4);
        let y = run_dft(&[("onesided", Attr::Int(1))], &[Some(&x), Some(&n)]);
        assert_eq!(y.shape, vec![3, 2]);
        close(&y.to_f64_vec(), &[10.0, 0.0, -2.0, 2.0, -2.0, 0.0]);
        // ifft of a complex signal
        let c = signal(&[1.0, 2.0, 3.0, -1.0, 0.5, 0.0, -2.0, 1.0], 2);
        let y = run_dft(&[("inverse", Attr::Int(1))], &[Some(&c)]);
        close(
            &y.to_f64_vec(),
            &[0.625, 0.5, 0.625, 1.75, 0.125, 0.5, -0.375, -0.75],
        );
        // irfft: one-sided spectrum back to a real signal of odd length 5
        let h = signal(&[10.0, 1.0, -2.0, 2.0, -2.0, 3.0], 2);
        let five = Tensor::scalar_i64(5);
        let y = run_dft(
            &[("inverse", Attr::Int(1)), ("onesided", Attr::Int(1))],
            &[Some(&h), Some(&five)],
        );
        assert_eq!(y.shape, vec![5, 1]);
        close(
            &y.to_f64_vec(),
            &[
                0.4,
                0.9338124842129094,
                3.071039617720206,
                1.7289603822797943,
                3.8661875157870913,
            ],
        );
        // default length of irfft is 2 * (3 - 1) = 4
        let h = signal(&[10.0, 0.0, -2.0, 2.0, -2.0, 0.0], 2);
        let y = run_dft(
            &[("inverse", Attr::Int(1)), ("onesided", Attr::Int(1))],
            &[Some(&h)],
        );
        close(&y.to_f64_vec(), &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn stft_frames_a_signal() {
        // Two frames of length 4, step 2, of [1..6]: rfft([1,2,3,4]) and rfft([3,4,5,6]).
        let x = Tensor::f32(vec![1, 6, 1], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let step = Tensor::scalar_i64(2);
        let fl = Tensor::scalar_i64(4);
        let y = testing::run(&STFT, &[Some(&x), Some(&step), None, Some(&fl)], &[], 1)
            .unwrap()
            .remove(0);
        assert_eq!(y.shape, vec![1, 2, 3, 2]);
        close(
            &y.to_f64_vec(),
            &[
                10.0, 0.0, -2.0, 2.0, -2.0, 0.0, 18.0, 0.0, -2.0, 2.0, -2.0, 0.0,
            ],
        );
    }
}
