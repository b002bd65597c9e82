"""Benchmark on Qualcomm AI Hub's hosted phones: upload each artifact, profile it there, map the profile.

``bench --device aihub:"Samsung Galaxy S24 (Family)"``. Torch-free; ``qai_hub`` (``pip install
qai-hub``, then ``qai-hub configure --api_token TOKEN``) is imported only when a hub device is used.

What a profile job measures, and how it lands in the bench schema (``bench/local.py``):

- Formats: a target that declares ``Target.aihub`` (its framework and runtime label); others are
  ``skipped``, and so is a format the chosen phone lacks (its ``framework:*`` attributes).
- ``--iters N --warmup W``: the job runs ``--max_profiler_iterations W+N``; its first W inference
  times are dropped (a hub series can open with cold runs) and the rest are ``latency_ms.samples``
  (fewer than N if the hub stopped early: it caps a job's profiling time, ``--max_profiler_time``).
- ``--threads`` is recorded but not sent: AI Hub runs the graph on the NPU where it can, and its
  runtimes choose their own CPU fallback threads. ``settings.aihub_options`` is what was sent.
- ``load_ms`` is the hub's warm load time (what its own job summary calls load time), ``first_load_ms``
  the cold one; ``peak_memory_mb`` its estimated inference peak (MiB); ``compute_units`` counts the
  profiled layers per unit (NPU / GPU / CPU); ``rss_delta_mb`` is null; ``aihub_job`` links the job.

Several devices (:func:`bench_many`): every artifact is uploaded once and every job submitted
before the first wait, so the hosted phones work in parallel. Waiting reports through
``progress(str)``; the client's own chatter is sent to stderr, never to stdout.

Field names come from qai-hub 0.56.0's source (``client.py``: ``_profile_pb_to_python_dict``, the
``InferenceJobResult`` summary, ``Job.wait`` / ``get_status``, ``Client.get_devices``,
``submit_inference_job(profile=True)``, which deprecates ``submit_profile_job``) and from
quic/ai-hub-models ``qai_hub_models/utils/printing.py`` (``print_profile_metrics_from_job``).

Tried against the live service: nothing (no network where this was written). Verified only against
recorded responses in ``tests/data/aihub/``: the two missing-token errors are qai-hub 0.56.0's own
messages, recorded by running its client without a config; the device list, the profile and the
failed job are hand-written in the documented shapes (the profile's layers are the op list of a
MobileViT-XXS .tflite exported here, its timings and placements are made up).
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
import time
from collections import Counter
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from ..artifact import Manifest, read_manifest, tree_bytes
from ..errors import UsageError
from .local import SCHEMA, latency_stats, result_entry

PREFIX = "aihub:"
POLL_SECONDS = 10.0  # the client's own polling interval (qai_hub Job._polling_interval)
CONFIGURE = "run `qai-hub configure --api_token TOKEN` (the token is on your AI Hub account page)"
_AUTH_WORDS = (
    "api token",
    "configuration file",
    "authenticate",
)  # qai-hub's UserError messages for a missing / bad token
_OS_NAMES = {"android": "Android", "ios": "iOS", "windows": "Windows", "linux": "Linux"}


def parse_device(spec: str) -> str:
    """``aihub:Samsung Galaxy S24 (Family)`` -> the hub's device name."""
    if not spec.startswith(PREFIX):
        raise UsageError(f"not an AI Hub device: {spec!r}", 'use aihub:"<device name>"')
    name = spec[len(PREFIX) :].strip().strip("\"'").strip()
    if not name:
        raise UsageError(
            "--device aihub: needs a device name",
            'use aihub:"Samsung Galaxy S24 (Family)" (`qai-hub list-devices` lists them)',
        )
    return name


def import_hub():
    try:
        import qai_hub
    except ImportError:
        raise UsageError(
            "--device aihub: needs Qualcomm AI Hub's client",
            "pip install qai-hub, then `qai-hub configure --api_token TOKEN`",
        ) from None
    return qai_hub


def _plain(error: Exception) -> str:
    """A qai-hub message on one line: its boxed help text unboxed."""
    return " ".join(re.sub(r"[┌┐└┘─│|]", " ", str(error)).split())


def _about_the_token(error: Exception) -> bool:
    return any(w in _plain(error).lower() for w in _AUTH_WORDS)


