"""Fashion-MNIST (Zalando Research, MIT license): the task our trained reference models solve.

Debian's ``dataset-fashion-mnist`` package ships the four idx files under
``/usr/share/datasets/fashion-mnist``; a 1,000-image test subset ships inside this
package (``test_subset.npz``) so ``eval`` and the tests run offline without it.

Input pipeline of the reference models (also what ``train_reference.py`` trains on):
the 28x28 grey image is converted to RGB (the grey value in all three channels), resized
to 64x64 with Pillow's bilinear filter, scaled to [0, 1]; no mean/std. 64 px is the
smallest multiple of 32 at which every MobileViT block still sees a 2x2 patch grid.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ...errors import UsageError
from ..preprocess import Preprocessing

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_SIZE = 64
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# How the trained Fashion-MNIST models read an image (scripts/train_reference.py trains with it).
FASHION_PREPROCESSING = Preprocessing(channel_order="RGB", crop_pct=1.0, interpolation="bilinear")
SUBSET = Path(__file__).parent / "fashion_mnist_subset.npz"  # made by scripts/make_fashion_subset.py
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
_INSTALL = "apt-get install dataset-fashion-mnist (Debian/Ubuntu), or pass --data DIR holding the four idx files"


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """One idx file (gzipped or not) as a uint8 array, with its header checked."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UsageError(f"cannot read {path}: {e}", _INSTALL) from None
    if len(raw) < 4 + 4 * ndim or raw[:4] != bytes((0, 0, 8, ndim)):
        raise UsageError(f"{path} is not an idx file of rank {ndim} uint8", "re-install the dataset")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UsageError(f"{path} holds {data.size} bytes of data, its header says {shape}", "re-install the dataset")
    return data.reshape(shape)


def find_dir(data_dir: str | Path | None = None) -> Path | None:
    for d in [Path(data_dir)] if data_dir else [DEBIAN_DIR]:
        if all((d / f).is_file() or (d / f.removesuffix(".gz")).is_file() for f in _FILES["test"][:2]):
            return d
    return None


def load_fashion_mnist(split: str = "test", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` of ``split``.

    "train" / "test": the full splits from the idx files; "subset": the shipped 1,000 test
    images (100 per class); "calib": the shipped 256 training images for int8 calibration.
    """
    if split in ("subset", "calib"):
        prefix = "" if split == "subset" else "calib_"
        with np.load(SUBSET) as z:
            return z[prefix + "images"], z[prefix + "labels"].astype(np.int64)
    if split not in _FILES:
        raise UsageError(f"unknown Fashion-MNIST split {split!r}", "use train, test or subset")
    d = find_dir(data_dir)
    if d is None:
        where = data_dir or DEBIAN_DIR
        raise UsageError(f"the Fashion-MNIST idx files are not in {where}", _INSTALL)
    img_name, lab_name, n = _FILES[split]
    pick = lambda name: d / name if (d / name).is_file() else d / name.removesuffix(".gz")  # noqa: E731
    images, labels = read_idx(pick(img_name), 3), read_idx(pick(lab_name), 1)
    if len(images) != n or len(labels) != n or images.shape[1:] != (28, 28) or labels.max() >= len(CLASSES):
        raise UsageError(f"{d} does not hold the Fashion-MNIST {split} split ({len(images)} images)", _INSTALL)
    return images, labels.astype(np.int64)


def to_model_inputs(
    images: np.ndarray, size: int = FASHION_SIZE, pre: Preprocessing = FASHION_PREPROCESSING
) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 [N, 3, size, size] through the shipped pipeline (Pillow resize)."""
    from PIL import Image

    from ..preprocess import preprocess

    return np.stack([preprocess(Image.fromarray(im, "L"), size, pre) for im in images])
