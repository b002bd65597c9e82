"""The device side stands alone, and the verdict is computed where the artifact runs.

- ``mvit_deploy/device/`` imports only the standard library, numpy, the runtimes and itself (AST scan);
- its copy (what ``--device ssh://`` ships) runs in a clean interpreter: a fresh venv holding only
  numpy, onnxruntime and ai-edge-litert, ``python -I``, the copied files alone;
- on an aarch64 board (Debian arm64 under qemu-user, ``scripts/aarch64_board.sh``, reached over ssh on
  127.0.0.1) ``parity --device`` and ``bench --device`` run the shipped XXS's artifacts with the ARM
  kernels; where binfmt_misc cannot be mounted those tests skip with that reason.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, run_cli

from mvit_deploy.bench.ssh import REMOTE_PACKAGE, stage_device_code

DEVICE = ROOT / "mvit_deploy" / "device"
# What a board may need besides the standard library: numpy, the runtimes, and Pillow for Core ML's image input (macOS).
ALLOWED = {"numpy", "onnxruntime", "ai_edge_litert", "tflite_runtime", "coremltools", "executorch", "torch", "PIL"}
BOARD_SCRIPT = ROOT / "scripts" / "aarch64_board.sh"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def foreign_imports(path: Path, package_depth: int) -> list[str]:
    """Imports of ``path`` that a board without the rest of mvit_deploy could not satisfy."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.split(".")[0] not in ALLOWED | sys.stdlib_module_names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] not in ALLOWED | sys.stdlib_module_names:
                bad.append(node.module)
            elif node.level > package_depth:  # climbs out of device/
                bad.append("." * node.level + (node.module or ""))
    return bad


def test_device_side_imports_nothing_else_of_ours():
    files = sorted(DEVICE.rglob("*.py"))
    assert len(files) >= 9
    found = {str(f.relative_to(DEVICE)): foreign_imports(f, len(f.relative_to(DEVICE).parts)) for f in files}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_import_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "runtimes" / "x.py"
    bad.parent.mkdir()
    bad.write_text(
        "import click\nfrom ...metrics import fidelity\nfrom .. import errors\nfrom rich.table import Table\nimport "
        "numpy, json\n"
    )
    assert foreign_imports(bad, 2) == ["click", "...metrics", "rich.table"]


# ---------------------------------------------------------------------------- a clean interpreter


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory):
    """A venv without system site-packages holding only numpy and the two runtimes, at the lock's versions."""
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    venv = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    wanted = [f"{p}=={pins[p].split()[0]}" for p in ("numpy", "onnxruntime", "ai-edge-litert")]
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", *wanted], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return py


