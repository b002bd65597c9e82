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
    precisions = ("fp32",)
    converter_packages = ("onnx", "onnxscript", "onnxruntime")

    def convert(self, model, example, opts: ExportOptions, dest: Path) -> Converted:
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
        return Converted(input_name="image", output_name="logits")

    def check(self, path: Path) -> None:
        import onnx

        onnx.checker.check_model(str(path), full_check=True)

    def weight_bytes(self, path: Path) -> bytes:
        import onnx

        m = onnx.load(str(path))
        return b"".join(t.name.encode() + t.raw_data for t in sorted(m.graph.initializer, key=lambda t: t.name))
