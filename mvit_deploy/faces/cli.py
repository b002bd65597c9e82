"""The ``mvit-deploy`` command: flags in, library call, one line of output or error out."""

from __future__ import annotations

import json
import sys

import click

from .. import __version__
from ..errors import MvitDeployError, UsageError
from ..models.config import MAX_INPUT_SIZE, MODELS, pretrained_names
from ..targets import all_precisions


class _Group(click.Group):
    """Ends every command with the exit-code table of ``main``'s help: one line on stderr, never a traceback."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            _fail(f"{e.format_message()} — see `mvit-deploy --help`", 2)

    def invoke(self, ctx):
        from ..artifact import interruptible

        try:
            with interruptible():  # SIGTERM unwinds like Ctrl-C: every staged write removes its staging entry
                return super().invoke(ctx)
        except MvitDeployError as e:
            interrupt = _interrupt_in_chain(e)
            if interrupt is not None:  # an error raised while a Ctrl-C unwound is the Ctrl-C
                _interrupted(interrupt)
            _fail(e.one_line(), e.exit_code)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (artifact.Terminated)
            _interrupted(e)
        except click.exceptions.Exit:
            raise
        except click.ClickException as e:  # click's own parsing: unknown option, not an integer, ...
            where = e.ctx.command_path if getattr(e, "ctx", None) else "mvit-deploy"
            _fail(f"{e.format_message()} — see `{where} --help`", 2)
        except BrokenPipeError:
            raise  # `| head`: click closes quietly
        except Exception as e:
            interrupt = _interrupt_in_chain(e)
            if interrupt is not None:  # a converter wrapped the Ctrl-C (torch.export raises TorchExportError from it)
                _interrupted(interrupt)
            _fail(f"internal error: {type(e).__name__}: {e} — please report it; {_write_crash_log()}", 3)


def _interrupt_in_chain(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM) an exception was raised from or while handling, if any."""
    todo, seen = [e], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        todo += [e.__cause__, e.__context__]
    return None


def _interrupted(e: KeyboardInterrupt):
    click.echo("interrupted", err=True)
    sys.exit(128 + getattr(e, "signum", 2))


def _fail(message: str, code: int):
    click.secho("error: " + " ".join(message.split()), err=True, fg="red")
    sys.exit(code)


def _write_crash_log() -> str:
    """Write the current exception's traceback to a log file; say where, or why not."""
    import os
    import platform
    import tempfile
    import traceback
    from pathlib import Path

    log = Path(tempfile.gettempdir()) / f"mvit-deploy-{os.getpid()}.log"
    try:
        log.write_text(
            f"mvit-deploy {__version__}, Python {platform.python_version()}, {platform.platform()}\nargv: "
            f"{sys.argv}\n\n{traceback.format_exc()}"
        )
    except OSError as e:
        return f"no traceback log: cannot write {log} ({e.strerror})"
    return f"full traceback in {log}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mvit-deploy")
def main():
    """Deploy MobileViT to ONNX, Core ML and LiteRT, checked against PyTorch.

    \b
    Exit codes, the same for every command:
      0  ok
      1  a bound or check failed (parity, eval, export's parity, bench --baseline)
      2  usage or input error: bad flag, file or folder (one line names it and the fix)
      3  internal error: one line, and the traceback in a log file to report
      130/143  interrupted (Ctrl-C / SIGTERM); nothing partial is left behind

    \b
    Where each command runs:
      a board with only mvit-deploy[device] (no torch): bench, models
      the host (mvit-deploy[export], torch): export, parity, eval, predict, quant-report,
        ane-check, report; parity --device ssh:// runs the artifact on the board from here
    """
    _quiet_converters()


