"""Latency on this machine: the device side's bench (``mvit_deploy/device/bench.py``, schema there), run
with the host's targets (Core ML's reference executor is not timed) and, when asked, the PyTorch reference."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from ..artifact import Manifest
from ..device.bench import (  # noqa: F401  (re-exported: the host's modules and tests import them from here)
    DENORMAL_ROUNDS,
    DENORMAL_SLOWDOWN,
    SCHEMA,
    Subject,
    _rss_mb,
    cpu_model,
    device_info,
    latency_stats,
    result_entry,
)
from ..device.bench import bench as device_bench


def _target_runner(path: Path, manifest: Manifest, threads: int, runtime_options: dict):
    """The host's targets decide what this machine times (``Target.bench_runner``: Core ML's executor is skipped)."""
    from ..targets import get_target

    target = get_target(manifest.target)
    known = {o.field for o in target.bench_options}
    return target.bench_runner(path, manifest, threads, **{k: v for k, v in runtime_options.items() if k in known})


def _reference_subject(manifest: Manifest, threads: int) -> Subject:
    # OpenMP workers that spin after each PyTorch call would slow the artifact timed next
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from ..pipeline.parity import reference_model

    torch.set_num_threads(threads)
    before = _rss_mb()
    t0 = time.perf_counter()
    model = reference_model(manifest)
    load_ms = (time.perf_counter() - t0) * 1e3

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    ref_manifest = replace(manifest, target="pytorch", precision="fp32", parity=None, versions=None)  # the reference
    return Subject(f"pytorch:{manifest.model}", ref_manifest, run, load_ms, before, None, "pytorch-eager")


def bench(
    artifacts,
    threads: int = 2,
    warmup: int = 5,
    iters: int = 50,
    reference: bool = False,
    on_round=None,
    denormal_check: bool = True,
    **runtime_options,
) -> dict:
    """Measure every artifact on this machine, interleaved round by round (``reference``: PyTorch too, in the same
    rounds)."""

    def references(subjects):
        seen, out = set(), []
        for s in subjects:
            key = (s.manifest.model, s.manifest.checkpoint.sha256, s.manifest.input.size)
            if key not in seen:
                seen.add(key)
                out.append(_reference_subject(s.manifest, threads))
        return out

    return device_bench(
        artifacts,
        threads,
        warmup,
        iters,
        on_round=on_round,
        denormal_check=denormal_check,
        more_subjects=references if reference else None,
        make_runner=_target_runner,
        **runtime_options,
    )
