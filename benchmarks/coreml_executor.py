"""Time the Core ML reference executor per image (target: <= 2 s for MobileViT-S on 2 cores).

    .venv/bin/python benchmarks/coreml_executor.py [--models mobilevit_xxs mobilevit_s] [--iters 5] [--layouts standard ane]

Exports each model to Core ML (fp32 and fp16) into a temporary directory, then runs the
executor on real photo crops and prints load time and per-image latency (min / median).
"""  # noqa: E501 (the usage line is one command to copy)

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilevit_xxs", "mobilevit_s"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--layouts", nargs="+", default=["standard"], choices=["standard", "ane"])
    args = parser.parse_args()

    from mvit_deploy.inputs.calibration import photo_inputs
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions
    from mvit_deploy.targets.coreml_exec import MILExecutor

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        f"{'model':<15}{'precision':<10}{'layout':<10}{'load s':>8}{'min s/img':>11}{'median s/img':>14}  goal (S <= "
        "2 s/img)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for precision, layout in [(p, lay) for p in args.precisions for lay in args.layouts]:
                opts = ExportOptions(
                    model=name,
                    target="coreml",
                    precision=precision,
                    input_size=args.size,
                    target_options={"coreml_layout": layout},
                    out_dir=Path(tmp),
                )
                artifact = export(opts, run_parity=False).artifact
                t0 = time.perf_counter()
                ex = MILExecutor(artifact)
                load = time.perf_counter() - t0
                x = photo_inputs("eval", args.size, crops_per_photo=1)[:1] * 255
                ex.run({"image": x})  # warm-up
                times = []
                for _ in range(args.iters):
                    t0 = time.perf_counter()
                    ex.run({"image": x})
                    times.append(time.perf_counter() - t0)
                med = statistics.median(times)
                goal = ("met" if med <= 2.0 else "MISSED") if name == "mobilevit_s" else ""
                print(f"{name:<15}{precision:<10}{layout:<10}{load:>8.2f}{min(times):>11.3f}{med:>14.3f}  {goal}")


if __name__ == "__main__":
    main()
