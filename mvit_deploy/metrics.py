"""Fidelity metrics of artifact logits against reference logits (numpy only)."""

from __future__ import annotations

import numpy as np


def fidelity(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """ref, got: [N, classes] logits. PSNR = 20*log10(max|ref| / RMSE)."""
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
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ref, top_got)]
    return {
        "max_abs": float(np.max(np.abs(diff))),
        "mean_abs": float(np.mean(np.abs(diff))),
        "psnr_db": psnr,
        "cosine": float(np.mean(cos)),
        "top1_agreement": float(np.mean(top_ref[:, 0] == top_got[:, 0])),
        "top5_overlap": float(np.mean(overlap)),
    }
