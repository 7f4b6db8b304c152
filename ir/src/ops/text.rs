//! String ops: StringConcat, StringSplit, StringNormalizer, RegexFullMatch,
//! and the n-gram counter TfIdfVectorizer (string or integer tokens in,
//! f32 counts out).
//!
//! Case mapping is locale-independent Unicode, character by character (what
//! onnxruntime's `towupper`/`towlower` do under a UTF-8 locale), with the one
//! common tailoring built in: the dotted and dotless i of Turkish and Azeri.
//! Nothing reads the OS locale.

use super::elementwise::broadcast_maps;
use super::util::broadcast_all;
use super::*;
use crate::attr::AttrKind;
use crate::dim::Dim;
use crate::dtype::DType;
use crate::tensor::Data;
use std::collections::{HashMap, HashSet};

/// The elements of a string tensor.
pub fn strings<'a>(t: &'a Tensor, what: &str) -> Result<&'a [String], String> {
    match &t.data {
        Data::Str(v) => Ok(v),
        _ => Err(format!("{what} must be a string tensor, got {}", t.dtype)),
    }
}

pub fn string_tensor(shape: Vec<usize>, v: Vec<String>) -> Result<Tensor, String> {
    Tensor::new(DType::Str, shape, Data::Str(v))
}

fn expect_strings(t: &TensorType, what: &str) -> Result<(), String> {
    if t.dtype() == DType::Str {
        Ok(())
    } else {
        Err(format!("{what} must be a string tensor, got {t}"))
    }
}

/// A string attribute, or None when absent.
fn opt_string(ctx: &dyn AttrAccess, name: &str) -> Result<Option<String>, String> {
    if ctx.has_attr(name) {
        ctx.string(name).map(Some)
    } else {
        Ok(None)
    }
}

/// A list-of-strings attribute; absent is empty.
pub fn strs_attr(ctx: &dyn AttrAccess, name: &str) -> Result<Vec<String>, String> {
    match ctx.attr(name) {
        None => Ok(Vec::new()),
        Some(Attr::Strs(v)) => Ok(v),
        Some(Attr::Ints(v)) if v.is_empty() => Ok(Vec::new()),
        other => Err(ctx.attr_err(name, "a list of strings", other)),
    }
}

// ---------------------------------------------------------------- string_concat

pub static STRING_CONCAT: OpDef = OpDef {
    mnemonic: "string_concat",
    summary: "Elementwise concatenation of two string tensors, with broadcasting",
    operands: &[req("X"), req("Y")],
    results: Results::Fixed(1),
    attrs: &[],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let (x, y) = (ctx.input(0)?, ctx.input(1)?);
        expect_strings(x, "string_concat X")?;
        expect_strings(y, "string_concat Y")?;
        let shape = broadcast_all([x.shape.as_slice(), y.shape.as_slice()])?;
        Ok(vec![TensorType::new(shape, DType::Str)])
    },
    eval: Some(|ctx| {
        let (x, y) = (ctx.input(0)?, ctx.input(1)?);
        let (a, b) = (
            strings(x, "string_concat X")?,
            strings(y, "string_concat Y")?,
        );
        let (shape, maps) = broadcast_maps(&[x, y])?;
        let v = maps[0]
            .iter()
            .zip(&maps[1])
            .map(|(&i, &j)| format!("{}{}", a[i], b[j]))
            .collect();
        Ok(vec![string_tensor(shape, v)?])
    }),
};

// ---------------------------------------------------------------- string_split

/// Splits `s` on each occurrence of a non-empty delimiter, or, without one,
/// on runs of whitespace with leading and trailing whitespace dropped. At
/// most `maxsplit` splits; the rest of the string is the last piece. Where
/// the spec is silent, this follows onnxruntime rather than Python's
/// `str.split` (the ONNX reference): an empty string has no pieces, and the
/// rest after `maxsplit` splits on whitespace loses its trailing whitespace
/// too ("leading or trailing whitespace is removed in the output").
/// Whitespace is Unicode White_Space (onnxruntime only splits on ' ').
pub fn split_str<'a>(s: &'a str, delimiter: Option<&str>, maxsplit: Option<usize>) -> Vec<&'a str> {
    if s.is_empty() {
        return Vec::new();
    }
    if let Some(d) = delimiter.filter(|d| !d.is_empty()) {
        return match maxsplit {
            Some(m) => s.splitn(m.saturating_add(1), d).collect(),
            None => s.split(d).collect(),
        };
    }
    let mut parts = Vec::new();
    let mut rest = s.trim_matches(char::is_whitespace);
    while !rest.is_empty() {
        if maxsplit == Some(parts.len()) {
            parts.push(rest);
            break;
        }
        match rest.find(char::is_whitespace) {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = rest[i..].trim_start_matches(char::is_whitespace);
            }
            None => {
                parts.push(rest);
                break;
            }
        }
    }
    parts
}

