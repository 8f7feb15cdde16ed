"""The driver's view of a running Ray Train job: a progress bar fed by rank 0's progress file.

Rank 0 rewrites ``<run folder>/progress.json`` (step, loss, hours of audio) as it trains
(:class:`smx.train.loop.Progress`); :class:`ProgressBar` reads it from a thread of the driver
while ``trainer.fit()`` blocks, and draws a bar on a terminal or prints a plain line every
10 s elsewhere (DVC logs, CI).
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any


def progress_line(title: str, data: dict[str, Any], max_steps: int, eta: float) -> str:
    """One plain progress line: step, loss, hours of audio and the ETA (``nan``: unknown).

    Example
    -------
    >>> progress_line("sm", {"step": 3, "loss": 2.5, "audio_hours": 0.01}, 10, 7.0)
    'sm: step 3/10, loss 2.5, 0.010 h audio, ETA 7 s'
    """
    return (
        f"{title}: step {int(data['step'])}/{max_steps}, loss {data.get('loss', math.nan):.4g}, "
        f"{data.get('audio_hours', 0.0):.3f} h audio, ETA "
        f"{'?' if math.isnan(eta) else f'{eta:.0f} s'}"
    )


class ProgressBar:
    """The driver's progress bar, fed by rank 0's progress file (step, loss, hours, ETA).

    A context manager: entering starts the drawing thread (none when ``path`` is None),
    leaving stops it.

    Arguments
    ---------
    path : Path | None
        Rank 0's progress file; None draws nothing.
    max_steps : int
        The bar's total.
    title : str
        The bar's label (the Ray run name).

    Example
    -------
    >>> with ProgressBar(None, 10, "sm") as bar:
    ...     bar.read() is None
    True
    """

    def __init__(self, path: Path | None, max_steps: int, title: str) -> None:
        self.path, self.max_steps, self.title = path, max_steps, title
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProgressBar:
        if self.path is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def read(self) -> dict[str, Any] | None:
        """Rank 0's latest progress record, or None before the first one."""
        try:
            return json.loads(self.path.read_text()) if self.path else None
        except (OSError, ValueError):
            return None

    def _run(self) -> None:
        from rich.console import Console

        console = Console(stderr=True, highlight=False)
        if console.is_terminal:
            self._run_bar(console)
        else:
            self._run_lines(console)

    def _run_lines(self, console: Any, every: float = 10.0) -> None:
        """Without a terminal (DVC logs, CI): one plain line every ``every`` seconds."""
        start, shown = time.monotonic(), -1
        while True:
            stopping = self._stop.wait(every)
            data = self.read()
            if data and data.get("step", 0) != shown:
                shown = int(data["step"])
                done = max(shown - int(data.get("start_step", 0)), 0)
                elapsed = time.monotonic() - start
                eta = elapsed / done * (self.max_steps - shown) if done else math.nan
                console.print(progress_line(self.title, data, self.max_steps, eta), markup=False)
            if stopping:
                return

    def _run_bar(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[hours]} h audio"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(self.title, total=self.max_steps, loss="-", hours="0.000")
            while not self._stop.wait(0.5):
                self._update(bar, task)
            self._update(bar, task)

    def _update(self, bar: Any, task: Any) -> None:
        """Move the bar to rank 0's latest record."""
        data = self.read()
        if data is None:
            return
        loss = data.get("loss", math.nan)
        bar.update(
            task,
            completed=data.get("step", 0),
            loss=f"{loss:.3f}" if math.isfinite(loss) else str(loss),
            hours=f"{data.get('audio_hours', 0.0):.3f}",
        )
