"""Core ML: coremltools 9 mlprogram from torch.export (the TorchScript path breaks on shape casts)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from .. import __version__
from .._deps import IS_MACOS, has
from ..device.runtimes import Runner
from ..device.runtimes.coreml import CoreMLRunner as NativeCoreMLRunner
from ..errors import NotOnThisDevice, UsageError
from ..models.families import family_of
from . import register_target
from .base import (
    QUANTIZED,
    AihubProfile,
    ArtifactContents,
    Converted,
    ExportOptions,
    Option,
    Target,
    contents_of,
    is_weight,
)
from .quantize import float_modules

MIN_TARGETS = ("iOS16", "iOS17", "iOS18")
COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")
LAYOUTS = ("standard", "ane")  # --coreml-layout; "ane" = the family's spelled(patches="ane")


class CoreMLRunner(NativeCoreMLRunner):
    """Core ML: the native framework on macOS (the device side's runner), the numpy reference executor elsewhere.

    ``backend``: "native" | "executor" | None (native on macOS, executor elsewhere).
    """

    def __init__(self, path, manifest, threads=None, compute_units: str = "all", backend: str | None = None):
        self.backend = backend or ("native" if IS_MACOS else "executor")
        if self.backend == "native":
            if not IS_MACOS:
                raise UsageError(
                    "the native Core ML runtime exists only on macOS", "use the reference executor (backend='executor')"
                )
            super().__init__(path, manifest, threads, compute_units=compute_units)
            return
        Runner.__init__(self, path, manifest, threads)
        from .coreml_exec import MILExecutor

        self.model = MILExecutor(self.path)
        self.runtime = "coreml-reference-executor"

    def __call__(self, batch):
        if self.backend != "executor" or not has("threadpoolctl"):
            return super().__call__(batch)
        from threadpoolctl import threadpool_limits

        # The executor's matmuls are small (64-256 px, batch 1): one BLAS thread measured
        # 55 ms/image for XXS fp16 at 64 px vs 313 ms with two threads beside a busy core.
        with threadpool_limits(limits=1, user_api="blas"):
            return super().__call__(batch)

    def _feed(self, x):
        if self.backend == "executor" and self.manifest.input.type == "image":
            return self._pixels(x)[None].astype(
                np.float32
            )  # the program's input tensor, channels already in model order
        return super()._feed(x)

    def _predict(self, x) -> dict:
        if self.backend == "executor":
            return self.model.run({self.manifest.input.name: self._feed(x)})[0]
        return super()._predict(x)


def _weight_config():
    import coremltools.optimize.coreml as cto

    op = cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=512
    )
    return cto.OptimizationConfig(global_config=op)


def _weight_quantize(ml):
    import coremltools.optimize.coreml as cto

    return cto.linear_quantize_weights(ml, _weight_config())


def executor_activation_stats(ml, calibration_pixels) -> dict:
    """Activation ranges of every non-const value, collected by the reference executor (no Mac needed).

    Ranges are the 99.999th percentile over all calibration values (:mod:`mvit_deploy.targets.quantize`).
    """
    import tempfile

    from .coreml_exec import MILExecutor
    from .quantize import PercentileRanges

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
    return {name: dict(zip(("rmin", "rmax"), ranges.range(name), strict=True)) for name in ranges.names()}


def fx_name_of_mil_value(name: str) -> str:
    """Core ML values are named after the torch.export node, plus cast suffixes coremltools adds."""
    import re

    return re.sub(r"(_cast_fp16|_cast_fp32|_to_fp16|_to_fp32)+$", "", name)


def float_module_nodes(program, prefixes: tuple[str, ...]) -> set[str]:
    """torch.export node names inside the modules under ``prefixes`` (Core ML names ops after them)."""
    from .quantize import fx_module_paths, in_float_modules

    return {node for node, module in fx_module_paths(program).items() if in_float_modules(module, prefixes)}


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
        global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=0),
        op_name_configs=skip,
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
    # int8: weight-only per-channel int8 (fp16 activations; the size win on every iPhone).
    # w8a8: int8 weights and activations (int8 compute on A17 Pro / M4 Neural Engines; needs iOS17 ops).
    precisions = ("fp16", "fp32", *QUANTIZED)
    default_precision = "fp16"  # what the Neural Engine runs
    precision_notes = {"int8": "weight-only", "w8a8": "int8 weights and activations"}
    flexible_sizes = True  # EnumeratedShapes: each declared size can stay on the Neural Engine (RangeDim cannot)
    converter_packages = ("coremltools",)
    device_packages = ()  # Core ML is part of macOS / iOS; off macOS the reference executor (numpy) runs it
    runtime_packages = ("coremltools",)
    noisy_loggers = ("coremltools",)
    layer_report = True
    aihub = AihubProfile(framework="coreml", runtime="coreml-aihub")  # on AI Hub's iOS devices
    export_options = (
        Option(
            "--min-target",
            "min_target",
            MIN_TARGETS,
            None,
            "deployment target; iOS16, or iOS17 for w8a8 (its ops need it).",
        ),
        Option(
            "--coreml-input",
            "input_type",
            ("image", "tensor"),
            "image",
            "input type: an image (0-255 pixels, as Vision passes it) or a float tensor.",
        ),
        Option(
            "--coreml-layout",
            "coreml_layout",
            LAYOUTS,
            "standard",
            "ane: the transformer in Apple's Neural Engine layout ([B, C, P, N], 1x1 convs, per-head einsum); same "
            "model, same parity.",
        ),
    )
    bench_options = (Option("--compute-units", "compute_units", COMPUTE_UNITS, "all", "compute units (macOS)."),)

    def resolve(self, opts: ExportOptions) -> ExportOptions:
        from dataclasses import replace

        opts = super().resolve(opts)
        o = opts.target_options
        if o.min_target is None:
            o = replace(o, min_target="iOS17" if opts.precision == "w8a8" else "iOS16")
            opts = replace(opts, target_options=o)
        if opts.precision == "w8a8" and o.min_target == "iOS16":
            raise UsageError("w8a8 needs the quantize/dequantize ops of iOS17", "pass --min-target iOS17 (or iOS18)")
        if o.coreml_layout != "standard" and o.coreml_layout not in family_of(opts.model).variants:
            raise UsageError(
                f"{opts.model} has no {o.coreml_layout} layout (its standard graph is what that layout gives v1)",
                "drop --coreml-layout",
            )
        return opts

    def stem_tags(self, opts):
        tags = ["ane"] if opts.target_options.coreml_layout == "ane" else []
        if opts.more_sizes:  # e.g. mobilevit_xxs-coreml-fp16-also320-384.mlpackage
            tags.append("also" + "-".join(str(s) for s in opts.more_sizes))
        return tags

    def runner(self, path, manifest, threads=None):
        return CoreMLRunner(path, manifest, threads)

    def bench_runner(self, path, manifest, threads, compute_units="all", **_):
        if not IS_MACOS:  # the executor is a reference, not a latency anyone ships
            raise NotOnThisDevice(
                "Core ML latency needs a Mac", "run `mvit-deploy bench` on macOS for .mlpackage files"
            )
        return CoreMLRunner(path, manifest, threads, compute_units=compute_units, backend="native")

    def twin_options(self, manifest):
        return {
            "input_type": manifest.input.type or "tensor",
            "min_target": "iOS17" if manifest.precision == "w8a8" else "iOS16",
            "coreml_layout": manifest.extra.get("coreml_layout", "standard"),
        }

    def layer_errors(self, float_path, int8_path, x, manifest):
        """Every float tensor of both programs, from the reference executor."""
        from .coreml_exec import MILExecutor

        scale, image_input = manifest.input.scale, manifest.input.type == "image"
        ref_ex, q_ex = MILExecutor(float_path), MILExecutor(int8_path)
        sums: dict[str, list[float]] = {}
        for i in range(len(x)):
            feed = x[i : i + 1] / scale if image_input else x[i : i + 1]
            _, ref = ref_ex.run({ref_ex.input_names[0]: feed}, capture="all")
            _, got = q_ex.run({q_ex.input_names[0]: feed}, capture="all")
            for name, r in ref.items():
                g = got.get(name)
                if (
                    isinstance(r, np.ndarray)
                    and isinstance(g, np.ndarray)
                    and r.shape == g.shape
                    and r.dtype.kind == "f"
                ):
                    acc = sums.setdefault(name, [0.0, 0.0])
                    acc[0] += float(np.sum(r.astype(np.float64) ** 2))
                    acc[1] += float(np.sum((r.astype(np.float64) - g) ** 2))
        return [
            (n, float("inf") if e == 0 else float(10 * np.log10(max(p, 1e-30) / e)), None) for n, (p, e) in sums.items()
        ]

    def layer_module(self, tensor, fx_modules):
        return fx_modules.get(fx_name_of_mil_value(tensor), "")

    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        import coremltools as ct
        import torch

        from ..inputs.datasets import get_domain

        pre = model.preprocessing
        size = example.shape[-1]
        shape, dynamic = (1, 3, size, size), None
        if opts.more_sizes:  # EnumeratedShapes over a graph exported with symbolic H, W (multiples of 64)
            from ..models.config import MAX_INPUT_SIZE

            shape = ct.EnumeratedShapes(
                shapes=[(1, 3, s, s) for s in (size, *opts.more_sizes)], default=(1, 3, size, size)
            )
            h, w = (
                torch.export.Dim("h64", min=1, max=MAX_INPUT_SIZE // 64),
                torch.export.Dim("w64", min=1, max=MAX_INPUT_SIZE // 64),
            )
            dynamic = ({2: 64 * h, 3: 64 * w},)
        if opts.target_options.input_type == "image":
            if any(pre.mean) or any(s != 1 for s in pre.std):
                raise UsageError("this checkpoint's preprocessing has mean/std", "use --coreml-input tensor")
            order = ct.colorlayout.BGR if pre.channel_order == "BGR" else ct.colorlayout.RGB
            inputs = [ct.ImageType(name="image", shape=shape, scale=pre.scale, color_layout=order)]
        else:
            inputs = [ct.TensorType(name="image", shape=shape)]
        patches = "ane" if opts.target_options.coreml_layout == "ane" else None
        with family_of(opts.model).spelled(model, patches=patches):
            program = torch.export.export(model, (example,), dynamic_shapes=dynamic).run_decompositions({})
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
                minimum_deployment_target=getattr(ct.target, opts.target_options.min_target),
                classifier_config=classifier,
            )
            if opts.precision in QUANTIZED:
                if opts.precision == "w8a8":
                    pixels = calibration / pre.scale if opts.target_options.input_type == "image" else calibration
                    ml = quantize_activations(
                        ml, pixels.astype(np.float32), float_module_nodes(program, float_modules(opts.model))
                    )
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
        ml.input_description["image"] = (
            f"{size}x{size} {pre.channel_order} image"
            if opts.target_options.input_type == "image"
            else "preprocessed float tensor"
        )
        desc = ml.get_spec().description
        # with labels, coremltools turns the logits into a {label: logit} dictionary output
        logits_name = desc.predictedProbabilitiesName if classifier else "logits"
        ml.output_description[logits_name] = f"{model.num_classes} class logits (not softmaxed)"
        ml.save(str(dest))
        output = {"labels_embedded": True, "label_output": desc.predictedFeatureName} if classifier else {}
        from .coreml_exec.ane import check_program
        from .coreml_exec.program import load_program

        ane = check_program(load_program(dest)).summary()  # the static Neural Engine check, kept in the manifest
        return Converted(
            input_name="image",
            output_name=logits_name,
            input={
                "type": opts.target_options.input_type,
                "dtype": "uint8" if opts.target_options.input_type == "image" else "float32",
            },
            output=output,
            extra={"ane": ane, "coreml_layout": opts.target_options.coreml_layout},
        )

    def weight_bytes(self, path: Path) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(path.rglob("*.bin")))

    def artifact_contents(self, path: Path) -> ArtifactContents:
        """The ML program's constants: constexpr dequantize ops (8-bit weights) make int8, and with quantize ops on
        activations w8a8; float16 constants fp16. Read by the reference executor's loader (the weights included)."""
        from collections import Counter

        from .coreml_exec.program import load_program

        weights, ops = Counter(), Counter()
        for op in load_program(path).operations:
            if op.type == "quantize" or op.type.startswith("constexpr_"):
                ops[op.type] += 1
            inline = [v for args in op.inputs.values() for kind, v in args if kind == "value"]
            arrays = [a for a in (*op.attributes.values(), *inline) if isinstance(a, np.ndarray) and is_weight(a.shape)]
            if op.type.startswith("constexpr_"):  # the stored data, not its (per-channel) scales
                arrays = sorted(arrays, key=lambda a: a.size)[-1:]
            for a in arrays:
                weights[str(a.dtype)] += a.size
        return contents_of(weights, ops, int8="w8a8" if ops["quantize"] else "int8")
