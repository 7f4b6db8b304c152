#!/usr/bin/env python3
"""Regenerate the ONNX backend *node* tests from the installed onnx package.

The onnx wheel no longer ships the generated test data, but it does ship the
case generators (onnx.backend.test.case.node). This script runs them and
writes every case in the standard ONNX backend-test layout:

    <out>/<test_name>/model.onnx
    <out>/<test_name>/test_data_set_N/input_K.pb    (one per graph input, in order)
    <out>/<test_name>/test_data_set_N/output_K.pb   (one per graph output, in order)
    <out>/index.json                                (one entry per test, see below)

Tensor-typed values are written as TensorProto named after the graph input or
output. Tests whose graph has a sequence-, optional- or map-typed input or
output additionally get a file UNSUPPORTED_DATA (containing the reason): their
.pb files are SequenceProto / OptionalProto / MapProto (as onnx's own
`backend-test-tools generate-data` writes them), not TensorProto, so a reader
that only understands tensors must skip them. If a value cannot be serialised
at all, no data sets are written for that test, only model.onnx + the marker.

Generation is skipped when <out>/index.json already exists and was written by
the same onnx version and the same generator version (the "stamp"). index.json
is written last, so an interrupted run is redone next time.

Usage: python scripts/gen_node_tests.py [--out DIR] [--force]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings

# Bump when the output layout or index.json schema changes, to force regeneration.
GENERATOR_VERSION = 1
DEFAULT_OUT = ".cache/onnx-node-tests"


def value_kind(type_proto) -> str:
    """'tensor' | 'sequence' | 'optional' | 'map' | 'sparse_tensor' | '' (untyped)."""
    which = type_proto.WhichOneof("value")
    return (which or "").removesuffix("_type")


def serialize_value(value, value_info) -> bytes:
    """Serialise one input/output value following onnx's cmd_tools.generate_data."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    kind = value_kind(value_info.type)
    name = value_info.name
    if kind == "map":
        return numpy_helper.from_dict(value, name).SerializeToString()
    if kind == "sequence":
        return numpy_helper.from_list(value, name).SerializeToString()
    if kind == "optional":
        return numpy_helper.from_optional(value, name).SerializeToString()
    if isinstance(value, TensorProto):
        # Generators return TensorProto directly for dtypes numpy can't hold
        # (float8, int4, ...). Keep the graph's name on it.
        t = TensorProto()
        t.CopyFrom(value)
        t.name = name
        return t.SerializeToString()
    if isinstance(value, np.generic):  # numpy scalar -> 0-d array
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: tensor-typed value of Python type {type(value).__name__}")
    return numpy_helper.from_array(value, name).SerializeToString()


def collect_ops(graph, ops: set, domains: set) -> None:
    """Op types (domain-qualified unless default domain) used in a graph and its subgraphs."""
    from onnx import AttributeProto

    for node in graph.node:
        dom = node.domain or ""
        domains.add(dom)
        ops.add(node.op_type if dom in ("", "ai.onnx") else f"{dom}::{node.op_type}")
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                collect_ops(attr.g, ops, domains)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    collect_ops(g, ops, domains)


def index_entry(case) -> dict:
    from onnx import TensorProto

    model = case.model
    g = model.graph
    ops: set = set()
    domains: set = set()
    collect_ops(g, ops, domains)
    # Ops used inside model-local functions (a few tests call a local function).
    fn_ops: set = set()
    for fn in model.functions:
        for node in fn.node:
            dom = node.domain or ""
            domains.add(dom)
            fn_ops.add(node.op_type if dom in ("", "ai.onnx") else f"{dom}::{node.op_type}")

    def io(vis):
        out = []
        for vi in vis:
            kind = value_kind(vi.type)
            d = {"name": vi.name, "kind": kind}
            if kind == "tensor":
                d["elem_type"] = TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
            out.append(d)
        return out

    name = case.name
    return {
        "name": name,
        "kind": case.kind,
        # "_expanded" variants replace a function op by its function body; some
        # carry a suffix (e.g. test_elu_expanded_ver18), so match anywhere.
        "expanded": "_expanded" in name,
        "base_name": name.split("_expanded")[0],
        "op_types": sorted(ops),
        "function_op_types": sorted(fn_ops),
        "top_level_op_types": sorted({n.op_type for n in g.node}),
        "domains": sorted(domains),
        "opset_imports": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "ir_version": model.ir_version,
        "rtol": case.rtol,
        "atol": case.atol,
        "inputs": io(g.input),
        "outputs": io(g.output),
        "num_data_sets": len(case.data_sets or []),
    }


