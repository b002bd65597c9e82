"""The latency regression gate (bench/compare.py) on sample sets whose answer is known, and against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mvit_deploy.bench.compare import compare_samples, mann_whitney_greater, median_ratio_ci, parse_regression
from mvit_deploy.errors import UsageError


def rounds(rng, n=50, ms=10.0, shift=1.0):
    """Latency-like rounds: a floor, right-skewed jitter (gamma) and an occasional outlier (a context switch)."""
    x = ms * (0.95 + rng.gamma(2.0, 0.03, n))
    spikes = rng.random(n) < 0.04
    x[spikes] *= rng.uniform(1.5, 3.0, spikes.sum())
    return x * shift


@pytest.mark.parametrize("seed", range(6))
def test_mann_whitney_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    x, y = rounds(rng, 40, shift=1.0 + 0.02 * seed), rounds(rng, 55)
    x[:5] = y[:5]  # ties across the samples
    ref = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney_greater(x, y) == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_noise_passes_and_a_20_percent_shift_fails():
    rng = np.random.default_rng(7)
    same = [compare_samples(rounds(rng), rounds(rng), 0.10)["verdict"] for _ in range(200)]
    assert "regression" not in same and "faster" not in same  # 200 pairs from one distribution: no false alarm
    assert same.count("within noise") >= 190  # and alpha=0.01 keeps even "within bound" rare
    shifted = [compare_samples(rounds(rng, shift=1.2), rounds(rng), 0.10) for _ in range(50)]
    assert all(c["verdict"] == "regression" for c in shifted)
    changes = np.array([c["change"] for c in shifted])
    assert abs(np.median(changes) - 0.20) < 0.03  # it says by how much
    assert np.mean([c["ci95"][0] < 0.2 < c["ci95"][1] for c in shifted]) > 0.85


def test_a_shift_under_the_bound_or_drowned_in_noise_passes():
    rng = np.random.default_rng(11)
    small = [compare_samples(rounds(rng, shift=1.05), rounds(rng), 0.10)["verdict"] for _ in range(50)]
    assert "regression" not in small and small.count("within bound") > 25  # real, but under 10 %: reported, not failed
    # 20 % slower median, but 5 rounds of wild noise each: not enough evidence
    noisy = [compare_samples(rng.uniform(5, 25, 5) * 1.2, rng.uniform(5, 25, 5), 0.10)["verdict"] for _ in range(50)]
    assert noisy.count("regression") <= 2


def test_faster_is_reported_not_failed():
    rng = np.random.default_rng(3)
    c = compare_samples(rounds(rng, shift=0.7), rounds(rng), 0.10)
    assert c["verdict"] == "faster" and c["change"] == pytest.approx(-0.3, abs=0.04)


def test_bootstrap_interval_covers_the_true_ratio():
    rng = np.random.default_rng(5)
    hits = 0
    for i in range(60):
        lo, hi = median_ratio_ci(rounds(rng, shift=1.15), rounds(rng), rounds=800, seed=i)
        hits += lo <= 0.15 <= hi
    assert hits >= 51  # ~95 % nominal; >= 85 % of 60


@pytest.mark.parametrize(
    ("text", "value"), [("10%", 0.10), ("0.1", 0.10), ("2.5%", 0.025), (" 25 % ", 0.25), ("0.5%", 0.005), ("150%", 1.5)]
)
def test_parse_regression(text, value):
    assert parse_regression(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ten", "not a percentage"),
        ("-5%", "out of range"),
        ("0", "out of range"),
        ("nan", "out of range"),
        ("5000%", "out of range"),
        ("10", "ambiguous"),
        ("1", "ambiguous"),
    ],
)
def test_parse_regression_refuses(text, why):
    with pytest.raises(UsageError, match=why):
        parse_regression(text)


def _run(entries, cpu="EPYC"):
    """A bench result: (artifact path, samples or None)."""
    results = []
    for path, samples in entries:
        lat = {"p50": None if samples is None else float(np.median(samples))}
        if samples is not None:
            lat["samples"] = list(samples)
        results.append({"artifact": path, "runtime": "onnxruntime", "input_size": 256, "latency_ms": lat})
    return {"device": {"name": "host", "cpu": cpu, "cores": 2, "os": "Linux", "kind": "local"}, "results": results}


def test_gate_never_passes_what_it_did_not_compare():
    from mvit_deploy.bench.compare import gate

    rng = np.random.default_rng(0)
    base = _run([("out/a.onnx", rounds(rng)), ("out/b.onnx", rounds(rng))])
    # b was not measured, c is new, a has no rounds: nothing compared is an error, not a pass
    with pytest.raises(UsageError, match="no artifact of this run could be compared"):
        gate(_run([("out/a.onnx", None), ("out/c.onnx", rounds(rng))]), base, "base.json", 0.1)
    cur = _run([("out/a.onnx", rounds(rng, shift=1.5)), ("out/c.onnx", rounds(rng))], cpu="Xeon")
    regressions = gate(cur, base, "base.json", 0.1)
    assert [r["artifact"] for r in regressions] == ["out/a.onnx"]
    assert cur["results"][1]["comparison"]["verdict"] == "no baseline"
    assert (
        cur["baseline"]["missing"] == ["b.onnx"]
        and cur["baseline"]["compared"] == 1
        and cur["baseline"]["same_device"] is False
    )


def test_gate_refuses_two_results_it_cannot_tell_apart():
    from mvit_deploy.bench.compare import gate

    rng = np.random.default_rng(1)
    base = _run([("old/m.onnx", rounds(rng)), ("new/m.onnx", rounds(rng, ms=5.0))])
    with pytest.raises(UsageError, match="two results for m.onnx"):
        gate(_run([("old/m.onnx", rounds(rng))]), base, "base.json", 0.1)
