"""bench and report: local, a real sshd on loopback, adb command construction, a torch-free venv, Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, ROOT, run_cli

from mvit_deploy.bench.adb import AdbDevice
from mvit_deploy.bench.ssh import SshDevice
from mvit_deploy.pipeline.export import export
from mvit_deploy.targets import ExportOptions, get_target
from mvit_deploy.targets.tflite import parse_benchmark_output


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    onnx = export(ExportOptions(model="mobilevit_xxs", target="onnx", out_dir=out, parity_n=4)).artifact
    tfl = export(ExportOptions(model="mobilevit_xxs", target="tflite", out_dir=out, parity_n=4)).artifact
    cml = export(ExportOptions(model="mobilevit_xxs", target="coreml", out_dir=out), run_parity=False).artifact
    return {"onnx": onnx, "tflite": tfl, "coreml": cml}


def check_result(result: dict, n: int, kind: str):
    assert result["schema"] == "mvit-deploy/bench/1"
    dev = result["device"]
    assert dev["kind"] == kind and dev["cores"] >= 1 and dev["cpu"] and dev["python"]
    assert result["settings"]["interleaved"] is True and len(result["results"]) == n
    for r in result["results"]:
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
        assert lat["min"] <= lat["mean"] and lat["std"] >= 0
        assert r["throughput_ips"] == pytest.approx(1e3 / lat["mean"])
        assert r["load_ms"] > 0 and r["bytes"] > 1_000_000 and r["runtime"] in ("onnxruntime", "litert")
        assert r["parity"]["passed"] is True


def test_local_bench_table_and_json(artifacts, tmp_path):
    out = tmp_path / "host.json"
    result = run_cli(
        "bench",
        str(artifacts["onnx"]),
        str(artifacts["tflite"]),
        str(artifacts["coreml"]),
        "--iters",
        "5",
        "--warmup",
        "1",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "mobilevit_xxs-onnx-fp32.onnx" in result.stdout and "p50" in result.stdout
    data = json.loads(out.read_text())
    check_result(data, 2, "local")
    probe = {r["target"]: r["denormal_slowdown"] for r in data["results"]}
    assert (
        probe["tflite"] is None and 0.3 < probe["onnx"] < 1.5
    )  # trained-like weights: no underflow, and a child process timed each mode
    assert "denormal floats" not in result.stdout
    if sys.platform != "darwin":
        assert "Core ML latency needs a Mac" in result.stdout and data["skipped"][0]["artifact"].endswith(".mlpackage")


def test_bench_usage_errors(artifacts):
    bad = run_cli("bench", str(artifacts["onnx"]), "--iters", "1")
    assert bad.returncode == 2 and "iters" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("bench", str(artifacts["onnx"]), "--device", "ftp://x")
    assert bad.returncode == 2 and "unknown device" in bad.stderr
    bad = run_cli("bench", str(artifacts["tflite"]), "--device", "adb")
    assert bad.returncode == 2 and "--benchmark-binary" in bad.stderr


# ---------------------------------------------------------------------------- ssh


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd_bin).exists() or os.geteuid() != 0:
        pytest.skip(reason="needs openssh-server and root (.ci/run installs it); CI runs this")
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "client")], check=True)
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    port = _free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\nAuthorizedKeysFile "
        f"{keys / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile "
        f"{tmp_path / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield {"port": port, "key": str(keys / "client")}
    proc.terminate()
    proc.wait(timeout=10)


def test_ssh_bench_against_loopback_sshd(sshd, artifacts, tmp_path):
    out = tmp_path / "pi.json"
    result = run_cli(
        "bench",
        str(artifacts["onnx"]),
        str(artifacts["tflite"]),
        "--iters",
        "4",
        "--warmup",
        "1",
        "--device",
        f"ssh://root@127.0.0.1:{sshd['port']}",
        "--identity",
        sshd["key"],
        "--ssh-option",
        "StrictHostKeyChecking=no",
        "--ssh-option",
        f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "--remote-python",
        sys.executable,
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    check_result({**data, "settings": data["settings"]}, 2, "ssh")
    assert data["device"]["name"] == "127.0.0.1"
    assert {Path(r["artifact"]).name for r in data["results"]} == {artifacts["onnx"].name, artifacts["tflite"].name}
    # the report joins a host run and the ssh run
    host = tmp_path / "host.json"
    assert (
        run_cli("bench", str(artifacts["onnx"]), "--iters", "3", "--warmup", "1", "--json", str(host)).returncode == 0
    )
    rep = run_cli("report", str(host), str(out), "--out", str(tmp_path / "report"))
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "report" / "report.md").read_text()
    assert "(ssh)" in md and "(local)" in md and (tmp_path / "report" / "report.html").exists()


def test_ssh_command_quotes_every_word():
    dev = SshDevice.parse("ssh://pi@raspberrypi.local:2222", identity="/k ey", options=("ConnectTimeout=3",))
    argv = dev.ssh_command(["python3", "-m", "x", "/tmp/a b;rm -rf ~"])
    assert argv[:2] == ["ssh", "-o"] and "-i" in argv and "/k ey" in argv and argv[argv.index("-p") + 1] == "2222"
    assert argv[-2] == "pi@raspberrypi.local"
    assert argv[-1] == "python3 -m x '/tmp/a b;rm -rf ~'"


def test_ssh_unreachable_is_one_line(artifacts):
    result = run_cli(
        "bench",
        str(artifacts["onnx"]),
        "--device",
        f"ssh://nobody@127.0.0.1:{_free_port()}",
        "--ssh-option",
        "ConnectTimeout=3",
    )
    assert result.returncode == 2 and "failed" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------- adb


def test_benchmark_model_parser_on_recorded_output():
    parsed = parse_benchmark_output((FIXTURES / "benchmark_model_android.txt").read_text())
    assert parsed["runs"] == 50  # the measured summary, not the warm-up one
    lat = parsed["latency_ms"]
    assert (
        lat["min"] == pytest.approx(23.402)
        and lat["mean"] == pytest.approx(24.0182)
        and lat["p50"] == pytest.approx(23.901)
    )
    assert lat["std"] == pytest.approx(0.612) and lat["p95"] == pytest.approx(25.209) and lat["p90"] is None
    assert parsed["load_ms"] == pytest.approx(41.873) and parsed["memory_overall_mb"] == pytest.approx(21.3711)


def test_adb_command_construction():
    dev = AdbDevice.parse("adb:R58M12345")
    cmd = dev.benchmark_command(
        get_target("tflite"), "/data/local/tmp/mvit-deploy/m.tflite", "/home/me/benchmark_model", 4, 5, 50
    )
    assert cmd[:4] == ["adb", "-s", "R58M12345", "shell"]
    assert (
        cmd[4]
        == "/data/local/tmp/mvit-deploy/benchmark_model --graph=/data/local/tmp/mvit-deploy/m.tflite --num_threads=4 "
        "--warmup_runs=5 --num_runs=50 --use_xnnpack=true"
    )
    assert AdbDevice.parse("adb").adb("devices") == ["adb", "devices"]


def test_adb_bench_end_to_end_with_a_fake_adb(artifacts, tmp_path):
    """A stand-in `adb` on PATH records every call and answers like a phone would."""
    log = tmp_path / "adb.log"
    fake = tmp_path / "bin" / "adb"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {log}\n'
        'case "$*" in\n'
        f"  *benchmark_model*--graph*) cat {FIXTURES / 'benchmark_model_android.txt'} ;;\n"
        '  *ro.product.model*) echo "SM-N975F" ;;\n'
        '  *ro.board.platform*) echo "exynos9825" ;;\n'
        '  *ro.build.version.release*) echo "12" ;;\n'
        '  *ro.product.cpu.abi*) echo "arm64-v8a" ;;\n'
        '  *nproc*) echo "8" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    out = tmp_path / "phone.json"
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}"}
    result = run_cli(
        "bench",
        str(artifacts["tflite"]),
        str(artifacts["onnx"]),
        "--device",
        "adb:R58M",
        "--benchmark-binary",
        str(binary),
        "--threads",
        "4",
        "--json",
        str(out),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert (
        data["device"]["name"] == "SM-N975F" and data["device"]["cores"] == 8 and data["device"]["os"] == "Android 12"
    )
    (r,) = data["results"]
    assert r["latency_ms"]["mean"] == pytest.approx(24.0182) and r["runtime"].startswith("litert")
    assert (
        data["skipped"][0]["reason"]
        == "adb devices run .tflite (benchmark_model), .pte (executor_runner) artifacts only"
    )
    calls = log.read_text().splitlines()
    assert any(
        c.startswith("-s R58M push") and c.endswith("/data/local/tmp/mvit-deploy/benchmark_model") for c in calls
    )
    assert any("--num_threads=4" in c and "--use_xnnpack=true" in c for c in calls)


# ---------------------------------------------------------------------------- device venv (no torch)


@pytest.mark.slow
def test_device_extra_venv_benches_without_torch(artifacts, tmp_path):
    venv = tmp_path / "device-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"{ROOT}[device]"], capture_output=True, text=True, timeout=900
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    no_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0, "the [device] extra pulled in torch"
    out = tmp_path / "device.json"
    run = subprocess.run(
        [
            str(venv / "bin" / "mvit-deploy"),
            "bench",
            str(artifacts["onnx"]),
            str(artifacts["tflite"]),
            "--iters",
            "3",
            "--warmup",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    check_result(json.loads(out.read_text()), 2, "local")


# ---------------------------------------------------------------------------- report


def _bench_json(tmp_path, name, kind, ms):
    from mvit_deploy.bench.local import SCHEMA

    results = [
        {
            "artifact": f"mobilevit_xxs-{t}-{p}.x",
            "model": "mobilevit_xxs",
            "target": t,
            "precision": p,
            "runtime": rt,
            "input_size": 256,
            "bytes": 5_400_000,
            "load_ms": 40.0,
            "latency_ms": {"min": m * 0.9, "p50": m, "p90": m * 1.1, "p99": m * 1.2, "mean": m, "std": 0.3},
            "throughput_ips": 1e3 / m,
            "rss_delta_mb": 30.0,
            "parity": {"passed": psnr > 45, "metrics": {"psnr_db": psnr, "top1_agreement": 1.0}},
        }
        for (t, p, rt, m, psnr) in [
            ("onnx", "fp32", "onnxruntime", ms, 120.0),
            ("tflite", "int8", "litert", ms * 0.7, 36.0),
        ]
    ]
    data = {
        "schema": SCHEMA,
        "device": {
            "name": name,
            "kind": kind,
            "cpu": "cpu",
            "cores": 4,
            "os": "Linux",
            "machine": "aarch64",
            "python": "3.11",
            "runtimes": {},
        },
        "settings": {"threads": 2, "warmup": 5, "iters": 50, "interleaved": True},
        "results": results,
        "peak_rss_mb": 300.0,
        "skipped": [],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_report_rejects_non_bench_json(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "other"}')
    result = run_cli("report", str(bad), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "not a bench result" in result.stderr


def test_onnx_denormals_flush_option_flushes(tmp_path):
    """--denormals flush: a product that underflows to a denormal becomes 0, as on an NPU; keep: IEEE, as numpy.

    onnxruntime applies the flag process-wide from its first session, so each mode runs in a fresh process.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "tiny"], ["d"]), helper.make_node("Mul", ["d", "big"], ["logits"])],
        "underflow",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        [
            numpy_helper.from_array(np.array(1e-30, np.float32), "tiny"),
            numpy_helper.from_array(np.array(1e30, np.float32), "big"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.save(model, tmp_path / "u.onnx")
    x = np.full((1, 4), 1e-10, np.float32)
    d = x * np.float32(1e-30)
    assert 0 < abs(d[0, 0]) < np.finfo(np.float32).tiny  # numpy: a denormal
    code = (
        "import sys, numpy as np; from mvit_deploy.targets import get_target; "
        "from mvit_deploy.artifact import CheckpointInfo, InputSpec, Manifest, OutputSpec; "
        "m = Manifest('u.onnx', 'mobilevit_xxs', 'onnx', 'fp32', InputSpec(layout='nchw'), OutputSpec(), "
        "CheckpointInfo()); "
        f"r = get_target('onnx').bench_runner({str(tmp_path / 'u.onnx')!r}, m, 1, denormals=sys.argv[1]); "
        "print(float(r._one(np.full((1, 4), 1e-10, np.float32))[0, 0]))"
    )
    out = {
        mode: float(
            subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True).stdout
        )
        for mode in ("keep", "flush")
    }
    assert out["keep"] == pytest.approx(float(d[0, 0] * np.float32(1e30)), rel=1e-3)
    assert out["flush"] == 0.0


def _scaled(src: Path, dst: Path, factor: float) -> Path:
    """``src``'s run as a baseline whose every round took ``factor`` times as long."""
    data = json.loads(src.read_text())
    for r in data["results"]:
        lat = r["latency_ms"]
        lat["samples"] = [v * factor for v in lat["samples"]]
        for k in ("min", "p50", "p90", "p99", "mean", "std"):
            lat[k] *= factor
    dst.write_text(json.dumps(data))
    return dst


def test_latency_gate_fails_a_regression_and_passes_noise(artifacts, tmp_path):
    first = tmp_path / "first.json"
    assert (
        run_cli("bench", str(artifacts["onnx"]), "--iters", "20", "--warmup", "2", "--json", str(first)).returncode == 0
    )
    samples = json.loads(first.read_text())["results"][0]["latency_ms"]["samples"]
    assert len(samples) == 20 and np.median(samples) == pytest.approx(
        json.loads(first.read_text())["results"][0]["latency_ms"]["p50"], rel=1e-3
    )
    # the same artifact again against a baseline 2.5 times as fast: a 150 % regression
    second = tmp_path / "second.json"
    fast = _scaled(first, tmp_path / "fast.json", 0.4)
    result = run_cli(
        "bench",
        str(artifacts["onnx"]),
        "--iters",
        "20",
        "--warmup",
        "2",
        "--baseline",
        str(fast),
        "--max-regression",
        "30%",
        "--json",
        str(second),
    )
    assert result.returncode == 1, result.stderr
    assert (
        "latency regression past 30%" in result.stderr
        and artifacts["onnx"].name in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )
    c = json.loads(second.read_text())["results"][0]["comparison"]
    assert c["verdict"] == "regression" and c["change"] > 0.3 and c["p_value"] < 0.01 and c["ci95"][1] > 0.3
    assert json.loads(second.read_text())["baseline"]["max_regression"] == pytest.approx(0.3)
    # against its own first run: passes a bound above this VM's run-to-run drift (measured up to +66 %, README)
    result = run_cli(
        "bench",
        str(artifacts["onnx"]),
        "--iters",
        "20",
        "--warmup",
        "2",
        "--baseline",
        str(first),
        "--max-regression",
        "300%",
    )
    assert result.returncode == 0, result.stderr
    assert "within" in result.stdout or "faster" in result.stdout


def test_latency_gate_refuses_a_bad_baseline_before_measuring(artifacts, tmp_path):
    old = _bench_json(tmp_path, "host", "local", 8.0)  # an old result: no raw samples
    result = run_cli("bench", str(artifacts["onnx"]), "--baseline", str(old))
    assert result.returncode == 2 and "keeps no raw latency rounds" in result.stderr
    result = run_cli("bench", str(artifacts["onnx"]), "--baseline", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = run_cli("bench", str(artifacts["onnx"]), "--baseline", str(old), "--max-regression", "lots")
    assert result.returncode == 2 and "--max-regression 'lots' is not a percentage" in result.stderr


def test_aihub_device_from_the_cli_without_its_client(artifacts):
    """qai-hub is not installed here (nor a token): the one-line fix, before anything runs."""
    result = run_cli("bench", str(artifacts["tflite"]), "--device", "aihub:Samsung Galaxy S24 (Family)")
    assert (
        result.returncode == 2
        and "pip install qai-hub" in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )
    result = run_cli("bench", str(artifacts["tflite"]), "--device", "aihub:A", "--device", "local")
    assert result.returncode == 2 and "several --device at once are AI Hub devices only" in result.stderr
    result = run_cli(
        "bench", str(artifacts["tflite"]), "--device", "aihub:A", "--device", "aihub:B", "--baseline", "x.json"
    )
    assert result.returncode == 2 and "--baseline holds one device's run" in result.stderr
