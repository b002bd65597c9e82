"""Turn bench result JSONs (and ``eval --json`` outputs) into report.md and a self-contained report.html.

The page, top to bottom: regressions against a baseline; the runs and their devices; a latency
matrix (rows: artifacts, columns: runs, cells: p50 with p90 and the baseline verdict, fidelity
beside it); box plots of every artifact's rounds per device; the baseline comparison; accuracy
from eval; latency vs PSNR; the artifacts' metadata; every measurement. report.md holds the same
tables. Inline SVG, no script, nothing fetched.

SVG text is monospace, so a label's width is known before the browser draws it: the drawings
are sized from their labels, and a label longer than its column is cut in the middle with an
ellipsis and keeps its full text as a tooltip.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from .artifact import output_folder, parse_json, staged
from .bench.local import SCHEMA
from .errors import UsageError

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
VERDICT_CLASS = {"regression": "bad", "faster": "good"}  # "within noise", "within bound", "no baseline": neutral
VERDICT_COLOR = {"bad": "#c62828", "good": "#2e7d32", "": "#555"}

FROM_BENCH = "pass files written by `mvit-deploy bench --json FILE`"
FROM_EVAL = "pass what `mvit-deploy eval ARTIFACTS --json > FILE` prints"
# The numbers a report reads from each result (bench/local.py documents the whole schema); True: may be null.
RESULT_NUMBERS = {"load_ms": True, "bytes": True}  # an AI Hub profile may report no load time
LATENCY_NUMBERS = {"mean": False, "std": False, "p50": True, "p90": True, "min": True, "p99": True}
OPTIONAL_NUMBERS = ("rss_delta_mb", "peak_memory_mb", "input_size")  # newer or device-specific fields, null or absent allowed
COMPARISON_NUMBERS = ("baseline_p50_ms", "p50_ms", "change", "p_value")
EVAL_ROW_KEYS = ("artifact", "precision", "reference", "artifact_metrics", "drop_points", "drop_ci95", "top1_agreement", "passed")

MONO = "DejaVu Sans Mono,Menlo,Consolas,monospace"
CHAR_EM = 0.62  # advance of one monospace glyph in em (DejaVu Sans Mono and Menlo: 0.602), rounded up
NAME_CHARS, RUN_CHARS, KEY_CHARS = 46, 28, 52  # longest label drawn before the middle is cut
OPTIONAL_COLUMNS = {"eval top-1", "rounds kept", "IQR", "peak MB", "RSS+ MB", "compute units", "AI Hub job"}  # shown when some result has them


# ---------------------------------------------------------------------------- reading and checking


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
        problem = _incomplete(data)
        if problem:
            raise UsageError(f"{p} is not a complete bench result: {problem}", FROM_BENCH)
        runs.append(data)
    if not runs:
        raise UsageError("no result files given", "pass one or more bench JSON files")
    return runs


def _incomplete(run: dict) -> str | None:
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
        missing = [k for k in ("artifact", "model", "target", "precision", "runtime", "latency_ms", *RESULT_NUMBERS) if k not in r]
        if missing:
            return f"results[{i}] has no {', '.join(missing)}"
        if not isinstance(r["artifact"], str) or not r["artifact"]:
            return f"results[{i}].artifact is not a path"
        latency = r["latency_ms"]
        if not isinstance(latency, dict) or not all(_is_number(latency.get(k), none_ok) for k, none_ok in LATENCY_NUMBERS.items()):
            return f"results[{i}].latency_ms needs the numbers {', '.join(LATENCY_NUMBERS)}"
        negative = [k for k in LATENCY_NUMBERS if (latency.get(k) or 0) < 0]
        if negative:
            return f"results[{i}].latency_ms.{negative[0]} is negative"
        bad = [k for k, none_ok in RESULT_NUMBERS.items() if not _is_number(r[k], none_ok)] + [k for k in OPTIONAL_NUMBERS if not _is_number(r.get(k), True)]
        if bad:
            return f"results[{i}].{bad[0]} is not a number"
        problem = _optional_problem(r)
        if problem:
            return f"results[{i}].{problem}"
    skipped = run.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(s, dict) and {"artifact", "reason"} <= s.keys() for s in skipped):
        return "skipped is not a list of {artifact, reason}"
    return None


def _optional_problem(r: dict) -> str | None:
    """The first optional field of a result (parity, raw rounds, baseline comparison, ...) present but malformed."""
    samples = r["latency_ms"].get("samples")
    if samples is not None and not (isinstance(samples, list) and samples and all(_is_number(v) and v >= 0 for v in samples)):
        return "latency_ms.samples is not a list of latencies in ms"
    parity = r.get("parity")
    if parity is not None:
        metrics = parity.get("metrics") if isinstance(parity, dict) else None
        if not isinstance(parity, dict) or not isinstance(metrics or {}, dict):
            return "parity is not an object with metrics"
        if not all(_is_number((metrics or {}).get(k), True) for k in ("psnr_db", "top1_agreement")) or parity.get("passed") not in (True, False, None):
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
            raise UsageError(f"{p} is a bench result, not an eval result", "pass bench results as RESULTS and eval outputs with --eval")
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
        if not isinstance(row["passed"], bool) or not (bound is None or (isinstance(bound, dict) and _is_number(bound.get("value"), True))):
            return f"rows[{i}].passed is not true/false or bound has no value"
    return None


# ---------------------------------------------------------------------------- what the report shows


@dataclass(frozen=True)
class Run:
    label: str  # the result file's name, with as much of its folder as tells it from the other runs'
    data: dict
    keys: tuple[str, ...]  # per result: the artifact's file name, with its folder where this run holds two of that name

    @property
    def device(self) -> str:
        return f"{self.data['device']['name']} ({self.data['device']['kind']})"

    def results(self) -> list[tuple[str, dict]]:
        return list(zip(self.keys, self.data["results"]))


@dataclass(frozen=True)
class Cell:
    text: str  # markdown (and plain) text
    cls: str = ""  # html class: num | name | bad | good
    html: str | None = None  # richer html than the escaped text


def _short_names(paths: list[str]) -> list[str]:
    """Each path's file name, with the nearest folder that tells it from the others of the same name."""
    parts = [PurePath(p).parts or (p,) for p in paths]
    out = []
    for i, mine in enumerate(parts):
        rivals = [q for j, q in enumerate(parts) if j != i and q[-1] == mine[-1]]
        at = lambda q, k: q[-k] if len(q) >= k else None  # noqa: E731
        k = next((k for k in range(2, len(mine) + 1) if all(at(q, k) != mine[-k] for q in rivals)), None)
        if not rivals:
            out.append(mine[-1])
        else:
            out.append(f"{mine[-1]} #{i + 1}" if k is None else mine[-k] + ("/" if k == 2 else "/…/") + mine[-1])
    return out


