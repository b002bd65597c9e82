"""What a target is: the few things that differ between ONNX, TFLite and Core ML."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import UsageError

# Precisions that need calibration images: int8 (onnx/tflite: weights + activations; coreml:
# weights only) and w8a8 (coreml: weights + activations).
QUANTIZED = ("int8", "w8a8")


@dataclass(frozen=True)
class ExportOptions:
    """Everything an export needs, frozen: the CLI builds one, the library reads it."""

    model: str
    target: str
    out_dir: Path
    precision: str = "fp32"
    input_size: int | None = None  # None: the model's default
    layout: str = "nchw"  # tflite: nchw | nhwc
    weights: str | None = None
    pretrained: str | None = None
    num_classes: int | None = None  # None: the checkpoint's head (1000 for the fixture)
    min_target: str = "iOS16"  # coreml
    input_type: str = "image"  # coreml: image | tensor
    threads: int = 2
    parity_images: str | None = None  # a directory; None: the shipped eval photos
    parity_n: int | None = None
    calib: str | None = None  # int8: a directory of the user's images; None: the shipped calib photos
    calib_samples: int = 64  # int8: calibration crops drawn (deterministically)
    io: str = "float"  # tflite int8: float I/O (quantize inside) | int8 I/O (camera pipelines feeding int8)
    keep_failed: bool = False  # keep an artifact whose parity failed (to inspect it); by default none is written
    keep_failed: bool = False  # keep an artifact whose parity failed (to inspect it); by default it is removed

    def with_(self, **kw) -> "ExportOptions":
        return replace(self, **kw)


@dataclass
class Converted:
    """What a target's ``convert`` reports for the manifest."""

    input_name: str = "image"
    output_name: str = "logits"
    input: dict = field(default_factory=dict)  # additions to the manifest's input record
    output: dict = field(default_factory=dict)  # additions to the manifest's output record
    versions: dict[str, str] = field(default_factory=dict)


class Target(abc.ABC):
    """A deployment format. Subclasses set the class attributes and implement ``convert``."""

    name: str = ""
    suffix: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    layouts: tuple[str, ...] = ("nchw",)
    int8_io: bool = False  # can take and return int8 tensors (--io int8)
    is_directory: bool = False  # .mlpackage is a directory
    converter_packages: tuple[str, ...] = ()

    def validate(self, opts: ExportOptions) -> None:
        if opts.precision not in self.precisions:
            raise UsageError(f"{self.name} does not export precision {opts.precision}", f"use one of {', '.join(self.precisions)}")
        if opts.layout not in self.layouts:
            raise UsageError(f"{self.name} does not take input layout {opts.layout}", f"use one of {', '.join(self.layouts)}")
        if opts.io != "float" and not (self.int8_io and opts.precision == "int8"):
            raise UsageError(f"--io {opts.io} needs an int8 artifact of a target with integer I/O", "use --target tflite --precision int8, or drop --io")

    @abc.abstractmethod
    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        """Write the artifact to ``dest``; ``calibration`` ([N, 3, H, W] float32) is given for int8."""

    def check(self, path: Path) -> None:
        """Format-level validation after writing (e.g. onnx.checker)."""

    def weight_bytes(self, path: Path) -> bytes:
        """The artifact's weights, for determinism checks."""
        return path.read_bytes()
