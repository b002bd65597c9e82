"""Published checkpoints through huggingface_hub: the real download path, offline-aware."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, DependencyError
from .config import CheckpointSource, ModelSpec


def download(spec: ModelSpec, layout: str = "hf") -> tuple[Path, CheckpointSource]:
    """Fetch (or take from the local hub cache) a variant's published weights."""
    source = spec.source(layout)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DependencyError("--pretrained needs huggingface_hub", "pip install huggingface_hub, or pass --weights PATH") from None
    last = None
    for filename in source.filenames:
        try:
            return Path(hf_hub_download(source.repo_id, filename)), source
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
