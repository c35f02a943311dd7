"""The progress bar shown while a big SQL file loads, on stderr, only when it is a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def load_progress(name: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A callback taking (bytes read, statements done) that moves the bar; it vanishes when done."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[statements]:,} statements"),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(name, total=total, statements=0)

        def update(done: int, statements: int) -> None:
            progress.update(task, completed=done, statements=statements)

        yield update
