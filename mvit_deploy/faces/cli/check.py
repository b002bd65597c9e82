"""Commands that judge an artifact: parity, quant-report, eval, ane-check."""

from __future__ import annotations

import sys

import click

from .app import _at_least, _echo_json, main, reference_weights_option, ssh_options, threads_option


@main.command("parity")
@click.argument("artifact", type=click.Path(path_type=str))
@click.option(
    "--images",
    type=click.Path(path_type=str),
    default=None,
    help="Folder of photos (default: the shipped held-out set).",
)
@click.option("--n", "n", type=int, default=None, callback=_at_least(1, 8), help="Use only the first N images.")
@reference_weights_option
@threads_option
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--junit-xml", type=click.Path(dir_okay=False, path_type=str), default=None, help="Write a JUnit report for CI."
)
@click.option(
    "--device",
    default=None,
    help="ssh://user@host[:port] | adb[:serial]: run the artifact on that device (its own runtime and CPU) "
    "and judge its logits; this machine's run is shown beside it.",
)
@ssh_options
@click.option(
    "--remote-python",
    default="python3",
    show_default=True,
    help="ssh / adb: the device's Python, with numpy and the artifact's runtime (a phone: one the adb shell can run).",
)
def parity_cmd(artifact, images, n, weights, threads, as_json, junit_xml, device, identity, ssh_options, remote_python):
    """Check ARTIFACT against PyTorch: exit 0 if every bound holds, 1 if one fails.

    \b
    With --device: the logits judged are the board's (the device side is copied there with the
    artifact and the preprocessed images); the table shows the board and this machine side by side.
    """
    from pathlib import Path

    from ...pipeline.parity import parity
    from ..progress import progress_line
    from ..tables import print_parity

    if junit_xml:
        from ...artifact import check_output

        check_output(junit_xml, "--junit-xml")  # before the reference and the artifact run
    target = None
    if device is not None:
        from ...bench import connect

        target = connect(device, identity=identity, ssh_options=ssh_options, remote_python=remote_python)
    with progress_line(quiet=as_json) as line:
        report = parity(
            artifact, images=images, n=n, weights=weights, threads=threads, on_step=line.step, device=target
        )
    if junit_xml:
        from ...artifact import staged

        with staged(Path(junit_xml)) as tmp:
            tmp.write_text(report.to_junit_xml())
    if as_json:
        _echo_json(report.to_dict())
    else:
        print_parity([{**report.to_dict(), "artifact": artifact}])
    sys.exit(0 if report.passed else 1)


@main.command("quant-report")
@click.argument("artifact", type=click.Path(path_type=str))
@click.option(
    "--n",
    "n",
    type=int,
    default=4,
    show_default=True,
    callback=_at_least(1, 4),
    help="Held-out photo crops to compare on.",
)
@click.option("--top", type=int, default=15, show_default=True, callback=_at_least(1, 15), help="Rows to print.")
@reference_weights_option
@click.option("--json", "as_json", is_flag=True)
def quant_report_cmd(artifact, n, top, weights, as_json):
    """Per-layer SQNR of an int8 ARTIFACT vs its float twin, worst first."""
    from pathlib import Path

    from ...metrics import finite_or_none
    from ...pipeline.quant_report import blocks_summary, quant_report, to_dict
    from ..progress import progress_line
    from ..tables import print_quant_report

    with progress_line(quiet=as_json) as line:
        line.step(f"quant-report: {Path(artifact).name} and its float twin, layer by layer")
        layers = quant_report(artifact, n=n, weights=weights)
    if as_json:
        _echo_json(
            {"layers": to_dict(layers), "blocks": finite_or_none(blocks_summary(layers))}
        )  # SQNR of identical tensors: null
        return
    print_quant_report(layers, blocks_summary(layers), n, top)


