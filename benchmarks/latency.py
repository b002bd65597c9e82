"""Our artifacts vs the stock routes, side by side in one run: ratios, % of machine peak, graph size.

    .venv/bin/python benchmarks/latency.py [--models mobilevit_xxs mobilevit_s] [--threads 2] [--rounds 12] [--block 20]

Stock routes (benchmarks/stock.py) are what a user does by hand with the Hugging Face model
of the same variant, given the same kind of weights as ours: seeded, BatchNorm statistics
re-estimated on photos (untrained seeded weights decay into denormals and make the stock
routes look 15x slower on some CPUs — a speed-up that is not ours):
  stock PyTorch eager          transformers' MobileViTForImageClassification
  stock torch.onnx + ORT       torch.onnx.export(dynamo=True) of that model, onnxruntime CPU
  stock litert-torch           litert_torch.convert of that model, LiteRT + XNNPACK
Ours: our PyTorch eager (the photo fixture), and our exported onnx / ort (amd64: this x86 CPU) /
tflite (NCHW and NHWC) / executorch artifacts, fp32 and int8.

Columns: p50 ms; "vs stock" = stock route of the same runtime / ours (>1 = ours faster;
ExecuTorch against stock litert-torch: XNNPACK runs underneath both); "int8/fp32" = our int8
over our fp32 of the same runtime (<1 = int8 faster); "% peak" = model FLOPs (counted) /
latency / this machine's measured fp32 GEMM peak; "nodes" and "moves" = graph nodes and the
data-movement ones among them (reshape, transpose, slice, split, concat, (un)squeeze, gather,
space/depth) as the file holds them — for ONNX also after onnxruntime's own optimisations.
Latency: blocks of calls per route, interleaved over rounds (benchmarks/timing.py), batch 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

# PyTorch's OpenMP workers spin after each call by default and steal the cores from the
# route timed next; interleaved rounds are only fair if they sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))
from stock import hf_model, stock_litert, stock_onnx  # noqa: E402
from timing import block_latency, data_movement, gemm_peak_gflops, onnx_ops, ort_optimized_ops, tflite_ops  # noqa: E402

SIZE = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["mobilevit_xxs", "mobilevit_s", "mobilevitv2_050", "mobilevitv2_100"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--no-executorch", action="store_true")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from mvit_deploy import load_model
    from mvit_deploy.models.card import count
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions, get_target
    from mvit_deploy.targets.tflite import interpreter_class, tflite_quantize

    torch.set_num_threads(args.threads)
    peak = gemm_peak_gflops(args.threads)
    print(
        f"machine: {platform.machine()}, {platform.processor() or '?'}, {os.cpu_count()} cores, {platform.platform()}"
    )
    print(
        f"threads={args.threads}; fp32 GEMM peak {peak:.1f} GFLOP/s; onnxruntime {ort.__version__}, torch "
        f"{torch.__version__}"
    )

    def ort_run(path):
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads = args.threads, 1
        s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return lambda x: s.run(None, {name: x})

    def tfl_run(path, nhwc=False):
        it = interpreter_class()(model_path=str(path), num_threads=args.threads)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        cache = {}

        def run(x):
            if id(x) not in cache:  # the caller's layout and dtype, prepared once as a deployed app would
                cache.clear()
                cache[id(x)] = tflite_quantize(x.transpose(0, 2, 3, 1) if nhwc else x, inp)
            it.set_tensor(inp["index"], cache[id(x)])
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
            x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
            routes, family, nodes = {}, {}, {}

            def add(label, fam, run, ops=None):
                routes[label], family[label], nodes[label] = run, fam, ops  # noqa: B023 (called only in this iteration)

            hf = hf_model(name)
            add("stock PyTorch eager (HF)", "torch", torch_run(hf))
            add("ours PyTorch eager", "torch", torch_run(load_model(name)))
            failed = {}  # a stock route that does not convert is a finding, not a crash (HF v2's F.fold is col2im)
            try:
                p = stock_onnx(hf, x, tmp / "hf.onnx")
                add("stock torch.onnx + ORT", "onnx", ort_run(p), (onnx_ops(p), ort_optimized_ops(p, args.threads)))
            except Exception as e:  # noqa: BLE001
                failed["stock torch.onnx + ORT"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            try:
                p = stock_litert(hf, x, tmp / "hf.tflite")
                add("stock litert-torch", "tflite", tfl_run(p), tflite_ops(p))
            except Exception as e:  # noqa: BLE001
                failed["stock litert-torch"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            precisions = ["fp32"] if args.no_int8 else ["fp32", "int8"]
            targets = [
                ("onnx", {}),
                ("ort", {"ort_platform": "amd64"}),
                ("tflite", {}),
                ("tflite", {"layout": "nhwc"}),
            ] + ([] if args.no_executorch else [("executorch", {})])
            for target, extra in targets:
                for precision in precisions:
                    calib = (
                        64 if target == "executorch" else 32
                    )  # XNNPACK refuses some requantization scales from fewer crops
                    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                        r = export(
                            ExportOptions(
                                model=name,
                                target=target,
                                precision=precision,
                                out_dir=tmp,
                                calib_samples=calib,
                                **extra,
                            ),
                            run_parity=False,
                        )
                    label = " ".join(["ours", target, precision, *extra.values()])
                    if target in ("onnx", "ort"):
                        saved = (
                            onnx_ops(r.artifact) if target == "onnx" else None
                        )  # an .ort file is ORT's own flatbuffer
                        add(label, "onnx", ort_run(r.artifact), (saved, ort_optimized_ops(r.artifact, args.threads)))
                    elif target == "tflite":
                        add(label, "tflite", tfl_run(r.artifact, nhwc=bool(extra)), tflite_ops(r.artifact))
                    else:
                        d = r.manifest.extra.get("delegation", {})
                        add(
                            label,
                            "tflite",
                            get_target(target).bench_runner(r.artifact, r.manifest, args.threads),
                            (d.get("nodes_total"), d.get("nodes_delegated")),
                        )
            med = block_latency(routes, x, args.rounds, args.block)
            flops = count(name, SIZE)[1]
            stock = {
                "torch": "stock PyTorch eager (HF)",
                "onnx": "stock torch.onnx + ORT",
                "tflite": "stock litert-torch",
            }
            print(f"\n{name}: {flops / 1e9:.2f} GFLOPs per image at {SIZE}, batch 1")
            print(f"{'route':<28}{'p50 ms':>8}{'vs stock':>10}{'int8/fp32':>10}{'% peak':>8}   graph")
            for label, ms in med.items():
                pct = flops / (ms / 1e3) / (peak * 1e9) * 100
                base = med.get(stock[family[label]])
                ratio = f"{base / ms:>9.2f}x" if base and not label.startswith("stock") else f"{'':>10}"
                fp32 = label.replace("int8", "fp32")
                vs32 = f"{ms / med[fp32]:>9.2f}x" if "int8" in label and fp32 in med else f"{'':>10}"
                print(f"{label:<28}{ms:>8.2f}{ratio}{vs32}{pct:>7.1f}%   {_graph(label, nodes[label], family[label])}")
            for label, why in failed.items():
                print(f"{label:<28}{'failed':>8}   {why}")


def _graph(label: str, ops, fam: str) -> str:
    if ops is None:
        return ""
    if "executorch" in label:
        total, delegated = ops
        return f"{total} nodes, {delegated} in XNNPACK" if total else ""
    if fam == "onnx":
        saved, run = ops
        ran = f"ORT runs {sum(run.values())}, {data_movement(run, 'onnx')} moves"
        return f"{sum(saved.values())} nodes, {data_movement(saved, 'onnx')} moves ({ran})" if saved else ran
    return f"{sum(ops.values())} ops, {data_movement(ops, 'tflite')} moves"


if __name__ == "__main__":
    main()
