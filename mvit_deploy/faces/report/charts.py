"""The report's inline SVG: box plots of the rounds per artifact and run, latency against PSNR.

SVG text is monospace, so a label's width is known before the browser draws it: the drawings
are sized from their labels, and a label longer than its column is cut in the middle with an
ellipsis and keeps its full text as a tooltip.
"""

from __future__ import annotations

import math

from .content import PALETTE, Run, _esc, _metrics, _p50, _spread, _verdict_class

VERDICT_COLOR = {"bad": "#c62828", "good": "#2e7d32", "": "#555"}
MONO = "DejaVu Sans Mono,Menlo,Consolas,monospace"
CHAR_EM = 0.62  # advance of one monospace glyph in em (DejaVu Sans Mono and Menlo: 0.602), rounded up
NAME_CHARS, RUN_CHARS, KEY_CHARS = 46, 28, 52  # longest label drawn before the middle is cut


def _text_w(chars: int, size: float) -> float:
    return chars * size * CHAR_EM


def _cut(s: str, chars: int) -> str:
    """``s`` in at most ``chars`` characters, the middle replaced by an ellipsis (names differ at both ends)."""
    if len(s) <= chars:
        return s
    head = (chars - 1) // 2
    return s[:head] + "…" + s[len(s) - (chars - 1 - head) :]


