"""Labeled evaluation: top-1 / top-5 of the PyTorch reference and of an artifact, side by side.

Data layouts (ImageNet-style):
- ``DIR/<synset>/*.jpg`` with WordNet synset folder names (n01440764, ...), or
- ``DIR/<class index>/*.jpg`` with integer folder names, or
- any images plus ``--labels FILE``: lines ``relative/path.jpg<TAB or comma>label`` where the
  label is a class index or a synset id.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..artifact import Manifest
from ..errors import UsageError, at_least
from ..inputs.images import image_files
from ..inputs.labels import imagenet1k


def _class_index(label: str, num_classes: int) -> int:
    label = label.strip()
    if re.fullmatch(r"\d+", label):
        index = int(label)
    elif re.fullmatch(r"n\d{8}", label):
        synsets = {s: i for i, (s, _) in enumerate(imagenet1k())}
        if label not in synsets:
            raise UsageError(f"synset {label} is not an ImageNet-1k class", "use ImageNet-1k synsets or class indices")
        index = synsets[label]
    else:
        raise UsageError(
            f"label {label!r} is neither a class index nor a synset id", "name folders n01440764-style or 0..999"
        )
    if not 0 <= index < num_classes:
        raise UsageError(f"class index {index} is outside 0..{num_classes - 1}", "check the labels")
    return index


# A `path<TAB>label` line per image: ImageNet's 1.28 M training images take 60 MB.
MAX_LABELS_BYTES = 256 << 20
LABELS_FIX = "write one `relative/path.jpg<TAB>label` line per image (label: a class index or a synset id)"


def read_labels(labels: str | Path, data: Path, num_classes: int) -> list[tuple[Path, int]]:
    """(image under ``data``, class index) per line of a ``--labels`` file, every line and image checked: a bad
    one is refused naming the file and line, before any model loads."""
    from ..device.files import read_bytes
    from ..inputs.images import check_image

    raw = read_bytes(labels, "labels file", LABELS_FIX, MAX_LABELS_BYTES)  # decoded here, to name the line
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UsageError(
            f"labels file {labels} line {line} is not UTF-8 text (byte {e.start} is {raw[e.start]:#04x})",
            "save the file as UTF-8",
        ) from None
    out = []
    for number, line in enumerate(text.split("\n"), 1):  # numbered as an editor does (splitlines also splits at \f)
        line = line.removesuffix("\r")
        if not line.strip() or line.startswith("#"):
            continue
        where = f"labels file {labels} line {number}"
        parts = re.split(r"[\t,]", line, maxsplit=1)
        if len(parts) != 2 or not parts[0].strip():
            raise UsageError(f"{where} ({line[:60]!r}) has no tab or comma between a path and a label", LABELS_FIX)
        try:
            index = _class_index(parts[1], num_classes)
        except UsageError as e:
            label_fix = f"label each image with a class index 0..{num_classes - 1} or an ImageNet-1k synset id"
            raise UsageError(f"{where}: {e.problem}", label_fix) from None
        try:
            check_image(data / parts[0].strip())  # a missing or broken image is found now, not after the models load
        except UsageError as e:
            raise UsageError(f"{where}: {e.problem}", f"{e.fix}; paths are relative to --data {data}") from None
        out.append((data / parts[0].strip(), index))
    if not out:
        raise UsageError(f"labels file {labels} has no entries", LABELS_FIX)
    return out


def labeled_images(data: str | Path, labels: str | Path | None, num_classes: int) -> list[tuple[Path, int]]:
    data = Path(data)
    if labels is not None:
        return read_labels(labels, data, num_classes)
    return [(f, _class_index(f.parent.name, num_classes)) for f in image_files(data, check=True)]


@dataclass
class EvalRow:
    artifact: str
    target: str
    precision: str
    reference: dict[str, float]
    artifact_metrics: dict[str, float]
    drop_points: float  # reference top-1 minus artifact top-1, in percentage points
    drop_ci95: tuple[float, float]  # paired 95 % interval of the drop
    top1_agreement: float
    bound: dict | None  # tolerances: accuracy drop allowed for this precision
    passed: bool
    flipped: int = 0  # samples whose top-1 differs from the reference's
    mcnemar_p: float | None = None  # exact McNemar test on the discordant pairs: is the change more than noise?
    noise: str = ""  # "within noise" (p >= 0.05) or "significant"
    # per sample: top-5 class indices of the artifact ("top5": [N, 5] array), for a later diff
    predictions: dict | None = None


@dataclass
class EvalReport:
    data: str
    n_images: int
    rows: list[EvalRow]
    labels: np.ndarray | None = None  # per sample
    references: dict[str, np.ndarray] | None = None  # per reference (model:checkpoint:classes): per-sample top-5 [N, 5]
    batch: int | None = None
    engine: dict | None = None  # {name, workers, restarts, shards, resumed[, address]}

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self, arrays=lambda a: a.tolist()) -> dict:
        """The report as JSON-ready data; ``arrays`` turns each per-sample array into what goes in its place."""
        from ..metrics import finite_or_none

        rows = []
        for r in self.rows:
            row = asdict(replace(r, predictions=None))  # asdict would deep-copy the arrays
            if r.predictions is not None:
                row["predictions"] = {**r.predictions, "top5": arrays(r.predictions["top5"])}
            rows.append(row)
        # one image has no confidence interval: (-inf, inf) becomes null
        out = finite_or_none(
            {
                "data": self.data,
                "n_images": self.n_images,
                "batch": self.batch,
                "engine": self.engine,
                "passed": self.passed,
                "rows": rows,
            }
        )
        if self.labels is not None:
            out["samples"] = {
                "labels": arrays(self.labels),
                "references": {k: arrays(v) for k, v in self.references.items()},
            }
        return out

    def write_json(self, stream, chunk: int = 4096) -> None:
        """``json.dumps(self.to_dict())``, written with the per-sample arrays streamed ``chunk`` rows at a
        time: a 50,000-image, 30-artifact run never holds its predictions as Python lists."""
        import uuid

        token, arrays = uuid.uuid4().hex, []

        def placeholder(a: np.ndarray) -> str:
            arrays.append(a)
            return f"{token}-{len(arrays) - 1}"

        text = json.dumps(self.to_dict(arrays=placeholder), allow_nan=False)
        pieces = text.split(f'"{token}-')
        stream.write(pieces[0])
        for piece in pieces[1:]:
            index, rest = piece.split('"', 1)
            a = arrays[int(index)]
            stream.write("[")
            for start in range(0, len(a), chunk):
                stream.write((", " if start else "") + json.dumps(a[start : start + chunk].tolist())[1:-1])
            stream.write("]" + rest)


FASHION_DATA = ("fashion-mnist", "fashion-mnist:test", "fashion-mnist:subset")
# Images decoded and run per step. Measured (2026-11-24, `eval` of the shipped Fashion XXS exported at
# 256 px, ONNX, 2 threads, 2,000 test images, two runs): batch 8: 34.8 / 36.7 images/s, peak RSS 452 / 464 MB;
# 32: 50.8 / 47.9 images/s, 494 / 504 MB; 128: 38.5 / 36.4 images/s, 615 / 628 MB. 200 images at 32: 493 MB,
# so memory does not grow with the set (holding 2,000 inputs at once would add 1.57 GB).
DEFAULT_BATCH = 32


@dataclass
class LabeledSet:
    """A labeled set decoded on demand: ``batches`` yields float32 [b, 3, S, S] and never holds more."""

    what: str
    targets: np.ndarray  # [N] class indices
    load: Callable[[int, int], np.ndarray]  # (start, stop) -> inputs of those samples
    fingerprint: str = ""  # sha256 of what the samples are (paths or arrays, and labels): --resume checks it

    def __len__(self) -> int:
        return len(self.targets)

    def batches(self, batch: int):
        for start in range(0, len(self), batch):
            stop = min(start + batch, len(self))
            yield start, self.load(start, stop), self.targets[start:stop]


def labeled_set(manifest: Manifest, data, labels=None, n: int | None = None) -> LabeledSet:
    """The labeled images of ``--data``, decoded lazily.

    ``data`` is a folder (see the module docstring) or ``fashion-mnist[:test|:subset]``; None
    means the artifact's own domain: the full Fashion-MNIST test set when Debian's package is
    installed, else the 1,000 shipped test images.
    """
    from ..inputs.datasets import fashion_mnist
    from ..inputs.preprocess import preprocess
    from .parity import manifest_preprocessing

    if n is not None and n < 1:
        raise UsageError(f"--n {n} is not a positive number of images", "use e.g. --n 100, or drop --n")
    pre, size = manifest_preprocessing(manifest), manifest.input.size
    if data is None or data in FASHION_DATA:
        if labels is not None:
            raise UsageError("--labels names images under --data, but no --data folder was given", "pass --data DIR")
        if manifest.domain != "fashion-mnist" and data is None:
            raise UsageError(
                "--data is needed for a model of the photo domain",
                "pass a folder of labeled images (see `eval --help`)",
            )
        split = "subset" if data == "fashion-mnist:subset" else "test"
        if data is None and fashion_mnist.find_dir() is None:
            split = "subset"
        images, targets = fashion_mnist.load_fashion_mnist(split)  # uint8 28x28: 7.8 MB for all 10,000
        images, targets = images[:n], targets[:n]
        what = (
            "Fashion-MNIST test set"
            if split == "test"
            else "Fashion-MNIST shipped test subset (apt-get install dataset-fashion-mnist for all 10,000)"
        )
        digest = hashlib.sha256(images.tobytes() + targets.astype(np.int64).tobytes()).hexdigest()
        return LabeledSet(
            f"{what}, {len(targets)} images",
            targets,
            lambda a, b: fashion_mnist.to_model_inputs(images[a:b], size, pre),
            digest,
        )
    pairs = labeled_images(data, labels, manifest.output.classes)[:n]
    paths = [p for p, _ in pairs]
    digest = hashlib.sha256("\n".join(f"{Path(p).resolve()}\t{t}" for p, t in pairs).encode()).hexdigest()
    return LabeledSet(
        f"{data}, {len(pairs)} images",
        np.array([t for _, t in pairs]),
        lambda a, b: np.stack([preprocess(p, size, pre) for p in paths[a:b]]),
        digest,
    )


def labeled_inputs(manifest: Manifest, data, labels=None, n: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(inputs [N, 3, S, S], class indices [N], what they are): the whole set at once (small sets only)."""
    ls = labeled_set(manifest, data, labels, n)
    return ls.load(0, len(ls)), ls.targets, ls.what


