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

__all__ = ["CheckpointError", "DependencyError", "MvitDeployError", "NonFiniteError", "NotOnThisDevice", "UsageError"]
