"""The install story: one lock for venv and Docker, a torch-free device side, licensed photos."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import tomllib
from helpers import ROOT

LOCK = ROOT / "requirements.lock"


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_the_toolchain_without_torchvision_or_timm():
    pins = lock_pins()
    assert pins["torch"] == "2.13.0+cpu" and pins["coremltools"] == "9.0"
    for needed in (
        "onnx",
        "onnxruntime",
        "onnxscript",
        "litert-torch",
        "ai-edge-litert",
        "click",
        "rich",
        "numpy",
        "pillow",
        "safetensors",
        "pytest",
        "transformers",
    ):
        assert needed in pins, needed
    assert "torchvision" not in pins and "timm" not in pins


def test_installed_versions_are_the_locked_ones():
    from importlib.metadata import version

    pins = lock_pins()
    for pkg in ("torch", "onnx", "onnxruntime", "coremltools", "litert-torch", "transformers", "numpy"):
        assert version(pkg) == pins[pkg], pkg


def test_dockerfile_installs_the_same_lock_and_runs_the_cli():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"COPY requirements\.lock", text)
    assert re.search(r"pip install .*-r requirements\.lock", text)
    assert 'ENTRYPOINT ["mvit-deploy"]' in text
    assert "--no-deps" in text, "the package itself must not re-resolve dependencies past the lock"


def test_pyproject_extras_fit_the_lock_and_device_has_no_torch():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = meta["optional-dependencies"]
    assert not any(d.startswith("torch") for d in extras["device"])
    assert meta["scripts"]["mvit-deploy"] == "mvit_deploy.faces.cli:main"
    from packaging.requirements import Requirement

    pins = lock_pins()
    for spec in meta["dependencies"] + extras["export"] + extras["device"] + extras["test"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert req.specifier.contains(pins[name], prereleases=True), f"{spec} excludes the locked {pins[name]}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_device_side_imports_without_torch():
    code = (
        "import sys, mvit_deploy, mvit_deploy.inputs.preprocess, mvit_deploy.inputs.calibration, "
        "mvit_deploy.inputs.labels, "
        "mvit_deploy.pipeline.predict;"
        "import mvit_deploy.inputs.calibration as c; c.photo_inputs('eval', 64, crops_per_photo=1);"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_shipped_photo_has_source_and_license():
    from mvit_deploy.inputs.calibration import PHOTO_DIR

    manifest = json.loads((PHOTO_DIR / "manifest.json").read_text())["photos"]
    files = {p.name for p in PHOTO_DIR.iterdir() if p.suffix == ".jpg"}
    assert files == {p["file"] for p in manifest}
    for p in manifest:
        assert p["license"] and p["source"] and p["split"] in {"calib", "eval"}
    splits = {p["split"] for p in manifest}
    assert splits == {"calib", "eval"}
