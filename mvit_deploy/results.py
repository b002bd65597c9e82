"""Reading bench result JSONs and ``eval --json`` outputs, checked field by field before anything uses them.

One strict reader for the report (``mvit-deploy report``) and the latency gate (``bench --baseline``):
a file that is not what they need is refused in one line naming the file, the field and what to pass.
"""

from __future__ import annotations

from pathlib import Path

from .artifact import parse_json
from .device.bench import SCHEMA  # what the bench writes (and documents there, field by field)
from .errors import UsageError

FROM_BENCH = "pass files written by `mvit-deploy bench --json FILE`"
FROM_EVAL = "pass what `mvit-deploy eval ARTIFACTS --json > FILE` prints"
# The numbers a report reads from each result (bench/local.py documents the whole schema); True: may be null.
RESULT_NUMBERS = {"load_ms": True, "bytes": True}  # an AI Hub profile may report no load time
LATENCY_NUMBERS = {"mean": False, "std": False, "p50": True, "p90": True, "min": True, "p99": True}
OPTIONAL_NUMBERS = (
    "rss_delta_mb",
    "peak_memory_mb",
    "input_size",
)  # newer or device-specific fields, null or absent allowed
COMPARISON_NUMBERS = ("baseline_p50_ms", "p50_ms", "change", "p_value")
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


def _read_json(p: Path, what: str, hint: str):
    if p.is_dir():
        raise UsageError(f"{what} file {p} is a directory", hint)
    try:
        return parse_json(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} file {p} does not exist", hint) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{p} is not valid JSON ({getattr(e, 'msg', e)})", hint) from None


def load_results(paths) -> list[dict]:
    runs = []
    for p in map(Path, paths):
        data = _read_json(p, "result", FROM_BENCH)
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
    device, settings, results = run.get("device"), run.get("settings"), run.get("results")
    if not isinstance(device, dict) or not {"name", "kind"} <= device.keys():
        return "no device {name, kind}"
    if not isinstance(device.get("runtimes") or {}, dict):
        return "device.runtimes is not an object"
    if not isinstance(settings, dict) or not _is_number(settings.get("threads")):
        return "no settings.threads"
    if not _is_number(run.get("peak_rss_mb"), True):
        return "peak_rss_mb is not a number"
    if not isinstance(results, list):
        return "no results list"
    baseline = run.get("baseline")
    if baseline is not None and not (isinstance(baseline, dict) and _is_number(baseline.get("max_regression"), True)):
        return "baseline is not an object {file, max_regression, method}"
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            return f"results[{i}] is not an object"
        missing = [
            k
            for k in ("artifact", "model", "target", "precision", "runtime", "latency_ms", *RESULT_NUMBERS)
            if k not in r
        ]
        if missing:
            return f"results[{i}] has no {', '.join(missing)}"
        if not isinstance(r["artifact"], str) or not r["artifact"]:
            return f"results[{i}].artifact is not a path"
        latency = r["latency_ms"]
        if not isinstance(latency, dict) or not all(
            _is_number(latency.get(k), none_ok) for k, none_ok in LATENCY_NUMBERS.items()
        ):
            return f"results[{i}].latency_ms needs the numbers {', '.join(LATENCY_NUMBERS)}"
        negative = [k for k in LATENCY_NUMBERS if (latency.get(k) or 0) < 0]
        if negative:
            return f"results[{i}].latency_ms.{negative[0]} is negative"
        bad = [k for k, none_ok in RESULT_NUMBERS.items() if not _is_number(r[k], none_ok)] + [
            k for k in OPTIONAL_NUMBERS if not _is_number(r.get(k), True)
        ]
        if bad:
            return f"results[{i}].{bad[0]} is not a number"
        problem = _optional_problem(r)
        if problem:
            return f"results[{i}].{problem}"
    skipped = run.get("skipped", [])
    if not isinstance(skipped, list) or not all(
        isinstance(s, dict) and {"artifact", "reason"} <= s.keys() for s in skipped
    ):
        return "skipped is not a list of {artifact, reason}"
    return None


def _optional_problem(r: dict) -> str | None:
    """The first optional field of a result (parity, raw rounds, baseline comparison, ...) present but malformed."""
    samples = r["latency_ms"].get("samples")
    if samples is not None and not (
        isinstance(samples, list) and samples and all(_is_number(v) and v >= 0 for v in samples)
    ):
        return "latency_ms.samples is not a list of latencies in ms"
    parity = r.get("parity")
    if parity is not None:
        metrics = parity.get("metrics") if isinstance(parity, dict) else None
        if not isinstance(parity, dict) or not isinstance(metrics or {}, dict):
            return "parity is not an object with metrics"
        if not all(_is_number((metrics or {}).get(k), True) for k in ("psnr_db", "top1_agreement")) or parity.get(
            "passed"
        ) not in (True, False, None):
            return "parity needs metrics.psnr_db and metrics.top1_agreement as numbers and passed as true/false"
    units = r.get("compute_units")
    if units is not None and not (isinstance(units, dict) and all(_is_number(v) for v in units.values())):
        return "compute_units is not an object of op counts"
    span = r.get("peak_memory_range_mb")
    if span is not None and not (isinstance(span, list) and len(span) == 2 and all(_is_number(v, True) for v in span)):
        return "peak_memory_range_mb is not [low, high]"
    job = r.get("aihub_job")
    if job is not None and not (isinstance(job, dict) and all(isinstance(job.get(k), str) for k in ("id", "url"))):
        return "aihub_job is not {id, url}"
    versions = r.get("versions")
    if versions is not None and not (isinstance(versions, dict) and all(isinstance(v, str) for v in versions.values())):
        return "versions is not an object of package versions"
    c = r.get("comparison")
    if c is not None:
        if not isinstance(c, dict) or not isinstance(c.get("verdict"), str):
            return "comparison has no verdict"
        bad = [k for k in COMPARISON_NUMBERS if not _is_number(c.get(k), True)]
        if bad:
            return f"comparison.{bad[0]} is not a number"
        ci = c.get("ci95")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(_is_number(v, True) for v in ci)):
            return "comparison.ci95 is not [low, high]"
    return None


def load_evals(paths) -> list[dict]:
    """``mvit-deploy eval --json`` outputs (evaluate.EvalReport.to_dict), checked as strictly as bench results."""
    evals = []
    for p in map(Path, paths):
        data = _read_json(p, "eval", FROM_EVAL)
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
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, dict):
            return f"rows[{i}] is not an object"
        missing = [k for k in EVAL_ROW_KEYS if k not in row]
        if missing:
            return f"rows[{i}] has no {', '.join(missing)}"
        if not isinstance(row["artifact"], str) or not isinstance(row["precision"], str):
            return f"rows[{i}].artifact and .precision are not text"
        for part in ("reference", "artifact_metrics"):
            m = row[part]
            if not isinstance(m, dict) or not _is_number(m.get("top1")) or not _is_number(m.get("top5"), True):
                return f"rows[{i}].{part} needs the number top1"
        if not _is_number(row["drop_points"]) or not _is_number(row["top1_agreement"]):
            return f"rows[{i}].drop_points and .top1_agreement are not numbers"
        ci = row["drop_ci95"]
        if not (isinstance(ci, list) and len(ci) == 2 and all(_is_number(v, True) for v in ci)):
            return f"rows[{i}].drop_ci95 is not [low, high]"
        bound = row.get("bound")
        if not isinstance(row["passed"], bool) or not (
            bound is None or (isinstance(bound, dict) and _is_number(bound.get("value"), True))
        ):
            return f"rows[{i}].passed is not true/false or bound has no value"
    return None
