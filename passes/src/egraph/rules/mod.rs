//! Rewrite rules as data, in named groups that can be switched on and off.
//!
//! A rule is a pattern (`lhs`), an optional condition on the analysis, and a
//! right-hand side: another pattern or, when attributes must be computed
//! (composing two permutations), a function building the replacement.
//! Every replacement goes through the same guard: its type is inferred with
//! the ops' own `infer` before anything is added, and it is applied only if
//! it equals the matched e-class's type. Shape-invalid rewrites (a `x*1`
//! whose 1 broadcasts `x`) are refused and counted, never added.
//!
//! Adding a rule: one line in its group's table under a comment stating the
//! identity, and a numeric test in `egraph/tests.rs` that builds a graph
//! matching the left-hand side on random shapes and inputs and compares it
//! with the optimized graph on the reference interpreter (the test
//! `every_rule_is_checked_numerically` lists the rules that have one).
//! A group is a function returning its table, so groups can be switched
//! on and off by name ([`crate::egraph::Config::groups`]).

pub mod algebra;
pub mod fusion;
pub mod recognize;
pub mod tiling;

use super::analysis::{fold_result, infer_result, is_absent, same_type, TsrAnalysis, TsrEGraph};
use super::lang::TsrLang;
use egg::{Applier, Id, Language, Pattern, PatternAst, Rewrite, Subst, Symbol, Var};
use std::str::FromStr;
use tessera_ir::tensor::SharedTensor;
use tessera_ir::TensorType;

/// A condition on the matched values.
#[derive(Clone, Copy)]
pub enum Cond {
    Always,
    /// Every variable is a known constant.
    Const(&'static [&'static str]),
    /// The variable is a non-empty constant whose every element is the value.
    Splat(&'static str, f64),
    /// The first variable is a known constant, the second is not.
    ConstNotConst(&'static str, &'static str),
    /// Constants of a floating-point type.
    FloatConst(&'static [&'static str]),
}

/// Builds replacement candidates for one match.
pub type BuildFn = fn(&TsrEGraph, Id, &Vars) -> Vec<Template>;

#[derive(Clone, Copy)]
pub enum Rhs {
    Pattern(&'static str),
    Build(BuildFn),
}

/// One rewrite: `lhs => rhs if cond`.
pub struct RuleDef {
    pub name: &'static str,
    pub lhs: &'static str,
    pub rhs: Rhs,
    pub cond: Cond,
}

/// A named group of rules, switched on or off as a whole.
pub struct RuleGroup {
    pub name: &'static str,
    pub summary: &'static str,
    pub rules: fn() -> Vec<RuleDef>,
}

pub static GROUPS: &[RuleGroup] = &[RuleGroup {
    name: "algebra",
    summary: "Algebraic identities: transpose/reshape chains, x*1, x+0, double negation, constants gathered and folded",
    rules: algebra::rules,
},
RuleGroup {
    name: "recognize",
    summary: "Decomposed GELU, SiLU/SwiGLU, RMSNorm, LayerNorm, Softmax, scaled-dot-product attention and rotate_half RoPE become one op each; attention drops repeated K/V heads and takes proven causal masks as is_causal",
    rules: recognize::rules,
},
RuleGroup {
    name: "fusion",
    summary: "Matrix products take their bias, activation and residual-add epilogues into one tsr.linear",
    rules: fusion::rules,
},
RuleGroup { name: "tiling", summary: "Products with static shapes get sched.tile blockings sized to the targets' memories; the extractor keeps the cheapest", rules: tiling::rules },
];

pub fn group(name: &str) -> Option<&'static RuleGroup> {
    GROUPS.iter().find(|g| g.name == name)
}

/// The matched variables of one substitution, looked up by name.
pub struct Vars<'a>(&'a Subst);

impl Vars<'_> {
    pub fn get(&self, name: &str) -> Id {
        self.0[Var::from_str(name).expect("rule variables are written ?name")]
    }
}

/// One node of a replacement: an existing e-class, or a new e-node whose
/// children index earlier template nodes (`Id::from(i)`).
#[derive(Clone, Debug)]
pub enum TNode {
    Class(Id),
    New(TsrLang),
}

/// A replacement term; the last node is its root.
#[derive(Clone, Debug, Default)]
pub struct Template(pub Vec<TNode>);

impl Template {
    pub fn class(id: Id) -> Template {
        Template(vec![TNode::Class(id)])
    }

    /// Adds a node and returns its reference for later children.
    pub fn push(&mut self, n: TNode) -> Id {
        self.0.push(n);
        Id::from(self.0.len() - 1)
    }
}

/// The inferred type of a template's root, or `None` if some new node is
/// ill-typed. Constant values are propagated (and small ones folded) so
/// value-dependent shapes infer as they would in the e-graph.
fn template_type(eg: &TsrEGraph, t: &Template) -> Option<TensorType> {
    let mut facts: Vec<(Option<TensorType>, Option<SharedTensor>, bool)> =
        Vec::with_capacity(t.0.len());
    for n in &t.0 {
        facts.push(match n {
            TNode::Class(id) => (
                eg[*id].data.ty.clone(),
                eg[*id].data.constant.clone(),
                is_absent(eg, *id),
            ),
            TNode::New(TsrLang::Op(op)) => {
                let kid = |c: &Id| &facts[usize::from(*c)];
                let tys: Vec<Option<&TensorType>> =
                    op.children.iter().map(|c| kid(c).0.as_ref()).collect();
                let consts: Vec<Option<&SharedTensor>> =
                    op.children.iter().map(|c| kid(c).1.as_ref()).collect();
                let ty = infer_result(op, &tys, &consts).ok()?;
                let present: Vec<bool> = op.children.iter().map(|c| !kid(c).2).collect();
                let owned: Vec<Option<SharedTensor>> = consts.iter().map(|c| c.cloned()).collect();
                let value = if owned.iter().zip(&present).all(|(c, p)| c.is_some() || !p) {
                    fold_result(op, Some(&ty), &owned, &present)
                } else {
                    None
                };
                (Some(ty), value, false)
            }
            TNode::New(TsrLang::Const(c)) => (
                eg.analysis.type_of_const(*c),
                eg.analysis.pool.get(*c as usize).cloned(),
                false,
            ),
            TNode::New(TsrLang::Input(i)) => (
                eg.analysis.input_types.get(*i as usize).cloned(),
                None,
                false,
            ),
            TNode::New(TsrLang::Absent) => (None, None, true),
        });
    }
    facts.pop().and_then(|f| f.0)
}

