"""Write mvit_deploy/inputs/datasets/fashion_mnist_subset.npz from Debian's dataset-fashion-mnist.

1,000 test images (100 per class, seeded) for offline ``eval`` and parity, and 256 training
images (class-balanced, seeded) for int8 calibration; the indices into the original splits
are stored beside them. Fashion-MNIST: Copyright (c) 2017 Zalando SE, MIT license.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mvit_deploy.inputs.datasets.fashion_mnist import SUBSET, load_fashion_mnist  # noqa: E402


def balanced(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return rng.permutation(np.concatenate(picks))


rng = np.random.default_rng(2026)
test_x, test_y = load_fashion_mnist("test")
train_x, train_y = load_fashion_mnist("train")
ti, ci = balanced(test_y, 100, rng), balanced(train_y, 26, rng)[:256]
np.savez_compressed(
    SUBSET,
    images=test_x[ti],
    labels=test_y[ti].astype(np.uint8),
    index=ti.astype(np.int32),
    calib_images=train_x[ci],
    calib_labels=train_y[ci].astype(np.uint8),
    calib_index=ci.astype(np.int32),
)
print(f"wrote {SUBSET} ({SUBSET.stat().st_size / 1e6:.2f} MB)")
