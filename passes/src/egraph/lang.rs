//! The e-graph language: one generic e-node over the op table, so every
//! [`OpKind`] is in the language without a variant per op.
//!
//! A multi-result op is one e-node per result (`result` is the index): each
//! SSA value is an e-class. The export groups e-nodes that differ only in
//! `result` back into one op.

use egg::{Id, Language};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tessera_ir::{Attr, Attrs, OpKind};

/// An op's attributes with a canonical byte key, so e-nodes hash and compare
/// exactly (floats by bits: a NaN attribute equals itself).
#[derive(Clone, Debug)]
pub struct AttrSet {
    attrs: Arc<Attrs>,
    key: Arc<[u8]>,
}

impl AttrSet {
    pub fn new(attrs: Attrs) -> AttrSet {
        let key = attr_key(&attrs).into();
        AttrSet {
            attrs: Arc::new(attrs),
            key,
        }
    }

    pub fn empty() -> AttrSet {
        AttrSet::new(Attrs::new())
    }

    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }
}

impl PartialEq for AttrSet {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for AttrSet {}
impl Hash for AttrSet {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key.hash(h)
    }
}
impl PartialOrd for AttrSet {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for AttrSet {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key.cmp(&o.key)
    }
}

/// A deterministic serialization: the map is sorted by name already; every
/// value is written with a tag and lengths so distinct maps never collide.
fn attr_key(attrs: &Attrs) -> Vec<u8> {
    let mut k = Vec::new();
    let put_len = |k: &mut Vec<u8>, n: usize| k.extend_from_slice(&(n as u64).to_le_bytes());
    let put_str = |k: &mut Vec<u8>, s: &str| {
        put_len(k, s.len());
        k.extend_from_slice(s.as_bytes());
    };
    for (name, a) in attrs {
        put_str(&mut k, name);
        match a {
            Attr::Int(i) => {
                k.push(0);
                k.extend_from_slice(&i.to_le_bytes());
            }
            Attr::Float(f) => {
                k.push(1);
                k.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Attr::Str(s) => {
                k.push(2);
                put_str(&mut k, s);
            }
            Attr::Ints(v) => {
                k.push(3);
                put_len(&mut k, v.len());
                v.iter().for_each(|i| k.extend_from_slice(&i.to_le_bytes()));
            }
            Attr::Floats(v) => {
                k.push(4);
                put_len(&mut k, v.len());
                v.iter()
                    .for_each(|f| k.extend_from_slice(&f.to_bits().to_le_bytes()));
            }
            Attr::Strs(v) => {
                k.push(5);
                put_len(&mut k, v.len());
                v.iter().for_each(|s| put_str(&mut k, s));
            }
            Attr::Type(d) => {
                k.push(6);
                put_str(&mut k, d.name());
            }
            Attr::Tensor(t) => {
                k.push(7);
                put_str(&mut k, t.dtype.name());
                put_len(&mut k, t.shape.len());
                t.shape.iter().for_each(|&d| put_len(&mut k, d));
                let bytes = t.to_bytes();
                put_len(&mut k, bytes.len());
                k.extend_from_slice(&bytes);
            }
            Attr::Const(c) => {
                k.push(8);
                k.extend_from_slice(&c.0.to_le_bytes());
            }
        }
    }
    k
}

/// One result of one op. Field order matters: the derived `Ord` must group
/// e-nodes by [`Language::discriminant`] (kind, result, num_results) first,
/// which egg's matcher relies on for big e-classes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpNode {
    pub kind: OpKind,
    pub result: u16,
    pub num_results: u16,
    /// `None` only in rule patterns: matches any attributes.
    pub attrs: Option<AttrSet>,
    /// Distinguishes ops that must not be merged even when identical
    /// (random ops: two draws are two values). 0 otherwise.
    pub salt: u32,
    pub children: Vec<Id>,
}

/// The e-graph language of the Tessera dialect.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TsrLang {
    /// Graph input, by position in `Graph::inputs`.
    Input(u32),
    /// A constant, by index in the analysis' constant pool (which starts as
    /// the source graph's constants, so index = `ConstId` for those).
    Const(u32),
    /// An omitted optional operand.
    Absent,
    Op(OpNode),
}

impl TsrLang {
    pub fn op(kind: OpKind, attrs: AttrSet, children: Vec<Id>) -> TsrLang {
        TsrLang::Op(OpNode {
            kind,
            result: 0,
            num_results: 1,
            attrs: Some(attrs),
            salt: 0,
            children,
        })
    }

