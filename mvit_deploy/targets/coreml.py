"""Core ML: coremltools 9 mlprogram from torch.export (the TorchScript path breaks on shape casts)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from .. import __version__
from ..errors import UsageError
from . import register_target
from .base import Converted, ExportOptions, Target

MIN_TARGETS = ("iOS16", "iOS17", "iOS18")


@register_target
class CoreMLTarget(Target):
    name = "coreml"
    suffix = ".mlpackage"
    precisions = ("fp16", "fp32")
    is_directory = True
    converter_packages = ("coremltools",)

    def validate(self, opts: ExportOptions) -> None:
        super().validate(opts)
        if opts.min_target not in MIN_TARGETS:
            raise UsageError(f"unknown --min-target {opts.min_target}", f"use one of {', '.join(MIN_TARGETS)}")
        if opts.input_type not in ("image", "tensor"):
            raise UsageError(f"unknown Core ML input type {opts.input_type}", "use image or tensor")

    def convert(self, model, example, opts: ExportOptions, dest: Path) -> Converted:
        import coremltools as ct
        import torch

        from ..labels import unique_class_names

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
        names = unique_class_names(model.num_classes)
        # ImageNet head: labels embedded, so Vision returns class names; the dict output keeps the logits
        classifier = ct.ClassifierConfig(names, predicted_feature_name="classLabel") if model.num_classes == 1000 else None
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ml = ct.convert(
                program,
                inputs=inputs,
                outputs=[ct.TensorType(name="logits")],
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16 if opts.precision == "fp16" else ct.precision.FLOAT32,
                minimum_deployment_target=getattr(ct.target, opts.min_target),
                classifier_config=classifier,
            )
        ml.author = "mvit-deploy"
        ml.license = "see the source checkpoint's license"
        ml.version = __version__
        ml.short_description = f"{opts.model} ({opts.precision}, {size}x{size}) exported by mvit-deploy {__version__}"
        ml.user_defined_metadata.update(
            {
                "source_model": opts.model,
                "source_checkpoint": str(opts.weights or opts.pretrained or "fixture"),
                "channel_order": pre.channel_order,
                "labels": "imagenet-1k" if model.num_classes == 1000 else "class_<i>",
            }
        )
        if model.num_classes == 1000:
            ml.user_defined_metadata["com.apple.coreml.model.preview.type"] = "imageClassifier"
        ml.input_description["image"] = f"{size}x{size} {pre.channel_order} image" if opts.input_type == "image" else "preprocessed float tensor"
        desc = ml.get_spec().description
        # with labels, coremltools turns the logits into a {label: logit} dictionary output
        logits_name = desc.predictedProbabilitiesName if classifier else "logits"
        ml.output_description[logits_name] = f"{len(names)} class logits (not softmaxed)"
        ml.save(str(dest))
        output = {"labels": "embedded", "label_output": desc.predictedFeatureName} if classifier else {}
        return Converted(input_name="image", output_name=logits_name, input={"type": opts.input_type, "dtype": "uint8" if opts.input_type == "image" else "float32"}, output=output)

    def weight_bytes(self, path: Path) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(path.rglob("*.bin")))