fn maxsplit(ctx: &dyn AttrAccess) -> Result<Option<usize>, String> {
    if !ctx.has_attr("maxsplit") {
        return Ok(None);
    }
    // Negative is "no limit", as in Python (the reference implementation).
    Ok(usize::try_from(ctx.int("maxsplit")?).ok())
}

pub static STRING_SPLIT: OpDef = OpDef {
    mnemonic: "string_split",
    summary: "Splits each string on a delimiter (or whitespace) into a padded extra last dim, with the piece counts",
    operands: &[req("X")],
    results: Results::Fixed(2),
    attrs: &[
        attr("delimiter", AttrKind::Str, Default::Absent),
        attr("maxsplit", AttrKind::Int, Default::Absent),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        expect_strings(x, "string_split X")?;
        let pieces = match x.num_elements() {
            Some(0) => Dim::fixed(0),
            _ => Dim::Unknown,
        };
        let mut shape = x.shape.clone();
        shape.push(pieces);
        Ok(vec![TensorType::new(shape, DType::Str), x.with_dtype(DType::I64)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let delimiter = opt_string(ctx, "delimiter")?;
        let maxsplit = maxsplit(ctx)?;
        let split: Vec<Vec<&str>> =
            strings(x, "string_split X")?.iter().map(|s| split_str(s, delimiter.as_deref(), maxsplit)).collect();
        let width = split.iter().map(Vec::len).max().unwrap_or(0);
        let counts: Vec<i64> = split.iter().map(|p| p.len() as i64).collect();
        let mut pieces = Vec::with_capacity(split.len() * width);
        for p in &split {
            pieces.extend(p.iter().map(|s| s.to_string()));
            pieces.extend(std::iter::repeat_n(String::new(), width - p.len()));
        }
        let mut shape = x.shape.clone();
        shape.push(width);
        Ok(vec![string_tensor(shape, pieces)?, Tensor::i64(x.shape.clone(), counts)])
    }),
};

// ---------------------------------------------------------------- string_normalizer

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CaseChange {
    None,
    Lower,
    Upper,
}

impl CaseChange {
    fn parse(s: &str) -> Result<CaseChange, String> {
        match s {
            "NONE" => Ok(CaseChange::None),
            "LOWER" => Ok(CaseChange::Lower),
            "UPPER" => Ok(CaseChange::Upper),
            _ => Err(format!(
                "case_change_action must be NONE, LOWER or UPPER, got '{s}'"
            )),
        }
    }
}

/// Whether a locale name (`tr`, `tr_TR.UTF-8`, `az-Latn-AZ`) is Turkish or
/// Azeri, whose i has a dotted and a dotless form in both cases.
fn dotted_i_locale(locale: &str) -> bool {
    let lang = locale.split(['_', '-', '.', '@']).next().unwrap_or("");
    lang.eq_ignore_ascii_case("tr") || lang.eq_ignore_ascii_case("az")
}

/// One character's simple (1:1) case mapping; characters whose full mapping
/// is several characters (ß → SS) are kept, as `towupper` keeps them.
fn map_char(c: char, to: CaseChange, turkic: bool) -> char {
    match (to, c, turkic) {
        (CaseChange::None, c, _) => c,
        (CaseChange::Upper, 'i', true) => 'İ',
        (CaseChange::Lower, 'I', true) => 'ı',
        (CaseChange::Lower, 'İ', _) => 'i',
        (CaseChange::Upper, c, _) => single(c.to_uppercase()).unwrap_or(c),
        (CaseChange::Lower, c, _) => single(c.to_lowercase()).unwrap_or(c),
    }
}

fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

pub fn change_case(s: &str, to: CaseChange, locale: &str) -> String {
    let turkic = dotted_i_locale(locale);
    s.chars().map(|c| map_char(c, to, turkic)).collect()
}

/// StringNormalizer on a list of strings: drops the elements equal to a
/// stopword (compared after case folding unless case sensitive), then changes
/// the case of the rest.
pub fn normalize_strings(
    xs: &[String],
    stopwords: &[String],
    case_sensitive: bool,
    action: CaseChange,
    locale: &str,
) -> Vec<String> {
    // Case-insensitive matching folds toward the output case, so that the
    // comparison agrees with what is kept.
    let fold = if action == CaseChange::Upper {
        CaseChange::Upper
    } else {
        CaseChange::Lower
    };
    let key = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            change_case(s, fold, locale)
        }
    };
    let stops: HashSet<String> = stopwords.iter().map(|s| key(s)).collect();
    xs.iter()
        .filter(|s| !stops.contains(&key(s)))
        .map(|s| change_case(s, action, locale))
        .collect()
}

