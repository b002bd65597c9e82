"""Errors a user can cause: each carries one line naming the problem and the fix (the one hierarchy, host and
device)."""

from __future__ import annotations


class MvitDeployError(Exception):
    """Base class for every error the CLI turns into one line and a non-zero exit.

    Exit codes, one table for every command: 0 ok, 1 a bound or check failed (the verdict
    of parity, eval, export), 2 a usage or input error (the default here), 3 an internal
    error (any other exception; the CLI logs its traceback).
    """

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.problem} — {self.fix}" if self.fix else self.problem
        return " ".join(text.split())  # a wrapped library message must not break the one line


class CheckpointError(MvitDeployError):
    """A checkpoint file that cannot be read, is unsafe, or does not fit the model."""


class UsageError(MvitDeployError):
    """Arguments that do not make sense together (unknown model, bad input size, ...)."""


class DependencyError(MvitDeployError):
    """An optional package needed for this step is not installed."""


class NotOnThisDevice(UsageError):
    """This machine cannot run the artifact's runtime at all (Core ML off macOS): bench skips it, naming why."""


class NonFiniteError(MvitDeployError):
    """A weight, input or output tensor holding NaN or infinity: nothing computed from it means anything."""