def _runs(paths, datas) -> list[Run]:
    labels = _short_names([str(Path(p).resolve()) for p in paths])
    return [Run(label, d, tuple(_short_names([r["artifact"] for r in d["results"]]))) for label, d in zip(labels, datas)]


def _p50(r: dict) -> float:
    """The median latency; the mean where a device reports no median."""
    lat = r["latency_ms"]
    return lat["p50"] if lat.get("p50") is not None else lat["mean"]


def _metrics(r: dict) -> dict:
    return (r.get("parity") or {}).get("metrics") or {}


def _spread(r: dict) -> dict:
    """What a box plot draws: quartiles, whiskers at 1.5 IQR and the rounds beyond, or the recorded percentiles."""
    lat, samples = r["latency_ms"], r["latency_ms"].get("samples")
    if samples:
        a = np.asarray(samples, float)
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        inside = a[(a >= q1 - 1.5 * (q3 - q1)) & (a <= q3 + 1.5 * (q3 - q1))]
        lo, hi = float(inside.min()), float(inside.max())
        return {"box": (q1, q3), "median": med, "whiskers": (lo, hi), "outliers": a[(a < lo) | (a > hi)].tolist(), "n": len(a)}
    p50 = _p50(r)
    p90 = lat.get("p90") if lat.get("p90") is not None else p50
    low = lat.get("min") if lat.get("min") is not None else p50
    return {"box": (p50, p90), "median": p50, "whiskers": (low, lat.get("p99") or p90), "outliers": [], "n": None}


def _fmt(v, spec=".2f", none="-") -> str:
    return none if v is None else format(v, spec)


def _pct(v, spec="+.1%") -> str:
    return "-" if v is None else format(v, spec)


def _verdict_class(c: dict | None) -> str:
    return VERDICT_CLASS.get((c or {}).get("verdict"), "")


def _change(c: dict) -> str:
    """``+23.0% [+15.2%, +31.4%]``: the change of the median with its 95 % interval."""
    lo, hi = c.get("ci95") or (None, None)
    return _pct(c.get("change")) + ("" if lo is None or hi is None else f" [{lo:+.1%}, {hi:+.1%}]")


def _artifacts(runs: list[Run], evals: list[dict]) -> dict[str, dict]:
    """Artifact file name -> its first result (or eval row, for an artifact no run measured), in first-seen order."""
    out: dict[str, dict] = {}
    for run in runs:
        for key, r in run.results():
            first = out.setdefault(key, r)
            if r.get("versions") and not first.get("versions"):  # a newer run of the same artifact recorded its converters
                out[key] = {**first, "versions": r["versions"]}
    for e in evals:
        for row in e["rows"]:
            out.setdefault(Path(row["artifact"]).name, {"artifact": row["artifact"], "target": row.get("target", "-"), "precision": row["precision"]})
    return out


def _evals_by_name(evals: list[dict]) -> dict[str, list[tuple[dict, dict]]]:
    by: dict[str, list] = {}
    for e in evals:
        for row in e["rows"]:
            by.setdefault(Path(row["artifact"]).name, []).append((e, row))
    return by


def _accuracy(row: dict, page: bool = False) -> str:
    """Top-1 and its drop from the reference in points, with the drop's 95 % interval."""
    lo, hi = row["drop_ci95"]
    top1, drop = f"{row['artifact_metrics']['top1']:.2%}", f"drop {row['drop_points']:+.2f} pts"
    ci = "" if lo is None or hi is None else f"95% CI {lo:+.2f} .. {hi:+.2f}"
    if page:
        return f"<b>{top1}</b> <small>{drop}</small>" + (f"<br><small>{ci}</small>" if ci else "")
    return f"{top1} ({drop}{', ' + ci if ci else ''})"


