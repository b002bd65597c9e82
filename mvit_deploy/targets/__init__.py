"""Export targets, one registry: each target is one file here and registers itself with ``@register_target``."""

from __future__ import annotations

from pathlib import Path

from ..device.manifest import Manifest
from ..errors import UsageError
from .base import QUANTIZED, AdbBenchmark, AihubProfile, ExportOptions, Option, Runner, Target

TARGETS: dict[str, Target] = {}


def register_target(cls: type[Target]) -> type[Target]:
    if cls.name in TARGETS:
        raise ValueError(f"target {cls.name!r} is registered twice")
    TARGETS[cls.name] = cls()
    return cls


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown target {name!r}", f"choose one of {', '.join(TARGETS)}") from None


def options_of(kind: str) -> dict[str, tuple[Option, list[Target]]]:
    """flag -> (the option, the targets that declare it), for ``kind`` "export" or "bench"."""
    out: dict[str, tuple[Option, list[Target]]] = {}
    for target in TARGETS.values():
        for opt in getattr(target, f"{kind}_options"):
            out.setdefault(opt.flag, (opt, []))[1].append(target)
    return out


def load_runner(path: str | Path, manifest: Manifest, threads: int | None = None) -> Runner:
    """An exported artifact, loaded in its target's runtime (torch-free; an unknown target is a UsageError)."""
    return get_target(manifest.target).runner(Path(path), manifest, threads)


def all_precisions() -> list[str]:
    return list(dict.fromkeys(p for t in TARGETS.values() for p in t.precisions))


def packages(kind: str) -> list[str]:
    """pip names every target needs: ``kind`` "converter" (the host) or "device" (a board)."""
    return list(dict.fromkeys(p for t in TARGETS.values() for p in getattr(t, f"{kind}_packages")))


from . import onnx, ort, tflite, coreml, executorch  # noqa: E402,F401,I001  (registration order = CLI order)

__all__ = [
    "QUANTIZED",
    "TARGETS",
    "AdbBenchmark",
    "AihubProfile",
    "ExportOptions",
    "Option",
    "Runner",
    "Target",
    "all_precisions",
    "get_target",
    "load_runner",
    "options_of",
    "packages",
    "register_target",
]
