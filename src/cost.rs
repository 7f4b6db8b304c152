//! `tessera cost`: the cost model's prediction per op of the optimized
//! graph on a target. Symbolic dims are bound first (`--dim`), so the
//! pipeline sees static shapes, as a backend compiling for those sizes does,
//! and the `tiling` rules can block the products.

use crate::cli::CostArgs;
use crate::driver;
use serde_json::json;
use std::process::ExitCode;
use tessera_cost_model::op_cost::{self, OpEstimate};
use tessera_cost_model::TargetDesc;
use tessera_ir::{Graph, OpKind, TensorType};
use tessera_passes::{PassManager, PassOptions};

/// One op's prediction.
struct Row {
    op: &'static str,
    node: String,
    est: OpEstimate,
}

fn predict(g: &Graph, target: &TargetDesc) -> Vec<Row> {
    g.ops
        .iter()
        .filter(|op| op.kind != OpKind::Constant)
        .map(|op| {
            let operands: Vec<Option<&TensorType>> =
                op.operands.iter().map(|o| o.map(|v| g.ty(v))).collect();
            let results: Vec<&TensorType> = op.results.iter().map(|&r| g.ty(r)).collect();
            let est = op_cost::estimate(
                target,
                op.kind,
                &op.attrs,
                &operands,
                &results,
                op_cost::DEFAULT_SYMBOL_SIZE,
            );
            Row {
                op: op.kind.mnemonic(),
                node: op.loc.as_ref().map(|l| l.name.clone()).unwrap_or_default(),
                est,
            }
        })
        .collect()
}

fn tile_text(t: Option<[u64; 3]>) -> String {
    t.map(|[m, n, k]| format!("{m}x{n}x{k}"))
        .unwrap_or_else(|| "-".into())
}

fn text(rows: &[Row], target: &TargetDesc, total: f64) -> String {
    let mut s = format!(
        "{:<24} {:<40} {:>12} {:>14} {:>14} {:<9} {}\n",
        "op", "node", "time_us", "flops", "dram_bytes", "bound", "tile"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<24} {:<40} {:>12.3} {:>14.0} {:>14.0} {:<9} {}\n",
            r.op,
            if r.node.is_empty() { "-" } else { &r.node },
            r.est.seconds * 1e6,
            r.est.flops,
            r.est.dram_bytes(),
            r.est.bound.name(),
            tile_text(r.est.tile)
        ));
    }
    s.push_str(&format!(
        "total on {} ({} ops): {:.3} us\n",
        target.name,
        rows.len(),
        total * 1e6
    ));
    s
}

fn to_json(rows: &[Row], target: &TargetDesc, total: f64) -> serde_json::Value {
    let ops: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "op": r.op,
                "node": r.node,
                "seconds": r.est.seconds,
                "flops": r.est.flops,
                "bytes": r.est.dram_bytes(),
                "level_bytes": r.est.level_bytes,
                "bound": r.est.bound.name(),
                "tile": r.est.tile,
            })
        })
        .collect();
    json!({ "target": target.name, "ops": ops, "total_seconds": total })
}

pub fn cost(a: CostArgs) -> Result<ExitCode, String> {
    let opts = &a.opts;
    let target = TargetDesc::builtin(opts.target.name())
        .ok_or_else(|| format!("no cost description for target '{}'", opts.target.name()))?;
    let g = driver::load(&opts.model)?;
    let env = tessera_cpu::specialize::env_from_dims(&g, &opts.dims).map_err(|e| e.to_string())?;
    let mut g = tessera_cpu::specialize::specialize(&g, &env).map_err(|e| e.to_string())?;
    let pipeline = opts
        .passes
        .clone()
        .unwrap_or_else(|| driver::level_pipeline(opts.opt_level, opts.target));
    let pm = PassManager::parse(
        &pipeline,
        PassOptions {
            verify_each: opts.verify_each,
            print_after_all: opts.print_ir_after_all,
        },
    )
    .map_err(|e| e.to_string())?;
    pm.run(&mut g, &mut |name, g| driver::dump(name, g))
        .map_err(|e| e.to_string())?;
    let rows = predict(&g, &target);
    let total: f64 = rows.iter().map(|r| r.est.seconds).sum();
    let out = if a.json {
        format!("{:#}\n", to_json(&rows, &target, total))
    } else {
        text(&rows, &target, total)
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
