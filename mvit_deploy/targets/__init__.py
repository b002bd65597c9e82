"""Export targets, one registry: each target registers itself with ``@register_target``."""

from __future__ import annotations

from ..errors import UsageError
from .base import ExportOptions, Target

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


def target_for_path(path) -> Target:
    """The target that writes files like ``path`` (by suffix)."""
    from pathlib import Path

    suffix = Path(path).suffix
    for target in TARGETS.values():
        if target.suffix == suffix:
            return target
    raise UsageError(f"{path} is not an artifact this tool makes", f"expected one of {', '.join(t.suffix for t in TARGETS.values())}")


from . import onnx, tflite, coreml  # noqa: E402,F401,I001  (registration order = CLI order)

__all__ = ["TARGETS", "ExportOptions", "Target", "get_target", "register_target", "target_for_path"]