def _fidelity_cells(r: dict, evals: list[tuple[dict, dict]]) -> list[Cell]:
    m, parity = _metrics(r), r.get("parity") or {}
    verdict = {True: Cell("pass", "good"), False: Cell("FAIL", "bad")}.get(parity.get("passed"), Cell("not run" if parity.get("skipped") else "-"))
    failures = parity.get("failures")
    if failures:
        why = "; ".join(map(str, failures)) if isinstance(failures, list) else str(failures)
        verdict = Cell(verdict.text, verdict.cls, f'<span title="{html.escape(why)}">{html.escape(verdict.text)}</span>')
    top1 = "-" if m.get("top1_agreement") is None else f"{m['top1_agreement']:.1%}"
    acc = [(_accuracy(row), "bad" if not row["passed"] else "", _accuracy(row, page=True)) for _, row in evals]
    return [Cell(_fmt(m.get("psnr_db"), ".1f"), "num"), Cell(top1, "num"), verdict,
            Cell("; ".join(a for a, _, _ in acc) or "-", "num" + (" bad" if any(c for _, c, _ in acc) else ""), "<br>".join(h for _, _, h in acc) or None)]  # fmt: skip


def _latency_cell(r: dict | None, slowest: float, color: str) -> Cell:
    """p50 (p90), the verdict against a baseline, and a bar in the run's colour: this p50 against the row's slowest."""
    if r is None:
        return Cell("-", "num")
    lat, c = r["latency_ms"], r.get("comparison")
    p50 = f"{_p50(r):.2f}" + ("" if lat.get("p50") is not None else " (mean)")
    text, page = f"{p50} ({_fmt(lat.get('p90'))})", f"<b>{html.escape(p50)}</b> <small>p90 {_fmt(lat.get('p90'))}</small>"
    if c and c["verdict"] not in ("no baseline", "no samples"):
        text += f" {c['verdict']} {_change(c)}"
        lo, hi = c.get("ci95") or (None, None)
        page += f'<br><span class="verdict">{html.escape(c["verdict"])} {_pct(c.get("change"))}</span>'
        page += "" if lo is None or hi is None else f"<br><small>95% CI {lo:+.1%} .. {hi:+.1%}</small>"
    page += f'<div class="bar" style="width: {100 * _p50(r) / (slowest or 1.0):.0f}%; background: {color}"></div>'
    return Cell(text, "num " + _verdict_class(c), page)


def _matrix(runs: list[Run], artifacts: dict, evals: dict) -> tuple[list, list]:
    head = ["artifact", "precision", "MB"]
    head += [Cell(f"{run.device} · {run.label}", f"run-{i % len(PALETTE)}", f"{html.escape(run.device)}<br><small>{html.escape(run.label)} · "
                  f"{run.data['settings']['threads']} threads</small>") for i, run in enumerate(runs)]  # fmt: skip
    head += ["PSNR dB", "top-1 agreement", "parity", "eval top-1"]
    rows = []
    for name, first in artifacts.items():
        measured = [dict(run.results()).get(name) for run in runs]
        slowest = max((_p50(r) for r in measured if r is not None), default=1.0)
        mb = None if first.get("bytes") is None else first["bytes"] / 1e6
        cells = [_latency_cell(r, slowest, PALETTE[i % len(PALETTE)]) for i, r in enumerate(measured)]
        rows.append([Cell(name, "name"), Cell(str(first["precision"])), Cell(_fmt(mb, ".1f"), "num"), *cells,
                     *_fidelity_cells(first, evals.get(Path(name).name, []))])  # fmt: skip
    return head, rows


def _runs_table(runs: list[Run]) -> tuple[list, list]:
    head = ["run", "device", "kind", "CPU / chip", "cores", "OS", "threads", "warm-up / rounds", "peak RSS MB", "runtimes"]
    rows = []
    for run in runs:
        d, s = run.data["device"], run.data["settings"]
        runtimes = ", ".join(f"{k} {v}" for k, v in (d.get("runtimes") or {}).items() if k != v) or "-"
        rows.append([Cell(run.label, f"name run-{len(rows) % len(PALETTE)}"), Cell(str(d["name"])), Cell(str(d["kind"])), Cell(str(d.get("cpu") or "-")),
                     Cell(str(d.get("cores") or "-"), "num"), Cell(str(d.get("os") or "-")), Cell(str(s["threads"]), "num"),
                     Cell(f"{s.get('warmup', '-')} / {s.get('iters', '-')}", "num"), Cell(_fmt(run.data.get("peak_rss_mb"), ".0f"), "num"), Cell(runtimes)])  # fmt: skip
    return head, rows


def _comparison_table(runs: list[Run]) -> tuple[list, list]:
    head = ["artifact", "run", "baseline p50 ms", "p50 ms", "change of the median", "95% CI", "p", "verdict"]
    rows = []
    for run in runs:
        for key, r in run.results():
            c = r.get("comparison")
            if c is None:
                continue
            cls = _verdict_class(c)
            lo, hi = c.get("ci95") or (None, None)
            rows.append([Cell(key, "name"), Cell(f"{run.device} · {run.label}"), Cell(_fmt(c.get("baseline_p50_ms")), "num"), Cell(_fmt(c.get("p50_ms")), "num"),
                         Cell(_pct(c.get("change")), "num " + cls), Cell("-" if lo is None or hi is None else f"{lo:+.1%} .. {hi:+.1%}", "num"),
                         Cell(_fmt(c.get("p_value"), ".1g"), "num"), Cell(c["verdict"], cls)])  # fmt: skip
    return head, rows


