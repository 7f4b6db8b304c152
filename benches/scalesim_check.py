#!/usr/bin/env python3
# Run: .venv/bin/python benches/scalesim_check.py [--quick]   (installs scalesim into .venv on demand)
# SCALE-Sim builds cycle-level demand matrices: the full set takes tens of minutes on
# the 16x16 array; --quick runs the shapes with at most 2^24 MACs per array PE.
"""Cross-checks the Tessera simulator's GEMM cycles against SCALE-Sim.

Our array is weight-stationary: a W tile (K rows x N columns of the array) is
held in the array and the M rows of A stream through it, one fold per
(k-tile, n-tile) pair. SCALE-Sim's `ws` dataflow maps a GEMM the same way
(filter = K x N on the array, ifmap rows = M streamed), so both run with
dataflow `ws` and the same array size. SCALE-Sim's compute cycles are set
against our GEMM-busy cycles (array time only: our cycle model charges
SCALE-Sim's first-order 2R + C + T - 2 per fold), and our total cycles
(including DMA time that double buffering does not hide) are shown beside them.
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")

# (preset, array_dim, scratchpad KiB, accumulator KiB)
PRESETS = [("edge", 16, 256, 64), ("server", 64, 1024, 256)]
SHAPES = [  # name, M, K, N
    ("bert qkv", 128, 768, 2304),
    ("bert out", 128, 768, 768),
    ("bert ffn1", 128, 768, 3072),
    ("bert ffn2", 128, 3072, 768),
    ("attn scores", 128, 64, 128),
    ("gpt2-m ffn1", 128, 1024, 4096),
    ("llama kv (gqa)", 128, 2048, 512),
    ("odd", 77, 333, 129),
    ("prefill 512", 512, 768, 768),
]


def ensure_scalesim():
    try:
        import scalesim  # noqa: F401
    except ImportError:
        if os.path.abspath(sys.executable) != os.path.abspath(VENV_PY) and os.path.exists(VENV_PY):
            os.execv(VENV_PY, [VENV_PY] + sys.argv)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "scalesim"])


CONFIG = """[general]
run_name = tessera_{preset}

[architecture_presets]
ArrayHeight : {dim}
ArrayWidth : {dim}
IfmapSramSzkB : {ifmap}
FilterSramSzkB : {filt}
OfmapSramSzkB : {ofmap}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Dataflow : ws
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : 10
IfmapSRAMBankNum : 10
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : 10
FilterSRAMBankNum : 10
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : CALC
UseRamulatorTrace : False
"""


def numpy2_shim():
    """scalesim 3.0.0 calls int(max(list of 1-element arrays)), which numpy 2
    rejects; give its memory module a max() that returns a scalar."""
    import builtins

    import numpy as np
    from scalesim.memory import double_buffered_scratchpad_mem as mem

    def scalar_max(*args, **kw):
        if len(args) == 1 and not kw:
            return np.max(np.asarray(args[0]))
        return builtins.max(*args, **kw)

    mem.max = scalar_max


def scalesim_cycles(preset, dim, sp_kib, acc_kib, shapes):
    """Per shape: (total compute cycles, stall cycles, overall utilization %)."""
    from scalesim.scale_sim import scalesim

    numpy2_shim()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "tessera.cfg")
        topo = os.path.join(tmp, "gemms.csv")
        # The custom-layout model is off, but scalesim 3.0 still opens a layout file.
        layout = os.path.join(tmp, "layout.csv")
        with open(layout, "w") as f:
            f.write("Layer name,\n")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(preset=preset, dim=dim, ifmap=sp_kib // 2, filt=sp_kib // 2, ofmap=acc_kib))
        with open(topo, "w") as f:
            f.write("Layer, M, N, K,\n")
            for i, (_, m, k, n) in enumerate(shapes):
                f.write(f"l{i}, {m}, {n}, {k},\n")
        sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout,
                       input_type_gemm=True)
        sim.run_scale(top_path=tmp)
        report = None
        for dirpath, _, files in os.walk(tmp):
            if "COMPUTE_REPORT.csv" in files:
                report = os.path.join(dirpath, "COMPUTE_REPORT.csv")
        if report is None:
            sys.exit("SCALE-Sim wrote no COMPUTE_REPORT.csv")
        rows = [r.split(",") for r in open(report).read().strip().splitlines()]
        header = [h.strip() for h in rows[0]]
        col = header.index("Total Cycles")
        stall = header.index("Stall Cycles")
        util = next(i for i, h in enumerate(header) if h.startswith("Overall Util"))
        return [(int(float(r[col])), int(float(r[stall])), float(r[util])) for r in rows[1:]]


def tessera_cycles(m, k, n, preset):
    cmd = ["cargo", "run", "-q", "--release", "-p", "tessera-accel", "--example", "gemm_cycles", "--",
           str(m), str(k), str(n), preset]
    return json.loads(subprocess.check_output(cmd, cwd=ROOT))


def main():
    ensure_scalesim()
    quick = "--quick" in sys.argv[1:]
    for preset, dim, sp_kib, acc_kib in PRESETS:
        shapes = [s for s in SHAPES if not quick or s[1] * s[2] * s[3] <= (1 << 24) * dim * dim // 256]
        print(f"\n### {preset}: {dim}x{dim} array, dataflow ws (weight stationary)\n")
        print("| GEMM | M x K x N | SCALE-Sim compute cycles | SCALE-Sim util % | ours: GEMM busy "
              "| busy / SCALE-Sim | ours: total | total / SCALE-Sim |")
        print("|---|---|---:|---:|---:|---:|---:|---:|", flush=True)
        for shape in shapes:
            name, m, k, n = shape
            ((s_total, _s_stall, s_util),) = scalesim_cycles(preset, dim, sp_kib, acc_kib, [shape])
            t = tessera_cycles(m, k, n, preset)
            print(f"| {name} | {m}x{k}x{n} | {s_total} | {s_util:.1f} | {t['gemm_busy_cycles']} | "
                  f"{t['gemm_busy_cycles'] / s_total:.3f} | {t['total_cycles']} | {t['total_cycles'] / s_total:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
