"""int8 for every target: artifacts, calibration, and parity judged by the int8 bounds row.

Fidelity numbers for our int8 recipes are printed by benchmarks/quant.py; here we check that
each int8 artifact is what it claims to be (int8 ops and tensors), runs in its runtime, and
that parity applies the int8 bounds honestly (passed <=> every bound holds).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli
from mvit_deploy.calibration import shipped_photos
from mvit_deploy.export import calibration_inputs, export
from mvit_deploy.models.config import TIMM_PREPROCESSING
from mvit_deploy.targets import ExportOptions
from mvit_deploy.tolerances import bounds_for

QUANT_CASES = {
    "onnx-int8": dict(target="onnx", precision="int8"),
    "tflite-int8": dict(target="tflite", precision="int8"),
    "tflite-int8-nhwc": dict(target="tflite", precision="int8", layout="nhwc"),
    "coreml-int8": dict(target="coreml", precision="int8"),
    "coreml-w8a8": dict(target="coreml", precision="w8a8", min_target="iOS17"),
}


@pytest.fixture(scope="module")
def int8_exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    return {c: export(ExportOptions(model="mobilevit_xxs", out_dir=out, calib_samples=28, **kw)) for c, kw in QUANT_CASES.items()}


@pytest.mark.parametrize("case", list(QUANT_CASES))
def test_int8_parity_uses_the_int8_row_and_reports_honestly(case, int8_exports):
    result = int8_exports[case]
    p = result.manifest["parity"]
    assert result.manifest["calibration"]["samples"] == 28
    assert [(b["metric"], b["op"], b["value"]) for b in p["bounds"]] == [(b.metric, b.op, b.value) for b in bounds_for(QUANT_CASES[case]["target"], QUANT_CASES[case]["precision"])]
    m = p["metrics"]
    assert p["passed"] == (m["top1_agreement"] >= 0.98 and m["psnr_db"] >= 35)
    assert 0 < m["cosine"] <= 1 and m["psnr_db"] > 10, "the int8 artifact does not compute the model at all"


def test_coreml_weight_only_int8_is_small_and_faithful(int8_exports, tmp_path):
    from mvit_deploy.coreml_exec import MILExecutor

    result = int8_exports["coreml-int8"]
    ops = {o.type for o in MILExecutor(result.artifact).program.operations}
    assert "constexpr_affine_dequantize" in ops
    fp16 = export(ExportOptions(model="mobilevit_xxs", target="coreml", precision="fp16", out_dir=tmp_path), run_parity=False)
    assert result.manifest["bytes"] < 0.6 * fp16.manifest["bytes"]
    assert result.manifest["parity"]["metrics"]["psnr_db"] >= 35


def test_coreml_ios18_int8_uses_blockwise_op(tmp_path):
    from mvit_deploy.coreml_exec import MILExecutor

    r = export(ExportOptions(model="mobilevit_xxs", target="coreml", precision="int8", min_target="iOS18", out_dir=tmp_path, calib_samples=4, parity_n=4))
    assert "constexpr_blockwise_shift_scale" in {o.type for o in MILExecutor(r.artifact).program.operations}
    assert r.parity.metrics["psnr_db"] >= 35


def test_coreml_w8a8_quantizes_activations(int8_exports):
    from mvit_deploy.coreml_exec import MILExecutor

    ops = [o.type for o in MILExecutor(int8_exports["coreml-w8a8"].artifact).program.operations]
    assert ops.count("quantize") > 50 and ops.count("dequantize") > 50


def test_w8a8_on_ios16_is_refused(tmp_path):
    result = run_cli("export", "--target", "coreml", "--precision", "w8a8", "--min-target", "iOS16", "--out", str(tmp_path))
    assert result.returncode == 2 and "iOS17" in result.stderr and "Traceback" not in result.stderr


def test_onnx_int8_has_qdq_and_int8_weights(int8_exports):
    import onnx

    model = onnx.load(str(int8_exports["onnx-int8"].artifact))
    kinds = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) >= 30  # every conv weight


def test_tflite_int8_is_full_integer(int8_exports):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(int8_exports["tflite-int8"].artifact))
    dtypes = {d["dtype"] for d in it.get_tensor_details()}
    assert np.int8 in dtypes
    inp = it.get_input_details()[0]
    assert inp["dtype"] == np.int8 and inp["quantization"][0] > 0  # int8 I/O; the runner quantizes with these params
    assert int8_exports["tflite-int8"].manifest["input"]["dtype"] == "int8"


def test_calibration_and_parity_photos_are_disjoint(tmp_path):
    calib = {p.path.name for p in shipped_photos("calib")}
    evaluation = {p.path.name for p in shipped_photos("eval")}
    assert calib and evaluation and not calib & evaluation
    x = calibration_inputs(TIMM_PREPROCESSING, 64, None, 20)
    assert x.shape == (20, 3, 64, 64)
    own = tmp_path / "mine"
    own.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((80, 90, 3), 40 * i, np.uint8)).save(own / f"{i}.png")
    mine = calibration_inputs(TIMM_PREPROCESSING, 64, own, 6)
    assert mine.shape == (6, 3, 64, 64) and np.allclose(mine[0], 0) and not np.allclose(mine[-1], 0)
