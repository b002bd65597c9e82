"""An artifact's sidecar manifest, read and checked on whichever side runs the artifact (torch-free, stdlib only).

:class:`Manifest` is the one typed record of it: ``Manifest.from_dict`` checks every key's type and value as it reads
(a wrong one is a one-line :class:`UsageError` naming the file and the key, before any model loads), ``to_dict``
gives back exactly the JSON ``export`` writes. Nothing else in the package subscripts a manifest.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .files import MB, load_json, parse_json  # noqa: F401  (parse_json: re-exported)

MANIFEST_SCHEMA = "mvit-deploy/artifact/2"
# /2's key layout is /1's: only the id differs (it marks manifests written through the typed record, which always
# carry ``family``). /1 manifests still read; one without ``family`` leaves it None, and the host takes the family
# from its model registry (parity.manifest_family).
READABLE_SCHEMAS = ("mvit-deploy/artifact/1", MANIFEST_SCHEMA)
# What every reader of a manifest (parity, eval, bench, quant-report, the runners) looks up.
MAX_MANIFEST_BYTES = 16 * MB  # an ImageNet manifest, labels and parity included, is ~40 KB
MANIFEST_KEYS = ("artifact", "model", "target", "precision", "input", "output", "checkpoint", "sha256")

# The values a manifest may hold. The host's registries are the sources (tests/test_manifest.py checks each list
# equals its source, so a new precision, domain or interpolation cannot drift); this side runs without them.
# The --input-size rule, one source for both sides (models.config.check_input_size imports it): the stride-32 block
# unfolds 2x2 patches, so a multiple of 64; at most 1024 px, the memory limit measured in models/config.py.
INPUT_SIZE_STEP = 64
MAX_INPUT_SIZE = 1024
# More than ImageNet-22k's 21,843 classes, and a bound on the head a hostile manifest makes the reference build
# (S: 640 x 100,000 float32 = 256 MB). targets.base.Target.resolve refuses --num-classes outside it.
MIN_CLASSES, MAX_CLASSES = 2, 100_000
PRECISIONS = ("fp32", "fp16", "int8", "w8a8")  # targets.all_precisions()
DOMAINS = ("photos", "fashion-mnist")  # inputs.datasets.DOMAINS
INTERPOLATIONS = ("bilinear", "bicubic")  # inputs.preprocess.Preprocessing.interpolation (its _RESAMPLE)
CHANNEL_ORDERS = ("RGB", "BGR")  # inputs.preprocess.Preprocessing.channel_order
LAYOUTS = ("nchw", "nhwc")  # targets.base.Target.input_layout


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_list(v, item) -> bool:
    return isinstance(v, (list, tuple)) and all(item(x) for x in v)


def _is_size(v) -> bool:
    return _is_int(v) and INPUT_SIZE_STEP <= v <= MAX_INPUT_SIZE and v % INPUT_SIZE_STEP == 0


def _is_finite(v) -> bool:
    """A number a float holds: not NaN or infinite, and no integer too large for a float (10**400)."""
    try:
        return _is_num(v) and math.isfinite(v)
    except OverflowError:
        return False


def _is_positive(v) -> bool:
    return _is_finite(v) and v > 0


def _is_triple(v, positive: bool = False) -> bool:
    return _is_list(v, _is_finite) and len(v) == 3 and all(x > 0 or not positive for x in v)


def _one_of(values) -> tuple:
    return (lambda v: isinstance(v, str) and v in values, "one of " + ", ".join(values))


def _target(v) -> bool:
    from .runtimes import RUNNERS  # the device side's target registry (imported late: it imports this module)

    return isinstance(v, str) and v in RUNNERS


def _targets() -> str:
    from .runtimes import RUNNERS

    return "one of " + ", ".join(RUNNERS)


# (check, what a value must be) for each kind of key; ``what`` may be a callable (a list known only at run time)
STR = (lambda v: isinstance(v, str), "a string")
OBJECT = (lambda v: isinstance(v, dict), "an object")
STRINGS = (lambda v: _is_list(v, lambda x: isinstance(x, str)), "a list of strings")
SHAPE = (
    lambda v: _is_list(v, lambda d: (_is_int(d) and d > 0) or (isinstance(d, str) and d != "")),
    "a list of dimensions (positive integers or names)",
)
BATCH = (lambda v: (_is_int(v) and v > 0) or v == "dynamic", 'a positive integer or "dynamic"')
_SIZE_RULE = f"a multiple of {INPUT_SIZE_STEP} from {INPUT_SIZE_STEP} to {MAX_INPUT_SIZE}"
SIZE = (_is_size, f"an input size ({_SIZE_RULE})")
SIZES = (lambda v: _is_list(v, _is_size) and len(v) > 0, f"a list of input sizes (each {_SIZE_RULE})")
CLASSES = (
    lambda v: _is_int(v) and MIN_CLASSES <= v <= MAX_CLASSES,
    f"a class count from {MIN_CLASSES} to {MAX_CLASSES:,}",
)
SCALE = (_is_positive, "a finite number above 0")
MEAN = (_is_triple, "3 finite numbers, one per channel")
STD = (lambda v: _is_triple(v, positive=True), "3 finite numbers above 0, one per channel (the input is divided by it)")
CROP = (lambda v: _is_num(v) and 0 < v <= 1, "a fraction in (0, 1]")
BYTES = (lambda v: _is_int(v) and v >= 0, "a count of bytes (0 or more)")
PRECISION = _one_of(PRECISIONS)
DOMAIN = _one_of(DOMAINS)
INTERPOLATION = _one_of(INTERPOLATIONS)
CHANNEL_ORDER = _one_of(CHANNEL_ORDERS)
LAYOUT = _one_of(LAYOUTS)
TARGET = (_target, _targets)


def _wrong(where, key: str, value, what) -> UsageError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    what = what() if callable(what) else what
    return UsageError(
        f"manifest {where}: {key} is {shown} ({type(value).__name__}), not {what}", "re-export the artifact"
    )


class _Record:
    """A JSON object of the manifest: its known keys as typed attributes (named as in the JSON), the others in
    ``extra``; ``read_keys``: the keys it was read with (None when built in code), so ``to_dict`` writes back exactly
    the keys it read, a null included."""

    KEYS: dict = {}  # JSON key -> (check, what it must be), in the order export writes them
    NULLABLE: tuple = ()  # keys a record built in code writes even when None (export writes them as null)
    REQUIRED: tuple = ()  # keys every reader needs: absent or null is refused
    EXTRA_BEFORE: str | None = None  # the key ``extra`` is written before (default: at the end)

    @classmethod
    def _values(cls, data, where, prefix: str = "") -> tuple[dict, dict]:
        if not isinstance(data, dict):
            raise _wrong(where, prefix.rstrip(".") or "the manifest", data, "an object")
        values = {}
        for key, (check, what) in cls.KEYS.items():
            value = data.get(key)
            if value is None and key in cls.REQUIRED:
                raise _wrong(where, prefix + key, None, what)
            if value is not None and not check(value):
                raise _wrong(where, prefix + key, value, what)
            values[key] = value
        return values, {k: v for k, v in data.items() if k not in cls.KEYS}

    @classmethod
    def from_dict(cls, data, where="manifest", prefix: str = ""):
        values, extra = cls._values(data, where, prefix)
        record = cls(**values, extra=extra, read_keys=frozenset(data))
        record.check(where, prefix)
        return record

    def check(self, where, prefix: str) -> None:  # noqa: B027 (an optional hook: a record's checks across keys)
        """Refuse values that are each valid but do not fit together."""

    def update(self, **changes) -> None:
        """Set keys as ``dict.update`` would: a known one on its attribute, any other in ``extra``."""
        for key, value in changes.items():
            if key in self.KEYS:
                setattr(self, key, value)
            else:
                self.extra[key] = value

    def to_dict(self) -> dict:
        written = self.NULLABLE if self.read_keys is None else self.read_keys
        out = {}
        for key in self.KEYS:
            if key == self.EXTRA_BEFORE:
                out.update(self.extra)
            value = getattr(self, key)
            if isinstance(value, _Record):
                value = value.to_dict()
            elif isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None or key in written:
                out[key] = value
        if self.EXTRA_BEFORE is None:
            out.update(self.extra)
        return out


@dataclass
class InputSpec(_Record):
    """The artifact's input: its tensor, and the preprocessing that makes it from an image."""

    KEYS = {
        "name": STR,
        "shape": SHAPE,
        "batch": BATCH,  # 1, or "dynamic"
        "layout": LAYOUT,
        "dtype": STR,
        "size": SIZE,
        "sizes": SIZES,  # every input size parity checked (export --more-sizes), the default first
        "type": STR,  # tensor / image (Core ML)
        "scale": SCALE,
        "channel_order": CHANNEL_ORDER,
        "mean": MEAN,
        "std": STD,
        "preprocessing": OBJECT,  # Preprocessing.to_dict(), each key checked by PreprocessingKeys
    }
    REQUIRED = ("size",)

    name: str | None = None
    shape: list | None = None
    batch: int | str | None = None
    layout: str | None = None
    dtype: str | None = None
    size: int | None = None
    sizes: list[int] | None = None
    type: str | None = None
    scale: float | None = None
    channel_order: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    preprocessing: dict | None = None
    extra: dict = field(default_factory=dict)  # a target's additions (quantization parameters, ...)
    read_keys: frozenset | None = field(default=None, repr=False, compare=False)

    def check(self, where, prefix: str) -> None:
        if self.sizes is not None and self.sizes[0] != self.size:
            raise _wrong(where, f"{prefix}sizes", self.sizes, f"a list starting with input.size {self.size}")
        if self.preprocessing is not None:  # bench does without it; parity and eval refuse its absence
            PreprocessingKeys.check_dict(self.preprocessing, where, f"{prefix}preprocessing.")


