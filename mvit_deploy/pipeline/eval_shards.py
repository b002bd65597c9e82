"""Where ``eval`` runs: in this process, or sharded over a Ray cluster (``--engine ray``).

The unit of work is a *shard*: a range of the labeled set. A :class:`Judge` loads every PyTorch
reference and every artifact once, then turns a shard into per-sample top-5 class indices of each
(decoding its images itself, so no pixels travel). Both engines give the same arrays, sample for
sample; the report is computed from them afterwards (evaluate.py).

``--out DIR`` keeps each finished shard as ``DIR/shards/<start>-<stop>.npz`` (written to a temporary
name, then renamed: a shard is there whole or not at all), and ``--resume`` reuses the shards of
the same run (``DIR/run.json`` fingerprints artifacts, data and shard size). With Ray, a worker
that dies mid-shard is replaced and its shard run again; a shard counts only once its result is
in, so every sample is counted exactly once.

Plain Ray actors fed shard ranges by the driver, not Ray Data's ``map_batches``: chosen, not
measured against it — the images stay on the workers' filesystem, a fault costs one shard, and
nothing but the top-5 arrays crosses the object store. ``benchmarks/eval_scale.py`` measures this
engine against the in-process one.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..device.files import MB, check_regular, load_json
from ..errors import UsageError

SHARD = 256  # images per shard: 1/4 s to 90 s of work per artifact, small enough to lose
MAX_RESTARTS_PER_WORKER = 3


def top5(logits: np.ndarray) -> np.ndarray:
    """Class indices of the 5 largest logits (all of them for a head of fewer than 5 classes)."""
    return np.argsort(-logits, axis=1, kind="stable")[:, :5].astype(np.int32)


def top_width(manifests) -> int:
    return min(5, *(m.output.classes for m in manifests))


@dataclass(frozen=True)
class JudgeSpec:
    """What a judge (in this process or on a Ray worker) loads: plain data, so it travels to a worker."""

    artifacts: list[str]  # absolute paths
    manifests: list[dict]  # each as ``Manifest.to_dict()``, read back by the judge
    ref_keys: list[str]  # the reference each artifact is compared with (one per checkpoint)
    weights: str | None  # the reference checkpoint, if it moved since export
    threads: int | None
    data_set: object  # the labeled set (evaluate.LabeledSet): loads images [start, stop)
    batch: int


class Judge:
    """The references and artifacts of one evaluation, loaded once; ``run(start, stop)`` -> top-5 arrays."""

    def __init__(self, spec: JudgeSpec):
        from ..artifact import Manifest
        from ..targets import load_runner
        from .parity import reference_model

        artifacts, ref_keys, weights, threads = spec.artifacts, spec.ref_keys, spec.weights, spec.threads
        data_set, batch = spec.data_set, spec.batch
        manifests = [Manifest.from_dict(m, a) for a, m in zip(artifacts, spec.manifests, strict=True)]

        self.models = {}
        for key, manifest in zip(ref_keys, manifests, strict=True):
            if key not in self.models:
                self.models[key] = reference_model(manifest, weights)
        self.runners = [load_runner(a, m, threads) for a, m in zip(artifacts, manifests, strict=True)]
        self.data_set, self.batch = data_set, batch
        self.width = top_width(manifests)

    def run(self, start: int, stop: int) -> dict[str, np.ndarray]:
        from .parity import reference_logits

        out = {f"ref:{k}": np.empty((stop - start, self.width), np.int32) for k in self.models}
        out.update({f"art:{i}": np.empty((stop - start, self.width), np.int32) for i in range(len(self.runners))})
        for a in range(start, stop, self.batch):
            b = min(a + self.batch, stop)
            x = self.data_set.load(a, b)
            for key, model in self.models.items():
                out[f"ref:{key}"][a - start : b - start] = top5(reference_logits(model, x))
            for i, runner in enumerate(self.runners):
                out[f"art:{i}"][a - start : b - start] = top5(runner(x))
        return out


class ShardStore:
    """Finished shards on disk (``--out DIR``), or nowhere."""

    def __init__(self, out_dir, fingerprint: dict, resume: bool):
        self.dir = None if out_dir is None else Path(out_dir)
        if self.dir is None:
            if resume:
                raise UsageError(
                    "--resume needs the --out folder of the interrupted run", "pass --out DIR with --resume"
                )
            return
        if resume and not self.dir.is_dir():
            raise UsageError(f"--resume: {self.dir} does not exist", "pass the --out folder of the interrupted run")
        run = self.dir / "run.json"
        if run.exists():
            if not resume:
                raise UsageError(
                    f"{self.dir} holds shards of an earlier eval",
                    "pass --resume to continue it, or another --out folder",
                )
            fix = f"delete {self.dir} or use another --out folder"
            previous = load_json(run, "eval run record", fix, MB)
            if previous != fingerprint:
                raise UsageError(
                    f"{self.dir} holds shards of a different eval (artifacts, data or shard size differ)",
                    "use another --out folder",
                )
        elif resume and self.dir.exists() and any(self.dir.iterdir()):
            raise UsageError(
                f"{self.dir} is not an eval --out folder (no run.json)", "pass the --out folder of the interrupted run"
            )
        try:
            (self.dir / "shards").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(
                f"cannot write shards into {self.dir} ({e.strerror})", "pass a writable --out folder"
            ) from None
        from ..artifact import _alive

        for partial in (self.dir / "shards").glob(".*.tmp-*"):  # a shard being written when its run was killed
            pid = partial.name.rsplit(".tmp-", 1)[1].split(".")[0]
            if not (pid.isdigit() and _alive(int(pid))):  # another driver still writing its own is left alone
                partial.unlink(missing_ok=True)
        if not run.exists():
            tmp = run.with_name(f".run.json.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(fingerprint, indent=1))
            os.replace(tmp, run)

    def path(self, start: int, stop: int) -> Path:
        return self.dir / "shards" / f"{start:09d}-{stop:09d}.npz"

    def load(self, start: int, stop: int, keys: set[str], width: int | None = None) -> dict[str, np.ndarray] | None:
        """A finished shard, or None (missing, unreadable or not this run's keys and length: it is run again).

        Each array is ``[stop - start, width]`` int32 (Judge.run; ``width`` defaults to :func:`keys_width`). A
        shard of the right keys and length but another width or type is refused: it was not written by this run
        (its run.json matched), and would not fit the arrays it is copied into. Headers are checked before any
        array is read, so a shard claiming a huge shape allocates nothing."""
        path = self.path(start, stop) if self.dir is not None else None
        if path is None or not path.exists():
            return None
        fix = f"delete {path} (that shard is run again) or drop --resume"
        size, most = check_regular(path, "eval shard", fix).st_size, len(keys) * ((stop - start) * 5 * 4 + 4096)
        if size > most:  # np.savez of this run's arrays: 4 bytes a class index, a few hundred bytes of headers
            raise UsageError(f"eval shard {path} is {size:,} bytes, more than a shard of this run ({most:,})", fix)
        try:
            with open(path, "rb") as f:  # np.load reads anything else as a bare .npy: no `with`, no keys
                if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
                    raise ValueError("not an .npz")
            with np.load(path, allow_pickle=False) as z:  # our own arrays: no pickle, ever
                shapes = {k: _npy_header(z.zip, f"{k}.npy") for k in z.files}
                if set(shapes) != keys or any(shape[:1] != (stop - start,) for shape, _ in shapes.values()):
                    arrays = None
                else:
                    _check_width(path, shapes, stop - start, keys_width(keys) if width is None else width, fix)
                    arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            arrays = None
        if arrays is None:
            path.unlink(missing_ok=True)
            return None
        return arrays

    def save(self, start: int, stop: int, arrays: dict[str, np.ndarray]) -> None:
        if self.dir is None:
            return
        final = self.path(start, stop)
        tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, final)


def keys_width(keys) -> int:
    """The top-k columns of a shard of these keys: min(5, classes), the classes read from the reference keys
    (``ref:<model>:<checkpoint>:<classes>``, evaluate.py)."""
    classes = [k.rsplit(":", 1)[1] for k in keys if k.startswith("ref:")]
    return min(5, *(int(c) for c in classes if c.isdigit()), 5)


def _npy_header(archive: zipfile.ZipFile, name: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of one array of an .npz, from its header alone."""
    from numpy.lib import format as npy

    with archive.open(name) as f:
        version = npy.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format {version}")
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


def _check_width(path: Path, shapes: dict, n: int, width: int, fix: str) -> None:
    for key, (shape, dtype) in sorted(shapes.items()):
        if shape != (n, width) or dtype != np.int32:
            raise UsageError(
                f"eval shard {path} holds {key} as {dtype} of shape {list(shape)}, and this run's shards hold int32 "
                f"of shape [{n}, {width}] (top-{width} classes per image): it is not this run's",
                fix,
            )


def shards(total: int, size: int = SHARD) -> list[tuple[int, int]]:
    return [(a, min(a + size, total)) for a in range(0, total, size)]


def run_local(spec: JudgeSpec, todo, store: ShardStore, on_shard) -> dict:
    judge = Judge(spec)
    for start, stop in todo:
        arrays = judge.run(start, stop)
        store.save(start, stop, arrays)
        on_shard(start, stop, arrays)
    return {"name": "local", "workers": 1, "restarts": 0}


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--engine ray needs Ray", "pip install 'mvit-deploy[cluster]' (ray) on this machine and on every worker"
        ) from None
    return ray


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _worker_cause(text: str) -> str:
    """The exception a worker raised, out of the traceback text Ray relays (its last ``SomeError: message`` line)."""
    for line in reversed(text.splitlines()):
        m = re.match(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit)): (.+)$", line)
        if m:
            return m.group(2).strip()[:300]
    return (text.strip().splitlines() or ["unknown"])[0][:300]


