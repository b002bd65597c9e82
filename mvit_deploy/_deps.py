"""What optional packages are importable, asked once, without importing them."""

from __future__ import annotations

import importlib.util
import sys

from .errors import DependencyError


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def require(module: str, extra: str = "") -> None:
    if not has(module):
        hint = f"pip install 'mvit-deploy[{extra}]'" if extra else f"pip install {module}"
        raise DependencyError(f"this step needs the package '{module}', which is not installed", hint)


IS_MACOS = sys.platform == "darwin"
