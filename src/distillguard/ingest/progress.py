"""Rich progress bars for the ingest passes (on stderr, so stdout stays parseable)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

Reporter = Callable[[str, int, int | None], None]


@contextmanager
def progress_reporter(enabled: bool) -> Iterator[Reporter]:
    """Yield `report(stage, done, total)`; a no-op when disabled."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, int] = {}
    current: list[str] = []

    def report(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            if current:  # a new stage means the previous one finished
                prev = tasks[current[-1]]
                task = bars.tasks[prev]
                bars.update(
                    prev,
                    total=task.total or task.completed or 1,
                    completed=task.total or task.completed or 1,
                )
            tasks[stage] = bars.add_task(stage, total=total)
            current.append(stage)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield report
        if current:
            last = tasks[current[-1]]
            task = bars.tasks[last]
            bars.update(
                last,
                total=task.total or task.completed or 1,
                completed=task.total or task.completed or 1,
            )
