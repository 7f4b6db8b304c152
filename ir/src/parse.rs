//! Parser for the textual form written by [`crate::print`]. Errors carry
//! line:column.

use crate::attr::{Attr, Attrs};
use crate::dim::{parse_poly, Dim};
use crate::dtype::DType;
use crate::graph::{ConstId, Graph, Loc, ValueId};
use crate::ops::OpKind;
use crate::tensor::{Data, Tensor};
use crate::types::{ElemType, Granularity, QParam, QuantType, TensorType};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for ParseError {}

type PResult<T> = Result<T, ParseError>;

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    /// Constant names referenced before the constants section defines them.
    const_names: HashMap<String, ConstId>,
    pending_consts: Vec<String>,
}

/// Parses one graph.
pub fn parse_graph(src: &str) -> PResult<Graph> {
    let mut p = Parser {
        src,
        pos: 0,
        const_names: HashMap::new(),
        pending_consts: Vec::new(),
    };
    let g = p.graph()?;
    p.ws();
    if p.pos < p.src.len() {
        return Err(p.err("unexpected text after the graph"));
    }
    Ok(g)
}

impl<'s> Parser<'s> {
    fn err(&self, msg: impl Into<String>) -> ParseError {
        let before = &self.src[..self.pos];
        let line = before.matches('\n').count() + 1;
        let col = self.pos - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ParseError {
            line,
            col,
            message: msg.into(),
        }
    }

    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    fn ws(&mut self) {
        loop {
            let r = self.rest();
            let t = r.trim_start();
            self.pos += r.len() - t.len();
            if t.starts_with("//") {
                self.pos += t.find('\n').unwrap_or(t.len());
            } else {
                break;
            }
        }
    }

