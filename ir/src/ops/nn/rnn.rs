//! Recurrent layers: RNN, GRU and LSTM (ONNX opset 22 signatures), in every
//! direction (forward, reverse, bidirectional), both layouts, with
//! per-batch `sequence_lens`, initial states, LSTM peepholes and coupled
//! input/forget gates, GRU `linear_before_reset`, the full list of ONNX
//! activation functions with their alpha/beta parameters, and `clip`.
//!
//! The input projection of all time steps is one matrix product per
//! direction; each step then adds the recurrent product `H·Rᵀ`. Steps past a
//! batch entry's sequence length leave its state unchanged and write zeros to
//! `Y`, so `Y_h`/`Y_c` hold the state after the last valid step (zeros for
//! an empty sequence, as in onnxruntime). In the
//! reverse direction each entry is read backwards from its own last valid
//! step (as onnxruntime does).

use super::{float_dtype, gemm, real_dispatch, Mat, Real};
use crate::attr::{Attr, AttrKind};
use crate::dim::Dim;
use crate::ops::*;

/// Which recurrent cell an op instance computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CellKind {
    Rnn,
    Gru,
    Lstm,
}

impl CellKind {
    /// Gate blocks stacked in W and R (`i` / `zrh` / `iofc`).
    fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }

    /// Activation functions per direction, with their defaults (f, g, h).
    fn default_activations(self) -> &'static [&'static str] {
        match self {
            CellKind::Rnn => &["Tanh"],
            CellKind::Gru => &["Sigmoid", "Tanh"],
            CellKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            CellKind::Rnn => "RNN",
            CellKind::Gru => "GRU",
            CellKind::Lstm => "LSTM",
        }
    }
}

/// The activation functions ONNX recurrent ops accept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RnnActivation {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl RnnActivation {
    /// Parses a list of activation names (case-insensitive), taking alpha
    /// and beta values from the lists in order for the functions that use
    /// them; a function whose value is missing gets its ONNX default.
    pub fn parse_list(
        names: &[String],
        alphas: &[f64],
        betas: &[f64],
    ) -> Result<Vec<RnnActivation>, String> {
        let (mut ai, mut bi) = (alphas.iter().copied(), betas.iter().copied());
        names
            .iter()
            .map(|n| {
                let mut alpha = |d: f64| ai.next().unwrap_or(d);
                Ok(match n.to_ascii_lowercase().as_str() {
                    "relu" => RnnActivation::Relu,
                    "tanh" => RnnActivation::Tanh,
                    "sigmoid" => RnnActivation::Sigmoid,
                    "affine" => RnnActivation::Affine(alpha(1.0), bi.next().unwrap_or(0.0)),
                    "leakyrelu" => RnnActivation::LeakyRelu(alpha(0.01)),
                    "thresholdedrelu" => RnnActivation::ThresholdedRelu(alpha(1.0)),
                    "scaledtanh" => RnnActivation::ScaledTanh(alpha(1.0), bi.next().unwrap_or(1.0)),
                    "hardsigmoid" => {
                        RnnActivation::HardSigmoid(alpha(0.2), bi.next().unwrap_or(0.5))
                    }
                    "elu" => RnnActivation::Elu(alpha(1.0)),
                    "softsign" => RnnActivation::Softsign,
                    "softplus" => RnnActivation::Softplus,
                    other => return Err(format!("unknown activation function '{other}'")),
                })
            })
            .collect()
    }

    pub fn apply(self, x: f64) -> f64 {
        match self {
            RnnActivation::Relu => x.max(0.0),
            RnnActivation::Tanh => x.tanh(),
            RnnActivation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            RnnActivation::Affine(a, b) => a * x + b,
            RnnActivation::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            RnnActivation::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            RnnActivation::ScaledTanh(a, b) => a * (b * x).tanh(),
            RnnActivation::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            RnnActivation::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            RnnActivation::Softsign => x / (1.0 + x.abs()),
            // ln(1 + e^x) without overflow for large x.
            RnnActivation::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        }
    }
}

/// An activation applied to a clipped pre-activation, in the kernel's type.
#[derive(Clone, Copy, Debug)]
struct Act {
    f: RnnActivation,
    clip: Option<f64>,
}

impl Act {
    fn at<R: Real>(self, x: R) -> R {
        let x = x.to_f64();
        let x = match self.clip {
            Some(c) => x.clamp(-c, c),
            None => x,
        };
        R::of(self.f.apply(x))
    }
}

/// The directions an op instance runs, in output order.
fn directions(s: &str) -> Result<&'static [bool], String> {
    // `true` = reverse
    match s {
        "forward" => Ok(&[false]),
        "reverse" => Ok(&[true]),
        "bidirectional" => Ok(&[false, true]),
        other => Err(format!(
            "direction must be forward, reverse or bidirectional, got '{other}'"
        )),
    }
}

fn layout_attr(ctx: &impl AttrAccess) -> Result<bool, String> {
    match ctx.int("layout")? {
        0 => Ok(false),
        1 => Ok(true),
        l => Err(format!("layout must be 0 or 1, got {l}")),
    }
}

