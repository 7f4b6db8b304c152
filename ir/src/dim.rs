//! Tensor dimensions: static, symbolic (polynomials over named symbols such as
//! `batch` and `seq`), or unknown.
//!
//! Symbolic dims are integer polynomials so that shape arithmetic keeps its
//! meaning: flattening `[batch, seq, 128]` gives `batch*seq*128`, concatenating
//! a KV cache gives `past_seq+seq`, and a later reshape can divide back.
//! `Unknown` is for data-dependent sizes (e.g. NonZero) that no polynomial names.

use std::collections::BTreeMap;
use std::fmt;

/// A product of symbols (sorted, with repetition for powers).
type Monomial = Vec<String>;

/// An integer polynomial over named dimension symbols.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Poly {
    /// Monomial -> coefficient; zero coefficients are never stored. The empty
    /// monomial is the constant term.
    terms: BTreeMap<Monomial, i64>,
}

impl Poly {
    pub fn constant(c: i64) -> Poly {
        let mut terms = BTreeMap::new();
        if c != 0 {
            terms.insert(Vec::new(), c);
        }
        Poly { terms }
    }

    pub fn symbol(name: &str) -> Poly {
        let mut terms = BTreeMap::new();
        terms.insert(vec![name.to_string()], 1);
        Poly { terms }
    }

    pub fn as_constant(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    pub fn symbols(&self) -> impl Iterator<Item = &String> {
        self.terms.keys().flatten()
    }

    pub fn add(&self, other: &Poly) -> Poly {
        self.checked_add(other)
            .expect("dimension arithmetic overflowed i64")
    }

    /// `self + other`, or None on i64 overflow (hostile models can ask for
    /// absurd sizes; they must get an error, not a wrapped dimension).
    pub fn checked_add(&self, other: &Poly) -> Option<Poly> {
        let mut terms = self.terms.clone();
        for (m, c) in &other.terms {
            let e = terms.entry(m.clone()).or_insert(0);
            *e = e.checked_add(*c)?;
            if *e == 0 {
                terms.remove(m);
            }
        }
        Some(Poly { terms })
    }

    pub fn neg(&self) -> Poly {
        self.checked_neg()
            .expect("dimension arithmetic overflowed i64")
    }

    pub fn checked_neg(&self) -> Option<Poly> {
        let terms = self
            .terms
            .iter()
            .map(|(m, c)| Some((m.clone(), c.checked_neg()?)))
            .collect::<Option<_>>()?;
        Some(Poly { terms })
    }

    pub fn sub(&self, other: &Poly) -> Poly {
        self.add(&other.neg())
    }

    pub fn checked_sub(&self, other: &Poly) -> Option<Poly> {
        self.checked_add(&other.checked_neg()?)
    }

    pub fn mul(&self, other: &Poly) -> Poly {
        self.checked_mul(other)
            .expect("dimension arithmetic overflowed i64")
    }

    pub fn checked_mul(&self, other: &Poly) -> Option<Poly> {
        let mut out = Poly::default();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &other.terms {
                let mut m: Monomial = m1.iter().chain(m2).cloned().collect();
                m.sort();
                out = out.checked_add(&Poly {
                    terms: BTreeMap::from([(m, c1.checked_mul(*c2)?)]),
                })?;
            }
        }
        Some(out)
    }

    /// Exact division, when the divisor is a constant dividing every
    /// coefficient or a single monomial dividing every term.
    pub fn div_exact(&self, divisor: &Poly) -> Option<Poly> {
        if divisor.terms.len() != 1 {
            return (self == divisor).then(|| Poly::constant(1));
        }
        let (dm, dc) = divisor.terms.iter().next()?;
        let mut terms = BTreeMap::new();
        for (m, c) in &self.terms {
            if c.checked_rem(*dc)? != 0 {
                return None;
            }
            let mut rest = m.clone();
            for s in dm {
                let pos = rest.iter().position(|x| x == s)?;
                rest.remove(pos);
            }
            terms.insert(rest, c.checked_div(*dc)?);
        }
        Some(Poly { terms })
    }

