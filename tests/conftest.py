"""Shared pytest fixtures (the helpers they use live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import helpers  # noqa: F401  (tests never touch the network; torch keeps to 2 threads)
import pytest
import torch


@pytest.fixture(scope="session")
def eval_photos():
    from mvit_deploy.inputs.calibration import photo_inputs
    from mvit_deploy.models.config import HF_PREPROCESSING

    return {
        size: torch.from_numpy(photo_inputs("eval", size, HF_PREPROCESSING, crops_per_photo=2)) for size in (256, 320)
    }


@pytest.fixture(scope="session")
def fashion_artifact(tmp_path_factory):
    """``get(target, precision)``: the shipped Fashion-MNIST XXS (64 px) exported once per session (no parity run).

    Shared by every test that only reads it; a test that changes an artifact or needs a folder of
    its own copies it first (:func:`copy_artifact`).
    """
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions

    out, cache = tmp_path_factory.mktemp("fashion-exports"), {}

    def get(target: str, precision: str = "fp32") -> Path:
        if (target, precision) not in cache:
            opts = ExportOptions(
                model="mobilevit_xxs", pretrained="fashion", target=target, precision=precision, out_dir=out
            )
            cache[target, precision] = export(opts, run_parity=False).artifact
        return cache[target, precision]

    return get


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """The hostile files the test_bad_*.py cases read, made once a session (hostile.make_corpus)."""
    from hostile import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus"))
