#!/usr/bin/env python3
"""Generates node tests for the com.microsoft contrib ops (and onnxruntime's
default-domain SimplifiedLayerNormalization), which the ONNX backend test suite
does not cover.

Each case is a one-node model with random inputs (fixed seed), evaluated by
onnxruntime on CPU with graph optimizations disabled, written in the ONNX
node-test layout:

    tests/contrib/<name>/model.onnx
    tests/contrib/<name>/test_data_set_0/input_K.pb   (graph inputs, in order)
    tests/contrib/<name>/test_data_set_0/output_K.pb  (graph outputs, in order)

Absent optional inputs are empty names in the node and not graph inputs;
unwanted optional outputs are empty names. Run with the project venv:

    .venv/bin/python scripts/gen_contrib_tests.py [--only NAME_SUBSTRING]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "contrib"
MS = "com.microsoft"

rng = np.random.default_rng(20240611)


def randn(*shape, dtype=np.float32, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def randint(lo, hi, *shape, dtype=np.int32):
    return rng.integers(lo, hi, size=shape).astype(dtype)


CASES: list[tuple[str, callable]] = []


def case(fn):
    CASES.append((fn.__name__, fn))
    return fn


def write_case(name, op, inputs, outputs, attrs=None, domain=MS, out_types=None, expected=None):
    """inputs: list of (name, array or None); outputs: list of names ('' = skipped).

    out_types: element types of the non-empty outputs (default: the first input's).
    expected: the outputs, for ops onnxruntime implements on GPU only (then the
    model is still checked by onnx, but not run)."""
    node_inputs = [n if a is not None else "" for n, a in inputs]
    # Trailing absent inputs are dropped, as exporters do.
    while node_inputs and node_inputs[-1] == "":
        node_inputs.pop()
    node = helper.make_node(op, node_inputs, outputs, domain=domain, **(attrs or {}))
    present = [(n, a) for n, a in inputs if a is not None]
    g_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)) for n, a in present
    ]
    real_outputs = [o for o in outputs if o]
    first = helper.np_dtype_to_tensor_dtype(present[0][1].dtype)
    out_types = out_types or [first] * len(real_outputs)
    shapes = [list(e.shape) for e in expected] if expected is not None else [None] * len(real_outputs)
    g_outputs = [helper.make_tensor_value_info(o, t, sh) for o, t, sh in zip(real_outputs, out_types, shapes)]
    graph = helper.make_graph([node], name, g_inputs, g_outputs)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="gen_contrib_tests")
    model.ir_version = 10
    if expected is None:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        results = sess.run(real_outputs, {n: a for n, a in present})
    else:
        onnx.checker.check_model(model)
        results = expected
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    (d / "test_data_set_0").mkdir(parents=True)
    onnx.save(model, d / "model.onnx")
    for i, (n, a) in enumerate(present):
        onnx.save_tensor(numpy_helper.from_array(a, n), d / "test_data_set_0" / f"input_{i}.pb")
    for i, (n, r) in enumerate(zip(real_outputs, results)):
        onnx.save_tensor(numpy_helper.from_array(np.asarray(r), n), d / "test_data_set_0" / f"output_{i}.pb")
    return results


F32 = TensorProto.FLOAT

# --------------------------------------------------------------------------- activations


@case
def ms_gelu():
    write_case("ms_gelu", "Gelu", [("x", randn(2, 3, 8, scale=2.0))], ["y"])


@case
def ms_quick_gelu():
    write_case("ms_quick_gelu", "QuickGelu", [("x", randn(2, 3, 8, scale=2.0))], ["y"], {"alpha": 1.5})


@case
def ms_bias_gelu():
    write_case("ms_bias_gelu", "BiasGelu", [("a", randn(2, 3, 8)), ("b", randn(8))], ["c"])


@case
def ms_fast_gelu():
    write_case("ms_fast_gelu", "FastGelu", [("x", randn(2, 3, 8, scale=2.0)), ("bias", randn(8))], ["y"])
    write_case("ms_fast_gelu_no_bias", "FastGelu", [("x", randn(2, 3, 8, scale=2.0))], ["y"])


@case
def ms_bias_add():
    # onnxruntime has BiasAdd on CUDA only: the expected value is numpy's, in f32.
    x, bias, skip = randn(2, 4, 8), randn(8), randn(2, 4, 8)
    write_case("ms_bias_add", "BiasAdd", [("x", x), ("bias", bias), ("skip", skip)], ["y"], expected=[(x + bias) + skip])


# --------------------------------------------------------------------------- normalizations


@case
def ms_skip_layer_normalization():
    x, skip = randn(2, 3, 16), randn(2, 3, 16)
    g, b, bias = randn(16), randn(16), randn(16)
    ins = [("input", x), ("skip", skip), ("gamma", g), ("beta", b), ("bias", bias)]
    write_case("ms_skip_layer_normalization", "SkipLayerNormalization", ins, ["y", "", "", "sum"], {"epsilon": 1e-5})
    ins = [("input", x), ("skip", randn(3, 16)), ("gamma", g), ("beta", None), ("bias", None)]
    write_case("ms_skip_layer_normalization_2d_skip", "SkipLayerNormalization", ins, ["y"])


@case
def ms_skip_simplified_layer_normalization():
    ins = [("input", randn(2, 3, 16)), ("skip", randn(2, 3, 16)), ("gamma", randn(16)), ("bias", randn(16))]
    write_case(
        "ms_skip_simplified_layer_normalization", "SkipSimplifiedLayerNormalization", ins, ["y", "", "", "sum"], {"epsilon": 1e-6}
    )


@case
def simplified_layer_normalization():
    ins = [("x", randn(2, 3, 16)), ("scale", randn(16))]
    write_case(
        "simplified_layer_normalization",
        "SimplifiedLayerNormalization",
        ins,
        ["y", "inv_std_var"],
        {"axis": -1, "epsilon": 1e-5},
        domain="",
    )


@case
def ms_embed_layer_normalization():
    b, s, h = 2, 5, 16
    mask = np.ones((b, s), np.int32)
    mask[1, 3:] = 0
    ins = [
        ("input_ids", randint(0, 20, b, s)),
        ("segment_ids", randint(0, 2, b, s)),
        ("word_embedding", randn(20, h)),
        ("position_embedding", randn(10, h)),
        ("segment_embedding", randn(2, h)),
        ("gamma", randn(h)),
        ("beta", randn(h)),
        ("mask", mask),
    ]
    write_case(
        "ms_embed_layer_normalization",
        "EmbedLayerNormalization",
        ins,
        ["y", "mask_index", "embedding_sum"],
        {"epsilon": 1e-5},
        out_types=[F32, TensorProto.INT32, F32],
    )
    ins = [
        ("input_ids", randint(0, 20, b, s)),
        ("segment_ids", None),
        ("word_embedding", randn(20, h)),
        ("position_embedding", randn(10, h)),
        ("segment_embedding", None),
        ("gamma", randn(h)),
        ("beta", randn(h)),
        ("mask", None),
        ("position_ids", randint(0, 10, 1, s)),
    ]
    write_case(
        "ms_embed_layer_normalization_position_ids",
        "EmbedLayerNormalization",
        ins,
        ["y", "mask_index"],
        {"epsilon": 1e-5},
        out_types=[F32, TensorProto.INT32],
    )


# --------------------------------------------------------------------------- MatMulNBits


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packs the last axis of `codes`, low bits first."""
    per = 8 // bits
    c = codes.reshape(*codes.shape[:-1], -1, per).astype(np.uint8)
    out = np.zeros(c.shape[:-1], np.uint8)
    for i in range(per):
        out |= c[..., i] << (i * bits)
    return out


def nbits_case(name, k, n, bits, block, zp=None, bias=False):
    kb = (k + block - 1) // block
    codes = randint(0, 1 << bits, n, kb * block, dtype=np.uint8)
    b = pack_bits(codes.reshape(n, kb, block), bits)
    scales = (np.abs(randn(n, kb)) * 0.1 + 0.01).astype(np.float32)
    zps = None
    if zp == "packed":
        zcodes = randint(0, 1 << bits, n, kb, dtype=np.uint8)
        row = (kb * bits + 7) // 8
        padded = np.zeros((n, row * (8 // bits)), np.uint8)
        padded[:, :kb] = zcodes
        zps = pack_bits(padded, bits)
    elif zp == "float":
        zps = (randn(n, kb) + (1 << (bits - 1))).astype(np.float32)
    ins = [
        ("a", randn(2, 3, k)),
        ("b", b),
        ("scales", scales),
        ("zero_points", zps),
        ("g_idx", None),
        ("bias", randn(n) if bias else None),
    ]
    write_case(name, "MatMulNBits", ins, ["y"], {"K": k, "N": n, "bits": bits, "block_size": block})


@case
def ms_matmul_nbits():
    nbits_case("ms_matmul_nbits_4bit", 64, 8, 4, 32)
    nbits_case("ms_matmul_nbits_4bit_zp_bias", 64, 8, 4, 16, zp="packed", bias=True)
    nbits_case("ms_matmul_nbits_4bit_tail_block", 48, 5, 4, 32, zp="packed")
    nbits_case("ms_matmul_nbits_4bit_float_zp", 64, 8, 4, 32, zp="float")
    nbits_case("ms_matmul_nbits_8bit", 64, 8, 8, 32, zp="packed")
    nbits_case("ms_matmul_nbits_2bit", 64, 8, 2, 16)
    nbits_case("ms_matmul_nbits_2bit_zp", 64, 8, 2, 16, zp="packed")


# --------------------------------------------------------------------------- rotary


def rotary_cache(max_pos, half):
    inv = 1.0 / (10000 ** (np.arange(half) / half))
    ang = np.arange(max_pos)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


@case
def ms_rotary_embedding():
    cos, sin = rotary_cache(16, 8)
    pos = np.array([[0, 1, 2, 3], [5, 6, 7, 8]], np.int64)
    for inter in (0, 1):
        ins = [("input", randn(2, 4, 32)), ("position_ids", pos), ("cos_cache", cos), ("sin_cache", sin)]
        write_case(f"ms_rotary_embedding_interleaved_{inter}", "RotaryEmbedding", ins, ["y"], {"interleaved": inter, "num_heads": 2})
    ins = [("input", randn(2, 2, 4, 16)), ("position_ids", np.array([3], np.int64)), ("cos_cache", cos), ("sin_cache", sin)]
    write_case("ms_rotary_embedding_4d_offset", "RotaryEmbedding", ins, ["y"])
    c4, s4 = rotary_cache(16, 4)
    ins = [("input", randn(2, 4, 32)), ("position_ids", pos), ("cos_cache", c4), ("sin_cache", s4)]
    write_case("ms_rotary_embedding_partial", "RotaryEmbedding", ins, ["y"], {"num_heads": 2, "rotary_embedding_dim": 8})


# --------------------------------------------------------------------------- Attention


@case
def ms_attention():
    b, s, h, nh = 2, 4, 16, 2
    mask = np.ones((b, s), np.int32)
    mask[1, 2:] = 0
    ins = [("input", randn(b, s, h)), ("weights", randn(h, 3 * h, scale=0.3)), ("bias", randn(3 * h)), ("mask_index", mask)]
    write_case("ms_attention_mask2d", "Attention", ins, ["y"], {"num_heads": nh})
    past = randn(2, b, nh, 3, h // nh)
    ins = [
        ("input", randn(b, s, h)),
        ("weights", randn(h, 3 * h, scale=0.3)),
        ("bias", randn(3 * h)),
        ("mask_index", np.array([7, 5], np.int32)),
        ("past", past),
    ]
    write_case("ms_attention_past_causal", "Attention", ins, ["y", "present"], {"num_heads": nh, "unidirectional": 1})
    m3 = (rng.random((b, s, s)) > 0.3).astype(np.int32)
    m3[:, :, 0] = 1
    ins = [("input", randn(b, s, h)), ("weights", randn(h, 3 * h, scale=0.3)), ("bias", randn(3 * h)), ("mask_index", m3)]
    write_case("ms_attention_mask3d", "Attention", ins, ["y"], {"num_heads": nh})
    ins = [
        ("input", randn(b, s, h)),
        ("weights", randn(h, 3 * h, scale=0.3)),
        ("bias", randn(3 * h)),
        ("mask_index", np.array([4, 3, 1, 0], np.int32)),
    ]
    write_case("ms_attention_mask_end_start", "Attention", ins, ["y"], {"num_heads": nh, "mask_filter_value": -1e9})
    ins = [
        ("input", randn(b, s, h)),
        ("weights", randn(h, 16 + 16 + 8, scale=0.3)),
        ("bias", randn(40)),
        ("mask_index", None),
        ("past", None),
        ("attention_bias", randn(1, nh, s, s)),
    ]
    write_case(
        "ms_attention_qkv_sizes_bias", "Attention", ins, ["y"], {"num_heads": nh, "qkv_hidden_sizes": [16, 16, 8], "scale": 0.3}
    )


# --------------------------------------------------------------------------- GroupQueryAttention


def gqa(name, b, s, past, nh=4, kvh=2, hd=16, packed=False, rotary=False, attrs=None, seqlens=None, extra=()):
    total = past + s
    q = randn(b, s, nh * hd)
    k, v = randn(b, s, kvh * hd), randn(b, s, kvh * hd)
    if packed:
        q, k, v = np.concatenate([q, k, v], axis=-1), None, None
    pk = randn(b, kvh, past, hd) if past else None
    pv = randn(b, kvh, past, hd) if past else None
    seqlens = np.array(seqlens if seqlens is not None else [total - 1] * b, np.int32)
    cos, sin = rotary_cache(32, hd // 2) if rotary else (None, None)
    ins = [
        ("query", q),
        ("key", k),
        ("value", v),
        ("past_key", pk),
        ("past_value", pv),
        ("seqlens_k", seqlens),
        ("total_sequence_length", np.array(total, np.int32)),
        ("cos_cache", cos),
        ("sin_cache", sin),
        *extra,
    ]
    a = {"num_heads": nh, "kv_num_heads": kvh, **(attrs or {})}
    if rotary:
        a["do_rotary"] = 1
    write_case(name, "GroupQueryAttention", ins, ["y", "present_key", "present_value"], a)


@case
def ms_group_query_attention():
    gqa("ms_gqa_prompt", 1, 5, 0)
    gqa("ms_gqa_decode", 2, 1, 6)
    gqa("ms_gqa_prompt_with_past", 1, 3, 4)
    gqa("ms_gqa_rotary", 1, 4, 3, rotary=True)
    gqa("ms_gqa_rotary_interleaved_packed", 1, 1, 5, rotary=True, packed=True, attrs={"rotary_interleaved": 1})
    gqa("ms_gqa_local_window", 1, 6, 0, attrs={"local_window_size": 2})
    gqa("ms_gqa_softcap_scale", 2, 1, 4, attrs={"softcap": 2.0, "scale": 0.5})
    gqa("ms_gqa_attention_bias", 1, 3, 2, extra=[("position_ids", None), ("attention_bias", randn(1, 4, 3, 5))])
    gqa("ms_gqa_head_sink", 1, 2, 3, extra=[("position_ids", None), ("attention_bias", None), ("head_sink", randn(4))])
    gqa("ms_gqa_smooth_softmax", 1, 2, 3, attrs={"smooth_softmax": 1})
    gqa("ms_gqa_bias_softcap", 1, 3, 2, attrs={"softcap": 1.5}, extra=[("position_ids", None), ("attention_bias", randn(1, 1, 3, 5))])


# --------------------------------------------------------------------------- quantized


def q8(dtype, *shape):
    lo, hi = (0, 256) if dtype == np.uint8 else (-128, 128)
    return randint(lo, hi, *shape, dtype=dtype)


@case
def ms_qlinear_binary():
    for op in ("QLinearAdd", "QLinearMul"):
        for dt in (np.uint8, np.int8):
            zp = lambda v: np.array(v, dt)
            ins = [
                ("a", q8(dt, 2, 3, 4)),
                ("a_scale", np.array(0.05, np.float32)),
                ("a_zero_point", zp(3)),
                ("b", q8(dt, 4)),
                ("b_scale", np.array(0.07, np.float32)),
                ("b_zero_point", zp(-2 if dt == np.int8 else 9)),
                ("c_scale", np.array(0.11 if op == "QLinearAdd" else 0.9, np.float32)),
                ("c_zero_point", zp(5)),
            ]
            suffix = "u8" if dt == np.uint8 else "i8"
            write_case(f"ms_{op.lower().replace('qlinear', 'qlinear_')}_{suffix}", op, ins, ["c"])


@case
def ms_qlinear_softmax():
    for opset, axis in ((13, -1), (1, 1)):
        for dt in (np.uint8, np.int8):
            ins = [
                ("x", q8(dt, 2, 3, 5)),
                ("x_scale", np.array(0.08, np.float32)),
                ("x_zero_point", np.array(10, dt)),
                ("y_scale", np.array(1.0 / 256, np.float32)),
                ("y_zero_point", np.array(0 if dt == np.uint8 else -128, dt)),
            ]
            suffix = "u8" if dt == np.uint8 else "i8"
            write_case(f"ms_qlinear_softmax_opset{opset}_{suffix}", "QLinearSoftmax", ins, ["y"], {"opset": opset, "axis": axis})


@case
def ms_dynamic_quantize_matmul():
    ins = [
        ("a", randn(2, 3, 16)),
        ("b", q8(np.int8, 16, 8)),
        ("b_scale", (np.abs(randn(8)) * 0.05).astype(np.float32)),
        ("b_zero_point", None),
        ("bias", randn(8)),
    ]
    write_case("ms_dynamic_quantize_matmul", "DynamicQuantizeMatMul", ins, ["y"])
    ins = [
        ("a", randn(3, 16)),
        ("b", q8(np.uint8, 16, 8)),
        ("b_scale", np.array(0.03, np.float32)),
        ("b_zero_point", np.array(120, np.uint8)),
    ]
    write_case("ms_dynamic_quantize_matmul_u8_zp", "DynamicQuantizeMatMul", ins, ["y"])


@case
def ms_matmul_integer_to_float():
    ins = [
        ("a", q8(np.uint8, 2, 3, 16)),
        ("b", q8(np.int8, 16, 8)),
        ("a_scale", np.array(0.02, np.float32)),
        ("b_scale", (np.abs(randn(8)) * 0.05).astype(np.float32)),
        ("a_zero_point", np.array(128, np.uint8)),
        ("b_zero_point", None),
        ("bias", randn(8)),
    ]
    write_case("ms_matmul_integer_to_float", "MatMulIntegerToFloat", ins, ["y"], out_types=[F32])


@case
def ms_quantize_dequantize_linear():
    x = randn(2, 3, 4)
    ins = [("x", x), ("y_scale", np.array([0.02, 0.05, 0.1], np.float32)), ("y_zero_point", np.array([0, 10, -5], np.int8))]
    write_case("ms_quantize_linear_axis", "QuantizeLinear", ins, ["y"], {"axis": 1}, out_types=[TensorProto.INT8])
    ins = [("x", q8(np.uint8, 2, 3, 4)), ("x_scale", np.array(0.03, np.float32)), ("x_zero_point", np.array(100, np.uint8))]
    write_case("ms_dequantize_linear", "DequantizeLinear", ins, ["y"], out_types=[F32])


# onnxruntime computes in f32 with its own summation order; the reference in
# f64. Differences stay well inside these bounds on the small tensors here.
RTOL, ATOL = 1e-3, 1e-5


def write_index():
    """index.json in the layout of the ONNX node-test index the harness reads."""
    tests = []
    for d in sorted(p for p in OUT.iterdir() if (p / "model.onnx").exists()):
        m = onnx.load(d / "model.onnx")
        elem = lambda v: TensorProto.DataType.Name(v.type.tensor_type.elem_type)
        tests.append(
            {
                "name": d.name,
                "kind": "node",
                "expanded": False,
                "base_name": d.name,
                "op_types": sorted({n.op_type for n in m.graph.node}),
                "domains": sorted({n.domain for n in m.graph.node}),
                "opset_imports": {o.domain or "ai.onnx": o.version for o in m.opset_import},
                "ir_version": m.ir_version,
                "rtol": RTOL,
                "atol": ATOL,
                "inputs": [{"name": i.name, "kind": "tensor", "elem_type": elem(i)} for i in m.graph.input],
                "outputs": [{"name": o.name, "kind": "tensor", "elem_type": elem(o)} for o in m.graph.output],
                "num_data_sets": 1,
                "tensor_data": True,
                "unsupported_reason": None,
            }
        )
    index = {"generator": "scripts/gen_contrib_tests.py", "count": len(tests), "tests": tests}
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only the cases whose name contains this")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, fn in CASES:
        if args.only and args.only not in name:
            continue
        try:
            fn()
            print(f"ok   {name}")
        except Exception as e:  # keep going: report every failing case
            failed.append(name)
            print(f"FAIL {name}: {e}", file=sys.stderr)
    write_index()
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {size / 1024:.0f} KiB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