    /// Evaluates with every symbol bound.
    pub fn eval(&self, bind: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let mut total = 0i64;
        for (m, c) in &self.terms {
            let mut v = *c;
            for s in m {
                v = v.checked_mul(bind(s)?)?;
            }
            total = total.checked_add(v)?;
        }
        Some(total)
    }
}

impl fmt::Display for Poly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        // Highest degree first reads naturally: `batch*seq+1`.
        let mut terms: Vec<_> = self.terms.iter().collect();
        terms.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        for (i, (m, c)) in terms.iter().enumerate() {
            let c = **c;
            if i > 0 {
                f.write_str(if c < 0 { "-" } else { "+" })?;
            } else if c < 0 {
                f.write_str("-")?;
            }
            let a = c.unsigned_abs();
            let mut parts: Vec<String> = Vec::new();
            if a != 1 || m.is_empty() {
                parts.push(a.to_string());
            }
            parts.extend(m.iter().cloned());
            f.write_str(&parts.join("*"))?;
        }
        Ok(())
    }
}

/// One dimension of a tensor type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A static size, or a symbolic polynomial (`batch`, `batch*seq`, `past+seq`).
    Known(Poly),
    /// A size nothing names (data dependent). Two unknowns are never equal in
    /// meaning even though they compare equal structurally.
    Unknown,
}

impl Dim {
    pub fn fixed(n: i64) -> Dim {
        Dim::Known(Poly::constant(n))
    }

    pub fn sym(name: &str) -> Dim {
        Dim::Known(Poly::symbol(name))
    }

    pub fn as_fixed(&self) -> Option<i64> {
        match self {
            Dim::Known(p) => p.as_constant(),
            Dim::Unknown => None,
        }
    }

    pub fn is_fixed(&self) -> bool {
        self.as_fixed().is_some()
    }

    /// Both dims are known and provably equal.
    pub fn same_as(&self, other: &Dim) -> bool {
        matches!((self, other), (Dim::Known(a), Dim::Known(b)) if a == b)
    }

    /// The two dims may be equal at run time (no proof they differ).
    pub fn compatible(&self, other: &Dim) -> bool {
        match (self.as_fixed(), other.as_fixed()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    fn lift(&self, other: &Dim, f: impl Fn(&Poly, &Poly) -> Option<Poly>) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => f(a, b).map(Dim::Known).unwrap_or(Dim::Unknown),
            _ => Dim::Unknown,
        }
    }

    // Dim arithmetic never panics: an overflowing result is Unknown, which
    // inference then reports or treats as data dependent.
    pub fn add(&self, o: &Dim) -> Dim {
        self.lift(o, Poly::checked_add)
    }
    pub fn sub(&self, o: &Dim) -> Dim {
        self.lift(o, Poly::checked_sub)
    }
    pub fn mul(&self, o: &Dim) -> Dim {
        self.lift(o, Poly::checked_mul)
    }
    /// Exact division; Unknown if not provably exact.
    pub fn div_exact(&self, o: &Dim) -> Dim {
        self.lift(o, |a, b| a.div_exact(b))
    }

    pub fn eval(&self, bind: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        match self {
            Dim::Known(p) => p.eval(bind),
            Dim::Unknown => None,
        }
    }
}

impl From<i64> for Dim {
    fn from(n: i64) -> Dim {
        Dim::fixed(n)
    }
}

