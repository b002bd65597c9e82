"""Helpers the tests share: paths, the CLI as a person runs it, the Hugging Face reference, broken artifacts.

Imported by name (``from helpers import run_cli``); pytest fixtures live in conftest.py.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
torch.set_num_threads(2)


ROOT = Path(__file__).resolve().parents[1]


FIXTURES = Path(__file__).parent / "fixtures"


SLOW = {"mobilevit_xs", "mobilevit_s", "mobilevitv2_200"}


# v2 widths checked against HF's logits in every test that takes a variant: the three (the
# other four are covered by the parameter count against HF and the registry's width rule).
V2_CHECKED = {"mobilevitv2_050", "mobilevitv2_100", "mobilevitv2_200"}


# Hugging Face configs per variant, as transformers' own conversion script sets them.
HF_CONFIGS = {
    "mobilevit_xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0),
    "mobilevit_xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "mobilevit_s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}


def variants(all_widths: bool = False):
    """Registry variants as pytest params; the larger ones carry the slow marker."""
    from mvit_deploy.models.config import MODELS

    names = [n for n, spec in MODELS.items() if spec.family == "mobilevit" or n in V2_CHECKED or all_widths]
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def hf_width(name: str) -> float:
    """A v2 variant's width multiplier, read from its timm name (mobilevitv2_075 -> 0.75)."""
    return int(name.removeprefix("mobilevitv2_")) / 100


@functools.cache
def hf_reference(name: str, num_classes: int = 1000, seed: int = 3):
    """A seeded HF MobileViTForImageClassification (v1) or MobileViTV2ForImageClassification with realistic
    activations."""
    import transformers

    from mvit_deploy.models.fixture import make_realistic

    torch.manual_seed(seed)
    if name.startswith("mobilevitv2_"):
        config = transformers.MobileViTV2Config(num_labels=num_classes, width_multiplier=hf_width(name))
        model = transformers.MobileViTV2ForImageClassification(config).eval()
    else:
        config = transformers.MobileViTConfig(num_labels=num_classes, **HF_CONFIGS[name])
        model = transformers.MobileViTForImageClassification(config).eval()
    make_realistic(model, lambda x: model(pixel_values=x).logits, model.classifier, seed=seed)
    return model


def hf_logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).logits


def run_cli(
    *args: str, env: dict | None = None, cwd: Path | None = None, memory_cap: int | None = None
) -> subprocess.CompletedProcess:
    """Run the installed console script the way a person would.

    ``memory_cap`` (bytes) limits its address space (RLIMIT_AS, as `prlimit --as`), so a run
    that allocates without bound fails instead of exhausting the machine.
    """
    exe = Path(sys.executable).with_name("mvit-deploy")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mvit_deploy.faces.cli"]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}

    def cap():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))

    return subprocess.run(
        cmd + list(args),
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
        preexec_fn=cap if memory_cap else None,
    )


def break_onnx(src, dst, how: str):
    """A deliberately wrong conversion: the artifact keeps running, its numbers are wrong."""
    import onnx
    from onnx import numpy_helper

    from mvit_deploy.artifact import manifest_path, tree_sha256

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    arrays = {n: numpy_helper.to_array(t) for n, t in inits.items()}
    if how == "swapped channels":  # RGB read as BGR: the stem conv's input channels reversed
        name = next(n for n, a in arrays.items() if a.ndim == 4 and a.shape[1] == 3)
        new = arrays[name][:, ::-1].copy()
    elif how == "dropped bias":  # the classifier's bias lost
        classes = json.loads(manifest_path(src).read_text())["output"]["classes"]
        name = next(n for n, a in arrays.items() if a.ndim == 1 and a.shape[0] == classes)
        new = np.zeros_like(arrays[name])
    else:  # "transposed weight": a square linear weight stored transposed
        name = next(n for n, a in arrays.items() if a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 10)
        new = arrays[name].T.copy()
    inits[name].CopyFrom(numpy_helper.from_array(new, name))
    onnx.save(model, str(dst))
    manifest = json.loads(manifest_path(src).read_text())
    manifest["sha256"] = tree_sha256(dst)
    manifest_path(dst).write_text(json.dumps(manifest))


def copy_artifact(path: Path, folder: Path) -> Path:
    """An artifact and its manifest, copied into ``folder``."""
    import shutil

    from mvit_deploy.artifact import manifest_path

    folder.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.copytree(path, folder / path.name)
    else:
        shutil.copy(path, folder / path.name)
        shutil.copy(manifest_path(path), folder / manifest_path(path).name)
    return folder / path.name
