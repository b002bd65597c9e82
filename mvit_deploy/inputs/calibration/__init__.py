"""The shipped photo set: real photographs, each with source and license in ``photos/manifest.json``.

Photos are split into ``calib`` (calibration, BatchNorm re-estimation) and ``eval``
(parity and held-out checks) so the two never overlap. Crops are drawn
deterministically, so every run sees the same tensors. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..images import image_files, load_image
from ..preprocess import Preprocessing, preprocess, resize_center_crop, to_input

PHOTO_DIR = Path(__file__).parent / "photos"


@dataclass(frozen=True)
class Photo:
    path: Path
    split: str
    license: str
    description: str


def shipped_photos(split: str | None = None) -> list[Photo]:
    listing = json.loads((PHOTO_DIR / "manifest.json").read_text())  # the photos' list, not an artifact manifest
    photos = [Photo(PHOTO_DIR / p["file"], p["split"], p["license"], p["description"]) for p in listing["photos"]]
    return [p for p in photos if split is None or p.split == split]


def _random_crop(image, size: int, rng: np.random.Generator, pre: Preprocessing):
    """A crop of 50-100 % of the short side at a seeded position, resized to ``size``."""
    w, h = image.size
    side = int(min(w, h) * rng.uniform(0.5, 1.0))
    left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    crop = image.crop((left, top, left + side, top + side))
    return crop.resize((size, size), resample=3 if pre.interpolation == "bicubic" else 2)


def photo_inputs(
    split: str = "eval",
    size: int = 256,
    pre: Preprocessing = Preprocessing(),  # noqa: B008 (a frozen dataclass: immutable, safe to share)
    crops_per_photo: int = 4,
    seed: int = 0,
    images: str | Path | None = None,
    limit: int | None = None,
) -> np.ndarray:
    """float32 [N, 3, size, size]: per photo its centre crop, then seeded random crops.

    ``images`` (a directory) replaces the shipped photos of ``split``.
    """
    paths = image_files(images) if images is not None else [p.path for p in shipped_photos(split)]
    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        image = load_image(path)
        out.append(preprocess(image, size, pre))
        for _ in range(crops_per_photo - 1):
            out.append(to_input(_random_crop(image, size, rng, pre), pre))
    batch = np.stack(out)
    return batch[:limit] if limit else batch


__all__ = ["PHOTO_DIR", "Photo", "photo_inputs", "resize_center_crop", "shipped_photos"]