fn add_template(eg: &mut TsrEGraph, t: &Template) -> Id {
    let mut ids: Vec<Id> = Vec::with_capacity(t.0.len());
    for n in &t.0 {
        let id = match n {
            TNode::Class(id) => *id,
            TNode::New(node) => {
                let node = node.clone().map_children(|c| ids[usize::from(c)]);
                eg.add(node)
            }
        };
        ids.push(id);
    }
    *ids.last().expect("templates are non-empty")
}

/// Checks the condition, builds the candidates, and applies those the type
/// guard accepts.
struct Guarded {
    rhs: Rhs,
    rhs_pattern: Option<Pattern<TsrLang>>,
    cond: Cond,
}

impl Guarded {
    fn holds(&self, eg: &TsrEGraph, vars: &Vars) -> bool {
        let constant = |v: &str| eg[vars.get(v)].data.constant.clone();
        match self.cond {
            Cond::Always => true,
            Cond::Const(vs) => vs.iter().all(|v| constant(v).is_some()),
            Cond::FloatConst(vs) => vs
                .iter()
                .all(|v| constant(v).is_some_and(|t| t.dtype.is_float())),
            Cond::Splat(v, want) => constant(v)
                // Stops at the first other element: big weights fail fast.
                .is_some_and(|t| !t.is_empty() && (0..t.len()).all(|i| t.get_f64(i) == want)),
            Cond::ConstNotConst(c, x) => constant(c).is_some() && constant(x).is_none(),
        }
    }

    fn candidates(&self, eg: &TsrEGraph, eclass: Id, vars: &Vars) -> Vec<Template> {
        match (&self.rhs, &self.rhs_pattern) {
            (Rhs::Build(f), _) => f(eg, eclass, vars),
            (Rhs::Pattern(_), Some(p)) => vec![instantiate(&p.ast, vars.0)],
            (Rhs::Pattern(_), None) => Vec::new(),
        }
    }
}

fn instantiate(ast: &PatternAst<TsrLang>, subst: &Subst) -> Template {
    let mut t = Template::default();
    let mut map: Vec<Id> = Vec::with_capacity(ast.len());
    for n in ast.as_ref() {
        let id = match n {
            egg::ENodeOrVar::Var(v) => t.push(TNode::Class(subst[*v])),
            egg::ENodeOrVar::ENode(node) => {
                let node = node.clone().map_children(|c| map[usize::from(c)]);
                t.push(TNode::New(node))
            }
        };
        map.push(id);
    }
    t
}

impl Applier<TsrLang, TsrAnalysis> for Guarded {
    fn apply_one(
        &self,
        eg: &mut TsrEGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<TsrLang>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let vars = Vars(subst);
        if !self.holds(eg, &vars) {
            return Vec::new();
        }
        let Some(want) = eg[eclass].data.ty.clone() else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for t in self.candidates(eg, eclass, &vars) {
            if !template_type(eg, &t).is_some_and(|ty| same_type(&ty, &want)) {
                *eg.analysis.refused.entry(rule.to_string()).or_default() += 1;
                continue;
            }
            let root = add_template(eg, &t);
            if eg.union(eclass, root) {
                changed.push(eclass);
            }
        }
        changed
    }
}

/// Compiles a group's rules for egg.
pub fn compile(group: &RuleGroup) -> Result<Vec<Rewrite<TsrLang, TsrAnalysis>>, String> {
    (group.rules)()
        .into_iter()
        .map(|r| {
            let lhs: Pattern<TsrLang> = r
                .lhs
                .parse()
                .map_err(|e| format!("rule '{}': bad pattern '{}': {e}", r.name, r.lhs))?;
            let rhs_pattern = match r.rhs {
                Rhs::Pattern(p) => Some(
                    p.parse::<Pattern<TsrLang>>()
                        .map_err(|e| format!("rule '{}': bad pattern '{p}': {e}", r.name))?,
                ),
                Rhs::Build(_) => None,
            };
            if let Some(p) = &rhs_pattern {
                let bound = lhs.vars();
                if let Some(v) = p.vars().iter().find(|v| !bound.contains(v)) {
                    return Err(format!(
                        "rule '{}': {v} is not bound by the left-hand side",
                        r.name
                    ));
                }
                if p.ast.as_ref().iter().any(
                    |n| matches!(n, egg::ENodeOrVar::ENode(TsrLang::Op(o)) if o.attrs.is_none()),
                ) {
                    return Err(format!(
                        "rule '{}': a right-hand side cannot have wildcard attributes",
                        r.name
                    ));
                }
            }
            Rewrite::new(
                r.name,
                lhs,
                Guarded {
                    rhs: r.rhs,
                    rhs_pattern,
                    cond: r.cond,
                },
            )
        })
        .collect()
}