/// Everything an op instance's attributes decide.
struct Config {
    kind: CellKind,
    reverse: &'static [bool],
    batch_major: bool,
    /// `kind.default_activations().len()` activations per direction.
    acts: Vec<Act>,
    linear_before_reset: bool,
    input_forget: bool,
}

impl Config {
    fn read(ctx: &EvalCtx, kind: CellKind) -> Result<Config, String> {
        let reverse = directions(&ctx.string("direction")?)?;
        let per_dir = kind.default_activations().len();
        let names: Vec<String> = match ctx.attr("activations") {
            Some(Attr::Strs(v)) if !v.is_empty() => v,
            Some(Attr::Str(s)) => vec![s],
            _ => kind
                .default_activations()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let opt_floats = |n: &str| -> Result<Vec<f64>, String> {
            if ctx.has_attr(n) {
                ctx.floats(n)
            } else {
                Ok(Vec::new())
            }
        };
        let parsed = RnnActivation::parse_list(
            &names,
            &opt_floats("activation_alpha")?,
            &opt_floats("activation_beta")?,
        )?;
        let need = per_dir * reverse.len();
        // One set given for a bidirectional op applies to both directions.
        let parsed = if parsed.len() >= need {
            parsed[..need].to_vec()
        } else if parsed.len() == per_dir {
            parsed.repeat(reverse.len())
        } else {
            return Err(format!(
                "{} needs {need} activations for {} direction(s), got {}",
                kind.name(),
                reverse.len(),
                parsed.len()
            ));
        };
        let clip = if ctx.has_attr("clip") {
            let c = ctx.float("clip")?;
            if c.is_nan() || c < 0.0 {
                return Err(format!("clip must be a non-negative threshold, got {c}"));
            }
            Some(c)
        } else {
            None
        };
        let flag = |n: &str| -> Result<bool, String> {
            Ok(ctx.def().attr_spec(n).is_some() && ctx.int(n)? != 0)
        };
        Ok(Config {
            kind,
            reverse,
            batch_major: layout_attr(ctx)?,
            acts: parsed.into_iter().map(|f| Act { f, clip }).collect(),
            linear_before_reset: flag("linear_before_reset")?,
            input_forget: flag("input_forget")?,
        })
    }
}

/// Sizes of one op instance, checked against every operand.
#[derive(Clone, Copy, Debug)]
struct Dims {
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    dirs: usize,
}

fn check_shape(t: &Tensor, want: &[usize], what: &str) -> Result<(), String> {
    if t.shape != want {
        return Err(format!("{what} has shape {:?}, expected {want:?}", t.shape));
    }
    Ok(())
}

/// An initial state operand in time-major order `[dir][batch][hidden]`.
fn load_state<R: Real>(
    t: Option<&Tensor>,
    d: &Dims,
    batch_major: bool,
    what: &str,
) -> Result<Vec<R>, String> {
    let n = d.dirs * d.batch * d.hidden;
    let Some(t) = t else {
        return Ok(vec![R::ZERO; n]);
    };
    let want = if batch_major {
        [d.batch, d.dirs, d.hidden]
    } else {
        [d.dirs, d.batch, d.hidden]
    };
    check_shape(t, &want, what)?;
    let v = R::load(t);
    if !batch_major {
        return Ok(v);
    }
    Ok(swap_outer(&v, d.batch, d.dirs, d.hidden))
}

/// `[a][b][inner]` -> `[b][a][inner]`.
fn swap_outer<T: Copy>(v: &[T], a: usize, b: usize, inner: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for j in 0..b {
        for i in 0..a {
            out.extend_from_slice(&v[(i * b + j) * inner..(i * b + j + 1) * inner]);
        }
    }
    out
}

/// Per-batch valid lengths (all `seq` when the operand is absent).
fn sequence_lengths(t: Option<&Tensor>, d: &Dims) -> Result<Vec<usize>, String> {
    let Some(t) = t else {
        return Ok(vec![d.seq; d.batch]);
    };
    if !t.dtype.is_int() {
        return Err(format!("sequence_lens must be integers, got {}", t.dtype));
    }
    check_shape(t, &[d.batch], "sequence_lens")?;
    t.to_i64_vec()
        .into_iter()
        .map(|l| {
            usize::try_from(l)
                .ok()
                .filter(|&u| u <= d.seq)
                .ok_or_else(|| format!("sequence length {l} is outside [0, {}]", d.seq))
        })
        .collect()
}

/// The weights of one direction, in the kernel's type.
struct DirWeights<'a, R> {
    w: &'a [R],
    r: &'a [R],
    /// Input bias `Wb` and recurrent bias `Rb`, gate-major.
    wb: &'a [R],
    rb: &'a [R],
    /// LSTM peepholes `P[iof]`, when given.
    p: Option<&'a [R]>,
    acts: &'a [Act],
}

