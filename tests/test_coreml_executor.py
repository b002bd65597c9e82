"""Whole Core ML programs through the reference executor, against PyTorch and Hugging Face."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers import hf_logits, hf_reference
from safetensors.torch import save_file

from mvit_deploy import load_model
from mvit_deploy.models.families import bounds_for
from mvit_deploy.pipeline.export import export
from mvit_deploy.pipeline.parity import parity
from mvit_deploy.targets import ExportOptions
from mvit_deploy.targets.coreml import CoreMLRunner
from mvit_deploy.targets.coreml_exec import MILExecutor

SIZES = [256, 320]


def variant_params():
    return [
        pytest.param(n, s, marks=pytest.mark.slow) if n != "mobilevit_xxs" else (n, s)
        for n in ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")
        for s in SIZES
    ]


@pytest.mark.parametrize("name, size", variant_params())
def test_fp32_program_matches_pytorch(name, size, tmp_path):
    result = export(
        ExportOptions(model=name, target="coreml", precision="fp32", input_size=size, out_dir=tmp_path, parity_n=8)
    )
    report = result.parity
    assert report.runtime in ("coreml-reference-executor", "coreml")
    assert report.metrics["max_rel"] <= 1e-4, report.metrics
    assert report.passed


@pytest.mark.verdict
@pytest.mark.parametrize(
    "name",
    [
        "mobilevit_xxs",
        pytest.param("mobilevit_xs", marks=pytest.mark.slow),
        pytest.param("mobilevit_s", marks=pytest.mark.slow),
    ],
)
def test_fp16_program_passes_fp16_row(name, tmp_path):
    report = export(ExportOptions(model=name, target="coreml", precision="fp16", out_dir=tmp_path)).parity
    assert report.passed, report.failures
    assert (
        report.metrics["decisive_top1_agreement"] == 1.0 and report.metrics["psnr_db"] >= 45 and report.n_images >= 64
    )


def test_hf_weights_bgr_image_input_matches_hf_model(tmp_path, eval_photos):
    """BGR checkpoint, ImageType input: executor output == HF model on the same photos."""
    path = tmp_path / "hf.safetensors"
    save_file({k: v.contiguous() for k, v in hf_reference("mobilevit_xxs").state_dict().items()}, str(path))
    result = export(
        ExportOptions(
            model="mobilevit_xxs", target="coreml", precision="fp32", weights=str(path), out_dir=tmp_path, parity_n=4
        )
    )
    assert result.manifest.input.channel_order == "BGR" and result.manifest.input.type == "image"
    x = eval_photos[256][:4]
    got = CoreMLRunner(result.artifact, result.manifest, backend="executor")(x.numpy())
    expected = hf_logits(hf_reference("mobilevit_xxs"), x).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() <= bounds_for("fp32", "mobilevit")[0].value


def test_tensor_input_program(tmp_path):
    result = export(
        ExportOptions(
            model="mobilevit_xxs",
            target="coreml",
            precision="fp32",
            target_options={"input_type": "tensor"},
            out_dir=tmp_path,
            parity_n=4,
        )
    )
    assert result.manifest.input.type == "tensor" and result.parity.passed


def test_intermediate_tensors_by_name(tmp_path):
    result = export(
        ExportOptions(model="mobilevit_xxs", target="coreml", precision="fp32", out_dir=tmp_path), run_parity=False
    )
    ex = MILExecutor(result.artifact)
    names = ex.value_names()
    assert len(names) > 100 and names == list(dict.fromkeys(names))
    model = load_model("mobilevit_xxs")
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    pixels = np.rint(x.numpy() * 255).astype(np.float32)
    outputs, captured = ex.run({"image": pixels}, capture="all")
    assert set(captured) >= set(names)
    with torch.no_grad():
        stem = model.stem(torch.from_numpy(pixels / 255)).numpy()
    first_silu = next(n for n in names if n.startswith("silu"))
    np.testing.assert_allclose(captured[first_silu], stem, atol=1e-4)
    _, only = ex.run({"image": pixels}, capture=[first_silu])
    assert list(only) == [first_silu]


def test_classifier_label_output_is_the_argmax(tmp_path):
    """A converted classifier whose head is the identity: classify sees exactly the scores built here."""
    import coremltools as ct

    labels = [f"class_{i}" for i in range(10)]
    head = torch.nn.Linear(10, 10).eval()
    with torch.no_grad():
        head.weight.copy_(torch.eye(10))
        head.bias.zero_()
    program = torch.export.export(head, (torch.zeros(1, 10),)).run_decompositions({})
    model = ct.convert(
        program,
        inputs=[ct.TensorType(name="x", shape=(1, 10))],
        convert_to="mlprogram",
        classifier_config=ct.ClassifierConfig(labels),
        compute_precision=ct.precision.FLOAT32,
    )
    model.save(str(tmp_path / "cls.mlpackage"))
    ex = MILExecutor(tmp_path / "cls.mlpackage")
    assert "classify" in {o.type for o in ex.program.operations}
    scores = np.random.default_rng(0).normal(0, 3, (5, 10)).astype(np.float32)
    scores[1, 0], scores[2, -1], scores[3] = 20.0, 20.0, -np.abs(scores[3]) - 1
    expected = [labels[i] for i in np.argmax(scores, axis=1)]
    assert len(set(expected)) >= 4 and expected[1] == "class_0" and expected[2] == "class_9"
    label_name, probs_name = ex.program.outputs
    for row, label in zip(scores, expected, strict=True):
        outputs, _ = ex.run({"x": row[None]})
        assert outputs[label_name] == label
        assert list(outputs[probs_name]) == labels
        np.testing.assert_array_equal(np.array(list(outputs[probs_name].values()), np.float32), row)


@pytest.mark.skipif(sys.platform != "darwin", reason="the native Core ML runtime exists only on macOS")
def test_native_core_ml_agrees_with_executor(tmp_path):
    result = export(
        ExportOptions(model="mobilevit_xxs", target="coreml", precision="fp32", out_dir=tmp_path), run_parity=False
    )
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 256, 256)).astype(np.float32) / 255
    native = CoreMLRunner(result.artifact, result.manifest, compute_units="cpu_only", backend="native")(x)
    reference = CoreMLRunner(result.artifact, result.manifest, backend="executor")(x)
    assert np.abs(native - reference).max() <= 1e-3
    assert parity(result.artifact, n=4).passed


def test_an_op_the_executor_does_not_know_fails_export_by_name(monkeypatch, tmp_path):
    """Never "not run here" and exit 0: an unverifiable Core ML program fails the export, naming the op, and is not
    kept."""
    from mvit_deploy.errors import MvitDeployError
    from mvit_deploy.targets.coreml_exec import ops

    monkeypatch.delitem(ops.OPS, "softmax")
    opts = ExportOptions(
        model="mobilevit_xxs", target="coreml", pretrained="fashion", out_dir=tmp_path / "out", parity_n=2
    )
    with pytest.raises(
        MvitDeployError, match=r"Core ML op 'softmax' \(.*\) is not implemented by the reference executor"
    ) as e:
        export(opts)
    assert e.value.exit_code == 1
    assert not (tmp_path / "out").exists()