def hub_error(error: Exception, what: str) -> UsageError:
    text = _plain(error)
    if _about_the_token(error):
        return UsageError(f"--device aihub: no usable AI Hub API token here ({text.split(' Please ')[0]})", CONFIGURE)
    return UsageError(
        f"Qualcomm AI Hub: {what} failed: {text}", "check the network and the job on https://app.aihub.qualcomm.com"
    )


@contextmanager
def _talking_to(hub, what: str):
    """Run hub calls with their prints on stderr; a hub error becomes one UsageError line."""
    try:
        with redirect_stdout(sys.stderr):
            yield
    except getattr(hub, "Error", ()) as e:
        raise hub_error(e, what) from None


def _say(progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _attr(device, key: str) -> list[str]:
    return [a.split(":", 1)[1] for a in device.attributes if a.startswith(key + ":")]


def _os_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version or ""))


def close_matches(name: str, names: list[str], n: int = 5) -> list[str]:
    """Hub device names like ``name``: containing it first, then spelt alike."""
    lower = {m.lower(): m for m in names}
    containing = [m for m in names if name.lower() in m.lower()]
    alike = [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.5)]
    return list(dict.fromkeys(containing + alike))[:n]


@dataclass(eq=False)  # one job per (device, artifact), told apart by identity
class _Job:
    device: AihubDevice
    path: Path
    manifest: Manifest
    model: object = None  # what upload_model returned
    job: object = None  # the hub's job, once submitted
    status: object = None  # its last JobStatus
    result: dict | None = None
    skip: str | None = None  # why it has no result

    @property
    def spec(self):
        from ..targets import get_target

        return get_target(self.manifest.target).aihub

    @property
    def ref(self) -> dict:
        return {"id": self.job.job_id, "url": self.job.url}


@dataclass
class AihubDevice:
    """One hosted device, by its exact AI Hub name; ``client``: the ``qai_hub`` module (tests pass a fake)."""

    name: str
    client: object = field(default=None, repr=False)
    hub_device: object = field(default=None, repr=False)  # the hub's Device (name, os, attributes), once resolved

    @classmethod
    def parse(cls, spec: str, client=None) -> AihubDevice:
        return cls(parse_device(spec), client)

    @property
    def hub(self):
        if self.client is None:
            self.client = import_hub()
        return self.client

    def resolve(self) -> None:
        """Find the device on the hub (its newest OS); an unknown name lists the close ones."""
        hub = self.hub
        with _talking_to(hub, f"looking up {self.name!r}"):
            found = hub.get_devices(name=self.name)
            every = [] if found else hub.get_devices()
        if not found:
            near = close_matches(self.name, sorted({d.name for d in every}))
            fix = f"did you mean {', '.join(repr(m) for m in near)}? " if near else ""
            raise UsageError(f"AI Hub has no device {self.name!r}", fix + "`qai-hub list-devices` lists them all")
        self.hub_device = max(found, key=lambda d: _os_key(d.os))

    def runs(self, framework: str) -> bool:
        return framework in _attr(self.hub_device, "framework")

    def device_info(self) -> dict:
        dev = self.hub_device
        chipsets = _attr(dev, "chipset")
        family = (_attr(dev, "os") or [""])[0]
        abi = _attr(dev, "abi")
        return {
            "name": dev.name,
            "kind": "aihub",
            "cpu": next((c for c in chipsets if c.startswith("qualcomm-")), chipsets[0] if chipsets else None),
            "cores": None,
            "os": f"{_OS_NAMES.get(family, family.title())} {dev.os}".strip(),
            "machine": abi[0] if abi else None,
            "python": None,
            "runtimes": {"qai-hub": str(getattr(self.hub, "__version__", "?"))},
        }

    def bench(
        self,
        artifacts,
        threads: int,
        warmup: int,
        iters: int,
        progress=None,
        poll_seconds: float = POLL_SECONDS,
        timeout_s: float | None = None,
    ) -> dict:
        """Profile every artifact on this device (see the module docstring); one bench result."""
        return _bench([self], artifacts, threads, warmup, iters, progress, poll_seconds, timeout_s)[0]


