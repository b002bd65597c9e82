"""Turn bench result JSONs into report.md and a self-contained report.html (inline SVG plots)."""

from __future__ import annotations

import html
import math
from pathlib import Path

from .artifact import output_folder, parse_json, staged
from .bench.local import SCHEMA
from .errors import UsageError

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


FROM_BENCH = "pass files written by `mvit-deploy bench --json FILE`"
# The numbers a report reads from each result (bench/local.py documents the whole schema); None: not measured.
RESULT_NUMBERS = {"load_ms": False, "bytes": True}
LATENCY_NUMBERS = {"mean": False, "std": False, "p50": True, "p90": True}


def load_results(paths) -> list[dict]:
    runs = []
    for p in map(Path, paths):
        if p.is_dir():
            raise UsageError(f"result file {p} is a directory", FROM_BENCH)
        try:
            data = parse_json(p.read_text())
        except FileNotFoundError:
            raise UsageError(f"result file {p} does not exist", FROM_BENCH) from None
        except (ValueError, UnicodeDecodeError) as e:
            raise UsageError(f"{p} is not valid JSON ({getattr(e, 'msg', e)})", FROM_BENCH) from None
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
    """The first thing the report needs that ``run`` lacks, or None."""

    def is_number(v, none_ok: bool) -> bool:
        return (v is None and none_ok) or (isinstance(v, (int, float)) and not isinstance(v, bool))

    device, settings, results = run.get("device"), run.get("settings"), run.get("results")
    if not isinstance(device, dict) or not {"name", "kind"} <= device.keys():
        return "no device {name, kind}"
    if not isinstance(settings, dict) or not is_number(settings.get("threads"), False):
        return "no settings.threads"
    if not isinstance(results, list):
        return "no results list"
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            return f"results[{i}] is not an object"
        missing = [k for k in ("artifact", "model", "target", "precision", "runtime", "latency_ms", *RESULT_NUMBERS) if k not in r]
        if missing:
            return f"results[{i}] has no {', '.join(missing)}"
        latency = r["latency_ms"]
        if not isinstance(latency, dict) or not all(is_number(latency.get(k), none_ok) for k, none_ok in LATENCY_NUMBERS.items()):
            return f"results[{i}].latency_ms needs the numbers {', '.join(LATENCY_NUMBERS)}"
        bad = [k for k, none_ok in RESULT_NUMBERS.items() if not is_number(r[k], none_ok)]
        if bad:
            return f"results[{i}].{bad[0]} is not a number"
        parity = r.get("parity")
        if parity is not None and not (isinstance(parity, dict) and isinstance(parity.get("metrics") or {}, dict)):
            return f"results[{i}].parity is not an object with metrics"
    skipped = run.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(s, dict) and {"artifact", "reason"} <= s.keys() for s in skipped):
        return "skipped is not a list of {artifact, reason}"
    return None


def rows(runs: list[dict]) -> list[dict]:
    out = []
    for run in runs:
        dev = run["device"]
        for r in run["results"]:
            parity = r.get("parity") or {}
            metrics = parity.get("metrics") or {}
            out.append(
                {
                    "device": f"{dev['name']} ({dev['kind']})",
                    "cpu": dev.get("cpu") or "",
                    "artifact": Path(r["artifact"]).name,
                    "label": f"{r['model']} {r['target']} {r['precision']}",
                    "runtime": r["runtime"],
                    "threads": run["settings"]["threads"],
                    "p50": r["latency_ms"]["p50"] if r["latency_ms"].get("p50") is not None else r["latency_ms"]["mean"],
                    "p90": r["latency_ms"].get("p90"),
                    "mean": r["latency_ms"]["mean"],
                    "std": r["latency_ms"]["std"],
                    "load_ms": r["load_ms"],
                    "mb": None if r["bytes"] is None else r["bytes"] / 1e6,
                    "psnr": metrics.get("psnr_db"),
                    "top1": metrics.get("top1_agreement"),
                    "parity": {True: "pass", False: "FAIL"}.get(parity.get("passed"), "-"),
                }
            )
    return out


def _fmt(v, spec=".2f", none="-"):
    return none if v is None else format(v, spec)


