"""Latency on this machine. Torch-free unless the PyTorch reference is asked for.

Result schema ``mvit-deploy/bench/1`` (one JSON object):

    schema        "mvit-deploy/bench/1"
    device        {name, kind: local|ssh|adb, cpu, cores, os, machine, python, runtimes: {pkg: version}}
    settings      {threads, warmup, iters, interleaved: true}
    results[]     one per artifact (and per PyTorch reference when asked):
      artifact, model, target, precision, runtime, input_size, bytes,
      load_ms, latency_ms {min, p50, p90, p99, mean, std, samples (raw rounds, ms)}, throughput_ips,
      rss_delta_mb (resident memory added by loading + running it), parity and versions (from its manifest, if any)
    peak_rss_mb   the process's peak resident memory
    skipped[]     {artifact, reason} for artifacts this device cannot run (e.g. Core ML off macOS)
    baseline      with ``bench --baseline``: {file, max_regression, method, same_device, device}, and in each
                  result ``comparison`` {baseline_p50_ms, p50_ms, change, ci95, p_value, verdict} (bench/compare.py)

Artifacts are measured round by round (each artifact once per round, ``iters`` rounds),
so a burst of load on a noisy machine hits every artifact alike.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from .._deps import IS_MACOS
from ..artifact import package_versions, read_manifest, tree_bytes
from ..errors import NotOnThisDevice, UsageError
from ..results import SCHEMA


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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if IS_MACOS:
        import subprocess

        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip()
    return platform.processor() or platform.machine()


def device_info(kind: str = "local", name: str | None = None) -> dict:
    from ..targets import packages

    runtimes = package_versions(["numpy", *packages("runtime"), "torch", "mvit-deploy"])
    return {
        "name": name or platform.node(),
        "kind": kind,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtimes": runtimes,
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


def result_entry(artifact: str, manifest: dict, runtime: str, nbytes: int | None, load_ms: float | None, latency: dict,
                 rss_delta_mb: float | None, **extra) -> dict:
    """One artifact's row of a bench result, the same on every device (local, ssh, adb, AI Hub); ``extra``: the device's own fields."""
    return {
        "artifact": artifact,
        "model": manifest["model"],
        "target": manifest["target"],
        "precision": manifest["precision"],
        "runtime": runtime,
        "input_size": manifest["input"]["size"],
        "bytes": nbytes,
        "load_ms": load_ms,
        "latency_ms": latency,
        "throughput_ips": 1e3 / latency["mean"],
        "rss_delta_mb": rss_delta_mb,
        "parity": manifest.get("parity"),
        "versions": manifest.get("versions"),  # the converters that made it (report: artifact metadata)
        **extra,
    }


class _Subject:
    """One thing to time: an artifact's runner, or the PyTorch reference."""

    def __init__(self, label: str, manifest: dict, run, load_ms: float, rss_delta: float, size: int | None, runtime: str):
        self.label, self.manifest, self.run = label, manifest, run
        self.load_ms, self.rss_delta, self.size, self.runtime = load_ms, rss_delta, size, runtime
        self.times: list[float] = []


def _load_artifact(path: Path, threads: int, runtime_options: dict):
    from ..targets import get_target

    manifest = read_manifest(path)
    target = get_target(manifest["target"])
    known = {o.field for o in target.bench_options}
    target.import_runtime()
    before = _rss_mb()
    t0 = time.perf_counter()
    runner = target.bench_runner(path, manifest, threads, **{k: v for k, v in runtime_options.items() if k in known})
    load_ms = (time.perf_counter() - t0) * 1e3
    return manifest, runner, load_ms, before


def _reference_subject(manifest: dict, threads: int) -> _Subject:
    # OpenMP workers that spin after each PyTorch call would slow the artifact timed next
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from ..parity import reference_model

    torch.set_num_threads(threads)
    before = _rss_mb()
    t0 = time.perf_counter()
    model = reference_model(manifest)
    load_ms = (time.perf_counter() - t0) * 1e3

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    ref_manifest = {**manifest, "target": "pytorch", "precision": "fp32", "parity": None, "versions": None}  # it is the reference
    subject = _Subject(f"pytorch:{manifest['model']}", ref_manifest, run, load_ms, 0.0, None, "pytorch-eager")
    subject.rss_before = before
    return subject


# A run this much slower with denormals kept than flushed is reported: its activations
# underflow. On an Intel Xeon (Sapphire Rapids) seeded HF weights without BatchNorm
# statistics ran 15x slower in onnxruntime (118 ms vs 8 ms); trained weights: no difference
# (benchmarks/latency.py). Below this, timer noise on a busy 2-core VM (+-30 %) decides.
DENORMAL_SLOWDOWN = 1.5


