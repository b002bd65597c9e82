"""The device side's half of each target: the runner that runs its artifacts, one file per runtime here.

A runner takes a float32 NCHW batch [N, 3, H, W] in the model's preprocessing convention and
returns float32 logits [N, classes]. Each runtime file registers its runner for the targets whose
artifacts it runs (``@register_runner``); the host's targets (``mvit_deploy/targets/``) take their
runners from here, so the board and the host run an artifact with the same code.
Importing this package imports no runtime: each runner imports its own when it loads an artifact.
"""

from __future__ import annotations

import abc
import contextlib
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..manifest import Manifest


class Runner(abc.ABC):
    """Runs one artifact: a float32 NCHW batch [N, 3, H, W] -> float32 logits [N, classes].

    Layout and dtype conversions to what the artifact expects happen in the subclass, as an app
    would do them. Most artifacts have a static batch of 1, so images run one at a time; one
    exported with ``--batch dynamic`` (manifest ``input.batch``) runs ``RUN_BATCH`` at a time.
    """

    runtime = "?"
    RUN_BATCH = 32  # images per call for a dynamic-batch artifact (eval's default batch)
    packages: tuple[str, ...] = ()  # pip names of the runtime (and its fallbacks), recorded in results
    options: tuple[str, ...] = ()  # keywords ``bench`` may pass (the targets' bench_options fields)

    def __init__(self, path: Path, manifest: Manifest, threads: int | None = None):
        self.path = Path(path)
        self.manifest = manifest
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.layout = manifest.input.layout
        self.step = self.RUN_BATCH if manifest.input.batch == "dynamic" else 1

    @abc.abstractmethod
    def _one(self, x: np.ndarray) -> np.ndarray:
        """x: [b, 3, H, W] float32 (b = 1, or up to RUN_BATCH for a dynamic-batch artifact) -> logits [b, classes]."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        return np.concatenate([self._one(batch[i : i + self.step]) for i in range(0, len(batch), self.step)])

    @classmethod  # noqa: B027 (an optional hook: a no-op unless a runner overrides it)
    def preload(cls) -> None:
        """Import the runtime's modules, so that ``bench``'s load time is the artifact's, not the import's."""

    def _to_layout(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if self.layout == "nhwc" else x


RUNNERS: dict[str, type[Runner]] = {}


def register_runner(*targets: str):
    """Class decorator: this runner runs the artifacts of ``targets`` (manifest ``target`` values)."""

    def register(cls: type[Runner]) -> type[Runner]:
        for t in targets:
            if t in RUNNERS:
                raise ValueError(f"target {t!r} has two runners")
            RUNNERS[t] = cls
        return cls

    return register


def runner_class(target: str) -> type[Runner]:
    try:
        return RUNNERS[target]
    except KeyError:
        raise UsageError(
            f"no runner on this side for target {target!r}", f"run artifacts of {', '.join(RUNNERS)}"
        ) from None


def load_runner(
    path: str | Path, manifest: Manifest, threads: int | None = None, target: str | None = None, **options
) -> Runner:
    """The runner of ``target`` (default ``manifest.target``); ``options``: bench keywords, each runner takes its own
    and ignores the rest."""
    cls = runner_class(target or manifest.target)
    return cls(Path(path), manifest, threads, **{k: v for k, v in options.items() if k in cls.options})


REEXPORT = "re-export it; a copy may be truncated"


def artifact_head(path: Path, what: str, n: int = 64) -> tuple[bytes, int]:
    """(the first ``n`` bytes, the size) of the artifact ``path``, a regular file (files.read_head)."""
    from ..files import read_head

    return read_head(path, what, REEXPORT, n)


def runtime_packages() -> list[str]:
    return list(dict.fromkeys(p for cls in RUNNERS.values() for p in cls.packages))


@contextlib.contextmanager
def native_stderr(drop: str):
    """Hold what a runtime's C++ side writes to file descriptor 2 while the block runs, and write it back
    without the lines matching ``drop`` (its narration); anything else it says still reaches the user."""
    import re
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(True) if not re.search(drop, line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


from . import onnx, tflite, coreml, executorch  # noqa: E402,F401,I001  (each registers its runner)

__all__ = ["RUNNERS", "Runner", "artifact_head", "load_runner", "register_runner", "runner_class", "runtime_packages"]