    fn peek(&mut self, s: &str) -> bool {
        self.ws();
        self.rest().starts_with(s)
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.peek(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> PResult<()> {
        if self.eat(s) {
            Ok(())
        } else {
            let found: String = self.rest().chars().take(20).collect();
            Err(self.err(format!("expected '{s}', found '{found}'")))
        }
    }

    fn ident(&mut self) -> PResult<&'s str> {
        self.ws();
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .map(|(i, _)| i)
            .unwrap_or(r.len());
        if n == 0 {
            return Err(self.err("expected an identifier"));
        }
        self.pos += n;
        Ok(&r[..n])
    }

    fn string(&mut self) -> PResult<String> {
        self.ws();
        if !self.rest().starts_with('"') {
            return Err(self.err("expected a string"));
        }
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, 'u')) => {
                        let mut hex = String::new();
                        chars.next(); // '{'
                        for (_, h) in chars.by_ref() {
                            if h == '}' {
                                break;
                            }
                            hex.push(h);
                        }
                        let c = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        out.push(c.ok_or_else(|| self.err("bad \\u escape"))?);
                    }
                    _ => return Err(self.err("bad escape in string")),
                },
                c => out.push(c),
            }
        }
        Err(self.err("unterminated string"))
    }

    /// An identifier or a quoted string.
    fn name(&mut self) -> PResult<String> {
        if self.peek("\"") {
            self.string()
        } else {
            Ok(self.ident()?.to_string())
        }
    }

    /// A number token: returns the text (caller decides int vs float).
    fn number_text(&mut self) -> PResult<&'s str> {
        self.ws();
        let r = self.rest();
        for special in ["-inf", "inf", "nan"] {
            if r.starts_with(special) {
                self.pos += special.len();
                return Ok(&r[..special.len()]);
            }
        }
        let n = r
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_digit()
                    || c == '.'
                    || c == 'e'
                    || c == 'E'
                    || ((c == '-' || c == '+')
                        && (i == 0 || matches!(r.as_bytes()[i - 1], b'e' | b'E'))))
            })
            .map(|(i, _)| i)
            .unwrap_or(r.len());
        if n == 0 {
            return Err(self.err("expected a number"));
        }
        self.pos += n;
        Ok(&r[..n])
    }

    fn int(&mut self) -> PResult<i64> {
        let t = self.number_text()?;
        t.parse()
            .map_err(|_| self.err(format!("bad integer '{t}'")))
    }

    fn parse_f64(&self, t: &str) -> PResult<f64> {
        match t {
            "nan" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => t.parse().map_err(|_| self.err(format!("bad number '{t}'"))),
        }
    }

    fn const_id(&mut self) -> PResult<ConstId> {
        self.expect("@")?;
        let name = self.name()?;
        let next = ConstId(self.pending_consts.len() as u32);
        Ok(*self.const_names.entry(name.clone()).or_insert_with(|| {
            self.pending_consts.push(name);
            next
        }))
    }

    fn dtype(&mut self) -> PResult<DType> {
        let id = self.ident()?;
        DType::from_name(id).ok_or_else(|| self.err(format!("unknown element type '{id}'")))
    }

    fn tensor_type(&mut self) -> PResult<TensorType> {
        self.expect("tensor")?;
        self.expect("<")?;
        let mut shape = Vec::new();
        loop {
            self.ws();
            let r = self.rest();
            if r.starts_with('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| self.err("unterminated dimension"))?;
                let poly = parse_poly(&r[1..end]).map_err(|e| self.err(e))?;
                self.pos += end + 1;
                shape.push(Dim::Known(poly));
            } else if r.starts_with('?') {
                self.pos += 1;
                shape.push(Dim::Unknown);
            } else if r.starts_with(|c: char| c.is_ascii_digit()) {
                let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                shape.push(Dim::fixed(
                    r[..n].parse().map_err(|_| self.err("bad dimension"))?,
                ));
                self.pos += n;
            } else {
                break;
            }
            self.expect("x")?;
        }
        let elem = if self.eat("!tsr.quant") {
            self.expect("<")?;
            let storage = self.dtype()?;
            self.expect(":")?;
            let expressed = self.dtype()?;
            self.expect(",")?;
            let granularity = match self.ident()? {
                "tensor" => Granularity::PerTensor,
                "axis" => {
                    self.expect("(")?;
                    let axis = self.int()?;
                    self.expect(")")?;
                    Granularity::PerAxis { axis }
                }
                "block" => {
                    self.expect("(")?;
                    let axis = self.int()?;
                    self.expect(",")?;
                    let block = self.int()?;
                    self.expect(")")?;
                    Granularity::PerBlock { axis, block }
                }
                g => return Err(self.err(format!("unknown quantization granularity '{g}'"))),
            };
            self.expect(",")?;
            self.expect("scale")?;
            self.expect("=")?;
            let scale = self.qparam()?;
            let zero_point = if self.eat(",") {
                self.expect("zp")?;
                self.expect("=")?;
                Some(self.qparam()?)
            } else {
                None
            };
            self.expect(">")?;
            ElemType::Quant(Box::new(QuantType {
                storage,
                expressed,
                granularity,
                scale,
                zero_point,
            }))
        } else {
            ElemType::Plain(self.dtype()?)
        };
        self.expect(">")?;
        Ok(TensorType { shape, elem })
    }

    fn qparam(&mut self) -> PResult<QParam> {
        if self.peek("@") {
            Ok(QParam::Const(self.const_id()?))
        } else {
            let t = self.number_text()?;
            Ok(QParam::Imm(self.parse_f64(t)?))
        }
    }

    /// `dense<...> : tensor<...>`
    fn literal(&mut self) -> PResult<Tensor> {
        self.expect("dense")?;
        self.expect("<")?;
        if self.peek("elided") {
            return Err(self.err(
                "this constant was elided when printed; print without elision to parse it back",
            ));
        }
        enum Body {
            Hex(Vec<u8>),
            List(Vec<String>),
        }
        let body = if self.peek("\"") {
            let s = self.string()?;
            let hex = s
                .strip_prefix("0x")
                .ok_or_else(|| self.err("hex literal must start with 0x"))?;
            if hex.len() % 2 != 0 {
                return Err(self.err("odd number of hex digits"));
            }
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| self.err("bad hex digit"))?;
            Body::Hex(bytes)
        } else {
            self.expect("[")?;
            let mut items = Vec::new();
            if !self.eat("]") {
                loop {
                    if self.peek("\"") {
                        items.push(format!("\"{}", self.string()?));
                    } else if self.peek("true") || self.peek("false") {
                        items.push(self.ident()?.to_string());
                    } else {
                        items.push(self.number_text()?.to_string());
                    }
                    if self.eat("]") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
            Body::List(items)
        };
        self.expect(">")?;
        self.expect(":")?;
        let ty = self.tensor_type()?;
        let shape: Vec<usize> = ty
            .static_shape()
            .ok_or_else(|| self.err("literal type must be static"))?
            .into_iter()
            .map(|d| d as usize)
            .collect();
        let dtype = ty.dtype();
        match body {
            Body::Hex(bytes) => Tensor::from_bytes(dtype, shape, &bytes).map_err(|e| self.err(e)),
            Body::List(items) => {
                let data = match dtype {
                    DType::Str => Data::Str(
                        items
                            .iter()
                            .map(|s| s.trim_start_matches('"').to_string())
                            .collect(),
                    ),
                    DType::Bool => Data::Bool(items.iter().map(|s| s == "true").collect()),
                    DType::F32 => Data::F32(
                        items
                            .iter()
                            .map(|s| match s.as_str() {
                                "nan" | "inf" | "-inf" => self.parse_f64(s).map(|v| v as f32),
                                _ => s
                                    .parse::<f32>()
                                    .map_err(|_| self.err(format!("bad f32 '{s}'"))),
                            })
                            .collect::<PResult<_>>()?,
                    ),
                    DType::F64 => Data::F64(
                        items
                            .iter()
                            .map(|s| self.parse_f64(s))
                            .collect::<PResult<_>>()?,
                    ),
                    DType::U64 => Data::U64(
                        items
                            .iter()
                            .map(|s| s.parse().map_err(|_| self.err("bad u64")))
                            .collect::<PResult<_>>()?,
                    ),
                    d if d.is_int() => {
                        let v = items
                            .iter()
                            .map(|s| {
                                s.parse::<i64>()
                                    .map_err(|_| self.err(format!("bad integer '{s}'")))
                            })
                            .collect::<PResult<Vec<i64>>>()?;
                        Tensor::from_i64(d, shape.clone(), &v).data
                    }
                    d => return Err(self.err(format!("{d} literals are written in hex"))),
                };
                Tensor::new(dtype, shape, data).map_err(|e| self.err(e))
            }
        }
    }

    fn attr_value(&mut self) -> PResult<Attr> {
        self.ws();
        let r = self.rest();
        if r.starts_with('"') {
            return Ok(Attr::Str(self.string()?));
        }
        if r.starts_with('@') {
            return Ok(Attr::Const(self.const_id()?));
        }
        if r.starts_with("dense<") {
            return Ok(Attr::Tensor(Arc::new(self.literal()?)));
        }
        if r.starts_with('[') {
            self.pos += 1;
            if self.eat("]") {
                return Ok(Attr::Ints(Vec::new()));
            }
            if self.peek("\"") {
                let mut v = vec![self.string()?];
                while self.eat(",") {
                    v.push(self.string()?);
                }
                self.expect("]")?;
                return Ok(Attr::Strs(v));
            }
            let mut texts = vec![self.number_text()?];
            while self.eat(",") {
                texts.push(self.number_text()?);
            }
            self.expect("]")?;
            if texts.iter().any(|t| is_float_text(t)) {
                return Ok(Attr::Floats(
                    texts
                        .iter()
                        .map(|t| self.parse_f64(t))
                        .collect::<PResult<_>>()?,
                ));
            }
            return Ok(Attr::Ints(
                texts
                    .iter()
                    .map(|t| t.parse().map_err(|_| self.err("bad integer")))
                    .collect::<PResult<_>>()?,
            ));
        }
        if r.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            || r.starts_with("inf")
            || r.starts_with("nan")
        {
            let t = self.number_text()?;
            return if is_float_text(t) {
                Ok(Attr::Float(self.parse_f64(t)?))
            } else {
                Ok(Attr::Int(
                    t.parse()
                        .map_err(|_| self.err(format!("bad integer '{t}'")))?,
                ))
            };
        }
        Ok(Attr::Type(self.dtype()?))
    }

    fn value_name(&mut self) -> PResult<String> {
        self.expect("%")?;
        if self.rest().starts_with('"') {
            Ok(format!("\"{}", self.string()?))
        } else {
            let r = self.rest();
            let n = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(r.len());
            if n == 0 {
                return Err(self.err("expected a value name after '%'"));
            }
            self.pos += n;
            Ok(r[..n].to_string())
        }
    }

    fn graph(&mut self) -> PResult<Graph> {
        self.expect("tsr.graph")?;
        self.expect("@")?;
        let mut g = Graph::new(&self.name()?);
        let mut values: HashMap<String, ValueId> = HashMap::new();
        self.expect("(")?;
        if !self.eat(")") {
            loop {
                let raw = self.value_name()?;
                self.expect(":")?;
                let ty = self.tensor_type()?;
                let name = raw
                    .strip_prefix('"')
                    .map(str::to_string)
                    .unwrap_or_else(|| raw.clone());
                let v = g.add_input(&name, ty);
                if values.insert(raw, v).is_some() {
                    return Err(self.err("duplicate input name"));
                }
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        self.expect("->")?;
        self.expect("(")?;
        let mut out_sig = Vec::new();
        if !self.eat(")") {
            loop {
                let name = self.string()?;
                self.expect(":")?;
                out_sig.push((name, self.tensor_type()?));
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        if self.eat("opsets") {
            self.expect("{")?;
            if !self.eat("}") {
                loop {
                    let d = self.string()?;
                    self.expect("=")?;
                    let v = self.int()?;
                    g.opsets.insert(d, v);
                    if self.eat("}") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
        }
        self.expect("{")?;
        loop {
            if self.eat("tsr.return") {
                let mut rets = Vec::new();
                if self.peek("%") {
                    loop {
                        let n = self.value_name()?;
                        rets.push(
                            *values
                                .get(&n)
                                .ok_or_else(|| self.err(format!("undefined value %{n}")))?,
                        );
                        if !self.eat(",") {
                            break;
                        }
                    }
                }
                if rets.len() != out_sig.len() {
                    return Err(self.err(format!(
                        "return has {} values, signature {}",
                        rets.len(),
                        out_sig.len()
                    )));
                }
                for ((name, ty), v) in out_sig.into_iter().zip(rets) {
                    if *g.ty(v) != ty {
                        return Err(self.err(format!(
                            "output '{name}' type {ty} differs from the returned value's"
                        )));
                    }
                    g.add_output(&name, v);
                }
                self.expect("}")?;
                break;
            }
            self.op(&mut g, &mut values)?;
        }
        // Constants keep the order of the constants section, so printing
        // again gives the same text.
        let mut section = Vec::new();
        if self.eat("tsr.constants") {
            self.expect("{")?;
            while !self.eat("}") {
                self.expect("@")?;
                let name = self.name()?;
                self.expect("=")?;
                let t = self.literal()?;
                section.push((name, Arc::new(t)));
            }
        }
        let pending = std::mem::take(&mut self.pending_consts);
        let mut remap = Vec::with_capacity(pending.len());
        for name in &pending {
            let pos = section
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| self.err(format!("constant @{name} is not defined")))?;
            remap.push(ConstId(pos as u32));
        }
        for (name, t) in section {
            g.add_constant(&name, t);
        }
        g.remap_constants(&|c| remap[c.0 as usize]);
        Ok(g)
    }

    fn op(&mut self, g: &mut Graph, values: &mut HashMap<String, ValueId>) -> PResult<()> {
        let mut result_names = Vec::new();
        if self.peek("%") {
            loop {
                result_names.push(self.value_name()?);
                if !self.eat(",") {
                    break;
                }
            }
            self.expect("=")?;
        }
        self.ws();
        let op_start = self.pos;
        let full = self.ident()?;
        let mnemonic = full
            .strip_prefix("tsr.")
            .ok_or_else(|| self.err(format!("expected a tsr op, found '{full}'")))?;
        let kind = OpKind::from_mnemonic(mnemonic).ok_or_else(|| {
            self.pos = op_start;
            self.err(format!("unknown op 'tsr.{mnemonic}'"))
        })?;
        let mut operands = Vec::new();
        if self.peek("%") || self.peek("_") {
            loop {
                if self.eat("_") {
                    operands.push(None);
                } else {
                    let n = self.value_name()?;
                    operands.push(Some(
                        *values
                            .get(&n)
                            .ok_or_else(|| self.err(format!("undefined value %{n}")))?,
                    ));
                }
                if !self.eat(",") {
                    break;
                }
            }
        }
        let mut attrs = Attrs::new();
        if self.eat("{") && !self.eat("}") {
            loop {
                let k = self.name()?;
                self.expect("=")?;
                let v = self.attr_value()?;
                attrs.insert(k, v);
                if self.eat("}") {
                    break;
                }
                self.expect(",")?;
            }
        }
        self.expect(":")?;
        self.expect("(")?;
        let mut n_types = 0;
        if !self.eat(")") {
            loop {
                self.tensor_type()?;
                n_types += 1;
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        if n_types != operands.iter().flatten().count() {
            return Err(self.err("operand type count differs from the operand count"));
        }
        self.expect("->")?;
        let mut result_types = Vec::new();
        if self.eat("(") {
            if !self.eat(")") {
                loop {
                    result_types.push(self.tensor_type()?);
                    if self.eat(")") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
        } else {
            result_types.push(self.tensor_type()?);
        }
        if result_types.len() != result_names.len() {
            return Err(self.err(format!(
                "{} results named, {} typed",
                result_names.len(),
                result_types.len()
            )));
        }
        let loc = if self.eat("loc(") {
            let name = self.string()?;
            self.expect("(")?;
            let op_type = self.string()?;
            self.expect(")")?;
            self.expect(")")?;
            Some(Loc { name, op_type })
        } else {
            None
        };
        let results = g.push_op(kind, operands, result_types, attrs, loc);
        for (n, v) in result_names.into_iter().zip(results) {
            if values.insert(n.clone(), v).is_some() {
                return Err(self.err(format!("value %{n} is defined twice")));
            }
        }
        Ok(())
    }
}

fn is_float_text(t: &str) -> bool {
    t.contains(['.', 'e', 'E']) || matches!(t, "nan" | "inf" | "-inf")
}
