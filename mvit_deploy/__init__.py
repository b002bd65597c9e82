"""mvit-deploy: MobileViT to ONNX, Core ML and LiteRT, with parity and latency checks.

Importing the package is cheap and needs no torch; the PyTorch side is loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CheckpointError, DependencyError, MvitDeployError, UsageError  # noqa: E402


def load_model(name, weights=None, *, num_classes=None, pretrained=None, features_only=False):
    """See :func:`mvit_deploy.models.load_model` (imports torch)."""
    from .models import load_model as _load

    return _load(name, weights, num_classes=num_classes, pretrained=pretrained, features_only=features_only)


__all__ = ["CheckpointError", "DependencyError", "MvitDeployError", "UsageError", "__version__", "load_model"]