class PreprocessingKeys(_Record):
    """The keys of ``input.preprocessing`` (inputs.preprocess.Preprocessing's fields): checked here, kept a dict."""

    KEYS = {
        "channel_order": CHANNEL_ORDER,
        "crop_pct": CROP,
        "interpolation": INTERPOLATION,
        "scale": SCALE,
        "mean": MEAN,
        "std": STD,
    }

    @classmethod
    def check_dict(cls, data: dict, where, prefix: str) -> None:
        unknown = [k for k in data if k not in cls.KEYS]
        if unknown:
            raise UsageError(
                f"manifest {where}: {prefix}{unknown[0]} is not a preprocessing key ({', '.join(cls.KEYS)})",
                "re-export the artifact",
            )
        cls._values(data, where, prefix)


@dataclass
class OutputSpec(_Record):
    """The artifact's output: the logits tensor and the class names (Core ML adds labels_embedded, label_output)."""

    KEYS = {"name": STR, "shape": SHAPE, "dtype": STR, "classes": CLASSES, "labels": STRINGS}
    NULLABLE = ("labels",)
    REQUIRED = ("classes",)

    name: str | None = None
    shape: list | None = None
    dtype: str | None = None
    classes: int | None = None
    labels: list[str] | None = None
    extra: dict = field(default_factory=dict)
    read_keys: frozenset | None = field(default=None, repr=False, compare=False)

    def check(self, where, prefix: str) -> None:
        if self.labels is not None and len(self.labels) != self.classes:
            raise _wrong(where, f"{prefix}labels", self.labels, f"{self.classes} names (output.classes)")


