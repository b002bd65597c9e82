"""A board over ssh (a Raspberry Pi, a Mac): copy the device side and the artifacts, run them with the board's
Python, fetch the answer.

Every remote path and argument is passed through ``shlex.quote``; local commands are
argument lists, never a shell string, with ``--`` before the destination (a user or host that
starts with ``-`` is refused outright: ``ssh://-oProxyCommand=...@host`` must never reach ssh as
an option). What the board answers is checked before it is trusted (``results.run_problem``).
The remote needs python3 with numpy and the runtime of each artifact
(``pip install 'mvit-deploy[device]'``); our device side (``mvit_deploy/device/``, and only it)
is copied with the artifacts as ``mvit_deploy_device``, so the remote's own mvit-deploy version
does not matter.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..artifact import manifest_path
from ..errors import UsageError
from ..results import run_problem

DEVICE_PACKAGE = Path(__file__).resolve().parents[1] / "device"  # mvit_deploy/device/: the whole device side
REMOTE_PACKAGE = "mvit_deploy_device"  # its name on the device (relative imports only: any name works)


def stage_device_code(dest: Path) -> Path:
    """A copy of the device side's source files (no caches) as ``dest/REMOTE_PACKAGE``."""
    root = Path(dest) / REMOTE_PACKAGE
    for f in sorted(DEVICE_PACKAGE.rglob("*.py")):
        target = root / f.relative_to(DEVICE_PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    return root


def parse_answer(out: str, what: str, where: str, keys: tuple[str, ...]) -> dict:
    """The device side's JSON answer, refused in one line when it is not one (a different program answered)."""
    from ..device.files import MAX_DEPTH, json_depth, parse_json

    try:
        data = parse_json(out) if json_depth(out) <= MAX_DEPTH else None
    except ValueError:  # not JSON, or NaN / Infinity in it
        data = None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise RemoteError(
            f"{what} on {where} gave no answer of the device side's shape", "run it by hand there to see why"
        )
    return data


def device_answer(out: str, logits_file: Path, n: int, what: str, where: str) -> tuple[np.ndarray, dict]:
    """The device side's ``run`` answer and the logits it wrote, each checked before it is trusted."""
    answer = parse_answer(out, what, where, ("device", "runtime", "n"))
    device = answer["device"]
    if (
        not isinstance(device, dict)
        or not all(isinstance(device.get(k), str) for k in ("cpu", "machine", "os"))
        or not isinstance(device.get("runtimes") or {}, dict)
        or not isinstance(answer["runtime"], str)
        or not isinstance(answer.get("seconds", 0), (int, float))
    ):
        raise RemoteError(
            f"{what} on {where} gave no answer of the device side's shape (device {{cpu, machine, os}}, runtime)",
            "run it by hand there to see why; its mvit-deploy device side may be another version",
        )
    try:
        with np.load(logits_file, allow_pickle=False) as data:
            logits = np.asarray(data["logits"], np.float32)
    except (OSError, ValueError, KeyError):
        raise RemoteError(f"the logits {where} sent back are not readable", "run it by hand there to see why") from None
    if logits.ndim != 2 or len(logits) != n:
        raise RemoteError(
            f"{where} sent back logits of shape {logits.shape} for {n} images", "check the device's runtime versions"
        )
    return logits, answer


class RemoteError(UsageError):
    """The device could not be reached or its run failed: an input error (exit 2), not a failed bound."""


@dataclass
class SshDevice:
    host: str
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    options: tuple[str, ...] = field(default_factory=tuple)  # extra `-o KEY=VALUE`
    python: str = "python3"

    @classmethod
    def parse(cls, spec: str, identity=None, options=(), python: str = "python3") -> SshDevice:
        parts = urlsplit(spec)
        if parts.scheme != "ssh" or not parts.hostname:
            raise UsageError(f"bad ssh device {spec!r}", "use ssh://user@host[:port]")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"bad port in {spec!r}", "use ssh://user@host:22") from None
        for what, value in (("user", parts.username), ("host", parts.hostname)):
            if value is None:
                continue
            if value.startswith("-"):  # ssh would read "-oProxyCommand=..." as an option, and run its command
                problem = f"the {what} {value!r} starts with '-', which ssh would read as an option"
            elif not value.isprintable() or " " in value:
                problem = f"the {what} {value!r} holds a space or a control character"
            else:
                continue
            raise UsageError(
                f"bad ssh device {spec!r}: {problem}", "use ssh://user@host[:port] with a plain user and host"
            )
        return cls(parts.hostname, parts.username, port, identity, tuple(options), python)

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _common(self, port_flag: str) -> list[str]:
        args = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        for opt in self.options:
            args += ["-o", opt]
        if self.identity:
            args += ["-i", self.identity]
        if self.port:
            args += [port_flag, str(self.port)]
        return args

    def ssh_command(self, remote_argv: list[str]) -> list[str]:
        """The local argv that runs ``remote_argv`` remotely, every word quoted for the remote shell."""
        return ["ssh", *self._common("-p"), "--", self.target, " ".join(shlex.quote(a) for a in remote_argv)]

    def _run(self, argv: list[str], what: str, timeout: int = 900) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise UsageError(f"{argv[0]} is not installed here", "install the OpenSSH client") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{what} on {self.target} timed out", "check the device and the network") from None
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["no message"])[-1]
            if last.startswith("error: "):  # the device side's own one-line error
                raise RemoteError(f"{what} on {self.target}: {last.removeprefix('error: ')}")
            raise RemoteError(
                f"{what} on {self.target} failed: {last}", "check ssh access (key, user, port) and the remote python"
            )
        return out.stdout

    def remote_shell(self, script: str, what: str) -> str:
        return self._run(["ssh", *self._common("-p"), "--", self.target, script], what)

    @contextmanager
    def session(self, files):
        """A fresh remote work directory holding the device side and ``files``; removed afterwards."""
        remote_dir = self.remote_shell("mktemp -d /tmp/mvit-device.XXXXXX", "creating a work directory").strip()
        if not re.fullmatch(r"/tmp/mvit-device\.[A-Za-z0-9]+", remote_dir):  # scp (SFTP mode) takes it literally
            raise RemoteError(f"unexpected remote directory {remote_dir!r}", "check the remote shell")
        try:
            with tempfile.TemporaryDirectory(prefix="mvit-device-") as tmp:
                code = stage_device_code(Path(tmp))
                self._run(
                    [
                        "scp",
                        "-q",
                        "-r",
                        *self._common("-P"),
                        "--",
                        str(code),
                        *map(str, files),
                        f"{self.target}:{remote_dir}/",
                    ],
                    "copying the device side",
                )
            yield remote_dir
        finally:
            subprocess.run(
                ["ssh", *self._common("-p"), "--", self.target, f"rm -rf {shlex.quote(remote_dir)}"],
                capture_output=True,
                timeout=60,
            )

    def device_command(self, remote_dir: str, args: list[str]) -> str:
        """The remote shell line that runs the copied device side: ``python -m mvit_deploy_device ARGS``."""
        argv = [self.python, "-m", REMOTE_PACKAGE, *args]
        return f"cd {shlex.quote(remote_dir)} && PYTHONPATH={shlex.quote(remote_dir)} " + " ".join(
            shlex.quote(a) for a in argv
        )

    def bench(self, artifacts, threads: int, warmup: int, iters: int) -> dict:
        artifacts = [Path(a) for a in artifacts]
        files = []
        for a in artifacts:
            if not a.exists():
                raise UsageError(f"artifact {a} does not exist", "check the path")
            files += [a, manifest_path(a)]
        with self.session(files) as remote_dir:
            args = [
                "bench",
                *[f"{remote_dir}/{a.name}" for a in artifacts],
                "--threads",
                str(threads),
                "--warmup",
                str(warmup),
                "--iters",
                str(iters),
            ]
            out = self.remote_shell(self.device_command(remote_dir, args), "running the benchmark")
        result = parse_answer(out, "the remote benchmark", self.target, ("device", "results"))
        problem = run_problem(result)
        if problem:
            raise RemoteError(
                f"the remote benchmark on {self.target} answered a bench result of the wrong shape: {problem}",
                "run it by hand there to see why; its mvit-deploy device side may be another version",
            )
        result["device"].update(kind="ssh", name=self.host)
        for r in result["results"]:
            r["artifact"] = str(Path(r["artifact"]).name)
        return result

    def run_logits(self, artifact, x: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, dict]:
        """The artifact's logits for ``x`` computed on the device, and the device's answer (device info, runtime,
        seconds)."""
        artifact = Path(artifact)
        with tempfile.TemporaryDirectory(prefix="mvit-device-io-") as tmp:
            inputs = Path(tmp) / "inputs.npz"
            np.savez(inputs, x=np.ascontiguousarray(x, np.float32))
            with self.session([artifact, manifest_path(artifact), inputs]) as remote_dir:
                args = [
                    "run",
                    f"{remote_dir}/{artifact.name}",
                    "--inputs",
                    f"{remote_dir}/inputs.npz",
                    "--out",
                    f"{remote_dir}/logits.npz",
                ]
                args += ["--threads", str(threads)] if threads else []
                out = self.remote_shell(self.device_command(remote_dir, args), f"running {artifact.name}")
                self._run(
                    [
                        "scp",
                        "-q",
                        *self._common("-P"),
                        "--",
                        f"{self.target}:{remote_dir}/logits.npz",
                        str(Path(tmp) / "logits.npz"),
                    ],
                    "fetching the logits",
                )
            logits, answer = device_answer(
                out, Path(tmp) / "logits.npz", len(x), f"running {artifact.name}", self.target
            )
        answer["device"].update(kind="ssh", name=self.host)
        return logits, answer
