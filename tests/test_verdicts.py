"""Verdicts a user can trust: trained reference models, scale-aware fp32 bounds, decisive top-1,
broken artifacts that must fail, and int8 judged on accuracy.

The trained Fashion-MNIST models are checked against the dataset's own labels, computed here
with plain torch/numpy; broken artifacts are real exports with one deliberate conversion bug.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import break_onnx, run_cli

from mvit_deploy.artifact import manifest_path, tree_sha256
from mvit_deploy.inputs.datasets.fashion_mnist import CLASSES, load_fashion_mnist, to_model_inputs
from mvit_deploy.metrics import fidelity, flipped
from mvit_deploy.models import load_model
from mvit_deploy.models.families import bounds_for
from mvit_deploy.pipeline.export import export
from mvit_deploy.pipeline.parity import parity
from mvit_deploy.targets import ExportOptions

# Test top-1 of the shipped weights on the shipped 1,000-image subset, measured with this
# code's torch forward (scripts/train_reference.py reports the full 10k test set: see the model card).
SUBSET_FLOOR = {"mobilevit_xxs": 0.90, "mobilevit_s": 0.90, "mobilevitv2_050": 0.90}


@pytest.fixture(scope="module")
def subset():
    images, labels = load_fashion_mnist("subset")
    return torch.from_numpy(to_model_inputs(images)), labels


@pytest.mark.parametrize(
    "name", ["mobilevit_xxs", "mobilevitv2_050", pytest.param("mobilevit_s", marks=pytest.mark.slow)]
)
def test_trained_model_classifies_the_test_subset(name, subset):
    x, labels = subset
    model = load_model(name, pretrained="fashion")
    assert model.num_classes == 10 and model.domain == "fashion-mnist" and model.default_input_size == 64
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 250]) for i in range(0, len(x), 250)]).numpy()
    accuracy = float(np.mean(logits.argmax(1) == labels))
    assert accuracy >= SUBSET_FLOOR[name], accuracy
    per_class = [np.mean(logits.argmax(1)[labels == c] == c) for c in range(10)]
    assert min(per_class) >= 0.6, dict(
        zip(CLASSES, per_class, strict=False)
    )  # no class sacrificed (Shirt is the hardest)
    assert np.abs(logits).max() > 3, "trained logits (label smoothing 0.1 keeps the peak near 4), not a fixture's"


def test_shipped_weights_load_through_the_same_door_as_a_file(tmp_path, subset):
    from mvit_deploy.models.hub import WEIGHTS_DIR

    src = WEIGHTS_DIR / "mobilevit_xxs-fashion_mnist.safetensors"
    copy = tmp_path / "mine.safetensors"
    shutil.copy(src, copy)
    a, b = load_model("mobilevit_xxs", pretrained="fashion"), load_model("mobilevit_xxs", copy)
    assert b.domain == "fashion-mnist" and b.num_classes == 10  # declared in the file's metadata, head size read
    with torch.no_grad():
        assert torch.equal(a(subset[0][:8]), b(subset[0][:8]))


def test_predict_names_the_fashion_class(tmp_path, subset):
    from PIL import Image

    images, labels = load_fashion_mnist("subset")
    i = int(np.flatnonzero(labels == CLASSES.index("Trouser"))[0])
    Image.fromarray(images[i]).save(tmp_path / "x.png")
    result = run_cli("predict", str(tmp_path / "x.png"), "--pretrained", "fashion", "--json")
    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)["top"]
    assert top[0]["label"] == "Trouser" and top[0]["probability"] > 0.5 and len(top) == 5


def test_decisive_agreement_ignores_near_ties_only():
    """Hand-made logits: numbers checked by hand, not by the code under test."""
    ref = np.array([[10.0, 9.99, 0.0], [10.0, 2.0, 0.0], [0.0, 5.0, 4.0], [1.0, 0.0, 0.0]])
    got = np.array([[9.98, 10.0, 0.0], [10.0, 2.0, 0.0], [0.0, 4.0, 5.0], [1.0, 0.0, 0.0]])
    m = fidelity(ref, got, decisive_margin=0.05)  # margin threshold 0.05 * peak 10 = 0.5
    assert m["top1_agreement"] == 0.5  # rows 0 and 2 flipped
    assert m["n_decisive"] == 3 and m["decisive_top1_agreement"] == pytest.approx(
        2 / 3
    )  # row 0 is a near-tie, row 2 is not
    assert m["max_rel"] == pytest.approx(1.0 / 10.0)
    flips = flipped(ref, got, 0.05)
    assert [(f["index"], f["decisive"]) for f in flips] == [(0, False), (2, True)]
    assert flips[0]["margin"] == pytest.approx(0.01) and flips[1]["margin_rel"] == pytest.approx(0.1)


@pytest.fixture(scope="module")
def trained_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    return export(ExportOptions(model="mobilevit_xxs", target="onnx", pretrained="fashion", out_dir=out))


@pytest.mark.verdict
def test_trained_fp32_exports_pass_scale_aware_bound_at_1_and_2_threads(trained_onnx):
    p = trained_onnx.manifest.parity
    assert p["passed"] and p["n_images"] == 128, p["failures"]
    assert p["metrics"]["peak_abs_logit"] > 3 and p["metrics"]["n_decisive"] >= 120
    for threads in (1, 2):
        report = parity(trained_onnx.artifact, threads=threads)
        assert report.passed, report.failures


@pytest.fixture(scope="module")
def photo_onnx(tmp_path_factory):
    return export(
        ExportOptions(model="mobilevit_xxs", target="onnx", out_dir=tmp_path_factory.mktemp("photo")), run_parity=False
    )


# Swapped channels are invisible on grey Fashion-MNIST images (R = G = B), so that bug is
# checked on the colour photo set; the other two on the trained model.
@pytest.mark.verdict
@pytest.mark.parametrize(
    "how, kind",
    [
        ("swapped channels", "photo"),
        ("dropped bias", "trained"),
        ("transposed weight", "trained"),
        ("dropped bias", "photo"),
    ],
)
def test_broken_conversion_fails_parity(how, kind, request, tmp_path):
    src = request.getfixturevalue(f"{kind}_onnx").artifact
    dst = tmp_path / src.name
    break_onnx(src, dst, how)
    result = run_cli("parity", str(dst), "--json")
    assert result.returncode == 1, result.stdout
    report = json.loads(result.stdout)
    assert not report["passed"] and report["metrics"]["max_rel"] > 1e-3, report["metrics"]
    assert any("max_rel" in f for f in report["failures"])


def test_eval_prints_reference_and_artifact_accuracy(trained_onnx, subset):
    x, labels = subset
    result = run_cli("eval", str(trained_onnx.artifact), "--data", "fashion-mnist:subset", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    model = load_model("mobilevit_xxs", pretrained="fashion")
    with torch.no_grad():
        expected = float(np.mean(model(x).argmax(1).numpy() == labels))
    row = report["rows"][0]
    assert report["n_images"] == 1000 and row["reference"]["top1"] == pytest.approx(expected)
    assert abs(row["artifact_metrics"]["top1"] - expected) <= 0.001 and row["passed"]
    text = run_cli("eval", str(trained_onnx.artifact), "--data", "fashion-mnist:subset", "--n", "200")
    assert text.returncode == 0 and "reference top-1" in text.stdout and "200 images" in text.stdout


INT8 = {
    "onnx-int8": ("mobilevit_xxs", "onnx", "int8"),
    "tflite-int8": ("mobilevit_xxs", "tflite", "int8"),
    "coreml-int8": ("mobilevit_xxs", "coreml", "int8"),
    "coreml-w8a8": ("mobilevit_xxs", "coreml", "w8a8"),
    # v2: the route whose shared qkv range broke the query (21.6 dB before v2's float regions), and LiteRT's
    "v2-onnx-int8": ("mobilevitv2_050", "onnx", "int8"),
    "v2-tflite-int8": ("mobilevitv2_050", "tflite", "int8"),
}


@pytest.fixture(scope="module")
def reference_subset(subset):
    """Trained models' logits on the 1,000 shipped test images, straight from torch (per model, on first use)."""
    x, labels = subset
    cache = {}

    def logits(name):
        if name not in cache:
            model = load_model(name, pretrained="fashion")
            with torch.no_grad():
                cache[name] = torch.cat([model(x[i : i + 250]) for i in range(0, len(x), 250)]).numpy()
        return cache[name]

    return logits


