"""Progress bars for every long step (rich), silenced with LEAFBENCH_PROGRESS=0."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, task: TaskID | None):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


@contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[_Bar]:
    if not enabled or os.environ.get("LEAFBENCH_PROGRESS", "1") == "0":
        yield _Bar(None, None)
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        yield _Bar(progress, progress.add_task(label, total=total))
