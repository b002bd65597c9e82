"""ONNX: torch.onnx dynamo export, opset 18, weights inside one file, run by onnxruntime."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from . import register_target
from .base import Converted, ExportOptions, Target

OPSET = 18


@register_target
class OnnxTarget(Target):
    name = "onnx"
    suffix = ".onnx"
    precisions = ("fp32", "int8")
    converter_packages = ("onnx", "onnxscript", "onnxruntime")

    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        import torch

        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every step
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["image"],
                output_names=["logits"],
                verbose=False,
            )
        program.save(str(dest), external_data=False)
        if opts.precision == "int8":
            quantize_static_int8(dest, calibration)
        return Converted(input_name="image", output_name="logits")

    def check(self, path: Path) -> None:
        import onnx

        onnx.checker.check_model(str(path), full_check=True)

    def weight_bytes(self, path: Path) -> bytes:
        import onnx

        m = onnx.load(str(path))
        return b"".join(t.name.encode() + t.raw_data for t in sorted(m.graph.initializer, key=lambda t: t.name))


# The int8 recipe, chosen by measurement on MobileViT (benchmarks/quant.py): convolutions,
# SiLU, residual adds, concat and the linear layers run as ORT's fused QLinearConv / QGemm /
# QLinearSigmoid / QLinearMul / QLinearAdd, and the reshapes and transposes of unfold/fold
# move uint8 instead of float. LayerNorm, softmax and the attention matmuls stay float:
# quantizing them (onnxruntime's defaults) is both slower (QLinearSoftmax) and less faithful.
INT8_OPS = ("Conv", "Gemm", "Sigmoid", "Mul", "Add", "Concat", "Transpose", "Reshape", "Slice", "Split", "Unsqueeze")


def quantize_static_int8(path: Path, calibration) -> None:
    """Static QDQ int8, in place: per-channel int8 weights, uint8 activations (:data:`INT8_OPS`).

    Activation ranges: the 99.999th percentile of all calibration values (see
    :mod:`mvit_deploy.quant_ranges` for the measurements behind that choice).
    """
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..quant_ranges import PERCENTILE

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter({"image": calibration[i : i + 1]} for i in range(len(calibration)))

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(path), str(pre))
        quantize_static(
            str(pre),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OPS),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": PERCENTILE},
        )
