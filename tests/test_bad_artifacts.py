"""Artifact files opened as what they claim to be: truncated flatbuffers and programs, broken .mlpackages, and
.mlpackage item paths, symlinks and weight-file names that point out of the package.

Each broken artifact is made from a real export (conftest.fashion_artifact) and re-signed (its sidecar's sha256
and size rewritten), so the manifest check passes and the runtime's loader is what meets the damage. Each case
runs the console script under a memory cap in an empty folder (hostile.refused_in_one_line).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from hostile import refused_in_one_line

from mvit_deploy.artifact import manifest_path, tree_bytes, tree_sha256

MODEL = "Data/com.apple.CoreML/model.mlmodel"
WEIGHTS = "Data/com.apple.CoreML/weights/weight.bin"
MARKER = f"not-a-model-{uuid.uuid4().hex}"  # the bytes of the file outside the packages: never to be read as a model
ESCAPES = "whose path escapes the package"


def _both(name: str, message: str, commands=("parity", "ane-check")):
    return [pytest.param([c, f"{{d}}/{name}.mlpackage"], message, id=f"{c}-{name}") for c in commands]


TFLITE = {  # name: words stderr must contain
    "truncated-tflite": "LiteRT cannot load TFLite model",
    "onnx-bytes-as-tflite": "is not a TFLite flatbuffer (bytes 4..8 are b'",
    "tflite-root-past-the-end": "is damaged: its root table is at byte",
}
BENCH = ("--iters", "2", "--warmup", "1")

# (argv with {d} = the broken artifacts (broken_artifacts below), words stderr must contain)
CASES = [
    *[
        pytest.param([c, f"{{d}}/{name}.tflite", *(BENCH if c == "bench" else ())], message, id=f"{c}-{name}")
        for name, message in TFLITE.items()
        for c in ("parity", "bench")
    ],
    pytest.param(["parity", "{d}/cut-onnx.onnx"], "onnxruntime cannot load cut-onnx.onnx", id="parity-truncated-onnx"),
    pytest.param(["parity", "{d}/cut-ort.ort"], "onnxruntime cannot load cut-ort.ort", id="parity-truncated-ort"),
    pytest.param(
        ["parity", "{d}/cut-pte.pte"], "cut-pte.pte is truncated: its header says it holds", id="parity-truncated-pte"
    ),
    *_both("manifest-cut", "Manifest.json is not valid JSON"),
    *_both("manifest-binary", "Manifest.json is not UTF-8 text (byte 0 is 0xff)"),
    *_both("manifest-not-an-object", "has no item entries, each with a path"),
    *_both("model-cut", "model.mlmodel is damaged (Error parsing message"),
    *_both("weights-random", "is not MIL blob storage version 2"),
    *_both("weights-cut", "(truncated?)"),
    *_both("item-path-escapes", ESCAPES),
    *_both("model-symlink-out", ESCAPES, ("ane-check",)),
    *_both("weights-symlink-out", ESCAPES),
    *_both("blob-file-escapes", ESCAPES),
    *_both("weights-fifo", "weight.bin is a named pipe (FIFO), not a file", ("ane-check",)),
]


def _copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    shutil.copy(manifest_path(src), manifest_path(dst))
    return dst


def _resign(artifact: Path) -> None:
    """Rewrite the sidecar for the damaged bytes, as an attacker would: the manifest check then passes."""
    path = manifest_path(artifact)
    manifest = json.loads(path.read_text())
    manifest.update(artifact=artifact.name, sha256=tree_sha256(artifact), bytes=tree_bytes(artifact))
    path.write_text(json.dumps(manifest))


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_manifest_paths(package: Path, path: str) -> None:
    manifest = json.loads((package / "Manifest.json").read_text())
    manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"] = path
    (package / "Manifest.json").write_text(json.dumps(manifest))


def _edit_blob_file_names(package: Path, file_name: str) -> None:
    """Point every weight of the program at ``file_name`` (the spec's blobFileValue.fileName)."""
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((package / MODEL).read_bytes())
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                bound = [
                    b.value for arg in op.inputs.values() for b in arg.arguments if b.WhichOneof("binding") == "value"
                ]
                for value in [*bound, *op.attributes.values()]:
                    if value.WhichOneof("value") == "blobFileValue":
                        value.blobFileValue.fileName = file_name
    (package / MODEL).write_bytes(spec.SerializeToString())


def _symlink_out(link: Path, target: Path) -> None:
    link.unlink()
    os.symlink(target, link)


@pytest.fixture(scope="module")
def broken_artifacts(fashion_artifact, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("broken-artifacts")
    rng = np.random.default_rng(0)
    outside = d / "outside"  # beside the packages, not in them: what a hostile package points at
    outside.mkdir()
    (outside / "marker.mlmodel").write_text(MARKER)
    tflite, package = fashion_artifact("tflite"), fashion_artifact("coreml")
    shutil.copy(package / WEIGHTS, outside / "weight.bin")  # a valid weight file: only confinement refuses it

    def make(src: Path, name: str, damage) -> None:
        artifact = _copy(src, d / name)
        damage(artifact)
        _resign(artifact)

    make(tflite, "truncated-tflite.tflite", _cut)
    make(tflite, "onnx-bytes-as-tflite.tflite", lambda a: a.write_bytes(fashion_artifact("onnx").read_bytes()))
    make(tflite, "tflite-root-past-the-end.tflite", lambda a: a.write_bytes(b"\xff\xff\xff\x7f" + a.read_bytes()[4:]))
    for target in ("onnx", "ort", "executorch"):
        src = fashion_artifact(target)
        make(src, f"cut-{src.suffix[1:]}{src.suffix}", _cut)  # each its own sidecar: cut-onnx.json, ...

    damages = {
        "manifest-cut": lambda p: _cut(p / "Manifest.json"),
        "manifest-binary": lambda p: (p / "Manifest.json").write_bytes(b"\xff\xfe" + rng.bytes(200)),
        "manifest-not-an-object": lambda p: (p / "Manifest.json").write_text('["com.apple.CoreML/model.mlmodel"]'),
        "model-cut": lambda p: _cut(p / MODEL),
        "weights-random": lambda p: (p / WEIGHTS).write_bytes(rng.bytes((p / WEIGHTS).stat().st_size)),
        "weights-cut": lambda p: _cut(p / WEIGHTS),
        # ../ past the root, then the absolute path of the marker: the shape of `../../../../../../etc/passwd`
        "item-path-escapes": lambda p: _edit_manifest_paths(p, "../" * 32 + str(outside / "marker.mlmodel")[1:]),
        "model-symlink-out": lambda p: _symlink_out(p / MODEL, outside / "marker.mlmodel"),
        "weights-symlink-out": lambda p: _symlink_out(p / WEIGHTS, outside / "weight.bin"),
        "blob-file-escapes": lambda p: _edit_blob_file_names(p, "@model_path/weights/../../../../outside/weight.bin"),
        "weights-fifo": lambda p: ((p / WEIGHTS).unlink(), os.mkfifo(p / WEIGHTS)),
    }
    for name, damage in damages.items():
        make(package, f"{name}.mlpackage", damage)
    return d


@pytest.mark.parametrize("args, message", CASES)
def test_bad_artifact_is_refused_in_one_line(args, message, broken_artifacts, tmp_path):
    refused_in_one_line(args, message, broken_artifacts, tmp_path)


def test_an_item_path_out_of_the_package_is_named_and_never_read(broken_artifacts, tmp_path):
    """The refusal names the item path as the manifest wrote it and comes before any read of its target."""
    from mvit_deploy.errors import UsageError
    from mvit_deploy.targets.coreml_exec.program import load_program

    with pytest.raises(UsageError) as refused:
        load_program(broken_artifacts / "item-path-escapes.mlpackage")
    assert "'../../../" in str(refused.value) and ESCAPES in str(refused.value)
    assert MARKER not in str(refused.value)


def test_the_intact_artifacts_pass_the_same_checks(fashion_artifact):
    """The checks refuse only the damage: the real exports they were made from pass every one."""
    from mvit_deploy.device.runtimes.executorch import check_pte
    from mvit_deploy.device.runtimes.mlpackage import root_model
    from mvit_deploy.device.runtimes.tflite import check_tflite
    from mvit_deploy.targets.coreml_exec.program import load_program

    check_tflite(fashion_artifact("tflite"))
    check_pte(fashion_artifact("executorch"))
    package = fashion_artifact("coreml")
    assert root_model(package) == (package / MODEL).resolve()
    assert len(load_program(package).operations) > 100
