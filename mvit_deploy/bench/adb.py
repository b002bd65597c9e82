"""Benchmark a .tflite on an Android phone with LiteRT's ``benchmark_model`` over adb.

The user supplies the ``benchmark_model`` binary (the android_aarch64 build). We push it
and the artifact, run it with the same thread / warm-up / iteration settings, and parse
its log into the bench schema. Its summary line gives min / avg / std / p5 / median / p95
(microseconds); p90 and p99 are not reported by the tool and stay null.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..artifact import read_manifest, tree_bytes
from ..errors import UsageError
from .local import SCHEMA

REMOTE_DIR = "/data/local/tmp/mvit-deploy"

_COUNT = re.compile(r"count=(\d+) first=(\d+) curr=(\d+) min=([\d.]+) max=([\d.]+) avg=([\d.]+) std=([\d.]+)(?: p5=([\d.]+) median=([\d.]+) p95=([\d.]+))?")
_TIMINGS = re.compile(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), Warmup \(avg\): ([\d.]+), Inference \(avg\): ([\d.]+)")
_MEMORY = re.compile(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init=([\d.]+) overall=([\d.]+)")


def parse_benchmark_output(text: str) -> dict:
    """benchmark_model's log -> latency (ms), load (ms) and memory (MB)."""
    counts = _COUNT.findall(text)
    timings = _TIMINGS.search(text)
    if not counts or not timings:
        raise UsageError("benchmark_model printed no timing summary", "run it by hand on the device to see its error")
    count, _first, _curr, mn, _mx, avg, std, _p5, median, _p95 = counts[-1]  # the last summary: the measured runs
    us = 1e-3
    latency = {
        "min": float(mn) * us,
        "p50": float(median) * us if median else None,
        "p90": None,
        "p99": None,
        "mean": float(avg) * us,
        "std": float(std) * us,
        "p95": float(_p95) * us if _p95 else None,
    }
    memory = _MEMORY.search(text)
    return {
        "runs": int(count),
        "latency_ms": latency,
        "load_ms": float(timings.group(1)) * us,
        "first_inference_ms": float(timings.group(2)) * us,
        "memory_overall_mb": float(memory.group(2)) if memory else None,
    }


@dataclass
class AdbDevice:
    serial: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "AdbDevice":
        return cls(spec.split(":", 1)[1] or None if ":" in spec else None)

    def adb(self, *args: str) -> list[str]:
        return ["adb", *(["-s", self.serial] if self.serial else []), *args]

    def shell(self, argv: list[str]) -> list[str]:
        """An ``adb shell`` command; the device shell sees each word quoted."""
        return self.adb("shell", " ".join(shlex.quote(a) for a in argv))

    def benchmark_command(self, remote_model: str, binary: str, threads: int, warmup: int, iters: int) -> list[str]:
        return self.shell(
            [
                f"{REMOTE_DIR}/{Path(binary).name}",
                f"--graph={remote_model}",
                f"--num_threads={threads}",
                f"--warmup_runs={warmup}",
                f"--num_runs={iters}",
                "--use_xnnpack=true",
            ]
        )

    def _run(self, argv: list[str], what: str) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        except FileNotFoundError:
            raise UsageError("adb is not installed here", "install Android platform-tools (adb) and connect the phone") from None
        if out.returncode != 0:
            raise UsageError(f"{what} failed: {(out.stderr.strip().splitlines() or ['no message'])[-1]}", "check `adb devices`")
        return out.stdout

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
            "runtimes": {"benchmark_model": Path(self.binary_name).name},
        }

    def bench(self, artifacts, binary: str, threads: int, warmup: int, iters: int) -> dict:
        binary = Path(binary)
        if not binary.is_file():
            raise UsageError(f"benchmark binary {binary} does not exist", "download LiteRT's android_aarch64 benchmark_model")
        self.binary_name = binary.name
        self._run(self.shell(["mkdir", "-p", REMOTE_DIR]), "creating the work directory")
        self._run(self.adb("push", str(binary), f"{REMOTE_DIR}/{binary.name}"), "pushing benchmark_model")
        self._run(self.shell(["chmod", "755", f"{REMOTE_DIR}/{binary.name}"]), "making benchmark_model executable")
        results, skipped = [], []
        for path in map(Path, artifacts):
            manifest = read_manifest(path)
            if manifest["target"] != "tflite":
                skipped.append({"artifact": str(path), "reason": "adb devices run .tflite artifacts only"})
                continue
            remote = f"{REMOTE_DIR}/{path.name}"
            self._run(self.adb("push", str(path), remote), f"pushing {path.name}")
            parsed = parse_benchmark_output(self._run(self.benchmark_command(remote, str(binary), threads, warmup, iters), "benchmark_model"))
            results.append(
                {
                    "artifact": path.name,
                    "model": manifest["model"],
                    "target": "tflite",
                    "precision": manifest["precision"],
                    "runtime": "litert-benchmark_model-xnnpack",
                    "input_size": manifest["input"]["size"],
                    "bytes": tree_bytes(path),
                    "load_ms": parsed["load_ms"],
                    "latency_ms": parsed["latency_ms"],
                    "throughput_ips": 1e3 / parsed["latency_ms"]["mean"],
                    "rss_delta_mb": parsed["memory_overall_mb"],
                    "parity": manifest.get("parity"),
                }
            )
        return {
            "schema": SCHEMA,
            "device": self.device_info(),
            "settings": {"threads": threads, "warmup": warmup, "iters": iters, "interleaved": False},
            "results": results,
            "peak_rss_mb": None,
            "skipped": skipped,
        }