fn recurrent_kernel<R: Real>(ctx: &EvalCtx, kind: CellKind) -> Result<Vec<Tensor>, String> {
    let cfg = Config::read(ctx, kind)?;
    let (x_t, w_t, r_t) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    if x_t.rank() != 3 || w_t.rank() != 3 || r_t.rank() != 3 {
        return Err(format!(
            "{} needs X, W and R of rank 3, got {:?}, {:?} and {:?}",
            kind.name(),
            x_t.shape,
            w_t.shape,
            r_t.shape
        ));
    }
    let (seq, batch) = if cfg.batch_major {
        (x_t.shape[1], x_t.shape[0])
    } else {
        (x_t.shape[0], x_t.shape[1])
    };
    let hidden = r_t.shape[2];
    if ctx.has_attr("hidden_size") && ctx.int("hidden_size")? != hidden as i64 {
        return Err(format!(
            "hidden_size {} does not match R's last dim {hidden}",
            ctx.int("hidden_size")?
        ));
    }
    let d = Dims {
        seq,
        batch,
        input: x_t.shape[2],
        hidden,
        dirs: cfg.reverse.len(),
    };
    let gh = kind.gates() * hidden;
    check_shape(w_t, &[d.dirs, gh, d.input], "W")?;
    check_shape(r_t, &[d.dirs, gh, hidden], "R")?;
    let b = match ctx.opt_input(3) {
        Some(t) => {
            check_shape(t, &[d.dirs, 2 * gh], "B")?;
            R::load(t)
        }
        None => vec![R::ZERO; d.dirs * 2 * gh],
    };
    let lens = sequence_lengths(ctx.opt_input(4), &d)?;
    let mut h = load_state::<R>(ctx.opt_input(5), &d, cfg.batch_major, "initial_h")?;
    let (mut c, p) = if kind == CellKind::Lstm {
        let c = load_state::<R>(ctx.opt_input(6), &d, cfg.batch_major, "initial_c")?;
        let p = match ctx.opt_input(7) {
            Some(t) => {
                check_shape(t, &[d.dirs, 3 * hidden], "P")?;
                Some(R::load(t))
            }
            None => None,
        };
        (c, p)
    } else {
        (Vec::new(), None)
    };
    let mut xs = R::load(x_t);
    if cfg.batch_major {
        xs = swap_outer(&xs, batch, seq, d.input);
    }
    let (w, r) = (R::load(w_t), R::load(r_t));
    let per_dir = kind.default_activations().len();
    let hb = batch * hidden;
    // Y in time-major order [seq][dir][batch][hidden].
    let mut y = vec![R::ZERO; seq * d.dirs * hb];
    for (di, &reverse) in cfg.reverse.iter().enumerate() {
        let weights = DirWeights {
            w: &w[di * gh * d.input..(di + 1) * gh * d.input],
            r: &r[di * gh * hidden..(di + 1) * gh * hidden],
            wb: &b[di * 2 * gh..di * 2 * gh + gh],
            rb: &b[di * 2 * gh + gh..(di + 1) * 2 * gh],
            p: p.as_ref()
                .map(|p| &p[di * 3 * hidden..(di + 1) * 3 * hidden]),
            acts: &cfg.acts[di * per_dir..(di + 1) * per_dir],
        };
        let hs = &mut h[di * hb..(di + 1) * hb];
        let cs = if kind == CellKind::Lstm {
            &mut c[di * hb..(di + 1) * hb]
        } else {
            &mut []
        };
        run_direction(&cfg, &d, &weights, &xs, &lens, reverse, hs, cs, &mut y, di)?;
        // onnxruntime reports zero final states for empty sequences rather
        // than passing the initial state through.
        for b in (0..batch).filter(|&b| lens[b] == 0) {
            hs[b * hidden..(b + 1) * hidden].fill(R::ZERO);
            if !cs.is_empty() {
                cs[b * hidden..(b + 1) * hidden].fill(R::ZERO);
            }
        }
    }
    let dtype = x_t.dtype;
    let mut outs = Vec::with_capacity(ctx.num_results);
    for i in 0..ctx
        .num_results
        .min(if kind == CellKind::Lstm { 3 } else { 2 })
    {
        outs.push(match i {
            0 if cfg.batch_major => R::store(
                dtype,
                vec![batch, seq, d.dirs, hidden],
                // [seq][dir·batch] -> [batch][seq][dir] per hidden vector
                reorder_y(&y, &d),
            ),
            0 => R::store(dtype, vec![seq, d.dirs, batch, hidden], y.clone()),
            _ => {
                let state = if i == 1 { &h } else { &c };
                if cfg.batch_major {
                    R::store(
                        dtype,
                        vec![batch, d.dirs, hidden],
                        swap_outer(state, d.dirs, batch, hidden),
                    )
                } else {
                    R::store(dtype, vec![d.dirs, batch, hidden], state.clone())
                }
            }
        });
    }
    if outs.len() != ctx.num_results {
        return Err(format!(
            "{} has at most {} results",
            kind.name(),
            outs.len()
        ));
    }
    Ok(outs)
}

