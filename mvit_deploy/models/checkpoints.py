"""The one door for foreign checkpoints: read safely, detect the layout, rename to ours.

Our module names are timm's, so a timm state dict maps as it is; Hugging Face and
ml-cvnets keys are renamed by the ordered regex rules of the checkpoint's model family
(``families.py``: which family and layout a state dict is comes from its telltale keys), and
v1's split attention projections are brought to our fused ``qkv``.
"""

from __future__ import annotations

import functools
import pickletools
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..device.files import MB, check_regular, json_depth, parse_json, size_text
from ..errors import CheckpointError, UsageError
from . import families
from .config import ModelSpec

SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class Checkpoint:
    """A state dict in our layout, with where it came from."""

    state_dict: dict[str, torch.Tensor]
    layout: str
    path: Path | None
    sha256: str | None
    family: str  # families.FAMILIES, told by the checkpoint's telltale keys


def sha256_of(path: Path) -> str:
    from ..artifact import tree_sha256

    return tree_sha256(Path(path))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a local file without executing any code in it."""
    path = Path(path)
    if path.is_dir():
        found = [p.name for p in sorted(path.iterdir()) if p.suffix in SUFFIXES]
        hint = (
            f"pass the file inside it, e.g. {path / found[0]}"
            if found
            else "pass a .safetensors, .bin, .pt or .pth file"
        )
        raise CheckpointError(f"checkpoint path {path} is a directory", hint)
    try:  # before any open(): a FIFO would block it, a device never ends
        size = check_regular(path, "checkpoint", "check the path given to --weights").st_size
    except UsageError as e:
        raise CheckpointError(e.problem, e.fix) from None
    if path.suffix not in SUFFIXES:
        raise CheckpointError(
            f"checkpoint {path} has an unknown suffix {path.suffix!r}", f"use one of {', '.join(SUFFIXES)}"
        )
    if path.suffix == ".safetensors":
        _check_safetensors_header(path, size)
        return _read_safetensors(path)
    _check_torch_size(path, size)
    return _read_torch(path)


# A checkpoint larger than any MobileViT's is refused before it is read: the largest registered variant with
# a 21,843-class head (ImageNet-22k's: room for a head pretrained on the largest common label set), at 16 bytes a
# parameter: float64 weights beside an EMA copy, or a training checkpoint's float32 weights, EMA copy and Adam's
# two moments. About 0.6 GB; mobilevitv2_200's float32 ImageNet weights take 74 MB.
WIDEST_HEAD = 21_843
BYTES_PER_PARAMETER = 16
MAX_HEADER_BYTES = 16 * MB  # a safetensors header is a line of JSON per tensor: ours are under 0.1 MB


@functools.lru_cache(maxsize=1)
def max_checkpoint_bytes() -> int:
    """The most bytes of tensors a checkpoint of any registered variant holds (see BYTES_PER_PARAMETER)."""
    from .config import MODELS

    most = 0
    for spec in MODELS.values():
        with torch.device("meta"):  # shapes only: no memory, no init
            model = families.get_family(spec.family).build(spec.config, num_classes=WIDEST_HEAD)
        most = max(most, sum(t.numel() for t in model.state_dict().values()))
    return most * BYTES_PER_PARAMETER


def _too_large(path: Path, what: str, size: int) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} {what} {size_text(size)}, more than any MobileViT checkpoint "
        f"({size_text(max_checkpoint_bytes())}: the largest variant with a {WIDEST_HEAD:,}-class head, "
        f"{BYTES_PER_PARAMETER} bytes a parameter)",
        "pass the weights of a MobileViT model; re-save a training checkpoint with only its state dict",
    )


def _check_safetensors_header(path: Path, size: int) -> None:
    """Check what a .safetensors file claims against its size and the ceiling, reading its header only.

    Layout: an 8-byte little-endian header length, that many bytes of JSON
    ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, then the data;
    offsets count from the data's start. ``load_file`` would allocate every tensor the header claims.
    """

    def unreadable(why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({why})", "re-download or re-save it"
        )

    with open(path, "rb") as f:  # a regular file: check_regular said so
        head = f.read(8)
        if len(head) < 8:
            raise unreadable(f"{size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise unreadable(
                f"its header claims {length:,} bytes, the file holds {size - 8:,} after the length"
                if length > size - 8
                else f"its header claims {length:,} bytes, more than the {MAX_HEADER_BYTES:,} any checkpoint needs"
            )
        raw = f.read(length)
    try:
        text = raw.decode("utf-8")
        header = parse_json(text) if json_depth(text, 4) <= 4 else None
    except ValueError:  # UnicodeDecodeError is one
        header = None
    if not isinstance(header, dict) or not all(isinstance(v, dict) for v in header.values()):
        raise unreadable("its header is not a JSON object of tensors")
    data_bytes, total = size - 8 - length, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise unreadable(f"tensor {name[:100]!r} has no valid data_offsets")
        if offsets[1] > data_bytes:
            raise unreadable(
                f"tensor {name[:100]!r} ends at byte {offsets[1]:,} of the data, the file holds {data_bytes:,}: "
                "truncated"
            )
        total += offsets[1] - offsets[0]
    if total > max_checkpoint_bytes():
        raise _too_large(path, "claims tensors of", total)


def _check_torch_size(path: Path, size: int) -> None:
    """Refuse a torch.save file larger than any MobileViT checkpoint, or a zip that unpacks to more, before
    torch.load allocates it."""
    if size > max_checkpoint_bytes():
        raise _too_large(path, "is", size)
    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(i.file_size for i in z.infolist())  # torch stores, but a hand-made zip can deflate
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (a legacy pickle), or a broken one: _read_torch names it
    if unpacked > max_checkpoint_bytes():
        raise _too_large(path, "unpacks to", unpacked)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({e})", "re-download or re-save it"
        ) from None


# Opcodes that import or call a Python object: the only way a pickle runs code.
_CALLING_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}


def _pickle_opcodes(head: bytes) -> list[str] | None:
    """Opcode names of the pickles these first bytes of a file hold, or None when they do not start one."""
    import io

    stream, names = io.BytesIO(head), []
    try:
        while stream.tell() < len(head):
            for op, _, _ in pickletools.genops(stream):  # one pickle, up to its STOP
                names.append(op.name)
    except Exception:  # an unknown opcode, or the data ends mid-opcode (we read only the head)
        pass
    started = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # PROTO n: every torch.save since 2017
    return names if started or "STOP" in names else None


def _zip_pickle_head(path: Path) -> bytes:
    """The first bytes of the pickle inside a torch.save zip (``<name>/data.pkl``)."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.open(name).read(1 << 16) if name else b""
    except (zipfile.BadZipFile, OSError):
        return b""


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    is_zip = head[:4] == b"PK\x03\x04"
    if is_zip and not zipfile.is_zipfile(path):  # torch.save's zip lost its central directory
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt", "re-download or re-save it")
    opcodes = _pickle_opcodes(_zip_pickle_head(path) if is_zip else head)
    if not is_zip and opcodes is None:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)",
            "pass a file torch.save wrote; re-download it if it is corrupt",
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        msg = str(e)
        # torch names the non-allowlisted global; an old-protocol pickle fails earlier on its GLOBAL opcode
        if "unsupported global" in msg.lower() or (
            "Weights only load failed" in msg and _CALLING_OPCODES & set(opcodes or ())
        ):
            raise CheckpointError(
                f"refusing to load {path}: it is a pickle that carries code, not only tensors",
                "convert it to .safetensors from a trusted environment",
            ) from None
        if (
            isinstance(e, (EOFError, OSError, zipfile.BadZipFile))
            or "PytorchStreamReader" in msg
            or "truncated" in msg.lower()
            or "Weights only load failed" in msg
        ):
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt (not a readable PyTorch checkpoint)",
                "re-download or re-save it",
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {path}: {msg.splitlines()[0][:200]}", "re-save it as .safetensors"
        ) from None
    return _unwrap(obj, path)


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside common training-checkpoint wrappers."""
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"checkpoint {path} holds no state dict of tensors", "save model.state_dict(), not the model"
        )
    return obj


def detect_layout(keys) -> str | None:
    found = families.detect(keys)
    return found[1] if found else None


def strip_wrappers(state_dict: dict) -> dict:
    """Drop DataParallel / wrapper prefixes (``module.``, ``model.``, ``encoder.``) present on every key."""
    for prefix in ("module.", "model.", "encoder."):
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def rename(state_dict: dict, layout: str, family: str) -> dict:
    """Rename a ``layout`` state dict of ``family`` to ours, fusing split q/k/v projections."""
    rules = families.rename_rules(family, layout)
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in rules:
            key = pattern.sub(repl, key)
        out[key] = value
    return _fuse_qkv(out)


def _fuse_qkv(state_dict: dict) -> dict:
    split = re.compile(r"^(.*\.attn)\.(query|key|value)\.(weight|bias)$")
    groups: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    out = {}
    for key, value in state_dict.items():
        m = split.match(key)
        if m:
            groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
        else:
            out[key] = value
    for (prefix, kind), parts in groups.items():
        if set(parts) != {"query", "key", "value"}:
            out.update({f"{prefix}.{p}.{kind}": v for p, v in parts.items()})  # left for the mismatch report
            continue
        out[f"{prefix}.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def to_our_layout(raw: dict, source: str) -> tuple[dict, str, str]:
    """(state dict in our names, layout, family)."""
    raw = strip_wrappers(raw)
    found = families.detect(raw)
    if found is None:  # a state dict under one prefix beside other tensors (EMA copies, reference logits)
        for prefix in ("module.", "model.", "encoder."):
            inner = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
            if families.detect(inner) is not None:
                raw, found = inner, families.detect(inner)
                break
    if found is None:
        sample = ", ".join(sorted(raw)[:3])
        raise CheckpointError(
            f"{source} is not a MobileViT checkpoint in a known layout (timm, Hugging Face, ml-cvnets); first keys: "
            f"{sample}",
            "export the state dict of a MobileViT model",
        )
    family, layout = found
    return rename(raw, layout, family), layout, family


def check_finite(state_dict: dict, source: str) -> None:
    """Refuse NaN or infinite weights, naming the tensors: a model built from them computes nothing meaningful."""
    broken = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        more = f" (+{len(broken) - 3} more)" if len(broken) > 3 else ""
        raise CheckpointError(
            f"{source} holds NaN or infinite values in {', '.join(broken[:3])}{more}",
            "re-download it, or retrain from a good checkpoint",
        )


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    raw = read_state_dict(path)
    check_finite(raw, f"checkpoint {path}")
    state_dict, layout, family = to_our_layout(raw, str(path))
    return Checkpoint(state_dict, layout, path, sha256_of(path), family)


def _shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of a registered variant, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = families.get_family(spec.family).build(spec.config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_variant(state_dict: dict, specs) -> str | None:
    """Name the registered variant (of any family) whose backbone shapes the checkpoint's all match, if any."""
    backbone = {k: tuple(v.shape) for k, v in state_dict.items() if not k.startswith("head.")}
    for spec in specs:
        shapes = _shapes(spec)
        if backbone and all(shapes.get(k) == s for k, s in backbone.items()):
            return spec.name
    return None


