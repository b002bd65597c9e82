"""Run an exported artifact in its own runtime. Torch-free: this is the device side.

Every runner takes a float32 NCHW batch [N, 3, H, W] in the model's preprocessing
convention and returns float32 logits [N, classes]; layout and dtype conversions to
what the artifact expects happen here, as an app would do them.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path

import numpy as np

from ._deps import IS_MACOS, has
from .errors import DependencyError, UsageError


class Runner(abc.ABC):
    """Base: runs one image at a time (artifacts have a static batch of 1)."""

    runtime = "?"

    def __init__(self, path: Path, manifest: dict, threads: int | None = None):
        self.path = Path(path)
        self.manifest = manifest
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.layout = manifest["input"]["layout"]

    @abc.abstractmethod
    def _one(self, x: np.ndarray) -> np.ndarray:
        """x: [1, 3, H, W] float32 -> logits [1, classes]."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        return np.concatenate([self._one(batch[i : i + 1]) for i in range(len(batch))])

    def _to_layout(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if self.layout == "nhwc" else x


class OnnxRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path, manifest, threads=None):
        super().__init__(path, manifest, threads)
        if not has("onnxruntime"):
            raise DependencyError("running .onnx needs onnxruntime", "pip install 'mvit-deploy[device]'")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def _one(self, x):
        return self.session.run(None, {self.input_name: self._to_layout(x)})[0]


def _tflite_interpreter():
    """ai-edge-litert (current), else tflite-runtime (old boards)."""
    if has("ai_edge_litert"):
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    if has("tflite_runtime"):
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    raise DependencyError("running .tflite needs ai-edge-litert (or tflite-runtime)", "pip install 'mvit-deploy[device]'")


class LiteRTRunner(Runner):
    runtime = "litert"

    def __init__(self, path, manifest, threads=None):
        super().__init__(path, manifest, threads)
        self.interpreter = _tflite_interpreter()(model_path=str(self.path), num_threads=self.threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def _one(self, x):
        self.interpreter.set_tensor(self.input["index"], tflite_quantize(self._to_layout(x), self.input))
        self.interpreter.invoke()
        return tflite_dequantize(self.interpreter.get_tensor(self.output["index"]), self.output).reshape(1, -1)


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


class CoreMLRunner(Runner):
    """Core ML: the native framework on macOS, the numpy reference executor elsewhere.

    ``backend``: "native" | "executor" | None (native on macOS, executor elsewhere).
    """

    runtime = "coreml"

    def __init__(self, path, manifest, threads=None, compute_units: str = "all", backend: str | None = None):
        super().__init__(path, manifest, threads)
        self.backend = backend or ("native" if IS_MACOS else "executor")
        if self.backend == "native":
            if not IS_MACOS:
                raise UsageError("the native Core ML runtime exists only on macOS", "use the reference executor (backend='executor')")
            import coremltools as ct

            units = {"all": ct.ComputeUnit.ALL, "cpu_only": ct.ComputeUnit.CPU_ONLY, "cpu_and_gpu": ct.ComputeUnit.CPU_AND_GPU, "cpu_and_ne": ct.ComputeUnit.CPU_AND_NE}
            self.model = ct.models.MLModel(str(self.path), compute_units=units[compute_units])
            self.runtime = "coreml"
        else:
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
        """What an app hands Core ML: an image of 0..255 pixels, or the float tensor."""
        inp = self.manifest["input"]
        if inp["type"] != "image":
            return x
        pixels = np.clip(np.rint(x[0] / inp["scale"]), 0, 255)  # [3, H, W] in the model's channel order
        if self.backend == "executor":
            return pixels[None].astype(np.float32)  # the program's input tensor, channels already in model order
        from PIL import Image

        rgb = pixels[::-1] if inp["channel_order"] == "BGR" else pixels  # apps pass RGB; Core ML reorders
        return Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)).astype(np.uint8))

    def _one(self, x):
        name = self.manifest["input"]["name"]
        if self.backend == "executor":
            out = self.model.run({name: self._feed(x)})[0][self.manifest["output"]["name"]]
        else:
            out = self.model.predict({name: self._feed(x)})[self.manifest["output"]["name"]]
        if isinstance(out, dict):  # classifier models return {label: logit}, labels in the manifest's order
            out = [out[n] for n in self.manifest["output"]["labels"]]
        return np.asarray(out, np.float32).reshape(1, -1)


RUNNERS = {"onnx": OnnxRunner, "tflite": LiteRTRunner, "coreml": CoreMLRunner}


def load_runner(path: str | Path, manifest: dict, threads: int | None = None) -> Runner:
    return RUNNERS[manifest["target"]](Path(path), manifest, threads)
