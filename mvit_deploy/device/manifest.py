"""An artifact's sidecar manifest, read and checked on whichever side runs the artifact (torch-free, stdlib only)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import UsageError

MANIFEST_SCHEMA = "mvit-deploy/artifact/1"
# What every reader of a manifest (parity, eval, bench, quant-report, the runners) looks up.
MANIFEST_KEYS = ("artifact", "model", "target", "precision", "input", "output", "checkpoint", "sha256")


def manifest_path(artifact: Path) -> Path:
    """``x.onnx`` -> ``x.json``; a directory artifact (a bundle such as ``x.mlpackage``) -> ``x.mlpackage.json``."""
    artifact = Path(artifact)
    bundle = artifact.with_name(artifact.name + ".json")
    return bundle if artifact.is_dir() or bundle.exists() else artifact.with_suffix(".json")


def package_versions(packages) -> dict[str, str]:
    """pip name -> installed version, for the packages that are installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def parse_json(text: str):
    """json.loads, refusing the NaN / Infinity that Python writes but JSON does not allow."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def read_manifest(artifact: str | Path) -> dict:
    """The artifact's sidecar manifest, once it is sure to describe exactly this file (sha256)."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise UsageError(f"artifact {artifact} does not exist", "check the path, or run `mvit-deploy export` first")
    path = manifest_path(artifact)
    if not path.exists():
        raise UsageError(
            f"{artifact} has no manifest {path.name} beside it",
            "keep the .json that `mvit-deploy export` wrote next to the artifact",
        )
    try:
        manifest = parse_json(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(
            f"manifest {path} is not valid JSON ({getattr(e, 'msg', e)})", "re-export the artifact"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise UsageError(f"manifest {path} has schema {schema!r}", f"re-export with this version ({MANIFEST_SCHEMA})")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise UsageError(f"manifest {path} lacks {', '.join(missing)}", "re-export the artifact")
    check_artifact_matches(artifact, manifest, path)
    return manifest


def check_artifact_matches(artifact: Path, manifest: dict, path: Path) -> None:
    """Refuse a sidecar written for another file, and a file changed since its sidecar was written."""
    described = str(manifest["artifact"])
    other = (
        f"this manifest is not this artifact's: {path.name} describes {described} ({manifest['model']} "
        f"{manifest['target']} {manifest['precision']})"
    )
    fix = "keep each artifact with the .json export wrote beside it, or re-export"
    if Path(described).suffix != artifact.suffix:
        raise UsageError(other, fix)
    actual = tree_sha256(artifact)
    if actual != manifest["sha256"]:
        if described != artifact.name:  # a renamed pair keeps its name in the manifest, but also its sha256
            raise UsageError(other, fix)
        raise UsageError(
            f"{artifact} does not match its manifest (sha256 {actual[:12]}…, the manifest says "
            f"{str(manifest['sha256'])[:12]}…)",
            "re-export it or restore the file",
        )


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, sorted)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def tree_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