def _quiet_converters() -> None:
    """Converters narrate through warnings and loggers; the CLI shows its own progress instead."""
    import logging
    import os
    import re
    import warnings

    from ..targets import TARGETS

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault(
        "TORCH_LOGS", "-all"
    )  # torch's own log handler (set up at import) ignores the logger levels below
    for name in dict.fromkeys(("torch", "torchao", *(n for t in TARGETS.values() for n in t.noisy_loggers))):
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=rf"{re.escape(name)}(\.|$)")  # only the named converters' warnings
    # torch.export's pytree, deep-copied by the exporters, warns through copyreg (so no module filter catches it)
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )


def _sizes(value: str | None) -> list[int] | None:
    """``--input-size 256`` or ``256,320,384`` (Core ML: EnumeratedShapes)."""
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        raise UsageError(
            f"--input-size {value!r} is not a size or a comma-separated list of sizes",
            "use e.g. --input-size 256, or 256,320 for Core ML",
        ) from None
    return sizes


def _at_least(minimum: int, example: int):
    """A click callback refusing a value below ``minimum`` while the flags are parsed, before any work."""

    def check(ctx, param, value):
        if value is not None and value < minimum:
            flag = param.opts[0]
            raise UsageError(
                f"{flag} {value} is out of range: it must be at least {minimum}", f"use e.g. {flag} {example}"
            )
        return value

    return check


def _echo_json(data, indent: int | None = 2) -> None:
    """JSON has no NaN or Infinity: a non-finite number reaching this point is a bug (exit 3), never invalid output."""
    click.echo(json.dumps(data, indent=indent, allow_nan=False))


model_option = click.option(
    "--model", "model_name", type=click.Choice(list(MODELS)), default="mobilevit_xxs", show_default=True
)
weights_option = click.option(
    "--weights",
    type=click.Path(path_type=str),
    default=None,
    help="Local checkpoint: timm, Hugging Face or ml-cvnets layout.",
)
pretrained_option = click.option(
    "--pretrained",
    type=click.Choice(pretrained_names()),
    default=None,
    help="Named weights: fashion = our Fashion-MNIST model (shipped, 64 px; xxs, s, mobilevitv2_050); hf / timm / "
    "timm-in22k(-384) = published ImageNet weights (network or a filled hub cache).",
)
num_classes_option = click.option(
    "--num-classes",
    type=int,
    default=None,
    callback=_at_least(1, 10),
    help="Default: the checkpoint's head (1000 for the fixture).",
)
threads_option = click.option("--threads", type=int, default=2, show_default=True, callback=_at_least(1, 2))
reference_weights_option = click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    default=None,
    help="Reference checkpoint, if it moved since export.",
)
INPUT_SIZE_HELP = f"Multiple of 64 up to {MAX_INPUT_SIZE} (memory grows with the square of the pixel count)"


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def models_cmd(as_json: bool):
    """List the registered MobileViT variants with counted params and FLOPs."""
    from ..models.card import all_cards
    from .tables import print_models

    cards = all_cards()
    if as_json:
        _echo_json(cards)
        return
    print_models(cards)


@main.command()
@click.argument("image", type=click.Path(path_type=str))
@model_option
@weights_option
@pretrained_option
@num_classes_option
@click.option(
    "--input-size",
    type=int,
    default=None,
    help=f"{INPUT_SIZE_HELP}; default: the weights' (256; 64 for --pretrained fashion).",
)
@click.option("--top", type=int, default=5, show_default=True, callback=_at_least(1, 5))
@click.option("--json", "as_json", is_flag=True)
def predict(image, model_name, weights, pretrained, num_classes, input_size, top, as_json):
    """Classify IMAGE and print the top-5 classes."""
    from ..inputs.images import load_image
    from ..models import check_input_size, default_input_size, load_model
    from ..pipeline.predict import predict as run

    size = check_input_size(
        default_input_size(model_name, weights, pretrained) if input_size is None else input_size, model_name
    )
    photo = load_image(image)  # a bad image fails before the model is built
    model = load_model(model_name, weights, num_classes=num_classes, pretrained=pretrained)
    preds = run(photo, model, size, top)
    if as_json:
        _echo_json(
            {"model": model_name, "weights": model.source_layout, "top": [p.__dict__ for p in preds]}, indent=None
        )
        return
    if model.source_layout == "fixture":
        click.echo(
            "note: no --weights/--pretrained given: using the untrained test fixture, so the classes are arbitrary "
            "(try --pretrained fashion)",
            err=True,
        )
    for rank, p in enumerate(preds, 1):
        click.echo(f"{rank}. {p.label:<32} {p.probability:7.2%}  (class {p.index})")


