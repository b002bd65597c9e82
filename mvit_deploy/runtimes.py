"""Run an exported artifact in its own runtime. Torch-free: this is the device side.

Every runner takes a float32 NCHW batch [N, 3, H, W] in the model's preprocessing
convention and returns float32 logits [N, classes]. Each target's file under ``targets/``
holds its runner; this module only asks the registry.
"""

from __future__ import annotations

from pathlib import Path

from .artifact import Manifest
from .targets.base import Runner


def load_runner(path: str | Path, manifest: Manifest, threads: int | None = None) -> Runner:
    """The runner of ``manifest.target`` (an unknown target is a one-line UsageError)."""
    from .targets import get_target

    return get_target(manifest.target).runner(Path(path), manifest, threads)


__all__ = ["Runner", "load_runner"]