/// The column count of a [C] or [1, C] input.
fn normalizer_rank(shape: &[Dim]) -> Result<(), String> {
    match shape {
        [_] => Ok(()),
        [b, _] if b.as_fixed().is_none_or(|b| b == 1) => Ok(()),
        _ => Err(format!(
            "string_normalizer takes a [C] or [1, C] tensor, got rank {}",
            shape.len()
        )),
    }
}

pub static STRING_NORMALIZER: OpDef = OpDef {
    mnemonic: "string_normalizer",
    summary:
        "Drops stopword elements of a [C] or [1, C] string tensor and changes the case of the rest",
    operands: &[req("X")],
    results: Results::Fixed(1),
    attrs: &[
        attr("case_change_action", AttrKind::Str, Default::Str("NONE")),
        attr("is_case_sensitive", AttrKind::Int, Default::Int(0)),
        attr("locale", AttrKind::Str, Default::Absent),
        attr("stopwords", AttrKind::Strs, Default::Absent),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        expect_strings(x, "string_normalizer X")?;
        normalizer_rank(&x.shape)?;
        CaseChange::parse(&ctx.string("case_change_action")?)?;
        let mut shape = x.shape.clone();
        // How many elements survive depends on the values; with no
        // stopwords all do (an empty input still gives one empty string).
        let last = shape
            .last_mut()
            .ok_or("string_normalizer needs a rank-1 or rank-2 input")?;
        if !strs_attr(ctx, "stopwords")?.is_empty() || last.as_fixed() == Some(0) {
            *last = match last.as_fixed() {
                Some(0) => Dim::fixed(1),
                _ => Dim::Unknown,
            };
        }
        Ok(vec![TensorType::new(shape, DType::Str)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        match x.shape.as_slice() {
            [_] | [1, _] => {}
            s => {
                return Err(format!(
                    "string_normalizer takes a [C] or [1, C] tensor, got shape {s:?}"
                ))
            }
        }
        let action = CaseChange::parse(&ctx.string("case_change_action")?)?;
        let locale = opt_string(ctx, "locale")?.unwrap_or_default();
        let mut out = normalize_strings(
            strings(x, "string_normalizer X")?,
            &strs_attr(ctx, "stopwords")?,
            ctx.int("is_case_sensitive")? != 0,
            action,
            &locale,
        );
        if out.is_empty() {
            out.push(String::new());
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("rank checked above") = out.len();
        Ok(vec![string_tensor(shape, out)?])
    }),
};

// ---------------------------------------------------------------- regex_full_match

/// Compiles an RE2-syntax pattern anchored at both ends.
pub fn full_match_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!(r"\A(?:{pattern})\z"))
        .map_err(|e| format!("invalid regex pattern {pattern:?}: {e}"))
}

pub static REGEX_FULL_MATCH: OpDef = OpDef {
    mnemonic: "regex_full_match",
    summary: "Whether each string fully matches an RE2 pattern",
    operands: &[req("X")],
    results: Results::Fixed(1),
    attrs: &[attr("pattern", AttrKind::Str, Default::Required)],
    traits: &[Trait::Elementwise],
    infer: |ctx| {
        let x = ctx.input(0)?;
        expect_strings(x, "regex_full_match X")?;
        full_match_regex(&ctx.string("pattern")?)?;
        Ok(vec![x.with_dtype(DType::Bool)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let re = full_match_regex(&ctx.string("pattern")?)?;
        let v = strings(x, "regex_full_match X")?
            .iter()
            .map(|s| re.is_match(s))
            .collect();
        Ok(vec![Tensor::new(
            DType::Bool,
            x.shape.clone(),
            Data::Bool(v),
        )?])
    }),
};

// ---------------------------------------------------------------- tf_idf_vectorizer

/// A token of an n-gram: TfIdfVectorizer counts integer or string sequences.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token<'a> {
    Int(i64),
    Str(&'a str),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Weighting {
    Tf,
    Idf,
    TfIdf,
}

/// The n-gram pool and counting parameters of one TfIdfVectorizer.
struct NgramPool<'a> {
    /// N-gram -> output column.
    columns: HashMap<Vec<Token<'a>>, usize>,
    min_len: usize,
    max_len: usize,
    max_skip: usize,
    out_size: usize,
    /// Per output column, the weight of the n-gram counted there (when the
    /// op has weights).
    column_weights: Option<Vec<f64>>,
}

