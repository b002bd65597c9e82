"""The ``mvit-deploy`` command: flags in, library call, one line of output or error out."""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import MvitDeployError
from .models.config import MODELS


class _Group(click.Group):
    """Turns every error a user can cause into one line and a non-zero exit, no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MvitDeployError as e:
            click.secho(f"error: {e.one_line()}", err=True, fg="red")
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mvit-deploy")
def main():
    """Deploy MobileViT to ONNX, Core ML and LiteRT, checked against PyTorch."""


model_option = click.option("--model", "model_name", type=click.Choice(list(MODELS)), default="mobilevit_xxs", show_default=True)
weights_option = click.option(
    "--weights", type=click.Path(path_type=str), default=None, help="Local checkpoint: timm, Hugging Face or ml-cvnets layout."
)
pretrained_option = click.option(
    "--pretrained",
    type=click.Choice(["hf", "timm"]),
    default=None,
    help="Download the published weights (needs a network or a filled hub cache).",
)
num_classes_option = click.option("--num-classes", type=int, default=1000, show_default=True)


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def models_cmd(as_json: bool):
    """List the registered MobileViT variants with counted params and FLOPs."""
    from rich.console import Console
    from rich.table import Table

    from .models.card import all_cards

    cards = all_cards()
    if as_json:
        click.echo(json.dumps(cards, indent=2))
        return
    table = Table(title="MobileViT variants (params and GMACs counted at the default input)")
    for col in ("model", "input", "params M", "GMACs", "dims", "exp", "weights (channel order)"):
        table.add_column(col, no_wrap=True)
    for c in cards:
        cfg = c["config"]
        sources = ", ".join(f"{s['layout']} ({s['preprocessing']['channel_order']})" for s in c["sources"])
        dims = "/".join(map(str, cfg["transformer_dims"]))
        table.add_row(c["name"], str(c["input_size"]), f"{c['params_m']:.2f}", f"{c['gmacs']:.2f}", dims, f"{cfg['expand_ratio']:g}", sources)
    Console(width=max(Console().width, 110)).print(table)  # never squeeze names when piped


@main.command()
@click.argument("image", type=click.Path(path_type=str))
@model_option
@weights_option
@pretrained_option
@num_classes_option
@click.option("--input-size", type=int, default=None, help="Multiple of 32; default: the model's (256).")
@click.option("--top", type=int, default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def predict(image, model_name, weights, pretrained, num_classes, input_size, top, as_json):
    """Classify IMAGE and print the top-5 classes."""
    from .models import check_input_size, get_spec, load_model
    from .predict import predict as run

    size = check_input_size(input_size or get_spec(model_name).input_size)
    model = load_model(model_name, weights, num_classes=num_classes, pretrained=pretrained)
    preds = run(image, model, size, top)
    if as_json:
        click.echo(json.dumps({"model": model_name, "weights": model.source_layout, "top": [p.__dict__ for p in preds]}))
        return
    if model.source_layout == "fixture":
        click.echo("note: no --weights/--pretrained given: using the untrained test fixture, so the classes are arbitrary", err=True)
    for rank, p in enumerate(preds, 1):
        click.echo(f"{rank}. {p.label:<32} {p.probability:7.2%}  (class {p.index})")


if __name__ == "__main__":
    main()
