"""eval's images/s in-process vs on Ray (1 and 2 workers), and Ray's overhead at equal cores.

    .venv/bin/python benchmarks/eval_scale.py [--size 256] [--n 1000] [--rounds 2]

The shipped Fashion-MNIST XXS is exported at --size as ONNX (fp32) and LiteRT int8; every
configuration evaluates both on the same --n test images, configurations interleaved round by
round. Wall time includes everything a user waits for (Ray's start, each worker loading the
PyTorch reference and the artifacts); "steady" images/s is measured from the moment every worker
has delivered its first shard to the last shard, so start-up does not hide in it. Ray runs on this
machine (`ray.init`, address local).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from mvit_deploy.pipeline.evaluate import evaluate  # noqa: E402
from mvit_deploy.pipeline.export import export  # noqa: E402
from mvit_deploy.targets import ExportOptions  # noqa: E402

CONFIGS = {  # label: (engine, workers, threads per worker) — cores in use = workers x threads
    "in-process, 2 threads": ("local", None, 2),
    "ray, 1 worker x 2 threads": ("ray", 1, 2),
    "ray, 1 worker x 1 thread": ("ray", 1, 1),
    "ray, 2 workers x 1 thread": ("ray", 2, 1),
}


def run(artifacts, n: int, engine: str, workers, threads: int) -> tuple[float, float]:
    marks = []
    t0 = time.perf_counter()
    evaluate(
        artifacts,
        "fashion-mnist",
        n=n,
        threads=threads,
        engine=engine,
        workers=workers,
        on_count=lambda done, total: marks.append((time.perf_counter(), done)),
    )
    wall = time.perf_counter() - t0
    done = [m for m in marks if m[1] > 0]  # one mark per finished shard
    k = workers or 1  # steady state starts once every worker has delivered its first shard
    (t_first, d_first), (t_last, d_last) = done[k - 1], done[-1]
    steady = (d_last - d_first) / (t_last - t_first) if t_last > t_first else float("nan")
    return n / wall, steady


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument(
        "--n", type=int, default=1536
    )  # 6 shards of 256: steady state needs shards after every worker's first
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="eval-scale-"))
    opts = dict(model="mobilevit_xxs", pretrained="fashion", input_size=args.size, out_dir=out)
    artifacts = [
        export(ExportOptions(target="onnx", **opts), run_parity=False).artifact,
        export(ExportOptions(target="tflite", precision="int8", **opts), run_parity=False).artifact,
    ]
    results = {label: [] for label in CONFIGS}
    for _ in range(args.rounds):
        for label, (engine, workers, threads) in CONFIGS.items():
            results[label].append(run(artifacts, args.n, engine, workers, threads))
    print(
        f"eval of 2 artifacts (ONNX fp32, LiteRT int8) + the PyTorch reference, {args.n} images at {args.size} px, "
        f"{os.cpu_count()} cores, best of {args.rounds} interleaved rounds"
    )
    print(f"{'configuration':30s} {'images/s (wall)':>16s} {'images/s (steady)':>18s}")
    best = {label: (max(w for w, _ in r), max(s for _, s in r)) for label, r in results.items()}
    for label, (wall, steady) in best.items():
        print(f"{label:30s} {wall:16.1f} {steady:18.1f}")
    # (no in-process 1-thread row: --threads sets the runtimes' threads, the PyTorch reference keeps torch's own)
    for ray_label, local_label in (("ray, 1 worker x 2 threads", "in-process, 2 threads"),):
        (rw, rs), (lw, ls) = best[ray_label], best[local_label]
        print(
            f"Ray overhead at equal cores ({ray_label} vs {local_label}): wall {1 - rw / lw:+.0%}, steady "
            f"{1 - rs / ls:+.0%}"
        )
    (w2, s2), (w1, s1) = best["ray, 2 workers x 1 thread"], best["ray, 1 worker x 1 thread"]
    print(f"Ray scaling 1 -> 2 workers (1 thread each): wall {w2 / w1:.2f}x, steady {s2 / s1:.2f}x")


if __name__ == "__main__":
    main()
