"""One progress line on stderr for the steps that take seconds (model load, conversion, calibration,
parity, benchmark rounds, a hosted device's queue). Shown only on a terminal, and never by a command
asked for ``--json``: a pipe, a CI log or a JSON consumer sees nothing of it."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class _Silent:
    def step(self, text: str) -> None:
        pass

    def count(self, text: str, done: int, total: int) -> None:
        pass


class _Line:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def step(self, text: str) -> None:
        """A step of unknown length: a spinner, the text and the time it has taken."""
        self.progress.reset(self.task, description=text, total=None)

    def count(self, text: str, done: int, total: int) -> None:
        """A counted step: a bar, done/total, the rate and the time left."""
        self.progress.update(self.task, description=text, completed=done, total=total)


def shown(quiet: bool = False) -> bool:
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress_line(quiet: bool = False, first: str = "starting"):
    """``with progress_line(as_json) as line: line.step("loading"); line.count("round", 3, 50)``."""
    if not shown(quiet):
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):  # images/s, rounds/s: what a counted step gets through
        def render(self, task):
            return Text(f"{task.speed:.1f}/s" if task.speed else "")

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _Line(progress, progress.add_task(first, total=None))
