"""MobileViT v2, a registered model family: our network against Hugging Face's, its weights read through the checkpoint
door."""

from __future__ import annotations

import re

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is the independent v2 reference")

from helpers import FIXTURES, ROOT, hf_logits, hf_reference, run_cli  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from mvit_deploy.models import create_model, load_model  # noqa: E402
from mvit_deploy.models.families import bounds_for  # noqa: E402

TOL = bounds_for("fp32", "mobilevit")[
    0
].value  # fp32 logits vs an independent reference (HF, timm): v1's bound holds for v2 in torch


def hf_v2(width: float, seed: int = 0):
    from transformers import MobileViTV2Config as HFConfig
    from transformers import MobileViTV2ForImageClassification

    torch.manual_seed(seed)
    model = MobileViTV2ForImageClassification(HFConfig(width_multiplier=width, num_labels=1000)).eval()
    with torch.no_grad():  # BatchNorm statistics away from (0, 1), so a misplaced one shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            elif isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


NAMES = {0.5: "mobilevitv2_050", 1.0: "mobilevitv2_100", 2.0: "mobilevitv2_200"}


# 256 and 320 px with realistic weights, widths 0.5 / 1.0 / 2.0: test_model_reference.py (every variant test);
# here the 384 px input of the _384 checkpoints, with plain seeded weights and skewed BatchNorm statistics.
@pytest.mark.parametrize("width, size", [(0.5, 384), (1.0, 384), pytest.param(2.0, 384, marks=pytest.mark.slow)])
def test_hf_weights_reproduce_hf_logits(width, size, tmp_path):
    hf = hf_v2(width)
    path = tmp_path / "hf.safetensors"
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    ours = load_model(NAMES[width], path)
    assert ours.source_layout == "hf"
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(pixel_values=x).logits
        got = ours(x)
    peak = ref.abs().max().item()
    assert (got - ref).abs().max().item() <= 1e-4 * peak, ((got - ref).abs().max().item(), peak)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_every_tensor_is_rank_4_or_less_and_exports_with_symbolic_size():
    model = create_model("mobilevitv2_050")
    h = torch.export.Dim("h", min=1, max=16)
    w = torch.export.Dim("w", min=1, max=16)
    program = torch.export.export(model, (torch.rand(1, 3, 128, 192),), dynamic_shapes={"x": {2: 64 * h, 3: 64 * w}})
    with torch.no_grad():
        for size in ((128, 128), (256, 320)):
            x = torch.rand(1, 3, *size)
            assert torch.allclose(program.module()(x), model(x), atol=1e-5)
    ranks = {
        len(n.meta["val"].shape)
        for n in program.graph.nodes
        if n.op == "call_function" and hasattr(n.meta.get("val"), "shape")
    }
    assert max(ranks) <= 4, ranks
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("col2im" in t or "im2col" in t or "unfold" in t for t in targets), targets


