"""The stock int8 routes mvit-deploy is measured against (benchmarks/quant.py, tests).

Each is what a user gets by following the tool's own documentation by hand:
  stock ORT int8          onnxruntime quantize_static defaults (QDQ, per-channel, MinMax, all ops)
  stock litert PT2E int8  litert-torch's PT2E route (symmetric, per-channel, static)
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np


def stock_ort_int8(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    from onnxruntime.quantization import QuantFormat, quantize_static

    from mvit_deploy.targets.onnx import calibration_reader

    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(fp32), str(out), calibration_reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True)
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
