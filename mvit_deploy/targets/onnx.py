"""ONNX: torch.onnx dynamo export, opset 18, weights inside one file, run by onnxruntime."""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter
from pathlib import Path

from ..artifact import Manifest
from ..models.families import family_of
from . import register_target
from .base import AihubProfile, ArtifactContents, Converted, ExportOptions, Option, Target, contents_of, is_weight
from .quantize import FLOAT_MODULES, float_modules

OPSET = 18
PATCHES = "channels_last"  # the graph spelling asked of the model family (ModelFamily.spelled)


def calibration_reader(x, input_name: str = "image"):
    """onnxruntime's CalibrationDataReader over a [N, 3, H, W] batch, one image per call."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter({input_name: x[i : i + 1]} for i in range(len(x)))

        def get_next(self):
            return next(self._it, None)

    return Reader()


@register_target
class OnnxTarget(Target):
    name = "onnx"
    suffix = ".onnx"
    precisions = ("fp32", "int8")
    converter_packages = ("onnx", "onnxscript", "onnxruntime")
    device_packages = ("onnxruntime",)
    runtime_packages = ("onnxruntime",)
    noisy_loggers = ("onnxscript", "onnx_ir")
    layer_report = True
    aihub = AihubProfile(framework="onnx", runtime="onnxruntime-aihub")
    export_options = (
        Option(
            "--batch",
            "batch",
            ("1", "dynamic"),
            "1",
            "leave the batch dimension free (dynamic: any batch at run time, for hosts and evaluation; phones run 1).",
        ),
    )
    bench_options = (
        Option(
            "--denormals",
            "denormals",
            ("keep", "flush"),
            "keep",
            "onnxruntime: keep denormal floats (IEEE, the default) or flush them to zero, as phones' NPUs and GPUs do.",
        ),
    )

    def stem_tags(self, opts: ExportOptions) -> list[str]:
        return ["dynbatch"] * self.dynamic_batch(opts)

    def dynamic_batch(self, opts: ExportOptions) -> bool:
        return opts.target_options.batch == "dynamic"

    def twin_options(self, manifest: Manifest) -> dict:
        return {
            "batch": "dynamic" if manifest.input.batch == "dynamic" else "1"
        }  # quant-report's float twin: the same graph

    def layer_errors(self, float_path, int8_path, x, manifest):
        """ORT's qdq_loss_debug: cumulative error vs the float graph, and each tensor's own quantize/dequantize
        error."""
        from onnxruntime.quantization.qdq_loss_debug import (
            collect_activations,
            compute_activation_error,
            create_activation_matching,
            modify_model_output_intermediate_tensors,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        tmp = Path(float_path).parent
        pre = tmp / "pre.onnx"
        quant_pre_process(str(float_path), str(pre))  # the same graph the int8 model was quantized from
        modify_model_output_intermediate_tensors(str(pre), str(tmp / "float_aug.onnx"))
        modify_model_output_intermediate_tensors(str(int8_path), str(tmp / "int8_aug.onnx"))
        matching = create_activation_matching(
            collect_activations(str(tmp / "int8_aug.onnx"), calibration_reader(x)),
            collect_activations(str(tmp / "float_aug.onnx"), calibration_reader(x)),
        )
        errors = compute_activation_error(matching)
        return [
            (name, float(e["xmodel_err"]), float(e["qdq_err"]) if "qdq_err" in e else None)
            for name, e in errors.items()
        ]

    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        import torch

        # unfold/fold through channels-last rank-6 transposes: onnxruntime moves C-innermost data
        # with its fast transpose (a pixel_unshuffle permutation takes its element-wise path)
        dynamic = self.dynamic_batch(opts)
        if dynamic:  # torch.export fixes a dimension traced at size 1, so a free batch is traced at 2
            example = example.expand(2, *example.shape[1:]).contiguous()
        with (
            contextlib.redirect_stdout(io.StringIO()),
            family_of(opts.model).spelled(model, patches=PATCHES),
        ):  # the exporter narrates every step
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None,
                verbose=False,
            )
        program.save(str(dest), external_data=False)
        if opts.precision == "int8":
            quantize_static_int8(dest, calibration, float_modules(opts.model))
        return Converted(input_name="image", output_name="logits")

    def check(self, path: Path) -> None:
        import onnx

        onnx.checker.check_model(str(path), full_check=True)

    def weight_bytes(self, path: Path) -> bytes:
        import onnx

        m = onnx.load(str(path))
        return b"".join(t.name.encode() + t.raw_data for t in sorted(m.graph.initializer, key=lambda t: t.name))

    def artifact_contents(self, path: Path) -> ArtifactContents:
        """QuantizeLinear / QLinear* nodes or 8-bit initializers: int8; float16 initializers: fp16."""
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        return graph_contents(
            [n.op_type for n in graph.node], [(t.data_type, tuple(t.dims)) for t in graph.initializer]
        )


# The int8 recipe, chosen by measurement on MobileViT (benchmarks/quant.py): convolutions,
# SiLU, residual adds, concat and the linear layers run as ORT's fused QLinearConv / QGemm /
# QLinearSigmoid / QLinearMul / QLinearAdd, and the reshapes and transposes of unfold/fold
# move uint8 instead of float. LayerNorm, softmax and the attention matmuls stay float:
# quantizing them (onnxruntime's defaults) is both slower (QLinearSoftmax) and less faithful.
INT8_OPS = ("Conv", "Gemm", "Sigmoid", "Mul", "Add", "Concat", "Transpose", "Reshape", "Slice", "Split", "Unsqueeze")


def quantize_static_int8(path: Path, calibration, prefixes: tuple[str, ...] = FLOAT_MODULES) -> None:
    """Static QDQ int8, in place: per-channel int8 weights, uint8 activations (:data:`INT8_OPS`).

    The layers under ``prefixes`` (the model family's float modules) stay float. Activation
    ranges: the 99.999th percentile of all calibration values, computed by
    :class:`~mvit_deploy.targets.quantize.PercentileRanges` from one pass over the crops and
    handed to the quantizer as overrides (onnxruntime's own Percentile calibrator computes
    the same ranges from histograms, 3x slower).
    """
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_nodes = _nodes_in_float_modules(path, prefixes)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(path), str(pre))
        overrides = {
            name: [{"rmin": lo, "rmax": hi}]
            for name, (lo, hi) in _activation_ranges(pre, calibration, Path(tmp)).items()
        }
        quantize_static(
            str(pre),
            str(path),
            calibration_reader(
                calibration[:1]
            ),  # every range comes from the overrides; this pass only finds the tensors
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OPS),
            nodes_to_exclude=float_nodes,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"TensorQuantOverrides": overrides},
        )


def _nodes_in_float_modules(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    """Names of the nodes the exporter attributes (name_scopes metadata) to modules under ``prefixes``."""
    import ast

    import onnx

    from .quantize import in_float_modules

    names = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes" and any(
                in_float_modules(m, prefixes) for m in ast.literal_eval(prop.value)
            ):
                names.append(node.name)
    return names


def _activation_ranges(pre: Path, calibration, tmp: Path) -> dict:
    """{tensor: (lo, hi)} for the input and every float tensor a node writes."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from .quantize import PercentileRanges

    model = onnx.load(str(pre))
    typed = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            v = typed.get(name)
            if v is not None and v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and name not in outputs:
                model.graph.output.append(v)
                outputs.add(name)
    onnx.save(model, str(tmp / "ranges.onnx"))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    session = ort.InferenceSession(str(tmp / "ranges.onnx"), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    ranges = PercentileRanges(len(calibration))
    for i in range(len(calibration)):
        x = np.ascontiguousarray(calibration[i : i + 1])
        ranges.add("image", x)
        for name, value in zip(names, session.run(None, {"image": x}), strict=True):
            ranges.add(name, value)
    return {name: tuple(np.float32(v) for v in ranges.range(name)) for name in ranges.names()}


# Weight element types by ONNX TensorProto number (ORT's flatbuffer numbers them the same)
ELEMENT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 10: "float16", 16: "bfloat16"}
# Quantized ops: the QDQ pairs our int8 export writes, and the kernels ORT fuses them into (QLinear*, *Integer*)
QUANTIZE_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QGemm", "QAttention")


def graph_contents(op_types, initializers) -> ArtifactContents:
    """An ONNX (or ORT) graph's contents from its nodes' op types and its initializers ((element type, dims))."""
    ops = Counter(op for op in op_types if op in QUANTIZE_OPS or op.startswith("QLinear") or "Integer" in op)
    weights = Counter()
    for element, dims in initializers:
        if is_weight(dims):
            weights[ELEMENT_TYPES.get(element, str(element))] += math.prod(dims)
    return contents_of(weights, ops)
