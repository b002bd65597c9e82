"""Reading bench result JSONs and ``eval --json`` outputs, checked field by field before anything uses them.

One strict reader for the report (``mvit-deploy report``) and the latency gate (``bench --baseline``):
a file that is not what they need is refused in one line naming the file, the field and what to pass.

Every file is read through :func:`mvit_deploy.device.files.load_json` (a regular file only, at most
a size cap, nesting bounded), and every number the report or the gate uses is finite and within what
a measurement can be (:class:`Span`): a JSON ``1e400`` parses to infinity, and a latency of 1.7e308 ms
would overflow the chart's ticks. A result keeps at most :data:`MAX_SAMPLES` raw rounds per artifact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .device.bench import SCHEMA  # what the bench writes (and documents there, field by field)
from .device.files import MB, load_json
from .errors import UsageError

FROM_BENCH = "pass files written by `mvit-deploy bench --json FILE`"
FROM_EVAL = "pass what `mvit-deploy eval ARTIFACTS --json > FILE` prints"
# `bench --iters` has no upper bound; a million rounds is 100 s at 0.1 ms a round on a host and hours on a board.
# A result holding more is refused (and the file cap below follows from it: ~9 bytes a round as bench writes it).
MAX_SAMPLES = 1_000_000
RESULT_MAX_BYTES = 256 * MB  # a bench run of ~25 artifacts at MAX_SAMPLES rounds each
EVAL_MAX_BYTES = 256 * MB  # eval --json with per-sample top-5: 50,000 images x ~100 artifacts


@dataclass(frozen=True)
class Span:
    """The values a measured quantity can take; past ``high`` it is not that quantity any more."""

    low: float
    high: float
    unit: str  # shown after ``high`` when a value is refused

    def problem(self, v, none_ok: bool = False) -> str | None:
        """Why ``v`` is not a number in [low, high] (a phrase to follow the field's name), or None."""
        if v is None and none_ok:
            return None
        if not _is_number(v):
            return "is not a number"
        try:
            v = float(v)  # a JSON integer of 400 digits is a Python int no float holds
        except OverflowError:
            v = math.inf if v > 0 else -math.inf
        if not math.isfinite(v):
            return f"is {v} (past the range of a float, e.g. 1e400 in the file)"
        if v < self.low:
            return "is negative" if self.low == 0 else f"is {v:.4g}, below {self.low:g}"
        if v > self.high:
            return f"is {v:.4g}, more than {self.high:g} {self.unit}"
        return None


HOUR_MS = 3_600_000.0
LATENCY = Span(0, HOUR_MS, "ms (an hour: not a latency)")
LOAD = Span(0, HOUR_MS, "ms (an hour: not a load time)")
BYTES = Span(0, float(1 << 40), "bytes (1 TiB: no model file)")
MEMORY = Span(0, float(1 << 24), "MB (16 TiB: no device's memory)")
THROUGHPUT = Span(0, 1e9, "images/s")
PIXELS = Span(0, 100_000, "px")
COUNT = Span(0, 1e12, "(not a count)")
FRACTION = Span(0, 1, "(a fraction)")
# 20 log10 of the widest ratio of two float64 (1.8e308 / 4.9e-324) is 12,632 dB: past it a PSNR was not computed
PSNR = Span(-13_000, 13_000, "dB (past any float64 ratio)")
CHANGE = Span(-1, 1e12, "(a relative change)")  # median ratio - 1: at least -1
POINTS = Span(-100, 100, "points (percentage points)")
REGRESSION = Span(0, 10, "(the gate's bound is at most 1000%)")

# The numbers a report reads from each result (bench/local.py documents the whole schema); True: may be null.
RESULT_NUMBERS = {"load_ms": (True, LOAD), "bytes": (True, BYTES)}  # an AI Hub profile may report no load time
LATENCY_NUMBERS = {"mean": False, "std": False, "p50": True, "p90": True, "min": True, "p99": True}
OPTIONAL_NUMBERS = {  # newer or device-specific fields, null or absent allowed
    "rss_delta_mb": MEMORY,
    "peak_memory_mb": MEMORY,
    "input_size": PIXELS,
    "throughput_ips": THROUGHPUT,
    "first_load_ms": LOAD,
}
COMPARISON_NUMBERS = {"baseline_p50_ms": LATENCY, "p50_ms": LATENCY, "change": CHANGE, "p_value": FRACTION}
EVAL_ROW_KEYS = (
    "artifact",
    "precision",
    "reference",
    "artifact_metrics",
    "drop_points",
    "drop_ci95",
    "top1_agreement",
    "passed",
)


def _is_number(v, none_ok: bool = False) -> bool:
    return (v is None and none_ok) or (isinstance(v, (int, float)) and not isinstance(v, bool))


def load_results(paths, what: str = "result file") -> list[dict]:
    """Bench results (``bench --json``), each checked by :func:`run_problem`; ``what`` names them in a refusal."""
    runs = []
    for p in map(Path, paths):
        data = load_json(p, what, FROM_BENCH, RESULT_MAX_BYTES)
        schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
        if schema != SCHEMA:
            raise UsageError(f"{p} is not a bench result (schema {schema!r})", f"expected {SCHEMA}")
        problem = run_problem(data)
        if problem:
            raise UsageError(f"{p} is not a complete bench result: {problem}", FROM_BENCH)
        runs.append(data)
    if not runs:
        raise UsageError("no result files given", "pass one or more bench JSON files")
    return runs


def run_problem(run: dict) -> str | None:
    """The first thing the report needs that ``run`` lacks or holds in the wrong shape, or None."""
    if not isinstance(run, dict):
        return "the run is not an object"
    device, settings, results = run.get("device"), run.get("settings"), run.get("results")
    if not isinstance(device, dict) or not {"name", "kind"} <= device.keys():
        return "no device {name, kind}"
    if not isinstance(device.get("runtimes") or {}, dict):
        return "device.runtimes is not an object"
    if not isinstance(settings, dict) or not _is_number(settings.get("threads")):
        return "no settings.threads"
    problem = COUNT.problem(settings["threads"])
    if problem:
        return f"settings.threads {problem}"
    problem = MEMORY.problem(run.get("peak_rss_mb"), none_ok=True)
    if problem:
        return f"peak_rss_mb {problem}"
    if not isinstance(results, list):
        return "no results list"
    baseline = run.get("baseline")
    if baseline is not None and not (isinstance(baseline, dict) and _is_number(baseline.get("max_regression"), True)):
        return "baseline is not an object {file, max_regression, method}"
    problem = REGRESSION.problem((baseline or {}).get("max_regression"), none_ok=True)
    if problem:
        return f"baseline.max_regression {problem}"
    for i, r in enumerate(results):
        problem = _result_problem(r)
        if problem:
            return f"results[{i}]{problem}"
    skipped = run.get("skipped", [])
    if not isinstance(skipped, list) or not all(
        isinstance(s, dict) and {"artifact", "reason"} <= s.keys() for s in skipped
    ):
        return "skipped is not a list of {artifact, reason}"
    return None


def _result_problem(r) -> str | None:
    """What is wrong with one result, as a phrase after ``results[i]`` (".load_ms is negative"), or None."""
    if not isinstance(r, dict):
        return " is not an object"
    missing = [
        k for k in ("artifact", "model", "target", "precision", "runtime", "latency_ms", *RESULT_NUMBERS) if k not in r
    ]
    if missing:
        return f" has no {', '.join(missing)}"
    if not isinstance(r["artifact"], str) or not r["artifact"]:
        return ".artifact is not a path"
    latency = r["latency_ms"]
    if not isinstance(latency, dict) or not all(
        _is_number(latency.get(k), none_ok) for k, none_ok in LATENCY_NUMBERS.items()
    ):
        return f".latency_ms needs the numbers {', '.join(LATENCY_NUMBERS)}"
    for k in LATENCY_NUMBERS:
        problem = LATENCY.problem(latency.get(k), none_ok=True)
        if problem:
            return f".latency_ms.{k} {problem}"
    numbers = {k: (r[k], none_ok, span) for k, (none_ok, span) in RESULT_NUMBERS.items()}
    numbers.update({k: (r.get(k), True, span) for k, span in OPTIONAL_NUMBERS.items()})
    for k, (v, none_ok, span) in numbers.items():
        problem = span.problem(v, none_ok)
        if problem:
            return f".{k} {problem}"
    problem = _optional_problem(r)
    return f".{problem}" if problem else None


def _samples_problem(samples) -> str | None:
    """The raw rounds: a non-empty list of at most MAX_SAMPLES latencies in ms (None: absent)."""
    if samples is None:
        return None
    if not (isinstance(samples, list) and samples):
        return "latency_ms.samples is not a list of latencies in ms"
    if len(samples) > MAX_SAMPLES:
        return (
            f"latency_ms.samples holds {len(samples):,} rounds, more than the {MAX_SAMPLES:,} a result keeps "
            f"(bench --iters {MAX_SAMPLES:,} or fewer)"
        )
    for k, v in enumerate(samples):
        if not _is_number(v) or v < 0:
            return "latency_ms.samples is not a list of latencies in ms"
        problem = LATENCY.problem(v)
        if problem:
            return f"latency_ms.samples[{k}] {problem}"
    return None


def _optional_problem(r: dict) -> str | None:
    """The first optional field of a result (parity, raw rounds, baseline comparison, ...) present but malformed."""
    problem = _samples_problem(r["latency_ms"].get("samples"))
    if problem:
        return problem
    parity = r.get("parity")
    if parity is not None:
        metrics = parity.get("metrics") if isinstance(parity, dict) else None
        if not isinstance(parity, dict) or not isinstance(metrics or {}, dict):
            return "parity is not an object with metrics"
        if not all(_is_number((metrics or {}).get(k), True) for k in ("psnr_db", "top1_agreement")) or parity.get(
            "passed"
        ) not in (True, False, None):
            return "parity needs metrics.psnr_db and metrics.top1_agreement as numbers and passed as true/false"
        for k, span in (("psnr_db", PSNR), ("top1_agreement", FRACTION)):
            problem = span.problem((metrics or {}).get(k), none_ok=True)
            if problem:
                return f"parity.metrics.{k} {problem}"
    units = r.get("compute_units")
    if units is not None and not (isinstance(units, dict) and all(COUNT.problem(v) is None for v in units.values())):
        return "compute_units is not an object of op counts"
    span = r.get("peak_memory_range_mb")
    if span is not None and not (isinstance(span, list) and len(span) == 2 and all(_is_number(v, True) for v in span)):
        return "peak_memory_range_mb is not [low, high]"
    for v in span or ():
        problem = MEMORY.problem(v, none_ok=True)
        if problem:
            return f"peak_memory_range_mb {problem}"
    job = r.get("aihub_job")
    if job is not None and not (isinstance(job, dict) and all(isinstance(job.get(k), str) for k in ("id", "url"))):
        return "aihub_job is not {id, url}"
    versions = r.get("versions")
    if versions is not None and not (isinstance(versions, dict) and all(isinstance(v, str) for v in versions.values())):
        return "versions is not an object of package versions"
    return _comparison_problem(r.get("comparison"))


def _comparison_problem(c) -> str | None:
    if c is None:
        return None
    if not isinstance(c, dict) or not isinstance(c.get("verdict"), str):
        return "comparison has no verdict"
    bad = [k for k in COMPARISON_NUMBERS if not _is_number(c.get(k), True)]
    if bad:
        return f"comparison.{bad[0]} is not a number"
    for k, span in COMPARISON_NUMBERS.items():
        problem = span.problem(c.get(k), none_ok=True)
        if problem:
            return f"comparison.{k} {problem}"
    ci = c.get("ci95")
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(_is_number(v, True) for v in ci)):
        return "comparison.ci95 is not [low, high]"
    for v in ci or ():
        problem = CHANGE.problem(v, none_ok=True)
        if problem:
            return f"comparison.ci95 {problem}"
    return None


