"""Model families, one registry: what differs between MobileViT v1 and v2 (no torch here).

A family brings its architecture (the module and class that build it from a variant's config),
the checkpoint layouts it is published in and how to tell them apart (telltale keys), the key
renames from each layout to ours (timm's names), and the regions int8 keeps in float. Variants
(``config.MODELS``) name their family; loading, the fixture, the model card, the checkpoint door
and quantization ask this registry, so adding a family touches no export code.

Rename rules are ordered ``(regex, replacement)`` pairs applied to every key in turn.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from dataclasses import dataclass, field

from .. import tolerances
from ..errors import UsageError
from .config import CVNETS_PREPROCESSING, HF_PREPROCESSING, TIMM_PREPROCESSING, V2_TIMM_PREPROCESSING, get_spec

# ---- MobileViT v1 (arXiv 2110.02178) -------------------------------------------------------

# Hugging Face MobileViTForImageClassification / MobileViTModel -> ours.
V1_HF_RULES = (
    (r"^mobilevit\.", ""),
    (r"^conv_stem\.", "stem."),
    (r"^conv_1x1_exp\.", "final_conv."),
    (r"^classifier\.", "head.fc."),
    (r"^encoder\.layer\.([01])\.layer\.(\d+)\.", r"stages.\1.\2."),
    (r"^encoder\.layer\.([234])\.downsampling_layer\.", r"stages.\1.0."),
    (r"^encoder\.layer\.([234])\.", r"stages.\1.1."),
    (r"\.expand_1x1\.", ".conv1_1x1."),
    (r"\.conv_3x3\.", ".conv2_kxk."),
    (r"\.reduce_1x1\.", ".conv3_1x1."),
    (r"\.conv_1x1\.convolution\.", ".conv_1x1."),
    (r"\.conv_projection\.", ".conv_proj."),
    (r"\.fusion\.", ".conv_fusion."),
    (r"\.transformer\.layer\.(\d+)\.", r".transformer.\1."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.attention\.attention\.(query|key|value)\.", r".attn.\1."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"\.layernorm\.", ".norm."),
    (r"\.convolution\.", ".conv."),
    (r"\.normalization\.", ".bn."),
)

# ml-cvnets MobileViT (the key map transformers' convert_mlcvnets_to_pytorch.py documents) -> ours.
V1_CVNETS_RULES = (
    (r"^conv_1\.", "stem."),
    (r"^conv_1x1_exp\.", "final_conv."),
    (r"^classifier\.fc\.", "head.fc."),
    (r"^layer_(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}."),
    (r"\.block\.", "."),
    (r"\.norm\.", ".bn."),  # every ".norm." left at this point is a BatchNorm
    (r"\.local_rep\.conv_3x3\.", ".conv_kxk."),
    (r"\.local_rep\.conv_1x1\.conv\.", ".conv_1x1."),
    (r"\.exp_1x1\.", ".conv1_1x1."),
    (r"\.conv_3x3\.", ".conv2_kxk."),
    (r"\.red_1x1\.", ".conv3_1x1."),
    (r"\.fusion\.", ".conv_fusion."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.0\.", r".transformer.\1.norm1."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.1\.qkv_proj\.", r".transformer.\1.attn.qkv."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.1\.out_proj\.", r".transformer.\1.attn.proj."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.0\.", r".transformer.\1.norm2."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.1\.", r".transformer.\1.mlp.fc1."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.4\.", r".transformer.\1.mlp.fc2."),
    (r"\.global_rep\.\d+\.(weight|bias)$", r".norm.\1"),  # the LayerNorm after the last layer
)

# ---- MobileViT v2 (arXiv 2206.02680) -------------------------------------------------------

# Hugging Face MobileViTV2ForImageClassification -> ours: v1's table (its v1-only rules match no
# v2 key) plus v2's prefix, attention and FFN names, before the generic .convolution. /
# .normalization. / .layernorm. rules at its end. Verified key for key (tests/test_model_v2.py).
V2_HF_RULES = (
    (r"^mobilevitv2\.", ""),
    *V1_HF_RULES[:-3],
    (r"\.attention\.(qkv_proj|out_proj)\.convolution\.", r".attn.\1."),
    (r"\.ffn\.conv1\.convolution\.", ".mlp.fc1."),
    (r"\.ffn\.conv2\.convolution\.", ".mlp.fc2."),
    *V1_HF_RULES[-3:],
)

# ml-cvnets MobileViTv2 (mobilevit_v2.py, MobileViTBlockv2, LinearAttnFFN) -> ours.
V2_CVNETS_RULES = (
    (r"^conv_1\.block\.", "stem."),
    (r"^classifier\.1\.", "head.fc."),
    (r"^layer_(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}."),
    (r"\.local_rep\.0\.block\.", ".conv_kxk."),
    (r"\.local_rep\.1\.block\.conv\.", ".conv_1x1."),
    (r"\.global_rep\.(\d+)\.pre_norm_attn\.0\.", r".transformer.\1.norm1."),
    (r"\.global_rep\.(\d+)\.pre_norm_attn\.1\.(qkv_proj|out_proj)\.block\.conv\.", r".transformer.\1.attn.\2."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.0\.", r".transformer.\1.norm2."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.1\.block\.conv\.", r".transformer.\1.mlp.fc1."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.3\.block\.conv\.", r".transformer.\1.mlp.fc2."),
    (r"\.global_rep\.\d+\.(weight|bias)$", r".norm.\1"),  # the GroupNorm after the last layer
    (r"\.conv_proj\.block\.", ".conv_proj."),
    (
        r"\.block\.(exp_1x1|conv_3x3|red_1x1)\.block\.",
        lambda m: "." + {"exp_1x1": "conv1_1x1", "conv_3x3": "conv2_kxk", "red_1x1": "conv3_1x1"}[m.group(1)] + ".",
    ),
    (
        r"^(stem|.*\.(?:conv1_1x1|conv2_kxk|conv3_1x1|conv_kxk|conv_proj))\.norm\.",
        r"\1.bn.",
    ),  # BatchNorms (not the block's GroupNorm)
)

# The convolution stages before the first transformer block run float in int8 artifacts
# (pipeline/quantize.py has the measurement: a third of v1's int8 noise, no speed lost). v2 has the same
# stage names (timm's) and the same stride-2/4 inverted residuals before its first v2 block.
CONV_STAGES_FLOAT = ("stem", "stages.0", "stages.1", "stages.2.0")


# v2's qkv projection writes the one query channel beside d key and d value channels: an int8
# activation range shared by all 1 + 2d channels leaves the query (whose softmax over the tokens is
# the attention) a handful of steps. ONNX Runtime's QDQ int8 of the trained v2-0.5 fell to 21.6 dB
# PSNR (parity, 128 images); the whole attention float gave 45.1 dB, the projection and the mix (split,
# softmax, context) float 44.5 dB with the output projection int8 — what is kept. The FFN runs int8.
V2_QKV_FLOAT = tuple(
    f"stages.{s}.1.transformer.{i}.attn.{part}"
    for part in ("qkv_proj", "mix")
    for s, depth in ((2, 2), (3, 4), (4, 3))
    for i in range(depth)
)


@dataclass(frozen=True)
class ModelFamily:
    name: str  # the config.ModelSpec.family value
    title: str
    paper: str
    builder: str  # "module:Class" under mvit_deploy.models; Class(config, num_classes=, features_only=)
    # (layout, telltale): a key matching the pattern (from its start) marks a checkpoint of this family
    # in that layout. Patterns name the attention weights, which only this family has.
    telltales: tuple[tuple[str, str], ...]
    renames: dict = field(default_factory=dict)  # layout -> rename rules to ours ("timm": none)
    float_modules: tuple[str, ...] = CONV_STAGES_FLOAT  # module prefixes int8 keeps in float
    hf_class: str = ""  # transformers' classification class, for the stock benchmark routes
    # layout -> the preprocessing a local checkpoint of that layout was trained with (registered sources carry their
    # own)
    preprocessing: dict = field(default_factory=dict)
    # the spellings ``export_variant`` knows for this network (e.g. "ane": the Neural Engine layout; v2's default
    # graph already is [B, C, P, N] with 1x1 convolutions)
    variants: tuple[str, ...] = ()
    # "module:function" under mvit_deploy.models: a context manager writing the graph the way a runtime runs
    # fastest, ``f(model, patches=..., layer_norm=...)`` (outputs unchanged); "" = one spelling for every runtime
    export_variant: str = ""
    # precision -> the parity / accuracy rule where this family's measurements differ from tolerances.RULES
    rules: dict = field(default_factory=dict)

    def rule(self, precision: str) -> tolerances.Rule:
        """The bounds an artifact of this family is judged by at ``precision`` (tolerances.py has the evidence)."""
        if precision in self.rules:
            return self.rules[precision]
        try:
            return tolerances.RULES[precision]
        except KeyError:
            raise KeyError(f"no parity bounds for precision {precision}") from None

    def spelled(self, model, **spellings):
        """A context in which ``model`` is written the way one runtime runs fastest (``export_variant``).

        ``spellings`` (``patches="channels_last"``, ``layer_norm="decomposed"``, ...) a family does not
        know leave its graph as it is: the default graph is correct everywhere, only slower.
        """
        if not self.export_variant:
            return contextlib.nullcontext(model)
        module, fn = self.export_variant.split(":")
        return getattr(importlib.import_module(f"mvit_deploy.models.{module}"), fn)(model, **spellings)

    def model_class(self):
        module, cls = self.builder.split(":")
        return getattr(importlib.import_module(f"mvit_deploy.models.{module}"), cls)

    def build(self, config, *, num_classes: int = 1000, features_only: bool = False):
        return self.model_class()(config, num_classes=num_classes, features_only=features_only)


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is registered twice")
    FAMILIES[family.name] = family
    return family


register_family(
    ModelFamily(
        "mobilevit",
        "MobileViT v1",
        "arXiv 2110.02178",
        "mobilevit:MobileViT",
        telltales=(
            ("hf", r"^(mobilevit\.)?encoder\.layer\.\d\.transformer\.layer\.\d+\.attention\.attention\.query\.weight$"),
            ("cvnets", r"^layer_\d\.1\.global_rep\.\d+\.pre_norm_mha\.1\.qkv_proj\.weight$"),
            ("timm", r"^stages\.\d\.1\.transformer\.\d+\.attn\.qkv\.weight$"),
        ),
        renames={"hf": V1_HF_RULES, "cvnets": V1_CVNETS_RULES, "timm": ()},
        hf_class="MobileViTForImageClassification",
        preprocessing={"hf": HF_PREPROCESSING, "cvnets": CVNETS_PREPROCESSING, "timm": TIMM_PREPROCESSING},
        variants=("ane",),
        export_variant="mobilevit:export_variant",
    )
)
register_family(
    ModelFamily(
        "mobilevitv2",
        "MobileViT v2",
        "arXiv 2206.02680",
        "mobilevit_v2:MobileViTV2",
        telltales=(
            (
                "hf",
                r"^(mobilevitv2\.)?encoder\.layer\.\d\.transformer\.layer\.\d+\.attention\.qkv_proj\.convolution\.weight$",
            ),
            ("cvnets", r"^layer_\d\.1\.global_rep\.\d+\.pre_norm_attn\.1\.qkv_proj\.block\.conv\.weight$"),
            ("timm", r"^stages\.\d\.1\.transformer\.\d+\.attn\.qkv_proj\.weight$"),
        ),
        renames={"hf": V2_HF_RULES, "cvnets": V2_CVNETS_RULES, "timm": ()},
        float_modules=CONV_STAGES_FLOAT + V2_QKV_FLOAT,
        hf_class="MobileViTV2ForImageClassification",
        # HF's v2 processor flips to BGR as its v1 one does; ml-cvnets is read as HF reproduces it
        preprocessing={"hf": HF_PREPROCESSING, "cvnets": CVNETS_PREPROCESSING, "timm": V2_TIMM_PREPROCESSING},
        rules={"fp32": tolerances.FP32_V2, "fp16": tolerances.FP16_V2},
    )
)

# Checkpoints that hold no attention weights (a truncated or stem-only state dict) are read as v1,
# whose stem keys these are; the mismatch report then names what is missing.
STEM_TELLTALES = (
    ("hf", r"^(mobilevit\.)?conv_stem\.convolution\.weight$"),
    ("cvnets", r"^conv_1\.block\.conv\.weight$"),
    ("timm", r"^stem\.conv\.weight$"),
)


def get_family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(
            f"unknown model family {name!r}", f"this version knows {', '.join(FAMILIES)}: re-export with it"
        ) from None


def family_of(model: str) -> ModelFamily:
    """The family a registered variant belongs to."""
    return get_family(get_spec(model).family)


def detect(keys) -> tuple[str, str] | None:
    """(family, layout) of a state dict's keys, or None."""
    keys = list(keys)
    for family in FAMILIES.values():
        for layout, pattern in family.telltales:
            if any(re.match(pattern, k) for k in keys):
                return family.name, layout
    for layout, pattern in STEM_TELLTALES:
        if any(re.match(pattern, k) for k in keys):
            return "mobilevit", layout
    return None


def rename_rules(family: str, layout: str) -> list:
    return [(re.compile(p), r) for p, r in FAMILIES[family].renames[layout]]


def rule_for(precision: str, family: str) -> tolerances.Rule:
    """The rule parity and eval judge an artifact by: the model family's own row, else the precision's."""
    return get_family(family).rule(precision)


def bounds_for(precision: str, family: str) -> tuple[tolerances.Bound, ...]:
    return rule_for(precision, family).bounds
