"""Latency benchmarks: here, on a board over ssh, on an Android phone over adb, on Qualcomm AI Hub's hosted phones.
Torch-free."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .local import SCHEMA, bench, device_info, latency_stats

__all__ = [
    "DEVICES",
    "SCHEMA",
    "BenchOutcome",
    "BenchRequest",
    "bench",
    "benchmark",
    "check_request",
    "connect",
    "device_info",
    "latency_stats",
    "result_paths",
    "run_on_device",
    "run_on_devices",
]


DEVICES = 'local | ssh://user@host[:port] | adb[:serial] | aihub:"<AI Hub device name>"'


@dataclass(frozen=True)
class BenchRequest:
    """One ``bench`` run: what to time, where, and against which baseline (the CLI builds one from its flags)."""

    artifacts: tuple[str, ...]
    devices: tuple[str, ...] = ("local",)
    threads: int = 2
    warmup: int = 5
    iters: int = 50
    reference: bool = False  # also time the PyTorch reference (local only)
    runtime_options: Mapping = field(default_factory=dict)  # the targets' bench_options, by field
    identity: str | None = None  # ssh: private key
    ssh_options: tuple[str, ...] = ()
    remote_python: str = "python3"
    benchmark_binary: tuple[str, ...] = ()  # adb: the runtimes' Android benchmark binaries
    aihub_timeout: float = 7200
    baseline: str | None = None  # a previous run's result JSON: the latency gate
    max_regression: str = "10%"


@dataclass
class BenchOutcome:
    results: list[dict]  # one bench result per device
    regressions: list[dict]  # the gate's failures (bench.compare.gate), empty without a baseline
    bound: float  # the slowdown of the median that fails, as a fraction


def check_request(req: BenchRequest):
    """Refuse a request that cannot run, before anything is measured: (the baseline it gates on or None, the
    slowdown of the median that fails)."""
    from ..errors import UsageError, at_least
    from ..results import MAX_SAMPLES
    from .compare import MIN_SAMPLES, load_baseline, parse_regression

    bound = parse_regression(req.max_regression)
    at_least("--threads", req.threads, 1, 2)
    at_least("--warmup", req.warmup, 0, 5)
    at_least("--iters", req.iters, 2, 50)
    if req.iters > MAX_SAMPLES:  # more rounds than a result may keep: report and --baseline would refuse the file
        raise UsageError(
            f"--iters {req.iters} is out of range: a result keeps at most {MAX_SAMPLES:,} rounds",
            f"use --iters {MAX_SAMPLES} or fewer",
        )
    if req.baseline is None:
        return None, bound
    if req.iters < MIN_SAMPLES:
        raise UsageError(
            f"--baseline compares raw rounds, and --iters {req.iters} gives too few",
            f"use --iters {MIN_SAMPLES} or more (e.g. 50)",
        )
    if any(d == "adb" or d.startswith("adb:") for d in req.devices):
        raise UsageError(
            "--baseline needs raw rounds, and an adb benchmark binary reports only its summary",
            "gate this artifact on a local, ssh or aihub device",
        )
    if len(set(req.devices)) > 1:
        raise UsageError(
            "--baseline holds one device's run, and several --device were given",
            "gate each device in its own bench run",
        )
    return load_baseline(req.baseline), bound  # a bad baseline is refused before anything is measured


def benchmark(req: BenchRequest, on_round=None, progress=None) -> BenchOutcome:
    """Check the request, time the artifacts on every device, and gate each result on the baseline."""
    from .compare import gate

    base, bound = check_request(req)
    results = run_on_devices(req, on_round=on_round, progress=progress)
    regressions = [r for result in results for r in gate(result, base, req.baseline, bound)] if base else []
    return BenchOutcome(results, regressions, bound)


def result_paths(json_out: str | Path, results: list[dict]) -> list[Path]:
    """Where each result is written: ``json_out`` for one device, else its stem plus each device's name."""
    json_out = Path(json_out)
    if len(results) == 1:
        return [json_out]
    taken: set = set()
    return [json_out.with_name(f"{json_out.stem}-{_slug(r['device']['name'], taken)}.json") for r in results]


def _slug(name: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "device"
    slug, i = base, 2
    while slug in taken:  # "Galaxy S23" and "Galaxy S23+" must not overwrite each other
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def run_on_devices(req: BenchRequest, on_round=None, progress=None) -> list[dict]:
    """One bench result per device. Several devices at once are AI Hub's hosted phones (profiled in parallel)."""
    from ..errors import UsageError

    devices = list(dict.fromkeys(req.devices))
    if len(devices) == 1:
        return [run_on_device(devices[0], req, on_round=on_round, progress=progress)]
    others = [d for d in devices if not d.startswith("aihub:")]
    if others:
        raise UsageError(
            f"several --device at once are AI Hub devices only, not {others[0]!r}",
            "bench each local, ssh or adb device in its own run",
        )
    from .aihub import bench_many

    return bench_many(
        devices, req.artifacts, req.threads, req.warmup, req.iters, progress=progress, timeout_s=req.aihub_timeout
    )


def run_on_device(device: str, req: BenchRequest, on_round=None, progress=None) -> dict:
    """``device``: one of :data:`DEVICES`."""
    from ..errors import UsageError

    timing = (req.artifacts, req.threads, req.warmup, req.iters)
    if req.reference and device != "local":
        raise UsageError("--reference times PyTorch on this machine only", "drop --reference, or bench --device local")
    if device == "local":
        return bench(*timing, reference=req.reference, on_round=on_round, **req.runtime_options)
    if device.startswith("ssh://"):
        from .ssh import SshDevice

        return SshDevice.parse(device, identity=req.identity, options=req.ssh_options, python=req.remote_python).bench(
            *timing
        )
    if device == "adb" or device.startswith("adb:"):
        from .adb import AdbDevice

        if not req.benchmark_binary:
            raise UsageError(
                "adb devices run each runtime's own benchmark binary",
                "pass --benchmark-binary PATH (an android_aarch64 build)",
            )
        return AdbDevice.parse(device).bench(req.artifacts, req.benchmark_binary, *timing[1:])
    if device.startswith("aihub:"):
        from .aihub import AihubDevice

        return AihubDevice.parse(device).bench(*timing, progress=progress, timeout_s=req.aihub_timeout)
    raise UsageError(f"unknown device {device!r}", f"use {DEVICES}")


# Devices that compute an artifact's logits themselves (parity --device): the device side runs there.
LOGIT_DEVICES = "ssh://user@host[:port] | adb[:serial]"


def connect(device: str, identity=None, ssh_options=(), remote_python: str = "python3"):
    """A device that runs artifacts on itself (``run_logits``), for ``parity --device``."""
    from ..errors import UsageError

    if device.startswith("ssh://"):
        from .ssh import SshDevice

        return SshDevice.parse(device, identity=identity, options=ssh_options, python=remote_python)
    if device == "adb" or device.startswith("adb:"):
        from .adb import AdbDevice

        return AdbDevice.parse(device, python=remote_python)
    if device.startswith("aihub:"):
        raise UsageError(
            "parity on AI Hub's hosted phones (its inference jobs) is not built yet",
            "run parity on a board over ssh or adb, or on this machine",
        )
    raise UsageError(f"unknown device {device!r}", f"use {LOGIT_DEVICES}")
