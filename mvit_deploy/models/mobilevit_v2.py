"""MobileViT v2 (arXiv 2206.02680, separable self-attention), written to export like our v1.

The ``mobilevitv2`` family of ``families.py`` builds it; its checkpoint renames live there.
Checked against HF's ``MobileViTV2ForImageClassification`` (tests/test_model_v2.py). Design
notes: docs/mobilevit_v2_design.md.

Module names follow timm (``stem``, ``stages.S.B``, ``head.fc``). Export rules as in v1: every
tensor has rank <= 4; tokens are [B, C, P, N] (``pixel_unshuffle`` + a reshape of the leading
axes, bit-for-bit HF's ``F.unfold``; fold is the inverse through ``pixel_shuffle``), so there is
no ``col2im`` and no transpose; input sizes are multiples of 64.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import MobileViTV2Config
from .mobilevit import PATCH, Backbone, ConvNormAct, InvertedResidual


class SeparableMix(nn.Module):
    """The parameter-free middle of separable attention: split q | k | v, softmax of the one query channel over
    the N tokens (per pixel position P), the score-weighted sum of the keys (a context vector) gating relu(v).
    A module of its own so int8 recipes can keep it float by name (families.py) while the projections run int8."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:  # [B, 1 + 2C, P, N]
        q, k, v = qkv.split([1, self.dim, self.dim], dim=1)
        context = (k * q.softmax(dim=-1)).sum(dim=-1, keepdim=True)  # [B, C, P, 1]
        return nn.functional.relu(v) * context


class LinearSelfAttention(nn.Module):
    """Separable self-attention (linear in the tokens): qkv projection -> :class:`SeparableMix` -> output projection."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)
        self.mix = SeparableMix(dim)
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, P, N]
        return self.out_proj(self.mix(self.qkv_proj(x)))


class TransformerBlockV2(nn.Module):
    """GroupNorm(1) over the whole [C, P, N] volume (not a per-token layer norm) -> attention; GroupNorm(1) -> 1x1
    FFN."""

    def __init__(self, dim: int, ffn_dim: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim, eps=eps)
        self.attn = LinearSelfAttention(dim)
        self.norm2 = nn.GroupNorm(1, dim, eps=eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Conv2d(dim, ffn_dim, 1)
        self.mlp.act = nn.SiLU()
        self.mlp.fc2 = nn.Conv2d(ffn_dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp.fc2(self.mlp.act(self.mlp.fc1(self.norm2(x))))


class MobileViTV2Block(nn.Module):
    """Depthwise 3x3 -> 1x1 to d -> unfold [B, d, P, N] -> transformer -> GroupNorm -> fold -> 1x1 projection (no skip,
    no fusion)."""

    def __init__(self, channels: int, dim: int, depth: int, ffn_multiplier: int, eps: float):
        super().__init__()
        self.conv_kxk = ConvNormAct(channels, channels, 3, groups=channels)
        self.conv_1x1 = nn.Conv2d(channels, dim, 1, bias=False)
        ffn_dim = int(ffn_multiplier * dim // 16 * 16)
        self.transformer = nn.Sequential(*[TransformerBlockV2(dim, ffn_dim, eps) for _ in range(depth)])
        self.norm = nn.GroupNorm(1, dim, eps=eps)
        self.conv_proj = ConvNormAct(dim, channels, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quads = nn.functional.pixel_unshuffle(self.conv_1x1(self.conv_kxk(x)), PATCH)  # [B, d*P, H/2, W/2]
        seq = quads.flatten(2).unflatten(1, (-1, PATCH * PATCH))  # [B, d, P, N]
        seq = self.norm(self.transformer(seq))
        return self.conv_proj(nn.functional.pixel_shuffle(seq.flatten(1, 2).reshape_as(quads), PATCH))


class MobileViTV2(Backbone):
    """MobileViT v2 classifier (no final 1x1 expansion: the head reads the last stage); ``features_only=True``
    returns the five stage outputs instead."""

    def __init__(self, cfg: MobileViTV2Config, num_classes: int = 1000, features_only: bool = False):
        super().__init__(cfg, num_classes, features_only)
        ch = cfg.channels
        stages = self.conv_stages(stage2_blocks=2)
        for s, (dim, depth) in enumerate(zip(cfg.attn_dims, cfg.attn_depths, strict=False)):
            cin, cout = ch[s + 2], ch[s + 3]
            stages.append(
                nn.Sequential(
                    InvertedResidual(cin, cout, 2, cfg.expand_ratio),
                    MobileViTV2Block(cout, dim, depth, cfg.ffn_multiplier, cfg.norm_eps),
                )
            )
        self.stages = nn.Sequential(*stages)
        self.feature_channels = list(ch[1:6])
        if not features_only:
            self.head = nn.Module()
            self.head.fc = nn.Linear(ch[5], num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.fc(x.mean(dim=(2, 3)))
