"""Artifacts and their sidecar manifests: a manifest is read and checked before anything is trusted.

Each case runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line):
- ``CASES``: the shared corpus (hostile.make_corpus);
- ``VALUE_CASES``: manifests whose keys hold the wrong type or an impossible value, refused by
  ``Manifest.from_dict`` before any model loads, whatever the command;
- ``LYING_CASES``: real artifacts whose re-signed manifest claims another precision, model or target than the file
  holds (``Target.artifact_contents``), refused before either model runs.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hostile import refused_in_one_line, sidecar

from mvit_deploy.artifact import manifest_path, tree_sha256

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


def _set(key: str, value):
    """A change to a sidecar: ``key`` a dotted path (``input.preprocessing.std``), set to ``value``."""

    def change(data: dict) -> None:
        *parents, last = key.split(".")
        for part in parents:
            data = data[part]
        data[last] = value

    return change


# (file stem, change to a valid sidecar, command, words stderr must contain); the artifact is random bytes: every
# one is refused while the manifest is read, before its sha256 is even compared
VALUES = [
    ("size-text", _set("input.size", "64"), "parity", "input.size is '64' (str), not an input size"),
    ("size-negative", _set("input.size", -64), "parity", "input.size is -64 (int), not an input size"),
    ("size-huge", _set("input.size", 100000), "parity", "input.size is 100000 (int), not an input size (a multiple"),
    ("size-huge-bench", _set("input.size", 100000), "bench", "input.size is 100000 (int)"),
    ("size-odd", _set("input.size", 100), "eval", "input.size is 100 (int), not an input size"),
    ("size-missing", _set("input.size", None), "parity", "input.size is None (NoneType)"),
    ("sizes-wrong", _set("input.sizes", [64, 4096]), "parity", "input.sizes is [64, 4096] (list)"),
    ("sizes-not-first", _set("input.sizes", [128, 64]), "parity", "starting with input.size 64"),
    ("shape-zero", _set("input.shape", [1, 3, 0, 64]), "bench", "input.shape is [1, 3, 0, 64] (list)"),
    ("batch-zero", _set("input.batch", 0), "bench", "input.batch is 0 (int)"),
    ("layout", _set("input.layout", "chw"), "bench", "input.layout is 'chw' (str), not one of nchw, nhwc"),
    ("classes-text", _set("output.classes", "10"), "parity", "output.classes is '10' (str)"),
    ("classes-one", _set("output.classes", 1), "parity", "output.classes is 1 (int), not a class count from 2"),
    ("classes-huge", _set("output.classes", 10**9), "quant-report", "output.classes is 1000000000 (int)"),
    ("labels-short", _set("output.labels", ["a", "b"]), "parity", "output.labels is ['a', 'b'] (list), not 10 names"),
    ("checkpoint-text", _set("checkpoint", "fixture"), "parity", "checkpoint is 'fixture' (str), not an object"),
    ("input-null", _set("input", None), "parity", "input is None (NoneType), not an object"),
    ("input-list", _set("input", [1, 3, 64, 64]), "eval", "input is [1, 3, 64, 64] (list), not an object"),
    ("precision", _set("precision", "fp64"), "parity", "precision is 'fp64' (str), not one of fp32, fp16, int8, w8a8"),
    ("precision-bench", _set("precision", "fp64"), "bench", "precision is 'fp64' (str)"),
    ("target", _set("target", "tensorrt"), "parity", "target is 'tensorrt' (str), not one of "),
    ("domain", _set("domain", "x-rays"), "eval", "domain is 'x-rays' (str), not one of photos, fashion-mnist"),
    (
        "interpolation",
        _set("input.preprocessing.interpolation", "lanczos"),
        "parity",
        "input.preprocessing.interpolation is 'lanczos' (str), not one of bilinear, bicubic",
    ),
    ("std-zero", _set("input.std", [0, 0, 0]), "parity", "input.std is [0, 0, 0] (list), not 3 finite numbers above 0"),
    (
        "preprocessing-std-zero",
        _set("input.preprocessing.std", [0, 0, 0]),
        "eval",
        "input.preprocessing.std is [0, 0, 0] (list), not 3 finite numbers above 0",
    ),
    ("mean-two", _set("input.mean", [0.5, 0.5]), "parity", "input.mean is [0.5, 0.5] (list), not 3 finite numbers"),
    ("mean-huge-int", _set("input.mean", [10**400, 0, 0]), "parity", "input.mean is [1000"),
    ("scale-zero", _set("input.scale", 0), "parity", "input.scale is 0 (int), not a finite number above 0"),
    ("scale-overflow", _set("input.scale", "<1e400>"), "parity", "input.scale is inf (float)"),  # JSON's 1e400
    ("crop-zero", _set("input.preprocessing.crop_pct", 0), "parity", "input.preprocessing.crop_pct is 0 (int)"),
    ("preprocessing-key", _set("input.preprocessing.gamma", 2.2), "parity", "input.preprocessing.gamma is not a"),
    ("bytes-negative", _set("bytes", -1), "bench", "bytes is -1 (int), not a count of bytes"),
]
VALUE_CASES = [
    pytest.param([command, f"{{d}}/{stem}.onnx"], message, id=f"{command}-{stem}")
    for stem, _, command, message in VALUES
]
VALUE_CASES += [
    pytest.param(["parity", "{d}/dir-manifest.onnx"], "is a directory, not a file", id="parity-manifest-a-directory"),
    pytest.param(["parity", "{d}/fifo.onnx"], "is a named pipe (FIFO), not a file", id="parity-manifest-a-fifo"),
    pytest.param(["bench", "{d}/fifo.onnx"], "is a named pipe (FIFO), not a file", id="bench-manifest-a-fifo"),
    pytest.param(["parity", "{d}/deep.onnx"], "nests deeper than 32 levels", id="parity-deeply-nested-manifest"),
    pytest.param(["eval", "{d}/deep.onnx"], "nests deeper than 32 levels", id="eval-deeply-nested-manifest"),
    pytest.param(  # these two pass the sha256 check: the model registry refuses them, still before any model loads
        ["parity", "{d}/family.onnx"], "says family mobilevitv2, but mobilevit_xxs is a mobilevit", id="parity-family"
    ),
    pytest.param(["parity", "{d}/unknown-model.onnx"], "unknown model 'mobilevit_xxxl'", id="parity-unknown-model"),
]


@pytest.fixture(scope="module")
def value_corpus(tmp_path_factory) -> Path:
    """Random bytes beside sidecars holding one wrong value each (VALUES), and manifests that are no file."""
    d = tmp_path_factory.mktemp("manifest-values")
    rng = np.random.default_rng(1)
    for stem, change, _, _ in VALUES:
        data = copy.deepcopy(sidecar(f"{stem}.onnx"))
        change(data)
        (d / f"{stem}.onnx").write_bytes(rng.bytes(1000))
        (d / f"{stem}.json").write_text(json.dumps(data).replace('"<1e400>"', "1e400"))  # valid JSON, read as inf
    for stem in ("dir-manifest", "fifo", "deep"):
        (d / f"{stem}.onnx").write_bytes(rng.bytes(1000))
    (d / "dir-manifest.json").mkdir()
    os.mkfifo(d / "fifo.json")  # no writer: a reader that waits for one hangs
    (d / "deep.json").write_text('{"schema": "mvit-deploy/artifact/2", "input": ' + "[" * 100_000 + "]" * 100_000 + "}")
    for stem, changes in (("family", {"family": "mobilevitv2"}), ("unknown-model", {"model": "mobilevit_xxxl"})):
        (d / f"{stem}.onnx").write_bytes(rng.bytes(1000))
        signed = sidecar(f"{stem}.onnx", sha256=tree_sha256(d / f"{stem}.onnx"), **changes)
        (d / f"{stem}.json").write_text(json.dumps(signed))
    return d


@pytest.mark.parametrize("args, message", VALUE_CASES)
def test_a_wrong_manifest_value_is_refused_in_one_line(args, message, value_corpus, tmp_path):
    refused_in_one_line(args, message, value_corpus, tmp_path)


# (file stem, target, the file's precision, what its re-signed manifest claims, words stderr must contain)
LIES = [
    (
        "int8-label-fp32-file",
        "onnx",
        "fp32",
        {"precision": "int8"},
        "says int8, but int8-label-fp32-file.onnx holds no quantization op and only float32 weights: it is fp32",
    ),
    (
        "fp32-label-int8-file",
        "onnx",
        "int8",
        {"precision": "fp32"},
        "says fp32, but fp32-label-int8-file.onnx holds 928,864 8-bit weights and quantization ops",
    ),
    (
        "xs-label-xxs-file",
        "onnx",
        "fp32",
        {"model": "mobilevit_xs"},
        "says mobilevit_xs (mobilevit: 1,915,376 weights with 10 classes), but xs-label-xxs-file.onnx holds 941,536, "
        "as mobilevit_xxs does",
    ),
    (
        "classes-label",
        "onnx",
        "fp32",
        {"output": {"classes": 1000, "labels": None}},
        "holds 941,536, which no registered model with 1000 classes has",
    ),
    (
        "target-label",
        "onnx",
        "fp32",
        {"target": "tflite"},
        "says target tflite, but target-label.onnx is not a .tflite",
    ),
    (
        "int8-label-fp32-file",
        "tflite",
        "fp32",
        {"precision": "int8"},
        "says int8, but int8-label-fp32-file.tflite holds no quantization op and only float32 weights: it is fp32",
    ),
    (
        "fp32-label-int8-file",
        "tflite",
        "int8",
        {"precision": "fp32"},
        "holds 928,864 8-bit weights and quantization ops (65 QUANTIZE): it is int8",
    ),
    (
        "v2-label-xxs-file",
        "tflite",
        "int8",
        {"model": "mobilevitv2_050", "family": "mobilevitv2"},
        "says mobilevitv2_050 (mobilevitv2: 1,098,832 weights with 10 classes), but v2-label-xxs-file.tflite holds "
        "941,536, as mobilevit_xxs does",
    ),
]
LYING_CASES = [
    pytest.param(["parity", f"{{d}}/{target}/{stem}.{target}", "--n", "2"], message, id=f"parity-{target}-{stem}")
    for stem, target, _, _, message in LIES
]
LYING_CASES += [
    pytest.param(  # the accuracy bound eval applies is the manifest precision's
        ["eval", "{d}/onnx/int8-label-fp32-file.onnx", "--data", "fashion-mnist:subset"],
        "says int8, but int8-label-fp32-file.onnx holds no quantization op",
        id="eval-onnx-int8-label-fp32-file",
    ),
    pytest.param(
        ["quant-report", "{d}/tflite/int8-label-fp32-file.tflite"],
        "says int8, but int8-label-fp32-file.tflite holds no quantization op",
        id="quant-report-tflite-int8-label-fp32-file",
    ),
]


def lie(artifact: Path, folder: Path, stem: str, claims: dict) -> Path:
    """A copy of ``artifact`` named ``stem``, its manifest changed by ``claims`` and re-signed (sha256 intact)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    copy_ = folder / f"{stem}{artifact.suffix}"
    (shutil.copytree if artifact.is_dir() else shutil.copy)(artifact, copy_)
    data = json.loads(manifest_path(artifact).read_text())
    for key, value in claims.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    data.update(artifact=copy_.name, sha256=tree_sha256(copy_))
    manifest_path(copy_).write_text(json.dumps(data, indent=2))
    return copy_