def load_evals(paths) -> list[dict]:
    """``mvit-deploy eval --json`` outputs (evaluate.EvalReport.to_dict), checked as strictly as bench results."""
    evals = []
    for p in map(Path, paths):
        data = load_json(p, "eval file", FROM_EVAL, EVAL_MAX_BYTES)
        if isinstance(data, dict) and data.get("schema") == SCHEMA:
            raise UsageError(
                f"{p} is a bench result, not an eval result",
                "pass bench results as RESULTS and eval outputs with --eval",
            )
        problem = _eval_incomplete(data)
        if problem:
            raise UsageError(f"{p} is not an eval result: {problem}", FROM_EVAL)
        evals.append(data)
    return evals


def _eval_incomplete(data) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return "no rows list"
    if not isinstance(data.get("data"), str) or not _is_number(data.get("n_images")):
        return "no data / n_images"
    problem = COUNT.problem(data["n_images"])
    if problem:
        return f"n_images {problem}"
    for i, row in enumerate(data["rows"]):
        problem = _eval_row_problem(row)
        if problem:
            return f"rows[{i}]{problem}"
    return None


def _eval_row_problem(row) -> str | None:
    """What is wrong with one eval row, as a phrase after ``rows[i]``, or None."""
    if not isinstance(row, dict):
        return " is not an object"
    missing = [k for k in EVAL_ROW_KEYS if k not in row]
    if missing:
        return f" has no {', '.join(missing)}"
    if not isinstance(row["artifact"], str) or not isinstance(row["precision"], str):
        return ".artifact and .precision are not text"
    for part in ("reference", "artifact_metrics"):
        m = row[part]
        if not isinstance(m, dict) or not _is_number(m.get("top1")) or not _is_number(m.get("top5"), True):
            return f".{part} needs the number top1"
        for k in ("top1", "top5"):
            problem = FRACTION.problem(m.get(k), none_ok=True)
            if problem:
                return f".{part}.{k} {problem}"
    if not _is_number(row["drop_points"]) or not _is_number(row["top1_agreement"]):
        return ".drop_points and .top1_agreement are not numbers"
    for k, span in (("drop_points", POINTS), ("top1_agreement", FRACTION)):
        problem = span.problem(row[k])
        if problem:
            return f".{k} {problem}"
    ci = row["drop_ci95"]
    if not (isinstance(ci, list) and len(ci) == 2 and all(_is_number(v, True) for v in ci)):
        return ".drop_ci95 is not [low, high]"
    for v in ci:
        problem = POINTS.problem(v, none_ok=True)
        if problem:
            return f".drop_ci95 {problem}"
    bound = row.get("bound")
    if not isinstance(row["passed"], bool) or not (
        bound is None or (isinstance(bound, dict) and _is_number(bound.get("value"), True))
    ):
        return ".passed is not true/false or bound has no value"
    problem = POINTS.problem((bound or {}).get("value"), none_ok=True)
    return f".bound.value {problem}" if problem else None