@dataclass
class CheckpointInfo(_Record):
    """The checkpoint the artifact was exported from, so the host can load its PyTorch reference again."""

    KEYS = {"layout": STR, "path": STR, "pretrained": STR, "sha256": STR}
    NULLABLE = ("layout", "path", "pretrained", "sha256")

    layout: str | None = None  # timm / hf / apple / fixture ...
    path: str | None = None
    pretrained: str | None = None
    sha256: str | None = None
    extra: dict = field(default_factory=dict)
    read_keys: frozenset | None = field(default=None, repr=False, compare=False)


@dataclass
class Manifest(_Record):
    """An artifact's sidecar manifest. ``extra``: a target's own top-level keys (``delegation``, ``ane``,
    ``coreml_layout``, ``ort_format``: ``Converted.extra``), written between ``calibration`` and ``parity``."""

    KEYS = {
        "schema": STR,
        "artifact": STR,
        "model": STR,
        "family": STR,
        "domain": DOMAIN,
        "target": TARGET,
        "precision": PRECISION,
        "input": OBJECT,
        "output": OBJECT,
        "checkpoint": OBJECT,
        "versions": OBJECT,
        "calibration": OBJECT,
        "parity": OBJECT,
        "parity_sizes": OBJECT,
        "sha256": STR,
        "bytes": BYTES,
    }
    EXTRA_BEFORE = "parity"
    REQUIRED = ("schema", "artifact", "model", "target", "precision", "sha256")

    artifact: str
    model: str
    target: str
    precision: str
    input: InputSpec
    output: OutputSpec
    checkpoint: CheckpointInfo
    schema: str = MANIFEST_SCHEMA
    family: str | None = None  # None: a /1 manifest written before families (the host asks its model registry)
    domain: str | None = None
    versions: dict | None = None
    calibration: dict | None = None
    parity: dict | None = None  # ParityReport.to_dict(), or {"passed": None, "skipped": why}
    parity_sizes: dict | None = None  # str(size) -> ParityReport.to_dict(), for each further size
    sha256: str | None = None
    bytes: int | None = None
    extra: dict = field(default_factory=dict)
    read_keys: frozenset | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data, where="manifest", prefix: str = "") -> Manifest:
        """The manifest ``data`` (parsed JSON) holds, every key's type and value checked; ``where``: its file, for
        the messages."""
        schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
        if schema not in READABLE_SCHEMAS:
            raise UsageError(
                f"manifest {where} has schema {schema!r}", f"re-export with this version ({MANIFEST_SCHEMA})"
            )
        missing = [k for k in MANIFEST_KEYS if k not in data]
        if missing:
            raise UsageError(f"manifest {where} lacks {', '.join(missing)}", "re-export the artifact")
        values, extra = cls._values(data, where)
        for key, record in (("input", InputSpec), ("output", OutputSpec), ("checkpoint", CheckpointInfo)):
            values[key] = record.from_dict(data[key], where, f"{key}.")
        return cls(**values, extra=extra, read_keys=frozenset(data))


