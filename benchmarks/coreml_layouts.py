"""The two Core ML layouts side by side: op counts, Neural Engine findings, padding, executor time, parity.

    .venv/bin/python benchmarks/coreml_layouts.py [--models mobilevit_xxs mobilevit_xs mobilevit_s] [--size 256]

For each model, exports ``--coreml-layout standard`` and ``--coreml-layout ane`` (fp16, with the
export's own parity check on the shipped photos), runs ``ane-check`` on both, and times the
reference executor on one photo (blocks interleaved: standard, ane, standard, ane, ...).
The executor's time is a Linux reference, not an iPhone latency: on a Mac, `bench --compute-units
cpu_and_ne` times the real thing.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from pathlib import Path

SHOWN = (
    "conv",
    "linear",
    "matmul",
    "einsum",
    "softmax",
    "layer_norm",
    "transpose",
    "reshape",
    "slice_by_index",
    "split",
    "concat",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilevit_xxs", "mobilevit_xs", "mobilevit_s"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from mvit_deploy.inputs.calibration import photo_inputs
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions
    from mvit_deploy.targets.coreml_exec import MILExecutor, ane
    from mvit_deploy.targets.coreml_exec.program import load_program

    x = photo_inputs("eval", args.size, crops_per_photo=1)[:1] * 255
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            runs = {}
            for layout in ("standard", "ane"):
                opts = ExportOptions(
                    model=name,
                    target="coreml",
                    precision="fp16",
                    input_size=args.size,
                    target_options={"coreml_layout": layout},
                    out_dir=Path(tmp) / layout,
                )
                result = export(opts)
                program = load_program(result.artifact)
                ops = collections.Counter(o.type for o in program.operations if o.type != "const")
                report = ane.check(result.artifact)
                runs[layout] = dict(result=result, ops=ops, report=report, ex=MILExecutor(result.artifact), times=[])
            for _ in range(args.rounds):  # interleaved blocks
                for _layout, run in runs.items():
                    t0 = time.perf_counter()
                    run["ex"].run({"image": x})
                    run["times"].append(time.perf_counter() - t0)
            for layout, run in runs.items():
                s = run["report"].summary()
                parity = run["result"].manifest.parity
                rows.append(
                    (name, layout, sum(run["ops"].values()), run["ops"], s, statistics.median(run["times"]), parity)
                )

    print(
        f"{'model':<15}{'layout':<10}{'ops':>5} "
        + " ".join(f"{k[:9]:>9}" for k in SHOWN)
        + f"{'hard':>6}{'cost':>6}{'attn':>6}{'moves':>6}{'pad MB':>8}{'exec s':>8}  parity"
    )
    for name, layout, total, ops, s, t, parity in rows:
        by = s["by_rule"]
        m = parity.get("metrics", {})
        verdict = (
            f"{'pass' if parity.get('passed') else 'FAIL'} {m.get('psnr_db', float('nan')):.1f} dB, top-1 "
            f"{m.get('top1_agreement', float('nan')):.1%}"
        )
        print(
            f"{name:<15}{layout:<10}{total:>5} "
            + " ".join(f"{ops.get(k, 0):>9}" for k in SHOWN)
            + f"{s['hard']:>6}{s['cost']:>6}{by.get('attention-layout', 0):>6}{by.get('last-axis-move', 0):>6}"
            + f"{s['last_axis_padding_bytes'] / 1e6:>8.2f}{t:>8.3f}  {verdict}"
        )


if __name__ == "__main__":
    main()