def bench_many(
    device_specs,
    artifacts,
    threads: int = 2,
    warmup: int = 5,
    iters: int = 50,
    progress=None,
    client=None,
    poll_seconds: float = POLL_SECONDS,
    timeout_s: float | None = None,
) -> list[dict]:
    """Profile the artifacts on several hosted devices at once: one bench result per device, in order."""
    devices = [AihubDevice.parse(s, client) for s in device_specs]
    if not devices:
        raise UsageError("no AI Hub device given", 'pass aihub:"<device name>"')
    return _bench(devices, artifacts, threads, warmup, iters, progress, poll_seconds, timeout_s)


def _bench(devices, artifacts, threads, warmup, iters, progress, poll_seconds, timeout_s) -> list[dict]:
    if warmup < 0 or iters < 2:
        raise UsageError(f"--warmup {warmup} / --iters {iters}", "use warmup >= 0 and iters >= 2")
    wanted, unprofilable = _profilable(artifacts)
    hub = devices[0].hub
    for dev in devices:
        dev.client = hub
        _say(progress, f"AI Hub: looking up {dev.name}")
        dev.resolve()
    options = f"--max_profiler_iterations {warmup + iters}"
    jobs = [_Job(dev, path, manifest) for dev in devices for path, manifest in wanted]
    for j in jobs:
        if not j.device.runs(j.spec.framework):
            frameworks = ", ".join(_attr(j.device.hub_device, "framework")) or "none"
            j.skip = f"{j.device.name} does not run {j.path.suffix} on AI Hub (its frameworks: {frameworks})"
    runnable = [j for j in jobs if j.skip is None]
    _upload(hub, runnable, progress)
    for i, j in enumerate(runnable, 1):  # every job submitted before the first wait: the phones work in parallel
        _say(progress, f"AI Hub: submitting {i}/{len(runnable)}: {j.path.name} on {j.device.name}")
        _submit(hub, j, options)
    submitted = [j for j in runnable if j.job is not None]
    unfinished = _wait(hub, submitted, progress, poll_seconds, timeout_s)
    for j in submitted:
        _collect(hub, j, warmup, None if j not in unfinished else timeout_s)
    settings = {"threads": threads, "warmup": warmup, "iters": iters, "interleaved": False, "aihub_options": options}
    return [_device_result(d, [j for j in jobs if j.device is d], unprofilable, settings) for d in devices]


def _profilable(artifacts) -> tuple[list, list]:
    """(path, manifest) of the artifacts AI Hub takes, and a skip entry for each other one."""
    from ..targets import TARGETS, get_target

    profiled = ", ".join(t.suffix for t in TARGETS.values() if t.aihub)
    wanted, others = [], []
    for path in map(Path, artifacts):
        manifest = read_manifest(path)  # every artifact checked before the hub is touched
        if get_target(manifest.target).aihub:
            wanted.append((path, manifest))
        else:
            others.append({"artifact": path.name, "reason": f"AI Hub profiles {profiled} artifacts only"})
    if not wanted:
        raise UsageError("nothing AI Hub can profile", f"pass {profiled} artifacts")
    return wanted, others


def _upload(hub, jobs: list[_Job], progress) -> None:
    """Upload each artifact once, whatever the number of devices."""
    models = {}
    for j in jobs:
        if j.path not in models:
            _say(progress, f"AI Hub: uploading {j.path.name}")
            with _talking_to(hub, f"uploading {j.path.name}"):
                models[j.path] = hub.upload_model(str(j.path)) if hasattr(hub, "upload_model") else str(j.path)
        j.model = models[j.path]


def _submit(hub, j: _Job, options: str) -> None:
    """Submit one profile job; a job the hub refuses (a model this device cannot take) is skipped, not fatal."""
    device = hub.Device(j.device.hub_device.name, j.device.hub_device.os)
    submit = getattr(hub, "submit_inference_job", None)
    try:
        with redirect_stdout(sys.stderr):
            if submit is not None and "profile" in inspect.signature(submit).parameters:
                # qai-hub 0.56 deprecates submit_profile_job (it prints a warning) for this call
                j.job = submit(j.model, device, profile=True, options=options)
            else:
                j.job = hub.submit_profile_job(model=j.model, device=device, options=options)
    except getattr(hub, "Error", ()) as e:
        if _about_the_token(e):
            raise hub_error(e, f"submitting {j.path.name} to {j.device.name}") from None
        j.skip = f"AI Hub refused the job: {_plain(e)}"