def _accuracy_table(evals: list[dict]) -> tuple[list, list]:
    head = ["artifact", "precision", "data", "images", "reference top-1", "top-1", "drop, points (95% CI)", "top-5", "agreement", "result"]
    rows = []
    for e in evals:
        for row in e["rows"]:
            lo, hi = row["drop_ci95"]
            bound = row.get("bound") or {}
            result = ("pass" if row["passed"] else "FAIL") + (f" (bound {bound['value']:g})" if bound.get("value") is not None else "")
            rows.append([Cell(Path(row["artifact"]).name, "name"), Cell(row["precision"]), Cell(e["data"]), Cell(str(e["n_images"]), "num"),
                         Cell(f"{row['reference']['top1']:.2%}", "num"), Cell(f"{row['artifact_metrics']['top1']:.2%}", "num"),
                         Cell(f"{row['drop_points']:+.2f}" + ("" if lo is None or hi is None else f" ({lo:+.2f} .. {hi:+.2f})"), "num"),
                         Cell(_pct(row["artifact_metrics"].get("top5"), ".2%"), "num"), Cell(f"{row['top1_agreement']:.2%}", "num"),
                         Cell(result, "good" if row["passed"] else "bad")])  # fmt: skip
    return head, rows


def _artifacts_table(artifacts: dict, runs: list[Run]) -> tuple[list, list]:
    head = ["artifact", "model", "target", "precision", "runtime", "input px", "MB", "PSNR dB", "top-1 agreement", "converter versions"]
    rows = []
    for name, r in artifacts.items():
        runtimes = sorted({str(x["runtime"]) for run in runs for key, x in run.results() if key == name}) or ["-"]
        versions = ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items()) or "not recorded in the result"
        mb = None if r.get("bytes") is None else r["bytes"] / 1e6
        top1 = _metrics(r).get("top1_agreement")
        rows.append([Cell(name, "name"), Cell(str(r.get("model", "-"))), Cell(str(r["target"])), Cell(str(r["precision"])), Cell(", ".join(runtimes)),
                     Cell(str(r.get("input_size") or "-"), "num"), Cell(_fmt(mb, ".1f"), "num"), Cell(_fmt(_metrics(r).get("psnr_db"), ".1f"), "num"),
                     Cell("-" if top1 is None else f"{top1:.1%}", "num"), Cell(versions)])  # fmt: skip
    return head, rows


def _measurements_table(runs: list[Run]) -> tuple[list, list]:
    head = ["device", "run", "artifact", "runtime", "threads", "rounds kept", "min", "p50", "p90", "p99", "IQR", "mean ± std", "load ms",
            "peak MB", "RSS+ MB", "compute units", "AI Hub job"]  # fmt: skip
    rows = []
    for run in runs:
        for key, r in run.results():
            lat, samples = r["latency_ms"], r["latency_ms"].get("samples")
            iqr = "-" if not samples else "{:.2f} .. {:.2f}".format(*np.percentile(samples, [25, 75]))
            units = r.get("compute_units") or {}
            order = sorted(units, key=lambda k: (["NPU", "GPU", "CPU"] + [k]).index(k))
            rows.append([Cell(run.device), Cell(run.label), Cell(key, "name"), Cell(str(r["runtime"])), Cell(str(run.data["settings"]["threads"]), "num"),
                         Cell(str(len(samples)) if samples else "-", "num"), *(Cell(_fmt(lat.get(k)), "num") for k in ("min", "p50", "p90", "p99")),
                         Cell(iqr, "num"), Cell(f"{lat['mean']:.2f} ± {lat['std']:.2f}", "num"), Cell(_fmt(r["load_ms"], ".0f"), "num"),
                         Cell(_peak(r), "num"), Cell(_fmt(r.get("rss_delta_mb"), ".0f"), "num"),
                         Cell(" · ".join(f"{k} {units[k]:g}" for k in order) or "-"), _job(r.get("aihub_job"))])  # fmt: skip
    return head, rows


def _peak(r: dict) -> str:
    lo, hi = r.get("peak_memory_range_mb") or (None, None)
    return _fmt(r.get("peak_memory_mb"), ".0f") + ("" if lo is None or hi is None else f" ({lo:.0f}..{hi:.0f})")


def _job(job: dict | None) -> Cell:
    """An AI Hub job: a link to its page (https only: a result file must not put a script in the page)."""
    if not job:
        return Cell("-")
    text, url = job["id"], job["url"]
    link = url if url.startswith("https://") else None
    return Cell(f"[{text}]({link})" if link else text, "", f'<a href="{_esc(link)}">{_esc(text)}</a>' if link else _esc(text))


def _regressions(runs: list[Run]) -> list[tuple[str, str]]:
    """(class, sentence) per run compared with a baseline: its regressions, or that it has none."""
    out = []
    for run in runs:
        base = run.data.get("baseline")
        if not base:
            continue
        bound = "" if base.get("max_regression") is None else f", a regression is a median slower by more than {base['max_regression'] * 100:.3g}% beyond noise"
        where = f"{run.device} · {run.label} against {base.get('file', 'a baseline')}{bound}"
        if base.get("same_device") is False:
            out.append(("bad", f"{where}: the baseline was measured on another device ({base.get('device')}), the comparison mixes machines"))
        bad = [(key, r) for key, r in run.results() if (r.get("comparison") or {}).get("verdict") == "regression"]
        for key, r in bad:
            c = r["comparison"]
            p = "" if c.get("p_value") is None else f", p={c['p_value']:.1g}"
            out.append(("bad", f"regression: {key} on {where}: p50 {_fmt(c.get('baseline_p50_ms'))} -> {_fmt(c.get('p50_ms'))} ms, {_change(c)}{p}"))
        if not bad:
            out.append(("good", f"no regression: {where}"))
    return out


