"""ORT format: the ONNX export, optimised offline into the flatbuffer ``.ort`` that ONNX Runtime Mobile loads.

ONNX Runtime's mobile packages (Android AAR, iOS pod, ``onnxruntime-mobile``) and minimal builds
read ``.ort`` files: the graph already optimised (constant folding, fusions such as
LayerNormalization, QuickGelu, FusedMatMul and, for int8, the QDQ -> QLinear kernels), so the
phone neither carries the ONNX parser nor spends start-up time optimising. This is what
``onnxruntime.tools.convert_onnx_models_to_ort`` writes, at its default ("all" optimisations,
fixed style), done in-process on the artifact our ``onnx`` target exports and checks.

``--ort-platform arm`` (default; phones, Raspberry Pi) leaves out ORT's x86 NCHWc layouts and
lets QDQ fold into signed int8 kernels, as the ARM builds run them; ``amd64`` bakes the NCHWc
layouts in for x86 servers (such a file is only faithful on x86-64). Parity runs the ``.ort``
file itself, here, on whatever CPU exports it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import register_target
from .base import ArtifactContents, Converted, ExportOptions, Option
from .onnx import OnnxTarget, graph_contents


def save_ort_format(onnx_path: Path, dest: Path, platform: str) -> dict:
    """Optimise ``onnx_path`` as ONNX Runtime does at load time and write the result, ORT format, to ``dest``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(dest)
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.add_session_config_entry("session.qdqisint8allowed", "1" if platform == "arm" else "0")
    disabled = ["NchwcTransformer"] if platform == "arm" else []  # x86-only blocked layouts
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    return {
        "platform": platform,
        "optimization": "all",
        "disabled_optimizers": disabled,
        "onnxruntime": ort.__version__,
    }


@register_target
class OrtTarget(OnnxTarget):
    name = "ort"
    suffix = ".ort"
    converter_packages = OnnxTarget.converter_packages
    layer_report = False  # an .ort graph is already fused: its tensors are not the float twin's
    aihub = None  # AI Hub takes .onnx, not ONNX Runtime's own format
    layer_report_hint = "run quant-report on the int8 .onnx of the same model (export --target onnx --precision int8)"
    export_options = (
        *OnnxTarget.export_options,
        Option(
            "--ort-platform",
            "ort_platform",
            ("arm", "amd64"),
            "arm",
            "ort: the CPU the offline optimisations are baked for (arm: phones and boards; amd64: x86-64 only, adds "
            "NCHWc layouts).",
        ),
    )

    def stem_tags(self, opts: ExportOptions) -> list[str]:
        platform = opts.target_options.ort_platform
        return [*super().stem_tags(opts), *[platform] * (platform != "arm")]

    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            converted = super().convert(model, example, opts, onnx_path, calibration)
            super().check(onnx_path)  # the ONNX it starts from is valid ONNX
            converted.extra["ort_format"] = save_ort_format(onnx_path, dest, opts.target_options.ort_platform)
        return converted

    def check(self, path: Path) -> None:
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def weight_bytes(self, path: Path) -> bytes:
        return path.read_bytes()  # flatbuffer: graph and initializers

    def artifact_contents(self, path: Path) -> ArtifactContents:
        """The ORT flatbuffer's graph, read as an ONNX one (``onnx.graph_contents``)."""
        from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

        data = path.read_bytes()
        if data[4:8] != b"ORTM":  # the file identifier of an ORT format model
            return ArtifactContents()
        graph = InferenceSession.GetRootAs(data, 0).Model().Graph()
        nodes = [graph.Nodes(i).OpType().decode() for i in range(graph.NodesLength())]
        tensors = [graph.Initializers(i) for i in range(graph.InitializersLength())]
        return graph_contents(nodes, [(t.DataType(), tuple(t.DimsAsNumpy().tolist())) for t in tensors])