def hf_to_cvnets_v2(key: str, depths=(2, 4, 3)) -> str:
    """HF -> ml-cvnets MobileViTv2 key names, written from cvnets' modules (``mobilevit_v2.py``: conv_1,
    layer_1..5, InvertedResidual.block.{exp_1x1,conv_3x3,red_1x1}.block.{conv,norm}, MobileViTBlockv2's
    local_rep / global_rep (LinearAttnFFN: pre_norm_attn, pre_norm_ffn) / conv_proj, classifier = [pool, fc])."""
    key = key.removeprefix("mobilevitv2.")
    if key.startswith("classifier."):
        return "classifier.1." + key[len("classifier.") :]
    key = key.replace("conv_stem.", "conv_1.block.")
    m = re.match(r"encoder\.layer\.(\d)\.(.*)", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        rest = re.sub(r"^layer\.(\d+)\.", r"\1.block.", rest)
        rest = rest.replace("downsampling_layer.", "0.block.")
        rest = rest.replace("conv_kxk.", "1.local_rep.0.block.").replace("conv_1x1.", "1.local_rep.1.block.")
        rest = rest.replace("conv_projection.", "1.conv_proj.block.")
        rest = re.sub(r"^layernorm\.", f"1.global_rep.{depths[i - 2]}." if i >= 2 else "", rest)
        rest = re.sub(r"^transformer\.layer\.(\d+)\.", r"1.global_rep.\1.", rest)
        rest = rest.replace("layernorm_before.", "pre_norm_attn.0.").replace("layernorm_after.", "pre_norm_ffn.0.")
        rest = rest.replace("attention.qkv_proj.", "pre_norm_attn.1.qkv_proj.block.").replace(
            "attention.out_proj.", "pre_norm_attn.1.out_proj.block."
        )
        rest = rest.replace("ffn.conv1.", "pre_norm_ffn.1.block.").replace("ffn.conv2.", "pre_norm_ffn.3.block.")
        rest = (
            rest.replace("expand_1x1.", "exp_1x1.block.")
            .replace("conv_3x3.", "conv_3x3.block.")
            .replace("reduce_1x1.", "red_1x1.block.")
        )
        key = f"layer_{i + 1}.{rest}"
    return key.replace(".convolution.", ".conv.").replace(".normalization.", ".norm.").replace("block.block.", "block.")


@pytest.mark.parametrize("width", [0.5, 1.0, pytest.param(2.0, marks=pytest.mark.slow)])
def test_cvnets_layout_loads_and_reproduces_hf(width, tmp_path, eval_photos):
    ref = hf_reference(NAMES[width])
    cv = {hf_to_cvnets_v2(k): v for k, v in ref.state_dict().items()}
    assert (
        "layer_3.1.global_rep.0.pre_norm_attn.1.qkv_proj.block.conv.weight" in cv
        and "layer_3.1.global_rep.2.weight" in cv
    )
    assert "layer_1.0.block.exp_1x1.block.norm.running_var" in cv and "classifier.1.weight" in cv
    path = tmp_path / "cvnets.pt"
    torch.save(cv, path)
    ours = load_model(NAMES[width], path)
    assert ours.source_layout == "cvnets"
    for x in eval_photos.values():
        expected = hf_logits(ref, x)
        with torch.no_grad():
            assert ((ours(x) - expected).abs().max() / expected.abs().max()).item() <= TOL


def test_a_v2_checkpoint_for_the_v1_model_names_the_v2_variant(tmp_path):
    path = tmp_path / "v2.safetensors"
    save_file({k: v.contiguous() for k, v in hf_reference("mobilevitv2_050").state_dict().items()}, str(path))
    photo = ROOT / "mvit_deploy" / "inputs" / "calibration" / "photos" / "camera.jpg"
    result = run_cli("predict", "--model", "mobilevit_xxs", "--weights", str(path), str(photo))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "MobileViT v2 checkpoint" in result.stderr and "--model mobilevitv2_050" in result.stderr, result.stderr


def test_features_only_matches_hf_hidden_states(eval_photos):
    ref = hf_reference("mobilevitv2_050")
    from mvit_deploy.models.checkpoints import to_our_layout

    sd, layout, family = to_our_layout(ref.state_dict(), "hf")
    assert (layout, family) == ("hf", "mobilevitv2")
    backbone = create_model("mobilevitv2_050", features_only=True)
    backbone.load_state_dict({k: v for k, v in sd.items() if not k.startswith("head")})
    x = eval_photos[256][:2]
    with torch.no_grad():
        feats = backbone(x)
        hidden = ref.mobilevitv2(pixel_values=x, output_hidden_states=True).hidden_states
    assert [f.shape[-1] for f in feats] == [128, 64, 32, 16, 8]
    assert [f.shape[1] for f in feats] == backbone.feature_channels == [32, 64, 128, 192, 256]
    for f, h in zip(feats, hidden, strict=False):
        assert (f - h).abs().max().item() <= 1e-4 * h.abs().max().item()


def test_timm_fixture_matches_logits_timm_produced(tmp_path):
    """timm's own mobilevitv2_050 (scripts/make_timm_fixture.py, run once beside real timm 1.0.31): its state dict,
    through our checkpoint door, reproduces the logits timm computed at 256 and 384 px."""
    data = load_file(str(FIXTURES / "timm_mobilevitv2_050.safetensors"))
    state = {
        k[len("model.") :]: v.float() if v.is_floating_point() else v for k, v in data.items() if k.startswith("model.")
    }
    path = tmp_path / "timm.safetensors"
    save_file(state, str(path))
    ours = load_model("mobilevitv2_050", path)
    assert ours.source_layout == "timm" and ours.preprocessing.channel_order == "RGB"
    for size in (256, 384):
        x = data[f"pixels_{size}"].float() / 255
        expected = data[f"logits_{size}"]
        assert expected.std() > 1.5
        with torch.no_grad():
            err = ((ours(x) - expected).abs().max() / expected.abs().max()).item()
        assert err <= TOL, f"timm @ {size}: {err:.2e}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, precision", [("onnx", "fp32"), ("tflite", "fp32"), ("coreml", "fp16"), ("executorch", "fp32")]
)
def test_v2_exports_to_every_target_and_passes_parity(target, precision, tmp_path):
    """The export pipeline took v2 without a change: every target converts it and its parity passes v2's bounds."""
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions

    result = export(
        ExportOptions(model="mobilevitv2_050", target=target, precision=precision, out_dir=tmp_path, parity_n=32)
    )
    assert result.manifest.family == "mobilevitv2" and result.parity is not None
    assert result.parity.passed, result.parity.failures
    if precision == "fp32":
        assert result.parity.metrics["max_rel"] <= bounds_for("fp32", "mobilevitv2")[0].value


def test_v2_refuses_the_v1_only_ane_layout_and_reads_local_timm_files_with_v2_preprocessing(tmp_path):
    result = run_cli(
        "export", "--model", "mobilevitv2_050", "--target", "coreml", "--coreml-layout", "ane", "--out", str(tmp_path)
    )
    assert result.returncode == 2 and "has no ane layout" in result.stderr and not list(tmp_path.iterdir())
    data = load_file(str(FIXTURES / "timm_mobilevitv2_050.safetensors"))
    path = (
        tmp_path / "timm.safetensors"
    )  # no declared source: the family's timm preprocessing (timm's pretrained_cfg: crop 0.888)
    save_file(
        {
            k[len("model.") :]: v.float() if v.is_floating_point() else v
            for k, v in data.items()
            if k.startswith("model.")
        },
        str(path),
    )
    assert load_model("mobilevitv2_050", path).preprocessing.crop_pct == 0.888
