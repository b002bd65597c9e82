"""Opening the files a user names as what they claim to be (stdlib only: the device side reads them too).

Every reader of a user's file goes through here, so each rule holds once:
- only a regular file is read: a FIFO would block the read forever, a device never ends, a directory is not a file.
  The file is opened non-blocking and checked on its descriptor (no window between the check and the read);
- a file larger than its kind ever is, is refused before it is read (``max_bytes``);
- text is UTF-8, or refused naming the byte;
- JSON nests at most :data:`MAX_DEPTH` levels (CPython's parser recurses per level) and holds no NaN / Infinity.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from .errors import UsageError

MAX_DEPTH = 32  # the deepest file we write (a bench result) nests 5 levels
MB = 1 << 20
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # a JSON string (skipped whole) or a bracket


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} GB"


def check_regular(path: str | Path, what: str, fix: str) -> os.stat_result:
    """The stat of ``path``, once it is sure to be a regular file (it is not opened)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist", fix) from None
    except OSError as e:
        raise UsageError(f"{what} {path} cannot be read ({e.strerror})", fix) from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {path} is {_kind(st.st_mode)}, not a file", fix)
    return st


def _open_regular(path: Path, what: str, fix: str) -> tuple[int, os.stat_result]:
    """(an open descriptor, its stat) of the regular file ``path``; anything else is refused and left closed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist", fix) from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory, not a file", fix) from None
    except OSError as e:
        raise UsageError(f"{what} {path} cannot be read ({e.strerror})", fix) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # checked on the descriptor: fdopen would refuse a directory itself
        os.close(fd)
        raise UsageError(f"{what} {path} is {_kind(st.st_mode)}, not a file", fix)
    return fd, st


def read_head(path: str | Path, what: str, fix: str, n: int) -> tuple[bytes, int]:
    """(the first ``n`` bytes, the size) of the regular file ``path``: for checking a header before a runtime, which
    would report a damaged file as its own internal error, or wait on a FIFO, is handed the file."""
    path = Path(path)
    fd, st = _open_regular(path, what, fix)
    try:
        return os.pread(fd, n, 0), st.st_size
    finally:
        os.close(fd)


def read_bytes(path: str | Path, what: str, fix: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them (a larger file is refused unread)."""
    path = Path(path)
    fd, st = _open_regular(path, what, fix)
    if st.st_size > max_bytes:
        os.close(fd)
        raise UsageError(
            f"{what} {path} is {size_text(st.st_size)}, more than any {what} holds ({size_text(max_bytes)})", fix
        )
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(max_bytes + 1)  # the size may have grown since fstat
        except OSError as e:
            raise UsageError(f"{what} {path} cannot be read ({e.strerror})", fix) from None
    if len(data) > max_bytes:
        raise UsageError(f"{what} {path} is more than any {what} holds ({size_text(max_bytes)})", fix)
    return data


def read_text(path: str | Path, what: str, fix: str, max_bytes: int) -> str:
    """The UTF-8 text of the regular file ``path`` (a UTF-8 byte-order mark is dropped)."""
    data = read_bytes(path, what, fix, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {e.start} is {data[e.start]:#04x})", fix) from None


def json_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep ``text``'s brackets nest (strings skipped), counted up to ``limit + 1``."""
    depth = deepest = 0
    for m in _TOKEN.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif c in "]}":
            depth -= 1
    return deepest


def parse_json(text: str):
    """json.loads, refusing the NaN / Infinity that Python writes but JSON does not allow."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def load_json(path: str | Path, what: str, fix: str, max_bytes: int = 64 * MB):
    """The JSON value in the regular file ``path``: UTF-8, at most ``max_bytes``, nesting at most MAX_DEPTH deep,
    no NaN / Infinity, every problem one :class:`UsageError` naming the file."""
    text = read_text(path, what, fix, max_bytes)
    if json_depth(text) > MAX_DEPTH:
        raise UsageError(f"{what} {path} nests deeper than {MAX_DEPTH} levels, which no {what} does", fix)
    try:
        return parse_json(text)
    except ValueError as e:
        raise UsageError(f"{what} {path} is not valid JSON ({getattr(e, 'msg', e)})", fix) from None
    except RecursionError:  # json_depth counts what the parser recurses on; kept as a last guard
        raise UsageError(f"{what} {path} nests too deep to parse", fix) from None
