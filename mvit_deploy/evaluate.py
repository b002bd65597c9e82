"""Labeled evaluation: top-1 / top-5 of the PyTorch reference and of an artifact, side by side.

Data layouts (ImageNet-style):
- ``DIR/<synset>/*.jpg`` with WordNet synset folder names (n01440764, ...), or
- ``DIR/<class index>/*.jpg`` with integer folder names, or
- any images plus ``--labels FILE``: lines ``relative/path.jpg<TAB or comma>label`` where the
  label is a class index or a synset id.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .images import image_files
from .errors import UsageError
from .labels import imagenet1k


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
        raise UsageError(f"label {label!r} is neither a class index nor a synset id", "name folders n01440764-style or 0..999")
    if not 0 <= index < num_classes:
        raise UsageError(f"class index {index} is outside 0..{num_classes - 1}", "check the labels")
    return index


def labeled_images(data: str | Path, labels: str | Path | None, num_classes: int) -> list[tuple[Path, int]]:
    data = Path(data)
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise UsageError(f"labels file {labels} does not exist", "pass a file of `path<TAB>label` lines")
        out = []
        for line in labels.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                path, label = re.split(r"[\t,]", line, maxsplit=1)
                out.append((data / path.strip(), _class_index(label, num_classes)))
        if not out:
            raise UsageError(f"labels file {labels} has no entries", "one `path<TAB>label` line per image")
        return out
    return [(f, _class_index(f.parent.name, num_classes)) for f in image_files(data, check=True)]


def topk_accuracy(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    order = np.argsort(-logits, axis=1, kind="stable")
    return {
        "top1": float(np.mean(order[:, 0] == targets)),
        "top5": float(np.mean([t in row[:5] for t, row in zip(targets, order)])),
    }


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


@dataclass
class EvalReport:
    data: str
    n_images: int
    rows: list[EvalRow]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict:
        from .metrics import finite_or_none

        # one image has no confidence interval: (-inf, inf) becomes null
        return finite_or_none({"data": self.data, "n_images": self.n_images, "passed": self.passed, "rows": [asdict(r) for r in self.rows]})


FASHION_DATA = ("fashion-mnist", "fashion-mnist:test", "fashion-mnist:subset")


def labeled_inputs(manifest: dict, data, labels=None, n: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(inputs [N, 3, S, S], class indices [N], what they are) for ``--data``.

    ``data`` is a folder (see the module docstring) or ``fashion-mnist[:test|:subset]``; None
    means the artifact's own domain: the full Fashion-MNIST test set when Debian's package is
    installed, else the 1,000 shipped test images.
    """
    from .datasets import fashion_mnist
    from .parity import manifest_preprocessing
    from .preprocess import preprocess

    if n is not None and n < 1:
        raise UsageError(f"--n {n} is not a positive number of images", "use e.g. --n 100, or drop --n")
    pre, size = manifest_preprocessing(manifest), manifest["input"]["size"]
    if data is None or data in FASHION_DATA:
        if manifest.get("domain") != "fashion-mnist" and data is None:
            raise UsageError("--data is needed for a model of the photo domain", "pass a folder of labeled images (see `eval --help`)")
        split = "subset" if data == "fashion-mnist:subset" else "test"
        if data is None and fashion_mnist.find_dir() is None:
            split = "subset"
        images, targets = fashion_mnist.load_fashion_mnist(split)
        images, targets = images[:n], targets[:n]
        what = "Fashion-MNIST test set" if split == "test" else "Fashion-MNIST shipped test subset (apt-get install dataset-fashion-mnist for all 10,000)"
        return fashion_mnist.to_model_inputs(images, size, pre), targets, f"{what}, {len(targets)} images"
    pairs = labeled_images(data, labels, manifest["output"]["classes"])[:n]
    x = np.stack([preprocess(path, size, pre) for path, _ in pairs])
    return x, np.array([t for _, t in pairs]), f"{data}, {len(pairs)} images"


def _drop_ci95(ref_hit: np.ndarray, art_hit: np.ndarray) -> tuple[float, float]:
    d = (ref_hit.astype(np.float64) - art_hit) * 100
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("inf")
    return float(d.mean() - half), float(d.mean() + half)


def evaluate(artifacts, data=None, labels=None, n: int | None = None, threads: int | None = None, weights=None, on_step=lambda s: None) -> EvalReport:
    """Top-1/top-5 of each artifact and of its PyTorch reference on one labeled set.

    The reference runs once per (checkpoint, input size, preprocessing); the set must be the
    same for every artifact (one domain, one size).
    """
    from .artifact import read_manifest
    from .parity import check_reference_weights, manifest_family, reference_logits, reference_model
    from .runtimes import load_runner
    from .tolerances import rule_for

    artifacts = [artifacts] if isinstance(artifacts, (str, Path)) else list(artifacts)
    manifests = [read_manifest(a) for a in artifacts]  # every path checked before any work
    for manifest in manifests:
        check_reference_weights(manifest, weights)
    keys = {(m.get("domain"), m["input"]["size"], json.dumps(m["input"]["preprocessing"], sort_keys=True)) for m in manifests}
    if len(keys) > 1:
        raise UsageError("these artifacts need different evaluation inputs (domain, size or preprocessing)", "evaluate them in separate runs")
    on_step("reading the labeled images")
    x, targets, what = labeled_inputs(manifests[0], data, labels, n)
    references: dict[str, np.ndarray] = {}
    rows = []
    for artifact, manifest in zip(artifacts, manifests):
        ckpt = manifest["checkpoint"]
        key = f"{manifest['model']}:{ckpt.get('sha256') or ckpt['layout']}:{manifest['output']['classes']}"
        if key not in references:
            on_step(f"PyTorch reference on {len(x)} images")
            references[key] = reference_logits(reference_model(manifest, weights), x)
        ref = references[key]
        on_step(f"{Path(artifact).name} on {len(x)} images")
        got = load_runner(artifact, manifest, threads)(x)
        ref_acc, art_acc = topk_accuracy(ref, targets), topk_accuracy(got, targets)
        drop = (ref_acc["top1"] - art_acc["top1"]) * 100
        bound = rule_for(manifest["precision"], manifest_family(manifest)).accuracy
        passed = bound is None or bound.holds(drop)
        rows.append(EvalRow(
            str(artifact), manifest["target"], manifest["precision"], ref_acc, art_acc, drop,
            _drop_ci95(ref.argmax(1) == targets, got.argmax(1) == targets), float(np.mean(ref.argmax(1) == got.argmax(1))),
            None if bound is None else {"metric": bound.metric, "op": bound.op, "value": bound.value, "reason": bound.reason}, passed,
        ))
    return EvalReport(what, len(targets), rows)
