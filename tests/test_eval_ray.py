"""eval --engine ray on a local cluster: the same per-sample predictions as in-process, a killed worker, a killed driver
resumed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray (installed beside the lock) runs the eval cluster")

from mvit_deploy.pipeline.evaluate import evaluate  # noqa: E402

MVIT = str(Path(sys.executable).with_name("mvit-deploy"))
N = 520  # images: 3 shards of 256 (the last one short)
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def artifacts(fashion_artifact):
    """The shipped Fashion-MNIST XXS (64 px) as ONNX, TFLite int8 and Core ML fp16."""
    return [fashion_artifact(t, p) for t, p in (("onnx", "fp32"), ("tflite", "int8"), ("coreml", "fp16"))]


@pytest.fixture(scope="module")
def in_process(artifacts):
    return evaluate(artifacts, "fashion-mnist:subset", n=N, threads=1).to_dict()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head on loopback, as `ray start --head` starts one on a real node."""
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    start = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    yield f"127.0.0.1:{port}", env
    subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)


def same_samples(a: dict, b: dict) -> bool:
    return a["samples"] == b["samples"] and [r["predictions"] for r in a["rows"]] == [
        r["predictions"] for r in b["rows"]
    ]


@pytest.mark.slow
def test_ray_cluster_gives_the_in_process_predictions(artifacts, in_process, cluster):
    address, env = cluster
    done = subprocess.run(
        [
            MVIT,
            "eval",
            *map(str, artifacts),
            "--data",
            "fashion-mnist:subset",
            "--n",
            str(N),
            "--threads",
            "1",
            "--engine",
            "ray",
            "--address",
            address,
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["engine"]["name"] == "ray" and report["engine"]["workers"] == 2 and report["engine"]["shards"] == 3
    assert same_samples(report, in_process)  # ONNX, TFLite and Core ML, sample for sample
    assert [r["artifact_metrics"] for r in report["rows"]] == [r["artifact_metrics"] for r in in_process["rows"]]


def _judge_pids() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes().startswith(b"ray::Judge"):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_every_sample_counted_once(artifacts, in_process, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    killed = []

    def kill_on_first_shard(done, total):
        if done and not killed:
            killed.extend(_judge_pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    report = evaluate(
        artifacts[:2], "fashion-mnist:subset", n=N, threads=1, engine="ray", workers=2, on_count=kill_on_first_shard
    ).to_dict()
    assert killed, "no Ray worker process found to kill"
    assert report["engine"]["restarts"] >= 1 and report["n_images"] == N
    expected = {**in_process, "rows": in_process["rows"][:2]}
    assert same_samples(report, expected)


def test_a_killed_driver_resumes_the_shards_it_finished(artifacts, in_process, tmp_path):
    out = tmp_path / "run"
    args = [
        MVIT,
        "eval",
        *map(str, artifacts[:2]),
        "--data",
        "fashion-mnist:subset",
        "--n",
        str(N),
        "--threads",
        "1",
        "--out",
        str(out),
        "--json",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list((out / "shards").glob("[!.]*.npz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the driver dies between shards or inside one: no shard file is ever half-written
    proc.communicate()
    finished = sorted(p.name for p in (out / "shards").glob("[!.]*.npz"))  # not a partial .tmp file
    assert len(finished) in (1, 2, 3)
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 2 and "pass --resume" in again.stderr  # no silent overwrite of an earlier run
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout)
    assert report["engine"]["resumed"] == len(finished) and report["engine"]["shards"] == 3
    assert not list((out / "shards").glob(".*")), "a partial shard of the killed run was left behind"
    assert same_samples(report, {**in_process, "rows": in_process["rows"][:2]})
    other = subprocess.run(
        [
            MVIT,
            "eval",
            str(artifacts[0]),
            "--data",
            "fashion-mnist:subset",
            "--n",
            "300",
            "--out",
            str(out),
            "--resume",
        ],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 2 and "shards of a different eval" in other.stderr


def test_a_worker_that_cannot_load_an_artifact_is_one_line(artifacts, tmp_path):
    """A truncated artifact whose manifest vouches for it: the driver cannot tell, the workers fail to load it."""
    from mvit_deploy.artifact import manifest_path, tree_sha256

    bad = tmp_path / artifacts[0].name
    bad.write_bytes(artifacts[0].read_bytes()[:5000])
    manifest = json.loads(manifest_path(artifacts[0]).read_text())
    manifest["sha256"] = tree_sha256(bad)
    manifest_path(bad).write_text(json.dumps(manifest))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(
        [MVIT, "eval", str(bad), "--data", "fashion-mnist:subset", "--n", "300", "--engine", "ray", "--threads", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert (
        done.returncode == 2
        and "a Ray worker could not load the artifacts" in done.stderr
        and "onnxruntime cannot load" in done.stderr
    ), done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1
    done = subprocess.run(
        [
            MVIT,
            "eval",
            str(artifacts[0]),
            "--data",
            "fashion-mnist:subset",
            "--n",
            "300",
            "--engine",
            "ray",
            "--threads",
            "64",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert (
        done.returncode == 2 and "--threads 64 per worker" in done.stderr
    )  # refused, where it would wait forever for 64 CPUs
