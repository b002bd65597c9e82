"""Core ML: coremltools 9 mlprogram from torch.export (the TorchScript path breaks on shape casts)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UsageError
from . import register_target
from .base import QUANTIZED, Converted, ExportOptions, Target

MIN_TARGETS = ("iOS16", "iOS17", "iOS18")
# int8: weight-only per-channel int8 (fp16 activations; the size win on every iPhone).
# w8a8: int8 weights and activations (int8 compute on A17 Pro / M4 Neural Engines; needs iOS17 ops).


def _weight_config():
    import coremltools.optimize.coreml as cto

    op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=512)
    return cto.OptimizationConfig(global_config=op)


def _weight_quantize(ml):
    import coremltools.optimize.coreml as cto

    return cto.linear_quantize_weights(ml, _weight_config())


def executor_activation_stats(ml, calibration_pixels) -> dict:
    """Activation ranges of every non-const value, collected by the reference executor (no Mac needed).

    Ranges are the 99.999th percentile over all calibration values (:mod:`mvit_deploy.quantization`).
    """
    import tempfile

    from ..coreml_exec import MILExecutor
    from ..quantization import PercentileRanges

    ranges = PercentileRanges(len(calibration_pixels))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "float.mlpackage"
        ml.save(str(path))
        ex = MILExecutor(path)
        outputs = set(ex.program.outputs)
        for x in calibration_pixels:
            feed = {ex.input_names[0]: x[None]}
            _, captured = ex.run(feed, capture="all")
            captured.update(feed)
            for name, v in captured.items():
                if name not in outputs and isinstance(v, np.ndarray) and v.dtype.kind == "f":
                    ranges.add(name, v)
    return {name: dict(zip(("rmin", "rmax"), ranges.range(name))) for name in ranges.names()}


def fx_name_of_mil_value(name: str) -> str:
    """Core ML values are named after the torch.export node, plus cast suffixes coremltools adds."""
    import re

    return re.sub(r"(_cast_fp16|_cast_fp32|_to_fp16|_to_fp32)+$", "", name)


def float_module_nodes(program) -> set[str]:
    """torch.export node names inside :data:`mvit_deploy.quantization.FLOAT_MODULES` (Core ML names ops after them)."""
    import re

    from ..quantization import in_float_modules

    names = set()
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack:
            module = re.sub(r"^L__self___|^L\['self'\]\.", "", str(list(stack.values())[-1][0]))
            if in_float_modules(module):
                names.add(node.name)
    return names


def quantize_activations(ml, calibration_pixels, float_nodes=frozenset()):
    """coremltools' activation quantization, with its Mac-only calibration replaced by the executor's.

    Ops whose output comes from ``float_nodes`` keep fp16 activations.
    """
    import coremltools.optimize.coreml as cto
    from coremltools.optimize.coreml import _post_training_quantization as ptq

    stats = executor_activation_stats(ml, calibration_pixels)
    skip = {}
    for op in ml._mil_program.functions["main"].operations:
        out = op.outputs[0].name if op.outputs else op.name
        if fx_name_of_mil_value(out) in float_nodes:
            skip[op.name] = None
    config = cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=0), op_name_configs=skip
    )
    original = ptq._get_activation_calibration_stats
    ptq._get_activation_calibration_stats = lambda *a, **k: stats
    try:
        return ptq.linear_quantize_activations(ml, config, [{}])
    finally:
        ptq._get_activation_calibration_stats = original


@register_target
class CoreMLTarget(Target):
    name = "coreml"
    suffix = ".mlpackage"
    precisions = ("fp16", "fp32", *QUANTIZED)
    is_directory = True
    converter_packages = ("coremltools",)

    def validate(self, opts: ExportOptions) -> None:
        super().validate(opts)
        if opts.min_target not in MIN_TARGETS:
            raise UsageError(f"unknown --min-target {opts.min_target}", f"use one of {', '.join(MIN_TARGETS)}")
        if opts.precision == "w8a8" and opts.min_target == "iOS16":
            raise UsageError("w8a8 needs the quantize/dequantize ops of iOS17", "pass --min-target iOS17 (or iOS18)")
        if opts.input_type not in ("image", "tensor"):
            raise UsageError(f"unknown Core ML input type {opts.input_type}", "use image or tensor")

    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        import coremltools as ct
        import torch

        from ..datasets import get_domain

        pre = model.preprocessing
        size = example.shape[-1]
        if opts.input_type == "image":
            if any(pre.mean) or any(s != 1 for s in pre.std):
                raise UsageError("this checkpoint's preprocessing has mean/std", "use --coreml-input tensor")
            order = ct.colorlayout.BGR if pre.channel_order == "BGR" else ct.colorlayout.RGB
            inputs = [ct.ImageType(name="image", shape=(1, 3, size, size), scale=pre.scale, color_layout=order)]
        else:
            inputs = [ct.TensorType(name="image", shape=(1, 3, size, size))]
        program = torch.export.export(model, (example,)).run_decompositions({})
        names = get_domain(getattr(model, "domain", "photos")).named_classes(model.num_classes)
        # a head with named classes: labels embedded, so Vision returns class names; the dict output keeps the logits
        classifier = ct.ClassifierConfig(names, predicted_feature_name="classLabel") if names else None
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ml = ct.convert(
                program,
                inputs=inputs,
                outputs=[ct.TensorType(name="logits")],
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT32 if opts.precision == "fp32" else ct.precision.FLOAT16,
                minimum_deployment_target=getattr(ct.target, opts.min_target),
                classifier_config=classifier,
            )
            if opts.precision in QUANTIZED:
                if opts.precision == "w8a8":
                    pixels = calibration / pre.scale if opts.input_type == "image" else calibration
                    ml = quantize_activations(ml, pixels.astype(np.float32), float_module_nodes(program))
                ml = _weight_quantize(ml)
        ml.author = "mvit-deploy"
        ml.license = "see the source checkpoint's license"
        ml.version = __version__
        ml.short_description = f"{opts.model} ({opts.precision}, {size}x{size}) exported by mvit-deploy {__version__}"
        ml.user_defined_metadata.update(
            {
                "source_model": opts.model,
                "source_checkpoint": str(opts.weights or opts.pretrained or "fixture"),
                "channel_order": pre.channel_order,
                "labels": getattr(model, "domain", "photos") if classifier else "class_<i>",
            }
        )
        if classifier:
            ml.user_defined_metadata["com.apple.coreml.model.preview.type"] = "imageClassifier"
        ml.input_description["image"] = f"{size}x{size} {pre.channel_order} image" if opts.input_type == "image" else "preprocessed float tensor"
        desc = ml.get_spec().description
        # with labels, coremltools turns the logits into a {label: logit} dictionary output
        logits_name = desc.predictedProbabilitiesName if classifier else "logits"
        ml.output_description[logits_name] = f"{model.num_classes} class logits (not softmaxed)"
        ml.save(str(dest))
        output = {"labels_embedded": True, "label_output": desc.predictedFeatureName} if classifier else {}
        return Converted(input_name="image", output_name=logits_name, input={"type": opts.input_type, "dtype": "uint8" if opts.input_type == "image" else "float32"}, output=output)

    def weight_bytes(self, path: Path) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(path.rglob("*.bin")))
