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
            raise CheckpointError(
                f"the shipped weights {path.name} are missing from this installation", "reinstall mvit-deploy"
            )
        return path
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DependencyError(
            "--pretrained needs huggingface_hub", "pip install huggingface_hub, or pass --weights PATH"
        ) from None
    cached = _from_cache(source)
    if cached is not None:
        return cached
    _check_hub_reachable(source)  # seconds, where the hub client would retry for half a minute
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


def _from_cache(source: CheckpointSource) -> Path | None:
    """The first of ``source``'s files already in the hub cache, without touching the network."""
    from huggingface_hub import hf_hub_download

    for filename in source.filenames:
        try:
            return Path(hf_hub_download(source.repo_id, filename, local_files_only=True))
        except Exception:  # not cached (LocalEntryNotFoundError), or a cache we cannot read
            continue
    return None


HUB_PROBE_SECONDS = 3.0


def _check_hub_reachable(source: CheckpointSource) -> None:
    """Refuse at once when the files are not cached and the hub cannot be reached (offline mode, or no route)."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    fill = (
        f"fill the cache on a machine with a network: `hf download {source.repo_id} {source.filenames[0]}` (cache: "
        f"{constants.HF_HUB_CACHE}), or pass --weights PATH"
    )
    if constants.HF_HUB_OFFLINE:
        raise CheckpointError(f"{source.repo_id} is not in the Hugging Face cache and HF_HUB_OFFLINE is set", fill)
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # only the proxy knows the route: let the hub client try
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=HUB_PROBE_SECONDS
        ).close()
    except OSError as e:
        raise CheckpointError(
            f"{source.repo_id} is not in the Hugging Face cache and {url.hostname} cannot be reached "
            f"({e.strerror or type(e).__name__})",
            fill,
        ) from None


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