    pub fn as_op(&self) -> Option<&OpNode> {
        match self {
            TsrLang::Op(n) => Some(n),
            _ => None,
        }
    }
}

/// What must be equal for two e-nodes to be the same operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Discriminant {
    Input(u32),
    Const(u32),
    Absent,
    Op(OpKind, u16, u16),
}

impl Language for TsrLang {
    type Discriminant = Discriminant;

    fn discriminant(&self) -> Discriminant {
        match self {
            TsrLang::Input(i) => Discriminant::Input(*i),
            TsrLang::Const(c) => Discriminant::Const(*c),
            TsrLang::Absent => Discriminant::Absent,
            TsrLang::Op(n) => Discriminant::Op(n.kind, n.result, n.num_results),
        }
    }

    /// `self` may be a pattern node with wildcard attributes.
    fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (TsrLang::Op(a), TsrLang::Op(b)) => {
                a.kind == b.kind
                    && a.result == b.result
                    && a.num_results == b.num_results
                    && a.salt == b.salt
                    && a.children.len() == b.children.len()
                    && (a.attrs.is_none() || b.attrs.is_none() || a.attrs == b.attrs)
            }
            _ => self == other,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            TsrLang::Op(n) => &n.children,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            TsrLang::Op(n) => &mut n.children,
            _ => &mut [],
        }
    }
}

impl fmt::Display for TsrLang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TsrLang::Input(i) => write!(f, "input{i}"),
            TsrLang::Const(c) => write!(f, "const{c}"),
            TsrLang::Absent => f.write_str("absent"),
            TsrLang::Op(n) => {
                f.write_str(n.kind.mnemonic())?;
                if n.attrs.is_none() {
                    f.write_str("*")?;
                }
                if n.num_results > 1 {
                    write!(f, "#{}", n.result)?;
                }
                Ok(())
            }
        }
    }
}

/// Pattern syntax: `mul` is the op with no attributes (all defaults),
/// `transpose*` the op with any attributes; `absent` an omitted operand.
/// Graph inputs and constants are never written in patterns (they are
/// variables there), so they do not parse.
impl egg::FromOp for TsrLang {
    type Error = String;

    fn from_op(op: &str, children: Vec<Id>) -> Result<Self, String> {
        if op == "absent" && children.is_empty() {
            return Ok(TsrLang::Absent);
        }
        let (name, wildcard) = match op.strip_suffix('*') {
            Some(n) => (n, true),
            None => (op, false),
        };
        let kind = OpKind::from_mnemonic(name)
            .ok_or_else(|| format!("unknown op '{name}' in a pattern"))?;
        Ok(TsrLang::Op(OpNode {
            kind,
            result: 0,
            num_results: 1,
            attrs: if wildcard {
                None
            } else {
                Some(AttrSet::empty())
            },
            salt: 0,
            children,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egg::FromOp;

    #[test]
    fn attr_sets_compare_by_value_and_floats_by_bits() {
        let mk = |f: f64| {
            let mut a = Attrs::new();
            a.insert("alpha".into(), Attr::Float(f));
            AttrSet::new(a)
        };
        assert_eq!(mk(1.0), mk(1.0));
        assert_ne!(mk(1.0), mk(-1.0));
        assert_eq!(mk(f64::NAN), mk(f64::NAN));
        // An int and a float attribute of the same numeric value are different keys.
        let mut a = Attrs::new();
        a.insert("alpha".into(), Attr::Int(1));
        assert_ne!(AttrSet::new(a), mk(1.0));
    }

    #[test]
    fn wildcard_pattern_nodes_match_any_attributes() {
        let pat = TsrLang::from_op("transpose*", vec![Id::from(0)]).unwrap();
        let mut a = Attrs::new();
        a.insert("perm".into(), Attr::Ints(vec![1, 0]));
        let node = TsrLang::op(
            OpKind::from_mnemonic("transpose").unwrap(),
            AttrSet::new(a),
            vec![Id::from(3)],
        );
        assert!(pat.matches(&node));
        let exact = TsrLang::from_op("transpose", vec![Id::from(0)]).unwrap();
        assert!(!exact.matches(&node));
        assert!(TsrLang::from_op("no_such_op", vec![]).is_err());
    }
}
