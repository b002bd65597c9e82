"""Artifact naming, the sidecar manifest, and atomic writes (no torch)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .device.manifest import (  # noqa: F401  (the manifest reader lives on the device side; host modules import it from here)
    MANIFEST_KEYS,
    MANIFEST_SCHEMA,
    READABLE_SCHEMAS,
    CheckpointInfo,
    InputSpec,
    Manifest,
    OutputSpec,
    check_artifact_matches,
    manifest_path,
    package_versions,
    parse_json,
    read_manifest,
    tree_bytes,
    tree_sha256,
)
from .errors import UsageError

_IMPORTED_AT = time.time()  # fallback for the process start time


def artifact_stem(
    model: str, target: str, precision: str, tags=(), input_size: int = 256, default_size: int = 256
) -> str:
    """``<model>-<target>-<precision>``, plus the target's tags for non-default options (``int8io``,
    ``nhwc``, a delegate) and the input size when it is not the weights' own."""
    stem = "-".join((model, target, precision, *tags))
    if input_size != default_size:
        stem += f"-{input_size}"
    return stem


STAGING_MARK = ".tmp-"  # staging entries are ".<final name>.tmp-<pid>-<random>"
_STAGING = re.compile(r"^\..+\.tmp-(?:(\d+)-)?[A-Za-z0-9_]+$")
NAME_MAX = 255  # bytes in one file or folder name (ext4, APFS, NTFS; the POSIX file systems' usual limit)
_STAGED_NAME = NAME_MAX - 40  # room for ".<name>.tmp-<pid>-<random>" around a long final name


def _staging_prefix(name: str) -> str:
    """``.<name>.tmp-``, the name cut to fit (a final name of 250 bytes is valid; its staging entry must be too)."""
    return f".{os.fsencode(name)[:_STAGED_NAME].decode('utf-8', 'ignore')}{STAGING_MARK}"


# What an output path's OSError means to the user, by errno: the fix to print (an unknown errno is a bug, exit 3).
_OUTPUT_FIXES = {
    errno.ENOSPC: "free some space, or write somewhere else",
    errno.EDQUOT: "free some space within your quota, or write somewhere else",
    errno.EROFS: "choose a path on a writable file system",
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.ENAMETOOLONG: f"use shorter names (at most {NAME_MAX} bytes per file or folder name)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.EISDIR: "pass a file path, not a folder",
    errno.EFBIG: "write somewhere that takes large files",
}


def path_error(e: OSError, writing=None) -> UsageError | None:
    """The one-line error for a file system refusing a path (full, read-only, no permission, a name too long):
    ``writing`` the output it was writing, else the file ``e`` names; None when ``e`` is not the user's to fix."""
    fix = _OUTPUT_FIXES.get(e.errno)
    if fix is None or (writing is None and e.filename is None):
        return None
    reason = e.strerror or os.strerror(e.errno)
    if writing is not None:
        return UsageError(f"cannot write {writing} ({reason})", fix)
    return UsageError(f"{os.fsdecode(e.filename)}: {reason}", fix)


def _writing(e: OSError, final: Path) -> bool:
    """Whether ``e`` came from writing ``final`` (its folder, its staging entry, or a stream with no name that only
    a write fails this way), not from reading some other file inside the ``staged`` block."""
    if e.filename is None:
        return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
    name, final = Path(os.fsdecode(e.filename)).absolute(), final.absolute()
    return name == final or name in final.parents or final.parent in name.parents  # itself, a folder, its staging


def check_output(path, flag: str, folder: bool = False) -> None:
    """Refuse an output (``--out DIR``, ``--json FILE``) that cannot be written, in one line, before any work.

    The nearest folder that exists is tried with a probe entry, removed at once (and named like a staging
    entry, so a kill in between is swept): permissions, a read-only or full file system, and a file where a
    folder must be all show up as they would at the end of the run.
    """
    path = Path(path)
    long = next((part for part in path.parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:
        raise UsageError(
            f"{flag} {path}: the name {long[:24]}... is {len(os.fsencode(long))} bytes long, over the "
            f"{NAME_MAX} a file system takes",
            "use a shorter name",
        )
    if path.is_dir() != folder and path.exists():
        raise UsageError(
            f"{flag} {path} is a {'file' if folder else 'folder'}",
            "pass a folder (it is created if missing)" if folder else "pass a file path (its folder may be new)",
        )
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a folder", "fix the path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".write-check{STAGING_MARK}{os.getpid()}-", dir=existing))
    except OSError as e:
        if e.errno not in _OUTPUT_FIXES:
            raise
        raise UsageError(f"{flag} {path} cannot be written ({e.strerror})", _OUTPUT_FIXES[e.errno]) from None


