"""Device-side entry point: ``python -m mvit_deploy.bench ARTIFACT... --threads N --warmup W --iters I [--denormals flush]``.

Prints one bench JSON (schema mvit-deploy/bench/1) on stdout. Needs only numpy and the
runtimes (what ``pip install mvit-deploy[device]`` brings); used by the ssh device.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import MvitDeployError
from .local import bench


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mvit_deploy.bench")
    parser.add_argument("artifacts", nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--denormals", choices=("keep", "flush"), default="keep")
    args = parser.parse_args(argv)
    try:
        result = bench(args.artifacts, args.threads, args.warmup, args.iters, denormal_check=False, denormals=args.denormals)
    except MvitDeployError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
