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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..artifact import Manifest
from ..device.manifest import MAX_CLASSES, MIN_CLASSES
from ..device.runtimes import Runner, load_runner
from ..errors import UsageError, at_least
from ..models.config import check_input_size

# Precisions that need calibration images: int8 (weights + activations, or weight-only where a
# target says so) and w8a8 (weights + activations on a target that also has weight-only int8).
QUANTIZED = ("int8", "w8a8")
# Element types a weight is stored in: float, or 8 bits for a quantized one (int32 tensors are biases or shapes).
WEIGHT_TYPES = ("float32", "float16", "bfloat16", "int8", "uint8")


def is_weight(shape) -> bool:
    """A convolution or linear weight: two or more dimensions above 1. Biases, norms and per-channel quantization
    scales have one, so the count of weight elements is the same whether batch norms are folded or weights are
    quantized: on every target, fp32 to w8a8, it equals the PyTorch model's (parity.check_artifact_contents)."""
    return sum(1 for d in shape if d > 1) >= 2


@dataclass(frozen=True)
class ArtifactContents:
    """What an artifact's own file says it is, read without running it (``Target.artifact_contents``)."""

    precision: str | None = None  # the precision its weights and ops show; None: this target cannot tell
    evidence: str = ""  # what shows it, to complete "x.onnx holds ..."
    weights: int | None = None  # elements of its weight tensors (is_weight); None: unknown


def contents_of(weights: Mapping[str, int], quantize_ops: Mapping[str, int], int8: str = "int8") -> ArtifactContents:
    """The contents shown by ``weights`` (weight elements by element type, is_weight tensors only) and
    ``quantize_ops`` (how many of each quantization op the graph holds); ``int8``: the precision they make."""
    eight = sum(n for t, n in weights.items() if t in ("int8", "uint8"))
    total = sum(n for t, n in weights.items() if t in WEIGHT_TYPES)
    if eight or quantize_ops:
        shown = [f"{eight:,} 8-bit weights"] if eight else []
        if quantize_ops:  # the three most frequent
            ops = sorted(quantize_ops.items(), key=lambda t: -t[1])[:3]
            shown.append("quantization ops (" + ", ".join(f"{n} {op}" for op, n in ops) + ")")
        return ArtifactContents(int8, " and ".join(shown), total)
    if weights.get("float16"):
        return ArtifactContents("fp16", f"{weights['float16']:,} float16 weights and no quantization op", total)
    return ArtifactContents("fp32", "no quantization op and only float32 weights", total)


