"""A variant's registry record with its counted parameters and FLOPs."""

from __future__ import annotations

import functools

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import MODELS, get_spec
from .families import get_family


@functools.cache
def count(name: str, input_size: int) -> tuple[int, int]:
    """(parameters, FLOPs of one forward pass at ``input_size``) counted on the model itself.

    FLOPs follow torch's flop counter: 2 per multiply-accumulate of conv / matmul.
    """
    from . import create_model

    model = create_model(name)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, input_size, input_size))
    return params, counter.get_total_flops()


def model_card(name: str, input_size: int | None = None) -> dict:
    spec = get_spec(name)
    size = input_size or spec.input_size
    params, flops = count(name, size)
    card = spec.to_dict()
    family = get_family(spec.family)
    card.update(
        family_title=family.title,
        summary=spec.config.summary(),
        params=params,
        params_m=round(params / 1e6, 3),
        flops=flops,
        gmacs=round(flops / 2e9, 3),
        flops_input_size=size,
    )
    return card


def all_cards() -> list[dict]:
    return [model_card(name) for name in MODELS]