@pytest.mark.verdict
@pytest.mark.parametrize("case", list(INT8))
def test_int8_on_the_trained_model_keeps_accuracy(case, subset, reference_subset, tmp_path):
    """int8 judged on accuracy: within 0.5 points of fp32 on 1,000 test images, PSNR >= 35 dB (numpy here)."""
    from mvit_deploy.targets import load_runner

    model, target, precision = INT8[case]
    result = export(
        ExportOptions(
            model=model,
            target=target,
            precision=precision,
            pretrained="fashion",
            out_dir=tmp_path,
        )
    )
    assert result.parity.passed, result.parity.failures
    x, labels = subset
    got = load_runner(result.artifact, result.manifest)(x.numpy())
    ref = reference_subset(model)
    drop = (np.mean(ref.argmax(1) == labels) - np.mean(got.argmax(1) == labels)) * 100
    psnr = 20 * np.log10(np.abs(ref).max() / np.sqrt(np.mean((got - ref) ** 2)))
    assert drop <= 0.5 and psnr >= 35, (drop, psnr)
    assert np.mean(ref.argmax(1) == got.argmax(1)) >= 0.98


def test_full_test_set_is_read_from_the_idx_files_or_named_how_to_install(tmp_path):
    import gzip

    from mvit_deploy.errors import UsageError

    with pytest.raises(UsageError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", tmp_path)
    images, labels = load_fashion_mnist("subset")
    header = bytes((0, 0, 8, 3)) + (10000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    body = np.zeros((10000, 28, 28), np.uint8)
    body[:1000] = images
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + body.tobytes()))
    lab = np.zeros(10000, np.uint8)
    lab[:1000] = labels
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes((0, 0, 8, 1)) + (10000).to_bytes(4, "big") + lab.tobytes())
    x, y = load_fashion_mnist("test", tmp_path)
    assert x.shape == (10000, 28, 28) and np.array_equal(x[:1000], images) and np.array_equal(y[:1000], labels)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(
        bytes((0, 0, 8, 1)) + (10000).to_bytes(4, "big") + lab.tobytes()[:500]
    )
    with pytest.raises(UsageError, match="header says"):
        load_fashion_mnist("test", tmp_path)


