"""An artifact's sidecar manifest, read and checked on whichever side runs the artifact (torch-free, stdlib only).

:class:`Manifest` is the one typed record of it: ``Manifest.from_dict`` checks every key's type as it reads (a wrong
type is a one-line :class:`UsageError` naming the file and the key), ``to_dict`` gives back exactly the JSON
``export`` writes. Nothing else in the package subscripts a manifest.
"""

from __future__ import annotations

import hashlib
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


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_list(v, item) -> bool:
    return isinstance(v, (list, tuple)) and all(item(x) for x in v)


# (check, what a value must be) for each kind of key
STR = (lambda v: isinstance(v, str), "a string")
INT = (_is_int, "an integer")
NUM = (_is_num, "a number")
OBJECT = (lambda v: isinstance(v, dict), "an object")
NUMBERS = (lambda v: _is_list(v, _is_num), "a list of numbers")
INTS = (lambda v: _is_list(v, _is_int), "a list of integers")
STRINGS = (lambda v: _is_list(v, lambda x: isinstance(x, str)), "a list of strings")
SHAPE = (lambda v: _is_list(v, lambda d: _is_int(d) or isinstance(d, str)), "a list of dimensions")
BATCH = (lambda v: _is_int(v) or isinstance(v, str), "an integer or a string")


def _wrong(where, key: str, value, what: str) -> UsageError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return UsageError(
        f"manifest {where}: {key} is {shown} ({type(value).__name__}), not {what}", "re-export the artifact"
    )


class _Record:
    """A JSON object of the manifest: its known keys as typed attributes (named as in the JSON), the others in
    ``extra``; ``read_keys``: the keys it was read with (None when built in code), so ``to_dict`` writes back exactly
    the keys it read, a null included."""

    KEYS: dict = {}  # JSON key -> (check, what it must be), in the order export writes them
    NULLABLE: tuple = ()  # keys a record built in code writes even when None (export writes them as null)
    EXTRA_BEFORE: str | None = None  # the key ``extra`` is written before (default: at the end)

    @classmethod
    def _values(cls, data, where, prefix: str = "") -> tuple[dict, dict]:
        if not isinstance(data, dict):
            raise _wrong(where, prefix.rstrip(".") or "the manifest", data, "an object")
        values = {}
        for key, (check, what) in cls.KEYS.items():
            value = data.get(key)
            if value is not None and not check(value):
                raise _wrong(where, prefix + key, value, what)
            values[key] = value
        return values, {k: v for k, v in data.items() if k not in cls.KEYS}

    @classmethod
    def from_dict(cls, data, where="manifest", prefix: str = ""):
        values, extra = cls._values(data, where, prefix)
        return cls(**values, extra=extra, read_keys=frozenset(data))

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
        "layout": STR,  # nchw / nhwc
        "dtype": STR,
        "size": INT,
        "sizes": INTS,  # every input size parity checked (export --more-sizes), the default first
        "type": STR,  # tensor / image (Core ML)
        "scale": NUM,
        "channel_order": STR,
        "mean": NUMBERS,
        "std": NUMBERS,
        "preprocessing": OBJECT,  # Preprocessing.to_dict()
    }

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


@dataclass
class OutputSpec(_Record):
    """The artifact's output: the logits tensor and the class names (Core ML adds labels_embedded, label_output)."""

    KEYS = {"name": STR, "shape": SHAPE, "dtype": STR, "classes": INT, "labels": STRINGS}
    NULLABLE = ("labels",)

    name: str | None = None
    shape: list | None = None
    dtype: str | None = None
    classes: int | None = None
    labels: list[str] | None = None
    extra: dict = field(default_factory=dict)
    read_keys: frozenset | None = field(default=None, repr=False, compare=False)


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
        "domain": STR,
        "target": STR,
        "precision": STR,
        "input": OBJECT,
        "output": OBJECT,
        "checkpoint": OBJECT,
        "versions": OBJECT,
        "calibration": OBJECT,
        "parity": OBJECT,
        "parity_sizes": OBJECT,
        "sha256": STR,
        "bytes": INT,
    }
    EXTRA_BEFORE = "parity"
    REQUIRED_STR = ("schema", "artifact", "model", "target", "precision", "sha256")

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
        """The manifest ``data`` (parsed JSON) holds, every key's type checked; ``where``: its file, for the
        messages."""
        schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
        if schema not in READABLE_SCHEMAS:
            raise UsageError(
                f"manifest {where} has schema {schema!r}", f"re-export with this version ({MANIFEST_SCHEMA})"
            )
        missing = [k for k in MANIFEST_KEYS if k not in data]
        if missing:
            raise UsageError(f"manifest {where} lacks {', '.join(missing)}", "re-export the artifact")
        values, extra = cls._values(data, where)
        for key in cls.REQUIRED_STR:
            if values[key] is None:
                raise _wrong(where, key, None, STR[1])
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