# ---------------------------------------------------------------------------- SVG


def _esc(s) -> str:
    return html.escape(str(s))


def _text_w(chars: int, size: float) -> float:
    return chars * size * CHAR_EM


def _cut(s: str, chars: int) -> str:
    """``s`` in at most ``chars`` characters, the middle replaced by an ellipsis (names differ at both ends)."""
    if len(s) <= chars:
        return s
    head = (chars - 1) // 2
    return s[:head] + "…" + s[len(s) - (chars - 1 - head):]


def _text(x: float, y: float, s: str, size: float = 12, chars: int | None = None, anchor: str = "start", style: str = "") -> str:
    shown = _cut(s, chars) if chars else s
    t = f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{style}>{_esc(shown)}</text>'
    return t if shown == s else f"<g><title>{_esc(s)}</title>{t}</g>"


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{math.ceil(width)}" height="{math.ceil(height)}" viewBox="0 0 {math.ceil(width)} {math.ceil(height)}" '
            f'font-family="{MONO}" role="img" aria-label="{_esc(label)}">' + "".join(body) + "</svg>")  # fmt: skip


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: the first at or below lo, the last at or above hi."""
    span = abs(hi - lo) or abs(hi) or 1.0
    step = 10 ** math.floor(math.log10(span / n))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= n)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    return [m * 10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]


def _axis(lo: float, hi: float, start: float, length: float, from_zero: bool = False, may_log: bool = True):
    """(value -> coordinate, ticks, logarithmic?) for values in [lo, hi]: logarithmic when they span more than 10x."""
    if hi - lo < 1e-9:  # one value: an axis around it
        lo, hi = lo - max(abs(lo) * 0.1, 1e-3), hi + max(abs(hi) * 0.1, 1e-3)
    if may_log and lo > 0 and hi / lo > 10:
        a, b = math.log10(lo / 1.2), math.log10(hi * 1.2)
        ticks = _log_ticks(10**a, 10**b) or [10**a, 10**b]
        return (lambda v: start + length * (math.log10(max(v, 1e-12)) - a) / (b - a)), ticks, True
    ticks = _nice_ticks(0 if from_zero else lo, hi * 1.05 if from_zero else hi)
    return (lambda v: start + length * (v - ticks[0]) / ((ticks[-1] - ticks[0]) or 1.0)), ticks, False


def _tick_label(v: float) -> str:
    return format(v, ".4g")


def _legend_lines() -> list[str]:
    return ["box: middle half of the rounds, bar: median, whiskers: 1.5 IQR, dots: rounds beyond",
            "hatched, dashed: no raw rounds in the result (whiskers min..p99, box p50..p90); diamond: baseline median"]  # fmt: skip


def _distribution_svg(runs: list[Run], order: list[str]) -> str:
    """One panel per device, one box per artifact and run on the device's own latency axis."""
    color = {run.label: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}
    devices: dict[str, list[Run]] = {}
    for run in runs:
        devices.setdefault(run.device, []).append(run)
    panels = {dev: sorted(((key, run, r) for run in rs for key, r in run.results()), key=lambda t: (order.index(t[0]), rs.index(t[1])))
              for dev, rs in devices.items()}  # fmt: skip
    panels = {dev: rows for dev, rows in panels.items() if rows}  # a device whose every artifact was skipped has no panel
    every = [row for rows in panels.values() for row in rows]
    multi = any(len(rs) > 1 for rs in devices.values())
    name_chars = min(NAME_CHARS, max(len(n) for n, _, _ in every))
    run_chars = min(RUN_CHARS, max(len(run.label) for run in runs)) if multi else 0
    values = {id(r): _value_text(r) for _, _, r in every}
    left = 10 + _text_w(name_chars, 12) + 12 + (_text_w(run_chars, 11) + 12 if multi else 0)
    plot_w = 440
    title, legend = "latency per artifact and run (ms)", _legend_lines()
    width = max(left + plot_w + 14 + _text_w(max(len("ms, log"), *map(len, values.values())), 11) + 10, 20 + _text_w(len(title), 14), *(20 + _text_w(len(s), 11) for s in legend))
    chars = int((width - 20) / _text_w(1, 13))
    body, y = [_text(10, 20, title, 14, style=' font-weight="bold"')], 20
    for line in legend:
        y += 16
        body.append(_text(10, y, line, 11, style=' fill="#555"'))
    row_h = 24
    body.append("<defs>" + "".join(f'<pattern id="hatch-{i}" width="5" height="5" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
                                   f'<rect width="3" height="5" fill="{c}"/></pattern>' for i, c in enumerate(PALETTE)) + "</defs>")  # fmt: skip
    for dev, rows in panels.items():
        d = devices[dev][0].data["device"]
        y += 30
        body.append(_text(10, y, f"{dev}: {d['cpu']}" if d.get("cpu") else dev, 13, chars, style=' font-weight="bold"'))
        spreads = {id(r): _spread(r) for _, _, r in rows}
        edges = [v for s in spreads.values() for v in (*s["whiskers"], *s["outliers"])]
        edges += [r["comparison"]["baseline_p50_ms"] for _, _, r in rows if (r.get("comparison") or {}).get("baseline_p50_ms") is not None]
        x, ticks, log = _axis(min(edges), max(edges), left, plot_w)
        y += 8
        for i, (name, run, r) in enumerate(rows):
            top = y + i * row_h
            if i == 0 or rows[i - 1][0] != name:
                if i:
                    body.append(f'<line x1="10" y1="{top:.1f}" x2="{width - 10:.1f}" y2="{top:.1f}" stroke="#e3e3e3"/>')
                body.append(_text(10, top + 16, name, 12, name_chars))
            if multi:
                body.append(_text(left - 12, top + 16, run.label, 11, run_chars, "end", ' fill="#555"'))
            body.append(_box(spreads[id(r)], x, top + 4, row_h - 8, color[run.label], f"hatch-{PALETTE.index(color[run.label])}"))
            base = (r.get("comparison") or {}).get("baseline_p50_ms")
            if base is not None:
                body.append(f'<path d="M{x(base):.1f},{top + 4:.1f} l5,8 -5,8 -5,-8z" fill="#111"><title>baseline median {base:.2f} ms</title></path>')
            fill = VERDICT_COLOR[_verdict_class(r.get("comparison"))]
            body.append(_text(left + plot_w + 14, top + 16, values[id(r)], 11, style=f' fill="{fill}"'))
        y += len(rows) * row_h
        body.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}" stroke="#333"/>')
        for t in ticks:
            body.append(f'<line x1="{x(t):.1f}" y1="{y:.1f}" x2="{x(t):.1f}" y2="{y + 4:.1f}" stroke="#333"/>')
            body.append(_text(x(t), y + 16, _tick_label(t), 11, anchor="middle"))
        body.append(_text(left + plot_w + 14, y + 16, "ms, log" if log else "ms", 11))
        y += 18
    return _svg(width, y + 12, "latency distribution per artifact and device", body)


