"""Export to every registered target, checked against PyTorch and against Hugging Face."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from helpers import hf_logits, hf_reference, run_cli
from safetensors.torch import save_file

from mvit_deploy.artifact import read_manifest, tree_sha256
from mvit_deploy.models.families import bounds_for
from mvit_deploy.pipeline.export import export
from mvit_deploy.pipeline.parity import parity
from mvit_deploy.targets import TARGETS, ExportOptions, get_target

# Every registered target with each precision/layout it offers; the coverage test keeps this complete.
CASES = {
    "onnx-fp32": dict(target="onnx", precision="fp32"),
    "ort-fp32": dict(target="ort", precision="fp32"),
    "tflite-fp32": dict(target="tflite", precision="fp32"),
    "tflite-fp32-nhwc": dict(target="tflite", precision="fp32", target_options={"layout": "nhwc"}),
    "coreml-fp16": dict(target="coreml", precision="fp16"),
    "coreml-fp32": dict(target="coreml", precision="fp32"),
}
RUNNABLE_HERE = {
    "onnx",
    "ort",
    "tflite",
    "coreml",
}  # Core ML: natively on macOS, through the reference executor elsewhere


def test_every_registered_target_precision_and_layout_has_a_case():
    from test_executorch import CASES as EXECUTORCH_CASES
    from test_quantization import QUANT_CASES

    covered = {
        (c["target"], c["precision"], c.get("target_options", {}).get("layout", "nchw"))
        for c in [*CASES.values(), *QUANT_CASES.values(), *EXECUTORCH_CASES.values()]
    }
    for name, target in TARGETS.items():
        for precision in target.precisions:
            layouts = next((o.choices for o in target.export_options if o.field == "layout"), ("nchw",))
            for layout in layouts if precision in ("fp32", "int8") or name != "tflite" else ("nchw",):
                assert (name, precision, layout) in covered, f"{name} {precision} {layout} is registered but untested"


@pytest.fixture(scope="module")
def xxs_exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    return {case: export(ExportOptions(model="mobilevit_xxs", out_dir=out, **kw)) for case, kw in CASES.items()}


@pytest.mark.verdict
@pytest.mark.parametrize("case", list(CASES))
def test_xxs_export_writes_artifact_manifest_and_parity(case, xxs_exports):
    result = xxs_exports[case]
    kw = CASES[case]
    target = get_target(kw["target"])
    assert result.artifact.exists() and result.artifact.name.startswith(
        f"mobilevit_xxs-{kw['target']}-{kw['precision']}"
    )
    assert result.artifact.suffix == target.suffix
    manifest = read_manifest(result.artifact)
    assert manifest.model == "mobilevit_xxs" and manifest.precision == kw["precision"]
    assert manifest.input.layout == kw.get("target_options", {}).get("layout", "nchw")
    assert manifest.input.channel_order == "RGB"
    assert manifest.checkpoint.layout == "fixture" and manifest.versions["mvit-deploy"]
    assert len(manifest.sha256) == 64 and manifest.bytes > 1_000_000
    assert not list(result.artifact.parent.glob(".*.tmp-*")), "a staging directory was left behind"
    if kw["target"] in RUNNABLE_HERE:
        p = manifest.parity
        assert p["passed"] is True, p
        assert p["metrics"]["decisive_top1_agreement"] == 1.0 and p["n_images"] >= 64
        if kw["precision"] == "fp32":
            assert p["metrics"]["max_rel"] <= 1e-4
        else:
            assert p["metrics"]["psnr_db"] >= 45


def test_onnx_is_single_file_opset18_and_checked(xxs_exports):
    import onnx

    path = xxs_exports["onnx-fp32"].artifact
    assert not list(path.parent.glob("*.onnx.data"))
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    onnx.checker.check_model(model, full_check=True)


def test_ort_format_is_what_ort_mobile_loads_and_computes_the_onnx_logits(xxs_exports, tmp_path):
    """The .ort is ORT's flatbuffer (file identifier "ORTM"), optimised for arm (no x86 NCHWc kernels),
    and gives the logits of the independently exported .onnx; a damaged one is refused by parity."""
    import onnxruntime as ort

    path = xxs_exports["ort-fp32"].artifact
    assert path.read_bytes()[4:8] == b"ORTM"
    manifest = read_manifest(path)
    ort_format = manifest.extra["ort_format"]
    assert ort_format["platform"] == "arm" and ort_format["disabled_optimizers"] == ["NchwcTransformer"]
    x = np.random.default_rng(3).random((1, 3, 256, 256), dtype=np.float32)
    from_ort = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    onnx_path = xxs_exports["onnx-fp32"].artifact
    from_onnx = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert (
        np.abs(from_ort - from_onnx).max() <= 1e-4 * np.abs(from_onnx).max()
    )  # measured 6.4e-7 relative (NCHW vs NCHWc kernels)
    broken = tmp_path / path.name
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    manifest.sha256 = tree_sha256(broken)  # the manifest vouches for the damaged bytes: the runtime must refuse them
    (tmp_path / path.with_suffix(".json").name).write_text(json.dumps(manifest.to_dict()))
    result = run_cli("parity", str(broken), "--n", "4")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"onnxruntime cannot load {path.name}" in result.stderr, result.stderr


def test_tflite_nhwc_takes_nhwc_input(xxs_exports):
    from ai_edge_litert.interpreter import Interpreter

    nhwc = Interpreter(model_path=str(xxs_exports["tflite-fp32-nhwc"].artifact))
    nchw = Interpreter(model_path=str(xxs_exports["tflite-fp32"].artifact))
    assert list(nhwc.get_input_details()[0]["shape"]) == [1, 256, 256, 3]
    assert list(nchw.get_input_details()[0]["shape"]) == [1, 3, 256, 256]


@pytest.mark.parametrize("case", ["coreml-fp16", "coreml-fp32"])
def test_coreml_package_spec(case, xxs_exports):
    import coremltools as ct

    path = xxs_exports[case].artifact
    spec = ct.utils.load_spec(str(path))
    assert spec.WhichOneof("Type") == "mlProgram"
    image = spec.description.input[0]
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (256, 256)
    assert ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.type.imageType.colorSpace) == "RGB"
    outputs = {o.name: o.type.WhichOneof("Type") for o in spec.description.output}
    assert outputs == {"classLabel": "stringType", "classLabel_probs": "dictionaryType"}
    assert spec.description.metadata.author == "mvit-deploy"
    assert spec.description.metadata.userDefined["source_model"] == "mobilevit_xxs"
    weights = sorted(path.rglob("weight.bin"))
    assert weights, "no weight blob in the package"
    # fp16 stores half the bytes of fp32 (weights dominate the blob)
    if case == "coreml-fp16":
        fp32 = sum(p.stat().st_size for p in xxs_exports["coreml-fp32"].artifact.rglob("weight.bin"))
        assert sum(p.stat().st_size for p in weights) < 0.6 * fp32


def test_coreml_parity_runs_everywhere(xxs_exports):
    result = run_cli("parity", str(xxs_exports["coreml-fp16"].artifact), "--json", "--n", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and report["runtime"] == (
        "coreml" if sys.platform == "darwin" else "coreml-reference-executor"
    )


@pytest.mark.parametrize("case", ["onnx-fp32", "tflite-fp32", "coreml-fp16"])
def test_export_twice_gives_identical_weights(case, xxs_exports, tmp_path):
    first = xxs_exports[case].artifact
    again = export(ExportOptions(model="mobilevit_xxs", out_dir=tmp_path, **CASES[case]), run_parity=False).artifact
    target = get_target(CASES[case]["target"])
    assert target.weight_bytes(first) == target.weight_bytes(again)


@pytest.fixture(scope="module")
def hf_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "xxs.safetensors"
    save_file({k: v.contiguous() for k, v in hf_reference("mobilevit_xxs").state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("target, size", [("onnx", 256), ("onnx", 320), ("tflite", 256), ("tflite", 320)])
def test_artifact_from_hf_weights_matches_hf_model(target, size, hf_weights, tmp_path, eval_photos):
    """The chain checked end to end against the independent implementation: HF model vs our artifact."""
    from mvit_deploy.targets import load_runner

    result = export(
        ExportOptions(model="mobilevit_xxs", target=target, out_dir=tmp_path, input_size=size, weights=str(hf_weights))
    )
    assert result.manifest.input.channel_order == "BGR" and result.manifest.input.size == size
    assert result.parity.passed, result.parity.failures
    x = eval_photos[size]
    got = load_runner(result.artifact, result.manifest)(x.numpy())
    expected = hf_logits(hf_reference("mobilevit_xxs"), x).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() <= bounds_for("fp32", "mobilevit")[0].value
    # parity re-run from the files alone finds the checkpoint through the manifest
    report = parity(result.artifact, n=8)
    assert report.passed and report.n_images == 8


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilevit_xs", "mobilevit_s"])
def test_larger_variants_export_to_every_target(name, tmp_path):
    for case in ("onnx-fp32", "tflite-fp32", "coreml-fp16"):
        result = export(ExportOptions(model=name, out_dir=tmp_path, parity_n=8, **CASES[case]))
        assert result.artifact.exists()
        if CASES[case]["target"] in RUNNABLE_HERE:
            assert result.parity.passed, (case, result.parity.failures)


def test_parity_cli_json_and_junit(xxs_exports, tmp_path):
    artifact = xxs_exports["onnx-fp32"].artifact
    junit = tmp_path / "parity.xml"
    result = run_cli("parity", str(artifact), "--json", "--junit-xml", str(junit), "--n", "8")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["target"] == "onnx" and report["precision"] == "fp32"
    assert {"max_abs", "max_rel", "psnr_db", "top1_agreement", "decisive_top1_agreement", "n_decisive"} <= set(
        report["metrics"]
    )
    assert [b["metric"] for b in report["bounds"]] == ["max_rel", "decisive_top1_agreement"] and report["n_images"] == 8
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "0" and int(suite.get("tests")) >= 1


def test_parity_fails_with_metric_value_and_bound(xxs_exports, tmp_path):
    """A damaged artifact (one weight perturbed) must fail, exit 1, naming the metric and bound."""
    import shutil

    import onnx
    from onnx import numpy_helper

    from mvit_deploy.artifact import tree_sha256

    src = xxs_exports["onnx-fp32"].artifact
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    model = onnx.load(str(dst))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    w = numpy_helper.to_array(init).copy()
    w.flat[::97] += 0.05
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(dst))
    manifest = json.loads(dst.with_suffix(".json").read_text())
    manifest["sha256"] = tree_sha256(dst)  # a converter bug, not a changed file: the manifest describes these bytes
    dst.with_suffix(".json").write_text(json.dumps(manifest))
    junit = tmp_path / "fail.xml"
    result = run_cli("parity", str(dst), "--n", "4", "--junit-xml", str(junit))
    assert result.returncode == 1
    assert "max_rel = " in result.stdout and "bound max_rel <= 0.0001" in result.stdout
    assert ET.parse(junit).getroot().get("failures") == "1"


def test_export_killed_midway_leaves_no_artifact(tmp_path):
    exe = Path(sys.executable).with_name("mvit-deploy")
    proc = subprocess.Popen(
        [str(exe), "export", "--target", "tflite", "--out", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.glob(".*.tmp-*")) and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(3.0)  # the converter (about 15 s for XXS) is now working into the staging directory
    assert proc.poll() is None, "export finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "mobilevit_xxs-tflite-fp32.tflite").exists()
    assert not (tmp_path / "mobilevit_xxs-tflite-fp32.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["export", "--target", "onnx", "--precision", "fp16", "--out", "{tmp}"],
            "onnx does not export precision fp16",
        ),
        (["export", "--target", "onnx", "--input-size", "250", "--out", "{tmp}"], "multiple of 64"),
        (["parity", "{tmp}/missing.onnx"], "does not exist"),
        (["parity", "README.md"], "has no manifest"),
    ],
)
def test_export_and_parity_usage_errors(args, message, tmp_path):
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_export_json_summary(tmp_path):
    result = run_cli("export", "--target", "onnx", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    (item,) = summary["artifacts"]
    assert Path(item["artifact"]).exists() and item["parity"]["passed"] is True
