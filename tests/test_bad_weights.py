"""Weights files that are not what they claim (random bytes, NaN, overflowing, absent from an offline cache).

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import pytest
from hostile import FASHION_IMAGE, PHOTO, refused_in_one_line

# (argv with {d} = the corpus (conftest.corpus) and {out} = a fresh output folder, words stderr must contain)
CASES = [
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/random.pt"],
        "not a PyTorch checkpoint (neither a zip archive nor a pickle)",
        id="predict-random-pt",
    ),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/random.bin"],
        "not a PyTorch checkpoint (neither a zip archive nor a pickle)",
        id="predict-random-bin",
    ),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/nan.safetensors"],
        "holds NaN or infinite values in stem.conv.weight",
        id="predict-nan-weights",
    ),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/random.safetensors"],
        "not a readable safetensors file",
        id="predict-random-weights",
    ),
    pytest.param(
        ["predict", FASHION_IMAGE, "--weights", "{d}/overflow.safetensors", "--json"],
        "logits hold 10 NaN or infinite",
        id="predict-overflow",
    ),
    pytest.param(
        ["predict", PHOTO, "--weights", "{d}/nan.safetensors", "--pretrained", "fashion"],
        "both a weights file and --pretrained",
        id="predict-two-weights",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--weights", "{d}/random.pt", "--out", "{out}"],
        "not a PyTorch checkpoint",
        id="export-random-pt",
    ),
    pytest.param(
        ["export", "--target", "onnx", "--weights", "{d}/nan.safetensors", "--out", "{out}"],
        "holds NaN or infinite values",
        id="export-nan-weights",
    ),
    pytest.param(
        ["parity", "{d}/random.onnx", "--weights", "{d}/does-not-exist.safetensors"],
        "does not exist",
        id="parity-missing-weights",
    ),
]


@pytest.mark.parametrize("args, message", CASES)
def test_bad_weights_is_refused_in_one_line(args, message, corpus, tmp_path):
    refused_in_one_line(args, message, corpus, tmp_path)


def test_hub_weights_not_cached_fail_fast_when_offline_or_unreachable(monkeypatch, tmp_path):
    import socket
    import time

    from huggingface_hub import constants

    from mvit_deploy.errors import CheckpointError
    from mvit_deploy.models import hub
    from mvit_deploy.models.config import get_spec

    source = get_spec("mobilevit_xxs").source("hf")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        CheckpointError,
        match="not in the Hugging Face cache and HF_HUB_OFFLINE is set.*hf download apple/mobilevit-xx-small",
    ):
        hub.download(source)

    def no_route(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", no_route)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="huggingface.co cannot be reached \\(Network is unreachable\\)"):
        hub.download(source)
    assert time.monotonic() - start < 2.0
