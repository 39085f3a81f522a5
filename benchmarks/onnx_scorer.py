"""The bundled model in ONNX Runtime: the reference a user after the fastest CPU inference would pick.

The graph is built from the bundle's own files (no export from another framework): ONNX `LSTM` ops
with `sequence_lens` (two bidirectional layers, the reverse direction reading each row within its
own length), the same first / last / max / mean head and the temperature. Tokenizing and
truncation are the lean PyTorch reference's (`benchmarks/torch_scorer.py`): batchscore's rules in
plain Python, length-sorted batches of 256 padded to the batch's longest row. Usage:
    python -m benchmarks.onnx_scorer INPUT.parquet OUTPUT.parquet [BUNDLE_DIR]   # end to end
    python -m benchmarks.onnx_scorer --check [BUNDLE_DIR]   # probabilities against batchscore's
Needs `pip install onnx onnxruntime` (not a batchscore dependency).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file

from benchmarks.lean_text import DEFAULT_BUNDLE, encode

OPSET = 18
_ONNX_GATES = (0, 3, 1, 2)  # ONNX orders an LSTM's gates i, o, f, c; the bundle i, f, g, o


def _gates_to_onnx(matrix: np.ndarray, hidden: int) -> np.ndarray:
    """(rows, 4H) with gate columns i, f, g, o -> (4H, rows) with gate rows i, o, f, c."""
    blocks = np.split(matrix, 4, axis=-1)
    return np.concatenate([blocks[g] for g in _ONNX_GATES], axis=-1).T


def build_model(bundle_dir: Path):
    """The bundle as an ONNX model: inputs ids (B, T) int64 and lengths (B,) int32, output logits."""
    from onnx import TensorProto, helper, numpy_helper

    config = json.loads((bundle_dir / "config.json").read_text())
    model = config["model"]
    weights = load_file(str(bundle_dir / "weights.safetensors"))
    hidden, pooling = model["hidden"], tuple(model.get("pooling", ()))
    initializers, nodes = [], []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    table = constant("embedding", weights["embedding/embedding"].astype(np.float32))
    x = node("Transpose", [node("Gather", [table, "ids"], "embedded")], "x0", perm=[1, 0, 2])  # (T, B, E)
    for layer in range(model["num_layers"]):
        w_in, w_h = weights[f"lstm_{layer}/w_input"], weights[f"lstm_{layer}/w_hidden"]
        bias = weights[f"lstm_{layer}/bias"]
        w = np.stack([_gates_to_onnx(w_in[d].astype(np.float32), hidden) for d in range(2)])
        r = np.stack([_gates_to_onnx(w_h[d].astype(np.float32), hidden) for d in range(2)])
        b = np.stack(
            [np.concatenate([_gates_to_onnx(bias[d][None].astype(np.float32), hidden)[:, 0],
                             np.zeros(4 * hidden, np.float32)]) for d in range(2)]
        )  # fmt: skip
        y = node(
            "LSTM",
            [x, constant(f"W{layer}", w), constant(f"R{layer}", r), constant(f"B{layer}", b), "lengths"],
            f"y{layer}",
            direction="bidirectional",
            hidden_size=hidden,
        )  # (T, 2, B, H)
        y = node("Transpose", [y], f"yt{layer}", perm=[0, 2, 1, 3])  # (T, B, 2, H)
        x = node("Reshape", [y, constant(f"shape{layer}", np.array([0, 0, 2 * hidden]))], f"x{layer + 1}")
    out = node("Transpose", [x], "out", perm=[1, 0, 2])  # (B, T, 2H); zero past each row's length
    lengths64 = node("Cast", ["lengths"], "lengths64", to=TensorProto.INT64)
    last_index = node("Sub", [lengths64, constant("one", np.array(1, np.int64))], "last_index")
    index = node("Unsqueeze", [last_index, constant("axes_1_2", np.array([1, 2]))], "index")  # (B, 1, 1)
    index = node("Expand", [index, node("Shape", [node("Gather", [out, constant("zero", np.array([0]))],
                                                            "first_row", axis=1)], "first_shape")],
                 "index_wide")  # fmt: skip
    features = [
        node("Squeeze", ["first_row", constant("axis_1", np.array([1]))], "first"),
        node("Squeeze", [node("GatherElements", [out, index], "last_row", axis=1), "axis_1"], "last"),
    ]
    steps = node("Range", [constant("start", np.array(0, np.int64)),
                           node("Gather", [node("Shape", [out], "out_shape"), "one"], "steps_n"),
                           "one"], "steps")  # fmt: skip
    real = node("Less", [node("Unsqueeze", [steps, constant("axis_0", np.array([0]))], "steps_row"),
                         node("Unsqueeze", [lengths64, "axis_1"], "lengths_col")], "real")  # fmt: skip
    real = node("Unsqueeze", [real, constant("axis_2", np.array([2]))], "real3")  # (B, T, 1)
    for kind in pooling:
        if kind == "max":
            masked = node("Where", [real, out, constant("neg_inf", np.array(-np.inf, np.float32))], "masked")
            features.append(node("ReduceMax", [masked, "axis_1"], "max", keepdims=0))
        else:
            total = node("ReduceSum", [out, "axis_1"], "sum", keepdims=0)
            count = node("Cast", [node("Unsqueeze", [lengths64, "axis_1"], "count64")], "count",
                         to=TensorProto.FLOAT)  # fmt: skip
            features.append(node("Div", [total, count], "mean"))
    head = node("Concat", features, "features", axis=1)
    kernel = constant("kernel", weights["head/kernel"].astype(np.float32))
    bias = constant("bias", weights["head/bias"].astype(np.float32))
    node("Add", [node("MatMul", [head, kernel], "scores"), bias], "logits")
    graph = helper.make_graph(
        nodes,
        "batchscore",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "time"]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", model["num_classes"]])],
        initializers,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def session(bundle_dir: Path):
    """An ONNX Runtime session of the bundle: the default CPU provider, every graph optimisation,
    one thread per core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(
        build_model(bundle_dir).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def ort_logits(runner, rows: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
    """Logits in input order: sort by length, pad each batch to its longest row, put back."""
    lengths = np.array([max(1, r.size) for r in rows])
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(rows), 2), np.float32)
    for start in range(0, len(rows), batch_size):
        chunk = order[start : start + batch_size]
        ids = np.zeros((chunk.size, lengths[chunk[0]]), np.int64)
        for j, i in enumerate(chunk):
            ids[j, : rows[i].size] = rows[i]
        out[chunk] = runner.run(["logits"], {"ids": ids, "lengths": lengths[chunk].astype(np.int32)})[0]
    return out


def probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logits / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True))[:, 1]


def _index(bundle_dir: Path, config: dict) -> dict[str, int]:
    tokens = (bundle_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return {token: i for i, token in enumerate(tokens[: config["model"]["vocab_size"]])}


def main(source: str, target: str, bundle_dir: str | None = None) -> None:
    bundle = Path(bundle_dir) if bundle_dir else DEFAULT_BUNDLE
    config = json.loads((bundle / "config.json").read_text())
    runner = session(bundle)
    table = pq.read_table(source)
    rows = encode(table.column("text").to_pylist(), _index(bundle, config), config["max_tokens"],
                  config["head_tokens"])  # fmt: skip
    prob = probabilities(ort_logits(runner, rows), config["temperature"])
    out = table.drop_columns(["text"]).append_column("prob_positive", pa.array(prob.astype(np.float32)))
    pq.write_table(
        out.append_column("label", pa.array(np.where(prob >= 0.5, "positive", "negative"))), target
    )


def check(bundle_dir: str | None = None) -> float:
    """The largest probability difference from batchscore's on the sample reviews (and no label flip)."""
    import batchscore

    bundle = Path(bundle_dir) if bundle_dir else DEFAULT_BUNDLE
    config = json.loads((bundle / "config.json").read_text())
    texts = pq.read_table(Path(__file__).resolve().parent.parent / "sample_data" / "reviews.parquet")
    texts = [t for t in texts.column("text").to_pylist() if t and t.strip()]
    rows = encode(texts, _index(bundle, config), config["max_tokens"], config["head_tokens"])
    theirs = probabilities(ort_logits(session(bundle), rows), config["temperature"])
    ours = batchscore.load_model(bundle).predict(texts)["prob_positive"].to_numpy(np.float64)
    worst = float(np.abs(theirs - ours).max())
    flips = int(((theirs >= 0.5) != (ours >= 0.5)).sum())
    print(f"{len(texts)} reviews: max |p - batchscore's p| {worst:.2e}, labels flipped {flips}")
    return worst


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        check(*sys.argv[2:3])
    else:
        main(*sys.argv[1:])
