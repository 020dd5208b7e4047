"""A rich progress bar for training loops, or nothing when disabled (shared by the torch
models so they report epochs the same way)."""

from __future__ import annotations

from typing import Any


class TrainingProgress:
    """Context manager over `rich.progress.Progress`; every method is a no-op when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            console = Console()
            if not console.is_terminal:  # log files: one line per epoch, not wrapped at 80
                console = Console(width=160)
            self._p = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )

    def __enter__(self) -> TrainingProgress:
        if self._p is not None:
            self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(None, None, None)

    def add_task(self, description: str, total: int) -> Any:
        return self._p.add_task(description, total=total) if self._p is not None else 0

    def reset(self, task: Any, description: str) -> None:
        if self._p is not None:
            self._p.reset(task, description=description)

    def update(self, task: Any, advance: int, description: str) -> None:
        if self._p is not None:
            self._p.update(task, advance=advance, description=description)

    def log(self, message: str) -> None:
        if self._p is not None:
            self._p.console.log(message)
