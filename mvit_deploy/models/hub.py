"""Where named weights come from: files shipped in this package, or the Hugging Face hub (offline-aware)."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, DependencyError
from .config import CheckpointSource

WEIGHTS_DIR = Path(__file__).parent / "weights"
SOURCE_KEY = "mvit_deploy.pretrained"  # safetensors metadata: "this file is the weights of source NAME"


def download(source: CheckpointSource) -> Path:
    """A local path to ``source``'s weights: the shipped file, or the hub's (cached) download."""
    if source.repo_id is None:
        path = WEIGHTS_DIR / source.filenames[0]
        if not path.is_file():
            raise CheckpointError(f"the shipped weights {path.name} are missing from this installation", "reinstall mvit-deploy")
        return path
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DependencyError("--pretrained needs huggingface_hub", "pip install huggingface_hub, or pass --weights PATH") from None
    last = None
    for filename in source.filenames:
        try:
            return Path(hf_hub_download(source.repo_id, filename))
        except Exception as e:  # offline, missing file, auth: all end in the same advice
            last = e
            if type(e).__name__ == "EntryNotFoundError":
                continue
            break
    reason = type(last).__name__ if last else "unknown error"
    raise CheckpointError(
        f"cannot download {source.repo_id} ({reason}: no network or no such file)",
        f"download {source.filenames[0]} elsewhere and pass --weights PATH",
    )


def declared_source(path: str | Path) -> str | None:
    """The source a .safetensors file declares in its metadata (our trained weights do), read from its header only."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            return (f.metadata() or {}).get(SOURCE_KEY)
    except Exception:  # unreadable: the checkpoint reader reports it properly
        return None
