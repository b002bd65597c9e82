"""What a target is: everything that differs between ONNX, LiteRT, Core ML and ExecuTorch.

A target is one file in this folder. Its ``Target`` subclass declares the file suffix, the
precisions and their default, the flags it adds to ``export`` and ``bench``, the packages a
device needs, and implements conversion, running (``runner``: by default the device side's runner of the same name,
``mvit_deploy/device/runtimes/``),
per-layer tensors for ``quant-report`` and, where the runtime has one, the Android benchmark
binary. The CLI, parity, quant-report, bench and report ask the registry; no module outside
``targets/`` names a target.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..device.runtimes import Runner, load_runner
from ..errors import UsageError

# Precisions that need calibration images: int8 (weights + activations, or weight-only where a
# target says so) and w8a8 (weights + activations on a target that also has weight-only int8).
QUANTIZED = ("int8", "w8a8")


@dataclass(frozen=True)
class ExportOptions:
    """Everything an export needs, frozen: the CLI builds one, the library reads it.

    ``None`` means "the target's default" (``Target.resolve`` fills it in), so the library and
    the CLI share one set of defaults.
    """

    model: str
    target: str
    out_dir: Path
    precision: str | None = None  # None: the target's default_precision
    input_size: int | None = None  # None: the model's default
    weights: str | None = None
    pretrained: str | None = None
    num_classes: int | None = None  # None: the checkpoint's head (1000 for the fixture)
    threads: int = 2
    parity_images: str | None = None  # a directory; None: the shipped eval photos
    parity_n: int | None = None
    calib: str | None = None  # int8: a directory of the user's images; None: the shipped calib photos
    calib_samples: int = 64  # int8: calibration crops drawn (deterministically)
    keep_failed: bool = False  # keep an artifact whose parity failed (to inspect it); by default none is written
    # Options a target adds (its ``export_options`` name these fields); others ignore them.
    layout: str = "nchw"  # tflite: nchw | nhwc
    io: str = "float"  # tflite int8: float I/O | int8 I/O (camera pipelines feeding int8)
    min_target: str | None = None  # coreml: None = the lowest that has the precision's ops
    input_type: str = "image"  # coreml: image | tensor
    coreml_layout: str = "standard"  # coreml: standard | ane (the Neural Engine layout, mvit_deploy.models.mobilevit)
    more_sizes: tuple[int, ...] = ()  # further square input sizes one artifact accepts (targets with flexible_sizes)
    delegate: str = "xnnpack"  # executorch: xnnpack | coreml
    ort_platform: str = "arm"  # ort: arm | amd64 (the CPU the offline optimisations are baked for)
    batch: str = "1"  # onnx, ort: 1 | dynamic (the batch dimension left free: any batch at run time)


@dataclass(frozen=True)
class Option:
    """A flag a target adds to ``export`` (an ExportOptions field) or to ``bench`` (a runner keyword)."""

    flag: str
    field: str
    choices: tuple[str, ...]
    default: str
    help: str


@dataclass
class Converted:
    """What a target's ``convert`` reports for the manifest."""

    input_name: str = "image"
    output_name: str = "logits"
    input: dict = field(default_factory=dict)  # additions to the manifest's input record
    output: dict = field(default_factory=dict)  # additions to the manifest's output record
    extra: dict = field(default_factory=dict)  # additions to the manifest itself (e.g. delegation)


@dataclass(frozen=True)
class AdbBenchmark:
    """A runtime's own benchmark binary for Android, pushed and run over adb (user-supplied)."""

    binary: str  # the binary's usual file name, e.g. benchmark_model
    where: str  # where users get it (one line)
    runtime: str  # the runtime label in bench results
    command: Callable[
        [str, str, int, int, int], list[str]
    ]  # (remote model, remote binary, threads, warmup, iters) -> argv
    parse: Callable[
        [str], dict
    ]  # the binary's output -> {load_ms, latency_ms{min,p50,...,mean,std}, memory_overall_mb}


@dataclass(frozen=True)
class AihubProfile:
    """How Qualcomm AI Hub profiles this format on its hosted devices (``bench --device aihub:NAME``)."""

    framework: str  # a hosted device runs it when its attributes hold ``framework:<this>``
    runtime: str  # the runtime label in bench results