@contextmanager
def staged(final: Path):
    """Yield a temporary path beside ``final``; only a clean exit renames it into place.

    A crash, an exception, Ctrl-C or (inside ``interruptible``) SIGTERM removes the staging
    entry; a SIGKILL leaves a ``.<name>.tmp-<pid>-*`` entry, which the next write of the same
    ``final`` (and ``sweep_staging``, for a whole export folder) removes.
    """
    tmpdir = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_staging(final.parent, only=final.name)
        tmpdir = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(final.name)}{os.getpid()}-", dir=final.parent))
        yield tmpdir / final.name
        raise_if_interrupted()  # a Ctrl-C a converter swallowed (and then finished anyway) still commits nothing
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmpdir / final.name, final)
    except OSError as e:  # a full disk or a read-only folder, met while writing: named as the file asked for
        error = path_error(e, final) if _writing(e, final) else None
        if error is None:
            raise
        raise error from None
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _process_start_time() -> float:
    """When this process started (epoch seconds), from /proc where there is one."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_staging(folder: Path, started: float | None = None, only: str | None = None) -> list[Path]:
    """Remove staging entries a killed run left in ``folder``: only our ``.….tmp-*`` names, older than this process.

    An entry naming a live process (its pid) is kept even if older: another export may be writing it.
    ``only``: just the entries staged for this final name.
    """
    folder = Path(folder)
    started = _process_start_time() if started is None else started
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if only is not None and not entry.name.startswith(_staging_prefix(only)):
            continue
        m = _STAGING.match(entry.name)
        if not m or (m.group(1) and (int(m.group(1)) == os.getpid() or _alive(int(m.group(1))))):
            continue
        try:
            if entry.lstat().st_mtime >= started:
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        except OSError:
            continue  # gone meanwhile, or not ours to remove
        removed.append(entry)
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``finally`` (staging cleanup) runs; exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


# Signals received inside the outermost ``interruptible`` block. A converter can catch the KeyboardInterrupt a
# Ctrl-C raises (torch.export wraps it, and the ONNX exporter then retries another strategy and succeeds), so
# ``staged`` checks this before it renames anything into place.
_RECEIVED: list[int] = []
_DEPTH = [0]


def raise_if_interrupted() -> None:
    """Raise the interrupt an ``interruptible`` block received, even if whatever ran at the time swallowed it."""
    import signal

    if _RECEIVED:
        raise KeyboardInterrupt if _RECEIVED[0] == signal.SIGINT else Terminated(_RECEIVED[0])


@contextmanager
def interruptible():
    """Turn SIGTERM into ``Terminated`` and remember SIGINT / SIGTERM for the block's duration (main thread only;
    elsewhere a no-op): ``raise_if_interrupted`` then stops a run whose interrupt a library swallowed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        _RECEIVED.append(signum)
        raise Terminated(signum)

    def raise_interrupt(signum, frame):
        _RECEIVED.append(signum)
        raise KeyboardInterrupt

    if _DEPTH[0] == 0:
        _RECEIVED.clear()
    _DEPTH[0] += 1
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    previous_int = signal.signal(signal.SIGINT, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        _DEPTH[0] -= 1
        if _DEPTH[0] == 0:
            _RECEIVED.clear()


@contextmanager
def output_folder(folder: Path):
    """Yield ``folder`` (created); if this call created it and the block fails, leave no empty folder behind."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        yield folder
        ok = True
    finally:
        if created and (not ok or not any(folder.iterdir())):
            try:
                folder.rmdir()  # only when empty: never removes what anyone wrote
            except OSError:
                pass


def write_json_atomic(path: Path, data: dict) -> None:
    with staged(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
