"""Fidelity metrics of artifact logits against reference logits (numpy only).

Scale matters: a trained model's logits peak near 15, a random one's near 1, and kernel
summation order moves every logit by a few ulps of its own size. So errors are also given
relative to the reference's peak |logit| (``max_rel``), and a changed top-1 class counts
against an artifact only where the reference's top-1/top-2 margin is clearly larger than
the precision's noise (``decisive``; the margin, as a fraction of the peak, comes from
``tolerances.py``).
"""

from __future__ import annotations

import math

import numpy as np


def margins(ref: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 logit of every row."""
    top2 = np.sort(np.asarray(ref, np.float64), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def fidelity(ref: np.ndarray, got: np.ndarray, decisive_margin: float = 0.0) -> dict[str, float]:
    """ref, got: [N, classes] logits. PSNR = 20*log10(max|ref| / RMSE).

    ``decisive_margin`` is a fraction of max|ref|: rows whose reference margin exceeds it
    make up ``decisive_top1_agreement`` (1.0 when no row is decisive; ``n_decisive`` says so).
    """
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape}, artifact {got.shape}")
    diff = got - ref
    rmse = float(np.sqrt(np.mean(diff**2)))
    peak = float(np.max(np.abs(ref)))
    psnr = float("inf") if rmse == 0 else 20 * np.log10(peak / rmse)
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-30)
    k = min(5, ref.shape[1])
    top_ref = np.argsort(-ref, axis=1, kind="stable")[:, :k]
    top_got = np.argsort(-got, axis=1, kind="stable")[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ref, top_got, strict=True)]
    agree = top_ref[:, 0] == top_got[:, 0]
    decisive = margins(ref) > decisive_margin * peak
    max_abs = float(np.max(np.abs(diff)))
    return {
        "max_abs": max_abs,
        "max_rel": max_abs / peak if peak > 0 else float("inf"),
        "mean_abs": float(np.mean(np.abs(diff))),
        "peak_abs_logit": peak,
        "psnr_db": psnr,
        "cosine": float(np.mean(cos)),
        "top1_agreement": float(np.mean(agree)),
        "decisive_top1_agreement": float(np.mean(agree[decisive])) if decisive.any() else 1.0,
        "n_decisive": int(decisive.sum()),
        "top5_overlap": float(np.mean(overlap)),
    }


def finite_or_none(value):
    """``value`` with every NaN or infinite float replaced by None: JSON has no NaN or Infinity.

    Where a metric is undefined (the PSNR of identical outputs, a confidence interval from one
    image) null says so; a NaN from a broken artifact is named in its failure message.
    """
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flipped(ref: np.ndarray, got: np.ndarray, decisive_margin: float = 0.0) -> list[dict]:
    """The rows whose top-1 class changed, with the reference's margin (absolute and / peak)."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    peak = float(np.max(np.abs(ref))) or 1.0
    m = margins(ref)
    a, b = ref.argmax(1), got.argmax(1)
    return [
        {
            "index": int(i),
            "reference": int(a[i]),
            "artifact": int(b[i]),
            "margin": float(m[i]),
            "margin_rel": float(m[i] / peak),
            "decisive": bool(m[i] > decisive_margin * peak),
        }
        for i in np.flatnonzero(a != b)
    ]


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio, 10*log10(sum(ref^2) / sum((ref - got)^2)), in float64."""
    ref = np.asarray(ref, np.float64)
    noise = np.sum((ref - np.asarray(got, np.float64)) ** 2)
    power = np.sum(ref**2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(max(power, 1e-30) / noise))
