"""Commands that make things: models, predict, export."""

from __future__ import annotations

import sys

import click

from ...targets import all_precisions
from .app import (
    INPUT_SIZE_HELP,
    _at_least,
    _echo_json,
    _precision_help,
    _sizes,
    _target_names,
    _target_options,
    main,
    model_option,
    num_classes_option,
    pretrained_option,
    threads_option,
    weights_option,
)


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def models_cmd(as_json: bool):
    """List the registered MobileViT variants with counted params and FLOPs."""
    from ...models.card import all_cards
    from ..tables import print_models

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
    from ...inputs.images import load_image
    from ...models import check_input_size, default_input_size, load_model
    from ...pipeline.predict import predict as run

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

    from ...artifact import check_output
    from ...pipeline.export import plan_exports
    from ...targets import ExportOptions

    check_output(out_dir, "--out", folder=True)  # before the model loads, not after the conversion

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
    from ...pipeline.export import export as run_export
    from ..progress import progress_line
    from ..tables import print_parity

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
