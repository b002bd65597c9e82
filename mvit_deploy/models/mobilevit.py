"""MobileViT v1 (arXiv 2110.02178) written to export cleanly.

Module names follow timm's layout (``stem``, ``stages.S.B``, ``final_conv``, ``head.fc``),
so a timm state dict loads as it is and other layouts are renamed into it
(see ``checkpoints.py``).

Export rules kept here by construction:
- every tensor of the default graph has rank <= 4 (Core ML allows 5, the Neural Engine
  prefers 4); the ONNX and LiteRT spellings of :func:`export_variant` use rank 6 on purpose;
- ``forward`` does no Python arithmetic on tensor shapes: unfold is ``pixel_unshuffle``,
  fold ``pixel_shuffle`` after a ``reshape_as`` against the unfolded tensor, reshapes use
  only module constants and -1;
- any input whose height and width are multiples of 64 (the stride-32 block unfolds 2x2 patches).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .config import MobileViTConfig, make_divisible

PATCH = 2  # patch height = width = 2 at every level, as in the paper


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and state dict) that can be written out as plain ops.

    litert-torch lowers ``layer_norm`` through batch_norm_training with rank-3 reshapes: 16
    TFLite ops and 5 RESHAPEs per norm. Spelled as mean / variance / rsqrt it is 10 ops and
    one 1-element-per-token reshape, all XNNPACK kernels. onnxruntime and Core ML have a
    LayerNormalization kernel of their own, so only the LiteRT export asks for this
    (:func:`export_variant`).
    """

    decomposed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.decomposed:
            return super().forward(x)
        d = x - x.mean(-1, keepdim=True)
        return d * torch.rsqrt((d * d).mean(-1, keepdim=True) + self.eps) * self.weight + self.bias


class ConvNormAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> optional SiLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear project (+ skip)."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: float):
        super().__init__()
        mid = make_divisible(round(cin * expand_ratio))
        self.conv1_1x1 = ConvNormAct(cin, mid, 1)
        self.conv2_kxk = ConvNormAct(mid, mid, 3, stride=stride, groups=mid)
        self.conv3_1x1 = ConvNormAct(mid, cout, 1, act=False)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x)))
        return x + y if self.has_skip else y


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, written as plain matmuls.

    Tokens come flat, [S*N, C], so every projection is a plain 2-D GEMM (onnxruntime wraps a
    3-D MatMul+Add in two reshapes per linear layer: 72 nodes on XXS, ~10 % of its latency);
    ``like`` ([S, N, C]) only lends its leading shape to the per-sequence attention.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"transformer dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        # [S*N, C] -> [S*N, 3*C] -> [S, N, 3*heads, hd] -> [S, 3*heads, N, hd]
        qkv = (
            self.qkv(x).unflatten(0, like.shape[:2]).unflatten(-1, (3 * self.num_heads, self.head_dim)).transpose(1, 2)
        )
        q, k, v = qkv.chunk(3, dim=1)  # each [S, heads, N, hd]
        attn = torch.matmul(q * self.scale, k.transpose(-2, -1)).softmax(dim=-1)
        out = torch.matmul(attn, v)  # [S, heads, N, hd]
        return self.proj(out.transpose(1, 2).flatten(2).flatten(0, 1))  # [S*N, C]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder layer on flat tokens [S*N, C] (``like``: [S, N, C], for its shape)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), like)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Sequential):
    """The encoder layers, each called on flat tokens with the [S, N, C] view that lends its shape."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, like)
        return x


def tokens_from_quads(quads: torch.Tensor) -> torch.Tensor:
    """[B, C*P, H/2, W/2] (``pixel_unshuffle``: channel c*P + p) -> [B*P, N, C].

    Row b*P + p holds, for every patch n = i*(W/2) + j, the pixel (2i + p//2, 2j + p%2),
    the same ordering as ml-cvnets / Hugging Face. One transpose moves the data; the
    reshapes around it are free.
    """
    seq = quads.flatten(2).unflatten(1, (-1, PATCH * PATCH))  # [B, C, P, N]
    return seq.permute(0, 2, 3, 1).flatten(0, 1)  # [B*P, N, C]


def quads_from_tokens(seq: torch.Tensor, quads: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`tokens_from_quads`; ``quads`` is a tensor of the target shape."""
    p = seq.unflatten(0, (-1, PATCH * PATCH)).permute(0, 3, 1, 2)  # [B, C, P, N]
    return p.flatten(1, 2).reshape_as(quads)


def unfold_patches(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B*P, N, C]: one sequence of N patches per pixel position p in a 2x2 patch."""
    return tokens_from_quads(nn.functional.pixel_unshuffle(x, PATCH))


def fold_patches(seq: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`unfold_patches`; ``like`` is a [B, C, H, W] tensor of the target shape."""
    return nn.functional.pixel_shuffle(quads_from_tokens(seq, nn.functional.pixel_unshuffle(like, PATCH)), PATCH)


def tokens_channels_last(local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, C, H, W] -> ([B*P, N, C], the rank-6 view fold needs): the ordering of
    :func:`unfold_patches` through channels-last tensors, so that every transpose keeps C
    innermost or moves it whole (one rank-6 transpose; for runtimes that allow rank 6)."""
    six = local.permute(0, 2, 3, 1).unflatten(1, (-1, PATCH)).unflatten(3, (-1, PATCH))  # [B, H/2, 2, W/2, 2, C]
    grid = six.permute(0, 2, 4, 1, 3, 5)  # [B, 2, 2, H/2, W/2, C]
    return grid.flatten(0, 2).flatten(1, 2), grid


def fold_channels_last(seq: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`tokens_channels_last` (``grid``: its rank-6 view, for the shape)."""
    six = seq.reshape_as(grid).permute(0, 3, 1, 4, 2, 5)  # [B, H/2, 2, W/2, 2, C]
    return six.flatten(3, 4).flatten(1, 2).permute(0, 3, 1, 2)  # [B, C, H, W]


# ---------------------------------------------------------------------------- the Neural Engine layout
# Apple's ANE transformer recipe (apple/ml-ane-transformers, "Deploying Transformers on the Apple
# Neural Engine", 2022) on MobileViT's own weights: tokens stay [B, C, P, N] (channels first, the
# P = 4 pixel positions of a 2x2 patch where Apple has its singleton axis, the N patches last),
# nn.Linear runs as a 1x1 convolution, attention is per head with einsum, softmax over the
# channel axis (keys), layer norm over the channel axis. No tensor above rank 4, and the last
# axis is the long one.


def _ane_linear(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.conv2d(x, linear.weight[:, :, None, None], linear.bias)


def _ane_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    d = x - x.mean(1, keepdim=True)
    return (
        d * torch.rsqrt((d * d).mean(1, keepdim=True) + norm.eps) * norm.weight[:, None, None]
        + norm.bias[:, None, None]
    )


def _ane_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    q, k, v = _ane_linear(attn.qkv, x).chunk(3, dim=1)  # each [B, C, P, N]; head h = channels h*hd .. (h+1)*hd
    k = k.transpose(1, 3)  # [B, N, P, C]: the one transpose, on the keys (as Apple's reference)
    heads = []
    for h in range(attn.num_heads):
        sl = slice(h * attn.head_dim, (h + 1) * attn.head_dim)
        scores = torch.einsum("bkpc,bcpq->bkpq", k[..., sl], q[:, sl] * attn.scale).softmax(dim=1)  # [B, N_k, P, N_q]
        heads.append(torch.einsum("bcpk,bkpq->bcpq", v[:, sl], scores))  # [B, hd, P, N_q]
    return _ane_linear(attn.proj, torch.cat(heads, dim=1))


def _ane_transformer_block(block: TransformerBlock, x: torch.Tensor) -> torch.Tensor:
    x = x + _ane_attention(block.attn, _ane_norm(block.norm1, x))
    return x + _ane_linear(block.mlp.fc2, block.mlp.act(_ane_linear(block.mlp.fc1, _ane_norm(block.norm2, x))))


class MobileViTBlock(nn.Module):
    """Local 3x3 + 1x1 conv -> unfold -> transformer -> fold -> 1x1 proj -> concat -> 3x3 fusion."""

    patches = "pixel_shuffle"  # or "channels_last" (rank 6) or "ane" (the Neural Engine layout); see export_variant

    def __init__(self, channels: int, dim: int, depth: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.conv_kxk = ConvNormAct(channels, channels, 3)
        self.conv_1x1 = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = Transformer(*[TransformerBlock(dim, num_heads, mlp_ratio, eps) for _ in range(depth)])
        self.norm = LayerNorm(dim, eps=eps)
        self.conv_proj = ConvNormAct(dim, channels, 1)
        self.conv_fusion = ConvNormAct(2 * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.conv_1x1(self.conv_kxk(x))  # [B, dim, H, W]
        if self.patches == "ane":
            quads = nn.functional.pixel_unshuffle(local, PATCH)  # [B, dim*P, H/2, W/2]
            seq = quads.flatten(2).unflatten(1, (-1, PATCH * PATCH))  # [B, dim, P, N]: no transpose at all
            for layer in self.transformer:
                seq = _ane_transformer_block(layer, seq)
            y = nn.functional.pixel_shuffle(_ane_norm(self.norm, seq).flatten(1, 2).reshape_as(quads), PATCH)
            return self.conv_fusion(torch.cat([x, self.conv_proj(y)], dim=1))
        if self.patches == "channels_last":
            tokens, grid = tokens_channels_last(local)
        else:
            # The patch rearrangement is pixel_unshuffle (space-to-depth) + one transpose, and back:
            # the runtimes have a native op for each (ONNX SpaceToDepth/DepthToSpace, TFLite and
            # XNNPACK space_to_depth/depth_to_space, Core ML pixel_unshuffle/pixel_shuffle), where
            # four strided slices and interleaving concats cost LiteRT ~20 % of XXS fp32 (benchmarks/latency.py).
            quads = nn.functional.pixel_unshuffle(local, PATCH)  # [B, dim*P, H/2, W/2]
            tokens = tokens_from_quads(quads)  # [B*P, N, dim]
        flat = self.transformer(tokens.flatten(0, 1), tokens)  # [B*P*N, dim]: linear layers as plain GEMMs
        tokens = self.norm(flat).reshape_as(tokens)
        if self.patches == "channels_last":
            y = fold_channels_last(tokens, grid)
        else:
            y = nn.functional.pixel_shuffle(quads_from_tokens(tokens, quads), PATCH)
        return self.conv_fusion(torch.cat([x, self.conv_proj(y)], dim=1))


@contextlib.contextmanager
def export_variant(model: nn.Module, patches: str | None = None, layer_norm: str | None = None):
    """Temporarily write ``model``'s graph the way one runtime runs fastest; outputs are the same.

    ``patches="channels_last"``: unfold/fold through rank-6 channels-last transposes (ONNX:
    onnxruntime moves C-innermost data with its fast transpose and cancels the rest against
    its NHWC int8 kernels). ``patches="ane"``: the transformer in Apple's Neural Engine layout
    ([B, C, P, N], 1x1 convolutions, per-head einsum, softmax and layer norm over channels; Core
    ML ``--coreml-layout ane``). ``layer_norm="decomposed"``: :class:`LayerNorm` as plain ops (LiteRT).
    Parameters and state dict are untouched; the default graph stays rank <= 4 for Core ML.
    """
    blocks = [m for m in model.modules() if isinstance(m, MobileViTBlock)] if patches else []
    norms = [m for m in model.modules() if isinstance(m, LayerNorm)] if layer_norm else []
    for m in blocks:
        m.patches = patches
    for m in norms:
        m.decomposed = layer_norm == "decomposed"
    try:
        yield model
    finally:
        for m in blocks:
            del m.patches
        for m in norms:
            del m.decomposed


class Backbone(nn.Module):
    """stem -> five stages -> a classifier head; ``features_only=True`` returns the five stage outputs instead.

    A family's network (v1 here, v2 in ``mobilevit_v2.py``) builds ``stem``, ``stages`` and, unless
    ``features_only``, its head, and defines ``forward_head``: how the head reads the last stage.
    """

    def __init__(self, cfg, num_classes: int, features_only: bool):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.features_only = features_only
        self.stem = ConvNormAct(3, cfg.channels[0], 3, stride=2)

    def conv_stages(self, stage2_blocks: int) -> list[nn.Sequential]:
        """The two inverted-residual stages at strides 2 and 4 that both families open with."""
        ch, e = self.cfg.channels, self.cfg.expand_ratio
        return [
            nn.Sequential(InvertedResidual(ch[0], ch[1], 1, e)),
            nn.Sequential(
                *[
                    InvertedResidual(ch[1] if i == 0 else ch[2], ch[2], 2 if i == 0 else 1, e)
                    for i in range(stage2_blocks)
                ]
            ),
        ]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs at strides 2, 4, 8, 16, 32."""
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_features(x)
        return self.forward_head(self.stages(self.stem(x)))


class MobileViT(Backbone):
    """MobileViT v1 classifier; ``features_only=True`` returns the five stage outputs instead."""

    def __init__(self, cfg: MobileViTConfig, num_classes: int = 1000, features_only: bool = False):
        super().__init__(cfg, num_classes, features_only)
        ch = cfg.channels
        stages = self.conv_stages(stage2_blocks=3)
        for s, (dim, depth) in enumerate(zip(cfg.transformer_dims, cfg.transformer_depths, strict=False)):
            cin, cout = ch[s + 2], ch[s + 3]
            stages.append(
                nn.Sequential(
                    InvertedResidual(cin, cout, 2, cfg.expand_ratio),
                    MobileViTBlock(cout, dim, depth, cfg.num_heads, cfg.mlp_ratio, cfg.layer_norm_eps),
                )
            )
        self.stages = nn.Sequential(*stages)
        self.feature_channels = [ch[1], ch[2], ch[3], ch[4], ch[5]]
        if not features_only:
            self.final_conv = ConvNormAct(ch[5], ch[6], 1)
            self.head = nn.Module()
            self.head.fc = nn.Linear(ch[6], num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_conv(x).mean(dim=(2, 3))  # global average pool: [B, C, H, W] -> [B, C]
        return self.head.fc(x)