def _value_text(r: dict) -> str:
    c = r.get("comparison") or {}
    change = "" if c.get("change") is None else f" {c['change']:+.1%} {c['verdict']}"
    return f"{_p50(r):.2f}{change}"


def _box(s: dict, x, top: float, h: float, color: str, hatch: str) -> str:
    """A box plot on one row; a result without raw rounds gets a hatched box and dashed whiskers (its percentiles)."""
    (w0, w1), (b0, b1), mid = s["whiskers"], s["box"], top + h / 2
    raw = s["n"] is not None
    dash = "" if raw else ' stroke-dasharray="3 2"'
    fill = f'fill="{color}" fill-opacity="0.8"' if raw else f'fill="url(#{hatch})" fill-opacity="1"'
    parts = [f'<g stroke="{color}" stroke-width="1.3"{dash}>',
             f'<line x1="{x(w0):.1f}" y1="{mid:.1f}" x2="{x(b0):.1f}" y2="{mid:.1f}"/><line x1="{x(b1):.1f}" y1="{mid:.1f}" x2="{x(w1):.1f}" y2="{mid:.1f}"/>',
             f'<line x1="{x(w0):.1f}" y1="{top + 3:.1f}" x2="{x(w0):.1f}" y2="{top + h - 3:.1f}"/><line x1="{x(w1):.1f}" y1="{top + 3:.1f}" x2="{x(w1):.1f}" y2="{top + h - 3:.1f}"/>',
             f'<rect x="{x(b0):.1f}" y="{top:.1f}" width="{max(x(b1) - x(b0), 1.5):.1f}" height="{h:.1f}" {fill}/>',
             f'<line x1="{x(s["median"]):.1f}" y1="{top:.1f}" x2="{x(s["median"]):.1f}" y2="{top + h:.1f}" stroke="#111" stroke-width="2" stroke-dasharray="none"/></g>']  # fmt: skip
    parts += [f'<circle cx="{x(v):.1f}" cy="{mid:.1f}" r="1.8" fill="{color}"/>' for v in s["outliers"]]
    return "".join(parts)