/// Y from `[seq][dir][batch][hidden]` to `[batch][seq][dir][hidden]`.
fn reorder_y<R: Real>(y: &[R], d: &Dims) -> Vec<R> {
    let mut out = Vec::with_capacity(y.len());
    for b in 0..d.batch {
        for t in 0..d.seq {
            for di in 0..d.dirs {
                let at = ((t * d.dirs + di) * d.batch + b) * d.hidden;
                out.extend_from_slice(&y[at..at + d.hidden]);
            }
        }
    }
    out
}

/// Runs one direction over the sequence, updating the state `h` (and `c`
/// for LSTM) in place and writing its slice of `y`.
#[allow(clippy::too_many_arguments)]
fn run_direction<R: Real>(
    cfg: &Config,
    d: &Dims,
    wt: &DirWeights<R>,
    xs: &[R],
    lens: &[usize],
    reverse: bool,
    h: &mut [R],
    c: &mut [R],
    y: &mut [R],
    di: usize,
) -> Result<(), String> {
    let (batch, hid) = (d.batch, d.hidden);
    let gh = cfg.kind.gates() * hid;
    // Input projection of every step: xw[t·batch + b] = x·Wᵀ + Wb.
    let rows = d.seq * batch;
    let mut xw = vec![R::ZERO; rows * gh];
    gemm(
        xs,
        Mat::dense(0, rows, d.input),
        wt.w,
        Mat::dense(0, gh, d.input).t(),
        R::ZERO,
        &mut xw,
        Mat::dense(0, rows, gh),
    )?;
    for row in xw.chunks_mut(gh.max(1)) {
        row.iter_mut().zip(wt.wb).for_each(|(e, &b)| *e += b);
    }
    let mut hr = vec![R::ZERO; batch * gh];
    let mut scratch = vec![R::ZERO; batch * hid];
    for s in 0..d.seq {
        // Recurrent projection: hr = H·Rᵀ + Rb.
        gemm(
            h,
            Mat::dense(0, batch, hid),
            wt.r,
            Mat::dense(0, gh, hid).t(),
            R::ZERO,
            &mut hr,
            Mat::dense(0, batch, gh),
        )?;
        for row in hr.chunks_mut(gh.max(1)) {
            row.iter_mut().zip(wt.rb).for_each(|(e, &b)| *e += b);
        }
        let active = |b: usize| s < lens[b];
        let time = |b: usize| if reverse { lens[b] - 1 - s } else { s };
        if cfg.kind == CellKind::Gru && !cfg.linear_before_reset {
            gru_reset_projection(wt, d, h, &mut hr, &mut scratch, &xw, s, lens, reverse)?;
        }
        for b in (0..batch).filter(|&b| active(b)) {
            let t = time(b);
            let x = &xw[(t * batch + b) * gh..(t * batch + b + 1) * gh];
            let r = &hr[b * gh..(b + 1) * gh];
            let hb = &mut h[b * hid..(b + 1) * hid];
            match cfg.kind {
                CellKind::Rnn => rnn_step(wt.acts[0], x, r, hb),
                CellKind::Gru => gru_step(wt.acts, cfg.linear_before_reset, x, r, hb),
                CellKind::Lstm => lstm_step(
                    wt,
                    cfg.input_forget,
                    x,
                    r,
                    hb,
                    &mut c[b * hid..(b + 1) * hid],
                ),
            }
            let at = ((t * d.dirs + di) * batch + b) * hid;
            y[at..at + hid].copy_from_slice(hb);
        }
    }
    Ok(())
}

/// For GRU without `linear_before_reset`, replaces the `h` block of `hr`
/// by `(r ⊙ H)·Rhᵀ + Rbh`, which needs the reset gate first.
#[allow(clippy::too_many_arguments)]
fn gru_reset_projection<R: Real>(
    wt: &DirWeights<R>,
    d: &Dims,
    h: &[R],
    hr: &mut [R],
    rh: &mut [R],
    xw: &[R],
    s: usize,
    lens: &[usize],
    reverse: bool,
) -> Result<(), String> {
    let (batch, hid) = (d.batch, d.hidden);
    let gh = 3 * hid;
    for b in 0..batch {
        let dst = &mut rh[b * hid..(b + 1) * hid];
        if s >= lens[b] {
            dst.fill(R::ZERO);
            continue;
        }
        let t = if reverse { lens[b] - 1 - s } else { s };
        let x = &xw[(t * batch + b) * gh..];
        let r = &hr[b * gh..];
        for j in 0..hid {
            let gate = wt.acts[0].at(x[hid + j] + r[hid + j]);
            dst[j] = gate * h[b * hid + j];
        }
    }
    gemm(
        rh,
        Mat::dense(0, batch, hid),
        wt.r,
        Mat::dense(2 * hid * hid, hid, hid).t(),
        R::ZERO,
        hr,
        Mat {
            offset: 2 * hid,
            rows: batch,
            cols: hid,
            row_stride: gh,
            col_stride: 1,
        },
    )?;
    for b in 0..batch {
        let row = &mut hr[b * gh + 2 * hid..(b + 1) * gh];
        row.iter_mut()
            .zip(&wt.rb[2 * hid..])
            .for_each(|(e, &bias)| *e += bias);
    }
    Ok(())
}

