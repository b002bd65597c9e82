"""The stock routes mvit-deploy is measured against (benchmarks/latency.py, quant.py, tests).

Each is what a user gets by following the tool's own documentation by hand:
  stock HF model          transformers' MobileViTForImageClassification (v2: MobileViTV2...), with realistic weights
  stock torch.onnx        torch.onnx.export(dynamo=True) of it, run by onnxruntime
  stock litert-torch      litert_torch.convert of it, run by LiteRT + XNNPACK
  stock ORT int8          onnxruntime quantize_static defaults (QDQ, per-channel, MinMax, all ops)
  stock litert PT2E int8  litert-torch's PT2E route (symmetric, per-channel, static)
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

# transformers' configs per variant, as its conversion script sets them.
HF_CONFIGS = {
    "mobilevit_xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0),
    "mobilevit_xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "mobilevit_s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}


def hf_model(name: str, seed: int = 0):
    """The HF model a user exports by hand, wrapped to return logits, with realistic weights.

    Seeded weights alone leave BatchNorm at mean 0 / var 1, so activations shrink layer by
    layer into denormals: on an Intel Xeon (Sapphire Rapids) stock ORT then ran XXS in
    118 ms instead of 8, a "speed-up" of ours that was only the weights. Its BatchNorm
    statistics are therefore re-estimated on the calibration photos and the classifier
    scaled, exactly as our photo fixture is made (``make_realistic``).
    """
    import torch
    import transformers

    from mvit_deploy.models import get_spec
    from mvit_deploy.models.families import get_family
    from mvit_deploy.models.fixture import make_realistic

    spec = get_spec(name)
    torch.manual_seed(seed)
    if spec.family == "mobilevitv2":  # transformers' MobileViTV2Config: the width multiplier is the whole config
        config = transformers.MobileViTV2Config(width_multiplier=spec.config.width)
    else:
        config = transformers.MobileViTConfig(**HF_CONFIGS[name])
    model = getattr(transformers, get_family(spec.family).hf_class)(config).eval()
    make_realistic(model, lambda x: model(pixel_values=x).logits, model.classifier, seed=seed)

    class Logits(torch.nn.Module):  # what a user wraps around it to export
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(pixel_values=x).logits

    return Logits(model).eval()


def stock_onnx(model, x: np.ndarray, out: Path) -> Path:
    import torch

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        torch.onnx.export(model, (torch.from_numpy(x),), str(out), dynamo=True, external_data=False)
    return out


def stock_litert(model, x: np.ndarray, out: Path) -> Path:
    import litert_torch
    import torch

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        litert_torch.convert(model, (torch.from_numpy(x),)).export(str(out))
    return out


def stock_ort_int8(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    from onnxruntime.quantization import QuantFormat, quantize_static

    from mvit_deploy.targets.onnx import calibration_reader

    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(fp32), str(out), calibration_reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True
        )
    return out


def stock_pt2e_int8(model, out: Path, calibration: np.ndarray) -> Path:
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    example = (torch.from_numpy(calibration[:1]),)
    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calibration)):
            prepared(torch.from_numpy(calibration[i : i + 1]))
    converted = convert_pt2e(prepared, fold_quantize=False)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        litert_torch.convert(converted, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out))
    return out
