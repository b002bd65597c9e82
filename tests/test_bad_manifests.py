"""Artifacts and their sidecar manifests: a manifest is read and checked before anything is trusted.

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hostile import refused_in_one_line, sidecar

from mvit_deploy.artifact import tree_sha256

# (argv with {d} = the corpus (conftest.corpus) and {out} = a fresh output folder, words stderr must contain)
CASES = [
    pytest.param(
        ["parity", "{d}/random.onnx"], "random.onnx does not match its manifest (sha256", id="parity-random-onnx"
    ),
    pytest.param(["parity", "{d}/empty.tflite"], "empty.tflite does not match its manifest", id="parity-empty-tflite"),
    pytest.param(
        ["parity", "{d}/other.onnx"], "this manifest is not this artifact's", id="parity-other-models-manifest"
    ),
    pytest.param(
        ["parity", "{d}/typed.onnx"], "this manifest is not this artifact's", id="parity-other-targets-manifest"
    ),
    pytest.param(
        ["parity", "{d}/nan-manifest.onnx"], "is not valid JSON (NaN is not JSON)", id="parity-nan-in-manifest"
    ),
    pytest.param(["parity", "{d}/list-manifest.onnx"], "has schema 'list'", id="parity-list-manifest"),
    pytest.param(["parity", "{d}/partial.onnx"], "lacks input, sha256", id="parity-partial-manifest"),
    pytest.param(["parity", "{d}/lonely.onnx"], "has no manifest", id="parity-no-manifest"),
    pytest.param(["parity", "{d}/missing.onnx"], "does not exist", id="parity-missing"),
    pytest.param(
        ["parity", "{d}/random.onnx", "--junit-xml", "{out}/parity.xml"],
        "does not match its manifest",
        id="parity-junit-not-written",
    ),
    pytest.param(
        ["eval", "{d}/random.onnx", "--data", "fashion-mnist:subset"],
        "does not match its manifest",
        id="eval-random-onnx",
    ),
    pytest.param(["eval", "{d}/other.onnx"], "this manifest is not this artifact's", id="eval-other-models-manifest"),
    pytest.param(["bench", "{d}/random.onnx"], "does not match its manifest", id="bench-random-onnx"),
    pytest.param(["bench", "{d}/empty.tflite"], "does not match its manifest", id="bench-empty-tflite"),
    pytest.param(
        ["bench", "{d}/random.onnx", "--json", "{out}/bench.json"],
        "does not match its manifest",
        id="bench-json-not-written",
    ),
    pytest.param(["quant-report", "{d}/random.onnx"], "does not match its manifest", id="quant-report-random-onnx"),
    pytest.param(
        ["quant-report", "{d}/other.onnx"], "this manifest is not this artifact's", id="quant-report-other-manifest"
    ),
    pytest.param(["ane-check", "{d}/random.onnx"], "is not an .mlpackage directory", id="ane-check-not-mlpackage"),
    pytest.param(["ane-check", "{d}/missing.mlpackage"], "is not an .mlpackage directory", id="ane-check-missing"),
    pytest.param(["ane-check", "{d}/empty-folder"], "is not an .mlpackage directory", id="ane-check-folder"),
]


@pytest.mark.parametrize("args, message", CASES)
def test_bad_manifest_is_refused_in_one_line(args, message, corpus, tmp_path):
    refused_in_one_line(args, message, corpus, tmp_path)


def test_non_finite_artifact_logits_fail_parity_with_valid_json():
    """An artifact that emits NaN fails its bounds by name; the JSON report still parses (null, not NaN)."""
    from mvit_deploy.pipeline.parity import judge

    ref = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    got = ref.copy()
    got[1, 3] = np.nan
    report = judge("a.onnx", "onnx", "fp32", ref, got, "onnxruntime", "mobilevit")
    assert not report.passed and report.failures[0] == "logits: 1 of 40 values from the artifact are NaN or infinite"
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(text)["metrics"]["max_abs"] is None


def test_a_sidecar_copied_with_its_renamed_artifact_still_reads(tmp_path):
    """The sha256 check must not refuse the pair a user renamed together."""
    from mvit_deploy.artifact import read_manifest

    art = tmp_path / "renamed.onnx"
    art.write_bytes(b"not a real model, but the bytes the manifest was written for")
    (tmp_path / "renamed.json").write_text(json.dumps(sidecar("mobilevit_xxs-onnx-fp32.onnx", sha256=tree_sha256(art))))
    assert read_manifest(art).model == "mobilevit_xxs"
