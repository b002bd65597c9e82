"""TFLite / LiteRT: litert-torch conversion (no TensorFlow), NCHW or NHWC input."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from . import register_target
from .base import Converted, ExportOptions, Target


def nhwc_wrapper(model):
    """[B, H, W, C] input, as Android / Pi camera pipelines hand it over."""
    import torch

    class NHWC(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2))

    return NHWC(model).eval()


@register_target
class TFLiteTarget(Target):
    name = "tflite"
    suffix = ".tflite"
    precisions = ("fp32", "int8")
    layouts = ("nchw", "nhwc")
    int8_io = True
    converter_packages = ("litert-torch", "ai-edge-litert")

    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        import litert_torch

        if opts.layout == "nhwc":
            model, example = nhwc_wrapper(model), example.permute(0, 2, 3, 1).contiguous()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            edge = litert_torch.convert(model, (example,))
            edge.export(str(dest))
            if opts.precision == "int8":
                calib = calibration.transpose(0, 2, 3, 1) if opts.layout == "nhwc" else calibration
                quantize_int8(dest, calib, opts.io)
        int8_io = {"dtype": "int8"} if opts.precision == "int8" and opts.io == "int8" else {}
        return Converted(input_name="serving_default_args_0:0", output_name="StatefulPartitionedCall:0", input=int8_io, output=int8_io)

    def check(self, path: Path) -> None:
        from ..runtimes import _tflite_interpreter

        _tflite_interpreter()(model_path=str(path)).allocate_tensors()

    def weight_bytes(self, path: Path) -> bytes:
        return path.read_bytes()  # flatbuffer: graph and buffers; deterministic as a whole


# The int8 recipe, chosen by measurement on MobileViT (benchmarks/quant.py, docs in README):
# after the high-resolution stages (mvit_deploy.quantization.FLOAT_MODULES, float),
# convolutions, fully-connected layers, SiLU and the pure data movement between them run in int8
# (XNNPACK's QS8 kernels); LayerNorm arithmetic, softmax, the attention matmuls and the
# residual adds stay float. Quantizing those too (ai-edge-quantizer's static_wi8_ai8) made
# XXS 3.5x slower than fp32 (TFLite's reference int8 kernels) and less faithful.
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE", "RESHAPE", "CONCATENATION", "SLICE", "STRIDED_SLICE")
# SiLU (LOGISTIC + MUL), matched by scope so that LayerNorm's MULs stay float.
INT8_SCOPED_OPS = {"SiLU_act": ("LOGISTIC", "MUL")}


def int8_recipe(io: str = "float"):
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    from ..quantization import tflite_scope_regex

    manager = recipe_manager.RecipeManager()
    ops = [(".*", op) for op in INT8_OPS] + [(scope, op) for scope, names in INT8_SCOPED_OPS.items() for op in names]
    if io == "int8":
        ops += [(".*", "INPUT"), (".*", "OUTPUT")]
    for regex, op in ops:
        manager.add_static_config(regex=regex, operation_name=qtyping.TFLOperationName(op), activation_num_bits=8, weight_num_bits=8)
    # FLOAT_MODULES stay float (the latest matching rule wins)
    manager.add_quantization_config(tflite_scope_regex(), qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager


def quantize_int8(path: Path, calibration, io: str = "float") -> None:
    """Static int8 (per-channel int8 weights, int8 activations), in place.

    Activation ranges are the 99.999th percentile over every calibration value
    (:mod:`mvit_deploy.quantization`, the range onnxruntime's Percentile calibrator sets):
    ai-edge-quantizer's default, a moving average of per-crop extremes, clips the rare large
    activations MobileViT depends on (XXS logits PSNR 20.7 dB vs 28.7 dB with full ranges).
    """
    import numpy as np
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    from ..quantization import PercentileRanges
    from ..runtimes import _tflite_interpreter

    signature = _tflite_interpreter()(model_path=str(path)).get_signature_list()["serving_default"]
    key = signature["inputs"][0]
    manager = int8_recipe(io)
    samples = [{key: np.ascontiguousarray(calibration[i : i + 1])} for i in range(len(calibration))]
    calib = calibrator.Calibrator(path.read_bytes(), num_threads=2, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({"serving_default": samples[:1]}, manager)  # which tensors need ranges, in which shape
    qsvs = calib.get_model_qsvs()

    ranges = PercentileRanges(len(calibration))
    it = _tflite_interpreter()(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=2)
    it.allocate_tensors()
    activations = {o for op in it._get_ops_details() for o in op["outputs"]} | {d["index"] for d in it.get_input_details()}
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
