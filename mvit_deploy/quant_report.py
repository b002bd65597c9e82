"""Per-layer SQNR of an int8 artifact against its float twin: which block to keep in float.

For every activation both programs compute, SQNR = 10*log10(sum(ref^2) / sum((ref - q)^2)),
over the same held-out photos. "cumulative" compares the int8 program's tensor with the
float program's (all error up to that point); for ONNX, "local" also gives the error of that
tensor's own quantize/dequantize step (onnxruntime's qdq_loss_debug). Layers are named by
the PyTorch module they come from (torch.export's module stack; for .tflite, the module
path litert-torch writes into every tensor name). Core ML and LiteRT intermediates come
from our executor and from LiteRT's preserve-all-tensors mode, int8 tensors dequantized.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .artifact import read_manifest
from .targets.coreml import fx_name_of_mil_value
from .errors import UsageError


@dataclass
class LayerError:
    tensor: str
    module: str
    cumulative_sqnr_db: float
    local_sqnr_db: float | None = None


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    noise = np.sum((ref - np.asarray(got, np.float64)) ** 2)
    power = np.sum(ref**2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(max(power, 1e-30) / noise))


def module_of_fx_nodes(model, size: int) -> dict[str, str]:
    """fx node name -> dotted module path, from torch.export's nn_module_stack."""
    import torch

    program = torch.export.export(model, (torch.zeros(1, 3, size, size),)).run_decompositions({})
    out = {}
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack:
            path = list(stack.values())[-1][0]
            out[node.name] = re.sub(r"^L__self___|^L\['self'\]\.", "", str(path))
    return out


def _float_twin(manifest: dict, tmp: Path, weights=None):
    """Export the float counterpart of an int8 artifact (same model, weights, size, layout)."""
    from .export import export
    from .targets import ExportOptions

    ckpt = manifest["checkpoint"]
    precision = "fp16" if manifest["target"] == "coreml" else "fp32"
    opts = ExportOptions(
        model=manifest["model"],
        target=manifest["target"],
        out_dir=tmp,
        precision=precision,
        input_size=manifest["input"]["size"],
        layout=manifest["input"]["layout"],
        weights=weights or ckpt["path"],
        num_classes=manifest["output"]["classes"],
        input_type=manifest["input"].get("type", "tensor") if manifest["target"] == "coreml" else "image",
        min_target="iOS17" if manifest["precision"] == "w8a8" else "iOS16",
    )
    return export(opts, run_parity=False)


def _onnx_layers(float_path: Path, int8_path: Path, x: np.ndarray) -> list[tuple[str, float, float | None]]:
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter({"image": x[i : i + 1]} for i in range(len(x)))

        def get_next(self):
            return next(self._it, None)

    tmp = float_path.parent
    pre = tmp / "pre.onnx"
    quant_pre_process(str(float_path), str(pre))  # the same graph the int8 model was quantized from
    modify_model_output_intermediate_tensors(str(pre), str(tmp / "float_aug.onnx"))
    modify_model_output_intermediate_tensors(str(int8_path), str(tmp / "int8_aug.onnx"))
    matching = create_activation_matching(collect_activations(str(tmp / "int8_aug.onnx"), Reader()), collect_activations(str(tmp / "float_aug.onnx"), Reader()))
    errors = compute_activation_error(matching)
    return [(name, float(e["xmodel_err"]), float(e["qdq_err"]) if "qdq_err" in e else None) for name, e in errors.items()]


def _coreml_layers(float_path: Path, int8_path: Path, x: np.ndarray, scale: float, image_input: bool) -> list[tuple[str, float, None]]:
    from .coreml_exec import MILExecutor

    ref_ex, q_ex = MILExecutor(float_path), MILExecutor(int8_path)
    sums: dict[str, list[float]] = {}
    for i in range(len(x)):
        feed = x[i : i + 1] / scale if image_input else x[i : i + 1]
        _, ref = ref_ex.run({ref_ex.input_names[0]: feed}, capture="all")
        _, got = q_ex.run({q_ex.input_names[0]: feed}, capture="all")
        for name, r in ref.items():
            g = got.get(name)
            if isinstance(r, np.ndarray) and isinstance(g, np.ndarray) and r.shape == g.shape and r.dtype.kind == "f":
                acc = sums.setdefault(name, [0.0, 0.0])
                acc[0] += float(np.sum(r.astype(np.float64) ** 2))
                acc[1] += float(np.sum((r.astype(np.float64) - g) ** 2))
    return [(n, float("inf") if e == 0 else float(10 * np.log10(max(p, 1e-30) / e)), None) for n, (p, e) in sums.items()]


