"""The terminal tables of the commands (rich): each takes a command's result and prints it.

Kept apart from cli.py, which only turns flags into a library call; nothing here imports torch.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table


def cell(value, spec: str = ".2f", missing: str = "-") -> str:
    """One number of a table, whatever a result holds: ``missing`` for None (JSON's NaN and infinity, a statistic
    not measured), NaN and infinity as words, anything else that is not a number as text: never a TypeError."""
    if value is None:
        return missing
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, spec)


def print_models(cards: list[dict]) -> None:
    table = Table(title="MobileViT variants (params and GMACs counted at the default input)")
    for col in ("model", "family", "input", "params M", "GMACs", "architecture", "--pretrained (classes, input)"):
        table.add_column(
            col, no_wrap=col not in ("architecture", "--pretrained (classes, input)")
        )  # the long ones wrap in 80 columns
    for c in cards:
        sources = ", ".join(
            s["name"] + (f" ({s['num_classes']} classes, {s['input_size']} px)" if s["input_size"] else "")
            for s in c["sources"]
        )
        table.add_row(
            c["name"],
            c["family_title"],
            str(c["input_size"]),
            cell(c["params_m"]),
            cell(c["gmacs"]),
            c["summary"],
            sources,
        )
    Console(width=max(Console().width, 130)).print(table)  # never squeeze names when piped


def print_parity(rows: list[dict]) -> None:
    notes: list[str] = []
    table = Table(title="parity vs PyTorch")
    on_device = any(r.get("device") for r in rows)
    for col in (
        "artifact",
        *(["where", "runtime"] if on_device else []),
        "images",
        "max rel",
        "PSNR dB",
        "top-1",
        "decisive top-1",
        "result",
    ):
        table.add_column(col, no_wrap=True)
    for r in rows:
        name = Path(r["artifact"]).name
        m = r.get("metrics") or {}
        if r.get("passed") is None:
            table.add_row(name, *(["", ""] if on_device else []), "-", "-", "-", "-", "-", "[yellow]not run here[/]")
            notes.append(f"{name}: {r.get('skipped', '')}")
            continue
        where = (
            [_device_label(r["device"]) if r.get("device") else "this host", r.get("runtime", "")] if on_device else []
        )
        table.add_row(
            name,
            *where,
            str(r.get("n_images", "")),
            *_metric_cells(m),
            "[green]pass[/]" if r["passed"] else "[red]FAIL[/]",
        )
        host = r.get("host")
        if on_device and host and "metrics" in host:
            table.add_row(
                "",
                f"this host ({host['machine']})",
                host["runtime"],
                str(r.get("n_images", "")),
                *_metric_cells(host["metrics"]),
                "pass" if host["passed"] else "[red]FAIL[/]",
            )
        elif on_device and host:
            notes.append(f"{name}: not run on this host: {host['skipped']}")
        failures, flips = r.get("failures", []), r.get("flips", [])
        if failures and m.get("max_abs", 0) is None:  # NaN or infinite outputs: every other failure follows
            notes.append(f"{name}: {failures[0]} (the other bounds and flips follow from it; --json lists them)")
            failures, flips = [], []
        notes.extend(f"{name}: {f}" for f in failures)
        for f in flips:
            kind = "decisive" if f["decisive"] else "near-tie, not counted"
            notes.append(
                f"{name}: image {f['index']} flipped {f['reference']} -> {f['artifact']}, "
                f"reference margin {cell(f['margin'], '.3g')} ({cell(f['margin_rel'], '.1%')} of peak; {kind} "
                f"below {cell(r.get('decisive_margin'), '.2%')})"
            )
        if r.get("device"):
            d = r["device"]
            versions = ", ".join(f"{k} {v}" for k, v in (d.get("runtimes") or {}).items())
            notes.append(
                f"{name}: device {d.get('name')} ({d.get('kind')}): {d.get('cpu')}, {d.get('machine')}, "
                f"{d.get('os')}, Python {d.get('python')}; {versions}"
            )
            if d.get("emulated"):
                notes.append(
                    f"{name}: the device is emulated ({d['emulated']}): its numerics are its CPU's kernels, its "
                    "timings are not"
                )
            dvh = r.get("device_vs_host")
            if dvh:
                notes.append(
                    f"{name}: device vs this host: max rel {cell(dvh.get('max_rel'), '.1e', 'NaN')}, top-1 "
                    f"agreement {cell(dvh.get('top1_agreement'), '.1%')}"
                )
    console = Console(width=max(Console().width, 150 if on_device else 110))
    console.print(table)
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True)


def _device_label(d: dict) -> str:
    return f"{d.get('name')} ({d.get('machine')}{', emulated' if d.get('emulated') else ''})"


def _metric_cells(m: dict) -> list[str]:
    """A JSON metric of null is infinite PSNR where the outputs are identical (max_abs 0), else NaN (NaN outputs)."""
    identical = m.get("max_abs") == 0
    return [
        cell(m.get("max_rel"), ".1e", "-" if identical else "NaN"),
        cell(m.get("psnr_db"), ".1f", "inf" if identical else "NaN"),
        cell(m.get("top1_agreement"), ".1%"),
        f"{cell(m.get('decisive_top1_agreement'), '.1%')} of {cell(m.get('n_decisive'), 'd')}",
    ]


def print_bench(console, result: dict, threads: int) -> None:
    from ..bench.local import DENORMAL_ROUNDS, DENORMAL_SLOWDOWN  # imports no runtime

    dev = result["device"]
    cores = f"{dev['cores']} cores, {threads} threads" if dev.get("cores") else "hosted"
    emulated = (
        f"\nemulated ({dev['emulated']}): its timings are the emulator's, not a latency" if dev.get("emulated") else ""
    )
    table = Table(title=f"{dev['name']} ({dev['kind']}): {dev['cpu']}, {cores}{emulated}")
    for col in (
        "artifact",
        "runtime",
        "load ms",
        "min",
        "p50",
        "p90",
        "p99",
        "mean ± std ms",
        "img/s",
        "RSS+ MB",
        "MB",
    ):
        table.add_column(col, no_wrap=True)
    f = cell
    for r in result["results"]:
        lat = r["latency_ms"]
        table.add_row(
            Path(r["artifact"]).name,
            r["runtime"],
            f(r["load_ms"], ".0f"),
            f(lat["min"]),
            f(lat["p50"]),
            f(lat["p90"]),
            f(lat["p99"]),
            f"{f(lat['mean'])} ± {f(lat.get('std'))}",
            f(r.get("throughput_ips"), ".1f"),
            f(r.get("rss_delta_mb"), ".0f"),
            f(r["bytes"] / 1e6 if isinstance(r.get("bytes"), (int, float)) else r.get("bytes"), ".1f"),
        )
    console.print(table)
    for s in result["skipped"]:
        console.print(f"not measured: {Path(s['artifact']).name}: {s['reason']}", highlight=False)
    for r in result["results"]:
        slow = r.get("denormal_slowdown")
        if slow is not None and slow >= DENORMAL_SLOWDOWN:
            console.print(
                f"warning: {Path(r['artifact']).name} runs {slow:.1f}x slower with denormal floats than with them "
                f"flushed to zero in each of {DENORMAL_ROUNDS} alternating timings (a real slowdown, not timer noise): "
                "its activations underflow (untrained or badly scaled weights?) — use trained weights, or time it "
                "as phones run it with --denormals flush",
                highlight=False,
                soft_wrap=True,
            )


def print_comparison(console, result: dict) -> None:
    from ..bench.compare import percent

    b = result["baseline"]
    if not b["same_device"]:
        console.print(
            f"warning: the baseline was measured on {b['device']!r}, another CPU / OS: the comparison mixes machines",
            highlight=False,
        )
    if b["missing"]:
        console.print(f"warning: not measured in this run, so not gated: {', '.join(b['missing'])}", highlight=False)
    table = Table(title=f"against {b['file']} (fails past +{percent(b['max_regression'])}: {b['method']})")
    for col in ("artifact", "baseline p50", "p50", "change", "95% CI", "p", "verdict"):
        table.add_column(col, no_wrap=True)
    colour = {"regression": "red", "faster": "green"}
    for r in result["results"]:
        c = r["comparison"]
        if c["verdict"] in ("no baseline", "no samples"):
            table.add_row(Path(r["artifact"]).name, "-", "-", "-", "-", "-", c["verdict"])
            continue
        lo, hi = c.get("ci95") or (None, None)
        verdict = f"[{colour[c['verdict']]}]{c['verdict']}[/]" if c["verdict"] in colour else c["verdict"]
        table.add_row(
            Path(r["artifact"]).name,
            cell(c.get("baseline_p50_ms")),
            cell(c.get("p50_ms")),
            cell(c.get("change"), "+.1%"),
            f"{cell(lo, '+.1%')} .. {cell(hi, '+.1%')}",
            cell(c.get("p_value"), ".1g"),
            verdict,
        )
    console.print(table)


def print_ane_report(report, comparison, show_all: bool) -> None:
    from ..targets.coreml_exec.ane import RULES

    console = Console(width=max(Console().width, 150))
    table = Table(title=f"Neural Engine check: {report.artifact} ({report.ops} ops)")
    for col in ("rule", "severity", "found", "confidence", "source"):
        table.add_column(col, overflow="fold")
    counts = report.by_rule()
    for r in RULES.values():
        table.add_row(r.id, r.severity, str(counts[r.id]), r.confidence, r.source)
    console.print(table)
    for r in RULES.values():
        found = [f for f in report.findings if f.rule == r.id]
        for f in found if show_all else found[:3]:
            console.print(f"  [{r.severity}] {r.id}: {f.op}: {f.detail} — {f.fix}", markup=False, highlight=False)
        if len(found) > 3 and not show_all:
            console.print(f"  ... {len(found) - 3} more {r.id} (--all lists them)", markup=False, highlight=False)
    s = report.summary()
    console.print(
        f"{s['hard']} hard, {s['cost']} cost, {s['reported']} reported; last-axis padding "
        f"~{cell(s['last_axis_padding_bytes'] / 1e6)} MB. "
        "These are predictions from public sources: on a Mac, --compute-plan asks Core ML.",
        highlight=False,
    )
    if comparison:
        agree = comparison["agreement"]
        console.print(
            f"Core ML's plan: {comparison['core_ml_on_ane']} of {comparison['ops']} ops on the Neural Engine; "
            f"the static rules agree on {cell(agree, '.0%', 'n/a')} of them.",
            highlight=False,
        )
        for row in comparison["disagreements"][: None if show_all else 10]:
            console.print(
                f"  {row['op']}: predicted {row['predicted']}{' (' + row['rule'] + ')' if row['rule'] else ''}, Core "
                f"ML: {row['core_ml']}",
                markup=False,
                highlight=False,
            )


def print_quant_report(layers, blocks: list, n: int, top: int) -> None:
    console = Console(width=max(Console().width, 110))
    worst = Table(title="worst SQNR per block: keep the first ones in float")
    for col in ("block", "SQNR dB"):
        worst.add_column(col)
    for name, value in blocks[:top]:
        worst.add_row(name, cell(value, ".1f", "inf"))  # null: identical tensors
    console.print(worst)
    table = Table(title=f"per-tensor SQNR, {n} photo crops")
    for col in ("tensor", "module", "cumulative dB", "local dB"):
        table.add_column(col, no_wrap=True)
    for layer in layers[:top]:
        table.add_row(
            layer.tensor, layer.module, cell(layer.cumulative_sqnr_db, ".1f", "inf"), cell(layer.local_sqnr_db, ".1f")
        )
    console.print(table)


def print_eval(report) -> None:
    table = Table(title=f"accuracy on {report.data}")
    for col in (
        "artifact",
        "precision",
        "reference top-1",
        "artifact top-1",
        "drop (95% CI), points",
        "McNemar",
        "top-5",
        "agreement",
        "flipped",
        "result",
    ):
        table.add_column(col, no_wrap=True)
    for r in report.rows:
        lo, hi = r.drop_ci95 or (None, None)
        verdict = (
            "-"
            if r.bound is None
            else ("[green]pass[/]" if r.passed else f"[red]FAIL[/] (> {cell(r.bound['value'], 'g')})")
        )
        table.add_row(
            Path(r.artifact).name,
            r.precision,
            cell(r.reference.get("top1"), ".2%"),
            cell(r.artifact_metrics.get("top1"), ".2%"),
            f"{cell(r.drop_points, '+.2f')} ({cell(lo, '+.2f')}, {cell(hi, '+.2f')})",
            f"p={cell(r.mcnemar_p, '.2g')} {r.noise}",
            cell(r.artifact_metrics.get("top5"), ".2%"),
            cell(r.top1_agreement, ".2%"),
            str(r.flipped),
            verdict,
        )
    Console(width=max(Console().width, 190)).print(table)
