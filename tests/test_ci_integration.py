"""Parity in a user's own pytest run (the pytest11 plugin) and the example CI files under examples/ci/, run command by
command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, break_onnx, copy_artifact

VENV_BIN = Path(sys.executable).parent


def shell_env() -> dict:
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}


def user_pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """pytest as a user runs it, in a folder with no tests and no config of ours."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=shell_env(),
        timeout=900,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fashion_artifact):
    """The trained Fashion-MNIST XXS as ONNX and TFLite (64 px: quick), and a copy of the ONNX with its classifier bias
    dropped."""
    good, mixed = tmp_path_factory.mktemp("good"), tmp_path_factory.mktemp("mixed")
    for artifact in (fashion_artifact("onnx"), fashion_artifact("tflite")):
        copy_artifact(artifact, good)
        copy_artifact(artifact, mixed)
    break_onnx(fashion_artifact("onnx"), mixed / "broken-xxs.onnx", "dropped bias")
    return good, mixed


def test_every_artifact_is_a_parity_case_with_its_bounds_in_junit(exported, tmp_path):
    good, mixed = exported
    result = user_pytest("--mvit-artifacts", str(good), "--junit-xml", str(tmp_path / "ok.xml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    cases = ET.parse(tmp_path / "ok.xml").getroot().iter("testcase")
    props = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")} for c in cases}
    assert sorted(props) == sorted(p.name for p in good.iterdir() if p.suffix in (".onnx", ".tflite"))
    for name, p in props.items():
        assert p["images"] == "128" and any(
            k.startswith("max_rel <=") and v.endswith("(pass)") for k, v in p.items()
        ), (name, p)

    result = user_pytest("--mvit-artifacts", str(mixed), "--junit-xml", str(tmp_path / "bad.xml"), cwd=tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    root = ET.parse(tmp_path / "bad.xml").getroot()
    failed = {c.get("name"): c.find("failure") for c in root.iter("testcase") if c.find("failure") is not None}
    assert list(failed) == ["broken-xxs.onnx"]
    message = failed["broken-xxs.onnx"].text or ""
    assert "parity failed" in message and "max_rel = " in message and "bound max_rel <=" in message
    assert "Traceback" not in result.stdout, result.stdout
    assert "1 failed, 2 passed" in result.stdout


def test_assert_parity_in_a_hand_written_test(exported, tmp_path):
    good, mixed = exported
    (tmp_path / "test_mine.py").write_text(
        "import pytest\n"
        "from mvit_deploy.faces.pytest_plugin import assert_parity\n\n"
        f"GOOD, BROKEN = {str(next(good.glob('*.onnx')))!r}, {str(mixed / 'broken-xxs.onnx')!r}\n\n"
        "def test_good(mvit_parity):\n"
        "    report = mvit_parity(GOOD)\n"
        "    assert report.n_images == 32 and report.metrics['top1_agreement'] == 1.0\n\n"
        "def test_broken_fails():\n"
        "    with pytest.raises(AssertionError, match='max_rel'):\n"
        "        assert_parity(BROKEN, n=32)\n"
    )
    result = user_pytest(
        "test_mine.py", "-q", "--mvit-n", "32", cwd=tmp_path
    )  # the fixture takes --mvit-n as its default
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout[-3000:]
    # named test paths and --mvit-artifacts: both run; --mvit-artifacts alone: the parity cases alone
    result = user_pytest("test_mine.py", "--mvit-artifacts", str(good), "--mvit-n", "32", "-q", cwd=tmp_path)
    assert result.returncode == 0 and "4 passed" in result.stdout, result.stdout[-3000:]
    result = user_pytest("--mvit-artifacts", str(good), "--mvit-n", "32", "-q", cwd=tmp_path)
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout[-3000:]


def test_plugin_usage_errors_are_one_line(tmp_path):
    result = user_pytest("--mvit-artifacts", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 4 and "no such folder" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "empty").mkdir()
    result = user_pytest("--mvit-artifacts", str(tmp_path / "empty"), cwd=tmp_path)
    assert result.returncode == 4 and "no exported artifact in it" in result.stderr


def test_a_broken_artifact_fails_in_one_line(fashion_artifact, tmp_path):
    """A folder of broken artifacts: each case fails in a line of its own, never pytest's traceback (a folder of 8
    printed 2,321 lines). Random bytes with a matching sidecar, an artifact without its manifest, and a good one whose
    runtime raises a bug of its own (patched in by the user's conftest.py)."""
    import numpy as np

    from mvit_deploy.artifact import manifest_path, tree_bytes, tree_sha256

    folder = tmp_path / "broken"
    good = copy_artifact(fashion_artifact("onnx"), folder)
    random = folder / "random.onnx"
    random.write_bytes(np.random.default_rng(0).bytes(100_000))
    manifest = json.loads(manifest_path(good).read_text())
    manifest.update(artifact=random.name, sha256=tree_sha256(random), bytes=tree_bytes(random))
    manifest_path(random).write_text(json.dumps(manifest))
    (folder / "lonely.onnx").write_bytes(random.read_bytes()[:1000])
    (tmp_path / "conftest.py").write_text(
        "from pathlib import Path\n"
        "import mvit_deploy.targets as targets\n\n"
        "original = targets.load_runner\n\n"
        "def load_runner(path, *args, **kw):\n"
        f"    if Path(path).name == {good.name!r}:\n"
        "        raise RuntimeError('the runtime broke\\n  over two lines')\n"
        "    return original(path, *args, **kw)\n\n"
        "targets.load_runner = load_runner\n"
    )
    result = user_pytest("--mvit-artifacts", str(folder), "--mvit-n", "4", cwd=tmp_path)
    assert result.returncode == 1 and "3 failed" in result.stdout, result.stdout[-3000:]
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if " FAILURES " in line) + 1
    failures = lines[start : next(i for i in range(start, len(lines)) if lines[i].startswith("="))]
    assert len(failures) == 6, "\n".join(failures)  # per case: pytest's header line and one line of ours
    assert "Traceback" not in result.stdout and not any("def " in line or line.startswith("E ") for line in failures)
    text = "\n".join(failures)
    assert "lonely.onnx: " in text and "random.onnx: " in text, text
    assert f"{good.name}: internal error: RuntimeError: the runtime broke over two lines" in text, text


def ci_commands(name: str) -> list[str]:
    """The shell commands of an example CI file, install steps left out (this venv is the install)."""
    doc = yaml.safe_load((ROOT / "examples" / "ci" / name).read_text())
    if name.startswith("github"):
        (job,) = doc["jobs"].values()
        installs = [s["run"] for s in job["steps"] if s.get("name") == "Install"]
        commands = [s["run"] for s in job["steps"] if "run" in s and s.get("name") != "Install"]
    else:
        (job,) = (v for v in doc.values() if isinstance(v, dict) and "script" in v)
        installs = job["before_script"]
        commands = [*job["script"], *job["after_script"]]
    extras = {e for line in installs for e in line.split("[", 1)[1].split("]")[0].split(",")}
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras and extras <= declared.keys(), (
        f"{name} installs extras {extras - declared.keys()} that pyproject.toml does not declare"
    )
    return commands


def _words(commands: list[str]) -> list[list[str]]:
    return [line.split() for c in commands for line in c.replace("; ", "\n").splitlines() if line.strip()]


def test_both_example_ci_files_run_the_same_commands():
    """So running one file's commands (below) proves both."""
    assert _words(ci_commands("github-actions.yml")) == _words(ci_commands("gitlab-ci.yml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["github-actions.yml"])
def test_example_ci_commands_pass(name, tmp_path):
    for command in ci_commands(name):
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", command],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=shell_env(),
            timeout=900,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    cases = list(ET.parse(tmp_path / "parity.xml").getroot().iter("testcase"))
    assert len(cases) == 2 and not any(c.find("failure") is not None for c in cases)
    assert (tmp_path / "report" / "report.html").exists() and len(
        json.loads((tmp_path / "bench.json").read_text())["results"]
    ) == 2
    # the latency step again, with a baseline twice as fast as this run: the job must fail
    data = json.loads((tmp_path / "bench.json").read_text())
    for r in data["results"]:
        r["latency_ms"]["samples"] = [v / 2 for v in r["latency_ms"]["samples"]]
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "bench.json").write_text(json.dumps(data))
    latency = next(c for c in ci_commands(name) if "mvit-deploy bench" in c)
    if name.startswith("gitlab"):
        latency = "\n".join(c for c in ci_commands(name) if c.startswith("gate=") or "mvit-deploy bench" in c)
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", latency],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=shell_env(),
        timeout=900,
    )
    assert done.returncode == 1 and "latency regression past 25%" in done.stderr, done.stderr[-2000:]
