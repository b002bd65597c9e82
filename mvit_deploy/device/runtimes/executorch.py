"""ExecuTorch's Python runtime: runs .pte artifacts (XNNPACK, and Core ML where the runtime has that backend).

The Python runtime needs torch; boards without it run the C++ ``executor_runner`` instead
(``bench --device adb``).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import DependencyError, NotOnThisDevice, UsageError
from . import REEXPORT, Runner, artifact_head, register_runner

BACKEND_IDS = {"xnnpack": "XnnpackBackend", "coreml": "CoreMLBackend"}


@contextlib.contextmanager
def quiet_native():
    """ExecuTorch's C++ side (cpuinfo, torchao's optional kernels) writes to file descriptor 2 on import and load."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_pte(path: str | Path) -> None:
    """Refuse a damaged .pte by its header, so that the runtime's refusal of an intact one means what it says.

    Layout (executorch ``extended_header.h``): bytes 4..8 the flatbuffer identifier "ET" + 2 digits; at byte 8 the
    extended header "eh00", its length, then the program's size, the segments' base offset and (length >= 32) their
    size. A file shorter than the header says it is was cut short (a partial copy or download).
    """
    path = Path(path)
    head, size = artifact_head(path, "ExecuTorch program", 40)
    ident = head[4:8]
    if size < 8 or ident[:2] != b"ET" or not ident[2:].isdigit():
        raise UsageError(
            f"{path} is not an ExecuTorch program (bytes 4..8 are {ident!r}, not b'ET' + 2 digits)",
            REEXPORT,
        )
    if head[8:12] != b"eh00" or len(head) < 32:
        return  # no extended header (old writers): nothing states the size
    length, program, base = struct.unpack("<IQQ", head[12:32])
    segments = struct.unpack("<Q", head[32:40])[0] if length >= 32 and len(head) >= 40 else 0
    needed = max(program, base + segments if base else 0)
    if needed > size:
        raise UsageError(
            f"ExecuTorch program {path} is truncated: its header says it holds {needed:,} bytes, the file has {size:,}",
            REEXPORT,
        )


def import_runtime():
    """(torch, executorch.runtime.Runtime), or a one-line DependencyError."""
    try:
        with quiet_native():
            import torch  # the runtime's tensors
            from executorch.runtime import Runtime
    except ImportError:
        raise DependencyError(
            "running .pte needs the executorch runtime", "pip install executorch (or use its C++ executor_runner)"
        ) from None
    return torch, Runtime


def registered_backends() -> set[str]:
    _, runtime = import_runtime()
    with quiet_native():
        return set(runtime.get().backend_registry.registered_backend_names)


@register_runner("executorch")
class ExecuTorchRunner(Runner):
    runtime = "executorch"
    packages = ("executorch",)

    def __init__(self, path, manifest, threads=None):
        super().__init__(path, manifest, threads)
        self.delegate = (manifest.extra.get("delegation") or {}).get("delegate", "xnnpack")
        check_pte(self.path)  # before the runtime: its refusal of an intact file is then a version, not a damage
        self._torch, runtime_cls = import_runtime()
        if BACKEND_IDS.get(self.delegate, self.delegate) not in registered_backends():
            raise NotOnThisDevice(
                f"this ExecuTorch runtime has no {self.delegate} backend",
                "run this .pte where it has (Core ML: an Apple device)",
            )
        with quiet_native():
            runtime = runtime_cls.get()
            _set_threads(self.threads)
            try:
                self.method = runtime.load_program(self.path).load_method("forward")
            except RuntimeError as e:
                raise _refusal(self.path, e, manifest.precision == "int8") from None

    @classmethod
    def preload(cls) -> None:
        with contextlib.suppress(DependencyError):
            import_runtime()  # imports torch: seconds

    def _one(self, x):
        return self.method.execute([self._torch.from_numpy(np.ascontiguousarray(x))])[0].numpy().reshape(1, -1)


def _refusal(path: Path, error: RuntimeError, quantized: bool) -> UsageError:
    """Why the runtime refused a .pte whose header check_pte passed: whole in size, so not a partial copy."""
    if quantized:
        return UsageError(
            f"the ExecuTorch runtime refused {path.name}: {error} (XNNPACK rejects int8 requantization scales outside "
            "its range; measured with 16 calibration images, not with 64)",
            "export again with --calib-samples 64 or more",
        )
    return UsageError(
        f"the ExecuTorch runtime refused {path.name}: {error} (the file is as long as its header says: a program "
        "format this runtime does not read, or damaged inside)",
        "re-export it with the executorch version that runs it",
    )


_POOL = {"set": False}


def _set_threads(n: int) -> None:
    """XNNPACK in the Python runtime uses ExecuTorch's one global thread pool (default: every core).

    Resetting it while a loaded program still uses the old pool hangs that program (measured in
    1.5.1), so it is sized once per process, by the first artifact loaded; later ones share it.
    """
    if _POOL["set"]:
        return
    try:
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != n:
            portable_lib._unsafe_reset_threadpool(n)  # experimental API (1.5.1)
    except (ImportError, AttributeError):
        pass
    _POOL["set"] = True
