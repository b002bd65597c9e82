"""PyTorch MobileViT, its registry and checkpoint loading.

The registry (``models.config``) is torch-free; everything that builds a model imports
torch on first use, so ``import mvit_deploy.models.config`` works on a board.
"""

from __future__ import annotations

from pathlib import Path

from ..inputs.preprocess import Preprocessing
from .config import MODELS, ModelSpec, check_input_size, get_spec


def __getattr__(name: str):
    if name == "MobileViT":
        from .mobilevit import MobileViT

        return MobileViT
    raise AttributeError(name)


def checkpoint_source(name: str | ModelSpec, weights=None, pretrained: str | None = None):
    """The registry record of the weights asked for: ``--pretrained NAME``, or a local file that declares one."""
    from .hub import declared_source

    spec = get_spec(name)
    if pretrained is not None:
        return spec.source(pretrained)
    declared = declared_source(weights) if weights is not None else None
    return next((s for s in spec.sources if s.name == declared), None)


def default_input_size(name: str | ModelSpec, weights=None, pretrained: str | None = None) -> int:
    """The input size the weights were trained at (64 for the Fashion-MNIST models), else the variant's (256)."""
    spec = get_spec(name)
    source = checkpoint_source(spec, weights, pretrained)
    return (source.input_size if source else None) or spec.input_size


def create_model(name: str | ModelSpec, *, num_classes: int = 1000, features_only: bool = False):
    """A randomly initialised, eval-mode model of a registered variant, built by its family."""
    from .families import get_family

    spec = get_spec(name)
    return get_family(spec.family).build(spec.config, num_classes=num_classes, features_only=features_only).eval()


def load_model(
    name: str | ModelSpec,
    weights: str | Path | None = None,
    *,
    num_classes: int | None = None,
    pretrained: str | None = None,
    features_only: bool = False,
) -> MobileViT:  # noqa: F821
    """An eval-mode MobileViT mapping a preprocessed [B, 3, H, W] float tensor to logits.

    ``weights`` is a local checkpoint (timm, Hugging Face or ml-cvnets layout, detected);
    ``pretrained`` names registered weights instead ("fashion": our trained Fashion-MNIST
    model, shipped; "hf" / "timm": the published ImageNet weights, downloaded). With
    neither, the deterministic test fixture is returned (seeded weights, realistic
    activations). ``num_classes`` defaults to the checkpoint's head (1000 for the fixture).
    The model carries ``.preprocessing`` (the checkpoint's training pipeline),
    ``.source_layout``, ``.checkpoint_sha256``, ``.pretrained`` (the source name or None),
    ``.domain`` (what it classifies: ``datasets.DOMAINS``) and ``.default_input_size``.
    """
    from .checkpoints import apply_checkpoint, load_checkpoint

    spec = get_spec(name)
    if weights is not None and pretrained is not None:
        from ..errors import UsageError

        raise UsageError("both a weights file and --pretrained were given", "pass only one of them")
    if weights is None and pretrained is None:
        from .fixture import fixture_model

        return fixture_model(
            spec, num_classes=1000 if num_classes is None else num_classes, features_only=features_only
        )
    source = checkpoint_source(spec, weights, pretrained)
    if pretrained is not None:
        from .hub import download

        weights = download(source)
    ckpt = load_checkpoint(weights)
    if num_classes is None:
        head = ckpt.state_dict.get("head.fc.weight")
        num_classes = int(head.shape[0]) if head is not None and head.ndim == 2 else 1000
    model = create_model(spec, num_classes=num_classes, features_only=features_only)
    apply_checkpoint(model, ckpt, spec, MODELS.values())
    model.preprocessing = source.preprocessing if source else preprocessing_for_layout(ckpt.layout, spec.family)
    model.source_layout = ckpt.layout
    model.checkpoint_sha256 = ckpt.sha256
    model.pretrained = source.name if source else None
    model.domain = source.domain if source else "photos"
    model.default_input_size = (source.input_size if source else None) or spec.input_size
    return model.eval()


def preprocessing_for_layout(layout: str, family: str) -> Preprocessing:
    """What a local checkpoint of ``layout`` was trained with, as its model family publishes it."""
    from .families import get_family

    return get_family(family).preprocessing[layout]


__all__ = [
    "MODELS",
    "ModelSpec",
    "MobileViT",
    "check_input_size",
    "checkpoint_source",
    "create_model",
    "default_input_size",
    "get_spec",
    "load_model",
]
