"""Errors a user can cause: each carries one line naming the problem and the fix.

They are defined in :mod:`mvit_deploy.device.errors`, the device side's own module (a board runs
that subpackage alone); every host module imports them from here.
"""

from __future__ import annotations

from .device.errors import (
    CheckpointError,
    DependencyError,
    MvitDeployError,
    NonFiniteError,
    NotOnThisDevice,
    UsageError,
)


def at_least(flag: str, value, minimum: int, example: int) -> None:
    """Refuse a count below ``minimum`` (``--threads 0``, ``--iters 1``): the library's rule, which the CLI's flags
    also check while they are parsed. ``None`` (the default) passes."""
    if value is not None and value < minimum:
        raise UsageError(f"{flag} {value} is out of range: it must be at least {minimum}", f"use e.g. {flag} {example}")


__all__ = [
    "CheckpointError",
    "DependencyError",
    "MvitDeployError",
    "NonFiniteError",
    "NotOnThisDevice",
    "UsageError",
    "at_least",
]
