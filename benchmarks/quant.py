"""int8 vs fp32 vs the stock int8 routes, latency and fidelity, measured in one run.

    .venv/bin/python benchmarks/quant.py [--models mobilevit_xxs mobilevit_s] [--pretrained fashion] [--threads 2] [--no-pt2e]

Models: the trained Fashion-MNIST references by default (``--pretrained none``: the photo fixture).
Fidelity (top-1 agreement, PSNR) vs the PyTorch fp32 reference on the model's parity set;
accuracy on the labeled test set (all 10,000 Fashion-MNIST test images when Debian's
dataset-fashion-mnist is installed, else the shipped 1,000). Routes:
  ours onnx fp32 / int8        mvit-deploy export (--precision int8: our QDQ recipe)
  stock ORT int8               onnxruntime quantize_static defaults (QDQ, per-channel, MinMax) on our fp32 ONNX
  ours tflite fp32 / int8      mvit-deploy export (int8: our ai-edge-quantizer recipe, percentile ranges)
  stock litert PT2E int8       litert-torch's documented PT2E route (symmetric, per-channel); slow to convert
Latency: batch 1; every round runs each route for a block of --block calls (after 3 warm-up
calls, so each runtime's own thread pool is awake and the previous one's is asleep), and a
route's latency is the median over rounds of its block medians. Ratios compare routes
measured in the same rounds, so a noisy neighbour hits them alike.
"""  # noqa: E501 (the usage line is one command to copy)

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

# PyTorch's OpenMP workers spin after each call by default and steal the cores from the
# route timed next; interleaved rounds are only fair if they sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))
from stock import stock_ort_int8, stock_pt2e_int8  # noqa: E402
from timing import block_latency  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilevit_xxs", "mobilevit_s"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument(
        "--pretrained", default="fashion", help="weights: fashion (trained) or none (the photo fixture)"
    )
    parser.add_argument(
        "--no-pt2e", action="store_true", help="skip the stock litert-torch PT2E route (minutes to convert)"
    )
    args = parser.parse_args()

    from mvit_deploy import load_model
    from mvit_deploy.device.runtimes.onnx import OnnxRunner
    from mvit_deploy.device.runtimes.tflite import LiteRTRunner
    from mvit_deploy.metrics import fidelity
    from mvit_deploy.pipeline.evaluate import labeled_inputs
    from mvit_deploy.pipeline.export import calibration_inputs, export
    from mvit_deploy.pipeline.parity import parity_inputs, reference_logits
    from mvit_deploy.targets import ExportOptions

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; threads={args.threads}")
    pretrained = None if args.pretrained == "none" else args.pretrained
    for name in args.models:
        model = load_model(name, pretrained=pretrained)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            routes = {}
            convert_s = {}
            for label, target, precision in [
                ("ours onnx fp32", "onnx", "fp32"),
                ("ours onnx int8", "onnx", "int8"),
                ("ours tflite fp32", "tflite", "fp32"),
                ("ours tflite int8", "tflite", "int8"),
            ]:
                t0 = time.perf_counter()
                r = export(
                    ExportOptions(
                        model=name,
                        target=target,
                        precision=precision,
                        out_dir=tmp,
                        pretrained=pretrained,
                        calib_samples=args.calib_samples,
                    ),
                    run_parity=False,
                )
                convert_s[label] = time.perf_counter() - t0
                routes[label] = (OnnxRunner if target == "onnx" else LiteRTRunner)(r.artifact, r.manifest, args.threads)
            manifest = r.manifest
            calib = calibration_inputs(model.preprocessing, manifest.input.size, None, args.calib_samples, model.domain)
            onnx_manifest = replace(manifest, target="onnx", input=replace(manifest.input, layout="nchw"))
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                stock = stock_ort_int8(tmp / f"{name}-onnx-fp32.onnx", tmp / "stock_ort_int8.onnx", calib)
            convert_s["stock ORT int8"] = time.perf_counter() - t0
            routes["stock ORT int8"] = OnnxRunner(stock, onnx_manifest, args.threads)
            if not args.no_pt2e:
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    pt2e = stock_pt2e_int8(model, tmp / "stock_pt2e.tflite", calib)
                convert_s["stock litert PT2E int8"] = time.perf_counter() - t0
                routes["stock litert PT2E int8"] = LiteRTRunner(
                    pt2e, replace(manifest, input=replace(manifest.input, layout="nchw")), args.threads
                )

            x = parity_inputs(manifest)
            ref = reference_logits(model, x)
            fid = {label: fidelity(ref, run(x)) for label, run in routes.items()}
            acc = {}
            if model.domain == "fashion-mnist":
                xe, ye, what = labeled_inputs(manifest, None)
                acc = {label: float(np.mean(run(xe).argmax(1) == ye)) for label, run in routes.items()}
                acc["reference"] = float(np.mean(reference_logits(model, xe).argmax(1) == ye))
            med = block_latency(routes, x[:1], args.rounds, args.block)
            print(
                f"\n{name} ({len(x)} parity images; ratios vs ours fp32 of the same runtime)"
                + (f"; accuracy: {what}" if acc else "")
            )
            print(
                f"{'route':<26}{'ms':>8}{'vs fp32':>9}{'top-1 agr':>10}"
                f"{'PSNR dB':>9}{'acc %':>8}{'drop pt':>9}{'convert s':>11}"
            )
            for label in routes:
                base = med["ours onnx fp32" if "onnx" in label or "ORT" in label else "ours tflite fp32"]
                f = fid[label]
                a = (
                    f"{acc[label] * 100:>8.2f}{(acc['reference'] - acc[label]) * 100:>+9.2f}"
                    if acc
                    else f"{'-':>8}{'-':>9}"
                )
                print(
                    f"{label:<26}{med[label]:>8.2f}{med[label] / base:>8.2f}x{f['top1_agreement']:>10.1%}"
                    f"{f['psnr_db']:>9.1f}{a}{convert_s[label]:>11.1f}"
                )
            if acc:
                print(f"{'PyTorch fp32 reference':<26}{'':>8}{'':>9}{'':>10}{'':>9}{acc['reference'] * 100:>8.2f}")


if __name__ == "__main__":
    main()