/// `H = f(x + r)`.
fn rnn_step<R: Real>(f: Act, x: &[R], r: &[R], h: &mut [R]) {
    for (j, e) in h.iter_mut().enumerate() {
        *e = f.at(x[j] + r[j]);
    }
}

/// `z = f(..)`, `r = f(..)`, `ĥ = g(x_h + rec)`, `H = (1 - z) ⊙ ĥ + z ⊙ H`,
/// where `rec` is `r ⊙ (H·Rhᵀ + Rbh)` with `linear_before_reset`, and
/// otherwise `(r ⊙ H)·Rhᵀ + Rbh`, already in `hr` (see
/// [`gru_reset_projection`]).
fn gru_step<R: Real>(acts: &[Act], linear_before_reset: bool, x: &[R], hr: &[R], h: &mut [R]) {
    let (f, g) = (acts[0], acts[1]);
    let hid = h.len();
    for j in 0..hid {
        let z = f.at(x[j] + hr[j]);
        let rec = if linear_before_reset {
            f.at(x[hid + j] + hr[hid + j]) * hr[2 * hid + j]
        } else {
            hr[2 * hid + j]
        };
        let ht = g.at(x[2 * hid + j] + rec);
        h[j] = (R::ONE - z) * ht + z * h[j];
    }
}

/// The LSTM step with optional peepholes and coupled input/forget gates.
fn lstm_step<R: Real>(
    wt: &DirWeights<R>,
    input_forget: bool,
    x: &[R],
    r: &[R],
    h: &mut [R],
    c: &mut [R],
) {
    let (f, g, hact) = (wt.acts[0], wt.acts[1], wt.acts[2]);
    let hid = h.len();
    let peep = |k: usize, j: usize| wt.p.map_or(R::ZERO, |p| p[k * hid + j]);
    for j in 0..hid {
        let pre = |gate: usize| x[gate * hid + j] + r[gate * hid + j];
        let c_prev = c[j];
        let i = f.at(pre(0) + peep(0, j) * c_prev);
        let forget = if input_forget {
            R::ONE - i
        } else {
            f.at(pre(2) + peep(2, j) * c_prev)
        };
        let cand = g.at(pre(3));
        let c_new = forget * c_prev + i * cand;
        let o = f.at(pre(1) + peep(1, j) * c_new);
        c[j] = c_new;
        h[j] = o * hact.at(c_new);
    }
}

fn infer_recurrent(ctx: &InferCtx, kind: CellKind) -> Result<Vec<TensorType>, String> {
    let (x, w, r) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let dt = float_dtype(x, "X")?;
    if x.rank() != 3 || w.rank() != 3 || r.rank() != 3 {
        return Err(format!("{} needs X, W and R of rank 3", kind.name()));
    }
    let dirs = directions(&ctx.string("direction")?)?.len();
    let batch_major = layout_attr(ctx)?;
    let (seq, batch) = if batch_major {
        (x.shape[1].clone(), x.shape[0].clone())
    } else {
        (x.shape[0].clone(), x.shape[1].clone())
    };
    let hidden = if ctx.has_attr("hidden_size") {
        let hs = ctx.int("hidden_size")?;
        if hs <= 0 {
            return Err(format!("hidden_size must be positive, got {hs}"));
        }
        if !r.shape[2].compatible(&Dim::fixed(hs)) {
            return Err(format!(
                "hidden_size {hs} does not match R's last dim {}",
                r.shape[2]
            ));
        }
        Dim::fixed(hs)
    } else {
        r.shape[2].clone()
    };
    let nd = Dim::fixed(dirs as i64);
    let gh = Dim::fixed(kind.gates() as i64).mul(&hidden);
    for (t, name) in [(w, "W"), (r, "R")] {
        if !t.shape[0].compatible(&nd) || !t.shape[1].compatible(&gh) {
            return Err(format!(
                "{name} must be [{dirs}, {gh}, ...] for {} with {dirs} direction(s), got {}",
                kind.name(),
                t
            ));
        }
    }
    let most = if kind == CellKind::Lstm { 3 } else { 2 };
    if ctx.num_results > most {
        return Err(format!("{} has at most {most} results", kind.name()));
    }
    let y = if batch_major {
        vec![batch.clone(), seq, nd.clone(), hidden.clone()]
    } else {
        vec![seq, nd.clone(), batch.clone(), hidden.clone()]
    };
    let state = if batch_major {
        vec![batch, nd, hidden]
    } else {
        vec![nd, batch, hidden]
    };
    let mut out = vec![TensorType::new(y, dt)];
    out.extend((1..ctx.num_results).map(|_| TensorType::new(state.clone(), dt)));
    out.truncate(ctx.num_results.max(1));
    Ok(out)
}

macro_rules! recurrent_attrs {
    ($($extra:expr),*) => {
        &[
            attr("activation_alpha", AttrKind::Floats, Default::Absent),
            attr("activation_beta", AttrKind::Floats, Default::Absent),
            attr("activations", AttrKind::Strs, Default::Absent),
            attr("clip", AttrKind::Float, Default::Absent),
            attr("direction", AttrKind::Str, Default::Str("forward")),
            attr("hidden_size", AttrKind::Int, Default::Absent),
            attr("layout", AttrKind::Int, Default::Int(0)),
            $($extra,)*
        ]
    };
}

