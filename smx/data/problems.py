"""Problems met while preparing a corpus: the user-facing error and the report of skipped items.

:class:`PrepareError` is a mistake in the input or the environment that the user must fix
(a missing folder or tool, a bad option); ``smx prepare`` prints its one sentence and exits
with code 2. :class:`PrepareReport` collects every item a preparation skipped or repaired,
with the reason, is written to the corpus' ``report.json``, and fails the preparation when
more than ``data.max_skip_fraction`` of the items were skipped. :func:`progress_bar` shows
how far a long step (audio checks, synthesis, Shar export) has come.

Example
-------
>>> report = PrepareReport()
>>> report.add_kept(); report.add_kept(); report.add_skip("a", "x.wav", "empty file (0 bytes)")
>>> report.total, round(report.skip_fraction, 3), report.reasons()
(3, 0.333, {'empty file': 1})
>>> report.check(max_skip_fraction=0.5)
>>> report.check(max_skip_fraction=0.1, where="report.json")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
smx.data.problems.PrepareError: 1 of 3 items (33.3%) were skipped, more than ...
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smx.atomic import write_json


class PrepareError(Exception):
    """A user-facing problem with the input or the environment: one sentence, no traceback.

    The command line prints it and exits with code 2.

    Example
    -------
    >>> str(PrepareError("the audio folder /x does not exist"))
    'the audio folder /x does not exist'
    """


@dataclass
class PrepareReport:
    """Counts of kept items, and every skipped or repaired item with its reason.

    Arguments
    ---------
    kept : int
        Items kept so far.
    skipped : list[dict[str, str]]
        ``{"id", "path", "reason"}`` of each skipped item.
    repaired : list[dict[str, Any]]
        ``{"id", "path", "repairs"}`` of each kept item that needed repairs.

    Example: the module docstring.
    """

    kept: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    repaired: list[dict[str, Any]] = field(default_factory=list)

    def add_kept(
        self, item_id: str | None = None, path: str | None = None, repairs: Sequence[str] = ()
    ) -> None:
        """Count one kept item; ``repairs`` (words) lists what was fixed, if anything."""
        self.kept += 1
        if repairs:
            self.repaired.append({"id": item_id, "path": path, "repairs": list(repairs)})

    def add_skip(self, item_id: str, path: str | None, reason: str) -> None:
        """Record one skipped item and why."""
        self.skipped.append({"id": item_id, "path": path or "", "reason": reason})

    @property
    def total(self) -> int:
        """Items seen (kept + skipped)."""
        return self.kept + len(self.skipped)

    @property
    def skip_fraction(self) -> float:
        """Share of items skipped (0 when nothing was seen)."""
        return len(self.skipped) / self.total if self.total else 0.0

    def reasons(self) -> dict[str, int]:
        """Skips per kind of reason (numbers and quoted details removed)."""
        kinds = Counter(_reason_kind(s["reason"]) for s in self.skipped)
        return dict(sorted(kinds.items()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary followed by the full lists."""
        return {
            "total": self.total,
            "kept": self.kept,
            "skipped": len(self.skipped),
            "repaired": len(self.repaired),
            "skip_fraction": round(self.skip_fraction, 6),
            "skip_reasons": self.reasons(),
            "skipped_items": sorted(self.skipped, key=lambda s: (s["id"], s["path"])),
            "repaired_items": sorted(self.repaired, key=lambda r: str(r["id"])),
        }

    def write(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        write_json(path, self.to_dict())

    def check(self, max_skip_fraction: float, where: str | Path = "the report") -> None:
        """Fail when nothing was seen or more than ``max_skip_fraction`` was skipped.

        Arguments
        ---------
        max_skip_fraction : float
            The largest share of skipped items allowed.
        where : str or Path
            Where the reasons can be read, for the message.

        Raises
        ------
        PrepareError
            Nothing was seen, or too much was skipped.
        """
        if self.total == 0:
            raise PrepareError("no usable items were found; nothing to prepare")
        if self.skip_fraction > max_skip_fraction:
            raise PrepareError(
                f"{len(self.skipped)} of {self.total} items ({100 * self.skip_fraction:.1f}%) "
                f"were skipped, more than data.max_skip_fraction={max_skip_fraction}; "
                f"the reasons are listed in {where}"
            )


def _reason_kind(reason: str) -> str:
    """The reason without its details: ``truncated WAV: header declares 12 ...`` -> prefix."""
    head = reason.split(":", 1)[0].split(" (", 1)[0]
    return re.sub(r"\d+", "N", head).strip()


@contextmanager
def progress_bar(
    description: str, total: float, unit: str = ""
) -> Iterator[Callable[[float], None]]:
    """A rich progress bar on stderr.

    Arguments
    ---------
    description : str
        The text before the bar.
    total : float
        The amount that fills the bar.
    unit : str
        Shown after the counts.

    Yields
    ------
    Callable[[float], None]
        ``advance(amount)``, which moves the bar.

    Example
    -------
    >>> with progress_bar("work", 2, "items") as advance:
    ...     advance(1); advance(1)
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} " + unit),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(description, total=total)
        yield lambda amount: progress.advance(task, amount)