def markdown(table: list[dict]) -> str:
    lines = [
        "# mvit-deploy latency report",
        "",
        "| device | artifact | runtime | threads | p50 ms | p90 ms | mean ms | load ms | MB | PSNR dB | top-1 | parity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        top1 = _fmt(r["top1"] * 100 if r["top1"] is not None else None, ".0f") + ("%" if r["top1"] is not None else "")
        lines.append(
            f"| {r['device']} | {r['artifact']} | {r['runtime']} | {r['threads']} | {_fmt(r['p50'])} | {_fmt(r['p90'])} | "
            f"{_fmt(r['mean'])} | {_fmt(r['load_ms'], '.0f')} | {_fmt(r['mb'], '.1f')} | {_fmt(r['psnr'], '.1f')} | {top1} | {r['parity']} |"
        )
    return "\n".join(lines) + "\n"


def _bar_chart(table: list[dict]) -> str:
    """Horizontal bars: p50 latency per artifact, grouped by device."""
    width, bar_h, left = 760, 22, 330
    peak = max(r["p50"] for r in table) or 1.0
    height = 40 + len(table) * (bar_h + 6)
    devices = sorted({r["device"] for r in table})
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="latency per device and target">']
    parts.append('<text x="10" y="18" font-size="14" font-weight="bold">p50 latency (ms) per device and target</text>')
    for i, r in enumerate(table):
        y = 30 + i * (bar_h + 6)
        w = (width - left - 70) * r["p50"] / peak
        color = PALETTE[devices.index(r["device"]) % len(PALETTE)]
        label = html.escape(f"{r['device'].split(' (')[0]} · {r['label']}")
        parts.append(f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 5:.1f}" y="{y + 15}" font-size="12">{r["p50"]:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _scatter(table: list[dict]) -> str:
    """Latency vs PSNR (fidelity): the trade-off each precision buys."""
    pts = [r for r in table if r["psnr"] is not None and math.isfinite(r["psnr"])]
    width, height, pad = 760, 360, 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="latency versus PSNR">']
    parts.append('<text x="10" y="18" font-size="14" font-weight="bold">latency vs fidelity (PSNR vs PyTorch, dB)</text>')
    parts.append(f'<line x1="{pad}" y1="{height - pad}" x2="{width - 20}" y2="{height - pad}" stroke="#333"/>')
    parts.append(f'<line x1="{pad}" y1="30" x2="{pad}" y2="{height - pad}" stroke="#333"/>')
    parts.append(f'<text x="{width / 2}" y="{height - 20}" font-size="12" text-anchor="middle">p50 latency (ms)</text>')
    parts.append(f'<text x="16" y="{height / 2}" font-size="12" transform="rotate(-90 16 {height / 2})" text-anchor="middle">PSNR (dB)</text>')
    if pts:
        x_max = max(r["p50"] for r in pts) * 1.1 or 1
        y_min, y_max = min(r["psnr"] for r in pts) - 5, max(r["psnr"] for r in pts) + 5
        devices = sorted({r["device"] for r in table})
        for r in pts:
            x = pad + (width - pad - 30) * r["p50"] / x_max
            y = (height - pad) - (height - pad - 40) * (r["psnr"] - y_min) / max(y_max - y_min, 1e-9)
            color = PALETTE[devices.index(r["device"]) % len(PALETTE)]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{color}"/>')
            parts.append(f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" font-size="11">{html.escape(r["label"])}</text>')
        parts.append(f'<text x="{pad}" y="{height - pad + 16}" font-size="11">0</text>')
        parts.append(f'<text x="{width - 40}" y="{height - pad + 16}" font-size="11">{x_max:.1f}</text>')
        parts.append(f'<text x="{pad - 6}" y="40" font-size="11" text-anchor="end">{y_max:.0f}</text>')
        parts.append(f'<text x="{pad - 6}" y="{height - pad}" font-size="11" text-anchor="end">{y_min:.0f}</text>')
    else:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="13">no parity results in the manifests</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(table: list[dict], runs: list[dict]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("device", "CPU", "artifact", "runtime", "threads", "p50 ms", "p90 ms", "mean ms", "load ms", "MB", "PSNR dB", "top-1", "parity"))
    body = []
    for r in table:
        top1 = "-" if r["top1"] is None else f"{r['top1']:.0%}"
        cells = (r["device"], r["cpu"], r["artifact"], r["runtime"], r["threads"], _fmt(r["p50"]), _fmt(r["p90"]), _fmt(r["mean"]), _fmt(r["load_ms"], ".0f"), _fmt(r["mb"], ".1f"), _fmt(r["psnr"], ".1f"), top1, r["parity"])
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    skipped = [s for run in runs for s in run.get("skipped", [])]
    skipped_html = "".join(f"<li>{html.escape(Path(s['artifact']).name)}: {html.escape(s['reason'])}</li>" for s in skipped)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mvit-deploy latency report</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; background: #fff; }}
table {{ border-collapse: collapse; margin: 12px 0 24px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; font-size: 13px; }}
th {{ background: #eef2f7; }}
</style></head><body>
<h1>mvit-deploy latency report</h1>
<p>{len(runs)} run(s), {len(table)} measurement(s). Latency after warm-up, artifacts interleaved round by round.</p>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
{_bar_chart(table) if table else ""}
<br>
{_scatter(table)}
{f"<h2>Not measured</h2><ul>{skipped_html}</ul>" if skipped else ""}
</body></html>
"""


def write_report(result_files, out_dir) -> tuple[Path, Path]:
    runs = load_results(result_files)
    table = rows(runs)
    with output_folder(Path(out_dir)) as out:  # a run that fails leaves no folder it created
        md, page = out / "report.md", out / "report.html"
        with staged(md) as tmp:
            tmp.write_text(markdown(table))
        with staged(page) as tmp:
            tmp.write_text(html_report(table, runs))
    return md, page
