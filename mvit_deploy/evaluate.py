"""Labeled evaluation: top-1 / top-5 of the PyTorch reference and of an artifact, side by side.

Data layouts (ImageNet-style):
- ``DIR/<synset>/*.jpg`` with WordNet synset folder names (n01440764, ...), or
- ``DIR/<class index>/*.jpg`` with integer folder names, or
- any images plus ``--labels FILE``: lines ``relative/path.jpg<TAB or comma>label`` where the
  label is a class index or a synset id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calibration import IMAGE_SUFFIXES, image_files
from .errors import UsageError
from .labels import imagenet1k


@dataclass
class EvalReport:
    artifact: str
    n_images: int
    reference: dict[str, float]
    artifact_metrics: dict[str, float]


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
    files = image_files(data)
    return [(f, _class_index(f.parent.name, num_classes)) for f in files if f.suffix.lower() in IMAGE_SUFFIXES]


def topk_accuracy(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    order = np.argsort(-logits, axis=1, kind="stable")
    return {
        "top1": float(np.mean(order[:, 0] == targets)),
        "top5": float(np.mean([t in row[:5] for t, row in zip(targets, order)])),
    }


def evaluate(artifact: str | Path, data, labels=None, n: int | None = None, threads: int | None = None, weights=None) -> EvalReport:
    from .artifact import read_manifest
    from .parity import reference_logits, reference_model
    from .preprocess import Preprocessing, preprocess
    from .runtimes import load_runner

    manifest = read_manifest(artifact)
    pairs = labeled_images(data, labels, manifest["output"]["classes"])[:n]
    pre = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["input"]["preprocessing"].items()})
    x = np.stack([preprocess(path, manifest["input"]["size"], pre) for path, _ in pairs])
    targets = np.array([t for _, t in pairs])
    ref = reference_logits(reference_model(manifest, weights), x)
    got = load_runner(artifact, manifest, threads)(x)
    return EvalReport(str(artifact), len(pairs), topk_accuracy(ref, targets), topk_accuracy(got, targets))