pub static RNN: OpDef = OpDef {
    mnemonic: "rnn",
    summary: "simple recurrent layer Ht = f(Xt·Wᵀ + Ht-1·Rᵀ + Wb + Rb)",
    operands: &[
        req("x"),
        req("w"),
        req("r"),
        opt("b"),
        opt("sequence_lens"),
        opt("initial_h"),
    ],
    results: Results::Range(1, 2),
    attrs: recurrent_attrs!(),
    traits: &[],
    infer: |ctx| infer_recurrent(ctx, CellKind::Rnn),
    eval: Some(|ctx| real_dispatch!(ctx.input(0)?.dtype, recurrent_kernel(ctx, CellKind::Rnn))),
};

pub static GRU: OpDef = OpDef {
    mnemonic: "gru",
    summary: "gated recurrent unit layer (gates z, r, h)",
    operands: &[
        req("x"),
        req("w"),
        req("r"),
        opt("b"),
        opt("sequence_lens"),
        opt("initial_h"),
    ],
    results: Results::Range(1, 2),
    attrs: recurrent_attrs!(attr("linear_before_reset", AttrKind::Int, Default::Int(0))),
    traits: &[],
    infer: |ctx| infer_recurrent(ctx, CellKind::Gru),
    eval: Some(|ctx| real_dispatch!(ctx.input(0)?.dtype, recurrent_kernel(ctx, CellKind::Gru))),
};