impl fmt::Display for Dim {
    /// `128`, `[batch]`, `[batch*seq]`, `?`: brackets keep symbol names (which
    /// may contain `x`) apart from the `x` that separates dims.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(p) => match p.as_constant() {
                Some(c) => write!(f, "{c}"),
                None => write!(f, "[{p}]"),
            },
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// Parses a polynomial written by [`Poly`]'s `Display`: sums of products of
/// integers and identifiers (`batch*seq+1`, `2*past-1`).
pub fn parse_poly(s: &str) -> Result<Poly, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty dimension expression".into());
    }
    let mut out = Poly::default();
    let mut term_start = 0;
    let bytes = s.as_bytes();
    let mut sign = 1i64;
    let mut i = 0;
    let flush = |text: &str, sign: i64, out: &mut Poly| -> Result<(), String> {
        let mut p = Poly::constant(sign);
        for factor in text.split('*') {
            let factor = factor.trim();
            if factor.is_empty() {
                return Err(format!("malformed dimension expression '{s}'"));
            }
            let f = if factor.bytes().all(|b| b.is_ascii_digit()) {
                Poly::constant(
                    factor
                        .parse()
                        .map_err(|_| format!("bad integer '{factor}'"))?,
                )
            } else if factor
                .chars()
                .all(|c| c.is_alphanumeric() || "_.:/-".contains(c) && c != '-')
            {
                Poly::symbol(factor)
            } else {
                return Err(format!("bad dimension symbol '{factor}'"));
            };
            p = p
                .checked_mul(&f)
                .ok_or("dimension expression overflows i64")?;
        }
        *out = out
            .checked_add(&p)
            .ok_or("dimension expression overflows i64")?;
        Ok(())
    };
    if bytes[0] == b'-' {
        sign = -1;
        i = 1;
        term_start = 1;
    }
    while i < bytes.len() {
        if (bytes[i] == b'+' || bytes[i] == b'-') && i > term_start {
            flush(&s[term_start..i], sign, &mut out)?;
            sign = if bytes[i] == b'-' { -1 } else { 1 };
            term_start = i + 1;
        }
        i += 1;
    }
    flush(&s[term_start..], sign, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_and_unflatten() {
        let b = Dim::sym("batch");
        let s = Dim::sym("seq");
        let flat = b.mul(&s).mul(&Dim::fixed(128));
        assert_eq!(flat.to_string(), "[128*batch*seq]");
        let heads = flat.div_exact(&Dim::fixed(4 * 32)).div_exact(&b);
        assert!(heads.same_as(&s));
        assert_eq!(Dim::fixed(6).div_exact(&Dim::fixed(4)), Dim::Unknown);
    }

    #[test]
    fn concat_of_cache_and_new_tokens() {
        let total = Dim::sym("past_seq").add(&Dim::sym("seq"));
        assert_eq!(total.to_string(), "[past_seq+seq]");
        let back = total.sub(&Dim::sym("seq"));
        assert!(back.same_as(&Dim::sym("past_seq")));
        let bind = |n: &str| match n {
            "past_seq" => Some(16),
            "seq" => Some(1),
            _ => None,
        };
        assert_eq!(total.eval(&bind), Some(17));
    }

    #[test]
    fn overflow_is_unknown_not_a_panic() {
        let big = Dim::fixed(i64::MAX);
        assert_eq!(big.add(&Dim::fixed(1)), Dim::Unknown);
        assert_eq!(big.mul(&Dim::sym("n")).mul(&Dim::fixed(2)), Dim::Unknown);
        assert!(parse_poly("9223372036854775807*2").is_err());
    }

    #[test]
    fn display_parses_back() {
        for d in [
            Dim::sym("batch").mul(&Dim::sym("seq")).add(&Dim::fixed(1)),
            Dim::sym("n").mul(&Dim::fixed(2)).sub(&Dim::fixed(3)),
            Dim::fixed(0).sub(&Dim::sym("a")),
            Dim::sym("x").mul(&Dim::sym("x")),
        ] {
            let text = d.to_string();
            let inner = text.trim_start_matches('[').trim_end_matches(']');
            assert_eq!(Dim::Known(parse_poly(inner).unwrap()), d, "{text}");
        }
    }
}