def apply_checkpoint(model: torch.nn.Module, ckpt: Checkpoint, spec: ModelSpec, all_specs) -> None:
    """Load ``ckpt`` into ``model`` or raise one error listing every key or shape that does not fit."""
    own = model.state_dict()
    sd = dict(ckpt.state_dict)
    if getattr(model, "features_only", False):  # a backbone ignores the classifier
        sd = {k: v for k, v in sd.items() if not k.startswith(("final_conv.", "head."))}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    where = f"checkpoint {ckpt.path or 'download'} (detected layout: {ckpt.layout})"
    if ckpt.family != spec.family:
        title = families.get_family(ckpt.family).title
        guess = guess_variant(sd, [s for s in all_specs if s.family == ckpt.family])
        names = guess or ", ".join(s.name for s in all_specs if s.family == ckpt.family)
        raise CheckpointError(
            f"{where} is a {title} checkpoint, not {spec.name} ({families.get_family(spec.family).title})",
            f"use --model {guess}" if guess else f"use --model with one of {names}",
        )
    if shapes:
        guess = guess_variant(sd, all_specs)
        if guess and guess != spec.name:
            raise CheckpointError(f"{where} is for {guess}, not {spec.name}", f"use --model {guess}")
        if shapes == ["head.fc.bias", "head.fc.weight"]:
            n = sd["head.fc.weight"].shape[0]
            raise CheckpointError(
                f"{where} has a {n}-class head, the model {model.num_classes}",
                f"pass num_classes={n} (--num-classes {n})",
            )
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                more = f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""
                parts.append(f"{label}: {', '.join(keys[:6])}{more}")
        raise CheckpointError(
            f"{where} does not fit {spec.name}: {'; '.join(parts)}", "check --model and the checkpoint file"
        )
    model.load_state_dict(sd, strict=True)