class Target(abc.ABC):
    """A deployment format. Subclasses set the class attributes and implement ``convert`` and ``runner``."""

    name: str = ""
    suffix: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    default_precision: str = "fp32"  # also the float twin quant-report compares an int8 artifact with
    precision_notes: dict[str, str] = {}  # what a precision means here, where the name alone does not say
    int8_io: bool = False  # can take and return int8 tensors (--io int8)
    converter_packages: tuple[str, ...] = ()  # pip names, for the manifest's versions and the [export] extra
    device_packages: tuple[str, ...] = ()  # pip names a board needs to run the artifact (the [device] extra)
    runtime_packages: tuple[str, ...] = ()  # pip names whose versions a bench result records (runtimes and fallbacks)
    noisy_loggers: tuple[str, ...] = ()  # loggers / warning modules the CLI quiets while converting
    flexible_sizes: bool = False  # one artifact can take several input sizes (--input-size 256,320)
    export_options: tuple[Option, ...] = ()
    bench_options: tuple[Option, ...] = ()
    adb: AdbBenchmark | None = None
    aihub: AihubProfile | None = None  # None: AI Hub does not take this format
    layer_report: bool = False  # quant-report reads this format's intermediate tensors (``layer_errors``)
    layer_report_hint: str = "use an int8 artifact of another target"  # what to do instead, when it cannot

    def resolve(self, opts: ExportOptions) -> ExportOptions:
        """Fill in this target's defaults (``None`` fields) and refuse what it cannot export."""
        opts = replace(
            opts, precision=opts.precision or self.default_precision, batch=str(opts.batch)
        )  # batch=1 from Python is "1"
        if opts.precision not in self.precisions:
            raise UsageError(
                f"{self.name} does not export precision {opts.precision}", f"use one of {', '.join(self.precisions)}"
            )
        if opts.batch != "1" and not any(o.field == "batch" for o in self.export_options):
            from . import TARGETS

            takers = [t.name for t in TARGETS.values() if any(o.field == "batch" for o in t.export_options)]
            raise UsageError(
                f"a {self.name} artifact has a batch of 1",
                f"export --target {' / '.join(takers)} for --batch {opts.batch}",
            )
        for opt in self.export_options:
            if getattr(opts, opt.field) not in opt.choices:
                raise UsageError(
                    f"{self.name} does not take {opt.flag} {getattr(opts, opt.field)}",
                    f"use one of {', '.join(opt.choices)}",
                )
        return opts

    def stem_tags(self, opts: ExportOptions) -> list[str]:
        """Words the file name carries for non-default options (``<model>-<target>-<precision>-<tags>``)."""
        return []

    @abc.abstractmethod
    def convert(self, model, example, opts: ExportOptions, dest: Path, calibration=None) -> Converted:
        """Write the artifact to ``dest``; ``calibration`` ([N, 3, H, W] float32) is given for int8."""

    def check(self, path: Path) -> None:  # noqa: B027 (an optional hook: a no-op unless a target overrides it)
        """Format-level validation after writing (e.g. onnx.checker)."""

    def weight_bytes(self, path: Path) -> bytes:
        """The artifact's weights, for determinism checks."""
        return path.read_bytes()

    def runner(self, path: Path, manifest: dict, threads: int | None = None) -> Runner:
        """Load the artifact in its runtime (torch-free); a missing runtime is a DependencyError.

        The device side's runner (``mvit_deploy/device/runtimes/``), the code a board runs too.
        """
        return load_runner(path, manifest, threads, target=self.name)

    def bench_runner(self, path: Path, manifest: dict, threads: int, **options) -> Runner:
        """The runner ``bench`` times (``options``: this target's ``bench_options``).

        Raise :class:`~mvit_deploy.errors.NotOnThisDevice` when this machine cannot time it.
        """
        return load_runner(path, manifest, threads, target=self.name, **options)

    def twin_options(self, manifest: dict) -> dict:
        """ExportOptions fields that make the float twin of a quantized artifact (quant-report)."""
        return {}

    def layer_errors(
        self, float_path: Path, int8_path: Path, x: np.ndarray, manifest: dict
    ) -> list[tuple[str, float, float | None]]:
        """(tensor, cumulative SQNR dB, local SQNR dB or None) for every tensor both artifacts compute."""
        raise UsageError(f"quant-report does not read {self.name} artifacts yet", self.layer_report_hint)

    def layer_module(self, tensor: str, fx_modules: dict[str, str]) -> str:
        """The PyTorch module a tensor comes from (``fx_modules``: torch.export node -> module path)."""
        return fx_modules.get(tensor, "")
