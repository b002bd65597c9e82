"""Latency on the machine this runs on: the device side of ``bench`` (numpy and the runtimes only).

Result schema ``mvit-deploy/bench/1`` (one JSON object):

    schema        "mvit-deploy/bench/1"
    device        {name, kind: local|ssh|adb, cpu, cores, os, machine, python, runtimes: {pkg: version},
                   isa: the CPU's vector / int8 dot-product extensions, emulated: null or what emulates it}
    settings      {threads, warmup, iters, interleaved: true}
    results[]     one per artifact (and per PyTorch reference when the host asks for one):
      artifact, model, target, precision, runtime, input_size, bytes,
      load_ms, latency_ms {min, p50, p90, p99, mean, std, samples (raw rounds, ms)}, throughput_ips,
      rss_delta_mb (resident memory added by loading + running it), parity and versions (from its manifest, if any)
    peak_rss_mb   the process's peak resident memory
    skipped[]     {artifact, reason} for artifacts this device cannot run (e.g. Core ML off macOS)
    baseline      with ``bench --baseline``: {file, max_regression, method, same_device, device}, and in each
                  result ``comparison`` {baseline_p50_ms, p50_ms, change, ci95, p_value, verdict} (bench/compare.py)

Artifacts are measured round by round (each artifact once per round, ``iters`` rounds),
so a burst of load on a noisy machine hits every artifact alike. A result from an emulated
device (``device.emulated``) holds the emulator's timings, never a device's latency.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .errors import NotOnThisDevice, UsageError
from .manifest import Manifest, package_versions, read_manifest, tree_bytes
from .runtimes import load_runner, runner_class, runtime_packages

SCHEMA = "mvit-deploy/bench/1"
IS_MACOS = sys.platform == "darwin"
# Written by scripts/aarch64_board.sh into the board it builds: the board is qemu-user, not a Pi.
BOARD_MARK = Path("/etc/mvit-deploy-board")
# CPU extensions that decide float and int8 speed (int8 pays where a dot-product instruction exists:
# VNNI / AMX on x86, asimddp / i8mm on ARMv8.2+ such as the Pi 5's Cortex-A76).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve", "fphp")


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if IS_MACOS else peak / 1024  # bytes on macOS, KiB on Linux


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


# ARM's part numbers of the cores boards carry (cpuinfo names no model on ARM Linux).
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd4d": "Cortex-A715",
    "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720",
}


def cpu_model() -> str:
    text = _cpuinfo()
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    for line in text.splitlines():
        if line.lower().startswith("cpu part"):
            part = line.split(":", 1)[1].strip().lower()
            return ARM_PARTS.get(part, f"ARM part {part}")
    if IS_MACOS:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip()
    return platform.processor() or platform.machine()


def cpu_isa() -> list[str]:
    """Which of :data:`ISA_FLAGS` the CPU reports (``flags`` on x86, ``Features`` on ARM)."""
    words: set[str] = set()
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")):
            words |= set(line.split(":", 1)[1].split())
    if IS_MACOS and platform.machine() == "arm64":
        words |= {"asimd", "asimddp", "fphp"}  # every Apple silicon core has them
    return [f for f in ISA_FLAGS if f in words]


def emulation() -> str | None:
    """What emulates this machine, if we can tell: our board's mark, or qemu-user's own environment."""
    try:
        return BOARD_MARK.read_text().strip().removeprefix("emulated: ") or "emulated"
    except OSError:
        pass
    qemu = sorted(k for k in os.environ if k.startswith("QEMU_"))
    return f"qemu-user ({', '.join(qemu)} set)" if qemu else None


def device_info(kind: str = "local", name: str | None = None) -> dict:
    return {
        "name": name or platform.node(),
        "kind": kind,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtimes": package_versions(["numpy", *runtime_packages(), "torch", "mvit-deploy"]),
        "isa": cpu_isa(),
        "emulated": emulation(),
    }


def latency_stats(seconds: list[float]) -> dict:
    """Percentiles of one artifact's rounds, and the raw rounds in ms (``samples``: a later run's
    ``--baseline`` tests against them, bench/compare.py)."""
    ms = np.asarray(seconds) * 1e3
    return {
        "min": float(ms.min()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "std": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        "samples": [round(float(v), 4) for v in ms],
    }


def result_entry(
    artifact: str,
    manifest: Manifest,
    runtime: str,
    nbytes: int | None,
    load_ms: float | None,
    latency: dict,
    rss_delta_mb: float | None,
    **extra,
) -> dict:
    """One artifact's row of a bench result, the same on every device (local, ssh, adb, AI Hub); ``extra``: the device's
    own fields."""
    return {
        "artifact": artifact,
        "model": manifest.model,
        "target": manifest.target,
        "precision": manifest.precision,
        "runtime": runtime,
        "input_size": manifest.input.size,
        "bytes": nbytes,
        "load_ms": load_ms,
        "latency_ms": latency,
        "throughput_ips": 1e3 / latency["mean"],
        "rss_delta_mb": rss_delta_mb,
        "parity": manifest.parity,
        "versions": manifest.versions,  # the converters that made it (report: artifact metadata)
        **extra,
    }


class Subject:
    """One thing to time: an artifact's runner, or (from the host) the PyTorch reference."""

    def __init__(
        self, label: str, manifest: Manifest, run, load_ms: float, rss_before: float, size: int | None, runtime: str
    ):
        self.label, self.manifest, self.run = label, manifest, run
        self.load_ms, self.rss_before, self.size, self.runtime = load_ms, rss_before, size, runtime
        self.rss_delta = 0.0
        self.times: list[float] = []


def device_runner(path: Path, manifest: Manifest, threads: int, runtime_options: dict):
    """The runner this side times; the host times its targets' ``bench_runner`` instead (bench/local.py)."""
    return load_runner(path, manifest, threads, **runtime_options)


