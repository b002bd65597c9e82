"""Classify one photo with a PyTorch MobileViT, using the checkpoint's own preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NonFiniteError
from ..inputs.preprocess import preprocess


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int = 5, domain: str = "photos") -> list[Prediction]:
    from ..inputs.datasets import get_domain

    probs = softmax(logits.astype(np.float64))
    names = get_domain(domain).class_names(len(logits))
    order = np.argsort(-logits, kind="stable")[:k]
    return [Prediction(int(i), names[i], float(probs[i])) for i in order]


def predict(image: str | Path, model, input_size: int, k: int = 5) -> list[Prediction]:
    import torch

    x = preprocess(image, input_size, model.preprocessing)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])[0].numpy()
    broken = int(np.count_nonzero(~np.isfinite(logits)))
    if broken:
        raise NonFiniteError(
            f"the model's logits hold {broken} NaN or infinite values of {logits.size}",
            "check the weights: they overflow on this image",
        )
    return top_k(logits, k, getattr(model, "domain", "photos"))
