"""export --batch dynamic (onnx, ort): any batch at run time, the same numbers as batch 1, refused where a target
cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import run_cli

from mvit_deploy.errors import UsageError
from mvit_deploy.inputs.datasets.fashion_mnist import load_fashion_mnist, to_model_inputs
from mvit_deploy.models import load_model
from mvit_deploy.pipeline.export import export
from mvit_deploy.targets import ExportOptions

MVIT = str(Path(sys.executable).with_name("mvit-deploy"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory, fashion_artifact):
    dyn = export(
        ExportOptions(
            model="mobilevit_xxs",
            pretrained="fashion",
            target="onnx",
            target_options={"batch": "dynamic"},
            out_dir=tmp_path_factory.mktemp("dyn"),
        )
    )
    return dyn, fashion_artifact("onnx")


def test_any_batch_runs_and_matches_batch_one_and_pytorch(pair):
    dyn, _ = pair
    assert dyn.artifact.name == "mobilevit_xxs-onnx-fp32-dynbatch.onnx" and dyn.manifest.input.batch == "dynamic"
    assert dyn.manifest.parity["passed"], dyn.manifest.parity["failures"]
    session = ort.InferenceSession(str(dyn.artifact), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a named, free dimension
    images, _ = load_fashion_mnist("subset")
    x = to_model_inputs(images[:8], 64)
    batched = session.run(None, {"image": x})[0]
    one_by_one = np.concatenate([session.run(None, {"image": x[i : i + 1]})[0] for i in range(8)])
    with torch.no_grad():
        ref = load_model("mobilevit_xxs", pretrained="fashion")(torch.from_numpy(x)).numpy()
    peak = np.abs(ref).max()
    assert batched.shape == (8, 10) and np.abs(batched - one_by_one).max() / peak < 1e-5
    assert np.abs(batched - ref).max() / peak < 1e-4  # the fp32 bound, against PyTorch


def test_eval_of_the_dynamic_artifact_equals_the_batch_one_artifact(pair):
    dyn, fixed = pair
    out = subprocess.run(
        [MVIT, "eval", str(dyn.artifact), str(fixed), "--data", "fashion-mnist:subset", "--n", "200", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = json.loads(out)["rows"]
    assert rows[0]["predictions"]["top5"] == rows[1]["predictions"]["top5"]


def test_targets_with_a_batch_of_one_refuse(tmp_path):
    result = run_cli("export", "--target", "tflite", "--batch", "dynamic", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "--batch" in result.stderr and not (tmp_path / "o").exists()
    with pytest.raises(UsageError, match="--batch applies to onnx, ort, not coreml"):
        export(
            ExportOptions(
                model="mobilevit_xxs", target="coreml", target_options={"batch": "dynamic"}, out_dir=tmp_path / "o"
            )
        )


@pytest.mark.parametrize("target", ["onnx", "ort"])
def test_int8_with_a_free_batch_keeps_its_parity(target, tmp_path):
    result = export(
        ExportOptions(
            model="mobilevit_xxs",
            pretrained="fashion",
            target=target,
            precision="int8",
            target_options={"batch": "dynamic"},
            out_dir=tmp_path,
        )
    )
    parity = result.manifest.parity
    assert parity["passed"] and parity["metrics"]["psnr_db"] > 40, parity  # batch 1 measures 44.1 dB on both
    assert result.manifest.input.shape[0] == "batch" and result.manifest.output.shape == ["batch", 10]