def _target_names() -> list[str]:
    from ..targets import TARGETS

    return list(TARGETS)


def _precision_help() -> str:
    from ..targets import TARGETS

    def word(t, p):
        notes = [n for n in (t.precision_notes.get(p), "default" if p == t.default_precision else None) if n]
        return p + (f" ({', '.join(notes)})" if notes else "")

    each = "; ".join(f"{t.name}: " + ", ".join(word(t, p) for p in t.precisions) for t in TARGETS.values())
    return f"{each}. Quantized precisions calibrate on --calib images."


def _target_options(kind: str):
    """The flags the targets add to ``export`` or ``bench`` (``Target.export_options`` / ``bench_options``)."""
    from ..targets import options_of

    def decorate(f):
        for flag, (opt, targets) in reversed(options_of(kind).items()):
            names = ", ".join(t.name for t in targets)
            default = f" (default {opt.default})" if opt.default is not None else ""
            f = click.option(
                flag, opt.field, type=click.Choice(opt.choices), default=None, help=f"{names}: {opt.help}{default}"
            )(f)
        return f

    return decorate


def _adb_help() -> str:
    from ..targets import TARGETS

    return (
        "adb: the runtime's Android benchmark binary, repeatable ("
        + "; ".join(f"{t.suffix}: {t.adb.where}" for t in TARGETS.values() if t.adb)
        + ")."
    )


@main.command()
@model_option
@weights_option
@pretrained_option
@num_classes_option
@click.option("--target", "target_name", required=True, type=click.Choice([*_target_names(), "all"]))
@click.option("--precision", type=click.Choice(all_precisions()), default=None, help=_precision_help())
@click.option(
    "--calib",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="int8: folder of your own calibration images.",
)
@click.option(
    "--calib-samples",
    type=int,
    default=64,
    show_default=True,
    callback=_at_least(1, 64),
    help="int8: calibration crops to draw.",
)
@click.option(
    "--input-size",
    "input_sizes",
    type=str,
    default=None,
    callback=lambda ctx, p, v: _sizes(v),
    help=f"{INPUT_SIZE_HELP}; default: the weights' (256; 64 for --pretrained fashion). Core ML takes a list, "
    "256,320,384: one artifact with those EnumeratedShapes (the first is the default).",
)
@_target_options("export")
@threads_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=str), required=True)
@click.option(
    "--keep-failed", is_flag=True, help="Keep an artifact whose parity failed (default: none is written, exit 1)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable summary.")
