"""onnxruntime: runs .onnx and .ort artifacts (CPU execution provider)."""

from __future__ import annotations

from ..errors import DependencyError, UsageError
from . import Runner, artifact_head, register_runner


@register_runner("onnx", "ort")
class OnnxRunner(Runner):
    runtime = "onnxruntime"
    packages = ("onnxruntime",)
    options = ("denormals",)

    def __init__(self, path, manifest, threads=None, denormals="keep"):
        super().__init__(path, manifest, threads)
        artifact_head(self.path, "ONNX model", 0)  # a regular file (onnxruntime would wait on a FIFO)
        try:
            import onnxruntime as ort
        except ImportError:
            raise DependencyError("running .onnx needs onnxruntime", "pip install 'mvit-deploy[device]'") from None

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        if denormals == "flush":  # onnxruntime sets flush-to-zero / denormals-are-zero on its threads
            opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own Fail / InvalidProtobuf / InvalidGraph: the file, not our code
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UsageError(
                f"onnxruntime cannot load {self.path.name} ({first})", "re-export it; a copy may be truncated"
            ) from None
        self.input_name = self.session.get_inputs()[0].name

    def _one(self, x):
        return self.session.run(None, {self.input_name: self._to_layout(x)})[0]
