"""MobileViT v2 (not yet a registered family, issue 16): our network against Hugging Face's, with HF's weights renamed."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from mvit_deploy.models.mobilevit_v2 import MobileViTV2, MobileViTV2Config, rename_hf  # noqa: E402


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


@pytest.mark.parametrize("width, size", [(0.5, 256), (1.0, 256), (1.0, 384), pytest.param(2.0, 256, marks=pytest.mark.slow)])
def test_hf_weights_reproduce_hf_logits(width, size):
    hf = hf_v2(width)
    ours = MobileViTV2(MobileViTV2Config(width=width)).eval()
    ours.load_state_dict(rename_hf(hf.state_dict()), strict=True)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(pixel_values=x).logits
        got = ours(x)
    peak = ref.abs().max().item()
    assert (got - ref).abs().max().item() <= 1e-4 * peak, ((got - ref).abs().max().item(), peak)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_every_tensor_is_rank_4_or_less_and_exports():
    model = MobileViTV2(MobileViTV2Config(width=0.5)).eval()
    program = torch.export.export(model, (torch.rand(1, 3, 128, 128),))
    ranks = {len(n.meta["val"].shape) for n in program.graph.nodes if n.op == "call_function" and hasattr(n.meta.get("val"), "shape")}
    assert max(ranks) <= 4, ranks
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("col2im" in t or "im2col" in t or "unfold" in t for t in targets), targets
