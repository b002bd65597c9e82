"""Image preprocessing in numpy + Pillow (no torch: boards use it too).

A wrong channel order is the classic silent failure when moving MobileViT weights
between ecosystems, so the order is part of every checkpoint source's record.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .images import MAX_PIXELS, load_image


@dataclass(frozen=True)
class Preprocessing:
    """How a checkpoint's training pipeline turned a photo into its input tensor."""

    channel_order: str = "RGB"  # "RGB" or "BGR": the order of the 3 input channels
    crop_pct: float = 256 / 288  # resize shortest edge to crop / crop_pct, then center-crop
    interpolation: str = "bilinear"  # "bilinear" or "bicubic"
    scale: float = 1 / 255  # pixel value (0..255) * scale
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # subtracted after scaling, in input channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        """Refuse values no pipeline has, naming them: a std of 0 makes every input infinite, and the model's
        NaN logits would then be blamed on its weights."""
        problems = []
        if self.channel_order not in ("RGB", "BGR"):
            problems.append(f"channel_order {self.channel_order!r} is not RGB or BGR")
        if self.interpolation not in _RESAMPLE:
            problems.append(f"interpolation {self.interpolation!r} is not {' or '.join(_RESAMPLE)}")
        if not (_is_number(self.crop_pct) and 0 < self.crop_pct <= 1):
            problems.append(f"crop_pct {self.crop_pct!r} is not in (0, 1]")
        if not (_is_number(self.scale) and 0 < self.scale < math.inf):
            problems.append(f"scale {self.scale!r} is not a finite number above 0")
        for name, values, positive in (("mean", self.mean, False), ("std", self.std, True)):
            ok = isinstance(values, (tuple, list)) and len(values) == 3 and all(_is_number(v) for v in values)
            if not (ok and all(math.isfinite(v) and (v > 0 or not positive) for v in values)):
                shown = list(values) if isinstance(values, (tuple, list)) else values
                what = "3 finite numbers above 0 (each channel is divided by it)" if positive else "3 finite numbers"
                problems.append(f"{name} {shown!r} is not {what}")
        if problems:
            raise UsageError(
                f"the preprocessing {'; '.join(problems)}",
                "correct it where it comes from: the manifest's input.preprocessing, or the checkpoint's config",
            )

    def to_dict(self) -> dict:
        return asdict(self)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_RESAMPLE = {"bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values


def resize_center_crop(image, size: int, pre: Preprocessing):
    """Resize the shortest edge to ``round(size / crop_pct)``, then crop the centre ``size`` x ``size``."""
    short = round(size / pre.crop_pct)
    w, h = image.size
    if w <= h:
        nw, nh = short, max(short, round(h * short / w))
    else:
        nw, nh = max(short, round(w * short / h)), short
    left, top = (nw - size) // 2, (nh - size) // 2  # the crop, in resized pixels
    resample = _RESAMPLE[pre.interpolation]
    if nw * nh <= MAX_PIXELS:  # every photo: the whole resize, bit for bit as HF's and timm's processors do it
        return image.resize((nw, nh), resample=resample).crop((left, top, left + size, top + size))
    # A shape no photo has (16 x 5,000,000 px at 256: 288 x 90,000,000 resized, 78 GB): resample the crop only.
    return _resize_crop_only(image, (nw, nh), (left, top), size, resample)


_SUPPORT = {2: 1.0, 3: 2.0}  # filter radius, in output pixels, of Pillow's bilinear and bicubic


def _resize_crop_only(image, resized: tuple[int, int], corner: tuple[int, int], size: int, resample: int):
    """The ``size`` x ``size`` crop at ``corner`` of ``image`` resized to ``resized``, computing only the crop.

    Pillow's ``box`` gives each output pixel the filter centre it has in the whole resize; the source
    is first cut to the band the filter reads, so the box (which Pillow holds as float32) is small
    and exact enough. Pillow may order its two passes differently for the smaller image, so a pixel
    can differ from the whole resize by a level or two (tests/test_bad_images.py bounds it).
    """
    (w, h), (nw, nh), (left, top) = image.size, resized, corner
    sx, sy = w / nw, h / nh  # source pixels per resized pixel
    x0, y0, x1, y1 = left * sx, top * sy, (left + size) * sx, (top + size) * sy
    mx = math.ceil(_SUPPORT[resample] * max(sx, 1.0)) + 1  # source pixels the filter reaches past the box
    my = math.ceil(_SUPPORT[resample] * max(sy, 1.0)) + 1
    bx, by = max(0, math.floor(x0) - mx), max(0, math.floor(y0) - my)
    band = image.crop((bx, by, min(w, math.ceil(x1) + mx), min(h, math.ceil(y1) + my)))
    return band.resize((size, size), resample=resample, box=(x0 - bx, y0 - by, x1 - bx, y1 - by))


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
    if image.mode != "RGB":  # convert() copies even an RGB image: 0.27 GB at the pixel limit
        image = image.convert("RGB")
    return to_input(resize_center_crop(image, size, pre), pre)
