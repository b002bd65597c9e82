"""Every bad checkpoint a user can hand us: one line, non-zero exit, no traceback."""

from __future__ import annotations

import pickle

import pytest
import torch
from helpers import hf_reference, run_cli
from safetensors.torch import save_file

from mvit_deploy import CheckpointError, load_model

PHOTO = "mvit_deploy/inputs/calibration/photos/coffee.jpg"


class Payload:
    """A pickle that runs code when loaded."""

    def __reduce__(self):
        return (print, ("pwned",))


@pytest.fixture(scope="module")
def hf_xxs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "xxs.safetensors"
    save_file({k: v.contiguous() for k, v in hf_reference("mobilevit_xxs").state_dict().items()}, str(path))
    return path


def _bad_files(tmp_path, hf_xxs_file):
    truncated_st = tmp_path / "truncated.safetensors"
    truncated_st.write_bytes(hf_xxs_file.read_bytes()[:100_000])
    pt = tmp_path / "full.pt"
    torch.save(hf_reference("mobilevit_xxs").state_dict(), pt)
    truncated_pt = tmp_path / "truncated.pt"
    truncated_pt.write_bytes(pt.read_bytes()[:50_000])
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"stem.conv.weight": Payload()}))
    evil_zip = tmp_path / "evil_zip.pt"
    torch.save({"x": Payload()}, evil_zip)
    directory = tmp_path / "hf_dir"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(hf_xxs_file.read_bytes())
    evil_proto0 = tmp_path / "evil0.pt"
    evil_proto0.write_bytes(
        pickle.dumps({"stem.conv.weight": Payload()}, protocol=0)
    )  # torch fails on its opcodes first
    random_pt = tmp_path / "random.pt"
    random_pt.write_bytes(bytes(range(256)) * 16)
    not_mvit = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(not_mvit))
    return {
        "truncated safetensors": (truncated_st, "not a readable safetensors"),
        "truncated torch zip": (truncated_pt, "truncated or corrupt"),
        "pickle with __reduce__": (evil, "carries code"),
        "torch.save'd object with code": (evil_zip, "carries code"),
        "protocol-0 pickle with code": (evil_proto0, "carries code"),
        "random bytes named .pt": (random_pt, "not a PyTorch checkpoint"),  # (neither a zip archive nor a pickle)
        "directory": (directory, "is a directory"),
        "not MobileViT": (not_mvit, "not a MobileViT checkpoint"),
        "missing file": (tmp_path / "nope.safetensors", "does not exist"),
        "unknown suffix": (PHOTO, "unknown suffix"),
    }


CASES = [
    "truncated safetensors",
    "truncated torch zip",
    "pickle with __reduce__",
    "torch.save'd object with code",
    "protocol-0 pickle with code",
    "random bytes named .pt",
    "directory",
    "not MobileViT",
    "missing file",
    "unknown suffix",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_cli_one_line(case, tmp_path, hf_xxs_file, capfd):
    path, expected = _bad_files(tmp_path, hf_xxs_file)[case]
    result = run_cli("predict", PHOTO, "--model", "mobilevit_xxs", "--weights", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "pwned" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert " — " in lines[0], "the message names the fix after the dash"


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_api_raises_typed_error(case, tmp_path, hf_xxs_file):
    path, expected = _bad_files(tmp_path, hf_xxs_file)[case]
    with pytest.raises(CheckpointError, match=expected):
        load_model("mobilevit_xxs", path)


def test_wrong_variant_names_the_right_one(hf_xxs_file):
    result = run_cli("predict", PHOTO, "--model", "mobilevit_s", "--weights", str(hf_xxs_file))
    assert result.returncode == 2
    assert "is for mobilevit_xxs, not mobilevit_s" in result.stderr and "--model mobilevit_xxs" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_num_classes_suggests_flag(hf_xxs_file):
    with pytest.raises(CheckpointError, match=r"1000-class head.*--num-classes 1000"):
        load_model("mobilevit_xxs", hf_xxs_file, num_classes=10)


def test_partial_checkpoint_lists_missing_keys_and_layout(tmp_path, hf_xxs_file):
    sd = hf_reference("mobilevit_xxs").state_dict()
    sd = {k: v for k, v in sd.items() if "encoder.layer.4" not in k}
    path = tmp_path / "partial.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(CheckpointError, match=r"detected layout: hf.*missing: stages\.4"):
        load_model("mobilevit_xxs", path)


def test_state_dict_under_a_prefix_beside_other_tensors_loads(tmp_path):
    """tests/fixtures holds timm's state dict under ``model.`` beside reference pixels and logits."""
    from helpers import FIXTURES
    from safetensors.torch import load_file

    from mvit_deploy.models.checkpoints import load_checkpoint

    bundle = load_file(str(FIXTURES / "timm_mobilevit_xxs.safetensors"))
    ckpt = load_checkpoint(FIXTURES / "timm_mobilevit_xxs.safetensors")
    assert ckpt.layout == "timm"
    assert set(ckpt.state_dict) == {k[len("model.") :] for k in bundle if k.startswith("model.")}
    model = load_model("mobilevit_xxs", FIXTURES / "timm_mobilevit_xxs.safetensors")
    torch.testing.assert_close(model.state_dict()["stem.conv.weight"], bundle["model.stem.conv.weight"].float())
