"""Our MobileViT against independent implementations: Hugging Face, real timm, ml-cvnets names."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from helpers import FIXTURES, hf_logits, hf_reference, variants
from safetensors.torch import load_file, save_file

from mvit_deploy import load_model
from mvit_deploy.models import create_model, get_spec
from mvit_deploy.models.families import bounds_for
from mvit_deploy.models.mobilevit import fold_patches, unfold_patches

TOL = bounds_for("fp32", "mobilevit")[
    0
].value  # fp32 logits: max |error| / max |reference logit| (the parity table's fp32 row)


def rel_err(got, expected) -> float:
    """max |got - expected| relative to the reference's peak |logit| (independent of metrics.py)."""
    return ((got - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("name", variants())
def test_hf_state_dict_loads_and_matches(name, tmp_path, eval_photos):
    ref = hf_reference(name)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    ours = load_model(name, path)
    assert ours.source_layout == "hf"
    assert ours.preprocessing.channel_order == "BGR"
    for size, x in eval_photos.items():
        expected = hf_logits(ref, x)
        assert expected.std() > 1.5, "reference logits are not trained-like; the comparison would be meaningless"
        with torch.no_grad():
            got = ours(x)
        err = rel_err(got, expected)
        assert err <= TOL, f"{name} @ {size}: max-rel {err:.2e} > {TOL}"
        assert torch.equal(got.argmax(1), expected.argmax(1))


@pytest.mark.parametrize("name", variants(all_widths=True))
def test_param_count_matches_hf(name):
    import transformers
    from helpers import HF_CONFIGS, hf_width

    ours = sum(p.numel() for p in create_model(name).parameters())
    if name.startswith("mobilevitv2_"):  # a bare HF model: counting needs no realistic weights
        hf = transformers.MobileViTV2ForImageClassification(
            transformers.MobileViTV2Config(width_multiplier=hf_width(name), num_labels=1000)
        )
    else:
        hf = transformers.MobileViTForImageClassification(
            transformers.MobileViTConfig(num_labels=1000, **HF_CONFIGS[name])
        )
    assert ours == sum(p.numel() for p in hf.parameters())
    assert abs(ours / 1e6 - get_spec(name).paper_params_m) < 0.05 * get_spec(name).paper_params_m


def test_hf_pickle_bin_and_wrapped_dicts_load(tmp_path, eval_photos):
    ref = hf_reference("mobilevit_xxs")
    path = tmp_path / "pytorch_model.bin"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    ours = load_model("mobilevit_xxs", path)
    x = eval_photos[256]
    with torch.no_grad():
        assert rel_err(ours(x), hf_logits(ref, x)) <= TOL


def hf_to_cvnets(key: str) -> str:
    """HF -> ml-cvnets key names: the inverse of transformers' convert_mlcvnets_to_pytorch.rename_key."""
    key = key.removeprefix("mobilevit.")
    if key.startswith("classifier."):
        return "classifier.fc." + key[len("classifier.") :]
    m = re.match(r"encoder\.layer\.(\d)\.(.*)", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if i < 2:
            rest = re.sub(r"^layer\.(\d+)\.", r"\1.", rest)
        elif rest.startswith("downsampling_layer."):
            rest = "0." + rest[len("downsampling_layer.") :]
        else:
            rest = "1." + rest
        key = f"layer_{i + 1}.{rest}"
    key = key.replace("conv_stem.", "conv_1.")
    for a, b in [("expand_1x1", "exp_1x1"), ("reduce_1x1", "red_1x1"), ("conv_projection", "conv_proj")]:
        key = key.replace(a, b)
    key = key.replace(".conv_kxk.", ".local_rep.conv_3x3.").replace(".conv_1x1.", ".local_rep.conv_1x1.")
    key = re.sub(
        r"\.(convolution|normalization)\.",
        lambda m: ".block." + {"convolution": "conv.", "normalization": "norm."}[m.group(1)],
        key,
    )
    key = key.replace("transformer.layer.", "global_rep.")
    key = key.replace(".layernorm_before.", ".pre_norm_mha.0.").replace(
        ".attention.output.dense.", ".pre_norm_mha.1.out_proj."
    )
    key = key.replace(".layernorm_after.", ".pre_norm_ffn.0.").replace(".intermediate.dense.", ".pre_norm_ffn.1.")
    key = key.replace(".output.dense.", ".pre_norm_ffn.4.")
    return key


def to_cvnets_state_dict(hf_sd: dict, depths=(2, 4, 3)) -> dict:
    out = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in hf_sd.items():
        m = re.match(r"(.*)\.attention\.attention\.(query|key|value)\.(weight|bias)$", k)
        if m:
            qkv.setdefault(hf_to_cvnets(m.group(1) + ".x")[:-2] + f".pre_norm_mha.1.qkv_proj.{m.group(3)}", {})[
                m.group(2)
            ] = v
            continue
        m = re.match(r"mobilevit\.encoder\.layer\.(\d)\.layernorm\.(weight|bias)$", k)
        if m:  # the LayerNorm after the last transformer layer sits at global_rep.<depth>
            i = int(m.group(1))
            out[f"layer_{i + 1}.1.global_rep.{depths[i - 2]}.{m.group(2)}"] = v
            continue
        out[hf_to_cvnets(k)] = v
    for k, parts in qkv.items():
        out[k] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


def test_cvnets_layout_loads_and_matches(tmp_path, eval_photos):
    ref = hf_reference("mobilevit_xxs")
    cv = to_cvnets_state_dict(ref.state_dict())
    assert "conv_1.block.conv.weight" in cv and "layer_3.1.global_rep.0.pre_norm_mha.1.qkv_proj.weight" in cv
    assert "layer_3.1.global_rep.2.weight" in cv and "conv_1x1_exp.block.norm.running_var" in cv
    path = tmp_path / "mobilevit_xxs.pt"
    torch.save(cv, path)
    ours = load_model("mobilevit_xxs", path)
    assert ours.source_layout == "cvnets"
    for x in eval_photos.values():
        with torch.no_grad():
            assert rel_err(ours(x), hf_logits(ref, x)) <= TOL


def test_timm_fixture_matches_logits_timm_produced(tmp_path):
    data = load_file(str(FIXTURES / "timm_mobilevit_xxs.safetensors"))
    state = {
        k[len("model.") :]: v.float() if v.is_floating_point() else v for k, v in data.items() if k.startswith("model.")
    }
    path = tmp_path / "timm.safetensors"
    save_file(state, str(path))
    ours = load_model("mobilevit_xxs", path)
    assert ours.source_layout == "timm" and ours.preprocessing.channel_order == "RGB"
    for size in (256, 320):
        x = data[f"pixels_{size}"].float() / 255
        expected = data[f"logits_{size}"]
        assert expected.std() > 1.5
        with torch.no_grad():
            err = rel_err(ours(x), expected)
        assert err <= TOL, f"timm @ {size}: {err:.2e}"


def test_features_only_matches_hf_hidden_states(eval_photos):
    ref = hf_reference("mobilevit_xxs")
    from mvit_deploy.models.checkpoints import to_our_layout

    sd, _, _ = to_our_layout(ref.state_dict(), "hf")
    backbone = create_model("mobilevit_xxs", features_only=True)
    backbone.load_state_dict({k: v for k, v in sd.items() if not k.startswith(("final_conv", "head"))})
    x = eval_photos[256][:2]
    with torch.no_grad():
        feats = backbone(x)
        hidden = ref.mobilevit(pixel_values=x, output_hidden_states=True).hidden_states
    assert [f.shape[-1] for f in feats] == [128, 64, 32, 16, 8]
    assert [f.shape[1] for f in feats] == backbone.feature_channels
    for f, h in zip(feats, hidden, strict=False):
        assert (f - h).abs().max().item() <= 1e-4


def hf_unfold_numpy(x: np.ndarray) -> np.ndarray:
    """The ml-cvnets / HF unfolding, written in numpy with 6-D reshapes."""
    b, c, h, w = x.shape
    p = x.reshape(b, c, h // 2, 2, w // 2, 2)  # b c nh ph nw pw
    p = p.transpose(0, 3, 5, 2, 4, 1)  # b ph pw nh nw c
    return p.reshape(b * 4, (h // 2) * (w // 2), c)


@pytest.mark.parametrize("shape", [(1, 8, 4, 4), (2, 5, 8, 12), (3, 16, 16, 8)])
def test_unfold_fold_against_numpy(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    seq = unfold_patches(x)
    np.testing.assert_array_equal(seq.numpy(), hf_unfold_numpy(x.numpy()))
    assert torch.equal(fold_patches(seq, x), x)


def test_export_graph_is_rank4_and_shape_generic():
    """torch.export with symbolic H, W: Python arithmetic on shapes would specialise or fail."""
    model = create_model("mobilevit_xxs")
    k = torch.export.Dim("k", min=2, max=32)
    ep = torch.export.export(model, (torch.randn(1, 3, 256, 256),), dynamic_shapes={"x": {2: 32 * k, 3: 32 * k}})
    ranks = [len(n.meta["val"].shape) for n in ep.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor)]
    assert ranks and max(ranks) <= 4, f"tensor of rank {max(ranks)} in the exported graph"
    for size in (256, 320, 512):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            assert (ep.module()(x) - model(x)).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050"])
def test_fixture_is_the_same_in_another_process(name):
    """parity and eval rebuild the fixture in a new process: its weights must not depend on torch's global RNG."""
    import hashlib
    import subprocess
    import sys

    def digest(model):
        return hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()

    code = (
        f"import hashlib; from mvit_deploy.models import load_model; m = load_model({name!r}); "
        "print(hashlib.sha256(b''.join(v.numpy().tobytes() for v in m.state_dict().values())).hexdigest())"
    )
    torch.manual_seed(12345)  # a different global RNG state here than in the child
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert digest(load_model(name)) == other


def test_fixture_is_deterministic_and_trained_like(eval_photos):
    a, b = load_model("mobilevit_xxs"), load_model("mobilevit_xxs")
    assert a.source_layout == "fixture"
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    with torch.no_grad():
        logits = a(eval_photos[256])
    assert logits.std().item() > 1.5 and logits.std().item() < 6.0
    assert len(set(logits.argmax(1).tolist())) > 1, "every photo gets the same class: activations collapsed"


@pytest.mark.parametrize("shape", [(1, 8, 4, 4), (2, 5, 8, 12)])
def test_channels_last_unfold_against_numpy(shape):
    from mvit_deploy.models.mobilevit import fold_channels_last, tokens_channels_last

    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    seq, grid = tokens_channels_last(x)
    np.testing.assert_array_equal(seq.numpy(), hf_unfold_numpy(x.numpy()))
    assert torch.equal(fold_channels_last(seq, grid), x)


def test_export_variants_compute_the_same_model(eval_photos):
    """Each runtime's spelling of the graph: same logits as the default (HF-checked) one; the model is restored
    after."""
    from mvit_deploy.models.mobilevit import export_variant

    model, x = load_model("mobilevit_xxs"), eval_photos[256][:4]
    with torch.no_grad():
        ref = model(x)
        with export_variant(model, patches="channels_last"):
            assert torch.equal(model(x), ref)  # a pure permutation
        with export_variant(model, patches="channels_last", layer_norm="decomposed"):
            assert (model(x) - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()  # fp32 rounding only
        assert torch.equal(model(x), ref)
    # the Neural Engine layout ([B, C, P, N], 1x1 convs, einsum per head, channel-axis norms) in float64: the same
    # function
    model64, x64 = model.double(), x.double()
    with torch.no_grad():
        ref64 = model64(x64)
        with export_variant(model64, patches="ane"):
            ane64 = model64(x64)
    assert (ane64 - ref64).abs().max().item() <= 1e-12 * ref64.abs().max().item()
    model.float()