fn non_negative(v: i64, what: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("tf_idf_vectorizer {what} must be >= 0, got {v}"))
}

/// Output width: max(ngram_indexes) + 1.
fn tfidf_out_size(ctx: &dyn AttrAccess) -> Result<usize, String> {
    let idx = ctx.ints("ngram_indexes")?;
    let max = idx
        .iter()
        .copied()
        .max()
        .ok_or("tf_idf_vectorizer ngram_indexes is empty")?;
    Ok(non_negative(max, "ngram_indexes")? + 1)
}

impl<'a> NgramPool<'a> {
    /// `pool` holds the n-grams of each length n = 1, 2, ... one after the
    /// other, starting at `ngram_counts[n - 1]`; the i-th n-gram of the pool
    /// (over all lengths) is counted in column `ngram_indexes[i]`. Only the
    /// lengths in [min_gram_length, max_gram_length] are kept; a repeated
    /// n-gram counts in the column of its last occurrence. `weights[i]` is
    /// the weight of the i-th n-gram, as the spec and onnxruntime read it
    /// (the ONNX reference implementation indexes it by column instead).
    fn new(ctx: &dyn AttrAccess, pool: &[Token<'a>]) -> Result<NgramPool<'a>, String> {
        let counts = ctx.ints("ngram_counts")?;
        let indexes = ctx.ints("ngram_indexes")?;
        let min_len = non_negative(ctx.int("min_gram_length")?, "min_gram_length")?;
        let max_len = non_negative(ctx.int("max_gram_length")?, "max_gram_length")?;
        if min_len < 1 || min_len > max_len {
            return Err(format!("tf_idf_vectorizer needs 1 <= min_gram_length <= max_gram_length, got {min_len}, {max_len}"));
        }
        let weights = if ctx.has_attr("weights") {
            ctx.floats("weights")?
        } else {
            Vec::new()
        };
        let out_size = tfidf_out_size(ctx)?;
        let mut column_weights = (!weights.is_empty()).then(|| vec![0.0; out_size]);
        let mut columns = HashMap::new();
        let mut gram_id = 0usize;
        for (i, &start) in counts.iter().enumerate() {
            let start = non_negative(start, "ngram_counts")?;
            let end = match counts.get(i + 1) {
                Some(&e) => non_negative(e, "ngram_counts")?,
                None => pool.len(),
            };
            if start > end || end > pool.len() {
                return Err(format!(
                    "tf_idf_vectorizer ngram_counts {counts:?} do not fit a pool of {}",
                    pool.len()
                ));
            }
            let n = i + 1;
            for gram in pool[start..end].chunks_exact(n) {
                if (min_len..=max_len).contains(&n) {
                    let col = *indexes.get(gram_id).ok_or_else(|| {
                        format!(
                            "tf_idf_vectorizer has more n-grams than ngram_indexes ({})",
                            indexes.len()
                        )
                    })?;
                    let col = non_negative(col, "ngram_indexes")?;
                    if let Some(cw) = &mut column_weights {
                        cw[col] = *weights.get(gram_id).ok_or_else(|| {
                            format!(
                                "tf_idf_vectorizer has more n-grams than weights ({})",
                                weights.len()
                            )
                        })?;
                    }
                    columns.insert(gram.to_vec(), col);
                }
                gram_id += 1;
            }
        }
        Ok(NgramPool {
            columns,
            min_len,
            max_len,
            max_skip: non_negative(ctx.int("max_skip_count")?, "max_skip_count")?,
            out_size,
            column_weights,
        })
    }

    /// Adds the n-gram counts of one row to `freq` (one output row). Every
    /// start position and every skip distance 1..=max_skip+1 gives the
    /// n-grams (row[s], row[s+d], row[s+2d], ...); unigrams do not depend on
    /// the distance and are counted once.
    fn count_row(&self, row: &[Token<'a>], freq: &mut [u64]) {
        let mut min_len = self.min_len;
        for skip in 1..=self.max_skip + 1 {
            for start in 0..row.len() {
                let mut gram = Vec::with_capacity(self.max_len);
                for pos in (start..row.len()).step_by(skip).take(self.max_len) {
                    gram.push(row[pos].clone());
                    if gram.len() >= min_len {
                        if let Some(&col) = self.columns.get(&gram) {
                            freq[col] += 1;
                        }
                    }
                }
            }
            if min_len == 1 {
                min_len = 2;
                if min_len > self.max_len {
                    break;
                }
            }
        }
    }
}

fn tokens(t: &Tensor) -> Result<Vec<Token<'_>>, String> {
    match &t.data {
        Data::Str(v) => Ok(v.iter().map(|s| Token::Str(s)).collect()),
        Data::I64(_) | Data::I32(_) => Ok(t.to_i64_vec().into_iter().map(Token::Int).collect()),
        _ => Err(format!(
            "tf_idf_vectorizer takes string, int32 or int64 input, got {}",
            t.dtype
        )),
    }
}

fn weighting(ctx: &dyn AttrAccess) -> Result<Weighting, String> {
    match ctx.string("mode")?.as_str() {
        "TF" => Ok(Weighting::Tf),
        "IDF" => Ok(Weighting::Idf),
        "TFIDF" => Ok(Weighting::TfIdf),
        m => Err(format!(
            "tf_idf_vectorizer mode must be TF, IDF or TFIDF, got '{m}'"
        )),
    }
}

/// Output shape: [K] for a scalar or [C] input, [N, K] for [N, C].
fn tfidf_shape<T: Clone>(input: &[T], k: T) -> Result<Vec<T>, String> {
    match input {
        [] | [_] => Ok(vec![k]),
        [n, _] => Ok(vec![n.clone(), k]),
        _ => Err(format!(
            "tf_idf_vectorizer takes a [C] or [N, C] input, got rank {}",
            input.len()
        )),
    }
}

pub static TF_IDF_VECTORIZER: OpDef = OpDef {
    mnemonic: "tf_idf_vectorizer",
    summary:
        "Counts (optionally skipping) n-grams from a pool in each row, weighted TF, IDF or TFIDF",
    operands: &[req("X")],
    results: Results::Fixed(1),
    attrs: &[
        attr("max_gram_length", AttrKind::Int, Default::Required),
        attr("max_skip_count", AttrKind::Int, Default::Required),
        attr("min_gram_length", AttrKind::Int, Default::Required),
        attr("mode", AttrKind::Str, Default::Required),
        attr("ngram_counts", AttrKind::Ints, Default::Required),
        attr("ngram_indexes", AttrKind::Ints, Default::Required),
        attr("pool_int64s", AttrKind::Ints, Default::Absent),
        attr("pool_strings", AttrKind::Strs, Default::Absent),
        attr("weights", AttrKind::Floats, Default::Absent),
    ],
    traits: &[],
    infer: |ctx| {
        let x = ctx.input(0)?;
        let want = if ctx.has_attr("pool_strings") {
            "string"
        } else {
            "int"
        };
        match (want, x.dtype()) {
            ("string", DType::Str) | ("int", DType::I32 | DType::I64) => {}
            _ => {
                return Err(format!(
                    "tf_idf_vectorizer with a pool of {want}s cannot take {x}"
                ))
            }
        }
        weighting(ctx)?;
        let k = Dim::fixed(tfidf_out_size(ctx)? as i64);
        Ok(vec![TensorType::new(tfidf_shape(&x.shape, k)?, DType::F32)])
    },
    eval: Some(|ctx| {
        let x = ctx.input(0)?;
        let strs = strs_attr(ctx, "pool_strings")?;
        let pool: Vec<Token> = match (ctx.has_attr("pool_strings"), ctx.has_attr("pool_int64s")) {
            (true, false) => strs.iter().map(|s| Token::Str(s)).collect(),
            (false, true) => ctx
                .ints("pool_int64s")?
                .into_iter()
                .map(Token::Int)
                .collect(),
            _ => {
                return Err(
                    "tf_idf_vectorizer needs exactly one of pool_strings and pool_int64s".into(),
                )
            }
        };
        if matches!(pool.first(), Some(Token::Str(_))) != (x.dtype == DType::Str) {
            return Err(format!(
                "tf_idf_vectorizer pool and input types differ (input {})",
                x.dtype
            ));
        }
        let ngrams = NgramPool::new(ctx, &pool)?;
        let k = ngrams.out_size;
        let shape = tfidf_shape(&x.shape, k)?;
        let rows = if x.rank() == 2 { x.shape[0] } else { 1 };
        let cols = x.len().checked_div(rows).unwrap_or(0);
        let toks = tokens(x)?;
        let mut freq = vec![0u64; rows * k];
        for (r, out) in freq.chunks_exact_mut(k).enumerate() {
            ngrams.count_row(&toks[r * cols..(r + 1) * cols], out);
        }
        let mode = weighting(ctx)?;
        let y: Vec<f32> = freq
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                let w = ngrams.column_weights.as_ref().map(|cw| cw[i % k]);
                match (mode, w) {
                    (Weighting::Tf, _) | (Weighting::TfIdf, None) => f as f32,
                    (Weighting::TfIdf, Some(w)) => (w * f as f64) as f32,
                    (Weighting::Idf, w) if f > 0 => w.unwrap_or(1.0) as f32,
                    (Weighting::Idf, _) => 0.0,
                }
            })
            .collect();
        Ok(vec![Tensor::f32(shape, y)])
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attrs;
    use crate::ops::testing::{self, attrs, eval_with, some};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn st(shape: Vec<usize>, v: &[&str]) -> Tensor {
        string_tensor(shape, s(v)).unwrap()
    }

    fn run(
        def: &'static OpDef,
        attrs: Attrs,
        inputs: &[&Tensor],
        num_results: usize,
    ) -> Result<Vec<Tensor>, String> {
        eval_with(def, &attrs, &some(inputs), num_results)
    }

    fn infer(
        def: &'static OpDef,
        attrs: Attrs,
        inputs: &[TensorType],
        num_results: usize,
    ) -> Result<Vec<TensorType>, String> {
        testing::infer(def, &attrs, inputs, &[], &[], num_results)
    }

    #[test]
    fn concat_broadcasts() {
        let out = run(
            &STRING_CONCAT,
            Attrs::new(),
            &[&st(vec![2, 1], &["a", "的"]), &st(vec![3], &["x", "", "z"])],
            1,
        )
        .unwrap();
        assert_eq!(
            out[0],
            st(vec![2, 3], &["ax", "a", "az", "的x", "的", "的z"])
        );
        let t = infer(
            &STRING_CONCAT,
            Attrs::new(),
            &[
                TensorType::new(vec![Dim::sym("n")], DType::Str),
                TensorType::fixed(&[1], DType::Str),
            ],
            1,
        )
        .unwrap();
        assert_eq!(t[0].shape, vec![Dim::sym("n")]);
        assert!(run(
            &STRING_CONCAT,
            Attrs::new(),
            &[&Tensor::f32(vec![1], vec![1.0]), &st(vec![1], &["a"])],
            1
        )
        .is_err());
    }

    #[test]
    fn split_follows_onnxruntime() {
        // Expectations from onnxruntime 1.31 StringSplit.
        assert_eq!(
            split_str("o-n-n--x-", Some("-"), None),
            vec!["o", "n", "n", "", "x", ""]
        );
        assert!(split_str("", Some("."), None).is_empty());
        assert_eq!(split_str(".", Some("."), None), vec!["", ""]);
        assert_eq!(split_str("a..b", Some("."), Some(1)), vec!["a", ".b"]);
        assert_eq!(
            split_str("ab::cd::", Some("::"), None),
            vec!["ab", "cd", ""]
        );
        assert_eq!(split_str(" a  b ", None, None), vec!["a", "b"]);
        assert_eq!(split_str("  a b  c  ", None, Some(1)), vec!["a", "b  c"]);
        assert_eq!(split_str(" a  b ", None, Some(0)), vec!["a  b"]);
        assert!(split_str("   ", Some(""), None).is_empty());
        // Unicode whitespace separates too (onnxruntime only knows ' ').
        assert_eq!(
            split_str("a\tb\u{3000}c\n", None, None),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn split_pads_and_counts() {
        let x = st(
            vec![2, 2],
            &["hello world", "def.net", "o n n x", "the quick brown fox"],
        );
        let out = run(
            &STRING_SPLIT,
            attrs(&[("maxsplit", Attr::Int(2))]),
            &[&x],
            2,
        )
        .unwrap();
        assert_eq!(
            out[0],
            st(
                vec![2, 2, 3],
                &[
                    "hello",
                    "world",
                    "",
                    "def.net",
                    "",
                    "",
                    "o",
                    "n",
                    "n x",
                    "the",
                    "quick",
                    "brown fox"
                ]
            )
        );
        assert_eq!(out[1], Tensor::i64(vec![2, 2], vec![2, 1, 3, 3]));
        let out = run(&STRING_SPLIT, Attrs::new(), &[&st(vec![0], &[])], 2).unwrap();
        assert_eq!(out[0].shape, vec![0, 0]);
        assert_eq!(out[1].shape, vec![0]);
        let t = infer(
            &STRING_SPLIT,
            Attrs::new(),
            &[TensorType::new(vec![Dim::sym("n")], DType::Str)],
            2,
        )
        .unwrap();
        assert_eq!(t[0].shape, vec![Dim::sym("n"), Dim::Unknown]);
        assert_eq!(t[1], TensorType::new(vec![Dim::sym("n")], DType::I64));
    }

    #[test]
    fn normalizer_drops_stopwords_then_changes_case() {
        let x = st(
            vec![1, 6],
            &[
                "Monday",
                "tuesday",
                "wednesday",
                "Monday",
                "tuesday",
                "wednesday",
            ],
        );
        let a = attrs(&[
            ("case_change_action", Attr::Str("UPPER".into())),
            ("stopwords", Attr::Strs(s(&["monday"]))),
        ]);
        let out = run(&STRING_NORMALIZER, a, &[&x], 1).unwrap();
        assert_eq!(
            out[0],
            st(
                vec![1, 4],
                &["TUESDAY", "WEDNESDAY", "TUESDAY", "WEDNESDAY"]
            )
        );
        // Case-sensitive: "Monday" is not the stopword "monday"; empty strings are kept.
        let a = attrs(&[
            ("is_case_sensitive", Attr::Int(1)),
            ("stopwords", Attr::Strs(s(&["monday"]))),
        ]);
        let out = run(
            &STRING_NORMALIZER,
            a,
            &[&st(vec![3], &["Monday", "monday", ""])],
            1,
        )
        .unwrap();
        assert_eq!(out[0], st(vec![2], &["Monday", ""]));
        // Everything dropped: one empty string.
        let a = attrs(&[("stopwords", Attr::Strs(s(&["a"])))]);
        let out = run(&STRING_NORMALIZER, a, &[&st(vec![1, 2], &["A", "a"])], 1).unwrap();
        assert_eq!(out[0], st(vec![1, 1], &[""]));
        assert!(run(
            &STRING_NORMALIZER,
            Attrs::new(),
            &[&st(vec![2, 1], &["a", "b"])],
            1
        )
        .is_err());
    }

    #[test]
    fn case_mapping_is_per_character_with_turkic_i() {
        assert_eq!(
            change_case("Straße élan", CaseChange::Upper, ""),
            "STRAßE ÉLAN"
        );
        assert_eq!(
            change_case("ΣΊΣΥΦΟΣ", CaseChange::Lower, "en_US.UTF-8"),
            "σίσυφοσ"
        );
        assert_eq!(
            change_case("istanbul", CaseChange::Upper, "tr_TR.UTF-8"),
            "İSTANBUL"
        );
        assert_eq!(change_case("DIŞ İŞ", CaseChange::Lower, "az"), "dış iş");
        assert_eq!(
            change_case("istanbul", CaseChange::Upper, "en_US"),
            "ISTANBUL"
        );
    }

    #[test]
    fn regex_matches_whole_strings() {
        let x = st(
            vec![4],
            &[
                "www.google.com",
                "www.bbc.co.uk",
                "xwww.a.com",
                "www.a.com\n",
            ],
        );
        let a = attrs(&[("pattern", Attr::Str(r"www\.[\w.-]+\.\bcom\b".into()))]);
        let out = run(&REGEX_FULL_MATCH, a, &[&x], 1).unwrap();
        assert_eq!(
            out[0],
            Tensor::new(
                DType::Bool,
                vec![4],
                Data::Bool(vec![true, false, false, false])
            )
            .unwrap()
        );
        // Alternation binds inside the anchors.
        let a = attrs(&[("pattern", Attr::Str("a|b".into()))]);
        let out = run(&REGEX_FULL_MATCH, a, &[&st(vec![3], &["a", "ab", "b"])], 1).unwrap();
        assert_eq!(out[0].data, Data::Bool(vec![true, false, true]));
        let a = attrs(&[("pattern", Attr::Str("(".into()))]);
        assert!(run(&REGEX_FULL_MATCH, a, &[&st(vec![1], &["a"])], 1).is_err());
    }

    fn tfidf_attrs(min: i64, max: i64, skip: i64, mode: &str) -> Vec<(&'static str, Attr)> {
        vec![
            ("min_gram_length", Attr::Int(min)),
            ("max_gram_length", Attr::Int(max)),
            ("max_skip_count", Attr::Int(skip)),
            ("mode", Attr::Str(mode.into())),
            ("ngram_counts", Attr::Ints(vec![0, 4])),
            ("ngram_indexes", Attr::Ints(vec![0, 1, 2, 3, 4, 5, 6])),
            (
                "pool_int64s",
                Attr::Ints(vec![2, 3, 5, 4, 5, 6, 7, 8, 6, 7]),
            ),
        ]
    }

    #[test]
    fn tfidf_counts_skip_grams() {
        // Pool: unigrams 2 3 5 4, bigrams (5,6) (7,8) (6,7). Row 5 6 7 5 6 8,
        // by hand: unigram 5 twice (counted once, not per distance); pairs at
        // distance 1: (5,6)x2 (6,7); 2: none; 3: (7,8); 4: (5,6); 5: none.
        let x = Tensor::from_i64(DType::I32, vec![1, 6], &[5, 6, 7, 5, 6, 8]);
        let a: Attrs = tfidf_attrs(1, 2, 5, "TF")
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let out = run(&TF_IDF_VECTORIZER, a, &[&x], 1).unwrap();
        assert_eq!(
            out[0],
            Tensor::f32(vec![1, 7], vec![0.0, 0.0, 2.0, 0.0, 3.0, 1.0, 1.0])
        );
        // Only bigrams, no skips: (5,6)x2, (6,7)x1.
        let a: Attrs = tfidf_attrs(2, 2, 0, "TF")
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let out = run(
            &TF_IDF_VECTORIZER,
            a,
            &[&Tensor::i64(vec![6], vec![5, 6, 7, 5, 6, 8])],
            1,
        )
        .unwrap();
        assert_eq!(
            out[0],
            Tensor::f32(vec![7], vec![0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0])
        );
    }

    #[test]
    fn tfidf_weights_and_strings() {
        let a = attrs(&[
            ("min_gram_length", Attr::Int(1)),
            ("max_gram_length", Attr::Int(1)),
            ("max_skip_count", Attr::Int(0)),
            ("mode", Attr::Str("TFIDF".into())),
            ("ngram_counts", Attr::Ints(vec![0])),
            ("ngram_indexes", Attr::Ints(vec![1, 0])),
            ("pool_strings", Attr::Strs(s(&["a", "b"]))),
            ("weights", Attr::Floats(vec![0.5, 3.0])),
        ]);
        let x = st(vec![5], &["a", "b", "a", "c", "a"]);
        let out = run(&TF_IDF_VECTORIZER, a.clone(), &[&x], 1).unwrap();
        // Column 0 counts "b" (once) with b's weight 3, column 1 counts "a"
        // (3 times) with a's weight 0.5; onnxruntime agrees.
        assert_eq!(out[0], Tensor::f32(vec![2], vec![3.0, 1.5]));
        let mut idf = a.clone();
        idf.insert("mode".into(), Attr::Str("IDF".into()));
        let out = run(&TF_IDF_VECTORIZER, idf, &[&x], 1).unwrap();
        assert_eq!(out[0], Tensor::f32(vec![2], vec![3.0, 0.5]));
        let mut short = a.clone();
        short.insert("weights".into(), Attr::Floats(vec![1.0]));
        assert!(run(&TF_IDF_VECTORIZER, short, &[&x], 1).is_err());
        // Integer input against a string pool is an error.
        assert!(run(
            &TF_IDF_VECTORIZER,
            a.clone(),
            &[&Tensor::i64(vec![1], vec![1])],
            1
        )
        .is_err());
        let t = infer(
            &TF_IDF_VECTORIZER,
            a,
            &[TensorType::new(
                vec![Dim::sym("n"), Dim::fixed(5)],
                DType::Str,
            )],
            1,
        )
        .unwrap();
        assert_eq!(
            t[0],
            TensorType::new(vec![Dim::sym("n"), Dim::fixed(2)], DType::F32)
        );
    }
}
