"""Weights files that are not what they claim (random bytes, NaN, overflowing, absent from an offline cache; a
header claiming more than the file or any MobileViT holds, a FIFO), each refused before it is allocated.

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile

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


GB = 1 << 30


def safetensors_header(path, tensors: dict, length: int | None = None, size: int | None = None) -> None:
    """A .safetensors file holding only a header (its length field may lie), grown sparse to ``size`` bytes: a file
    that claims 50 GB costs no disk."""
    header = json.dumps(tensors).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header) if length is None else length) + header)
        f.truncate(size or 8 + len(header))


def tensor(nbytes: int, begin: int = 0) -> dict:
    return {"dtype": "F32", "shape": [nbytes // 4], "data_offsets": [begin, begin + nbytes]}


@pytest.fixture(scope="module")
def weights_corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights-33")
    sparse = {"stem.conv.weight": tensor(50 * GB)}
    safetensors_header(d / "sparse-50gb.safetensors", sparse, size=8 + len(json.dumps(sparse)) + 50 * GB)
    safetensors_header(d / "header-length-lies.safetensors", {"stem.conv.weight": tensor(16)}, length=1 << 40)
    safetensors_header(d / "header-200mb.safetensors", {}, length=200 << 20, size=300 << 20)
    safetensors_header(d / "offsets-past-end.safetensors", {"stem.conv.weight": tensor(4096)})
    with open(d / "sparse-1gb.pt", "wb") as f:
        f.truncate(GB)
    # a zip that deflates 1 GB of zeros into 4.6 MB: torch stores its records, a hand-made archive need not
    with zipfile.ZipFile(d / "deflated-1gb.pt", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("archive/version", "3\n")
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            for _ in range(64):
                f.write(bytes(16 << 20))
    for name in ("fifo.safetensors", "fifo.pt"):
        os.mkfifo(d / name)
    return d


PREDICT = ["predict", PHOTO, "--weights"]
# (argv with {d} = weights_corpus, words stderr must contain): each refused before a byte of tensor is allocated
MORE_CASES = [
    pytest.param(
        [*PREDICT, "{d}/sparse-50gb.safetensors"],
        "claims tensors of 50.0 GB, more than any MobileViT checkpoint",
        id="predict-safetensors-claims-50gb",
    ),
    pytest.param(
        [*PREDICT, "{d}/header-length-lies.safetensors"],
        "its header claims 1,099,511,627,776 bytes, the file holds",
        id="predict-safetensors-header-length-lies",
    ),
    pytest.param(
        [*PREDICT, "{d}/header-200mb.safetensors"],
        "its header claims 209,715,200 bytes, more than the 16,777,216 any checkpoint needs",
        id="predict-safetensors-header-too-long",
    ),
    pytest.param(
        [*PREDICT, "{d}/offsets-past-end.safetensors"],
        "tensor 'stem.conv.weight' ends at byte 4,096 of the data, the file holds 0: truncated",
        id="predict-safetensors-offsets-past-end",
    ),
    pytest.param(
        [*PREDICT, "{d}/sparse-1gb.pt"], "sparse-1gb.pt is 1.0 GB, more than any MobileViT", id="predict-pt-1gb"
    ),
    pytest.param(
        [*PREDICT, "{d}/deflated-1gb.pt"], "unpacks to 1.0 GB, more than any MobileViT", id="predict-pt-zip-bomb"
    ),
    pytest.param(
        [*PREDICT, "{d}/fifo.safetensors"], "is a named pipe (FIFO), not a file", id="predict-fifo-safetensors"
    ),
    pytest.param([*PREDICT, "{d}/fifo.pt"], "is a named pipe (FIFO), not a file", id="predict-fifo-pt"),
    pytest.param(
        ["export", "--target", "onnx", "--weights", "{d}/sparse-50gb.safetensors", "--out", "{out}"],
        "more than any MobileViT checkpoint",
        id="export-safetensors-claims-50gb",
    ),
]


@pytest.mark.parametrize("args, message", MORE_CASES)
def test_weights_claiming_more_than_they_hold_are_refused_in_one_line(args, message, weights_corpus, tmp_path):
    refused_in_one_line(args, message, weights_corpus, tmp_path)


def test_the_checkpoint_ceiling_holds_every_real_checkpoint():
    """The ceiling is computed from the registry, so it must admit what we ship and what the hub publishes: the
    largest variant's float32 ImageNet weights (mobilevitv2_200, 18 M parameters: 74 MB) with room to spare."""
    from mvit_deploy.models.checkpoints import max_checkpoint_bytes
    from mvit_deploy.models.hub import WEIGHTS_DIR

    ceiling = max_checkpoint_bytes()
    shipped = max(p.stat().st_size for p in WEIGHTS_DIR.glob("*.safetensors"))
    assert 4 * 18_000_000 * 4 < ceiling < GB and shipped < ceiling / 10, (ceiling, shipped)
