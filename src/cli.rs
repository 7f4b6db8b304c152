//! Command-line interface definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "tessera",
    version,
    about = "Compile ONNX transformers for CPUs, GPUs and the Tessera accelerator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compile a model (.onnx, or Tessera IR text .tsr) and emit a stage.
    Compile(CompileArgs),
    /// Run a model on a target with inputs from .pb files; optionally check the outputs.
    Run(RunArgs),
    /// Run an accelerator instruction stream (.tsa text or binary) on the simulator.
    Simulate(SimulateArgs),
    /// Time a compiled model in-process: median/min/max latency after warm-up.
    Bench(BenchArgs),
    /// Predict the cost of every op of the optimized model on a target (cost model, static shapes).
    Cost(CostArgs),
    /// List the ops of the Tessera dialect or the registered passes.
    List {
        #[arg(value_enum)]
        what: ListWhat,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum ListWhat {
    Ops,
    Passes,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Cuda,
    Accel,
    Ref,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Cpu => "cpu",
            Target::Cuda => "cuda",
            Target::Accel => "accel",
            Target::Ref => "ref",
        }
    }
}

/// Options shared by everything that compiles.
#[derive(Args, Debug, Clone)]
pub struct CompileOptions {
    /// The model: an ONNX file, or Tessera IR text (.tsr).
    pub model: PathBuf,
    /// Target to compile for.
    #[arg(long, value_enum, default_value = "ref")]
    pub target: Target,
    /// Optimization level 0..3 (-O0 runs no passes).
    #[arg(short = 'O', default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub opt_level: u8,
    /// Run this pass pipeline instead of the level's (comma-separated pass names).
    #[arg(long)]
    pub passes: Option<String>,
    /// Verify the IR after every pass (always on in debug builds).
    #[arg(long)]
    pub verify_each: bool,
    /// Print the IR after import and after every pass, to stderr.
    #[arg(long)]
    pub print_ir_after_all: bool,
    /// Report the time of each phase and pass, to stderr.
    #[arg(long)]
    pub timing: bool,
    /// Threads the compiled code runs on (cpu); results do not depend on it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// Size of a symbolic input dim for ahead-of-time stages, e.g. `--dim seq=128` (repeatable).
    #[arg(long = "dim", value_name = "NAME=N", value_parser = parse_dim)]
    pub dims: Vec<(String, i64)>,
    /// Target triple for native code (cpu; default: this host).
    #[arg(long)]
    pub mtriple: Option<String>,
    /// Target CPU for native code, e.g. `skylake-avx512` (cpu; default: this host's).
    #[arg(long)]
    pub mcpu: Option<String>,
    /// Target features, e.g. `+avx512f,+fma` (cpu; default: this host's).
    #[arg(long)]
    pub mattr: Option<String>,
    /// Accelerator hardware: a preset name (edge, server) or a TOML file (accel).
    #[arg(long, default_value = "edge")]
    pub accel_config: String,
}

fn parse_dim(s: &str) -> Result<(String, i64), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected NAME=N"))?;
    let n: i64 = n
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': the size must be an integer"))?;
    if n < 0 {
        return Err(format!("'{s}': the size must not be negative"));
    }
    Ok((name.trim().to_string(), n))
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    #[command(flatten)]
    pub opts: CompileOptions,
    /// Stage to emit: ir, opt-ir (then target stages: mlir, mlir-llvm, llvm, asm, obj, lib, cuda, ptx, stream).
    /// `lib` writes lib<name>.so, <name>.h and <name>.o into the -o directory.
    #[arg(long, default_value = "opt-ir")]
    pub emit: String,
    /// Output file; text stages go to stdout when absent or '-'.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Print a histogram of the ops (instead of the emitted stage).
    #[arg(long)]
    pub op_stats: bool,
    /// With --op-stats: machine-readable JSON.
    #[arg(long, requires = "op_stats")]
    pub json: bool,
    /// Elide constants larger than 16 elements in printed IR (not parseable back).
    #[arg(long)]
    pub elide_constants: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: CompileOptions,
    /// Inputs: a directory of input_K.pb files (ONNX test layout), or .pb files in graph input order.
    #[arg(long, num_args = 1.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write outputs as output_K.pb files into this directory.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Compare the outputs with the output_K.pb files in this directory; exit non-zero on mismatch.
    #[arg(long)]
    pub check: Option<PathBuf>,
    /// Relative tolerance for float outputs (default: per element type).
    #[arg(long)]
    pub rtol: Option<f64>,
    /// Absolute tolerance for float outputs (default: per element type).
    #[arg(long)]
    pub atol: Option<f64>,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The stream: `.tsa` assembly text, or the binary encoding.
    pub stream: PathBuf,
    /// Hardware configuration: a TOML file, or a preset name (edge, server).
    #[arg(long, default_value = "edge")]
    pub config: String,
    /// Inputs: a directory of input_K.pb files, or .pb files; matched to the stream's input buffers by name.
    #[arg(long, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Write the output buffers as output_K.pb files (stream buffer order) into this directory.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Compare the outputs with the output_K.pb files in this directory; exit non-zero on mismatch.
    #[arg(long)]
    pub check: Option<PathBuf>,
    /// Write a Chrome trace event file (open it in Perfetto), one track per queue and unit.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub opts: CompileOptions,
    /// Inputs (as for `run`); random inputs with the --dim sizes when absent.
    #[arg(long, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Timed runs.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Write `{"times_ms": [...], "compile_s": ...}` here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CostArgs {
    #[command(flatten)]
    pub opts: CompileOptions,
    /// Print the prediction as JSON.
    #[arg(long)]
    pub json: bool,
}