def export(
    model_name,
    weights,
    pretrained,
    num_classes,
    target_name,
    precision,
    calib,
    calib_samples,
    input_sizes,
    threads,
    out_dir,
    keep_failed,
    as_json,
    **target_options,
):
    """Export a MobileViT and check the artifact against PyTorch."""
    from pathlib import Path

    from ..pipeline.export import plan_exports
    from ..targets import ExportOptions

    input_size, more_sizes = (input_sizes[0], tuple(input_sizes[1:])) if input_sizes else (None, ())
    plans = plan_exports(
        ExportOptions(
            model=model_name,
            target=target_name,
            out_dir=Path(out_dir),
            precision=precision,
            input_size=input_size,
            weights=weights,
            pretrained=pretrained,
            num_classes=num_classes,
            threads=threads,
            calib=calib,
            calib_samples=calib_samples,
            keep_failed=keep_failed,
            more_sizes=more_sizes,
            target_options={k: v for k, v in target_options.items() if v is not None},
        ),
        _target_names() if target_name == "all" else [target_name],
    )
    from ..pipeline.export import export as run_export
    from .progress import progress_line
    from .tables import print_parity

    results = []
    with progress_line(quiet=as_json) as line:
        for plan in plans:
            results.append(run_export(plan, on_step=lambda s, n=plan.target: line.step(f"{n}: {s}")))
    rows = [{"artifact": str(r.artifact), **(r.manifest.parity or {})} for r in results]
    if as_json:
        _echo_json(
            {
                "artifacts": [
                    {
                        "artifact": str(r.artifact),
                        "manifest": str(r.manifest_path),
                        "kept": r.kept,
                        "parity": r.manifest.parity,
                    }
                    for r in results
                ]
            }
        )
    else:
        print_parity(rows)
        for r in results:
            d = r.manifest.extra.get("delegation")
            if d:  # a target that lowers to delegates records the share each took
                click.echo(
                    f"{r.artifact.name}: {d['nodes_delegated']} of {d['nodes_total']} graph nodes ({d['share']:.1%}) "
                    f"delegated to {d['backend']} in {d['subgraphs']} subgraph(s)"
                )
            a = r.manifest.extra.get("ane")
            if a:  # Core ML: the static Neural Engine check
                click.echo(
                    f"{r.artifact.name}: Neural Engine check: {a['hard']} hard, {a['cost']} cost, {a['reported']} "
                    "reported finding(s) "
                    f"(`mvit-deploy ane-check {r.artifact}` lists them)"
                )
            if not r.kept:
                click.echo(
                    f"{r.artifact.name}: parity failed, so no artifact was written (--keep-failed keeps it)", err=True
                )
    if any(r.get("passed") is False for r in rows):
        sys.exit(1)


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
@click.option("--identity", type=click.Path(dir_okay=False, path_type=str), default=None, help="ssh: private key file.")
@click.option("--ssh-option", "ssh_options", multiple=True, help="ssh: extra -o KEY=VALUE (repeatable).")
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

    from ..pipeline.parity import parity
    from .progress import progress_line
    from .tables import print_parity

    target = None
    if device is not None:
        from ..bench import connect

        target = connect(device, identity=identity, ssh_options=ssh_options, remote_python=remote_python)
    with progress_line(quiet=as_json) as line:
        report = parity(
            artifact, images=images, n=n, weights=weights, threads=threads, on_step=line.step, device=target
        )
    if junit_xml:
        from ..artifact import staged

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

    from ..pipeline.metrics import finite_or_none
    from ..pipeline.quant_report import blocks_summary, quant_report, to_dict
    from .progress import progress_line
    from .tables import print_quant_report

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
    from ..pipeline.evaluate import EvalOptions, evaluate
    from .progress import progress_line
    from .tables import print_eval

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
@click.option("--identity", type=click.Path(dir_okay=False, path_type=str), default=None, help="ssh: private key file.")
@click.option("--ssh-option", "ssh_options", multiple=True, help="ssh: extra -o KEY=VALUE (repeatable).")
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

    from ..artifact import staged
    from ..bench import BenchRequest, benchmark, result_paths
    from ..bench.compare import describe, percent
    from .progress import progress_line
    from .tables import print_bench, print_comparison

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

    from ..targets.coreml_exec import ane
    from .tables import print_ane_report

    report, comparison = ane.check_with_plan(artifact, plan_file, ask_core_ml, compute_units, save_plan)
    if as_json:
        _echo_json({**report.to_dict(), **({"compute_plan": comparison} if comparison else {})})
    else:
        print_ane_report(report, comparison, show_all)
    if strict and report.hard:
        sys.exit(1)


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
    from .report import write_report

    md, page = write_report(results, out_dir, eval_files)
    click.echo(f"wrote {md}")
    click.echo(f"wrote {page}")


if __name__ == "__main__":
    main()