@main.command("eval")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--data",
    type=str,
    default=None,
    help="ImageNet-style folder (synset or index subfolders), or fashion-mnist[:test|:subset]. "
    "Default for Fashion-MNIST models: the full test set if Debian's dataset-fashion-mnist is installed, else the "
    "shipped 1,000 images.",
)
@click.option(
    "--labels",
    type=click.Path(path_type=str),
    default=None,
    help="Optional `path<TAB>label` file instead of folder names.",
)
@click.option("--n", "n", type=int, default=None, callback=_at_least(1, 100), help="Use only the first N images.")
@click.option(
    "--batch",
    type=int,
    default=None,
    callback=_at_least(1, 32),
    help="Images decoded per step (default 32, measured); memory does not grow with the set's size. "
    "An artifact exported with export --batch dynamic runs 32 per call, any other one image at a time.",
)
@reference_weights_option
@click.option(
    "--threads",
    type=int,
    default=None,
    callback=_at_least(1, 2),
    help="Threads per runtime: default 2 in-process; with --engine ray, 1 per worker and a worker per CPU (measured "
    "fastest).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON result, with per-sample predictions (top-5 of every artifact and reference).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: shard the images over a Ray cluster (pip install 'mvit-deploy[cluster]').",
)
@click.option(
    "--address",
    default=None,
    help="ray: the cluster (auto, HOST:PORT, ray://HOST:10001); default: start one on this machine.",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    callback=_at_least(1, 2),
    help="ray: workers (default: the cluster's CPUs / --threads).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Keep each finished shard here (for --resume).",
)
@click.option(
    "--resume", is_flag=True, help="Continue the interrupted run in --out: shards already there are not run again."
)
def eval_cmd(artifacts, data, labels, n, batch, weights, threads, as_json, engine, address, workers, out_dir, resume):
    """Top-1 / top-5 of the PyTorch reference and of each ARTIFACT on one labeled set
    (exit 1: an accuracy bound failed).

    \b
    The reference runs once per checkpoint, however many artifacts; images stream in batches.
    Each artifact's drop comes with a 95 % interval and an exact McNemar test on the samples
    exactly one of the two gets right ("within noise": p >= 0.05), and the flipped samples.
    """
    from ...pipeline.evaluate import EvalOptions, evaluate
    from ..progress import progress_line
    from ..tables import print_eval

    with progress_line(quiet=as_json) as line:
        report = evaluate(
            artifacts,
            data,
            EvalOptions(labels, n, threads, weights, batch, engine, address, workers, out_dir, resume),
            on_step=line.step,
            on_count=lambda done, total: line.count("images", done, total),
        )
    if as_json:
        report.write_json(sys.stdout)  # per-sample predictions streamed: compact, never held as Python lists
        sys.stdout.write("\n")
    else:
        print_eval(report)
    sys.exit(0 if report.passed else 1)


@main.command("ane-check")
@click.argument("artifact", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print every rule and finding as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when a hard rule fires.")
@click.option("--all", "show_all", is_flag=True, help="List every finding (default: the first 3 per rule).")
@click.option(
    "--compute-plan", "ask_core_ml", is_flag=True, help="macOS 14.4+: ask Core ML (MLComputePlan) where each op runs."
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    default=None,
    help="Compare with a compute plan recorded on a Mac (the JSON --save-plan writes).",
)
@click.option(
    "--save-plan",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="With --compute-plan: record the plan as JSON.",
)
@click.option("--compute-units", type=click.Choice(["cpu_and_ne", "all"]), default="cpu_and_ne", show_default=True)
def ane_check_cmd(artifact, as_json, strict, show_all, ask_core_ml, plan_file, save_plan, compute_units):
    """Predict whether a Core ML program stays on the Neural Engine (static rules; on a Mac, Core ML's own plan)."""

    from ...artifact import check_output
    from ...targets.coreml_exec import ane
    from ..tables import print_ane_report

    if save_plan:
        check_output(save_plan, "--save-plan")
    report, comparison = ane.check_with_plan(artifact, plan_file, ask_core_ml, compute_units, save_plan)
    if as_json:
        _echo_json({**report.to_dict(), **({"compute_plan": comparison} if comparison else {})})
    else:
        print_ane_report(report, comparison, show_all)
    if strict and report.hard:
        sys.exit(1)
