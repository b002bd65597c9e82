"""Architecture configs and the model registry: one record per variant (no torch here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from ..device.manifest import INPUT_SIZE_STEP, MAX_INPUT_SIZE
from ..errors import UsageError
from ..inputs.datasets.fashion_mnist import FASHION_PREPROCESSING
from ..inputs.preprocess import Preprocessing


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class MobileViTConfig:
    """MobileViT v1. Widths follow the paper's Table 4 / ml-cvnets configs."""

    channels: tuple[int, ...]  # stem, stage 1..5 outputs, final 1x1 expansion
    transformer_dims: tuple[int, int, int]
    transformer_depths: tuple[int, int, int] = (2, 4, 3)
    expand_ratio: float = 4.0
    num_heads: int = 4
    mlp_ratio: float = 2.0
    layer_norm_eps: float = 1e-5
    quadratic_attention: ClassVar[bool] = True  # softmax attention: memory grows with the square of the tokens

    def summary(self) -> str:
        return f"dims {'/'.join(map(str, self.transformer_dims))}, {self.num_heads} heads, expand {self.expand_ratio:g}"

    def forward_bytes(self, size: int, batch: int = 1) -> int:
        """Estimated peak activation memory of one eager forward pass at ``size`` x ``size`` px (measured below)."""
        patches = (size // 16) ** 2  # the stride-8 block: a 2x2 patch covers 16 x 16 input pixels
        attention = 2 * 4 * batch * 4 * self.num_heads * patches**2  # two float32 [B*4, heads, N, N]
        return attention + CONV_BYTES_PER_PIXEL * batch * size * size


@dataclass(frozen=True)
class MobileViTV2Config:
    """MobileViT v2: every width follows from the multiplier (ml-cvnets ``mobilevit_v2.py``; timm's
    ``int(c * w)`` agrees for the seven published multipliers)."""

    width: float = 1.0  # the width multiplier: 0.5 .. 2.0
    attn_depths: tuple[int, int, int] = (2, 4, 3)
    expand_ratio: float = 2.0
    ffn_multiplier: int = 2
    norm_eps: float = 1e-5
    quadratic_attention: ClassVar[bool] = False  # separable attention: linear in the tokens

    @property
    def channels(self) -> tuple[int, ...]:
        """Stem, then the five stages' outputs."""
        w = self.width
        stem = make_divisible(min(max(32 * w, 16), 64))
        return (stem, make_divisible(64 * w, 16), *(make_divisible(c * w) for c in (128, 256, 384, 512)))

    @property
    def attn_dims(self) -> tuple[int, ...]:
        return tuple(make_divisible(c * self.width) for c in (128, 192, 256))

    def summary(self) -> str:
        return f"width {self.width:g}, dims {'/'.join(map(str, self.attn_dims))}, separable attention"

    def forward_bytes(self, size: int, batch: int = 1) -> int:
        """Estimated peak activation memory: separable attention is linear in the tokens, so convolutions dominate
        (their per-pixel bytes grow with the width)."""
        return int(CONV_BYTES_PER_PIXEL * max(1.0, self.width) * batch * size * size)


# Hugging Face's MobileViTImageProcessor: shortest edge 288, crop 256, bilinear, [0, 1],
# and it flips RGB -> BGR (the cvnets weights were trained on OpenCV-decoded images).
HF_PREPROCESSING = Preprocessing(channel_order="BGR", crop_pct=256 / 288, interpolation="bilinear")
# ml-cvnets' own evaluation pipeline, which the HF processor reproduces.
CVNETS_PREPROCESSING = HF_PREPROCESSING
# timm's pretrained_cfg for mobilevit_*.cvnets_in1k: RGB, crop_pct 0.9, bicubic, mean 0 / std 1.
TIMM_PREPROCESSING = Preprocessing(channel_order="RGB", crop_pct=0.9, interpolation="bicubic")


@dataclass(frozen=True)
class CheckpointSource:
    """Where a variant's weights live (a hub repo, or a file shipped in this package) and what they expect."""

    name: str  # the --pretrained value
    layout: str  # "hf", "timm" or "cvnets"
    repo_id: str | None  # None: shipped in mvit_deploy/models/weights/
    filenames: tuple[str, ...]  # tried in order
    preprocessing: Preprocessing
    num_classes: int = 1000
    input_size: int | None = None  # None: the variant's default
    domain: str = "photos"  # datasets.DOMAINS: what parity, calibration and class names use
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # families.FAMILIES: the architecture, its checkpoint layouts, int8 regions and parity rules
    config: MobileViTConfig | MobileViTV2Config
    input_size: int = 256
    sources: tuple[CheckpointSource, ...] = ()
    paper_params_m: float = 0.0  # the paper's Table, kept beside the counted number for comparison

    def source(self, name: str) -> CheckpointSource:
        for s in self.sources:
            if s.name == name:
                return s
        raise UsageError(
            f"{self.name} has no '{name}' weights",
            f"--pretrained for {self.name}: {', '.join(s.name for s in self.sources)}",
        )

    def to_dict(self) -> dict:
        return asdict(self)


# Our own reference models, trained on Fashion-MNIST by scripts/train_reference.py (model card:
# mvit_deploy/models/weights/README.md); the preprocessing is the Fashion-MNIST domain's (FASHION_PREPROCESSING,
# inputs/datasets/fashion_mnist.py).


def _sources(
    hf_repo: str | None, timm_name: str, fashion: bool = False, timm_pre: Preprocessing = TIMM_PREPROCESSING
) -> tuple[CheckpointSource, ...]:
    published = (
        *[
            CheckpointSource(
                "hf",
                "hf",
                hf_repo,
                ("model.safetensors", "pytorch_model.bin"),
                HF_PREPROCESSING,
                description="ImageNet-1k, Hugging Face hub",
            )
        ]
        * bool(hf_repo),
        CheckpointSource(
            "timm",
            "timm",
            f"timm/{timm_name}.cvnets_in1k",
            ("model.safetensors", "pytorch_model.bin"),
            timm_pre,
            description="ImageNet-1k, timm on the Hugging Face hub",
        ),
    )
    if not fashion:
        return published
    trained = CheckpointSource(
        "fashion",
        "timm",
        None,
        (f"{timm_name}-fashion_mnist.safetensors",),
        FASHION_PREPROCESSING,
        num_classes=10,
        input_size=64,
        domain="fashion-mnist",
        description="Fashion-MNIST, trained here, shipped (no network)",
    )
    return (trained, *published)


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is registered twice")
    MODELS[spec.name] = spec
    return spec


register(
    ModelSpec(
        "mobilevit_xxs",
        "mobilevit",
        MobileViTConfig(channels=(16, 16, 24, 48, 64, 80, 320), transformer_dims=(64, 80, 96), expand_ratio=2.0),
        sources=_sources("apple/mobilevit-xx-small", "mobilevit_xxs", fashion=True),
        paper_params_m=1.3,
    )
)
register(
    ModelSpec(
        "mobilevit_xs",
        "mobilevit",
        MobileViTConfig(channels=(16, 32, 48, 64, 80, 96, 384), transformer_dims=(96, 120, 144)),
        sources=_sources("apple/mobilevit-x-small", "mobilevit_xs"),
        paper_params_m=2.3,
    )
)
register(
    ModelSpec(
        "mobilevit_s",
        "mobilevit",
        MobileViTConfig(channels=(16, 32, 64, 96, 128, 160, 640), transformer_dims=(144, 192, 240)),
        sources=_sources("apple/mobilevit-small", "mobilevit_s", fashion=True),
        paper_params_m=5.6,
    )
)


# MobileViT v2: timm's pretrained_cfg for mobilevitv2_*: RGB, bicubic, crop_pct 0.888 (1.0 for the 384 px fine-tunes).
V2_TIMM_PREPROCESSING = Preprocessing(channel_order="RGB", crop_pct=0.888, interpolation="bicubic")
V2_TIMM_384_PREPROCESSING = Preprocessing(channel_order="RGB", crop_pct=1.0, interpolation="bicubic")
# (width, the v2 paper's Table 1 params in M; HF publishes only the 1.0 ImageNet classifier)
for _width, _params in ((0.5, 1.4), (0.75, 2.9), (1.0, 4.9), (1.25, 7.5), (1.5, 10.6), (1.75, 14.3), (2.0, 18.4)):
    _name = f"mobilevitv2_{round(_width * 100):03d}"
    _in22k = (
        (
            CheckpointSource(
                "timm-in22k",
                "timm",
                f"timm/{_name}.cvnets_in22k_ft_in1k",
                ("model.safetensors", "pytorch_model.bin"),
                V2_TIMM_PREPROCESSING,
                description="ImageNet-22k, fine-tuned on 1k, timm on the Hugging Face hub",
            ),
            CheckpointSource(
                "timm-in22k-384",
                "timm",
                f"timm/{_name}.cvnets_in22k_ft_in1k_384",
                ("model.safetensors", "pytorch_model.bin"),
                V2_TIMM_384_PREPROCESSING,
                input_size=384,
                description="ImageNet-22k, fine-tuned on 1k at 384 px, timm on the Hugging Face hub",
            ),
        )
        if _width >= 1.5
        else ()
    )
    register(
        ModelSpec(
            _name,
            "mobilevitv2",
            MobileViTV2Config(width=_width),
            sources=(
                *_sources(
                    "apple/mobilevitv2-1.0-imagenet1k-256" if _width == 1.0 else None,
                    _name,
                    fashion=_width == 0.5,
                    timm_pre=V2_TIMM_PREPROCESSING,
                ),
                *_in22k,
            ),
            paper_params_m=_params,
        )
    )


def get_spec(name: str | ModelSpec) -> ModelSpec:
    """The registered variant ``name``; a ``ModelSpec`` already looked up is passed through (look up once)."""
    if isinstance(name, ModelSpec):
        return name
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}", f"choose one of {', '.join(MODELS)}") from None