def write_case(case, out_dir: str) -> dict:
    entry = index_entry(case)
    tdir = os.path.join(out_dir, case.name)
    os.makedirs(tdir)
    with open(os.path.join(tdir, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())

    g = case.model.graph
    non_tensor = [
        f"{io_kind} '{vi.name}' is {value_kind(vi.type) or 'untyped'}"
        for io_kind, vis in (("input", g.input), ("output", g.output))
        for vi in vis
        if value_kind(vi.type) != "tensor"
    ]
    reason = None
    try:
        blobs = []
        for ins, outs in case.data_sets or []:
            if len(ins) != len(g.input) or len(outs) != len(g.output):
                raise ValueError(
                    f"data set has {len(ins)} inputs/{len(outs)} outputs, graph has "
                    f"{len(g.input)}/{len(g.output)}"
                )
            blobs.append(
                (
                    [serialize_value(v, vi) for v, vi in zip(ins, g.input)],
                    [serialize_value(v, vi) for v, vi in zip(outs, g.output)],
                )
            )
    except Exception as e:  # noqa: BLE001 - record any failure as the reason
        blobs = []
        reason = f"data not serialisable: {type(e).__name__}: {e}"
        entry["num_data_sets"] = 0

    for i, (ins, outs) in enumerate(blobs):
        ddir = os.path.join(tdir, f"test_data_set_{i}")
        os.makedirs(ddir)
        for prefix, items in (("input", ins), ("output", outs)):
            for k, blob in enumerate(items):
                with open(os.path.join(ddir, f"{prefix}_{k}.pb"), "wb") as f:
                    f.write(blob)

    if non_tensor and reason is None:
        reason = (
            "non-tensor graph values (" + "; ".join(non_tensor) + "); their .pb files are "
            "SequenceProto/OptionalProto/MapProto, not TensorProto"
        )
    elif non_tensor:
        reason += " (also: " + "; ".join(non_tensor) + ")"
    entry["tensor_data"] = reason is None
    entry["unsupported_reason"] = reason
    if reason is not None:
        with open(os.path.join(tdir, "UNSUPPORTED_DATA"), "w") as f:
            f.write(reason + "\n")
    return entry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="regenerate even if the stamp matches")
    args = ap.parse_args()

    import onnx

    out = args.out
    index_path = os.path.join(out, "index.json")
    if not args.force and os.path.exists(index_path):
        try:
            with open(index_path) as f:
                idx = json.load(f)
            if (
                idx.get("onnx_version") == onnx.__version__
                and idx.get("generator_version") == GENERATOR_VERSION
            ):
                print(f"{out}: up to date ({idx.get('count')} tests, onnx {onnx.__version__})")
                return 0
        except (OSError, ValueError):
            pass  # unreadable index: regenerate

    t0 = time.time()
    # Generators emit harmless numpy warnings (overflow in Cast tests, log(0), ...).
    warnings.filterwarnings("ignore")
    import numpy as np

    np.seterr(all="ignore")
    from onnx.backend.test.case.node import collect_testcases

    cases = collect_testcases(None)
    t_collect = time.time() - t0

    # Build into a temporary sibling directory and swap it in, so a failure
    # never leaves a half-written tree behind the old index.json.
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    seen = set()
    entries = []
    for case in cases:
        if case.name in seen:
            print(f"warning: duplicate test name {case.name}, keeping the first", file=sys.stderr)
            continue
        seen.add(case.name)
        entries.append(write_case(case, tmp))

    entries.sort(key=lambda e: e["name"])
    n_exp = sum(e["expanded"] for e in entries)
    n_unsup = sum(not e["tensor_data"] for e in entries)
    index = {
        "onnx_version": onnx.__version__,
        "generator_version": GENERATOR_VERSION,
        "count": len(entries),
        "count_plain": len(entries) - n_exp,
        "count_expanded": n_exp,
        "count_unsupported_data": n_unsup,
        "tests": entries,
    }
    with open(os.path.join(tmp, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=False)
        f.write("\n")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    os.rename(tmp, out)

    dt = time.time() - t0
    print(
        f"{out}: wrote {len(entries)} node tests ({len(entries) - n_exp} plain + {n_exp} expanded; "
        f"{n_unsup} with non-tensor data) from onnx {onnx.__version__} "
        f"in {dt:.1f}s (collecting cases {t_collect:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
