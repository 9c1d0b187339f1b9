"""The progress bar `gradverify check` draws on stderr (a terminal only) while a check runs."""
from __future__ import annotations

import sys
from typing import Any

from .output import console, isatty


class Progress:
    """A progress bar on stderr for checks that take more than about a second; none when stderr
    is not a terminal."""

    def __init__(self, enabled: bool):
        import time

        self.enabled = enabled and isatty(sys.stderr)  # (None: a closed descriptor 2)
        self.start = time.monotonic()
        self.bar: Any = None  # a rich Progress, made once the check has run for a second
        self.task: Any = None
        self.node: str | None = None

    def __call__(self, node: str, done: int, total: int) -> None:
        import time

        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.start < 1.0:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=console(stderr=True), transient=True)
            self.bar.start()
        if node != self.node:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"checking {node}", total=total)
            self.node = node
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
