"""PyTorch MobileViT, its registry and checkpoint loading.

The registry (``models.config``) is torch-free; everything that builds a model imports
torch on first use, so ``import mvit_deploy.models.config`` works on a board.
"""

from __future__ import annotations

from pathlib import Path

from ..preprocess import Preprocessing
from .config import MODELS, ModelSpec, check_input_size, get_spec


def __getattr__(name: str):
    if name == "MobileViT":
        from .mobilevit import MobileViT

        return MobileViT
    raise AttributeError(name)


def create_model(name: str, *, num_classes: int = 1000, features_only: bool = False):
    """A randomly initialised, eval-mode model of a registered variant."""
    from .mobilevit import MobileViT

    return MobileViT(get_spec(name).config, num_classes=num_classes, features_only=features_only).eval()


def load_model(
    name: str,
    weights: str | Path | None = None,
    *,
    num_classes: int = 1000,
    pretrained: str | None = None,
    features_only: bool = False,
) -> "MobileViT":  # noqa: F821
    """An eval-mode MobileViT mapping a preprocessed [B, 3, H, W] float tensor to logits.

    ``weights`` is a local checkpoint (timm, Hugging Face or ml-cvnets layout, detected);
    ``pretrained`` ("hf" or "timm") downloads the published weights instead. With neither,
    the deterministic test fixture is returned (seeded weights, realistic activations).
    The model carries ``.preprocessing`` (the checkpoint's training pipeline),
    ``.source_layout`` and ``.checkpoint_sha256``.
    """
    from .checkpoints import apply_checkpoint, load_checkpoint

    spec = get_spec(name)
    if weights is not None and pretrained is not None:
        from ..errors import UsageError

        raise UsageError("both a weights file and --pretrained were given", "pass only one of them")
    if weights is None and pretrained is None:
        from .fixture import fixture_model

        return fixture_model(name, num_classes=num_classes, features_only=features_only)
    preprocessing: Preprocessing | None = None
    if pretrained is not None:
        from .hub import download

        weights, source = download(spec, pretrained)
        preprocessing = source.preprocessing
    model = create_model(name, num_classes=num_classes, features_only=features_only)
    ckpt = load_checkpoint(weights)
    apply_checkpoint(model, ckpt, spec, MODELS.values())
    model.preprocessing = preprocessing or preprocessing_for_layout(ckpt.layout)
    model.source_layout = ckpt.layout
    model.checkpoint_sha256 = ckpt.sha256
    return model.eval()


def preprocessing_for_layout(layout: str) -> Preprocessing:
    from .config import CVNETS_PREPROCESSING, HF_PREPROCESSING, TIMM_PREPROCESSING

    return {"hf": HF_PREPROCESSING, "cvnets": CVNETS_PREPROCESSING, "timm": TIMM_PREPROCESSING}[layout]


__all__ = ["MODELS", "ModelSpec", "MobileViT", "check_input_size", "create_model", "get_spec", "load_model"]
