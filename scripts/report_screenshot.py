"""Regenerate docs/report.png: `mvit-deploy report` on bench JSONs, rendered by headless Chromium.

    .venv/bin/python scripts/report_screenshot.py tests/data/report/vm-make-demo-ci.json \\
        tests/data/report/vm-2threads-baseline.json tests/data/report/vm-2threads.json tests/data/report/vm-1thread.json \\
        --eval tests/data/report/eval-fashion-subset.json --out docs/report.png

The inputs in tests/data/report/ were measured on this project's 2-core VM (AMD EPYC, shared
with other jobs) on the shipped Fashion-MNIST XXS artifacts of `make demo` (64 px):
vm-make-demo-ci.json is a `make demo` run's bench-host.json (written before bench kept raw
rounds); the other three are `bench ... --iters 50 --json`, the second and third with
`--baseline vm-2threads-baseline.json`, the third with `--threads 1`; the eval file is
`eval ... --data fashion-mnist:subset --json`. Needs Debian's chromium.
"""  # noqa: E501 (the usage lines are one command to copy)

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mvit_deploy.faces.report import write_report

MEASURE = """<script>window.addEventListener("load", () => document.fonts.ready.then(() => {
  const pre = document.createElement("pre"); pre.id = "page-height";
  pre.textContent = String(document.documentElement.scrollHeight); document.body.appendChild(pre);
}));</script>"""


def chromium_argv(chromium: str, profile: Path, width: int, height: int, *flags: str) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        *flags,
    ]


def page_height(chromium: str, page: Path, width: int, profile: Path) -> int:
    """The rendered page's height in CSS pixels at this width."""
    measured = page.with_name("measure.html")
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    argv = chromium_argv(chromium, profile, width, 1000, "--virtual-time-budget=5000", "--dump-dom", measured.as_uri())
    dom = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="page-height">(\d+)</pre>', html.unescape(dom))
    if not found:
        sys.exit("chromium did not render the report (no page height in its DOM)")
    return int(found.group(1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="bench result JSONs, in the order of the report's columns")
    parser.add_argument(
        "--eval", dest="evals", action="append", default=[], help="`mvit-deploy eval --json` output (repeatable)"
    )
    parser.add_argument("--out", default="docs/report.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--max-height", type=int, default=4000, help="crop a longer page here")
    parser.add_argument(
        "--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    )
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        sys.exit(f"no chromium at {args.chromium}: apt-get install chromium, or pass --chromium PATH")
    with tempfile.TemporaryDirectory() as tmp:
        _, page = write_report(args.results, Path(tmp) / "report", args.evals)
        height = min(page_height(args.chromium, page, args.width, Path(tmp) / "profile"), args.max_height)
        out = Path(args.out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = chromium_argv(
            args.chromium, Path(tmp) / "profile", args.width, height, f"--screenshot={out}", page.as_uri()
        )
        subprocess.run(argv, capture_output=True, timeout=120, check=True)
    print(f"wrote {args.out} ({args.width}x{height})")


if __name__ == "__main__":
    main()