@pytest.fixture(scope="module")
def v2_onnx(tmp_path_factory):
    return export(ExportOptions(model="mobilevitv2_050", target="onnx", out_dir=tmp_path_factory.mktemp("v2")))


@pytest.mark.verdict
def test_v2_is_judged_by_its_own_fp32_row_and_a_subtle_v2_bug_fails(v2_onnx, tmp_path):
    """v2's fp32 noise is ~10x v1's (tolerances.py, measured): its row is looser, and still fails a GroupNorm
    exported with the wrong epsilon (1e-2 instead of 1e-5), a bug no v1 layer can have."""
    import onnx

    p = v2_onnx.manifest.parity
    assert v2_onnx.manifest.family == "mobilevitv2" and p["passed"], p["failures"]
    assert [b["value"] for b in p["bounds"] if b["metric"] == "max_rel"] == [bounds_for("fp32", "mobilevitv2")[0].value]
    for threads in (1, 2):
        assert parity(v2_onnx.artifact, threads=threads).passed
    model = onnx.load(str(v2_onnx.artifact))
    norms = [n for n in model.graph.node if n.op_type == "InstanceNormalization"]
    assert len(norms) == 21  # 9 layers x 2 + 3 block norms: GroupNorm(1) as ONNX writes it
    for node in norms:
        next(a for a in node.attribute if a.name == "epsilon").f = 1e-2
    dst = tmp_path / v2_onnx.artifact.name
    onnx.save(model, str(dst))
    manifest = json.loads(manifest_path(v2_onnx.artifact).read_text())
    manifest["sha256"] = tree_sha256(dst)
    manifest_path(dst).write_text(json.dumps(manifest))
    result = run_cli("parity", str(dst), "--json")
    assert result.returncode == 1, result.stdout
    assert json.loads(result.stdout)["metrics"]["max_rel"] > 2 * bounds_for("fp32", "mobilevitv2")[0].value
