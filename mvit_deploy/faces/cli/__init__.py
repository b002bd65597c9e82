"""The ``mvit-deploy`` command: flags in, one library call, one line of output or error out.

``app`` holds the group and its error contract; each command lives with its kind (``make``, ``check``,
``measure``) and registers itself on import.
"""

from __future__ import annotations

from . import check, make, measure  # noqa: F401  (each registers its commands)
from .app import main

__all__ = ["main"]