def run_ray(
    spec: JudgeSpec,
    todo,
    store: ShardStore,
    on_shard,
    address: str | None,
    workers: int | None,
    threads: int,
    on_step,
) -> dict:
    """Shards over Ray actors: each loads the artifacts once; a dead actor is replaced and its shard rerun."""
    import logging

    ray = import_ray()
    ours = not ray.is_initialized()  # a caller's own Ray session is used as it is, and left running
    if ours:
        on_step("starting Ray" if address in (None, "local") else f"connecting to Ray at {address}")
        try:
            if address in (None, "local"):  # Ray counts this machine's CPUs itself (container limits included)
                ray.init(
                    address="local",
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                    configure_logging=False,
                )
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
            raise UsageError(
                f"cannot reach the Ray cluster at {address or 'local'}: {_first_line(e)}",
                "start one (`ray start --head`) or pass --address auto | HOST:PORT | ray://HOST:10001",
            ) from None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        per_worker = max(1, threads)
        if per_worker > cpus:
            raise UsageError(
                f"--threads {per_worker} per worker, and the Ray cluster has {cpus} CPU(s)",
                f"use --threads {max(1, cpus)} or fewer",
            )
        if workers is not None and workers * per_worker > cpus:
            raise UsageError(
                f"--workers {workers} x --threads {per_worker} needs {workers * per_worker} CPUs, the Ray cluster has "
                f"{cpus}",
                f"use --workers {cpus // per_worker} or fewer (or fewer --threads)",
            )
        n = max(1, min(workers or cpus // per_worker, len(todo)))
        # Ray starts workers at niceness 15: its own daemons and the driver then preempt them, and a
        # worker's intra-op threads wait at every barrier for the one preempted: the PyTorch reference
        # ran 35 % slower in a 2-thread worker than in-process (3.7 -> 5.0 s per shard, 2 cores).
        # At niceness 0 it runs at the in-process rate (benchmarks/eval_scale.py).
        remote_judge = ray.remote(
            num_cpus=per_worker, max_restarts=0, runtime_env={"env_vars": {"RAY_worker_niceness": "0"}}
        )(Judge)
        actors = [remote_judge.remote(spec) for _ in range(n)]
        queue, pending, restarts = deque(todo), {}, 0

        def submit(i: int) -> None:
            if queue:
                shard = queue.popleft()
                pending[actors[i].run.remote(*shard)] = (i, shard)

        for i in range(n):
            submit(i)
        on_step(f"{n} Ray worker(s) loading the artifacts")
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i, shard = pending.pop(ref)
            try:
                arrays = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                if getattr(
                    e, "actor_init_failed", False
                ):  # the judge could not load on the worker: an input error, not a crash
                    raise UsageError(
                        "a Ray worker could not load the artifacts: "
                        f"{_worker_cause(str(getattr(e, 'error_msg', None) or e))}",
                        "every worker needs mvit-deploy[export] (the PyTorch reference) and the same paths to "
                        "artifacts and data",
                    ) from None
                restarts += 1  # the worker died (killed, out of memory, node lost): replace it, rerun its shard
                if restarts > MAX_RESTARTS_PER_WORKER * n:
                    raise UsageError(
                        f"Ray workers died {restarts} times",
                        "look at the workers' logs (`ray logs`); memory per worker?",
                    ) from None
                actors[i] = remote_judge.remote(spec)
                queue.appendleft(shard)
                submit(i)
                continue
            except ray.exceptions.RayTaskError as e:  # the judge failed on a shard (an unreadable image, ...)
                raise UsageError(
                    f"a Ray worker failed on images {shard[0]}..{shard[1] - 1}: "
                    f"{_worker_cause(str(getattr(e, 'cause', None) or e))}",
                    "fix the input; finished shards are kept with --out DIR, continue with --resume",
                ) from None
            store.save(*shard, arrays)
            on_shard(*shard, arrays)
            submit(i)
        return {"name": "ray", "workers": n, "restarts": restarts, "address": address or "local"}
    finally:
        if ours:
            ray.shutdown()