def denormal_slowdown(path: Path, manifest: dict, threads: int, rounds: int = 2) -> float | None:
    """Best latency with denormals kept / best with them flushed to zero, for runtimes that can flush.

    onnxruntime applies its flush setting process-wide, from the first session on, so each
    mode is timed alone in a child process (``python -m mvit_deploy.bench --denormals MODE``),
    the modes alternating over ``rounds`` so a noisy minute hits both. ``bench`` runs this
    before any of its own runtimes has run: their idle thread pools would spin against the children.
    """
    import json
    import subprocess

    from ..targets import get_target

    if not any(o.field == "denormals" for o in get_target(manifest["target"]).bench_options):
        return None
    best = {"keep": float("inf"), "flush": float("inf")}
    for _ in range(rounds):
        for mode in best:
            argv = [sys.executable, "-m", "mvit_deploy.bench", str(path), "--threads", str(threads), "--warmup", "3", "--iters", "10", "--denormals", mode]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                return None  # advisory: the main run times the artifact regardless
            best[mode] = min(best[mode], json.loads(done.stdout)["results"][0]["latency_ms"]["min"])
    return best["keep"] / best["flush"]


def bench(artifacts, threads: int = 2, warmup: int = 5, iters: int = 50, reference: bool = False, on_round=None, denormal_check: bool = True,
          **runtime_options) -> dict:  # fmt: skip
    """Measure every artifact on this machine, interleaved round by round.

    ``denormal_check``: time each artifact whose runtime can flush denormals once more with
    them flushed (:func:`denormal_slowdown`), reported as ``denormal_slowdown``.

    ``runtime_options``: the targets' ``bench_options`` (each target takes its own, ignores the others').
    """
    if warmup < 0 or iters < 2:
        raise UsageError(f"--warmup {warmup} / --iters {iters}", "use warmup >= 0 and iters >= 2")
    subjects: list[_Subject] = []
    skipped = []
    inputs: dict[str, np.ndarray] = {}
    for path in map(Path, artifacts):
        try:
            manifest, runner, load_ms, before = _load_artifact(path, threads, runtime_options)
        except NotOnThisDevice as e:
            skipped.append({"artifact": str(path), "reason": e.one_line()})
            continue
        subjects.append(_Subject(str(path), manifest, runner, load_ms, before, tree_bytes(path), runner.runtime))
    # loaded runtimes have not run yet, so no idle pool of ours spins against the probe's children
    denormals = {}
    if denormal_check and runtime_options.get("denormals", "keep") == "keep":
        denormals = {s.label: denormal_slowdown(Path(s.label), s.manifest, threads) for s in subjects}
    if reference:
        seen = set()
        for s in list(subjects):
            key = (s.manifest["model"], s.manifest["checkpoint"].get("sha256"), s.manifest["input"]["size"])
            if key not in seen:
                seen.add(key)
                subjects.append(_reference_subject(s.manifest, threads))
    if not subjects:
        raise UsageError("nothing to benchmark on this device", skipped[0]["reason"] if skipped else "pass exported artifacts")
    rng = np.random.default_rng(0)
    for s in subjects:
        size = s.manifest["input"]["size"]
        if size not in inputs:
            inputs[size] = rng.random((1, 3, size, size), dtype=np.float32)
        for _ in range(max(1, warmup)):
            s.run(inputs[size])
        before = getattr(s, "rss_before", s.rss_delta)
        s.rss_delta = max(0.0, _rss_mb() - before)
    for i in range(iters):
        for s in subjects:
            x = inputs[s.manifest["input"]["size"]]
            t0 = time.perf_counter()
            s.run(x)
            s.times.append(time.perf_counter() - t0)
        if on_round:
            on_round(i + 1, iters)
    results = []
    for s in subjects:
        s.denormals = denormals.get(s.label)
        stats = latency_stats(s.times)
        results.append(result_entry(s.label, s.manifest, s.runtime, s.size, s.load_ms, stats, round(s.rss_delta, 1),
                                    denormal_slowdown=None if s.denormals is None else round(s.denormals, 2)))  # fmt: skip
    return {
        "schema": SCHEMA,
        "device": device_info(),
        "settings": {"threads": threads, "warmup": warmup, "iters": iters, "interleaved": True, **runtime_options},
        "results": results,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "skipped": skipped,
        "argv": sys.argv[1:],
    }
