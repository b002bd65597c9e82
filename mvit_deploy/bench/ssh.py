"""Benchmark on a board over ssh (a Raspberry Pi): copy, run with the remote's Python, fetch JSON.

Every remote path and argument is passed through ``shlex.quote``; local commands are
argument lists, never a shell string. The remote needs python3 with numpy and the
runtime of each artifact (``pip install 'mvit-deploy[device]'``); our device-side code is
copied with the artifacts, so the remote's own mvit-deploy version does not matter.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..artifact import manifest_path
from ..errors import UsageError

PACKAGE = Path(__file__).resolve().parents[1]  # mvit_deploy/
DEVICE_MODULES = ("__init__.py", "errors.py", "_deps.py", "artifact.py", "metrics.py", "runtimes.py", "targets", "bench", "labels")


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
    def parse(cls, spec: str, identity=None, options=(), python: str = "python3") -> "SshDevice":
        parts = urlsplit(spec)
        if parts.scheme != "ssh" or not parts.hostname:
            raise UsageError(f"bad ssh device {spec!r}", "use ssh://user@host[:port]")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"bad port in {spec!r}", "use ssh://user@host:22") from None
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
        return ["ssh", *self._common("-p"), self.target, " ".join(shlex.quote(a) for a in remote_argv)]

    def _run(self, argv: list[str], what: str, timeout: int = 900) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise UsageError(f"{argv[0]} is not installed here", "install the OpenSSH client") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{what} on {self.target} timed out", "check the device and the network") from None
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["no message"])[-1]
            raise RemoteError(f"{what} on {self.target} failed: {last}", "check ssh access (key, user, port) and the remote python")
        return out.stdout

    def remote_shell(self, script: str, what: str) -> str:
        return self._run(["ssh", *self._common("-p"), self.target, script], what)

    def bench(self, artifacts, threads: int, warmup: int, iters: int) -> dict:
        artifacts = [Path(a) for a in artifacts]
        files = []
        for a in artifacts:
            if not a.exists():
                raise UsageError(f"artifact {a} does not exist", "check the path")
            files += [a, manifest_path(a)]
        remote_dir = self.remote_shell("mktemp -d /tmp/mvit-bench.XXXXXX", "creating a work directory").strip()
        if not re.fullmatch(r"/tmp/mvit-bench\.[A-Za-z0-9]+", remote_dir):  # scp (SFTP mode) takes it literally
            raise RemoteError(f"unexpected remote directory {remote_dir!r}", "check the remote shell")
        try:
            pkg = [str(PACKAGE / m) for m in DEVICE_MODULES]
            self._run(["ssh", *self._common("-p"), self.target, f"mkdir -p {shlex.quote(remote_dir + '/mvit_deploy')}"], "preparing")
            self._run(["scp", "-q", "-r", *self._common("-P"), *pkg, f"{self.target}:{remote_dir}/mvit_deploy/"], "copying the device code")
            self._run(["scp", "-q", "-r", *self._common("-P"), *map(str, files), f"{self.target}:{remote_dir}/"], "copying artifacts")
            argv = [self.python, "-m", "mvit_deploy.bench", *[f"{remote_dir}/{a.name}" for a in artifacts]]
            argv += ["--threads", str(threads), "--warmup", str(warmup), "--iters", str(iters)]
            script = f"cd {shlex.quote(remote_dir)} && PYTHONPATH={shlex.quote(remote_dir)} " + " ".join(shlex.quote(a) for a in argv)
            out = self.remote_shell(script, "running the benchmark")
        finally:
            subprocess.run(["ssh", *self._common("-p"), self.target, f"rm -rf {shlex.quote(remote_dir)}"], capture_output=True, timeout=60)
        try:
            result = json.loads(out)
        except json.JSONDecodeError:
            raise RemoteError(f"the remote benchmark on {self.target} printed no JSON", "run it by hand to see why") from None
        result["device"].update(kind="ssh", name=self.host)
        for r in result["results"]:
            r["artifact"] = str(Path(r["artifact"]).name)
        return result