def _tflite_tensors(path: Path, x: np.ndarray, layout: str) -> dict[str, list[np.ndarray]]:
    """Every float or (dequantized) int8 tensor an op writes, by name, one array per input."""
    from .runtimes import _tflite_interpreter, tflite_dequantize, tflite_quantize

    it = _tflite_interpreter()(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=2)
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


def module_of_tflite_tensor(name: str) -> str:
    """'...MobileViT/torch...Sequential_stages/torch...Sequential_2/...MobileViTBlock_1/...;5' -> 'stages.2.1'."""
    parts = []
    for segment in name.split(";")[0].split("/")[1:]:
        cls_attr = segment.rsplit(".", 1)[-1]
        if "_" in cls_attr:
            parts.append(cls_attr.split("_", 1)[1])
    return ".".join(parts)


def _tflite_layers(float_path: Path, int8_path: Path, x: np.ndarray, layout: str) -> list[tuple[str, float, None]]:
    ref, got = _tflite_tensors(float_path, x, layout), _tflite_tensors(int8_path, x, layout)
    rows = []
    for name, r in ref.items():
        g = got.get(name)
        if g is not None and all(a.shape == b.shape for a, b in zip(r, g)):
            rows.append((name, sqnr_db(np.concatenate([a.ravel() for a in r]), np.concatenate([b.ravel() for b in g])), None))
    return rows


def quant_report(artifact: str | Path, n: int = 4, weights=None) -> list[LayerError]:
    """Layers sorted worst first (lowest cumulative SQNR)."""
    from .models import load_model
    from .parity import check_reference_weights, parity_inputs

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    if manifest["precision"] not in ("int8", "w8a8"):
        raise UsageError(f"{artifact.name} is {manifest['precision']}, not a quantized artifact", "run quant-report on an int8 export")
    check_reference_weights(manifest, weights)
    x = parity_inputs(manifest, None, n)
    ckpt = manifest["checkpoint"]
    model = load_model(manifest["model"], None if ckpt["layout"] == "fixture" else (weights or ckpt["path"]), num_classes=manifest["output"]["classes"])
    modules = module_of_fx_nodes(model, manifest["input"]["size"])
    with tempfile.TemporaryDirectory() as tmp:
        twin = _float_twin(manifest, Path(tmp), weights)
        if manifest["target"] == "onnx":
            rows = _onnx_layers(twin.artifact, artifact, x)
        elif manifest["target"] == "tflite":
            rows = _tflite_layers(twin.artifact, artifact, x, manifest["input"]["layout"])
        else:
            rows = _coreml_layers(twin.artifact, artifact, x, manifest["input"]["scale"], manifest["input"].get("type") == "image")
    out = []
    for name, cumulative, local in rows:
        base = fx_name_of_mil_value(name)
        module = module_of_tflite_tensor(name) if manifest["target"] == "tflite" else modules.get(base, "")
        out.append(LayerError(name, module, cumulative, local))
    return sorted(out, key=lambda r: r.cumulative_sqnr_db)


def blocks_summary(layers: list[LayerError], depth: int = 3) -> list[tuple[str, float]]:
    """Worst SQNR per module prefix (e.g. ``stages.2.1``), worst first.

    Uses the local (own quantize/dequantize) SQNR where the runtime gives it, since the
    cumulative one always looks worst at the end of the network; else the cumulative one.
    """
    worst: dict[str, float] = {}
    for layer in layers:
        if layer.module:
            key = ".".join(layer.module.split(".")[:depth])
            value = layer.local_sqnr_db if layer.local_sqnr_db is not None else layer.cumulative_sqnr_db
            worst[key] = min(worst.get(key, float("inf")), value)
    return sorted(worst.items(), key=lambda t: t[1])


def to_dict(layers: list[LayerError]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(layer).items()} for layer in layers]
