"""Turn bench result JSONs (and ``eval --json`` outputs) into report.md and a self-contained report.html.

The page, top to bottom: regressions against a baseline; the runs and their devices; a latency
matrix (rows: artifacts, columns: runs, cells: p50 with p90 and the baseline verdict, fidelity
beside it); box plots of every artifact's rounds per device; the baseline comparison; accuracy
from eval; latency vs PSNR; the artifacts' metadata; every measurement. report.md holds the same
tables. Inline SVG, no script, nothing fetched.

``faces/results.py`` reads and checks the inputs, content.py builds the tables' cells, charts.py draws the
SVG; this module lays out the two files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...artifact import output_folder, staged
from ...results import load_evals, load_results
from .charts import _distribution_svg, _scatter_svg
from .content import (
    PALETTE,
    Cell,
    Run,
    _accuracy_table,
    _artifacts,
    _artifacts_table,
    _comparison_table,
    _esc,
    _evals_by_name,
    _job,
    _matrix,
    _measurements_table,
    _regressions,
    _runs,
    _runs_table,
)

__all__ = ["load_evals", "load_results", "write_report"]

OPTIONAL_COLUMNS = {
    "eval top-1",
    "rounds kept",
    "IQR",
    "peak MB",
    "RSS+ MB",
    "compute units",
    "AI Hub job",
}  # shown when some result has them


@dataclass(frozen=True)
class Section:
    title: str
    note: str
    head: list
    rows: list
    figure: str = ""  # html after the table (an SVG)

    def without_empty_columns(self) -> Section:
        title = lambda h: h.text if isinstance(h, Cell) else h  # noqa: E731
        keep = [
            i
            for i, h in enumerate(self.head)
            if title(h) not in OPTIONAL_COLUMNS or any(row[i].text != "-" for row in self.rows)
        ]
        return Section(
            self.title,
            self.note,
            [self.head[i] for i in keep],
            [[row[i] for i in keep] for row in self.rows],
            self.figure,
        )


def sections(runs: list[Run], evals: list[dict]) -> list[Section]:
    artifacts = _artifacts(runs, evals)
    order = list(artifacts)
    measured = any(run.data["results"] for run in runs)
    out = [
        Section("Runs", "One column of the latency matrix per run (result file).", *_runs_table(runs)),
        Section(
            "Latency",
            "p50 latency in ms (p90) per artifact and run, after warm-up, artifacts interleaved round by round; "
            "against a baseline, the change of the median with its 95% interval. Fidelity vs PyTorch beside it.",
            *_matrix(runs, artifacts, _evals_by_name(evals)),
            _distribution_svg(runs, order) if measured else "",
        ),
    ]
    comparison = _comparison_table(runs)
    if comparison[1]:
        methods = sorted({str(run.data["baseline"].get("method")) for run in runs if run.data.get("baseline")})
        out.append(Section("Against the baseline", "Regression: " + "; ".join(methods) if methods else "", *comparison))
    if evals:
        out.append(
            Section(
                "Accuracy",
                "Labeled evaluation (`mvit-deploy eval`): the artifact's top-1 against its PyTorch reference on the "
                "same images.",
                *_accuracy_table(evals),
            )
        )
    out.append(
        Section(
            "Artifacts",
            "Size, precision, target and the converters that wrote each artifact (from its manifest).",
            *_artifacts_table(artifacts, runs),
            _scatter_svg(runs, order),
        )
    )
    out.append(
        Section(
            "Measurements",
            "Every result in ms; IQR from the raw rounds; peak MB as the device reports it, RSS+ the resident memory "
            "loading and running added.",
            *_measurements_table(runs),
        )
    )
    return [s.without_empty_columns() for s in out]


def _summary(runs: list[Run], evals: list[dict]) -> str:
    devices = {run.device for run in runs}
    return (
        f"{len(runs)} run(s) on {len(devices)} device(s), {len(_artifacts(runs, evals))} artifact(s), "
        f"{sum(len(run.data['results']) for run in runs)} "
        f"measurement(s){f', {len(evals)} eval result(s)' if evals else ''}."
    )


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
        lines += [
            "",
            f"## {s.title}",
            "",
            s.note,
            "",
            "| " + " | ".join(map(_md_cell, s.head)) + " |",
            "|" + "---|" * len(s.head),
        ]
        lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in s.rows]
    skipped = [(run, s) for run in runs for s in run.data.get("skipped", [])]
    if skipped:
        lines += ["", "## Not measured", ""]
        lines += [
            f"- `{Path(str(s['artifact'])).name}` on {run.device} · {run.label}: {s['reason']}"
            + _skip_job(s, markdown=True)
            for run, s in skipped
        ]
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
""" + "".join(  # noqa: E501 (CSS rules kept byte-identical in the report)
    f"th.run-{i} {{ border-top: 6px solid {c}; }} td.run-{i} {{ border-left: 6px solid {c}; }}\n"
    for i, c in enumerate(PALETTE)
)  # a run's colour in the drawings


def html_report(runs: list[Run], evals: list[dict]) -> str:
    callouts = "".join(f'<div class="callout {cls}">{_esc(s)}</div>' for cls, s in _regressions(runs))
    body = []
    for s in sections(runs, evals):
        head = "".join(_html_cell(h, "th") for h in s.head)
        rows = "".join("<tr>" + "".join(map(_html_cell, row)) + "</tr>" for row in s.rows)
        body.append(
            f'<h2>{_esc(s.title)}</h2><p class="note">{_esc(s.note)}</p><div '
            f'class="wide"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>" + (f"<figure>{s.figure}</figure>" if s.figure else "")
        )
    skipped = [(run, s) for run in runs for s in run.data.get("skipped", [])]
    if skipped:
        body.append(
            "<h2>Not measured</h2><ul>"
            + "".join(
                f"<li><code>{_esc(Path(str(s['artifact'])).name)}</code> on {_esc(run.device)} · {_esc(run.label)}: "
                f"{_esc(s['reason'])}{_skip_job(s, markdown=False)}</li>"
                for run, s in skipped
            )
            + "</ul>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>mvit-deploy latency '
        f"report</title><style>{STYLE}</style></head><body>\n"
        f"<h1>mvit-deploy latency report</h1><p>{_esc(_summary(runs, evals))}</p>{callouts}\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


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