def _scatter_svg(runs: list[Run], order: list[str]) -> str:
    """Latency vs PSNR: one point per artifact and run, numbered by artifact, coloured by run."""
    pts = [(run, key, r) for run in runs for key, r in run.results() if _metrics(r).get("psnr_db") is not None]
    names = [n for n in order if any(key == n for _, key, _ in pts)]
    color = {run.label: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}
    title = "latency vs fidelity: p50 (ms) against PSNR vs PyTorch (dB)"
    legend = [f"{run.device} · {run.label}" for run in runs] + [f"{i + 1}  {n}" for i, n in enumerate(names)]
    left, top, pw, ph = 64, 40, 460, 280
    key_x = left + pw + 30
    width = max(key_x + 16 + _text_w(min(KEY_CHARS, max(map(len, legend))), 11) + 10, 20 + _text_w(len(title), 14))
    height = max(top + ph + 50, top + 20 + 17 * (len(legend) + 2))
    body = [_text(10, 20, title, 14, style=' font-weight="bold"')]
    if not pts:
        body.append(_text(width / 2, top + ph / 2, "no parity results in the manifests", 13, anchor="middle"))
        return _svg(width, height, "latency versus PSNR", body)
    lat = [_p50(r) for _, _, r in pts]
    psnr = [_metrics(r)["psnr_db"] for _, _, r in pts]
    X, xt, log = _axis(min(lat), max(lat), left, pw, from_zero=True)
    Y, yt, _ = _axis(min(psnr) - 3, max(psnr) + 3, top + ph, -ph, may_log=False)
    body.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    for t in xt:
        body.append(f'<line x1="{X(t):.1f}" y1="{top}" x2="{X(t):.1f}" y2="{top + ph}" stroke="#eee"/>' + _text(X(t), top + ph + 15, _tick_label(t), 11, anchor="middle"))
    for t in yt:
        body.append(f'<line x1="{left}" y1="{Y(t):.1f}" x2="{left + pw}" y2="{Y(t):.1f}" stroke="#eee"/>' + _text(left - 6, Y(t) + 4, _tick_label(t), 11, anchor="end"))
    body.append(_text(left + pw / 2, top + ph + 34, "p50 latency (ms" + (", log scale)" if log else ")"), 12, anchor="middle"))
    body.append(f'<text x="16" y="{top + ph / 2:.1f}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {top + ph / 2:.1f})">PSNR (dB)</text>')
    placed: list[tuple[float, float, float, float]] = [(X(v) - 6, Y(p) - 6, X(v) + 6, Y(p) + 6) for v, p in zip(lat, psnr)]
    for (run, key, r), v, p in zip(pts, lat, psnr):
        cx, cy, label = X(v), Y(p), str(names.index(key) + 1)
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color[run.label]}"><title>{_esc(key)} on {_esc(run.device)}: {v:.2f} ms, {p:.1f} dB</title></circle>')
        lx, ly = _place(cx, cy, _text_w(len(label), 11), placed, (left + 2, top + 2, left + pw - 2, top + ph - 2))
        body.append(_text(lx, ly, label, 11, style=' font-weight="bold"'))
    ky = top + 4
    for i, line in enumerate(legend):
        if i == len(runs):
            ky += 10
        ky += 17
        if i < len(runs):
            body.append(f'<rect x="{key_x}" y="{ky - 10}" width="10" height="10" fill="{color[runs[i].label]}"/>')
        body.append(_text(key_x + 16, ky, line, 11, KEY_CHARS))
    return _svg(width, height, "latency versus PSNR", body)


def _place(cx: float, cy: float, w: float, placed: list, box: tuple) -> tuple[float, float]:
    """A spot for a point's label (baseline y) that overlaps no other label or point and stays in the plot."""
    h = 11
    for dx, dy in ((8, 4), (-8 - w, 4), (-w / 2, -9), (-w / 2, 17), (8, -8), (8, 16), (-8 - w, -8), (-8 - w, 16)):
        x0, y0 = cx + dx, cy + dy - h + 2
        rect = (x0, y0, x0 + w, y0 + h)
        inside = box[0] <= rect[0] and rect[2] <= box[2] and box[1] <= rect[1] and rect[3] <= box[3]
        if inside and not any(rect[0] < p[2] and p[0] < rect[2] and rect[1] < p[3] and p[1] < rect[3] for p in placed):
            placed.append(rect)
            return x0, cy + dy
    x0 = min(max(cx + 8, box[0]), box[2] - w)
    return x0, min(max(cy + 4, box[1] + h), box[3])


# ---------------------------------------------------------------------------- the two files


@dataclass(frozen=True)
class Section:
    title: str
    note: str
    head: list
    rows: list
    figure: str = ""  # html after the table (an SVG)

    def without_empty_columns(self) -> "Section":
        title = lambda h: h.text if isinstance(h, Cell) else h  # noqa: E731
        keep = [i for i, h in enumerate(self.head) if title(h) not in OPTIONAL_COLUMNS or any(row[i].text != "-" for row in self.rows)]
        return Section(self.title, self.note, [self.head[i] for i in keep], [[row[i] for i in keep] for row in self.rows], self.figure)


def sections(runs: list[Run], evals: list[dict]) -> list[Section]:
    artifacts = _artifacts(runs, evals)
    order = list(artifacts)
    measured = any(run.data["results"] for run in runs)
    out = [
        Section("Runs", "One column of the latency matrix per run (result file).", *_runs_table(runs)),
        Section("Latency", "p50 latency in ms (p90) per artifact and run, after warm-up, artifacts interleaved round by round; "
                "against a baseline, the change of the median with its 95% interval. Fidelity vs PyTorch beside it.",
                *_matrix(runs, artifacts, _evals_by_name(evals)), _distribution_svg(runs, order) if measured else ""),  # fmt: skip
    ]
    comparison = _comparison_table(runs)
    if comparison[1]:
        methods = sorted({str(run.data["baseline"].get("method")) for run in runs if run.data.get("baseline")})
        out.append(Section("Against the baseline", "Regression: " + "; ".join(methods) if methods else "", *comparison))
    if evals:
        out.append(Section("Accuracy", "Labeled evaluation (`mvit-deploy eval`): the artifact's top-1 against its PyTorch reference on the same images.", *_accuracy_table(evals)))
    out.append(Section("Artifacts", "Size, precision, target and the converters that wrote each artifact (from its manifest).", *_artifacts_table(artifacts, runs),
                       _scatter_svg(runs, order)))  # fmt: skip
    out.append(Section("Measurements", "Every result in ms; IQR from the raw rounds; peak MB as the device reports it, RSS+ the resident memory loading and running added.",
                       *_measurements_table(runs)))  # fmt: skip
    return [s.without_empty_columns() for s in out]


