"""A deterministic stand-in for pretrained weights with realistic activations.

Plain random init gives logits of std ~1e-3, which makes every parity and int8 metric
meaningless. Here: seeded init, BatchNorm statistics re-estimated on real photos (the
shipped ``calib`` split), and the classifier scaled so logits spread like a trained
model's (std ~3). The same helpers calibrate any module (tests apply them to the
Hugging Face reference model).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from ..inputs.calibration import photo_inputs
from .config import TIMM_PREPROCESSING, get_spec

LOGIT_STD = 3.0


def seeded_init(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            m.weight.data = torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_out)
            if (
                m.bias is not None
            ):  # v2's attention and FFN convolutions have biases: seeded too, never torch's global RNG
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.02
        elif isinstance(m, nn.Linear):
            bound = math.sqrt(6.0 / (m.in_features + m.out_features))  # xavier-uniform, as ml-cvnets
            m.weight.data = (torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.02
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            # trained norms have uneven gains and offsets; that is what makes outlier channels
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g)
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.2


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, forward, inputs: torch.Tensor, batch_size: int = 8) -> None:
    """Replace every BatchNorm's running statistics by their exact average over ``inputs``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    for i in range(0, len(inputs), batch_size):
        forward(inputs[i : i + batch_size])
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


@torch.no_grad()
def scale_classifier(linear: nn.Linear, forward, inputs: torch.Tensor, target_std: float = LOGIT_STD) -> None:
    """Rescale the classifier so the logits over ``inputs`` have std ``target_std``, centred."""
    logits = forward(inputs)
    scale = target_std / logits.std().item()
    linear.weight.mul_(scale)
    linear.bias.mul_(scale)
    linear.bias.sub_(forward(inputs).mean(0))  # centre each class over the photos


def make_realistic(model: nn.Module, forward, linear: nn.Linear | None, seed: int, size: int = 256) -> nn.Module:
    """Apply seeded init, BN re-estimation on the calib photos and classifier scaling to ``model``."""
    seeded_init(model, seed)
    calib = torch.from_numpy(photo_inputs("calib", size, TIMM_PREPROCESSING, crops_per_photo=4, seed=seed))
    reestimate_batchnorm(model, forward, calib)
    if linear is not None:
        scale_classifier(linear, forward, calib)
    return model.eval()


@functools.lru_cache(maxsize=8)
def _fixture_state(name: str, num_classes: int, seed: int) -> dict[str, torch.Tensor]:
    from . import create_model

    with torch.random.fork_rng():  # anything seeded_init does not set is still the same in every process
        torch.manual_seed(seed)
        model = create_model(name, num_classes=num_classes)
    make_realistic(model, model, model.head.fc if num_classes > 0 else None, seed)
    return {k: v.clone() for k, v in model.state_dict().items()}


def fixture_model(name, *, num_classes: int = 1000, features_only: bool = False, seed: int = 0) -> nn.Module:
    """The deterministic test fixture of a registered variant, by name or ``ModelSpec`` (weights are NOT trained)."""
    from . import create_model

    spec = get_spec(name)
    model = create_model(spec, num_classes=num_classes, features_only=features_only)
    state = _fixture_state(spec.name, num_classes, seed)
    if features_only:
        state = {k: v for k, v in state.items() if not k.startswith(("final_conv.", "head."))}
    model.load_state_dict(state)
    model.preprocessing = TIMM_PREPROCESSING
    model.source_layout = "fixture"
    model.checkpoint_sha256 = None
    model.pretrained = None
    model.domain = "photos"
    model.default_input_size = spec.input_size
    return model.eval()
