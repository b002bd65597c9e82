"""LiteRT (ai-edge-litert, or tflite-runtime on old boards): runs .tflite artifacts."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import DependencyError, UsageError
from . import REEXPORT, Runner, artifact_head, native_stderr, register_runner

# What LiteRT's and TensorFlow's C++ sides print on every interpreter and converter they build: narration, not a
# problem, not ours to show between tables.
NARRATION = (
    r"^INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|^WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|^I0000 .* oneDNN custom operations are on"
)


def check_tflite(path: str | Path) -> None:
    """Refuse a file that is not a TFLite flatbuffer by its header: the file identifier "TFL3" at bytes 4..8 and
    the root table's offset (bytes 0..4) inside the file. The rest LiteRT's verifier checks (see interpreter_class)."""
    path = Path(path)
    head, size = artifact_head(path, "TFLite model", 8)
    if size < 8:
        raise UsageError(f"TFLite model {path} holds {size} bytes, too few for any model", REEXPORT)
    if head[4:8] != b"TFL3":
        raise UsageError(
            f"TFLite model {path} is not a TFLite flatbuffer (bytes 4..8 are {head[4:8]!r}, not b'TFL3')", REEXPORT
        )
    (root,) = struct.unpack("<I", head[:4])
    if not 8 <= root <= size - 4:
        raise UsageError(
            f"TFLite model {path} is damaged: its root table is at byte {root:,}, the file holds {size:,} bytes",
            REEXPORT,
        )


def interpreter_class():
    """ai-edge-litert (current), else tflite-runtime (old boards); its C++ narration held back (``NARRATION``)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise DependencyError(
                "running .tflite needs ai-edge-litert (or tflite-runtime)", "pip install 'mvit-deploy[device]'"
            ) from None

    class QuietInterpreter(Interpreter):
        def __init__(self, *args, **kwargs):
            path = kwargs.get("model_path")
            if path is not None:
                check_tflite(path)
            with native_stderr(drop=NARRATION):
                try:
                    super().__init__(*args, **kwargs)
                except ValueError as e:  # LiteRT's verdict on the file ("not a valid Flatbuffer buffer"), not ours
                    if path is None:
                        raise
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                    raise UsageError(f"LiteRT cannot load TFLite model {path} ({first})", REEXPORT) from None

        def allocate_tensors(self):
            with native_stderr(drop=NARRATION):
                return super().allocate_tensors()

    return QuietInterpreter


def tflite_quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float array -> the tensor's dtype, with its quantization params if it is an integer tensor."""
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
    return np.ascontiguousarray(x, dtype=detail["dtype"])


def tflite_dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if y.dtype in (np.int8, np.uint8) and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


@register_runner("tflite")
class LiteRTRunner(Runner):
    runtime = "litert"
    packages = ("ai-edge-litert", "tflite-runtime")

    def __init__(self, path, manifest, threads=None):
        super().__init__(path, manifest, threads)
        self.interpreter = interpreter_class()(model_path=str(self.path), num_threads=self.threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def _one(self, x):
        self.interpreter.set_tensor(self.input["index"], tflite_quantize(self._to_layout(x), self.input))
        self.interpreter.invoke()
        return tflite_dequantize(self.interpreter.get_tensor(self.output["index"]), self.output).reshape(1, -1)
