//! `--op-stats`: a histogram of the ops of a graph, as text or JSON.

use std::collections::BTreeMap;
use tessera_ir::{Graph, OpKind};

pub struct OpStats {
    pub ops: BTreeMap<String, usize>,
    pub total: usize,
    pub constants: usize,
    pub constant_bytes: usize,
}

impl OpStats {
    pub fn of(g: &Graph) -> OpStats {
        let mut ops = BTreeMap::new();
        for op in &g.ops {
            if op.kind != OpKind::Constant {
                *ops.entry(format!("tsr.{}", op.kind.mnemonic()))
                    .or_insert(0) += 1;
            }
        }
        OpStats {
            total: ops.values().sum(),
            ops,
            constants: g.constants.len(),
            constant_bytes: g.constants.iter().map(|c| c.value.to_bytes().len()).sum(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ops": self.ops,
            "total_ops": self.total,
            "constants": self.constants,
            "constant_bytes": self.constant_bytes,
        })
    }

    pub fn to_text(&self) -> String {
        let mut rows: Vec<(&String, &usize)> = self.ops.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut s = String::new();
        for (name, n) in rows {
            s.push_str(&format!("{n:>6}  {name}\n"));
        }
        s.push_str(&format!("{:>6}  ops in total\n", self.total));
        s.push_str(&format!(
            "{:>6}  constants ({} bytes)\n",
            self.constants, self.constant_bytes
        ));
        s
    }
}
