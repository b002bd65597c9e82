"""Commands that measure and show: bench, report."""

from __future__ import annotations

import json

import click

from .app import _adb_help, _at_least, _fail, _target_options, main, ssh_options, threads_option


@main.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=str))
@threads_option
@click.option("--warmup", type=int, default=5, show_default=True, callback=_at_least(0, 5))
@click.option(
    "--iters",
    type=int,
    default=50,
    show_default=True,
    callback=_at_least(2, 50),
    help="Measured rounds (every artifact once per round).",
)
@click.option(
    "--device",
    "devices",
    multiple=True,
    default=["local"],
    show_default=True,
    help='local | ssh://user@host[:port] | adb[:serial] | aihub:"<AI Hub device name>" (repeat aihub: for several '
    "phones at once).",
)
@click.option("--reference", is_flag=True, help="Also time the PyTorch eager reference (needs torch; local only).")
@_target_options("bench")
@ssh_options
@click.option(
    "--remote-python",
    default="python3",
    show_default=True,
    help="ssh: the board's Python (with mvit-deploy[device] deps).",
)
@click.option("--benchmark-binary", type=click.Path(dir_okay=False, path_type=str), multiple=True, help=_adb_help())
@click.option(
    "--aihub-timeout",
    type=float,
    default=7200,
    show_default=True,
    help="aihub: seconds to wait for the hosted jobs; one still queued then is reported as not measured.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Write the result JSON here (several devices: one file each, FILE's stem + the device's name).",
)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="A previous run's --json: exit 1 if an artifact's median got slower by more than --max-regression beyond "
    "noise.",
)
@click.option(
    "--max-regression", default="10%", show_default=True, help="With --baseline: the slowdown of the median that fails."
)
def bench(
    artifacts,
    threads,
    warmup,
    iters,
    devices,
    reference,
    identity,
    ssh_options,
    remote_python,
    benchmark_binary,
    aihub_timeout,
    json_out,
    baseline,
    max_regression,
    **runtime_options,
):
    """Latency of ARTIFACTS on a device, with load time, percentiles, memory and size.

    \b
    With --baseline: each artifact's rounds are tested against the baseline's (one-sided
    Mann-Whitney U and a bootstrap interval of the median ratio, bench/compare.py); a
    slowdown past --max-regression that is not noise exits 1 and says by how much.
    """

    from rich.console import Console

    from ...artifact import check_output, staged
    from ...bench import BenchRequest, benchmark, result_paths
    from ...bench.compare import describe, percent
    from ..progress import progress_line
    from ..tables import print_bench, print_comparison

    if json_out:
        check_output(json_out, "--json")  # before the measurement, not after it
    request = BenchRequest(
        artifacts=tuple(artifacts),
        devices=tuple(devices),
        threads=threads,
        warmup=warmup,
        iters=iters,
        reference=reference,
        runtime_options={k: v for k, v in runtime_options.items() if v is not None},
        identity=identity,
        ssh_options=tuple(ssh_options),
        remote_python=remote_python,
        benchmark_binary=tuple(benchmark_binary),
        aihub_timeout=aihub_timeout,
        baseline=baseline,
        max_regression=max_regression,
    )
    with progress_line() as line:
        line.step("loading the artifacts")
        outcome = benchmark(request, on_round=lambda i, n: line.count("benchmark rounds", i, n), progress=line.step)
    console = Console(width=max(Console().width, 170))
    for result in outcome.results:
        print_bench(console, result, threads)
        if baseline is not None:
            print_comparison(console, result)
    if json_out:
        for result, path in zip(outcome.results, result_paths(json_out, outcome.results), strict=True):
            with staged(path) as tmp:
                tmp.write_text(json.dumps(result, indent=2, allow_nan=False))
            console.print(f"wrote {path}", highlight=False)
    if outcome.regressions:
        _fail(
            f"latency regression past {percent(outcome.bound)} against {baseline}: "
            + "; ".join(describe(r) for r in outcome.regressions),
            1,
        )


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--eval",
    "eval_files",
    multiple=True,
    type=click.Path(path_type=str),
    help="What `mvit-deploy eval ... --json` printed, saved to a file (repeatable): accuracy beside latency, matched "
    "by artifact file name.",
)
def report(results, out_dir, eval_files):
    """Build report.md and a self-contained report.html from bench RESULTS (JSON): a latency matrix per
    device and run, box plots of the rounds, the baseline comparison, fidelity and accuracy, artifact metadata."""
    from ...artifact import check_output
    from ..report import write_report

    check_output(out_dir, "--out", folder=True)
    md, page = write_report(results, out_dir, eval_files)
    click.echo(f"wrote {md}")
    click.echo(f"wrote {page}")
