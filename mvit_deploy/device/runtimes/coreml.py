"""Core ML itself (macOS, through coremltools): runs .mlpackage artifacts on a Mac.

Off macOS there is no Core ML runtime: the host's target (``targets/coreml.py``) runs the same
artifact in its reference executor instead; a board without macOS cannot run it at all.
"""

from __future__ import annotations

import sys

import numpy as np

from ..errors import DependencyError, NotOnThisDevice
from . import Runner, register_runner
from .mlpackage import root_model

COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")


@register_runner("coreml")
class CoreMLRunner(Runner):
    """The native framework; ``compute_units``: one of :data:`COMPUTE_UNITS`."""

    runtime = "coreml"
    packages = ("coremltools",)
    options = ("compute_units",)
    backend = "native"

    def __init__(self, path, manifest, threads=None, compute_units: str = "all"):
        super().__init__(path, manifest, threads)
        if sys.platform != "darwin":
            raise NotOnThisDevice(
                "Core ML runs only on macOS",
                "run .mlpackage files on a Mac (the host's parity uses its reference executor)",
            )
        root_model(self.path)  # Manifest.json readable, its item paths inside the package, before Core ML opens them
        try:
            import coremltools as ct
        except ImportError:
            raise DependencyError("running .mlpackage needs coremltools", "pip install coremltools") from None
        units = {
            "all": ct.ComputeUnit.ALL,
            "cpu_only": ct.ComputeUnit.CPU_ONLY,
            "cpu_and_gpu": ct.ComputeUnit.CPU_AND_GPU,
            "cpu_and_ne": ct.ComputeUnit.CPU_AND_NE,
        }
        self.model = ct.models.MLModel(str(self.path), compute_units=units[compute_units])

    def _pixels(self, x):
        """What an app hands Core ML: 0..255 pixels [3, H, W] in the model's channel order (image inputs)."""
        return np.clip(np.rint(x[0] / self.manifest.input.scale), 0, 255)

    def _feed(self, x):
        inp = self.manifest.input
        if inp.type != "image":
            return x
        from PIL import Image

        pixels = self._pixels(x)
        rgb = pixels[::-1] if inp.channel_order == "BGR" else pixels  # apps pass RGB; Core ML reorders
        return Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)).astype(np.uint8))

    def _predict(self, x) -> dict:
        return self.model.predict({self.manifest.input.name: self._feed(x)})

    def _one(self, x):
        out = self._predict(x)[self.manifest.output.name]
        if isinstance(out, dict):  # classifier models return {label: logit}, labels in the manifest's order
            out = [out[n] for n in self.manifest.output.labels]
        return np.asarray(out, np.float32).reshape(1, -1)