def _summary(runs: list[Run], evals: list[dict]) -> str:
    devices = {run.device for run in runs}
    return (f"{len(runs)} run(s) on {len(devices)} device(s), {len(_artifacts(runs, evals))} artifact(s), "
            f"{sum(len(run.data['results']) for run in runs)} measurement(s){f', {len(evals)} eval result(s)' if evals else ''}.")  # fmt: skip


def _skip_job(skipped: dict, markdown: bool) -> str:
    job = skipped.get("aihub_job")
    if not isinstance(job, dict) or not all(isinstance(job.get(k), str) for k in ("id", "url")):
        return ""
    cell = _job(job)
    return f" (AI Hub job {cell.text})" if markdown else f" (AI Hub job {cell.html})"


def _md_cell(c) -> str:
    c = c if isinstance(c, Cell) else Cell(str(c))
    text = " ".join(c.text.replace("|", "\\|").split())
    if "name" in c.cls.split():
        return f"`{text.replace('`', chr(39))}`"
    return f"**{text}**" if "bad" in c.cls.split() else text


def markdown(runs: list[Run], evals: list[dict]) -> str:
    lines = ["# mvit-deploy latency report", "", _summary(runs, evals), ""]
    lines += [f"- {'**' + s + '**' if cls == 'bad' else s}" for cls, s in _regressions(runs)]
    for s in sections(runs, evals):
        lines += ["", f"## {s.title}", "", s.note, "", "| " + " | ".join(map(_md_cell, s.head)) + " |", "|" + "---|" * len(s.head)]
        lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in s.rows]
    skipped = [(run, s) for run in runs for s in run.data.get("skipped", [])]
    if skipped:
        lines += ["", "## Not measured", ""]
        lines += [f"- `{Path(str(s['artifact'])).name}` on {run.device} · {run.label}: {s['reason']}" + _skip_job(s, markdown=True) for run, s in skipped]
    return "\n".join(lines) + "\n"


def _html_cell(c, tag: str = "td") -> str:
    c = c if isinstance(c, Cell) else Cell(str(c))
    cls = f' class="{c.cls.strip()}"' if c.cls.strip() else ""
    return f"<{tag}{cls}>{c.html if c.html is not None else _esc(c.text)}</{tag}>"


STYLE = """
body { font-family: system-ui, "DejaVu Sans", sans-serif; margin: 24px; color: #222; background: #fff; }
h2 { margin: 28px 0 4px; font-size: 18px; } p.note { color: #555; margin: 0 0 6px; font-size: 13px; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 6px 0 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; font-size: 13px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
th { background: #eef2f7; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.name { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; min-width: 16em; overflow-wrap: anywhere; }
td.bad { background: #fdecea; } td.bad .verdict, td.bad:not(.num) { color: #b71c1c; font-weight: 600; }
td.good { background: #e8f5e9; } td.good .verdict { color: #1b5e20; }
small { color: #555; }
.callout { padding: 6px 12px; margin: 4px 0; border-left: 4px solid; font-size: 14px; }
.callout.bad { border-color: #c62828; background: #fdecea; } .callout.good { border-color: #2e7d32; background: #e8f5e9; }
figure { margin: 8px 0 16px; overflow-x: auto; }
div.bar { height: 4px; margin-top: 3px; min-width: 2px; }
""" + "".join(f"th.run-{i} {{ border-top: 6px solid {c}; }} td.run-{i} {{ border-left: 6px solid {c}; }}\n" for i, c in enumerate(PALETTE))  # a run's colour in the drawings


def html_report(runs: list[Run], evals: list[dict]) -> str:
    callouts = "".join(f'<div class="callout {cls}">{_esc(s)}</div>' for cls, s in _regressions(runs))
    body = []
    for s in sections(runs, evals):
        head = "".join(_html_cell(h, "th") for h in s.head)
        rows = "".join("<tr>" + "".join(map(_html_cell, row)) + "</tr>" for row in s.rows)
        body.append(f'<h2>{_esc(s.title)}</h2><p class="note">{_esc(s.note)}</p><div class="wide"><table><thead><tr>{head}</tr></thead>'
                    f"<tbody>{rows}</tbody></table></div>" + (f"<figure>{s.figure}</figure>" if s.figure else ""))  # fmt: skip
    skipped = [(run, s) for run in runs for s in run.data.get("skipped", [])]
    if skipped:
        body.append("<h2>Not measured</h2><ul>" + "".join(f"<li><code>{_esc(Path(str(s['artifact'])).name)}</code> on {_esc(run.device)} · {_esc(run.label)}: "
                                                          f"{_esc(s['reason'])}{_skip_job(s, markdown=False)}</li>" for run, s in skipped) + "</ul>")  # fmt: skip
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>mvit-deploy latency report</title><style>{STYLE}</style></head><body>\n'
            f"<h1>mvit-deploy latency report</h1><p>{_esc(_summary(runs, evals))}</p>{callouts}\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def write_report(result_files, out_dir, eval_files=()) -> tuple[Path, Path]:
    result_files = list(result_files)
    runs = _runs(result_files, load_results(result_files))
    evals = load_evals(eval_files)
    with output_folder(Path(out_dir)) as out:  # a run that fails leaves no folder it created
        md, page = out / "report.md", out / "report.html"
        with staged(md) as tmp:
            tmp.write_text(markdown(runs, evals))
        with staged(page) as tmp:
            tmp.write_text(html_report(runs, evals))
    return md, page
