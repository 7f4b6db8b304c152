"""Builds a BERT encoder ONNX model with random weights, written op by op the
way the TorchScript exporter lays it out (embeddings + mask bias, per-layer
Q/K/V MatMul+Add, Reshape/Transpose into heads, scaled QK^T + mask, Softmax,
context, output projection, residual + LayerNormalization, Erf GELU MLP).

Used for scale tests and benchmarks (BERT-base: 12 layers, hidden 768, 12 heads,
~110M parameters), so nothing this large is committed. Needs only onnx + numpy.

    python scripts/make_bert.py --layers 12 --hidden 768 --heads 12 --out .cache/bert-base/model.onnx
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(layers, hidden, heads, inter, vocab, max_pos, seed):
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    head_dim = hidden // heads

    def w(name, *shape, scale=0.02):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    made = set()

    def c(name, value, dtype=np.int64):
        # Shared constants are created once, however many layers use them.
        if name not in made:
            made.add(name)
            inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    def n(op, ins, outs, name, **attrs):
        nodes.append(helper.make_node(op, ins, outs, name=name, **attrs))
        return outs[0]

    ones = lambda name, k: inits.append(numpy_helper.from_array(np.ones(k, np.float32), name)) or name
    zeros = lambda name, k: inits.append(numpy_helper.from_array(np.zeros(k, np.float32), name)) or name

    # Embeddings
    x = n("Gather", [w("word_embeddings", vocab, hidden), "input_ids"], ["/emb/word"], "/embeddings/word/Gather")
    tt = n("Gather", [w("token_type_embeddings", 2, hidden), "token_type_ids"], ["/emb/tt"], "/embeddings/tt/Gather")
    shape = n("Shape", ["input_ids"], ["/emb/shape"], "/embeddings/Shape")
    seq = n("Gather", [shape, c("one", 1)], ["/emb/seq"], "/embeddings/Gather_seq", axis=0)
    pos_ids = n("Range", [c("zero", 0), seq, c("one_step", 1)], ["/emb/pos_ids"], "/embeddings/Range")
    pos = n("Gather", [w("position_embeddings", max_pos, hidden), pos_ids], ["/emb/pos"], "/embeddings/pos/Gather")
    x = n("Add", [x, tt], ["/emb/add1"], "/embeddings/Add")
    x = n("Add", [x, pos], ["/emb/add2"], "/embeddings/Add_1")
    x = n("LayerNormalization", [x, ones("emb_ln.w", hidden), zeros("emb_ln.b", hidden)], ["/emb/ln"],
          "/embeddings/LayerNorm", axis=-1, epsilon=1e-12)

    # Mask bias: (1 - mask) * -10000, shaped [batch, 1, 1, seq]
    m = n("Unsqueeze", ["attention_mask", c("axes12", [1, 2])], ["/mask/u"], "/mask/Unsqueeze")
    m = n("Cast", [m], ["/mask/f"], "/mask/Cast", to=TensorProto.FLOAT)
    m = n("Sub", [c("fone", 1.0, np.float32), m], ["/mask/inv"], "/mask/Sub")
    bias = n("Mul", [m, c("neg_big", -10000.0, np.float32)], ["/mask/bias"], "/mask/Mul")

    split_heads = c("split_heads", [0, 0, heads, head_dim])
    merge_heads = c("merge_heads", [0, 0, hidden])
    scale = c("scale", np.float32(1.0 / np.sqrt(head_dim)), np.float32)
    for i in range(layers):
        p = f"/layer.{i}"

        def lin(inp, din, dout, tag):
            y = n("MatMul", [inp, w(f"l{i}.{tag}.w", din, dout)], [f"{p}/{tag}/mm"], f"{p}/{tag}/MatMul")
            return n("Add", [y, zeros(f"l{i}.{tag}.b", dout)], [f"{p}/{tag}/out"], f"{p}/{tag}/Add")

        def heads_of(t, tag, perm):
            t = n("Reshape", [t, split_heads], [f"{p}/{tag}/r"], f"{p}/{tag}/Reshape")
            return n("Transpose", [t], [f"{p}/{tag}/t"], f"{p}/{tag}/Transpose", perm=perm)

        q = heads_of(lin(x, hidden, hidden, "q"), "qh", [0, 2, 1, 3])
        k = heads_of(lin(x, hidden, hidden, "k"), "kh", [0, 2, 3, 1])
        v = heads_of(lin(x, hidden, hidden, "v"), "vh", [0, 2, 1, 3])
        s = n("MatMul", [q, k], [f"{p}/scores"], f"{p}/attn/MatMul")
        s = n("Mul", [s, scale], [f"{p}/scaled"], f"{p}/attn/Mul")
        s = n("Add", [s, bias], [f"{p}/masked"], f"{p}/attn/Add")
        s = n("Softmax", [s], [f"{p}/probs"], f"{p}/attn/Softmax", axis=-1)
        ctx = n("MatMul", [s, v], [f"{p}/ctx"], f"{p}/attn/MatMul_1")
        ctx = n("Transpose", [ctx], [f"{p}/ctx_t"], f"{p}/attn/Transpose", perm=[0, 2, 1, 3])
        ctx = n("Reshape", [ctx, merge_heads], [f"{p}/ctx_r"], f"{p}/attn/Reshape")
        o = lin(ctx, hidden, hidden, "o")
        x = n("Add", [o, x], [f"{p}/res1"], f"{p}/attn/residual/Add")
        x = n("LayerNormalization", [x, ones(f"l{i}.ln1.w", hidden), zeros(f"l{i}.ln1.b", hidden)],
              [f"{p}/ln1"], f"{p}/attention/LayerNorm", axis=-1, epsilon=1e-12)
        h = lin(x, hidden, inter, "ffn1")
        # exact GELU: 0.5 * h * (1 + erf(h / sqrt(2)))
        g = n("Div", [h, c("sqrt2", np.float32(np.sqrt(2.0)), np.float32)], [f"{p}/gelu/div"], f"{p}/gelu/Div")
        g = n("Erf", [g], [f"{p}/gelu/erf"], f"{p}/gelu/Erf")
        g = n("Add", [g, c("fone_g", 1.0, np.float32)], [f"{p}/gelu/add"], f"{p}/gelu/Add")
        g = n("Mul", [h, g], [f"{p}/gelu/mul"], f"{p}/gelu/Mul")
        g = n("Mul", [g, c("half", 0.5, np.float32)], [f"{p}/gelu/out"], f"{p}/gelu/Mul_1")
        o = lin(g, inter, hidden, "ffn2")
        x = n("Add", [o, x], [f"{p}/res2"], f"{p}/output/residual/Add")
        x = n("LayerNormalization", [x, ones(f"l{i}.ln2.w", hidden), zeros(f"l{i}.ln2.b", hidden)],
              [f"{p}/ln2" if i < layers - 1 else "last_hidden_state"], f"{p}/output/LayerNorm", axis=-1, epsilon=1e-12)

    ids = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
    graph = helper.make_graph(
        nodes, "bert", [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tessera-make-bert")
    model.ir_version = 8
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=None)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--max-pos", type=int, default=512)
    ap.add_argument("--seq", type=int, default=128, help="sequence length of the generated test set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--external-data", action="store_true", help="store weights in model.onnx.data")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model = build(a.layers, a.hidden, a.heads, a.intermediate or 4 * a.hidden, a.vocab, a.max_pos, a.seed)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    if a.external_data:
        onnx.save_model(model, a.out, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(a.out) + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, a.out)
    # One test set, with expected outputs from onnxruntime when it is installed.
    rng = np.random.default_rng(a.seed + 1)
    feeds = {
        "input_ids": rng.integers(3, a.vocab, size=(1, a.seq), dtype=np.int64),
        "attention_mask": np.ones((1, a.seq), np.int64),
        "token_type_ids": np.zeros((1, a.seq), np.int64),
    }
    d = os.path.join(os.path.dirname(os.path.abspath(a.out)), "test_data_set_0")
    os.makedirs(d, exist_ok=True)
    for k, (name, v) in enumerate(feeds.items()):
        onnx.save_tensor(numpy_helper.from_array(v, name), os.path.join(d, f"input_{k}.pb"))
    try:
        import onnxruntime as ort
    except ImportError:
        return
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(a.out, so, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, feeds)
    onnx.save_tensor(numpy_helper.from_array(y, "last_hidden_state"), os.path.join(d, "output_0.pb"))


if __name__ == "__main__":
    main()
