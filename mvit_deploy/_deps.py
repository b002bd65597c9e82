"""What optional packages are importable, asked once, without importing them."""

from __future__ import annotations

import importlib.util
import sys


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


IS_MACOS = sys.platform == "darwin"
