"""TFLite / LiteRT: litert-torch conversion (no TensorFlow), NCHW or NHWC input.

Run by ai-edge-litert (or tflite-runtime on old boards); on Android, timed by LiteRT's own
``benchmark_model`` over adb.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..device.runtimes import native_stderr
from ..device.runtimes.tflite import NARRATION, interpreter_class, tflite_dequantize, tflite_quantize  # noqa: F401  (re-exported: benchmarks use them)
from ..errors import UsageError
from ..models.families import family_of
from . import register_target
from .base import (
    AdbBenchmark,
    AihubProfile,
    ArtifactContents,
    Converted,
    ExportOptions,
    Option,
    Target,
    contents_of,
    is_weight,
)
from .quantize import FLOAT_MODULES, float_modules

# benchmark_model's log (LiteRT tools/benchmark): a summary per phase, timings in microseconds.
_COUNT = re.compile(
    r"count=(\d+) first=(\d+) curr=(\d+) min=([\d.]+) max=([\d.]+) avg=([\d.]+) std=([\d.]+)(?: p5=([\d.]+) "
    r"median=([\d.]+) p95=([\d.]+))?"
)
_TIMINGS = re.compile(
    r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), Warmup \(avg\): ([\d.]+), Inference "
    r"\(avg\): ([\d.]+)"
)
_MEMORY = re.compile(
    r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init=([\d.]+) "
    r"overall=([\d.]+)"
)


def parse_benchmark_output(text: str) -> dict:
    """benchmark_model's log -> latency (ms), load (ms) and memory (MB).

    Its summary gives min / avg / std / p5 / median / p95; p90 and p99 are not reported and stay null.
    """
    counts = _COUNT.findall(text)
    timings = _TIMINGS.search(text)
    if not counts or not timings:
        raise UsageError("benchmark_model printed no timing summary", "run it by hand on the device to see its error")
    count, _first, _curr, mn, _mx, avg, std, _p5, median, p95 = counts[-1]  # the last summary: the measured runs
    us = 1e-3
    latency = {
        "min": float(mn) * us,
        "p50": float(median) * us if median else None,
        "p90": None,
        "p99": None,
        "mean": float(avg) * us,
        "std": float(std) * us,
        "p95": float(p95) * us if p95 else None,
    }
    memory = _MEMORY.search(text)
    return {
        "runs": int(count),
        "latency_ms": latency,
        "load_ms": float(timings.group(1)) * us,
        "first_inference_ms": float(timings.group(2)) * us,
        "memory_overall_mb": float(memory.group(2)) if memory else None,
    }


def benchmark_command(remote_model: str, remote_binary: str, threads: int, warmup: int, iters: int) -> list[str]:
    return [
        remote_binary,
        f"--graph={remote_model}",
        f"--num_threads={threads}",
        f"--warmup_runs={warmup}",
        f"--num_runs={iters}",
        "--use_xnnpack=true",
    ]


def module_of_tflite_tensor(name: str) -> str:
    """'...MobileViT/torch...Sequential_stages/torch...Sequential_2/...MobileViTBlock_1/...;5' -> 'stages.2.1'.

    The NHWC wrapper's level ('.../NHWC/...MobileViT_inner/...') is not part of the model's path.
    """
    parts = []
    for segment in name.split(";")[0].split("/")[1:]:
        cls_attr = segment.rsplit(".", 1)[-1]
        if "_" in cls_attr:
            parts.append(cls_attr.split("_", 1)[1])
    if parts[:1] == [WRAPPED] and name.split("/", 1)[0].endswith(".NHWC"):
        parts = parts[1:]
    return ".".join(parts)


def _tensors(path: Path, x: np.ndarray, layout: str) -> dict[str, list[np.ndarray]]:
    """Every float or (dequantized) int8 tensor an op writes, by name, one array per input."""
    it = interpreter_class()(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=2)
    it.allocate_tensors()
    written = {o for op in it._get_ops_details() for o in op["outputs"]}
    details = [d for d in it.get_tensor_details() if d["index"] in written]
    inp = it.get_input_details()[0]
    out: dict[str, list[np.ndarray]] = {}
    for i in range(len(x)):
        xi = x[i : i + 1].transpose(0, 2, 3, 1) if layout == "nhwc" else x[i : i + 1]
        it.set_tensor(inp["index"], tflite_quantize(xi, inp))
        it.invoke()
        for d in details:
            v = it.get_tensor(d["index"])
            if v.dtype == np.float32 or (v.dtype == np.int8 and d["quantization"][0]):
                out.setdefault(d["name"], []).append(tflite_dequantize(v, d))
    return out


WRAPPED = "inner"  # the NHWC wrapper's attribute holding the model: one more level in tensor names


def nhwc_wrapper(model):
    """[B, H, W, C] input, as Android / Pi camera pipelines hand it over."""
    import torch

    class NHWC(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner  # WRAPPED

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2))

    return NHWC(model).eval()


@register_target
class TFLiteTarget(Target):
    name = "tflite"
    suffix = ".tflite"
    precisions = ("fp32", "int8")
    int8_io = True
    converter_packages = ("litert-torch", "ai-edge-litert")
    device_packages = ("ai-edge-litert",)
    runtime_packages = ("ai-edge-litert", "tflite-runtime")
    noisy_loggers = ("litert_torch", "absl", "ai_edge_quantizer", "tensorflow")
    layer_report = True
    export_options = (
        Option(
            "--layout", "layout", ("nchw", "nhwc"), "nchw", "input layout (nhwc: as camera pipelines hand images over)."
        ),
        Option("--io", "io", ("float", "int8"), "float", "int8 artifacts: tensor type of input and logits."),
    )
    adb = AdbBenchmark(
        binary="benchmark_model",
        where="LiteRT's android_aarch64 benchmark_model",
        runtime="litert-benchmark_model-xnnpack",
        command=benchmark_command,
        parse=parse_benchmark_output,
    )
    aihub = AihubProfile(framework="tflite", runtime="litert-aihub")

    def resolve(self, opts: ExportOptions) -> ExportOptions:
        opts = super().resolve(opts)
        io = opts.target_options.io
        if io != "float" and opts.precision != "int8":
            raise UsageError(f"--io {io} needs an int8 artifact", "add --precision int8, or drop --io")
        return opts

    def stem_tags(self, opts):
        o = opts.target_options
        return [f"{o.io}io"] * (o.io != "float") + [o.layout] * (o.layout != "nchw")

    def input_layout(self, opts):
        return opts.target_options.layout

    def twin_options(self, manifest):
        return {"layout": manifest.input.layout}

    def layer_errors(self, float_path, int8_path, x, manifest):
        from ..metrics import sqnr_db

        layout = manifest.input.layout
        ref, got = _tensors(float_path, x, layout), _tensors(int8_path, x, layout)
        rows = []
        for name, r in ref.items():
            g = got.get(name)
            if g is not None and all(a.shape == b.shape for a, b in zip(r, g, strict=False)):
                rows.append(
                    (
                        name,
                        sqnr_db(np.concatenate([a.ravel() for a in r]), np.concatenate([b.ravel() for b in g])),
                        None,
                    )
                )
        return rows

    def layer_module(self, tensor, fx_modules):
        return module_of_tflite_tensor(tensor)

    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        with native_stderr(drop=NARRATION):  # TensorFlow, imported by the converter, narrates at import
            import litert_torch

        if opts.target_options.layout == "nhwc":
            model, example = nhwc_wrapper(model), example.permute(0, 2, 3, 1).contiguous()
        with (
            native_stderr(drop=NARRATION),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            family_of(opts.model).spelled(model, **VARIANT),
        ):
            edge = litert_torch.convert(model, (example,))
            edge.export(str(dest))
            if opts.precision == "int8":
                calib = calibration.transpose(0, 2, 3, 1) if opts.target_options.layout == "nhwc" else calibration
                quantize_int8(dest, calib, opts.target_options.io, float_modules(opts.model))
        int8_io = {"dtype": "int8"} if opts.precision == "int8" and opts.target_options.io == "int8" else {}
        return Converted(
            input_name="serving_default_args_0:0",
            output_name="StatefulPartitionedCall:0",
            input=int8_io,
            output=int8_io,
        )

    def check(self, path: Path) -> None:
        interpreter_class()(model_path=str(path)).allocate_tensors()

    def weight_bytes(self, path: Path) -> bytes:
        return path.read_bytes()  # flatbuffer: graph and buffers; deterministic as a whole

    def artifact_contents(self, path: Path) -> ArtifactContents:
        """The flatbuffer's constant tensors (those with data in a buffer), read with LiteRT's schema: 8-bit ones or
        QUANTIZE ops make int8, float16 ones fp16."""
        from ai_edge_litert import schema_py_generated as schema

        data = path.read_bytes()
        if not schema.Model.ModelBufferHasIdentifier(data, 0):  # "TFL3"
            return ArtifactContents()
        model, weights, quantize = schema.Model.GetRootAs(data, 0), Counter(), 0
        types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}  # 9 -> "int8"
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        ops = [max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) for c in codes]  # schema v3a keeps both fields
        for graph in (model.Subgraphs(g) for g in range(model.SubgraphsLength())):
            for t in (graph.Tensors(i) for i in range(graph.TensorsLength())):
                buffer = model.Buffers(t.Buffer()) if t.Buffer() else None
                dims = tuple(t.Shape(j) for j in range(t.ShapeLength()))
                if buffer is not None and (buffer.DataLength() or buffer.Size()) and is_weight(dims):
                    weights[types.get(t.Type(), "other")] += math.prod(dims)
            ops_here = (ops[graph.Operators(i).OpcodeIndex()] for i in range(graph.OperatorsLength()))
            quantize += sum(op == schema.BuiltinOperator.QUANTIZE for op in ops_here)
        return contents_of(weights, {"QUANTIZE": quantize} if quantize else {})


# How the graph is written for LiteRT (asked of the model family: ModelFamily.spelled): layer norms
# as plain ops (10 TFLite ops each instead of 16 with 5 reshapes) and unfold/fold through
# channels-last rank-6 transposes (XXS: 660 -> 561 ops, data movement 262 -> 169; fp32 -6 %,
# int8 -5 % in one interleaved run of benchmarks/latency.py-style blocks).
VARIANT = {"layer_norm": "decomposed", "patches": "channels_last"}

# The int8 recipe, chosen by measurement on MobileViT (benchmarks/quant.py, docs in README):
# after the high-resolution stages (mvit_deploy.targets.quantize.FLOAT_MODULES, float),
# convolutions, fully-connected layers, SiLU and the pure data movement between them run in int8
# (XNNPACK's QS8 kernels); LayerNorm arithmetic, softmax, the attention matmuls and the
# residual adds stay float. Quantizing those too (ai-edge-quantizer's static_wi8_ai8) made
# XXS 3.5x slower than fp32 (TFLite's reference int8 kernels) and less faithful.
INT8_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "TRANSPOSE",
    "RESHAPE",
    "CONCATENATION",
    "SLICE",
    "STRIDED_SLICE",
)
# SiLU (LOGISTIC + MUL), matched by scope so that LayerNorm's MULs stay float.
INT8_SCOPED_OPS = {"SiLU_act": ("LOGISTIC", "MUL")}


# tensors whose innermost module is one of our LayerNorms ('.../mvit_deploy.models.mobilevit.LayerNorm_norm1;...')
LAYER_NORM_SCOPE = r"^[^;]*\.LayerNorm_[^/;]*(;|$)"


def scope_regex(prefixes) -> str:
    """Regex over litert-torch tensor names ('<root>/<Class>_<attr>/...') for these module paths,
    with or without the NHWC wrapper's level ('<root>/<Class>_inner/...')."""
    alternatives = []
    for prefix in prefixes:
        parts = "/".join(f"[^/]*_{re.escape(p)}" for p in prefix.split("."))
        alternatives.append(f"^[^/]*/(?:[^/]*_{WRAPPED}/)?{parts}(/|;|$)")
    return "|".join(alternatives)