def _text(
    x: float, y: float, s: str, size: float = 12, chars: int | None = None, anchor: str = "start", style: str = ""
) -> str:
    shown = _cut(s, chars) if chars else s
    t = f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{style}>{_esc(shown)}</text>'
    return t if shown == s else f"<g><title>{_esc(s)}</title>{t}</g>"


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{math.ceil(width)}" height="{math.ceil(height)}" viewBox="0 '
        f'0 {math.ceil(width)} {math.ceil(height)}" '
        f'font-family="{MONO}" role="img" aria-label="{_esc(label)}">' + "".join(body) + "</svg>"
    )


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: the first at or below lo, the last at or above hi."""
    span = abs(hi - lo) or abs(hi) or 1.0
    step = 10 ** math.floor(math.log10(span / n))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= n)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 per decade; over more than 8 decades (1e-300 ms next to an hour) powers of ten, at most ~6 of them."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    every, steps = (1, (1, 2, 5)) if len(decades) <= 8 else (math.ceil(len(decades) / 6), (1,))
    return [m * 10.0**e for e in decades if e % every == 0 for m in steps if lo <= m * 10.0**e <= hi]


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
    return [
        "box: middle half of the rounds, bar: median, whiskers: 1.5 IQR, dots: rounds beyond",
        "hatched, dashed: no raw rounds in the result (whiskers min..p99, box p50..p90); diamond: baseline median",
    ]


def _distribution_svg(runs: list[Run], order: list[str]) -> str:
    """One panel per device, one box per artifact and run on the device's own latency axis."""
    color = {run.label: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}
    devices: dict[str, list[Run]] = {}
    for run in runs:
        devices.setdefault(run.device, []).append(run)
    panels = {
        dev: sorted(
            ((key, run, r) for run in rs for key, r in run.results()), key=lambda t: (order.index(t[0]), rs.index(t[1]))
        )
        for dev, rs in devices.items()
    }
    panels = {
        dev: rows for dev, rows in panels.items() if rows
    }  # a device whose every artifact was skipped has no panel
    every = [row for rows in panels.values() for row in rows]
    multi = any(len(rs) > 1 for rs in devices.values())
    name_chars = min(NAME_CHARS, max(len(n) for n, _, _ in every))
    run_chars = min(RUN_CHARS, max(len(run.label) for run in runs)) if multi else 0
    values = {id(r): _value_text(r) for _, _, r in every}
    left = 10 + _text_w(name_chars, 12) + 12 + (_text_w(run_chars, 11) + 12 if multi else 0)
    plot_w = 440
    title, legend = "latency per artifact and run (ms)", _legend_lines()
    width = max(
        left + plot_w + 14 + _text_w(max(len("ms, log"), *map(len, values.values())), 11) + 10,
        20 + _text_w(len(title), 14),
        *(20 + _text_w(len(s), 11) for s in legend),
    )
    chars = int((width - 20) / _text_w(1, 13))
    body, y = [_text(10, 20, title, 14, style=' font-weight="bold"')], 20
    for line in legend:
        y += 16
        body.append(_text(10, y, line, 11, style=' fill="#555"'))
    row_h = 24
    body.append(
        "<defs>"
        + "".join(
            f'<pattern id="hatch-{i}" width="5" height="5" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            f'<rect width="3" height="5" fill="{c}"/></pattern>'
            for i, c in enumerate(PALETTE)
        )
        + "</defs>"
    )
    for dev, rows in panels.items():
        d = devices[dev][0].data["device"]
        y += 30
        body.append(_text(10, y, f"{dev}: {d['cpu']}" if d.get("cpu") else dev, 13, chars, style=' font-weight="bold"'))
        spreads = {id(r): _spread(r) for _, _, r in rows}
        edges = [v for s in spreads.values() for v in (*s["whiskers"], *s["outliers"])]
        edges += [
            r["comparison"]["baseline_p50_ms"]
            for _, _, r in rows
            if (r.get("comparison") or {}).get("baseline_p50_ms") is not None
        ]
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
            body.append(
                _box(
                    spreads[id(r)], x, top + 4, row_h - 8, color[run.label], f"hatch-{PALETTE.index(color[run.label])}"
                )
            )
            base = (r.get("comparison") or {}).get("baseline_p50_ms")
            if base is not None:
                body.append(
                    f'<path d="M{x(base):.1f},{top + 4:.1f} l5,8 -5,8 -5,-8z" fill="#111"><title>baseline median '
                    f"{base:.2f} ms</title></path>"
                )
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
    parts = [
        f'<g stroke="{color}" stroke-width="1.3"{dash}>',
        f'<line x1="{x(w0):.1f}" y1="{mid:.1f}" x2="{x(b0):.1f}" y2="{mid:.1f}"/><line x1="{x(b1):.1f}" '
        f'y1="{mid:.1f}" x2="{x(w1):.1f}" y2="{mid:.1f}"/>',
        f'<line x1="{x(w0):.1f}" y1="{top + 3:.1f}" x2="{x(w0):.1f}" y2="{top + h - 3:.1f}"/><line x1="{x(w1):.1f}" '
        f'y1="{top + 3:.1f}" x2="{x(w1):.1f}" y2="{top + h - 3:.1f}"/>',
        f'<rect x="{x(b0):.1f}" y="{top:.1f}" width="{max(x(b1) - x(b0), 1.5):.1f}" height="{h:.1f}" {fill}/>',
        f'<line x1="{x(s["median"]):.1f}" y1="{top:.1f}" x2="{x(s["median"]):.1f}" y2="{top + h:.1f}" stroke="#111" '
        'stroke-width="2" stroke-dasharray="none"/></g>',
    ]
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
        body.append(
            f'<line x1="{X(t):.1f}" y1="{top}" x2="{X(t):.1f}" y2="{top + ph}" stroke="#eee"/>'
            + _text(X(t), top + ph + 15, _tick_label(t), 11, anchor="middle")
        )
    for t in yt:
        body.append(
            f'<line x1="{left}" y1="{Y(t):.1f}" x2="{left + pw}" y2="{Y(t):.1f}" stroke="#eee"/>'
            + _text(left - 6, Y(t) + 4, _tick_label(t), 11, anchor="end")
        )
    body.append(
        _text(left + pw / 2, top + ph + 34, "p50 latency (ms" + (", log scale)" if log else ")"), 12, anchor="middle")
    )
    body.append(
        f'<text x="16" y="{top + ph / 2:.1f}" font-size="12" text-anchor="middle" transform="rotate(-90 16 '
        f'{top + ph / 2:.1f})">PSNR (dB)</text>'
    )
    placed: list[tuple[float, float, float, float]] = [
        (X(v) - 6, Y(p) - 6, X(v) + 6, Y(p) + 6) for v, p in zip(lat, psnr, strict=True)
    ]
    for (run, key, _r), v, p in zip(pts, lat, psnr, strict=True):
        cx, cy, label = X(v), Y(p), str(names.index(key) + 1)
        body.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color[run.label]}"><title>{_esc(key)} on '
            f"{_esc(run.device)}: {v:.2f} ms, {p:.1f} dB</title></circle>"
        )
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