@dataclass(frozen=True)
class ExportOptions:
    """Everything an export needs, frozen: the CLI builds one, the library reads it.

    ``None`` means "the target's default" (``Target.resolve`` fills it in), so the library and
    the CLI share one set of defaults. ``target_options`` holds the flags a target adds (its
    ``export_options``), by field name: a mapping from the caller, the target's own ``Options``
    record once resolved. Shared code passes it along and never reads it.
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
    more_sizes: tuple[int, ...] = ()  # further square input sizes one artifact accepts (targets with flexible_sizes)
    target_options: Any = field(default_factory=dict)  # {field: value} in, the target's ``Options`` once resolved


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

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The record of this target's export flags, one field per Option (its default the Option's).
        cls.Options = make_dataclass(
            f"{cls.__name__}Options",
            [(o.field, Any, field(default=o.default)) for o in cls.export_options],
            frozen=True,
        )

    Options: ClassVar[type]

    def resolve(self, opts: ExportOptions) -> ExportOptions:
        """Fill in this target's defaults (``None`` fields) and refuse what it cannot export.

        ``opts.target_options`` becomes this target's ``Options``; a field it does not have is refused
        by its flag, naming the targets that take it.
        """
        opts = replace(
            opts, precision=opts.precision or self.default_precision, target_options=self.options(opts.target_options)
        )
        if opts.precision not in self.precisions:
            raise UsageError(
                f"{self.name} does not export precision {opts.precision}", f"use one of {', '.join(self.precisions)}"
            )
        at_least("--threads", opts.threads, 1, 2)
        at_least("--calib-samples", opts.calib_samples, 1, 64)
        at_least("--num-classes", opts.num_classes, MIN_CLASSES, 10)
        if opts.num_classes is not None and opts.num_classes > MAX_CLASSES:
            raise UsageError(f"--num-classes {opts.num_classes} is above {MAX_CLASSES:,}", "use a smaller head")
        at_least("--n", opts.parity_n, 1, 8)
        sizes = [s for s in (opts.input_size, *opts.more_sizes) if s is not None]
        if opts.more_sizes and not self.flexible_sizes:
            from . import TARGETS

            flexible = [t.name for t in TARGETS.values() if t.flexible_sizes]
            raise UsageError(
                f"--input-size {','.join(map(str, sizes))}: a {self.name} artifact takes one input size",
                f"pass one size, or --target {' / '.join(flexible)} for several (EnumeratedShapes)",
            )
        if len(set(sizes)) != len(sizes):
            raise UsageError(f"--input-size {','.join(map(str, sizes))} lists a size twice", "list each size once")
        for size in sizes:
            check_input_size(size, opts.model)
        return opts

    def options(self, given) -> Any:
        """``given`` ({field: value}, or this target's ``Options``) as this target's ``Options``, checked."""
        if isinstance(given, self.Options):
            given = {f.name: getattr(given, f.name) for f in fields(given)}
        if not isinstance(given, Mapping):
            raise UsageError(
                f"target_options for {self.name} is a {type(given).__name__}", "pass a mapping {field: value}"
            )
        mine = {o.field: o for o in self.export_options}
        for key in given:
            if key not in mine:
                from . import TARGETS

                takers = [t for t in TARGETS.values() if any(o.field == key for o in t.export_options)]
                if not takers:
                    raise UsageError(
                        f"no target has an export option {key!r}", f"{self.name}'s: {', '.join(mine) or 'none'}"
                    )
                flag = next(o.flag for o in takers[0].export_options if o.field == key)
                raise UsageError(
                    f"{flag} applies to {', '.join(t.name for t in takers)}, not {self.name}",
                    f"drop {flag}, or use --target {takers[0].name}",
                )
        values = {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in given.items()}
        for key, value in values.items():
            opt = mine[key]
            if value is not None and value not in opt.choices:
                raise UsageError(
                    f"{self.name} does not take {opt.flag} {value}", f"use one of {', '.join(opt.choices)}"
                )
        return self.Options(**{k: v for k, v in values.items() if v is not None})

    def takes(self, given: Mapping) -> dict:
        """The part of ``given`` ({field: value}) this target has flags for (``--target all``: each takes its own)."""
        mine = {o.field for o in self.export_options}
        return {k: v for k, v in given.items() if k in mine and v is not None}

    def input_layout(self, opts: ExportOptions) -> str:
        """The artifact's input layout, ``nchw`` or ``nhwc`` (the manifest's ``input.layout``)."""
        return "nchw"

    def dynamic_batch(self, opts: ExportOptions) -> bool:
        """True when the artifact leaves its batch dimension free (the manifest's ``input.batch``)."""
        return False

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

    def runner(self, path: Path, manifest: Manifest, threads: int | None = None) -> Runner:
        """Load the artifact in its runtime (torch-free); a missing runtime is a DependencyError.

        The device side's runner (``mvit_deploy/device/runtimes/``), the code a board runs too.
        """
        return load_runner(path, manifest, threads, target=self.name)

    def bench_runner(self, path: Path, manifest: Manifest, threads: int, **options) -> Runner:
        """The runner ``bench`` times (``options``: this target's ``bench_options``).

        Raise :class:`~mvit_deploy.errors.NotOnThisDevice` when this machine cannot time it.
        """
        return load_runner(path, manifest, threads, target=self.name, **options)

    def twin_options(self, manifest: Manifest) -> dict:
        """ExportOptions fields that make the float twin of a quantized artifact (quant-report)."""
        return {}

    def layer_errors(
        self, float_path: Path, int8_path: Path, x: np.ndarray, manifest: Manifest
    ) -> list[tuple[str, float, float | None]]:
        """(tensor, cumulative SQNR dB, local SQNR dB or None) for every tensor both artifacts compute."""
        raise UsageError(f"quant-report does not read {self.name} artifacts yet", self.layer_report_hint)

    def layer_module(self, tensor: str, fx_modules: dict[str, str]) -> str:
        """The PyTorch module a tensor comes from (``fx_modules``: torch.export node -> module path)."""
        return fx_modules.get(tensor, "")

    def artifact_contents(self, path: Path) -> ArtifactContents:
        """What the file at ``path`` holds (its precision, its weight count), read from the file itself without
        running it, so that a verdict does not rest on what the manifest claims. Every target reads its own format
        (tests/test_bad_manifests.py); this default tells nothing."""
        return ArtifactContents()

    def read_contents(self, path: Path) -> ArtifactContents:
        """``artifact_contents``, or nothing known when the file does not parse: its runner then refuses it by name,
        so a broken file is refused once, in one place."""
        try:
            return self.artifact_contents(Path(path))
        except Exception:  # a parser's own error types (protobuf, flatbuffers, coremltools) differ per format
            return ArtifactContents()
