"""Image preprocessing in numpy + Pillow (no torch: boards use it too).

A wrong channel order is the classic silent failure when moving MobileViT weights
between ecosystems, so the order is part of every checkpoint source's record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .images import load_image


@dataclass(frozen=True)
class Preprocessing:
    """How a checkpoint's training pipeline turned a photo into its input tensor."""

    channel_order: str = "RGB"  # "RGB" or "BGR": the order of the 3 input channels
    crop_pct: float = 256 / 288  # resize shortest edge to crop / crop_pct, then center-crop
    interpolation: str = "bilinear"  # "bilinear" or "bicubic"
    scale: float = 1 / 255  # pixel value (0..255) * scale
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # subtracted after scaling, in input channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def to_dict(self) -> dict:
        return asdict(self)


_RESAMPLE = {"bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values


def resize_center_crop(image, size: int, pre: Preprocessing):
    """Resize the shortest edge to ``round(size / crop_pct)``, then crop the centre ``size`` x ``size``."""
    short = round(size / pre.crop_pct)
    w, h = image.size
    if w <= h:
        nw, nh = short, max(short, round(h * short / w))
    else:
        nw, nh = max(short, round(w * short / h)), short
    image = image.resize((nw, nh), resample=_RESAMPLE[pre.interpolation])
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_input(image, pre: Preprocessing) -> np.ndarray:
    """An RGB PIL image (already at model size) -> float32 [3, H, W] in the checkpoint's convention."""
    x = np.asarray(image, dtype=np.float32) * np.float32(pre.scale)  # [H, W, 3] RGB
    if pre.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(image, size: int, pre: Preprocessing) -> np.ndarray:
    """Path or PIL image -> float32 [3, size, size] ready for the model."""
    if isinstance(image, (str, Path)):
        image = load_image(image)
    return to_input(resize_center_crop(image.convert("RGB"), size, pre), pre)