def int8_recipe(io: str = "float", prefixes: tuple[str, ...] = FLOAT_MODULES):
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    manager = recipe_manager.RecipeManager()
    ops = [(".*", op) for op in INT8_OPS] + [(scope, op) for scope, names in INT8_SCOPED_OPS.items() for op in names]
    if io == "int8":
        ops += [(".*", "INPUT"), (".*", "OUTPUT")]
    for regex, op in ops:
        manager.add_static_config(
            regex=regex, operation_name=qtyping.TFLOperationName(op), activation_num_bits=8, weight_num_bits=8
        )
    # the family's float modules stay float (the latest matching rule wins), and so does every op inside a layer
    # norm written as plain ops (VARIANT): its per-token statistics pass a RESHAPE that the rule
    # above would make int8 (photo fixture: top-1 agreement 70.3 % -> 62.5 %)
    manager.add_quantization_config(
        scope_regex(prefixes), qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE
    )
    manager.add_quantization_config(
        LAYER_NORM_SCOPE, qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE
    )
    return manager


def quantize_int8(path: Path, calibration, io: str = "float", prefixes: tuple[str, ...] = FLOAT_MODULES) -> None:
    """Static int8 (per-channel int8 weights, int8 activations), in place.

    Activation ranges are the 99.999th percentile over every calibration value
    (:mod:`mvit_deploy.targets.quantize`, the range onnxruntime's Percentile calibrator sets):
    ai-edge-quantizer's default, a moving average of per-crop extremes, clips the rare large
    activations MobileViT depends on (XXS logits PSNR 20.7 dB vs 28.7 dB with full ranges).
    """
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    from .quantize import PercentileRanges

    signature = interpreter_class()(model_path=str(path)).get_signature_list()["serving_default"]
    key = signature["inputs"][0]
    manager = int8_recipe(io, prefixes)
    samples = [{key: np.ascontiguousarray(calibration[i : i + 1])} for i in range(len(calibration))]
    calib = calibrator.Calibrator(path.read_bytes(), num_threads=2, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({"serving_default": samples[:1]}, manager)  # which tensors need ranges, in which shape
    qsvs = calib.get_model_qsvs()

    ranges = PercentileRanges(len(calibration))
    it = interpreter_class()(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=2)
    it.allocate_tensors()
    activations = {o for op in it._get_ops_details() for o in op["outputs"]} | {
        d["index"] for d in it.get_input_details()
    }
    index = {d["name"]: d["index"] for d in it.get_tensor_details() if d["index"] in activations and d["name"] in qsvs}
    runner = it.get_input_details()[0]["index"]
    for i in range(len(calibration)):
        it.set_tensor(runner, np.ascontiguousarray(calibration[i : i + 1]))
        it.invoke()
        for name, idx in index.items():
            ranges.add(name, it.get_tensor(idx))
    for name in index:
        lo, hi = ranges.range(name)
        qsvs[name] = {"min": np.full_like(qsvs[name]["min"], lo), "max": np.full_like(qsvs[name]["max"], hi)}

    q = quantizer.Quantizer(str(path), manager.get_quantization_recipe())
    q.quantize(qsvs).export_model(str(path), overwrite=True)