def run_copy(py: Path, code_root: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -I``: no PYTHONPATH, no user site, no current directory; the copy is the only code of ours."""
    boot = (
        f"import sys, runpy; sys.path.insert(0, {str(code_root)!r}); sys.argv[0] = {REMOTE_PACKAGE!r}; "
        f"runpy.run_module({REMOTE_PACKAGE!r}, run_name='__main__')"
    )
    return subprocess.run([str(py), "-I", "-c", boot, *args], capture_output=True, text=True, timeout=600, cwd="/")


def test_the_copy_runs_in_a_clean_interpreter(clean_python, fashion_artifact, tmp_path):
    from mvit_deploy.artifact import read_manifest
    from mvit_deploy.pipeline.parity import parity_inputs
    from mvit_deploy.targets import load_runner

    stage_device_code(tmp_path / "code")
    has = subprocess.run(
        [
            str(clean_python),
            "-I",
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'click', 'rich', 'PIL', 'mvit_deploy') if "
            "u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert has.stdout.strip() == "[]"
    for target, precision in (("onnx", "int8"), ("tflite", "fp32")):
        art = fashion_artifact(target, precision)
        manifest = read_manifest(art)
        x = parity_inputs(manifest, n=8)
        np.savez(tmp_path / "in.npz", x=x)
        done = run_copy(
            clean_python,
            tmp_path / "code",
            "run",
            str(art),
            "--inputs",
            str(tmp_path / "in.npz"),
            "--out",
            str(tmp_path / "out.npz"),
            "--threads",
            "2",
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert (
            answer["n"] == 8
            and answer["device"]["machine"] == os.uname().machine
            and answer["device"]["emulated"] is None
        )
        with np.load(tmp_path / "out.npz") as data:
            got = data["logits"]
        np.testing.assert_allclose(
            got, load_runner(art, manifest, 2)(x), rtol=0, atol=1e-5 * np.abs(got).max()
        )  # same runtime, same CPU
    bench = run_copy(
        clean_python, tmp_path / "code", "bench", str(fashion_artifact("onnx")), "--iters", "3", "--warmup", "1"
    )
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["results"][0]["latency_ms"]["p50"] > 0
    broken = tmp_path / "in-bad.npz"
    np.savez(broken, x=np.zeros((2, 3, 5, 5), np.float32))
    bad = run_copy(
        clean_python, tmp_path / "code", "run", str(art), "--inputs", str(broken), "--out", str(tmp_path / "o.npz")
    )
    assert (
        bad.returncode == 2
        and bad.stderr.startswith("error: ")
        and "Traceback" not in bad.stderr
        and not (tmp_path / "o.npz").exists()
    )


# ---------------------------------------------------------------------------- the aarch64 board


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """The emulated Cortex-A76 board (built once, cached outside the clone), an sshd whose sessions run inside it."""
    if os.geteuid() != 0:
        pytest.skip(reason="the aarch64 board needs root (binfmt_misc, chroot); CI runs as root")
    built = subprocess.run(["bash", str(BOARD_SCRIPT), "build"], capture_output=True, text=True, timeout=1800)
    if built.returncode == 77:
        pytest.skip(reason=built.stderr.strip().splitlines()[-1])
    assert built.returncode == 0, built.stderr[-3000:]
    keys = tmp_path_factory.mktemp("board-ssh")
    port = _free_port()
    started = subprocess.run(
        ["bash", str(BOARD_SCRIPT), "sshd", str(port), str(keys)], capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
    spec, key = started.stdout.split()
    flags = [
        "--identity",
        key,
        "--ssh-option",
        "StrictHostKeyChecking=no",
        "--ssh-option",
        f"UserKnownHostsFile={keys / 'known_hosts'}",
    ]
    yield {"spec": spec, "flags": flags, "root": Path(built.stdout.strip())}
    os.kill(int((keys / "sshd.pid").read_text()), signal.SIGTERM)


def board_parity(board, art: Path, *extra: str):
    done = run_cli("parity", str(art), "--device", board["spec"], *board["flags"], "--json", *extra)
    assert done.returncode in (0, 1), done.stderr
    return done, json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.board
def test_parity_on_the_aarch64_board(board, fashion_artifact):
    """Every artifact the board can run passes there; fp32 computes alike on both CPUs, ORT's int8 does not (its ARM
    kernels)."""
    apart = {}
    for target, precision in (
        ("onnx", "fp32"),
        ("onnx", "int8"),
        ("ort", "int8"),
        ("tflite", "fp32"),
        ("tflite", "int8"),
    ):
        done, report = board_parity(board, fashion_artifact(target, precision))
        assert report["passed"] and done.returncode == 0, report["failures"]
        dev = report["device"]
        assert (
            dev["machine"] == "aarch64"
            and dev["cpu"] == "Cortex-A76"
            and "asimddp" in dev["isa"]
            and dev["emulated"].startswith("qemu-user")
        )
        assert report["host"]["machine"] == "x86_64" and report["host"]["passed"]
        assert report["metrics"]["top1_agreement"] >= 0.99
        apart[target, precision] = report["device_vs_host"]["max_rel"]
    assert apart["onnx", "fp32"] < 1e-5 and apart["tflite", "fp32"] < 1e-5
    # onnxruntime's int8 kernels on ARM are not its x86 ones: 6.0e-3 apart from an AVX-512 VNNI host, 6.5e-2 from
    # an AVX2-only one (issue 31); fp32 runs agree to 8e-7. The board is what this test is about: the gap is real.
    assert apart["onnx", "int8"] > 1e-3 and apart["ort", "int8"] > 1e-3


@pytest.mark.slow
@pytest.mark.board
def test_board_failure_is_one_line_and_table_names_the_device(board, fashion_artifact, tmp_path):
    art = fashion_artifact("tflite", "fp32")
    table = run_cli(
        "parity",
        str(art),
        "--device",
        board["spec"],
        *board["flags"],
        "--n",
        "8",
        "--junit-xml",
        str(tmp_path / "p.xml"),
    )
    assert table.returncode == 0, table.stderr
    assert "this host (x86_64)" in table.stdout and "aarch64, emulated" in table.stdout and "Cortex-A76" in table.stdout
    assert "timings are not" in table.stdout
    xml = (tmp_path / "p.xml").read_text()
    assert 'name="device.machine" value="aarch64"' in xml and "on 127.0.0.1" in xml
    missing = run_cli(
        "parity",
        str(art),
        "--device",
        board["spec"],
        *board["flags"],
        "--n",
        "4",
        "--remote-python",
        "/usr/bin/python3-nonexistent",
    )
    assert (
        missing.returncode == 2 and "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    )


@pytest.mark.slow
@pytest.mark.board
def test_bench_on_the_aarch64_board_is_labelled_emulated(board, fashion_artifact, tmp_path):
    out = tmp_path / "board.json"
    done = run_cli(
        "bench",
        str(fashion_artifact("onnx", "int8")),
        str(fashion_artifact("tflite", "int8")),
        "--device",
        board["spec"],
        *board["flags"],
        "--iters",
        "3",
        "--warmup",
        "1",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["device"]["machine"] == "aarch64" and data["device"]["emulated"] and len(data["results"]) == 2
    assert "emulated" in done.stdout
    host = tmp_path / "host.json"
    assert (
        run_cli(
            "bench", str(fashion_artifact("onnx", "int8")), "--iters", "3", "--warmup", "1", "--json", str(host)
        ).returncode
        == 0
    )
    rep = run_cli("report", str(host), str(out), "--out", str(tmp_path / "report"))
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "report" / "report.md").read_text()
    assert "emulated" in md and "(local)" in md


@pytest.mark.slow
@pytest.mark.board
def test_the_board_python_holds_only_the_runtimes(board):
    """The board's interpreter is the clean one the device code must run in: nothing of ours, no torch, click or
    rich."""
    probe = (
        "import importlib.util as u; print([m for m in ('numpy', 'onnxruntime', 'ai_edge_litert', 'torch', "
        "'click', 'rich', 'mvit_deploy') if u.find_spec(m)])"
    )
    done = subprocess.run(
        [shutil.which("chroot") or "/usr/sbin/chroot", str(board["root"]), "/usr/bin/python3", "-I", "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env={"QEMU_CPU": "cortex-a76", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['numpy', 'onnxruntime', 'ai_edge_litert']"


def in_board(board, *argv: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """A command inside the board (its own aarch64 binaries), with the environment an ssh session gets."""
    env = {"QEMU_CPU": "cortex-a76", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [shutil.which("chroot") or "/usr/sbin/chroot", str(board["root"]), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.board
def test_the_pi_users_own_install_on_aarch64(board, fashion_artifact, tmp_path):
    """`pip install 'mvit-deploy[device]'` from the wheel this project builds (plus the aarch64 wheels) gives a
    working `mvit-deploy bench` on the board, and its --help says which commands need the host."""

    wheels = tmp_path / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("mvit_deploy-*.whl")
    work = Path(tempfile.mkdtemp(prefix="pi-user-", dir=board["root"] / "tmp"))
    inside = "/tmp/" + work.name
    try:
        shutil.copy(wheel, work / wheel.name)
        art = fashion_artifact("tflite", "int8")
        for f in (art, art.with_suffix(".json")):
            shutil.copy(f, work / f.name)
        venv = in_board(board, "/usr/bin/python3", "-m", "venv", f"{inside}/venv")
        assert venv.returncode == 0, venv.stderr
        pip = in_board(
            board,
            f"{inside}/venv/bin/pip",
            "install",
            "-q",
            "--no-index",
            "--find-links",
            "/wheels",
            f"mvit-deploy[device] @ file://{inside}/{wheel.name}",
        )
        assert pip.returncode == 0, pip.stderr[-2000:]
        assert in_board(board, f"{inside}/venv/bin/python", "-c", "import torch").returncode != 0, (
            "the [device] extra pulled in torch"
        )
        helped = in_board(board, f"{inside}/venv/bin/mvit-deploy", "--help")
        assert helped.returncode == 0, helped.stderr
        assert "mvit-deploy[device] (no torch): bench" in " ".join(helped.stdout.split())
        out = in_board(
            board,
            f"{inside}/venv/bin/mvit-deploy",
            "bench",
            f"{inside}/{art.name}",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--json",
            f"{inside}/pi.json",
        )
        assert out.returncode == 0, out.stderr
        data = json.loads((work / "pi.json").read_text())
        assert (
            data["device"]["machine"] == "aarch64"
            and data["device"]["emulated"]
            and data["results"][0]["runtime"] == "litert"
        )
        needs_host = in_board(board, f"{inside}/venv/bin/mvit-deploy", "parity", f"{inside}/{art.name}", "--n", "2")
        assert needs_host.returncode == 2 and "Traceback" not in needs_host.stderr and "torch" in needs_host.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.board
def test_pytest_plugin_judges_on_the_board(board, fashion_artifact, tmp_path):
    from helpers import copy_artifact

    folder = tmp_path / "out"
    copy_artifact(fashion_artifact("tflite", "int8"), folder)
    xml = tmp_path / "junit.xml"
    ssh_opts = [f"--mvit-ssh-option={o}" for o in board["flags"][3::2]]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--mvit-artifacts",
            str(folder),
            "--mvit-n",
            "16",
            "--mvit-device",
            board["spec"],
            "--mvit-identity",
            board["flags"][1],
            *ssh_opts,
            "--junit-xml",
            str(xml),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    text = xml.read_text()
    assert (
        'name="device.machine" value="aarch64"' in text
        and 'name="device_vs_host.max_rel"' in text
        and 'tests="1"' in text
    )


def test_parity_over_adb_with_a_python_on_the_phone(clean_python, fashion_artifact, tmp_path):
    """A stand-in `adb` whose phone is a folder here and whose Python is the clean interpreter: the device side
    is pushed, run there and the logits pulled back (no phone is attached to this machine)."""
    phone = tmp_path / "phone"
    fake = tmp_path / "bin" / "adb"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/bash\n"
        f'map() {{ printf "%s" "${{1//\\/data\\/local\\/tmp/{phone}/data/local/tmp}}"; }}\n'
        '[ "$1" = -s ] && shift 2\n'
        'case "$1" in\n'
        '  shell) shift; exec sh -c "$(map "$*")" ;;\n'
        '  push) cp -r "$2" "$(map "$3")" ;;\n'
        '  pull) cp "$(map "$2")" "$3" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    (phone / "data" / "local" / "tmp").mkdir(parents=True)
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}"}
    art = fashion_artifact("onnx", "int8")
    done = run_cli(
        "parity",
        str(art),
        "--device",
        "adb:EMU42",
        "--remote-python",
        str(clean_python),
        "--n",
        "16",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["device"]["kind"] == "adb" and report["device"]["name"] == "EMU42" and report["passed"]
    assert report["device_vs_host"]["max_rel"] < 1e-6  # the same runtime on the same CPU
    assert not any((phone / "data" / "local" / "tmp").rglob("*.npz")), "the work directory is left on the phone"
    missing = run_cli("parity", str(art), "--device", "adb", "--remote-python", "/no/python3", "--n", "4", env=env)
    assert missing.returncode == 2 and "--remote-python" in missing.stderr and "Traceback" not in missing.stderr
