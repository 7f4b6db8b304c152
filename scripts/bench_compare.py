#!/usr/bin/env python3
"""Tessera (cpu) vs onnxruntime on the same model, inputs and thread count.

Both run in this one process, in interleaved rounds: each round times a few
runs of Tessera's compiled library (`tessera compile --target cpu --emit lib`,
loaded with ctypes, called through the generated C entry point) and then a few
runs of an onnxruntime session, so drift of the machine (turbo, a neighbour's
load) hits both alike. Reported: median latency of each over all rounds and
their ratio (onnxruntime / Tessera: above 1 means Tessera is faster).

Usage:
  scripts/bench_compare.py MODEL.onnx [--dim seq=128 ...] [--threads 1 2]
                           [--rounds 5] [--runs 5] [--json out.json]
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "target", "release", "tessera")

NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.BOOL: np.bool_,
}


def model_inputs(model_path, dims, seed=0):
    """Random but valid inputs: token ids below the vocabulary size (read off
    the first Gather's table), masks of ones, zeros for token types."""
    m = onnx.load(model_path, load_external_data=False)
    inits = {i.name: i for i in m.graph.initializer}
    vocab = 1000
    for n in m.graph.node:
        if n.op_type == "Gather" and n.input[0] in inits:
            vocab = inits[n.input[0]].dims[0]
            break
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in m.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        shape = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
            else:
                shape.append(dims[d.dim_param])
        dt = NP[t.elem_type]
        name = i.name.lower()
        if "mask" in name:
            v = np.ones(shape, dt)
        elif "type" in name:
            v = np.zeros(shape, dt)
        elif dt in (np.int64, np.int32):
            v = rng.integers(0, vocab, size=shape).astype(dt)
        else:
            v = rng.standard_normal(shape).astype(dt)
        feeds[i.name] = v
    return feeds


def build_library(model, dims, workdir, name):
    cmd = [TESSERA, "compile", model, "--target", "cpu", "--emit", "lib", "-o", workdir]
    for k, v in dims.items():
        cmd += ["--dim", f"{k}={v}"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    compile_s = time.perf_counter() - t
    lib = ctypes.CDLL(os.path.join(workdir, f"lib{name}.so"))
    header = open(os.path.join(workdir, f"{name}.h")).read()
    ws = 1
    for line in header.splitlines():
        if line.startswith(f"#define {name.upper()}_WORKSPACE_BYTES"):
            ws = int(line.split()[-1].rstrip("u"))
    return lib, ws, compile_s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--dim", action="append", default=[], help="NAME=N for symbolic input dims")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per round and runtime")
    ap.add_argument("--label", default=None)
    ap.add_argument("--json", default=None, help="append a result line (JSON) to this file")
    a = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=") for d in a.dim)}
    model = os.path.abspath(a.model)
    stem = os.path.splitext(os.path.basename(model))[0]
    if stem == "model":
        stem = os.path.basename(os.path.dirname(model))
    name = "".join(c if c.isalnum() else "_" for c in stem)
    label = a.label or stem
    feeds = model_inputs(model, dims)
    sess_inputs = [i.name for i in onnx.load(model, load_external_data=False).graph.input if i.name in feeds]

    with tempfile.TemporaryDirectory() as work:
        lib, ws_bytes, compile_s = build_library(model, dims, work, name)
        # Outputs: shapes from onnxruntime's own run.
        results = []
        for threads in a.threads:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            ref = sess.run(None, feeds)
            ins = [np.ascontiguousarray(feeds[n]) for n in sess_inputs]
            outs = [np.empty_like(r) for r in ref]
            ws = np.zeros(ws_bytes + 64, np.uint8)
            ws_ptr = ws.ctypes.data + (-ws.ctypes.data) % 64
            args = [x.ctypes.data_as(ctypes.c_void_p) for x in ins + outs]
            args += [ctypes.c_void_p(ws_ptr), ctypes.c_int32(threads)]
            run = getattr(lib, f"{name}_run")
            run.restype = None
            run(*args)
            err = max(float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64)))) for o, r in zip(outs, ref))
            for _ in range(2):  # warm-up
                run(*args)
                sess.run(None, feeds)
            t_tsr, t_ort = [], []
            for _ in range(a.rounds):
                for _ in range(a.runs):
                    t = time.perf_counter()
                    run(*args)
                    t_tsr.append((time.perf_counter() - t) * 1e3)
                for _ in range(a.runs):
                    t = time.perf_counter()
                    sess.run(None, feeds)
                    t_ort.append((time.perf_counter() - t) * 1e3)
            m_tsr, m_ort = statistics.median(t_tsr), statistics.median(t_ort)
            r = {
                "model": label,
                "threads": threads,
                "tessera_ms": round(m_tsr, 3),
                "onnxruntime_ms": round(m_ort, 3),
                "speedup_vs_ort": round(m_ort / m_tsr, 3),
                "max_abs_diff": err,
                "compile_s": round(compile_s, 2),
            }
            results.append(r)
            print(
                f"{label:<28} threads {threads}: tessera {m_tsr:9.3f} ms  onnxruntime {m_ort:9.3f} ms  "
                f"ort/tessera {m_ort / m_tsr:5.2f}x  (max |diff| {err:.1e}, compile {compile_s:.1f} s)",
                flush=True,
            )
        if a.json:
            with open(a.json, "a") as f:
                for r in results:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    sys.exit(main())