pub static LSTM: OpDef = OpDef {
    mnemonic: "lstm",
    summary: "long short-term memory layer (gates i, o, f, c) with optional peepholes",
    operands: &[
        req("x"),
        req("w"),
        req("r"),
        opt("b"),
        opt("sequence_lens"),
        opt("initial_h"),
        opt("initial_c"),
        opt("p"),
    ],
    results: Results::Range(1, 3),
    attrs: recurrent_attrs!(attr("input_forget", AttrKind::Int, Default::Int(0))),
    traits: &[],
    infer: |ctx| infer_recurrent(ctx, CellKind::Lstm),
    eval: Some(|ctx| real_dispatch!(ctx.input(0)?.dtype, recurrent_kernel(ctx, CellKind::Lstm))),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::run;

    fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::f32(shape.to_vec(), v.iter().map(|&x| x as f32).collect())
    }

    fn i32t(v: &[i32]) -> Tensor {
        Tensor::new(
            DType::I32,
            vec![v.len()],
            crate::tensor::Data::I32(v.to_vec()),
        )
        .unwrap()
    }

    fn close(t: &Tensor, shape: &[usize], want: &[f64]) {
        assert_eq!(t.shape, shape);
        let got = t.to_f64_vec();
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() < 2e-5,
                "element {i}: got {g}, want {w}\n{got:?}"
            );
        }
    }

    // Shared input, [seq 3, batch 2, input 2].
    const X: [f64; 12] = [
        0.27, -0.46, -0.92, -0.97, 0.63, 0.83, 0.21, 0.46, 0.09, 0.87, 0.63, -0.99,
    ];

    // Expected values in these tests come from onnxruntime 1.31 (CPU).

    #[test]
    fn gru_reverse_with_lengths_both_reset_forms() {
        let x = f32t(&[3, 2, 2], &X);
        let w = f32t(
            &[1, 6, 2],
            &[
                0.71, -0.93, 0.46, -0.65, 0.73, 0.08, -0.4, -0.15, -0.94, -0.75, 0.34, 0.29,
            ],
        );
        let r = f32t(
            &[1, 6, 2],
            &[
                0.23, -0.23, 0.99, 0.96, 0.37, 0.3, 0.38, -0.22, -0.73, 0.44, 0.05, -0.38,
            ],
        );
        let b = f32t(
            &[1, 12],
            &[
                -0.03, 0.78, 0.87, -0.28, 0.14, -0.36, 0.19, -0.32, -0.22, 0.78, -0.55, 0.25,
            ],
        );
        let h0 = f32t(&[1, 2, 2], &[-0.83, 0.67, 0.57, -0.52]);
        let sl = i32t(&[3, 1]);
        let inputs = [Some(&x), Some(&w), Some(&r), Some(&b), Some(&sl), Some(&h0)];
        let want: [(i64, [f64; 12]); 2] = [
            (
                0,
                [
                    -0.437661, 0.079713, 0.601548, -0.509609, -0.753005, 0.284428, 0.0, 0.0,
                    -0.623563, 0.309286, 0.0, 0.0,
                ],
            ),
            (
                1,
                [
                    -0.345354, -0.007654, 0.654225, -0.520025, -0.677194, 0.197474, 0.0, 0.0,
                    -0.485121, 0.239456, 0.0, 0.0,
                ],
            ),
        ];
        for (lbr, y) in want {
            let out = run(
                &GRU,
                &inputs,
                &[
                    ("hidden_size", Attr::Int(2)),
                    ("direction", Attr::Str("reverse".into())),
                    ("linear_before_reset", Attr::Int(lbr)),
                ],
                2,
            )
            .unwrap();
            close(&out[0], &[3, 1, 2, 2], &y);
            close(&out[1], &[1, 2, 2], &y[..4]);
        }
    }

    #[test]
    fn lstm_bidirectional_peepholes_clip_coupled_gates() {
        let x = f32t(&[3, 2, 2], &X);
        let w = f32t(
            &[2, 8, 2],
            &[
                0.75, -0.88, -0.33, -0.7, -0.1, 0.59, -0.54, -0.9, -0.19, -0.6, -0.82, 0.16, -0.4,
                0.34, -0.6, 0.88, -0.27, -0.79, 0.26, 0.85, -0.12, 0.91, -0.0, -0.15, 0.24, 0.99,
                0.9, -0.08, 0.52, -0.01, 0.06, 0.57,
            ],
        );
        let r = f32t(
            &[2, 8, 2],
            &[
                -0.17, 0.47, 0.42, 0.86, -0.77, 0.46, 0.85, 0.94, -0.97, 0.73, 0.96, 0.91, -0.7,
                0.95, 0.78, 0.64, -0.04, -0.54, 0.6, 0.85, -0.47, 0.08, -0.11, 0.86, -0.92, 0.46,
                0.23, -0.94, 0.44, -0.97, 0.52, 0.03,
            ],
        );
        let b = f32t(
            &[2, 16],
            &[
                0.86, -0.87, 0.68, -0.87, -0.31, -0.14, 0.93, 0.12, -0.48, -0.52, 0.78, -0.55,
                -0.75, -0.42, 0.17, 0.11, 0.62, 0.12, -0.42, -0.17, 0.64, 0.25, 0.92, -0.26, 0.11,
                0.19, 0.7, -0.71, -0.19, 0.82, -0.91, 0.65,
            ],
        );
        let p = f32t(
            &[2, 6],
            &[
                -0.17, 0.66, -0.98, -0.27, -0.84, 0.31, -0.45, 0.41, 0.89, -0.75, 0.73, -0.88,
            ],
        );
        let sl = i32t(&[2, 3]);
        let out = run(
            &LSTM,
            &[
                Some(&x),
                Some(&w),
                Some(&r),
                Some(&b),
                Some(&sl),
                None,
                None,
                Some(&p),
            ],
            &[
                ("hidden_size", Attr::Int(2)),
                ("direction", Attr::Str("bidirectional".into())),
                ("clip", Attr::Float(0.5)),
                ("input_forget", Attr::Int(1)),
            ],
            3,
        )
        .unwrap();
        close(
            &out[0],
            &[3, 2, 2, 2],
            &[
                0.17427, -0.04604, 0.17427, -0.013972, 0.054385, 0.086963, -0.080897, 0.040202,
                0.223518, 0.036949, 0.224125, 0.058678, 0.093489, 0.1057, 0.11411, 0.098368, 0.0,
                0.0, 0.209647, -0.028988, 0.0, 0.0, 0.077415, -0.020931,
            ],
        );
        close(
            &out[1],
            &[2, 2, 2],
            &[
                0.223518, 0.036949, 0.209647, -0.028988, 0.054385, 0.086963, -0.080897, 0.040202,
            ],
        );
        close(
            &out[2],
            &[2, 2, 2],
            &[
                0.37584, 0.098182, 0.384262, -0.076934, 0.115233, 0.234549, -0.217647, 0.106889,
            ],
        );
    }

    #[test]
    fn rnn_activation_parameters_and_batch_major_layout() {
        let w = f32t(
            &[2, 2, 2],
            &[-0.24, -0.14, -0.02, 0.95, 0.55, -0.38, -0.46, 0.73],
        );
        let r = f32t(
            &[2, 2, 2],
            &[0.76, 0.02, -0.31, 0.99, -0.37, -0.63, 0.76, 0.62],
        );
        let attrs = |layout: i64| {
            vec![
                ("hidden_size", Attr::Int(2)),
                ("direction", Attr::Str("bidirectional".into())),
                ("layout", Attr::Int(layout)),
                (
                    "activations",
                    Attr::Strs(vec!["LeakyRelu".into(), "ScaledTanh".into()]),
                ),
                ("activation_alpha", Attr::Floats(vec![0.3, 2.0])),
                ("activation_beta", Attr::Floats(vec![0.5])),
            ]
        };
        let y_tm = [
            -0.00012, -0.13272, 0.3566, -0.27093, 0.121809, -0.34852, -0.351272, 0.036527,
            -0.081044, 0.644544, 0.150797, 0.054033, -0.227995, 0.453489, 0.271126, 0.18609,
            -0.057631, 1.487922, 0.103087, -0.283906, -0.279264, 0.576854, 0.692805, -0.934036,
        ];
        let yh_tm = [
            -0.057631, 1.487922, 0.103087, -0.283906, 0.121809, -0.34852, -0.351272, 0.036527,
        ];
        let x = f32t(&[3, 2, 2], &X);
        let out = run(&RNN, &[Some(&x), Some(&w), Some(&r)], &attrs(0), 2).unwrap();
        close(&out[0], &[3, 2, 2, 2], &y_tm);
        close(&out[1], &[2, 2, 2], &yh_tm);

        // layout 1: X is [batch, seq, input]; Y [batch, seq, dir, hidden]; Y_h [batch, dir, hidden].
        let xb: Vec<f64> = (0..2)
            .flat_map(|b| (0..3).flat_map(move |t| [X[(t * 2 + b) * 2], X[(t * 2 + b) * 2 + 1]]))
            .collect();
        let x = f32t(&[2, 3, 2], &xb);
        let out = run(&RNN, &[Some(&x), Some(&w), Some(&r)], &attrs(1), 2).unwrap();
        let mut y_bm = Vec::new();
        for b in 0..2 {
            for t in 0..3 {
                for d in 0..2 {
                    let at = ((t * 2 + d) * 2 + b) * 2;
                    y_bm.extend_from_slice(&y_tm[at..at + 2]);
                }
            }
        }
        close(&out[0], &[2, 3, 2, 2], &y_bm);
        let yh_bm = [
            yh_tm[0], yh_tm[1], yh_tm[4], yh_tm[5], yh_tm[2], yh_tm[3], yh_tm[6], yh_tm[7],
        ];
        close(&out[1], &[2, 2, 2], &yh_bm);
    }

    #[test]
    fn empty_sequence_gives_zero_state() {
        let x = f32t(&[3, 2, 2], &X);
        let w = f32t(&[1, 2, 2], &[0.46, -0.49, 0.31, 0.92]);
        let r = f32t(&[1, 2, 2], &[0.1, -0.2, 0.3, 0.4]);
        let h0 = f32t(&[1, 2, 2], &[0.43, -0.67, -0.21, 0.82]);
        let sl = i32t(&[0, 2]);
        let out = run(
            &RNN,
            &[Some(&x), Some(&w), Some(&r), None, Some(&sl), Some(&h0)],
            &[],
            2,
        )
        .unwrap();
        let (y, yh) = (out[0].to_f64_vec(), out[1].to_f64_vec());
        // batch 0 never runs; batch 1 runs two steps, the third is padding.
        assert_eq!(&yh[..2], &[0.0, 0.0]);
        assert_eq!(&y[..2], &[0.0, 0.0]);
        assert_eq!(&y[8..], &[0.0; 4]);
        // first step of batch 1 by hand: tanh(W·x + R·h0)
        let (x0, x1) = (-0.92f64, -0.97f64);
        let h = [
            (0.46 * x0 - 0.49 * x1 + 0.1 * -0.21 - 0.2 * 0.82).tanh(),
            (0.31 * x0 + 0.92 * x1 + 0.3 * -0.21 + 0.4 * 0.82).tanh(),
        ];
        assert!((y[2] - h[0]).abs() < 1e-6 && (y[3] - h[1]).abs() < 1e-6);
        assert_eq!(&yh[2..], &y[6..8]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = f32t(&[3, 2, 2], &X);
        let w = f32t(&[1, 2, 2], &[0.0; 4]);
        let r = f32t(&[1, 2, 2], &[0.0; 4]);
        let err = |attrs: &[(&str, Attr)], sl: Option<&Tensor>| {
            run(&RNN, &[Some(&x), Some(&w), Some(&r), None, sl], attrs, 2).unwrap_err()
        };
        assert!(err(&[("direction", Attr::Str("sideways".into()))], None).contains("direction"));
        assert!(
            err(&[("activations", Attr::Strs(vec!["Cube".into()]))], None)
                .contains("Cube".to_ascii_lowercase().as_str())
        );
        assert!(err(&[], Some(&i32t(&[4, 1]))).contains("sequence length"));
        assert!(err(&[("hidden_size", Attr::Int(3))], None).contains("hidden_size"));
        // bidirectional needs two directions of weights
        assert!(err(&[("direction", Attr::Str("bidirectional".into()))], None).contains("W"));
    }

    #[test]
    fn infer_keeps_symbolic_dims() {
        let x = TensorType::new(
            vec![Dim::sym("seq"), Dim::sym("batch"), Dim::fixed(4)],
            DType::F32,
        );
        let w = TensorType::fixed(&[2, 12, 4], DType::F32);
        let r = TensorType::fixed(&[2, 12, 3], DType::F32);
        let attrs: Attrs = [("direction".to_string(), Attr::Str("bidirectional".into()))]
            .into_iter()
            .collect();
        let ctx = InferCtx {
            def: &LSTM,
            attrs: &attrs,
            operands: vec![Some(&x), Some(&w), Some(&r)],
            consts: vec![],
            syms: vec![],
            num_results: 3,
        };
        let out = (LSTM.infer)(&ctx).unwrap();
        assert_eq!(
            out[0].shape,
            vec![
                Dim::sym("seq"),
                Dim::fixed(2),
                Dim::sym("batch"),
                Dim::fixed(3)
            ]
        );
        assert_eq!(
            out[2].shape,
            vec![Dim::fixed(2), Dim::sym("batch"), Dim::fixed(3)]
        );
    }
}
