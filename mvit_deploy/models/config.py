"""Architecture configs and the model registry: one record per variant (no torch here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from ..preprocess import Preprocessing


@dataclass(frozen=True)
class MobileViTConfig:
    """Widths follow the paper's Table 4 / ml-cvnets configs."""

    channels: tuple[int, ...]  # stem, stage 1..5 outputs, final 1x1 expansion
    transformer_dims: tuple[int, int, int]
    transformer_depths: tuple[int, int, int] = (2, 4, 3)
    expand_ratio: float = 4.0
    num_heads: int = 4
    mlp_ratio: float = 2.0
    layer_norm_eps: float = 1e-5


# Hugging Face's MobileViTImageProcessor: shortest edge 288, crop 256, bilinear, [0, 1],
# and it flips RGB -> BGR (the cvnets weights were trained on OpenCV-decoded images).
HF_PREPROCESSING = Preprocessing(channel_order="BGR", crop_pct=256 / 288, interpolation="bilinear")
# ml-cvnets' own evaluation pipeline, which the HF processor reproduces.
CVNETS_PREPROCESSING = HF_PREPROCESSING
# timm's pretrained_cfg for mobilevit_*.cvnets_in1k: RGB, crop_pct 0.9, bicubic, mean 0 / std 1.
TIMM_PREPROCESSING = Preprocessing(channel_order="RGB", crop_pct=0.9, interpolation="bicubic")


@dataclass(frozen=True)
class CheckpointSource:
    """Where a variant's published weights live, and the preprocessing they were trained with."""

    layout: str  # "hf", "timm" or "cvnets"
    repo_id: str
    filenames: tuple[str, ...]  # tried in order
    preprocessing: Preprocessing


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: MobileViTConfig
    input_size: int = 256
    sources: tuple[CheckpointSource, ...] = ()
    paper_params_m: float = 0.0  # the paper's Table, kept beside the counted number for comparison
    default_preprocessing: Preprocessing = field(default=TIMM_PREPROCESSING)

    def source(self, layout: str) -> CheckpointSource:
        for s in self.sources:
            if s.layout == layout:
                return s
        raise UsageError(f"{self.name} has no published '{layout}' checkpoint", f"known: {[s.layout for s in self.sources]}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["default_preprocessing"] = self.default_preprocessing.to_dict()
        return d


def _sources(hf_repo: str, timm_name: str) -> tuple[CheckpointSource, ...]:
    return (
        CheckpointSource("hf", hf_repo, ("model.safetensors", "pytorch_model.bin"), HF_PREPROCESSING),
        CheckpointSource("timm", f"timm/{timm_name}.cvnets_in1k", ("model.safetensors", "pytorch_model.bin"), TIMM_PREPROCESSING),
    )


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is registered twice")
    MODELS[spec.name] = spec
    return spec


register(
    ModelSpec(
        "mobilevit_xxs",
        MobileViTConfig(channels=(16, 16, 24, 48, 64, 80, 320), transformer_dims=(64, 80, 96), expand_ratio=2.0),
        sources=_sources("apple/mobilevit-xx-small", "mobilevit_xxs"),
        paper_params_m=1.3,
    )
)
register(
    ModelSpec(
        "mobilevit_xs",
        MobileViTConfig(channels=(16, 32, 48, 64, 80, 96, 384), transformer_dims=(96, 120, 144)),
        sources=_sources("apple/mobilevit-x-small", "mobilevit_xs"),
        paper_params_m=2.3,
    )
)
register(
    ModelSpec(
        "mobilevit_s",
        MobileViTConfig(channels=(16, 32, 64, 96, 128, 160, 640), transformer_dims=(144, 192, 240)),
        sources=_sources("apple/mobilevit-small", "mobilevit_s"),
        paper_params_m=5.6,
    )
)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}", f"choose one of {', '.join(MODELS)}") from None


def check_input_size(size: int) -> int:
    if size < 32 or size % 32:
        raise UsageError(f"input size {size} is not a positive multiple of 32", "use e.g. 256 (default), 320 or 512")
    return size
