"""Our artifacts vs the stock routes, side by side in one run, with ratios and % of machine peak.

    .venv/bin/python benchmarks/latency.py [--models mobilevit_xxs mobilevit_s] [--threads 2] [--rounds 30]

Stock routes are what a user does by hand with the Hugging Face model (same config,
seeded weights; latency does not depend on the weights):
  stock PyTorch eager          transformers' MobileViTForImageClassification
  stock torch.onnx + ORT       torch.onnx.export(dynamo=True) of that model, onnxruntime CPU
  stock litert-torch           litert_torch.convert of that model, LiteRT + XNNPACK
Ours: our PyTorch eager, and our exported onnx / tflite / executorch fp32 (+ int8) artifacts.
ExecuTorch's ratio is against stock litert-torch: XNNPACK runs underneath both, so the ratio
says which of the two a user should pick for the same engine.
"% peak" = model FLOPs (counted) / latency / this machine's measured fp32 GEMM peak.
Latency: median over interleaved rounds (every route once per round), batch 1.
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


def gemm_peak_gflops(threads: int, n: int = 1024, reps: int = 20) -> float:
    """Best fp32 GEMM throughput torch reaches here (the same BLAS family the runtimes use)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def hf_model(name: str):
    import torch
    from transformers import MobileViTConfig, MobileViTForImageClassification

    cfgs = {
        "mobilevit_xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0),
        "mobilevit_xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
        "mobilevit_s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
    }
    torch.manual_seed(0)
    model = MobileViTForImageClassification(MobileViTConfig(**cfgs[name])).eval()

    class Logits(torch.nn.Module):  # what a user wraps around it to export
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(pixel_values=x).logits

    return Logits(model).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilevit_xxs", "mobilevit_s"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--no-int8", action="store_true")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from mvit_deploy import load_model
    from mvit_deploy.export import export
    from mvit_deploy.models.card import count
    from mvit_deploy.targets.tflite import interpreter_class
    from mvit_deploy.targets import ExportOptions, get_target

    torch.set_num_threads(args.threads)
    peak = gemm_peak_gflops(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; threads={args.threads}; fp32 GEMM peak {peak:.1f} GFLOP/s")

    def ort_run(path):
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads = args.threads, 1
        s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return lambda x: s.run(None, {name: x})

    def tfl_run(path):
        it = interpreter_class()(model_path=str(path), num_threads=args.threads)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]

        def run(x):
            if inp["dtype"] == np.int8:
                s, z = inp["quantization"]
                x = np.clip(np.round(x / s + z), -128, 127).astype(np.int8)
            it.set_tensor(inp["index"], x)
            it.invoke()
            return it.get_tensor(out["index"])

        return run

    def torch_run(model):
        def run(x):
            with torch.no_grad():
                return model(torch.from_numpy(x))

        return run

    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
            routes = {}
            hf = hf_model(name)
            routes["stock PyTorch eager (HF)"] = torch_run(hf)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                torch.onnx.export(hf, (torch.from_numpy(x),), str(tmp / "hf.onnx"), dynamo=True, external_data=False)
                import litert_torch

                litert_torch.convert(hf, (torch.from_numpy(x),)).export(str(tmp / "hf.tflite"))
            routes["stock torch.onnx + ORT"] = ort_run(tmp / "hf.onnx")
            routes["stock litert-torch"] = tfl_run(tmp / "hf.tflite")
            routes["ours PyTorch eager"] = torch_run(load_model(name))
            precisions = ["fp32"] if args.no_int8 else ["fp32", "int8"]
            for target in ("onnx", "tflite", "executorch"):
                for precision in precisions:
                    calib = 64 if target == "executorch" else 32  # XNNPACK refuses some requantization scales from fewer crops
                    r = export(ExportOptions(model=name, target=target, precision=precision, out_dir=tmp, calib_samples=calib), run_parity=False)
                    if target == "executorch":
                        routes[f"ours {target} {precision}"] = get_target(target).bench_runner(r.artifact, r.manifest, args.threads)
                    else:
                        routes[f"ours {target} {precision}"] = (ort_run if target == "onnx" else tfl_run)(r.artifact)
            for run in routes.values():
                for _ in range(3):
                    run(x)
            times = {k: [] for k in routes}
            for _ in range(args.rounds):
                for label, run in routes.items():
                    t0 = time.perf_counter()
                    run(x)
                    times[label].append(time.perf_counter() - t0)
            med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
            flops = count(name, 256)[1]
            stock = {"PyTorch": med["stock PyTorch eager (HF)"], "onnx": med["stock torch.onnx + ORT"], "tflite": med["stock litert-torch"]}
            print(f"\n{name}: {flops / 1e9:.2f} GFLOPs per image at 256")
            print(f"{'route':<28}{'p50 ms':>9}{'vs stock':>10}{'% peak':>8}")
            for label, ms in med.items():
                family = "PyTorch" if "PyTorch" in label else "onnx" if ("onnx" in label or "ORT" in label) else "tflite"  # executorch: vs litert
                pct = flops / (ms / 1e3) / (peak * 1e9) * 100
                print(f"{label:<28}{ms:>9.2f}{stock[family] / ms:>9.2f}x{pct:>7.1f}%")


if __name__ == "__main__":
    main()
