"""Writes the small malformed/unsupported models the CLI error tests use
(tests/fixtures/). Re-run only to change them; they are committed."""

import os

import onnx
from onnx import TensorProto, helper

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
os.makedirs(out, exist_ok=True)

# Two unsupported nodes (an op from a domain Tessera does not know, and an
# unknown default-domain op type) between supported ones.
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
nodes = [
    helper.make_node("Relu", ["x"], ["a"], name="relu0"),
    helper.make_node("FancyNorm", ["a"], ["b"], name="fancy_norm_1", domain="com.example"),
    helper.make_node("NoSuchOp", ["b"], ["c"], name="mystery_2"),
    helper.make_node("Relu", ["c"], ["y"], name="relu3"),
]
g = helper.make_graph(nodes, "unsupported", [x], [y])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
onnx.save(m, os.path.join(out, "unsupported_ops.onnx"))

# A valid model, truncated: the file ends in the middle of a message.
nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu0")]
g = helper.make_graph(nodes, "ok", [x], [y])
data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
with open(os.path.join(out, "truncated.onnx"), "wb") as f:
    f.write(data[: len(data) * 2 // 3])

# A shape error: MatMul of [n,4] by a [3,2] weight.
w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [0.0] * 6)
nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="bad_matmul")]
g = helper.make_graph(nodes, "bad_shapes", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), os.path.join(out, "bad_matmul.onnx"))

# A .pb file that is not a TensorProto (a ModelProto).
with open(os.path.join(out, "not_a_tensor.pb"), "wb") as f:
    f.write(data)
