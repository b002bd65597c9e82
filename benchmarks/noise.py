"""How far do correct artifacts drift from PyTorch? The measurements behind tolerances.py.

    .venv/bin/python benchmarks/noise.py [--models xxs-fashion s-fashion xxs-fixture v2-050-fixture v2-050-fashion] [--precisions fp32 ...] [--out DIR]
        [--board ssh://root@127.0.0.1:PORT --identity KEY]   # also on an aarch64 board (scripts/aarch64_board.sh)

For each model it exports every target and precision once, then runs each artifact on the
model's parity set under every setting that changes summation order but not the maths:
intra-op threads 1 and 2, ORT graph optimisation disabled / basic / all, and a PyTorch
reference computed with the default kernels and with ``ATEN_CPU_CAPABILITY=avx2`` (a
subprocess, since the variable is read at import), and with ``--board`` the artifact run on that
board (its own runtime's ARM kernels) with 1 and 2 threads. Printed per artifact: the worst
``max_rel`` (max |error| / max |reference logit|), the worst PSNR, and the largest
reference margin (fraction of the peak) at which top-1 changed, across all settings; with ``--board``
a second row (``@ aarch64``) gives the same over the board's settings alone.
"""  # noqa: E501 (the usage line is one command to copy; --help prints it verbatim)

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

MODELS = {
    "xxs-fashion": ("mobilevit_xxs", "fashion"),
    "s-fashion": ("mobilevit_s", "fashion"),
    "xxs-fixture": ("mobilevit_xxs", None),
    "v2-050-fixture": ("mobilevitv2_050", None),
    "v2-050-fashion": ("mobilevitv2_050", "fashion"),
}
EXPORTS = [
    ("onnx", "fp32"),
    ("tflite", "fp32"),
    ("coreml", "fp32"),
    ("executorch", "fp32"),
    ("coreml", "fp16"),
    ("onnx", "int8"),
    ("tflite", "int8"),
    ("coreml", "int8"),
    ("coreml", "w8a8"),
]

REFERENCE_SNIPPET = """
import sys, numpy as np, torch
from mvit_deploy.models import load_model
from mvit_deploy.pipeline.parity import reference_logits
torch.set_num_threads(int(sys.argv[4]))
model = load_model(sys.argv[1], pretrained=None if sys.argv[2] == "-" else sys.argv[2])
np.save(sys.argv[5], reference_logits(model, np.load(sys.argv[3])))
"""


def references(model: str, pretrained: str | None, x: np.ndarray, work: Path) -> dict[str, np.ndarray]:
    """Reference logits under each kernel set and thread count (fresh processes)."""
    np.save(work / "x.npy", x)
    out = {}
    for cap in ("default", "avx2"):
        for threads in (1, 2):
            env = dict(os.environ)
            if cap != "default":
                env["ATEN_CPU_CAPABILITY"] = cap
            dest = work / f"ref-{cap}-{threads}.npy"
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    REFERENCE_SNIPPET,
                    model,
                    pretrained or "-",
                    str(work / "x.npy"),
                    str(threads),
                    str(dest),
                ],
                env=env,
                check=True,
            )
            out[f"torch {cap} {threads}t"] = np.load(dest)
    return out


def runs(artifact: Path, manifest, x: np.ndarray) -> dict[str, np.ndarray]:
    from mvit_deploy.targets import load_runner

    out = {}
    if manifest.target == "onnx":
        import onnxruntime as ort

        for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"):
            for threads in (1, 2):
                opts = ort.SessionOptions()
                opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
                opts.intra_op_num_threads = threads
                sess = ort.InferenceSession(str(artifact), opts, providers=["CPUExecutionProvider"])
                name = sess.get_inputs()[0].name
                out[f"{level} {threads}t"] = np.concatenate(
                    [sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))]
                )
    else:
        for threads in (1, 2) if manifest.target in ("tflite", "executorch") else (1,):
            out[f"{threads}t"] = load_runner(artifact, manifest, threads)(x)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["xxs-fashion", "s-fashion", "xxs-fixture"], choices=list(MODELS))
    p.add_argument("--precisions", nargs="+", default=None, help="only these precisions (default: all)")
    p.add_argument("--targets", nargs="+", default=None, help="only these targets (default: all)")
    p.add_argument("--out", type=Path, default=None, help="keep the exports here (default: a temporary folder)")
    p.add_argument("--board", default=None, help="ssh://user@host[:port] of a board: its runs are settings too")
    p.add_argument("--identity", default=None)
    p.add_argument(
        "--ssh-option", action="append", default=["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]
    )
    args = p.parse_args()
    board = None
    if args.board:
        from mvit_deploy.bench import connect

        board = connect(args.board, identity=args.identity, ssh_options=tuple(args.ssh_option))

    from mvit_deploy.metrics import fidelity, margins
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.pipeline.parity import parity_inputs
    from mvit_deploy.targets import ExportOptions

    root = args.out or Path(tempfile.mkdtemp(prefix="mvit-noise-"))
    print(
        f"{'model':<12}{'artifact':<24}{'settings':>9}{'max_rel':>10}"
        f"{'min PSNR':>10}{'flips':>7}{'max flip margin':>17}"
    )
    for key in args.models:
        model, pretrained = MODELS[key]
        work = root / key
        work.mkdir(parents=True, exist_ok=True)
        refs = None
        for target, precision in EXPORTS:
            if (args.precisions and precision not in args.precisions) or (args.targets and target not in args.targets):
                continue
            opts = ExportOptions(
                model=model,
                target=target,
                precision=precision,
                pretrained=pretrained,
                out_dir=work,
            )
            res = export(opts, run_parity=False)
            x = parity_inputs(res.manifest)
            if refs is None:
                refs = references(model, pretrained, x, work)
            outs = runs(res.artifact, res.manifest, x)
            on_board = {}
            if board is not None and target in ("onnx", "tflite"):
                on_board = {f"aarch64 {t}t": board.run_logits(res.artifact, x, t)[0] for t in (1, 2)}
            for label, group in (
                (f"{target} {precision}", {**outs, **on_board}),
                (f"{target} {precision} @ aarch64", on_board),
            ):
                if not group:
                    continue
                worst_rel, worst_psnr, flips, max_flip = 0.0, float("inf"), 0, 0.0
                for ref in refs.values():
                    peak = np.abs(ref).max()
                    for got in group.values():
                        m = fidelity(ref, got)
                        worst_rel, worst_psnr = max(worst_rel, m["max_rel"]), min(worst_psnr, m["psnr_db"])
                        changed = ref.argmax(1) != got.argmax(1)
                        flips = max(flips, int(changed.sum()))
                        if changed.any():
                            max_flip = max(max_flip, float(margins(ref)[changed].max() / peak))
                flip_txt = "-" if not flips else f"{max_flip:.4f}"
                print(
                    f"{key:<12}{label:<24}{len(group) * len(refs):>9}{worst_rel:>10.2e}"
                    f"{worst_psnr:>10.1f}{flips:>7}{flip_txt:>17}",
                    flush=True,
                )
            ref_rel = max(fidelity(a, b)["max_rel"] for a in refs.values() for b in refs.values())
        print(f"{key:<12}{'torch vs torch':<24}{len(refs) ** 2:>9}{ref_rel:>10.2e}", flush=True)
    print(
        "max_rel: worst over settings; max flip margin: the largest reference margin (/ peak) among flipped images, "
        "worst setting"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
