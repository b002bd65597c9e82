"""Latency regression gate: this run's raw samples against a baseline run's, per artifact. Numpy only.

A p50 that moved is not yet a regression: two runs of the same artifact on the same board differ by
a few percent (thermal state, background load, cache layout). An artifact is a **regression** when
both hold:

- its median moved up by more than ``max_regression`` (the point estimate the user bounds);
- the shift is unlikely to be noise: a one-sided Mann–Whitney U test on the two sample sets
  (rank-based, so a few outlier rounds do not decide it) gives ``p < ALPHA``.

The 95 % percentile-bootstrap interval of the median's relative change is reported beside it (how
sure the size of the change is); it does not decide, because on 20-odd rounds a median's bootstrap
is coarse: a 43 % slowdown at p = 0.0006 measured here had an interval reaching -1 %.

Faster artifacts are reported the same way in the other direction; a shift that is significant but
under the bound is "within bound", one that is not significant is "within noise". An artifact absent
from the baseline is "no baseline" and does not fail the gate.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UsageError

ALPHA = 0.01  # one-sided; measured: 200 same-distribution pairs (tests/test_bench_gate.py) give no false regression
BOOTSTRAP = 2000
BOOTSTRAP_BLOCK = 1 << 22  # resampled values drawn at once: 32 MB of indices and 32 MB of latencies
METHOD = (
    f"median shift past the bound with one-sided Mann-Whitney U p < {ALPHA} (95% bootstrap CI of the shift reported)"
)
MIN_SAMPLES = 5


def parse_regression(value: str) -> float:
    """``"10%"`` or a fraction ``"0.1"`` -> 0.10 (a bare number of 1 or more is refused: 1 would mean 1 % or 100 %)."""
    text = str(value).replace(" ", "")
    try:
        number = float(text.rstrip("%"))
    except ValueError:
        raise UsageError(
            f"--max-regression {value!r} is not a percentage", "write it like 10% (a 10 % slower median fails)"
        ) from None
    if not text.endswith("%") and number >= 1:
        raise UsageError(f"--max-regression {value!r} is ambiguous", f"write it with a percent sign, e.g. {text}%")
    fraction = number / 100 if text.endswith("%") else number
    if not (0 < fraction <= 10) or not math.isfinite(fraction):
        raise UsageError(
            f"--max-regression {value!r} is out of range", "give a slowdown above 0% and up to 1000%, e.g. 10%"
        )
    return fraction


def percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_greater(x, y) -> float:
    """One-sided p-value that ``x`` tends to be larger than ``y`` (normal approximation, tie-corrected)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n1, n2 = len(x), len(y)
    both = np.concatenate([x, y])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie_term = float((counts**3 - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sigma == 0:
        return 0.5
    z = (u - n1 * n2 / 2.0 - 0.5) / sigma  # continuity correction
    return _norm_sf(z)


def _resampled_medians(x: np.ndarray, rounds: int, rng) -> np.ndarray:
    """The medians of ``rounds`` bootstrap resamples of ``x``, drawn a block of rounds at a time so that at most
    max(BOOTSTRAP_BLOCK, len(x)) values are held at once (all at once, 6 M rounds x 2000 took 89 GiB).

    Blocks are whole rounds drawn in order from one generator; up to BOOTSTRAP_BLOCK // BOOTSTRAP (2,097) samples
    every round is in one block, so the draws are those of a single [rounds, n] draw."""
    n = len(x)
    per_block = max(1, BOOTSTRAP_BLOCK // n)
    medians = np.empty(rounds)
    for a in range(0, rounds, per_block):
        b = min(a + per_block, rounds)
        medians[a:b] = np.median(x[rng.integers(0, n, (b - a, n))], axis=1)  # [rounds in block, n] -> [rounds]
    return medians


def median_ratio_ci(current, baseline, rounds: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of median(current) / median(baseline) - 1."""
    rng = np.random.default_rng(seed)
    cur, base = np.asarray(current, float), np.asarray(baseline, float)
    c = _resampled_medians(cur, rounds, rng)
    b = _resampled_medians(base, rounds, rng)
    lo, hi = np.percentile(c / b - 1.0, [2.5, 97.5])
    return float(lo), float(hi)


def compare_samples(current, baseline, max_regression: float) -> dict:
    cur, base = np.asarray(current, float), np.asarray(baseline, float)
    change = float(np.median(cur) / np.median(base) - 1.0)
    lo, hi = median_ratio_ci(cur, base)
    p_slower, p_faster = mann_whitney_greater(cur, base), mann_whitney_greater(base, cur)
    if change > max_regression and p_slower < ALPHA:
        verdict, p = "regression", p_slower
    elif change < -max_regression and p_faster < ALPHA:
        verdict, p = "faster", p_faster
    elif min(p_slower, p_faster) < ALPHA:
        verdict, p = "within bound", min(p_slower, p_faster)
    else:
        verdict, p = "within noise", min(p_slower, p_faster)
    return {
        "baseline_p50_ms": float(np.median(base)),
        "p50_ms": float(np.median(cur)),
        "change": change,
        "ci95": [lo, hi],
        "p_value": float(p),
        "verdict": verdict,
    }


def _key(result: dict) -> tuple:
    """What makes a result the same measurement in two runs: file name, runtime and input size."""
    return Path(result["artifact"]).name, result["runtime"], result.get("input_size")


def _keyed(results: list[dict], what: str) -> dict:
    out = {}
    for r in results:
        key = _key(r)
        if key in out:
            raise UsageError(
                f"{what} holds two results for {key[0]} ({key[1]}, {key[2]} px): the gate cannot tell them apart",
                "give the artifacts distinct file names, or gate them in separate bench runs",
            )
        out[key] = r
    return out


def _samples(result: dict):
    s = (result.get("latency_ms") or {}).get("samples")
    if (
        isinstance(s, list)
        and len(s) >= MIN_SAMPLES
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in s)
    ):
        return s
    return None


def load_baseline(path) -> dict:
    """The baseline bench JSON, checked before anything is measured."""
    from ..results import load_results  # the same strict reader the report uses

    (run,) = load_results([path], what="baseline file")
    if not any(_samples(r) for r in run["results"]):
        raise UsageError(
            f"baseline {path} keeps no raw latency rounds (an older mvit-deploy, an adb benchmark binary, or fewer "
            f"than {MIN_SAMPLES} --iters)",
            "re-run the baseline with this version: `mvit-deploy bench ... --json previous.json`",
        )
    return run


def gate(result: dict, baseline: dict, baseline_path, max_regression: float) -> list[dict]:
    """Add ``comparison`` to each result and ``baseline`` to ``result``; return the regressions.

    A result the baseline lacks is "no baseline" (a new artifact); a result without raw rounds is
    "no samples"; a baseline artifact this run did not measure is listed in ``baseline.missing``. If
    nothing could be compared at all, that is an error, never a pass.
    """
    by_key = _keyed(baseline["results"], f"baseline {baseline_path}")
    current = _keyed(result["results"], "this run")
    regressions, compared = [], 0
    for key, r in current.items():
        base = by_key.get(key)
        cur_s, base_s = _samples(r), base and _samples(base)
        if base is None or base_s is None:
            r["comparison"] = {"verdict": "no baseline", "p50_ms": r["latency_ms"].get("p50")}
            continue
        if cur_s is None:
            r["comparison"] = {"verdict": "no samples", "p50_ms": r["latency_ms"].get("p50")}
            continue
        compared += 1
        r["comparison"] = compare_samples(cur_s, base_s, max_regression)
        if r["comparison"]["verdict"] == "regression":
            regressions.append(r)
    machine = lambda d: (d.get("cpu"), d.get("cores"), d.get("os"), d.get("kind"))  # noqa: E731  (hosted CI runners change hostname every job)
    result["baseline"] = {
        "file": str(baseline_path),
        "max_regression": max_regression,
        "method": METHOD,
        "same_device": machine(baseline["device"]) == machine(result["device"]),
        "device": baseline["device"].get("name"),
        "missing": sorted(k[0] for k in by_key.keys() - current.keys()),
        "compared": compared,
    }
    if not compared:
        raise UsageError(
            f"no artifact of this run could be compared with {baseline_path} (none in both with raw rounds)",
            "bench the same artifacts as the baseline, with --iters 5 or more",
        )
    return regressions


def describe(r: dict) -> str:
    c = r["comparison"]
    lo, hi = c["ci95"]
    return (
        f"{Path(r['artifact']).name} ({r['runtime']}): p50 {c['baseline_p50_ms']:.2f} -> {c['p50_ms']:.2f} ms, "
        f"{c['change']:+.1%} (95% CI {lo:+.1%} .. {hi:+.1%}, p={c['p_value']:.1g})"
    )
