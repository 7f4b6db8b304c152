//! Reductions and arg_max / arg_min against the reference interpreter: every
//! kind, axes sets (leading, trailing, interior, all, none), keepdims,
//! integer and half types, 1 vs 2 threads bit-identical.

use crate::common::check;

/// `tsr.<op>` over `x: tensor<shape x dt>` with constant `axes` (None: no
/// axes operand).
fn reduce(op: &str, shape: &[usize], dt: &str, axes: Option<&[i64]>, attrs: &str) -> String {
    let out = out_shape(shape, axes, attrs);
    let x_ty = format!("tensor<{}{dt}>", prefix(shape));
    let y_ty = format!("tensor<{}{dt}>", prefix(&out));
    match axes {
        Some(a) => format!(
            "tsr.graph @g(%x: {x_ty}) -> (\"y\": {y_ty}) {{\n\
               %a = tsr.constant {{value = @axes}} : () -> tensor<{}xi64>\n\
               %y = tsr.{op} %x, %a {{{attrs}}} : ({x_ty}, tensor<{}xi64>) -> {y_ty}\n\
               tsr.return %y\n}}\n\
             tsr.constants {{\n  @axes = dense<{:?}> : tensor<{}xi64>\n}}\n",
            a.len(),
            a.len(),
            a,
            a.len()
        ),
        None => format!(
            "tsr.graph @g(%x: {x_ty}) -> (\"y\": {y_ty}) {{\n\
               %y = tsr.{op} %x {{{attrs}}} : ({x_ty}) -> {y_ty}\n\
               tsr.return %y\n}}\n"
        ),
    }
}

fn prefix(s: &[usize]) -> String {
    s.iter().map(|d| format!("{d}x")).collect()
}

/// The reduced shape, computed here by the ONNX rule (independently of the
/// IR's inference).
fn out_shape(shape: &[usize], axes: Option<&[i64]>, attrs: &str) -> Vec<usize> {
    let keep = !attrs.contains("keepdims = 0");
    let noop = attrs.contains("noop_with_empty_axes = 1");
    let r = shape.len() as i64;
    let set: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&x| ((x + r) % r) as usize).collect(),
        _ if noop => vec![],
        _ => (0..shape.len()).collect(),
    };
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (set.contains(&i), keep) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

const KINDS: &[&str] = &[
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "reduce_min",
    "reduce_prod",
    "reduce_l1",
    "reduce_l2",
    "reduce_log_sum",
    "reduce_log_sum_exp",
    "reduce_sum_square",
];

#[test]
fn every_kind_on_f32_with_axis_sets() {
    let shape = [3, 5, 7];
    for op in KINDS {
        for (axes, attrs) in [
            (Some(&[-1i64][..]), ""),
            (Some(&[0][..]), "keepdims = 0"),
            (Some(&[1][..]), ""),
            (Some(&[0, 2][..]), "keepdims = 0"),
            (None, ""),
            (None, "keepdims = 0"),
        ] {
            if *op == "reduce_log_sum" {
                // log of a sum of signed random values is NaN in places;
                // checked on its own below with positive data.
                continue;
            }
            check(&reduce(op, &shape, "f32", axes, attrs));
        }
    }
}

#[test]
fn log_sum_and_noop_axes() {
    // Squares keep the summed values positive, so the log is defined.
    check(
        "tsr.graph @g(%x: tensor<4x6xf32>) -> (\"y\": tensor<4x1xf32>) {\n\
           %a = tsr.constant {value = @axes} : () -> tensor<1xi64>\n\
           %s = tsr.mul %x, %x : (tensor<4x6xf32>, tensor<4x6xf32>) -> tensor<4x6xf32>\n\
           %y = tsr.reduce_log_sum %s, %a : (tensor<4x6xf32>, tensor<1xi64>) -> tensor<4x1xf32>\n\
           tsr.return %y\n}\n\
         tsr.constants {\n  @axes = dense<[1]> : tensor<1xi64>\n}\n",
    );
    for op in ["reduce_sum_square", "reduce_l1", "reduce_max"] {
        check(&reduce(
            op,
            &[4, 3],
            "f32",
            Some(&[]),
            "noop_with_empty_axes = 1",
        ));
        check(&reduce(
            op,
            &[4, 3],
            "f32",
            None,
            "noop_with_empty_axes = 1",
        ));
    }
}

#[test]
fn integer_and_half_types() {
    for op in [
        "reduce_sum",
        "reduce_mean",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
        "reduce_l1",
        "reduce_sum_square",
    ] {
        for dt in ["i32", "i64", "i8", "u8"] {
            check(&reduce(op, &[3, 4, 5], dt, Some(&[1]), ""));
        }
    }
    for op in [
        "reduce_sum",
        "reduce_mean",
        "reduce_max",
        "reduce_log_sum_exp",
    ] {
        for dt in ["f16", "f64"] {
            check(&reduce(op, &[2, 9, 5], dt, Some(&[1, 2]), "keepdims = 0"));
        }
    }
}

fn arg(op: &str, shape: &[usize], dt: &str, axis: i64, keep: bool, last: bool) -> String {
    let r = shape.len() as i64;
    let a = ((axis + r) % r) as usize;
    let out: Vec<usize> = shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| {
            if i != a {
                Some(d)
            } else if keep {
                Some(1)
            } else {
                None
            }
        })
        .collect();
    let x_ty = format!("tensor<{}{dt}>", prefix(shape));
    let y_ty = format!("tensor<{}i64>", prefix(&out));
    format!(
        "tsr.graph @g(%x: {x_ty}) -> (\"y\": {y_ty}) {{\n\
           %y = tsr.{op} %x {{axis = {axis}, keepdims = {}, select_last_index = {}}} : ({x_ty}) -> {y_ty}\n\
           tsr.return %y\n}}\n",
        keep as i64, last as i64
    )
}

#[test]
fn arg_max_min_axes_and_ties() {
    for op in ["arg_max", "arg_min"] {
        for axis in [0, 1, -1] {
            for (keep, last) in [(true, false), (false, true)] {
                check(&arg(op, &[4, 5, 6], "f32", axis, keep, last));
            }
        }
        // Small integers make ties common: first vs last index matters.
        for last in [false, true] {
            check(&arg(op, &[6, 7], "i8", 1, true, last));
            check(&arg(op, &[6, 7], "u8", 0, false, last));
        }
    }
}
