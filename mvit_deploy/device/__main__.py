"""``python -m mvit_deploy.device COMMAND`` (or the copy a host ships): the device side's commands.

    info                                   this device as bench results name it (JSON on stdout)
    bench ARTIFACT... [--threads N --warmup W --iters I --denormals keep|flush]
                                           one bench result (schema mvit-deploy/bench/1) on stdout
    run ARTIFACT --inputs IN.npz --out OUT.npz [--threads N]
                                           the artifact's logits for IN.npz's ``x`` ([N, 3, H, W] float32, already
                                           preprocessed by the host) into OUT.npz's ``logits``; JSON on stdout:
                                           {protocol, device, runtime, n, seconds}

Errors: one line ``error: ...`` on stderr and the CLI's exit codes (2 input, 3 internal).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

from . import PROTOCOL
from .errors import MvitDeployError, UsageError

MAX_INPUT_BYTES = 4 << 30  # a parity set larger than this is not a parity set


def _run(args) -> dict:
    import numpy as np

    from .bench import device_info
    from .manifest import read_manifest
    from .runtimes import load_runner

    manifest = read_manifest(args.artifact)
    try:
        with np.load(args.inputs, allow_pickle=False) as data:
            x = data["x"]
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(
            f"{args.inputs} is not an inputs file ({e})", "let the host write it (parity --device)"
        ) from None
    size = manifest.input.size
    if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (3, size, size) or x.nbytes > MAX_INPUT_BYTES:
        raise UsageError(
            f"{args.inputs} holds {x.dtype} {tuple(x.shape)}, the artifact takes float32 [N, 3, {size}, {size}]",
            "let the host write it",
        )
    runner = load_runner(args.artifact, manifest, args.threads)
    t0 = time.perf_counter()
    logits = runner(x)
    seconds = time.perf_counter() - t0
    np.savez(args.out, logits=np.asarray(logits, np.float32))
    return {
        "protocol": PROTOCOL,
        "device": device_info(),
        "runtime": runner.runtime,
        "n": int(len(x)),
        "seconds": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info")
    b = sub.add_parser("bench")
    b.add_argument("artifacts", nargs="+")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--iters", type=int, default=50)
    b.add_argument("--denormals", choices=("keep", "flush"), default="keep")
    r = sub.add_parser("run")
    r.add_argument("artifact")
    r.add_argument("--inputs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            from .bench import device_info

            result = device_info()
        elif args.command == "bench":
            from .bench import bench

            result = bench(
                args.artifacts, args.threads, args.warmup, args.iters, denormal_check=False, denormals=args.denormals
            )
        else:
            result = _run(args)
    except MvitDeployError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # the host turns this line into its own one-line error
        last = traceback.extract_tb(e.__traceback__)[-1]
        print(
            f"error: internal error on the device: {type(e).__name__}: {e} "
            f"({last.filename.rsplit('/', 1)[-1]}:{last.lineno})",
            file=sys.stderr,
        )
        return 3
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
