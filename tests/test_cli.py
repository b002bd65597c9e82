"""The CLI as a person uses it: subprocesses on real files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import hf_reference, run_cli
from PIL import Image
from safetensors.torch import save_file

from mvit_deploy.models.config import MODELS

PHOTO = "mvit_deploy/inputs/calibration/photos/chelsea.jpg"


def test_models_json_lists_registry_with_counted_numbers():
    result = run_cli("models", "--json")
    assert result.returncode == 0, result.stderr
    cards = {c["name"]: c for c in json.loads(result.stdout)}
    assert set(cards) == set(MODELS)
    # widths and dims from the paper; params/GMACs counted (timm reports 1.27/2.32/5.58 M, 0.4/1.0/2.0 GMACs)
    expect = {
        "mobilevit_xxs": (1.27, 0.41, [64, 80, 96], 2.0),
        "mobilevit_xs": (2.32, 1.03, [96, 120, 144], 4.0),
        "mobilevit_s": (5.58, 2.0, [144, 192, 240], 4.0),
    }
    for name, (params, gmacs, dims, expand) in expect.items():
        c = cards[name]
        assert c["params_m"] == pytest.approx(params, abs=0.01)
        assert c["gmacs"] == pytest.approx(gmacs, abs=0.02)
        assert c["config"]["transformer_dims"] == dims and c["config"]["expand_ratio"] == expand
        assert c["input_size"] == 256
        layouts = {s["layout"]: s for s in c["sources"]}
        assert layouts["hf"]["preprocessing"]["channel_order"] == "BGR"
        assert layouts["timm"]["preprocessing"]["channel_order"] == "RGB"
    # v2: timm's model cards list 1.4 / 4.9 / 18.4 M params and 0.5 / 1.8 / 7.2 GMACs at 256 px
    for name, (params, gmacs) in {
        "mobilevitv2_050": (1.4, 0.5),
        "mobilevitv2_100": (4.9, 1.8),
        "mobilevitv2_200": (18.4, 7.2),
    }.items():
        c = cards[name]
        assert c["family"] == "mobilevitv2" and c["input_size"] == 256
        assert c["params_m"] == pytest.approx(params, rel=0.05) and c["gmacs"] == pytest.approx(gmacs, rel=0.08)


def test_models_table_prints():
    result = run_cli("models")
    assert result.returncode == 0 and "mobilevit_xs" in result.stdout and "mobilevitv2_200" in result.stdout
    assert "MobileViT v1" in result.stdout and "MobileViT v2" in result.stdout


def _hf_top5(model, image_path):
    from transformers import MobileViTImageProcessorPil

    # apple/mobilevit-*'s preprocessor_config: shortest edge 288, crop 256, bilinear (resample 2), flip to BGR
    proc = MobileViTImageProcessorPil(size={"shortest_edge": 288}, crop_size={"height": 256, "width": 256}, resample=2)
    x = proc(images=Image.open(image_path).convert("RGB"), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(pixel_values=x).logits[0]
    return logits.topk(5).indices.tolist(), logits


def _fill_hub_cache(cache, repo_id, state_dict):
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(snap / "model.safetensors"))


def test_predict_pretrained_from_hub_cache_matches_hf_pipeline(tmp_path):
    """--pretrained goes through huggingface_hub (here from its cache, offline); top-5 = HF processor + HF model."""
    ref = hf_reference("mobilevit_xxs")
    _fill_hub_cache(tmp_path / "hub", "apple/mobilevit-xx-small", ref.state_dict())
    result = run_cli("predict", PHOTO, "--pretrained", "hf", "--json", env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    expected, logits = _hf_top5(ref, PHOTO)
    assert [p["index"] for p in out["top"]] == expected
    probs = torch.softmax(logits.double(), 0)
    assert out["top"][0]["probability"] == pytest.approx(probs[expected[0]].item(), abs=1e-4)


def test_predict_weights_file_prints_top5_names(tmp_path):
    ref = hf_reference("mobilevit_xxs")
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    result = run_cli("predict", PHOTO, "--weights", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("1. ")
    expected, _ = _hf_top5(ref, PHOTO)
    assert f"(class {expected[0]})" in lines[0]


def test_pretrained_offline_one_line(tmp_path):
    result = run_cli("predict", PHOTO, "--pretrained", "hf", env={"HF_HUB_CACHE": str(tmp_path / "empty")})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "apple/mobilevit-xx-small" in result.stderr and "--weights PATH" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "missing.jpg"], "does not exist"),
        (["predict", "mvit_deploy/inputs/calibration/photos/manifest.json"], "cannot read image"),
        (["predict", PHOTO, "--input-size", "300"], "multiple of 64"),
        (["predict", "mvit_deploy/inputs/calibration/photos"], "is a directory"),
    ],
)
def test_bad_usage_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_predict_fixture_says_it_is_untrained():
    result = run_cli("predict", PHOTO, "--input-size", "320")
    assert result.returncode == 0
    assert "untrained test fixture" in result.stderr


def test_preprocessing_matches_hf_processor():
    from transformers import MobileViTImageProcessorPil

    from mvit_deploy.inputs.preprocess import preprocess
    from mvit_deploy.models.config import HF_PREPROCESSING

    proc = MobileViTImageProcessorPil(size={"shortest_edge": 288}, crop_size={"height": 256, "width": 256}, resample=2)
    for name in ("chelsea", "coffee", "astronaut"):
        path = f"mvit_deploy/inputs/calibration/photos/{name}.jpg"
        ref = proc(images=Image.open(path).convert("RGB"), return_tensors="np")["pixel_values"][0]
        np.testing.assert_allclose(preprocess(path, 256, HF_PREPROCESSING), ref, atol=1e-6)