def _collect(hub, j: _Job, warmup: int, timed_out_after: float | None) -> None:
    """A finished job's profile as a bench result; a failed or unfinished one as the reason it was skipped."""
    if timed_out_after is not None:
        j.skip = f"still {j.status.code} on AI Hub after {timed_out_after:g} s: see {j.job.url}"
    elif not j.status.success:
        j.skip = f"the AI Hub job failed: {_plain(j.status.message or '') or j.status.code} ({j.job.url})"
    else:
        with _talking_to(hub, f"downloading the profile of job {j.job.job_id}"):
            profile = j.job.download_profile()
        if profile:
            try:
                j.result = _result(j, profile, warmup)
            except UsageError as e:  # one unreadable profile must not cost the other devices' results
                j.skip = f"the AI Hub profile could not be read: {e.one_line()} ({j.job.url})"
        else:
            j.skip = f"the AI Hub job returned no profile ({j.job.url})"


def _device_result(device: AihubDevice, jobs: list[_Job], unprofilable: list[dict], settings: dict) -> dict:
    skipped = list(unprofilable)
    for j in jobs:
        if j.skip is not None:
            skipped.append(
                {"artifact": j.path.name, "reason": j.skip, **({"aihub_job": j.ref} if j.job is not None else {})}
            )
    return {
        "schema": SCHEMA,
        "device": device.device_info(),
        "settings": settings,
        "results": [j.result for j in jobs if j.result is not None],
        "peak_rss_mb": None,
        "skipped": skipped,
    }


def _wait(hub, jobs: list[_Job], progress, poll_seconds: float, timeout_s: float | None) -> list[_Job]:
    """Poll every job until all have finished (or ``timeout_s`` passed); the jobs still running."""
    start = time.monotonic()
    pending = list(jobs)
    while True:
        for j in pending:
            with _talking_to(hub, f"asking how job {j.job.url} is doing (it keeps running on AI Hub)"):
                j.status = j.job.get_status()
        pending = [j for j in pending if not j.status.finished]
        if not pending or (timeout_s is not None and time.monotonic() - start >= timeout_s):
            return pending
        first = pending[0]
        _say(
            progress,
            f"AI Hub: {len(jobs) - len(pending)}/{len(jobs)} jobs done; {first.path.name} on {first.device.name}: "
            f"{first.status.code}",
        )
        time.sleep(poll_seconds)


def profile_numbers(profile: dict, warmup: int) -> dict:
    """A ``download_profile()`` dict -> our latency (ms), load times, memory and layer placement.

    Units as qai-hub's own summary reads them: times in microseconds, memory in bytes.
    """
    summary = profile.get("execution_summary") or {}
    times_us = list(summary.get("all_inference_times") or [])
    if not times_us and summary.get("estimated_inference_time") is not None:
        times_us = [summary["estimated_inference_time"]]  # an older profile format: one estimate, no series
    dropped = min(warmup, max(0, len(times_us) - 2))
    kept = times_us[dropped:]
    if not kept:
        raise UsageError("the AI Hub profile has no inference times", "open the job on https://app.aihub.qualcomm.com")
    stats = latency_stats([t / 1e6 for t in kept])

    def ms(key):
        v = summary.get(key)
        return None if v is None else v / 1e3

    def mib(v):
        return None if v is None else round(v / 2**20, 2)

    peak_range = summary.get("inference_memory_peak_range")
    units = Counter(
        str(layer.get("compute_unit", "UNSPECIFIED")).upper() for layer in profile.get("execution_detail") or []
    )
    return {
        "latency_ms": stats,
        "warmup_dropped": dropped,
        "load_ms": ms("warm_load_time") if summary.get("warm_load_time") is not None else ms("first_load_time"),
        "first_load_ms": ms("first_load_time"),
        "aihub_estimated_ms": ms("estimated_inference_time"),
        "peak_memory_mb": mib(summary.get("estimated_inference_peak_memory")),
        "peak_memory_range_mb": None if not peak_range else [mib(v) for v in peak_range],
        "compute_units": {"NPU": 0, "GPU": 0, "CPU": 0, **units},
    }


def _result(j: _Job, profile: dict, warmup: int) -> dict:
    m = j.manifest
    numbers = profile_numbers(profile, warmup)
    latency, load_ms = numbers.pop("latency_ms"), numbers.pop("load_ms")
    return result_entry(
        j.path.name, m, j.spec.runtime, tree_bytes(j.path), load_ms, latency, None, **numbers, aihub_job=j.ref
    )
