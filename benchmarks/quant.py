"""int8 vs fp32 vs the stock int8 routes, latency and fidelity, measured in one run.

    .venv/bin/python benchmarks/quant.py [--models mobilevit_xxs mobilevit_s] [--threads 2] [--no-pt2e]

Routes, each on the same held-out photo crops (fidelity vs the PyTorch fp32 reference):
  ours onnx fp32 / int8        mvit-deploy export (--precision int8: our QDQ recipe)
  stock ORT int8               onnxruntime quantize_static defaults (QDQ, per-channel, MinMax) on our fp32 ONNX
  ours tflite fp32 / int8      mvit-deploy export (int8: ai-edge-quantizer full-integer)
  stock litert PT2E int8       litert-torch's documented PT2E route (symmetric, per-channel); slow to convert
Latency: median of interleaved rounds (every route once per round), batch 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

# PyTorch's OpenMP workers spin after each call by default and steal the cores from the
# route timed next; interleaved rounds are only fair if they sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def stock_ort_int8(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter({"image": calibration[i : i + 1]} for i in range(len(calibration)))

        def get_next(self):
            return next(self._it, None)

    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
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
    edge = litert_torch.convert(converted, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilevit_xxs", "mobilevit_s"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument("--no-pt2e", action="store_true", help="skip the stock litert-torch PT2E route (minutes to convert)")
    args = parser.parse_args()

    from mvit_deploy import load_model
    from mvit_deploy.export import calibration_inputs, export
    from mvit_deploy.metrics import fidelity
    from mvit_deploy.parity import parity_inputs, reference_logits
    from mvit_deploy.runtimes import LiteRTRunner, OnnxRunner
    from mvit_deploy.targets import ExportOptions

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; threads={args.threads}")
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            routes = {}
            convert_s = {}
            for label, target, precision in [("ours onnx fp32", "onnx", "fp32"), ("ours onnx int8", "onnx", "int8"), ("ours tflite fp32", "tflite", "fp32"), ("ours tflite int8", "tflite", "int8")]:
                t0 = time.perf_counter()
                r = export(ExportOptions(model=name, target=target, precision=precision, out_dir=tmp, calib_samples=args.calib_samples), run_parity=False)
                convert_s[label] = time.perf_counter() - t0
                routes[label] = (OnnxRunner if target == "onnx" else LiteRTRunner)(r.artifact, r.manifest, args.threads)
            manifest = r.manifest
            calib = calibration_inputs(load_model(name).preprocessing, manifest["input"]["size"], None, args.calib_samples)
            onnx_manifest = {**manifest, "target": "onnx", "input": {**manifest["input"], "layout": "nchw"}}
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                stock = stock_ort_int8(tmp / f"{name}-onnx-fp32.onnx", tmp / "stock_ort_int8.onnx", calib)
            convert_s["stock ORT int8"] = time.perf_counter() - t0
            routes["stock ORT int8"] = OnnxRunner(stock, onnx_manifest, args.threads)
            if not args.no_pt2e:
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    pt2e = stock_pt2e_int8(load_model(name), tmp / "stock_pt2e.tflite", calib)
                convert_s["stock litert PT2E int8"] = time.perf_counter() - t0
                routes["stock litert PT2E int8"] = LiteRTRunner(pt2e, {**manifest, "input": {**manifest["input"], "layout": "nchw"}}, args.threads)

            x = parity_inputs(manifest, None, None)
            ref = reference_logits(load_model(name), x)
            fid = {label: fidelity(ref, run(x)) for label, run in routes.items()}
            times = {label: [] for label in routes}
            one = x[:1]
            for run in routes.values():
                run(one)
            for _ in range(args.rounds):  # interleaved: a noisy neighbour hits every route alike
                for label, run in routes.items():
                    t0 = time.perf_counter()
                    run(one)
                    times[label].append(time.perf_counter() - t0)
            med = {label: float(np.median(t)) * 1e3 for label, t in times.items()}
            print(f"\n{name} ({len(x)} held-out crops; ratios vs ours fp32 of the same runtime)")
            print(f"{'route':<26}{'ms':>8}{'vs fp32':>9}{'top-1':>8}{'PSNR dB':>9}{'convert s':>11}")
            for label in routes:
                base = med["ours onnx fp32" if "onnx" in label or "ORT" in label else "ours tflite fp32"]
                f = fid[label]
                print(f"{label:<26}{med[label]:>8.2f}{med[label] / base:>8.2f}x{f['top1_agreement']:>8.0%}{f['psnr_db']:>9.1f}{convert_s[label]:>11.1f}")


if __name__ == "__main__":
    main()
