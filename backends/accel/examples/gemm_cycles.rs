//! Simulated cycles of one int8 GEMM (C[M×N] = A[M×K] · Wᵀ, bias,
//! requantized) as JSON, for cross-checks such as `benches/scalesim_check.py`:
//! `cargo run --release -p tessera-accel --example gemm_cycles -- M K N edge|server`

mod common;

use common::{run_op, OpShape};
use tessera_accel_isa::HwConfig;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gemm_cycles M K N PRESET";
    if args.len() != 4 {
        return Err(usage.into());
    }
    let dim = |s: &str| s.parse::<u64>().map_err(|e| format!("{s}: {e} ({usage})"));
    let (m, k, n) = (dim(&args[0])?, dim(&args[1])?, dim(&args[2])?);
    let cfg = HwConfig::preset(&args[3])?;
    let (pred, rep) = run_op(&cfg, &OpShape::gemm("gemm", m, k, n))?;
    println!(
        "{{\"m\":{m},\"k\":{k},\"n\":{n},\"preset\":\"{}\",\"array_dim\":{},\"total_cycles\":{},\"gemm_busy_cycles\":{},\"predicted_cycles\":{pred},\"macs\":{},\"array_utilization\":{:.6},\"array_utilization_total\":{:.6}}}",
        cfg.name,
        cfg.array_dim,
        rep.total_cycles,
        rep.gemm_busy_cycles,
        rep.macs,
        rep.array_utilization,
        rep.array_utilization_total
    );
    Ok(())
}
