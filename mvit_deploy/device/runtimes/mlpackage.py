"""An ``.mlpackage`` opened as what it claims to be (stdlib only: the Mac's runner checks it before Core ML does).

A package is a folder: ``Manifest.json`` names its items (the model spec, the weights folder) by paths relative
to the package's ``Data`` folder. Those paths are the package author's to write, so each is confined: resolved
(symlinks followed) it must stay under ``Data`` — ``../../etc/passwd`` or a symlink out would make coremltools
open a file the package does not hold. The same holds for every symlink inside ``Data``, which Core ML follows.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..files import MB, load_json

REEXPORT = "re-export the .mlpackage (`mvit-deploy export --target coreml`)"
MANIFEST_MAX_BYTES = 1 * MB  # a package's Manifest.json names 2 items in ~600 bytes


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError) as e:  # a symlink loop (RuntimeError before Python 3.13)
        raise UsageError(f"the package's path {path} cannot be resolved ({e})", REEXPORT) from None


def inside(data: Path, relative: str, where: str) -> Path:
    """``data / relative``, once it is sure to stay under ``data`` (``where`` names who wrote ``relative``)."""
    base = _resolve(data)
    target = _resolve(data / relative)  # an absolute ``relative`` replaces data: caught here too
    if not target.is_relative_to(base):
        raise UsageError(
            f"{where} names {relative!r}, whose path escapes the package ({target} is outside it)", REEXPORT
        )
    return target


def _items(package: Path) -> tuple[dict, str]:
    """(Manifest.json's item entries by identifier, the root model's identifier), their types checked."""
    path = package / "Manifest.json"
    package_manifest = load_json(path, "Core ML package manifest", REEXPORT, MANIFEST_MAX_BYTES)
    entries = package_manifest.get("itemInfoEntries") if isinstance(package_manifest, dict) else None
    root = package_manifest.get("rootModelIdentifier") if isinstance(package_manifest, dict) else None
    if not isinstance(entries, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) for e in entries.values()
    ):
        raise UsageError(f"Core ML package manifest {path} has no item entries, each with a path", REEXPORT)
    if not isinstance(root, str) or root not in entries:
        raise UsageError(f"Core ML package manifest {path} names no root model among its items", REEXPORT)
    return entries, root


def _symlinks_stay_inside(data: Path) -> None:
    base = _resolve(data)
    for p in data.rglob("*"):  # rglob does not descend into symlinked folders; each link is checked itself
        if p.is_symlink() and not _resolve(p).is_relative_to(base):
            raise UsageError(
                f"the package's symlink {p} points to {_resolve(p)}, whose path escapes the package", REEXPORT
            )


def root_model(package: str | Path) -> Path:
    """The model spec file (``model.mlmodel``) of the ``.mlpackage`` folder ``package``, every item path confined to
    the package's ``Data`` folder; the file itself is not read here."""
    package = Path(package)
    if not (package / "Manifest.json").exists():
        raise UsageError(f"{package} is not an .mlpackage (it holds no Manifest.json)", REEXPORT)
    for name in ("Manifest.json", "Data"):  # either may be a symlink out, and the rest is read through them
        inside(package, name, f"the package {package}")
    data = package / "Data"
    entries, root = _items(package)
    paths = {key: inside(data, e["path"], f"{package / 'Manifest.json'} item {key}") for key, e in entries.items()}
    _symlinks_stay_inside(data)
    return paths[root]
