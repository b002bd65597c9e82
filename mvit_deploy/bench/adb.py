"""An Android phone over adb: latency from each runtime's own benchmark binary, logits from a Python on the phone.

A target that has one declares it (``Target.adb``: the binary's name, its command line and a
parser of its output). The user supplies the binaries (android_aarch64 builds); we push them
and the artifacts, run each with the same thread / warm-up / iteration settings, and parse
its log into the bench schema. A statistic a binary does not report stays null.

``parity --device adb`` needs a Python the adb shell can run, with numpy and the artifact's runtime
(``--remote-python``): the device side is pushed with the artifact and the preprocessed images, run
there, and the logits pulled back — the same device side as over ssh.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifact import read_manifest, tree_bytes
from ..errors import UsageError
from .local import SCHEMA, result_entry

REMOTE_DIR = "/data/local/tmp/mvit-deploy"


@dataclass
class AdbDevice:
    serial: str | None = None
    python: str = "python3"  # parity: a Python the adb shell runs (numpy and the runtime installed)

    @classmethod
    def parse(cls, spec: str, python: str = "python3") -> AdbDevice:
        return cls(spec.split(":", 1)[1] or None if ":" in spec else None, python)

    @property
    def target(self) -> str:
        return f"adb:{self.serial}" if self.serial else "adb"

    def run_logits(self, artifact, x: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, dict]:
        """The artifact's logits for ``x`` computed on the phone by the device side, and its answer."""
        from ..artifact import manifest_path
        from .ssh import REMOTE_PACKAGE, device_answer, stage_device_code

        artifact, work = Path(artifact), f"{REMOTE_DIR}/parity"
        with tempfile.TemporaryDirectory(prefix="mvit-adb-") as tmp:
            code = stage_device_code(Path(tmp))
            np.savez(Path(tmp) / "inputs.npz", x=np.ascontiguousarray(x, np.float32))
            self._run(self.shell(["rm", "-rf", work]), "clearing the work directory")
            self._run(self.shell(["mkdir", "-p", work]), "creating the work directory")
            for f in (code, artifact, manifest_path(artifact), Path(tmp) / "inputs.npz"):
                self._run(self.adb("push", str(f), f"{work}/"), f"pushing {f.name}")
            args = [
                self.python,
                "-m",
                REMOTE_PACKAGE,
                "run",
                f"{work}/{artifact.name}",
                "--inputs",
                f"{work}/inputs.npz",
                "--out",
                f"{work}/logits.npz",
            ]
            args += ["--threads", str(threads)] if threads else []
            script = f"cd {shlex.quote(work)} && PYTHONPATH={shlex.quote(work)} " + " ".join(
                shlex.quote(a) for a in args
            )
            out = self._run(
                self.shell(["sh", "-c", script]),
                f"running {artifact.name} with {self.python} on the phone "
                "(a Python the adb shell can run, with numpy and the runtime: --remote-python)",
            )
            self._run(self.adb("pull", f"{work}/logits.npz", str(Path(tmp) / "logits.npz")), "pulling the logits")
            self._run(self.shell(["rm", "-rf", work]), "removing the work directory")
            logits, answer = device_answer(
                out, Path(tmp) / "logits.npz", len(x), f"running {artifact.name}", self.target
            )
        answer["device"].update(kind="adb", name=self.serial or answer["device"].get("name"))
        return logits, answer

    def adb(self, *args: str) -> list[str]:
        return ["adb", *(["-s", self.serial] if self.serial else []), *args]

    def shell(self, argv: list[str]) -> list[str]:
        """An ``adb shell`` command; the device shell sees each word quoted."""
        return self.adb("shell", " ".join(shlex.quote(a) for a in argv))

    def benchmark_command(
        self, target, remote_model: str, binary: str, threads: int, warmup: int, iters: int
    ) -> list[str]:
        return self.shell(target.adb.command(remote_model, f"{REMOTE_DIR}/{Path(binary).name}", threads, warmup, iters))

    def _run(self, argv: list[str], what: str, both: bool = False) -> str:
        """Run a local adb command; ``both``: return stdout and stderr (benchmark binaries log to either)."""
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        except FileNotFoundError:
            raise UsageError(
                "adb is not installed here", "install Android platform-tools (adb) and connect the phone"
            ) from None
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["no message"])[-1]
            if last.startswith("error: "):  # the device side's own one-line error
                raise UsageError(f"{what}: {last.removeprefix('error: ')}")
            raise UsageError(f"{what} failed: {last}", "check `adb devices`")
        return out.stdout + out.stderr if both else out.stdout

    def device_info(self) -> dict:
        def prop(name):
            return self._run(self.shell(["getprop", name]), "reading device properties").strip()

        cores = self._run(self.shell(["nproc"]), "counting cores").strip()
        return {
            "name": prop("ro.product.model"),
            "kind": "adb",
            "cpu": prop("ro.board.platform") or prop("ro.hardware"),
            "cores": int(cores) if cores.isdigit() else None,
            "os": f"Android {prop('ro.build.version.release')}",
            "machine": prop("ro.product.cpu.abi"),
            "python": None,
            "runtimes": {name: name for name in self.binary_names},
        }

    def bench(self, artifacts, binaries, threads: int, warmup: int, iters: int) -> dict:
        from ..targets import TARGETS, get_target

        binaries = [Path(b) for b in ([binaries] if isinstance(binaries, (str, Path)) else binaries)]
        for b in binaries:
            if not b.is_file():
                raise UsageError(
                    f"benchmark binary {b} does not exist", "pass the runtime's android_aarch64 benchmark binary"
                )
        manifests = [
            (Path(p), read_manifest(p)) for p in artifacts
        ]  # every artifact checked before the phone is touched
        kinds = {m.target for _, m in manifests if get_target(m.target).adb}
        choice = {}
        for name in kinds:
            spec = get_target(name).adb
            named = [b for b in binaries if spec.binary in b.name]
            choice[name] = named[0] if named else (binaries[0] if len(binaries) == 1 and len(kinds) == 1 else None)
        self.binary_names = sorted({b.name for b in choice.values() if b})
        self._run(self.shell(["mkdir", "-p", REMOTE_DIR]), "creating the work directory")
        for b in {b for b in choice.values() if b}:
            self._run(self.adb("push", str(b), f"{REMOTE_DIR}/{b.name}"), f"pushing {b.name}")
            self._run(self.shell(["chmod", "755", f"{REMOTE_DIR}/{b.name}"]), f"making {b.name} executable")
        with_adb = ", ".join(f"{t.suffix} ({t.adb.binary})" for t in TARGETS.values() if t.adb)
        results, skipped = [], []
        for path, manifest in manifests:
            target = get_target(manifest.target)
            if not target.adb:
                skipped.append({"artifact": str(path), "reason": f"adb devices run {with_adb} artifacts only"})
                continue
            binary = choice[target.name]
            if binary is None:
                skipped.append(
                    {
                        "artifact": str(path),
                        "reason": f"no benchmark binary for {path.name}: pass --benchmark-binary PATH to "
                        f"{target.adb.where}",
                    }
                )
                continue
            remote = f"{REMOTE_DIR}/{path.name}"
            self._run(self.adb("push", str(path), remote), f"pushing {path.name}")
            parsed = target.adb.parse(
                self._run(
                    self.benchmark_command(target, remote, str(binary), threads, warmup, iters), binary.name, both=True
                )
            )
            results.append(
                result_entry(
                    path.name,
                    manifest,
                    target.adb.runtime,
                    tree_bytes(path),
                    parsed["load_ms"],
                    parsed["latency_ms"],
                    parsed["memory_overall_mb"],
                )
            )
        return {
            "schema": SCHEMA,
            "device": self.device_info(),
            "settings": {"threads": threads, "warmup": warmup, "iters": iters, "interleaved": False},
            "results": results,
            "peak_rss_mb": None,
            "skipped": skipped,
        }