def _drop_ci95(ref_hit: np.ndarray, art_hit: np.ndarray) -> tuple[float, float]:
    d = (ref_hit.astype(np.float64) - art_hit) * 100
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("inf")
    return float(d.mean() - half), float(d.mean() + half)


def mcnemar_exact(ref_hit: np.ndarray, art_hit: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: of the samples exactly one of the two gets right, is the split
    further from 50/50 than chance? (A 0.2-point loss on 1,000 images is 2 samples: noise.)"""
    b = int(np.count_nonzero(ref_hit & ~art_hit))
    c = int(np.count_nonzero(~ref_hit & art_hit))
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    log_half = n * math.log(0.5)
    tail = sum(
        math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half) for i in range(k + 1)
    )
    return min(1.0, 2 * tail)


def _accuracy(top5: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return {
        "top1": float(np.mean(top5[:, 0] == targets)),
        "top5": float(np.mean((top5 == targets[:, None]).any(axis=1))),
    }


@dataclass(frozen=True)
class EvalOptions:
    """How ``evaluate`` runs: which images, how many at once, where (the CLI builds one from its flags)."""

    labels: str | None = None  # a `path<TAB>label` file instead of folder names
    n: int | None = None  # only the first n images
    threads: int | None = None  # per runtime: None = 2 in-process, 1 per Ray worker
    weights: str | None = None  # the reference checkpoint, if it moved since export
    batch: int | None = None  # images decoded per step (None: DEFAULT_BATCH)
    engine: str = "local"  # local | ray
    address: str | None = None  # ray: the cluster
    workers: int | None = None  # ray: workers (default: the cluster's CPUs / threads)
    out_dir: str | None = None  # keep each finished shard here
    resume: bool = False  # run only the shards out_dir lacks


def evaluate(
    artifacts,
    data=None,
    options: EvalOptions | None = None,
    on_step=lambda s: None,
    on_count=lambda done, total: None,
    **fields,
) -> EvalReport:
    """Top-1/top-5 of each artifact and of its PyTorch reference on one labeled set, streamed in shards.

    Memory does not grow with the number of images: each batch is decoded, run through every
    reference and every artifact, and only its top-5 indices are kept. The reference runs once
    per (checkpoint, input size, preprocessing), however many artifacts were exported from it;
    the set must be the same for every artifact (one domain, one size). ``engine`` "ray" shards
    the set over a Ray cluster (eval_shards.py); ``out_dir`` keeps finished shards, ``resume``
    reuses them. ``fields``: EvalOptions fields by keyword (``evaluate(a, data, n=100)``).
    """
    from ..artifact import read_manifest
    from ..models.families import rule_for
    from .eval_shards import SHARD, JudgeSpec, ShardStore, import_ray, run_local, run_ray, shards, top_width
    from .parity import check_artifact_contents, check_reference_weights, manifest_family

    o = replace(options or EvalOptions(), **fields)
    labels, n, threads, weights, engine = o.labels, o.n, o.threads, o.weights, o.engine
    batch = DEFAULT_BATCH if o.batch is None else o.batch
    for flag, value, minimum, example in (
        ("--n", n, 1, 100),
        ("--threads", threads, 1, 2),
        ("--workers", o.workers, 1, 2),
    ):
        at_least(flag, value, minimum, example)
    if batch < 1:
        raise UsageError(f"--batch {batch} is not a positive number of images", f"use e.g. --batch {DEFAULT_BATCH}")
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine {engine!r} is not an engine", "use local or ray")
    if engine == "ray":
        import_ray()  # missing Ray is said before any model loads
    # absolute paths: Ray workers on other nodes do not share this process's working directory
    artifacts = [
        str(Path(a).resolve()) for a in ([artifacts] if isinstance(artifacts, (str, Path)) else list(artifacts))
    ]
    if data is not None and data not in FASHION_DATA:
        data = str(Path(data).resolve())
    weights = None if weights is None else str(Path(weights).resolve())
    manifests = [read_manifest(a) for a in artifacts]  # every path checked before any work
    for artifact, manifest in zip(artifacts, manifests, strict=True):
        check_reference_weights(manifest, weights)
        check_artifact_contents(artifact, manifest)  # its precision picks the accuracy bound
    keys = {
        (
            m.domain,
            m.input.size,
            m.output.classes,
            json.dumps(m.input.preprocessing, sort_keys=True),
        )
        for m in manifests
    }
    if len(keys) > 1:
        raise UsageError(
            "these artifacts need different evaluation inputs (domain, size, classes or preprocessing)",
            "evaluate them in separate runs",
        )
    on_step("reading the labels")
    data_set = labeled_set(manifests[0], data, labels, n)
    total = len(data_set)
    ref_keys = [f"{m.model}:{m.checkpoint.sha256 or m.checkpoint.layout}:{m.output.classes}" for m in manifests]
    fingerprint = {
        "artifacts": [[Path(a).name, m.sha256] for a, m in zip(artifacts, manifests, strict=True)],
        "data": data_set.fingerprint,
        "n": total,
        "shard": SHARD,
    }
    store = ShardStore(o.out_dir, fingerprint, o.resume)
    width = top_width(manifests)
    ref_top5 = {key: np.full((total, width), -1, np.int32) for key in ref_keys}
    art_top5 = [np.full((total, width), -1, np.int32) for _ in artifacts]
    counted = np.zeros(
        total, np.int32
    )  # how many times each sample's result came in: exactly once, whatever the engine
    done = 0

    def on_shard(start: int, stop: int, arrays: dict) -> None:
        nonlocal done
        for key in ref_top5:
            ref_top5[key][start:stop] = arrays[f"ref:{key}"]
        for i, got in enumerate(art_top5):
            got[start:stop] = arrays[f"art:{i}"]
        counted[start:stop] += 1
        done += stop - start
        on_count(done, total)

    on_count(0, total)
    todo, resumed = [], 0
    shard_keys = {f"ref:{k}" for k in ref_keys} | {f"art:{i}" for i in range(len(artifacts))}
    for shard in shards(total):
        arrays = store.load(*shard, shard_keys)
        if arrays is None:
            todo.append(shard)
        else:
            on_shard(*shard, arrays)
            resumed += 1
    if threads is None:  # in-process 2 per runtime; on Ray one-thread workers, one per CPU (fastest measured,
        threads = 1 if engine == "ray" else 2  # benchmarks/eval_scale.py)
    spec = JudgeSpec(artifacts, [m.to_dict() for m in manifests], ref_keys, weights, threads, data_set, batch)
    if not todo:
        info = {"name": engine, "workers": 0, "restarts": 0}
    elif engine == "ray":
        info = run_ray(spec, todo, store, on_shard, o.address, o.workers, threads, on_step)
    else:
        on_step("loading the PyTorch reference and the artifacts")
        info = run_local(spec, todo, store, on_shard)
    if not (counted == 1).all():  # a bug, never an input: say so loudly
        raise RuntimeError(
            f"eval counted {int((counted == 0).sum())} samples never and {int((counted > 1).sum())} more than once"
        )
    info.update(shards=len(todo) + resumed, resumed=resumed)
    targets = data_set.targets
    rows = []
    for artifact, manifest, key, got in zip(artifacts, manifests, ref_keys, art_top5, strict=True):
        ref = ref_top5[key]
        ref_acc, art_acc = _accuracy(ref, targets), _accuracy(got, targets)
        ref_hit, art_hit = ref[:, 0] == targets, got[:, 0] == targets
        drop = (ref_acc["top1"] - art_acc["top1"]) * 100
        bound = rule_for(manifest.precision, manifest_family(manifest)).accuracy
        passed = bound is None or bound.holds(drop)
        p = mcnemar_exact(ref_hit, art_hit)
        rows.append(
            EvalRow(
                artifact=str(artifact),
                target=manifest.target,
                precision=manifest.precision,
                reference=ref_acc,
                artifact_metrics=art_acc,
                drop_points=drop,
                drop_ci95=_drop_ci95(ref_hit, art_hit),
                top1_agreement=float(np.mean(ref[:, 0] == got[:, 0])),
                bound=None
                if bound is None
                else {"metric": bound.metric, "op": bound.op, "value": bound.value, "reason": bound.reason},
                passed=passed,
                flipped=int(np.count_nonzero(ref[:, 0] != got[:, 0])),
                mcnemar_p=p,
                noise="within noise" if p >= 0.05 else "significant",
                predictions={"reference": key, "top5": got},
            )
        )
    return EvalReport(data_set.what, total, rows, targets, dict(ref_top5), batch, info)