def manifest_path(artifact: Path) -> Path:
    """``x.onnx`` -> ``x.json``; a directory artifact (a bundle such as ``x.mlpackage``) -> ``x.mlpackage.json``."""
    artifact = Path(artifact)
    bundle = artifact.with_name(artifact.name + ".json")
    return bundle if artifact.is_dir() or bundle.exists() else artifact.with_suffix(".json")


def package_versions(packages) -> dict[str, str]:
    """pip name -> installed version, for the packages that are installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def read_manifest(artifact: str | Path) -> Manifest:
    """The artifact's sidecar manifest, once it is sure to describe exactly this file (sha256)."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise UsageError(f"artifact {artifact} does not exist", "check the path, or run `mvit-deploy export` first")
    path = manifest_path(artifact)
    if not path.exists():
        raise UsageError(
            f"{artifact} has no manifest {path.name} beside it",
            "keep the .json that `mvit-deploy export` wrote next to the artifact",
        )
    data = load_json(path, "manifest", "re-export the artifact", MAX_MANIFEST_BYTES)
    manifest = Manifest.from_dict(data, path)
    check_artifact_matches(artifact, manifest, path)
    return manifest


def check_artifact_matches(artifact: Path, manifest: Manifest, path: Path) -> None:
    """Refuse a sidecar written for another file, and a file changed since its sidecar was written."""
    described = str(manifest.artifact)
    other = (
        f"this manifest is not this artifact's: {path.name} describes {described} ({manifest.model} "
        f"{manifest.target} {manifest.precision})"
    )
    fix = "keep each artifact with the .json export wrote beside it, or re-export"
    if Path(described).suffix != artifact.suffix:
        raise UsageError(other, fix)
    actual = tree_sha256(artifact)
    if actual != manifest.sha256:
        if described != artifact.name:  # a renamed pair keeps its name in the manifest, but also its sha256
            raise UsageError(other, fix)
        raise UsageError(
            f"{artifact} does not match its manifest (sha256 {actual[:12]}…, the manifest says "
            f"{str(manifest.sha256)[:12]}…)",
            "re-export it or restore the file",
        )


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, sorted)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def tree_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
