"""Class labels (ImageNet-1k: WordNet synset id and names, in the index order of the checkpoints)."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def imagenet1k() -> tuple[tuple[str, str], ...]:
    """(synset, names) for class 0..999."""
    lines = (Path(__file__).parent / "imagenet1k.tsv").read_text().splitlines()
    return tuple(tuple(line.split("\t", 1)) for line in lines)


def class_names(num_classes: int) -> list[str]:
    """Human-readable names when the head is ImageNet-1k, else ``class_<i>``."""
    if num_classes == 1000:
        return [names.split(",")[0] for _, names in imagenet1k()]
    return [f"class_{i}" for i in range(num_classes)]


def unique_class_names(num_classes: int) -> list[str]:
    """Like :func:`class_names`, but a name shared by two classes ("crane", "maillot") gets its synset id."""
    names = class_names(num_classes)
    if num_classes != 1000:
        return names
    seen = {n: names.count(n) for n in names}
    return [f"{n} ({imagenet1k()[i][0]})" if seen[n] > 1 else n for i, n in enumerate(names)]