def pretrained_names() -> list[str]:
    """Every --pretrained value some variant has, in registry order."""
    return list(dict.fromkeys(s.name for spec in MODELS.values() for s in spec.sources))


# Peak memory of one eager forward pass above the 64 px run, measured with `/usr/bin/time -f %M
# mvit-deploy predict --pretrained fashion --input-size N` (x86-64, torch 2.13, 2026-11-23):
#   XXS 17 / 160 / 739 / 2239 MB,  S 23 / 208 / 775 / 2310 MB  at 256 / 512 / 768 / 1024 px;
#   forward_bytes estimates 28 / 213 / 856 / 2462 MB for both.
# The stride-8 MobileViT block explains almost all of it from 512 px on: its attention scores
# and their softmax, two [B*4, heads, N, N] float32 tensors with N = (size / 16)^2 patches, grow
# with the square of the pixel count (2.1 GB at 1024 px, 34 GB at 2048 px). The convolutions
# add at most 300 bytes a pixel. 1024 px is the largest size a laptop runs with room to spare.
# MAX_INPUT_SIZE (1024) and INPUT_SIZE_STEP (64) live with the manifest checks (device/manifest.py): a board runs
# them without this module.
CONV_BYTES_PER_PIXEL = 300


def forward_bytes(cfg, size: int, batch: int = 1) -> int:
    """Estimated peak activation memory of one eager forward pass at ``size`` x ``size`` px (the config's own
    estimate)."""
    return cfg.forward_bytes(size, batch)


def check_input_size(size: int, model: str = "mobilevit_xxs") -> int:
    """Refuse a size the network cannot take, or one whose forward pass would not fit in memory."""
    if size > MAX_INPUT_SIZE:
        cfg = get_spec(model).config
        gb = forward_bytes(cfg, size) / 1e9
        why = (
            f": one {model} forward pass would need about {gb:,.{0 if gb >= 10 else 1}f} GB (attention memory grows "
            "with the square of the pixel count)"
            if cfg.quadratic_attention
            else f" (the largest size {model}'s exports are checked at)"
        )
        raise UsageError(
            f"input size {size} is above the maximum {MAX_INPUT_SIZE}{why}",
            f"use --input-size {MAX_INPUT_SIZE} or less",
        )
    if size < INPUT_SIZE_STEP or size % INPUT_SIZE_STEP:  # the stride-32 block unfolds 2x2 patches: size/32 even
        raise UsageError(
            f"input size {size} is not a multiple of {INPUT_SIZE_STEP} ({INPUT_SIZE_STEP}, {2 * INPUT_SIZE_STEP}, ... "
            f"{MAX_INPUT_SIZE})",
            "use e.g. 256 (default), 320 or 512",
        )
    return size