def load_subject(path: Path, threads: int, runtime_options: dict, make_runner=device_runner) -> Subject:
    """Load one artifact to time: its runtime imported first, then the load itself timed."""
    manifest = read_manifest(path)
    runner_class(manifest.target).preload()
    before = _rss_mb()
    t0 = time.perf_counter()
    runner = make_runner(path, manifest, threads, runtime_options)
    load_ms = (time.perf_counter() - t0) * 1e3
    return Subject(str(path), manifest, runner, load_ms, before, tree_bytes(path), runner.runtime)


# A run this much slower with denormals kept than flushed is reported: its activations
# underflow. On an Intel Xeon (Sapphire Rapids) seeded HF weights without BatchNorm
# statistics ran 15x slower in onnxruntime (118 ms vs 8 ms); trained weights: no difference
# (benchmarks/latency.py). Below this, timer noise on a busy 2-core VM (+-30 %) decides.
DENORMAL_SLOWDOWN = 1.5
# Each mode is timed this many times, alternating; the slowdown reported is the smallest of the rounds' ratios,
# so one noisy round cannot raise it (a demo run here once warned at 1.6x from a best-of-2 ratio on trained XXS).
DENORMAL_ROUNDS = 3


def denormal_slowdown(path: Path, manifest: Manifest, threads: int, rounds: int = DENORMAL_ROUNDS) -> float | None:
    """Latency with denormals kept / with them flushed to zero, for runtimes that can flush: the smallest
    ratio of ``rounds`` alternating pairs, so only a slowdown every round shows counts (noise does not).

    onnxruntime applies its flush setting process-wide, from the first session on, so each
    mode is timed alone in a child process (``python -m mvit_deploy.device bench --denormals MODE``),
    the modes alternating over ``rounds`` so a noisy minute hits both. ``bench`` runs this
    before any of its own runtimes has run: their idle thread pools would spin against the children.
    """
    if "denormals" not in runner_class(manifest.target).options:
        return None
    ratios = []
    root = Path(__file__).resolve().parents[len(__package__.split("."))]  # the folder this package is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    for _ in range(rounds):
        best = {}
        for mode in ("keep", "flush"):
            argv = [
                sys.executable,
                "-m",
                __package__,
                "bench",
                str(path),
                "--threads",
                str(threads),
                "--warmup",
                "3",
                "--iters",
                "10",
                "--denormals",
                mode,
            ]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
            if done.returncode != 0:
                return None  # advisory: the main run times the artifact regardless
            best[mode] = json.loads(done.stdout)["results"][0]["latency_ms"]["min"]
        ratios.append(best["keep"] / best["flush"])
    return min(ratios)


def bench(
    artifacts,
    threads: int = 2,
    warmup: int = 5,
    iters: int = 50,
    on_round=None,
    denormal_check: bool = True,
    more_subjects=None,
    make_runner=device_runner,
    **runtime_options,
) -> dict:
    """Measure every artifact on this machine, interleaved round by round.

    ``denormal_check``: time each artifact whose runtime can flush denormals once more with
    them flushed (:func:`denormal_slowdown`), reported as ``denormal_slowdown``.
    ``more_subjects``: subjects -> further :class:`Subject` to time in the same rounds (the host's PyTorch reference).
    ``make_runner``: (path, manifest, threads, runtime_options) -> the runner timed (:func:`device_runner`).
    ``runtime_options``: the targets' ``bench_options`` (each runner takes its own, ignores the others').
    """
    if warmup < 0 or iters < 2:
        raise UsageError(f"--warmup {warmup} / --iters {iters}", "use warmup >= 0 and iters >= 2")
    subjects: list[Subject] = []
    skipped = []
    for path in map(Path, artifacts):
        try:
            subjects.append(load_subject(path, threads, runtime_options, make_runner))
        except NotOnThisDevice as e:
            skipped.append({"artifact": str(path), "reason": e.one_line()})
    # loaded runtimes have not run yet, so no idle pool of ours spins against the probe's children
    denormals = {}
    if denormal_check and runtime_options.get("denormals", "keep") == "keep":
        denormals = {s.label: denormal_slowdown(Path(s.label), s.manifest, threads) for s in subjects}
    if more_subjects is not None:
        subjects += more_subjects(subjects)
    if not subjects:
        raise UsageError(
            "nothing to benchmark on this device", skipped[0]["reason"] if skipped else "pass exported artifacts"
        )
    rng = np.random.default_rng(0)
    inputs: dict[int, np.ndarray] = {}
    for s in subjects:
        size = s.manifest.input.size
        if size not in inputs:
            inputs[size] = rng.random((1, 3, size, size), dtype=np.float32)
        for _ in range(max(1, warmup)):
            s.run(inputs[size])
        s.rss_delta = max(0.0, _rss_mb() - s.rss_before)
    for i in range(iters):
        for s in subjects:
            x = inputs[s.manifest.input.size]
            t0 = time.perf_counter()
            s.run(x)
            s.times.append(time.perf_counter() - t0)
        if on_round:
            on_round(i + 1, iters)
    results = []
    for s in subjects:
        slow = denormals.get(s.label)
        results.append(
            result_entry(
                s.label,
                s.manifest,
                s.runtime,
                s.size,
                s.load_ms,
                latency_stats(s.times),
                round(s.rss_delta, 1),
                denormal_slowdown=None if slow is None else round(slow, 2),
            )
        )
    return {
        "schema": SCHEMA,
        "device": device_info(),
        "settings": {"threads": threads, "warmup": warmup, "iters": iters, "interleaved": True, **runtime_options},
        "results": results,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "skipped": skipped,
        "argv": sys.argv[1:],
    }
