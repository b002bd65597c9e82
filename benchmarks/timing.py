"""Shared by the benchmarks: interleaved block timing, the machine's GEMM peak, graph node counts."""

from __future__ import annotations

import collections
import time

import numpy as np

# Ops that only move or re-view data, per runtime's spelling.
DATA_MOVEMENT = {
    "onnx": {
        "Reshape",
        "Transpose",
        "Slice",
        "Split",
        "Concat",
        "Unsqueeze",
        "Squeeze",
        "Flatten",
        "Gather",
        "Expand",
        "Identity",
        "DepthToSpace",
        "SpaceToDepth",
        "ReorderInput",
        "ReorderOutput",
    },
    "tflite": {
        "RESHAPE",
        "TRANSPOSE",
        "SLICE",
        "STRIDED_SLICE",
        "SPLIT",
        "SPLIT_V",
        "CONCATENATION",
        "PACK",
        "UNPACK",
        "GATHER",
        "EXPAND_DIMS",
        "SQUEEZE",
        "DEPTH_TO_SPACE",
        "SPACE_TO_DEPTH",
        "BROADCAST_TO",
    },
}


def block_latency(routes: dict, x: np.ndarray, rounds: int, block: int) -> dict[str, float]:
    """ms per call: median over rounds of each route's block median.

    Every round runs each route for a block of ``block`` calls after 3 warm-up calls, so each
    runtime's thread pool is awake and the previous one's asleep (per-call interleaving let
    spinning pools distort their neighbours).
    """
    medians = {label: [] for label in routes}
    for _ in range(rounds):
        for label, run in routes.items():
            for _ in range(3):
                run(x)
            times = []
            for _ in range(block):
                t0 = time.perf_counter()
                run(x)
                times.append(time.perf_counter() - t0)
            medians[label].append(np.median(times))
    return {label: float(np.median(m)) * 1e3 for label, m in medians.items()}


def gemm_peak_gflops(threads: int, n: int = 1024, reps: int = 10) -> float:
    """Best fp32 GEMM throughput here: the better of torch's sgemm and onnxruntime's MLAS on
    n x n matrices (a lower bound on the machine's peak; XNNPACK may still beat both)."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])
    feeds = {"a": a.numpy(), "b": b.numpy()}
    best = float("inf")
    for run in (lambda: a @ b, lambda: session.run(None, feeds)):
        for _ in range(2):
            run()
        for _ in range(reps):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def onnx_ops(path) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def ort_optimized_ops(path, threads: int) -> collections.Counter:
    """Op counts of the graph onnxruntime actually runs (after its CPU graph optimisations)."""
    import os
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        o.log_severity_level = 3
        o.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        return onnx_ops(o.optimized_model_filepath)


def tflite_ops(path) -> collections.Counter:
    from mvit_deploy.targets.tflite import interpreter_class

    it = interpreter_class()(model_path=str(path))
    return collections.Counter(d["op_name"] for d in it._get_ops_details())


def data_movement(ops: collections.Counter, family: str) -> int:
    return sum(n for op, n in ops.items() if op in DATA_MOVEMENT[family])