@pytest.fixture(scope="module")
def lying_corpus(fashion_artifact, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lying-manifests")
    for stem, target, precision, claims, _ in LIES:
        lie(fashion_artifact(target, precision), d / target, stem, claims)
    return d


@pytest.mark.parametrize("args, message", LYING_CASES)
def test_a_manifest_its_artifact_contradicts_is_refused(args, message, lying_corpus, tmp_path):
    refused_in_one_line(args, message, lying_corpus, tmp_path)


def test_the_contradiction_is_found_before_either_model_runs(fashion_artifact, tmp_path, monkeypatch):
    from mvit_deploy import targets
    from mvit_deploy.errors import UsageError
    from mvit_deploy.pipeline import parity

    def never(*args, **kwargs):
        raise AssertionError("a model loaded before the manifest was checked against its artifact")

    monkeypatch.setattr(parity, "reference_model", never)
    monkeypatch.setattr(targets, "load_runner", never)
    art = lie(fashion_artifact("onnx"), tmp_path, "xs", {"model": "mobilevit_xs"})
    with pytest.raises(UsageError, match="says mobilevit_xs"):
        parity.parity(art, n=2)


# Every registered target reads its own files; the quantized exports that take longest are left to `make test-slow`.
SLOW = pytest.mark.slow
DETECTED = [
    ("onnx", "fp32"),
    ("onnx", "int8"),
    ("ort", "fp32"),
    pytest.param("ort", "int8", marks=SLOW),
    ("tflite", "fp32"),
    ("tflite", "int8"),
    ("coreml", "fp32"),
    ("coreml", "fp16"),
    pytest.param("coreml", "int8", marks=SLOW),
    pytest.param("coreml", "w8a8", marks=SLOW),
    ("executorch", "fp32"),
    pytest.param("executorch", "int8", marks=SLOW),  # an XNNPACK int8 export: 2 minutes on two busy cores
]


@pytest.mark.parametrize("target, precision", DETECTED)
def test_each_target_reads_precision_and_weights_from_its_file(target, precision, fashion_artifact):
    """The file tells its precision, and its weight count is the PyTorch model's (parity.WEIGHT_TOLERANCE)."""
    from mvit_deploy.pipeline.parity import model_weights
    from mvit_deploy.targets import get_target

    contents = get_target(target).artifact_contents(fashion_artifact(target, precision))
    assert contents.precision == precision, contents
    assert contents.weights == model_weights("mobilevit_xxs", 10) == 941_536


def test_every_target_reads_its_own_files():
    """A target registered tomorrow states what its files hold, and is in DETECTED (its own file, base.Target)."""
    from mvit_deploy.targets import TARGETS, Target

    for name, target in TARGETS.items():
        assert type(target).artifact_contents is not Target.artifact_contents, f"{name} does not read its files"
    assert {p.values[0] if hasattr(p, "values") else p[0] for p in DETECTED} == set(TARGETS)


def test_a_file_that_does_not_parse_tells_nothing(corpus):
    """Its runner refuses it by name later; the contents check must neither crash nor claim a precision."""
    from mvit_deploy.targets import get_target
    from mvit_deploy.targets.base import ArtifactContents

    for target, name in (("onnx", "random.onnx"), ("tflite", "empty.tflite"), ("ort", "random.onnx")):
        assert get_target(target).read_contents(corpus / name) == ArtifactContents()
