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
                quantize_full_integer(dest, calib)
        int8_io = {"dtype": "int8"} if opts.precision == "int8" else {}  # full-integer models take int8 I/O
        return Converted(input_name="serving_default_args_0:0", output_name="StatefulPartitionedCall:0", input=int8_io, output=int8_io)

    def check(self, path: Path) -> None:
        from ..runtimes import _tflite_interpreter

        _tflite_interpreter()(model_path=str(path)).allocate_tensors()

    def weight_bytes(self, path: Path) -> bytes:
        return path.read_bytes()  # flatbuffer: graph and buffers; deterministic as a whole


def quantize_full_integer(path: Path, calibration) -> None:
    """Full-integer int8 (weights, activations and I/O) with ai-edge-quantizer, in place."""
    import numpy as np
    from ai_edge_quantizer import quantizer, recipe

    from ..runtimes import _tflite_interpreter

    signature = _tflite_interpreter()(model_path=str(path)).get_signature_list()["serving_default"]
    key = signature["inputs"][0]
    q = quantizer.Quantizer(str(path), recipe.static_wi8_ai8())
    samples = [{key: np.ascontiguousarray(calibration[i : i + 1])} for i in range(len(calibration))]
    result = q.quantize(q.calibrate({"serving_default": samples}))
    result.export_model(str(path), overwrite=True)
