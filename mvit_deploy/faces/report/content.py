"""What the report shows: runs, artifacts and the rows of each table, as cells both report.md and report.html render."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
VERDICT_CLASS = {"regression": "bad", "faster": "good"}  # "within noise", "within bound", "no baseline": neutral


@dataclass(frozen=True)
class Run:
    label: str  # the result file's name, with as much of its folder as tells it from the other runs'
    data: dict
    keys: tuple[str, ...]  # per result: the artifact's file name, with its folder where this run holds two of that name

    @property
    def device(self) -> str:
        d = self.data["device"]
        return f"{d['name']} ({d['kind']}{', emulated: not a latency' if d.get('emulated') else ''})"

    def results(self) -> list[tuple[str, dict]]:
        return list(zip(self.keys, self.data["results"], strict=True))


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
    return [
        Run(label, d, tuple(_short_names([r["artifact"] for r in d["results"]])))
        for label, d in zip(labels, datas, strict=True)
    ]


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
        return {
            "box": (q1, q3),
            "median": med,
            "whiskers": (lo, hi),
            "outliers": a[(a < lo) | (a > hi)].tolist(),
            "n": len(a),
        }
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
            if r.get("versions") and not first.get(
                "versions"
            ):  # a newer run of the same artifact recorded its converters
                out[key] = {**first, "versions": r["versions"]}
    for e in evals:
        for row in e["rows"]:
            out.setdefault(
                Path(row["artifact"]).name,
                {"artifact": row["artifact"], "target": row.get("target", "-"), "precision": row["precision"]},
            )
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
    verdict = {True: Cell("pass", "good"), False: Cell("FAIL", "bad")}.get(
        parity.get("passed"), Cell("not run" if parity.get("skipped") else "-")
    )
    failures = parity.get("failures")
    if failures:
        why = "; ".join(map(str, failures)) if isinstance(failures, list) else str(failures)
        verdict = Cell(
            verdict.text, verdict.cls, f'<span title="{html.escape(why)}">{html.escape(verdict.text)}</span>'
        )
    top1 = "-" if m.get("top1_agreement") is None else f"{m['top1_agreement']:.1%}"
    acc = [(_accuracy(row), "bad" if not row["passed"] else "", _accuracy(row, page=True)) for _, row in evals]
    return [
        Cell(_fmt(m.get("psnr_db"), ".1f"), "num"),
        Cell(top1, "num"),
        verdict,
        Cell(
            "; ".join(a for a, _, _ in acc) or "-",
            "num" + (" bad" if any(c for _, c, _ in acc) else ""),
            "<br>".join(h for _, _, h in acc) or None,
        ),
    ]


def _latency_cell(r: dict | None, slowest: float, color: str) -> Cell:
    """p50 (p90), the verdict against a baseline, and a bar in the run's colour: this p50 against the row's slowest."""
    if r is None:
        return Cell("-", "num")
    lat, c = r["latency_ms"], r.get("comparison")
    p50 = f"{_p50(r):.2f}" + ("" if lat.get("p50") is not None else " (mean)")
    text, page = (
        f"{p50} ({_fmt(lat.get('p90'))})",
        f"<b>{html.escape(p50)}</b> <small>p90 {_fmt(lat.get('p90'))}</small>",
    )
    if c and c["verdict"] not in ("no baseline", "no samples"):
        text += f" {c['verdict']} {_change(c)}"
        lo, hi = c.get("ci95") or (None, None)
        page += f'<br><span class="verdict">{html.escape(c["verdict"])} {_pct(c.get("change"))}</span>'
        page += "" if lo is None or hi is None else f"<br><small>95% CI {lo:+.1%} .. {hi:+.1%}</small>"
    page += f'<div class="bar" style="width: {100 * _p50(r) / (slowest or 1.0):.0f}%; background: {color}"></div>'
    return Cell(text, "num " + _verdict_class(c), page)


def _matrix(runs: list[Run], artifacts: dict, evals: dict) -> tuple[list, list]:
    head = ["artifact", "precision", "MB"]
    head += [
        Cell(
            f"{run.device} · {run.label}",
            f"run-{i % len(PALETTE)}",
            f"{html.escape(run.device)}<br><small>{html.escape(run.label)} · "
            f"{run.data['settings']['threads']} threads</small>",
        )
        for i, run in enumerate(runs)
    ]
    head += ["PSNR dB", "top-1 agreement", "parity", "eval top-1"]
    rows = []
    for name, first in artifacts.items():
        measured = [dict(run.results()).get(name) for run in runs]
        slowest = max((_p50(r) for r in measured if r is not None), default=1.0)
        mb = None if first.get("bytes") is None else first["bytes"] / 1e6
        cells = [_latency_cell(r, slowest, PALETTE[i % len(PALETTE)]) for i, r in enumerate(measured)]
        rows.append(
            [
                Cell(name, "name"),
                Cell(str(first["precision"])),
                Cell(_fmt(mb, ".1f"), "num"),
                *cells,
                *_fidelity_cells(first, evals.get(Path(name).name, [])),
            ]
        )
    return head, rows


def _runs_table(runs: list[Run]) -> tuple[list, list]:
    head = [
        "run",
        "device",
        "kind",
        "CPU / chip",
        "cores",
        "OS",
        "threads",
        "warm-up / rounds",
        "peak RSS MB",
        "runtimes",
    ]
    rows = []
    for run in runs:
        d, s = run.data["device"], run.data["settings"]
        runtimes = ", ".join(f"{k} {v}" for k, v in (d.get("runtimes") or {}).items() if k != v) or "-"
        rows.append(
            [
                Cell(run.label, f"name run-{len(rows) % len(PALETTE)}"),
                Cell(str(d["name"])),
                Cell(f"{d['kind']}, emulated ({d['emulated']})" if d.get("emulated") else str(d["kind"])),
                Cell(str(d.get("cpu") or "-")),
                Cell(str(d.get("cores") or "-"), "num"),
                Cell(str(d.get("os") or "-")),
                Cell(str(s["threads"]), "num"),
                Cell(f"{s.get('warmup', '-')} / {s.get('iters', '-')}", "num"),
                Cell(_fmt(run.data.get("peak_rss_mb"), ".0f"), "num"),
                Cell(runtimes),
            ]
        )
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
            rows.append(
                [
                    Cell(key, "name"),
                    Cell(f"{run.device} · {run.label}"),
                    Cell(_fmt(c.get("baseline_p50_ms")), "num"),
                    Cell(_fmt(c.get("p50_ms")), "num"),
                    Cell(_pct(c.get("change")), "num " + cls),
                    Cell("-" if lo is None or hi is None else f"{lo:+.1%} .. {hi:+.1%}", "num"),
                    Cell(_fmt(c.get("p_value"), ".1g"), "num"),
                    Cell(c["verdict"], cls),
                ]
            )
    return head, rows


def _accuracy_table(evals: list[dict]) -> tuple[list, list]:
    head = [
        "artifact",
        "precision",
        "data",
        "images",
        "reference top-1",
        "top-1",
        "drop, points (95% CI)",
        "top-5",
        "agreement",
        "result",
    ]
    rows = []
    for e in evals:
        for row in e["rows"]:
            lo, hi = row["drop_ci95"]
            bound = row.get("bound") or {}
            result = ("pass" if row["passed"] else "FAIL") + (
                f" (bound {bound['value']:g})" if bound.get("value") is not None else ""
            )
            rows.append(
                [
                    Cell(Path(row["artifact"]).name, "name"),
                    Cell(row["precision"]),
                    Cell(e["data"]),
                    Cell(str(e["n_images"]), "num"),
                    Cell(f"{row['reference']['top1']:.2%}", "num"),
                    Cell(f"{row['artifact_metrics']['top1']:.2%}", "num"),
                    Cell(
                        f"{row['drop_points']:+.2f}"
                        + ("" if lo is None or hi is None else f" ({lo:+.2f} .. {hi:+.2f})"),
                        "num",
                    ),
                    Cell(_pct(row["artifact_metrics"].get("top5"), ".2%"), "num"),
                    Cell(f"{row['top1_agreement']:.2%}", "num"),
                    Cell(result, "good" if row["passed"] else "bad"),
                ]
            )
    return head, rows


def _artifacts_table(artifacts: dict, runs: list[Run]) -> tuple[list, list]:
    head = [
        "artifact",
        "model",
        "target",
        "precision",
        "runtime",
        "input px",
        "MB",
        "PSNR dB",
        "top-1 agreement",
        "converter versions",
    ]
    rows = []
    for name, r in artifacts.items():
        runtimes = sorted({str(x["runtime"]) for run in runs for key, x in run.results() if key == name}) or ["-"]
        versions = ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items()) or "not recorded in the result"
        mb = None if r.get("bytes") is None else r["bytes"] / 1e6
        top1 = _metrics(r).get("top1_agreement")
        rows.append(
            [
                Cell(name, "name"),
                Cell(str(r.get("model", "-"))),
                Cell(str(r["target"])),
                Cell(str(r["precision"])),
                Cell(", ".join(runtimes)),
                Cell(str(r.get("input_size") or "-"), "num"),
                Cell(_fmt(mb, ".1f"), "num"),
                Cell(_fmt(_metrics(r).get("psnr_db"), ".1f"), "num"),
                Cell("-" if top1 is None else f"{top1:.1%}", "num"),
                Cell(versions),
            ]
        )
    return head, rows


def _measurements_table(runs: list[Run]) -> tuple[list, list]:
    head = [
        "device",
        "run",
        "artifact",
        "runtime",
        "threads",
        "rounds kept",
        "min",
        "p50",
        "p90",
        "p99",
        "IQR",
        "mean ± std",
        "load ms",
        "peak MB",
        "RSS+ MB",
        "compute units",
        "AI Hub job",
    ]
    rows = []
    for run in runs:
        for key, r in run.results():
            lat, samples = r["latency_ms"], r["latency_ms"].get("samples")
            iqr = "-" if not samples else "{:.2f} .. {:.2f}".format(*np.percentile(samples, [25, 75]))
            units = r.get("compute_units") or {}
            order = sorted(units, key=lambda k: (["NPU", "GPU", "CPU"] + [k]).index(k))
            rows.append(
                [
                    Cell(run.device),
                    Cell(run.label),
                    Cell(key, "name"),
                    Cell(str(r["runtime"])),
                    Cell(str(run.data["settings"]["threads"]), "num"),
                    Cell(str(len(samples)) if samples else "-", "num"),
                    *(Cell(_fmt(lat.get(k)), "num") for k in ("min", "p50", "p90", "p99")),
                    Cell(iqr, "num"),
                    Cell(f"{lat['mean']:.2f} ± {lat['std']:.2f}", "num"),
                    Cell(_fmt(r["load_ms"], ".0f"), "num"),
                    Cell(_peak(r), "num"),
                    Cell(_fmt(r.get("rss_delta_mb"), ".0f"), "num"),
                    Cell(" · ".join(f"{k} {units[k]:g}" for k in order) or "-"),
                    _job(r.get("aihub_job")),
                ]
            )
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
    return Cell(
        f"[{text}]({link})" if link else text, "", f'<a href="{_esc(link)}">{_esc(text)}</a>' if link else _esc(text)
    )


def _regressions(runs: list[Run]) -> list[tuple[str, str]]:
    """(class, sentence) per run compared with a baseline: its regressions, or that it has none."""
    out = []
    for run in runs:
        base = run.data.get("baseline")
        if not base:
            continue
        bound = (
            ""
            if base.get("max_regression") is None
            else f", a regression is a median slower by more than {base['max_regression'] * 100:.3g}% beyond noise"
        )
        where = f"{run.device} · {run.label} against {base.get('file', 'a baseline')}{bound}"
        if base.get("same_device") is False:
            out.append(
                (
                    "bad",
                    f"{where}: the baseline was measured on another device ({base.get('device')}), the comparison "
                    "mixes machines",
                )
            )
        bad = [(key, r) for key, r in run.results() if (r.get("comparison") or {}).get("verdict") == "regression"]
        for key, r in bad:
            c = r["comparison"]
            p = "" if c.get("p_value") is None else f", p={c['p_value']:.1g}"
            out.append(
                (
                    "bad",
                    f"regression: {key} on {where}: p50 {_fmt(c.get('baseline_p50_ms'))} -> {_fmt(c.get('p50_ms'))} "
                    f"ms, {_change(c)}{p}",
                )
            )
        if not bad:
            out.append(("good", f"no regression: {where}"))
    return out


def _esc(s) -> str:
    return html.escape(str(s))
