"""bench on Qualcomm AI Hub (bench/aihub.py) against a stand-in client answering with tests/data/aihub/.

What the files are: ``error_*.txt`` are qai-hub 0.56.0's own messages, recorded by running its
client with no config / a config without a token; ``devices.json``, ``job_failed.json`` and the
profile are hand-written in the shapes qai-hub's source documents (no network here), the profile's
layers being the op list of a MobileViT-XXS .tflite exported by this project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from mvit_deploy.artifact import MANIFEST_SCHEMA, manifest_path, tree_sha256
from mvit_deploy.bench.aihub import AihubDevice, bench_many, parse_device, profile_numbers
from mvit_deploy.errors import UsageError
from mvit_deploy.targets import TARGETS, get_target

DATA = Path(__file__).parent / "data" / "aihub"
PROFILE = json.loads((DATA / "profile_galaxy_s24_mobilevit_xxs_tflite_fp32.json").read_text())
FAILED = json.loads((DATA / "job_failed.json").read_text())
S24 = "Samsung Galaxy S24 (Family)"
ELITE = "Snapdragon 8 Elite QRD"


# ---------------------------------------------------------------------------- the stand-in client


@dataclass
class FakeStatus:
    code: str
    message: str | None = None

    @property
    def finished(self):
        return self.code in ("SUCCESS", "FAILED")

    @property
    def success(self):
        return self.code == "SUCCESS"

    @property
    def failure(self):
        return self.code == "FAILED"


@dataclass
class FakeJob:
    hub: FakeHub
    job_id: str
    outcome: FakeStatus  # where it ends
    polls: int = 0

    @property
    def url(self):
        return f"https://app.aihub.qualcomm.com/jobs/{self.job_id}/"

    def get_status(self):
        self.hub.calls.append(("get_status", self.job_id))
        self.polls += 1
        return (
            [FakeStatus("PROVISIONING_DEVICE"), FakeStatus("MEASURING_PERFORMANCE")][self.polls - 1]
            if self.polls < 3
            else self.outcome
        )

    def download_profile(self):
        self.hub.calls.append(("download_profile", self.job_id))
        return json.loads(json.dumps(PROFILE)) if self.outcome.success else {}


class FakeHub:
    """Stands in for the ``qai_hub`` module: the calls bench makes, answered from tests/data/aihub."""

    __version__ = "0.56.0"

    class Error(Exception):
        pass

    class UserError(Error):
        pass

    @dataclass
    class Device:
        name: str = ""
        os: str = ""
        attributes: list = field(default_factory=list)

    def __init__(self, fail_suffixes=(), never_finish=False, devices_error: str | None = None):
        self.calls: list[tuple] = []
        self.fail_suffixes, self.never_finish, self.devices_error = set(fail_suffixes), never_finish, devices_error

    def get_devices(self, name="", os="", attributes=None):
        self.calls.append(("get_devices", name))
        if self.devices_error is not None:
            raise self.UserError(self.devices_error)
        devices = [self.Device(**d) for d in json.loads((DATA / "devices.json").read_text())]
        return [d for d in devices if not name or d.name == name]

    def upload_model(self, model, name=None, project=None):
        self.calls.append(("upload_model", Path(model).name))
        return Path(model)

    def _job(self, model, device, options):
        suffix = Path(model).suffix
        self.calls.append(("submit", device.name, Path(model).name, options))
        print(f"Scheduled profile job (j{len(self.calls)}) successfully.")  # as the real client does, on stdout
        if self.never_finish:
            outcome = FakeStatus("MEASURING_PERFORMANCE")
        elif suffix in self.fail_suffixes:
            outcome = FakeStatus("FAILED", FAILED["failure_reason"])
        else:
            outcome = FakeStatus("SUCCESS")
        return FakeJob(self, f"j{len(self.calls):08d}", outcome)

    def submit_inference_job(
        self, model, device, inputs=None, name=None, options="", retry=True, profile=True, project=None
    ):
        assert profile is True and inputs is None
        return self._job(model, device, options)

    def submit_profile_job(self, model, device, name=None, options="", retry=True, project=None):
        raise AssertionError("qai-hub 0.56 has submit_inference_job(profile=True): submit_profile_job is deprecated")


class OlderFakeHub(FakeHub):
    """A client from before ``submit_inference_job(profile=...)``: profile jobs go through submit_profile_job."""

    def submit_inference_job(self, model, device, inputs=None, name=None, options="", retry=True, project=None):
        raise AssertionError("no profile parameter here")

    def submit_profile_job(self, model, device, name=None, options="", retry=True, project=None):
        return self._job(model, device, options)


def stand_in_artifact(folder: Path, target: str, precision: str = "fp32") -> Path:
    """A small file (or bundle) with a manifest that vouches for it: bench only uploads the path."""
    t = get_target(target)
    path = folder / f"mobilevit_xxs-{target}-{precision}{t.suffix}"
    if t.suffix.startswith(".ml"):  # a bundle directory
        (path / "Data").mkdir(parents=True)
        (path / "Data" / "weights.bin").write_bytes(b"\0" * 4096)
    else:
        path.write_bytes(f"stand-in {target} artifact ".encode() * 200)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "artifact": path.name,
        "model": "mobilevit_xxs",
        "target": target,
        "precision": precision,
        "input": {"name": "image", "size": 256, "layout": "nchw"},
        "output": {"name": "logits", "classes": 1000},
        "checkpoint": {"sha256": None},
        "sha256": tree_sha256(path),
        "parity": {"passed": True, "metrics": {"psnr_db": 88.0}},
    }
    manifest_path(path).write_text(json.dumps(manifest))
    return path


@pytest.fixture
def arts(tmp_path):
    return {name: stand_in_artifact(tmp_path, name) for name in TARGETS}


def recorded_kept_us(warmup: int = 5) -> list[int]:
    return PROFILE["execution_summary"]["all_inference_times"][warmup:]


# ---------------------------------------------------------------------------- tests


def test_parse_device():
    assert parse_device(f"aihub:{S24}") == S24
    assert parse_device(f'aihub:"{S24}"') == S24
    for bad in ("aihub:", "aihub:  ", 'aihub:""'):
        with pytest.raises(UsageError, match="needs a device name"):
            parse_device(bad)
    with pytest.raises(UsageError, match="not an AI Hub device"):
        parse_device("adb:R58M")


def test_recorded_profile_maps_into_the_bench_schema(arts):
    hub = FakeHub()
    tfl = arts["tflite"]
    result = AihubDevice(S24, client=hub).bench([tfl], threads=2, warmup=5, iters=50, poll_seconds=0)
    assert result["schema"] == "mvit-deploy/bench/1" and result["peak_rss_mb"] is None and result["skipped"] == []
    assert result["device"] == {
        "name": S24,
        "kind": "aihub",
        "cpu": "qualcomm-snapdragon-8gen3",
        "cores": None,
        "os": "Android 14",
        "machine": "aarch64-android",
        "python": None,
        "runtimes": {"qai-hub": "0.56.0"},
    }
    assert result["settings"] == {
        "threads": 2,
        "warmup": 5,
        "iters": 50,
        "interleaved": False,
        "aihub_options": "--max_profiler_iterations 55",
    }
    submits = [c for c in hub.calls if c[0] == "submit"]
    assert submits == [("submit", S24, tfl.name, "--max_profiler_iterations 55")]

    (r,) = result["results"]
    summary = PROFILE["execution_summary"]
    kept_ms = np.asarray(recorded_kept_us(), float) / 1000  # the first 5 (cold) of 55 runs are the warm-up
    lat = r["latency_ms"]
    assert lat["p50"] == pytest.approx(np.median(kept_ms), abs=1e-9)
    assert lat["min"] == pytest.approx(kept_ms.min()) and lat["mean"] == pytest.approx(kept_ms.mean())
    assert lat["std"] == pytest.approx(kept_ms.std(ddof=1)) and lat["p90"] == pytest.approx(np.percentile(kept_ms, 90))
    assert lat["samples"] == [round(t / 1000, 4) for t in recorded_kept_us()] and len(lat["samples"]) == 50
    assert lat["p50"] > 1.0 and lat["p50"] < 3.0 and r["warmup_dropped"] == 5
    assert r["throughput_ips"] == pytest.approx(1e3 / kept_ms.mean())

    placed = {"NPU": 0, "GPU": 0, "CPU": 0}
    for layer in PROFILE["execution_detail"]:
        placed[layer["compute_unit"]] += 1
    assert (
        r["compute_units"] == placed and sum(placed.values()) == len(PROFILE["execution_detail"]) and placed["CPU"] > 0
    )

    assert r["load_ms"] == pytest.approx(summary["warm_load_time"] / 1000)
    assert r["first_load_ms"] == pytest.approx(summary["first_load_time"] / 1000)
    assert r["peak_memory_mb"] == pytest.approx(summary["estimated_inference_peak_memory"] / 2**20, abs=0.01)
    assert r["peak_memory_range_mb"] == pytest.approx(
        [v / 2**20 for v in summary["inference_memory_peak_range"]], abs=0.01
    )
    assert r["rss_delta_mb"] is None and r["bytes"] == tfl.stat().st_size and r["parity"]["passed"] is True
    assert (r["artifact"], r["model"], r["target"], r["precision"], r["input_size"]) == (
        tfl.name,
        "mobilevit_xxs",
        "tflite",
        "fp32",
        256,
    )
    assert r["runtime"] == get_target("tflite").aihub.runtime
    job = r["aihub_job"]
    assert job["id"].startswith("j") and job["url"] == f"https://app.aihub.qualcomm.com/jobs/{job['id']}/"


def test_two_devices_at_once_submit_every_job_before_waiting(arts):
    hub = FakeHub()
    results = bench_many(
        [f"aihub:{S24}", f"aihub:{ELITE}"],
        [arts["tflite"], arts["onnx"]],
        warmup=5,
        iters=50,
        client=hub,
        poll_seconds=0,
    )
    assert [r["device"]["name"] for r in results] == [S24, ELITE]
    assert results[1]["device"]["cpu"] == "qualcomm-snapdragon-8-elite" and results[1]["device"]["os"] == "Android 15"
    assert all(len(r["results"]) == 2 and r["skipped"] == [] for r in results)
    kinds = [c[0] for c in hub.calls]
    assert kinds.count("upload_model") == 2, "each artifact is uploaded once, whatever the number of devices"
    assert kinds.count("submit") == 4
    last_submit = max(i for i, k in enumerate(kinds) if k == "submit")
    first_wait = min(i for i, k in enumerate(kinds) if k == "get_status")
    assert last_submit < first_wait, "a job was waited on before every job was submitted"


def test_older_client_profiles_through_submit_profile_job(arts):
    (r,) = AihubDevice(S24, client=OlderFakeHub()).bench([arts["tflite"]], 2, 5, 50, poll_seconds=0)["results"]
    assert r["latency_ms"]["samples"] == [round(t / 1000, 4) for t in recorded_kept_us()]


def test_failed_job_is_skipped_with_the_hubs_reason(arts):
    hub = FakeHub(fail_suffixes={arts["onnx"].suffix})
    result = AihubDevice(S24, client=hub).bench([arts["tflite"], arts["onnx"]], 2, 5, 50, poll_seconds=0)
    assert [r["artifact"] for r in result["results"]] == [arts["tflite"].name]
    (s,) = result["skipped"]
    assert (
        s["artifact"] == arts["onnx"].name
        and FAILED["failure_reason"] in s["reason"]
        and s["reason"].startswith("the AI Hub job failed")
    )
    assert s["aihub_job"]["url"] in s["reason"]
    downloaded = [c for c in hub.calls if c[0] == "download_profile"]
    assert len(downloaded) == 1, "a failed job's profile is not asked for"


def test_a_job_still_running_at_the_timeout_is_skipped_with_its_url(arts):
    result = AihubDevice(S24, client=FakeHub(never_finish=True)).bench(
        [arts["tflite"]], 2, 5, 50, poll_seconds=0, timeout_s=0
    )
    (s,) = result["skipped"]
    assert (
        result["results"] == []
        and s["reason"].startswith("still PROVISIONING_DEVICE on AI Hub after 0 s")
        and s["aihub_job"]["url"] in s["reason"]
    )


def test_formats_the_hub_or_the_phone_cannot_run_are_skipped(arts):
    hub = FakeHub()
    result = AihubDevice(S24, client=hub).bench([arts[n] for n in TARGETS], 2, 5, 50, poll_seconds=0)
    profiled = [t for t in TARGETS.values() if t.aihub]
    reasons = {s["artifact"]: s["reason"] for s in result["skipped"]}
    assert reasons[arts["executorch"].name] == f"AI Hub profiles {', '.join(t.suffix for t in profiled)} artifacts only"
    assert reasons[arts["ort"].name] == reasons[arts["executorch"].name]
    assert reasons[arts["coreml"].name].startswith(
        f"{S24} does not run .mlpackage on AI Hub (its frameworks: onnx, qnn, tflite)"
    )
    assert sorted(r["artifact"] for r in result["results"]) == sorted([arts["tflite"].name, arts["onnx"].name])
    assert not any(c[0] == "upload_model" and c[1].endswith((".pte", ".mlpackage")) for c in hub.calls)
    (r,) = AihubDevice("Apple iPhone 15 Pro", client=FakeHub()).bench([arts["coreml"]], 2, 5, 50, poll_seconds=0)[
        "results"
    ]
    assert r["runtime"] == get_target("coreml").aihub.runtime


def test_only_unprofilable_artifacts_is_refused_before_the_hub_is_asked(arts):
    hub = FakeHub()
    with pytest.raises(UsageError, match="nothing AI Hub can profile"):
        AihubDevice(S24, client=hub).bench([arts["executorch"]], 2, 5, 50)
    assert hub.calls == []


def test_missing_client_is_a_one_line_usage_error(arts, monkeypatch):
    monkeypatch.setitem(sys.modules, "qai_hub", None)  # `import qai_hub` raises ImportError
    with pytest.raises(UsageError) as caught:
        AihubDevice(S24).bench([arts["tflite"]], 2, 5, 50)
    assert (
        caught.value.one_line()
        == "--device aihub: needs Qualcomm AI Hub's client — pip install qai-hub, then `qai-hub configure --api_token "
        "TOKEN`"
    )
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "recorded, says",
    [("error_no_client_ini.txt", "client.ini not found"), ("error_api_token_missing.txt", "Your API token is missing")],
)
def test_no_token_names_qai_hub_configure(arts, recorded, says):
    message = (DATA / recorded).read_text().removesuffix("\n")
    assert "\n" in message and "┌" in message  # the recorded message is qai-hub's boxed multi-line one
    with pytest.raises(UsageError) as caught:
        AihubDevice(S24, client=FakeHub(devices_error=message)).bench([arts["tflite"]], 2, 5, 50)
    line = caught.value.one_line()
    assert "\n" not in line and "┌" not in line and says in line and "qai-hub configure --api_token TOKEN" in line


def test_unknown_device_suggests_close_names(arts):
    with pytest.raises(UsageError) as caught:
        bench_many(["aihub:Galaxy S24"], [arts["tflite"]], client=FakeHub())
    line = caught.value.one_line()
    assert line.startswith("AI Hub has no device 'Galaxy S24'")
    for near in ("Samsung Galaxy S24", S24, "Samsung Galaxy S24 Ultra"):
        assert repr(near) in line
    assert "Google Pixel 8" not in line and "qai-hub list-devices" in line


def test_progress_goes_to_the_callback_and_the_clients_prints_to_stderr(arts, capsys):
    said = []
    AihubDevice(S24, client=FakeHub()).bench([arts["tflite"]], 2, 5, 50, progress=said.append, poll_seconds=0)
    out = capsys.readouterr()
    assert out.out == "" and "Scheduled profile job" in out.err
    assert any("uploading" in m for m in said) and any(
        "0/1 jobs done" in m and "MEASURING_PERFORMANCE" in m for m in said
    )


def test_profile_without_a_series_falls_back_to_the_estimate():
    numbers = profile_numbers(
        {
            "execution_summary": {"estimated_inference_time": 1234, "warm_load_time": None, "first_load_time": 50_000},
            "execution_detail": [],
        },
        5,
    )
    assert numbers["latency_ms"]["samples"] == [1.234] and numbers["warmup_dropped"] == 0 and numbers["load_ms"] == 50.0
    assert numbers["compute_units"] == {"NPU": 0, "GPU": 0, "CPU": 0}


def test_aihub_backend_names_no_target_and_imports_without_torch_or_the_client():
    from test_target_registry import target_mentions

    assert target_mentions(ROOT / "mvit_deploy" / "bench" / "aihub.py") == []
    probe = "import sys, mvit_deploy.bench.aihub; print('torch' in sys.modules, 'qai_hub' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["False", "False"], done.stderr
