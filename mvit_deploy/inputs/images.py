"""The one door for image files: every command (predict, export's calibration, parity, eval) opens them here.

One rule per kind of file, so the same picture gives the same tensor whatever its encoding:
- 16-bit greyscale (PNG/TIFF modes ``I;16*`` and ``I``): 0..65535 scaled to 0..255 (divided by
  257), never clipped — a 16-bit image decodes to the same picture as its 8-bit version.
- CMYK and YCbCr: converted to RGB by Pillow.
- Alpha (``RGBA``, ``LA``, ``PA``, a palette with a transparent colour): composited on WHITE,
  the background a photo viewer shows; palette and 1-bit images are expanded to RGB.
- Animated GIF / WebP / PNG: the first frame only.
- EXIF orientation is applied, so a phone photo is classified upright.
- Refused by name: more than ``MAX_PIXELS`` pixels (a decompression bomb), fewer than
  ``MIN_SIDE`` pixels on a side (nothing to classify: upscaling 4 px invents the picture),
  float (``F``) images, anything but a regular file (a FIFO would block ``open`` forever), and
  anything Pillow cannot decode. Both size checks read the header only, before any pixel is decoded.
"""

from __future__ import annotations

from pathlib import Path

from ..device.files import check_regular
from ..errors import UsageError

# Read by folder scanning and by the single-file loader alike.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
MIN_SIDE = 16  # pixels; below this an image is refused, never upscaled
MAX_PIXELS = 89_478_485  # Pillow's own default bomb limit (a 0.25 GB RGB image), stated here
BACKGROUND = (255, 255, 255)  # transparent pixels become white


def _open(path: Path):
    """Open ``path`` lazily (headers only) after the checks every reader needs; the caller closes it."""
    import re
    import warnings

    from PIL import Image, UnidentifiedImageError

    check_regular(path, "image", "pass an image file (JPEG, PNG, ...)")  # before open(): a FIFO blocks it
    too_large = "downscale it first"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the numbers
            im = Image.open(path)
    except Image.DecompressionBombError as e:  # above twice Pillow's limit, refused before the size is returned
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        count = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
        raise UsageError(
            f"image {path} is too large to decode safely: {count}, the limit is {MAX_PIXELS:,}", too_large
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UsageError(f"cannot read image {path}: {e}", "pass a JPEG, PNG, BMP, WebP, GIF or TIFF file") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise UsageError(
            f"image {path} is too large to decode safely: {w} x {h} = {w * h:,} pixels, the limit is {MAX_PIXELS:,}",
            too_large,
        )
    if min(w, h) < MIN_SIDE:
        im.close()
        raise UsageError(
            f"image {path} is {w} x {h} pixels, smaller than {MIN_SIDE} on a side",
            f"pass an image at least {MIN_SIDE} x {MIN_SIDE}",
        )
    return im


def check_image(path: str | Path) -> None:
    """Cheap check that ``path`` is an image we can load: headers, size and format, without decoding the pixels."""
    path = Path(path)
    im = _open(path)
    try:
        im.verify()  # PNG: chunk CRCs; other formats: the header
    except Exception as e:
        raise UsageError(f"cannot read image {path}: {e}", "re-save it, or remove it from the folder") from None
    finally:
        im.close()


def load_image(path: str | Path):
    """Open an image file as an RGB PIL image by the rules in this module's docstring."""
    path = Path(path)
    im = _open(path)
    try:
        im.seek(0)  # animated: the first frame
        im.load()
        return to_rgb(im, path)
    except UsageError:
        raise
    except Exception as e:  # a header that promised more than the file holds
        raise UsageError(f"cannot read image {path}: {e}", "re-save it, or pass another file") from None
    finally:
        im.close()


def to_rgb(im, path: Path | str = "image"):
    """A decoded PIL image of any mode -> RGB (EXIF-upright, 16 bit scaled, alpha on white)."""
    import numpy as np
    from PIL import Image, ImageOps

    if im.getexif().get(0x0112, 1) != 1:  # Orientation: exif_transpose copies even an upright image
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(im, dtype=np.float64)  # 16-bit greyscale, whatever the byte order
        im = Image.fromarray(np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        raise UsageError(
            f"image {path} holds floating-point pixels (mode F), which have no agreed range", "save it as 8- or 16-bit"
        )
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("PA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif im.mode in ("L", "1") and "transparency" in im.info:
        im = im.convert("LA")
    if im.mode in ("LA", "RGBA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def image_files(directory: str | Path, check: bool = False) -> list[Path]:
    """Image files in a user's folder (sorted, hidden ones skipped), with a one-line error when there are none.

    ``check``: also open every file's headers (``check_image``), so a bad file is refused by
    name before any model loads.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory", "pass a folder of JPEG/PNG images")
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    if not files:
        raise UsageError(f"no images in {directory}", f"put {', '.join(IMAGE_SUFFIXES)} files there")
    if check:
        for f in files:
            check_image(f)
    return files


__all__ = [
    "BACKGROUND",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "check_image",
    "image_files",
    "load_image",
    "to_rgb",
]
