"""The image domains a checkpoint can come from, one entry each (no torch here).

A domain decides what a model is checked and calibrated on, and how its classes are named:
- ``photos``: 1000-class ImageNet-style photographs (published checkpoints, the test fixture):
  parity on 64 crops of the shipped held-out photos, calibration on the shipped calib photos.
- ``fashion-mnist``: our trained reference models: parity on 128 shipped test images,
  calibration on 256 shipped training images, ``eval`` on the full test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import UsageError
from ..preprocess import Preprocessing
from . import fashion_mnist


@dataclass(frozen=True)
class Domain:
    name: str
    parity_images: int  # default parity set size: one sample is at most 1/64 of the verdict

    def named_classes(self, num_classes: int) -> list[str] | None:
        """Unique class names of a head of this size, or None when the classes have no names."""
        from ..labels import unique_class_names

        return unique_class_names(num_classes) if num_classes == 1000 else None

    def class_names(self, num_classes: int) -> list[str]:
        return self.named_classes(num_classes) or [f"class_{i}" for i in range(num_classes)]

    def parity_inputs(self, size: int, pre: Preprocessing, images: str | Path | None = None) -> np.ndarray:
        from ..calibration import photo_inputs

        if images is not None:  # the user's own folder: centre crop + 3 seeded crops per image
            return photo_inputs("eval", size, pre, crops_per_photo=4, images=images)
        return photo_inputs("eval", size, pre, crops_per_photo=16)[: self.parity_images]

    def calibration_inputs(
        self, size: int, pre: Preprocessing, images: str | Path | None = None, samples: int = 64
    ) -> np.ndarray:
        """Calibration inputs, disjoint from the parity set (shipped split, or the user's folder)."""
        from ..calibration import photo_inputs, shipped_photos
        from ..images import image_files

        if samples < 1:
            raise UsageError(f"--calib-samples {samples} is not positive", "use e.g. 64")
        n_photos = len(shipped_photos("calib")) if images is None else len(image_files(images))
        per_photo = max(1, -(-samples // n_photos))  # ceil: every photo contributes
        return photo_inputs("calib", size, pre, crops_per_photo=per_photo, seed=1, images=images, limit=samples)


@dataclass(frozen=True)
class FashionDomain(Domain):
    def named_classes(self, num_classes: int) -> list[str] | None:
        return list(fashion_mnist.CLASSES) if num_classes == len(fashion_mnist.CLASSES) else None

    def parity_inputs(self, size, pre, images=None):
        if images is not None:
            return super().parity_inputs(size, pre, images)
        x, _ = fashion_mnist.load_fashion_mnist("subset")
        return fashion_mnist.to_model_inputs(x[: self.parity_images], size, pre)

    def calibration_inputs(self, size, pre, images=None, samples=64):
        if images is not None or samples < 1:
            return super().calibration_inputs(size, pre, images, samples)
        x, _ = fashion_mnist.load_fashion_mnist("calib")
        return fashion_mnist.to_model_inputs(x[:samples], size, pre)


DOMAINS: dict[str, Domain] = {d.name: d for d in (Domain("photos", 64), FashionDomain("fashion-mnist", 128))}


def get_domain(name: str | None) -> Domain:
    try:
        return DOMAINS[name or "photos"]
    except KeyError:
        raise UsageError(
            f"unknown image domain {name!r} in the manifest", f"known: {', '.join(DOMAINS)}; re-export the artifact"
        ) from None


__all__ = ["DOMAINS", "Domain", "get_domain"]
