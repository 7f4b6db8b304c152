"""Times the reference backend (`tessera run --target ref`) against
onnxruntime on the same model and inputs, interleaved in one run, and prints
the ratio. The reference backend is the oracle, not the fast path; this only
keeps its speed honest (a tiny model in milliseconds, BERT-base in seconds).

    python scripts/compare_ref_ort.py MODEL.onnx INPUT_DIR [--rounds 5]
"""

import argparse
import os
import re
import statistics
import subprocess
import time

import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tessera", default="./target/release/tessera")
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    files = sorted(f for f in os.listdir(a.inputs) if f.startswith("input_"))
    feeds = {}
    for f in files:
        t = onnx.load_tensor(os.path.join(a.inputs, f))
        feeds[t.name if t.name in names else names[len(feeds)]] = numpy_helper.to_array(t)
    sess.run(None, feeds)
    ort_ms, ref_ms = [], []
    for _ in range(a.rounds):
        t = time.perf_counter()
        sess.run(None, feeds)
        ort_ms.append((time.perf_counter() - t) * 1e3)
        out = subprocess.run([a.tessera, "run", a.model, "--target", "ref", "--inputs", a.inputs, "--timing", "-O1"],
                             capture_output=True, text=True, check=True).stderr
        m = re.search(r"^\s*([0-9.]+)\s+[0-9.]+%\s+run on ref", out, re.M)
        ref_ms.append(float(m.group(1)) * 1e3)
    o, r = statistics.median(ort_ms), statistics.median(ref_ms)
    print(f"onnxruntime (1 thread): {o:.1f} ms   tessera ref: {r:.1f} ms   ref/ort = {r / o:.2f}x")


if __name__ == "__main__":
    main()
