"""Generated blocks in hand-written Markdown: a command that measures something rewrites its
own block of a document, and leaves every other line as the author wrote it.

A block is delimited by two HTML comments, invisible when rendered::

    <!-- begin: bench-mixers -->
    ... written by `smx bench mixers` ...
    <!-- end: bench-mixers -->

Example
-------
>>> import tempfile
>>> doc = Path(tempfile.mkdtemp()) / "doc.md"
>>> _ = doc.write_text("# Title\\n<!-- begin: t -->\\nold\\n<!-- end: t -->\\nkept\\n")
>>> replace_block(doc, "t", "| a |\\n| 1 |")
>>> print(doc.read_text(), end="")
# Title
<!-- begin: t -->
| a |
| 1 |
<!-- end: t -->
kept
>>> replace_block(doc, "nope", "x")
Traceback (most recent call last):
...
smx.docblock.BlockError: ... has no block `nope`: add the lines `<!-- begin: nope -->` and `<!-- end: nope -->` where it belongs
"""

from __future__ import annotations

import re
from pathlib import Path

from smx.atomic import write_text


class BlockError(ValueError):
    """The document lacks the block's markers, or has them twice or out of order."""


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[\w-]+", name):
        raise BlockError(f"block name {name!r} must use only letters, digits, - and _")


def markers(name: str) -> tuple[str, str]:
    """The begin and end lines of block ``name``."""
    return f"<!-- begin: {name} -->", f"<!-- end: {name} -->"


def replace_block(path: str | Path, name: str, content: str) -> None:
    """Atomically replace the lines between the markers of block ``name`` in ``path``.

    Arguments
    ---------
    path : str | Path
        The Markdown file; it must already hold both markers, once each, begin first.
    name : str
        The block's name (letters, digits, ``-`` and ``_``).
    content : str
        The new text of the block, without the markers.

    Raises
    ------
    BlockError
        When the name has other characters, or the markers are missing, repeated or out of
        order (the file is untouched).
    """
    _check_name(name)
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    start, stop = _span(path, lines, name)
    body = content.strip("\n").splitlines()
    write_text(path, "\n".join(lines[: start + 1] + body + lines[stop:]) + "\n")


def check_block(path: str | Path, name: str) -> None:
    """Check, without writing, that ``path`` holds block ``name`` (see :func:`replace_block`).

    Raises
    ------
    BlockError
        For the same reasons, with the same sentences, as :func:`replace_block`.
    """
    _check_name(name)
    path = Path(path)
    _span(path, path.read_text(encoding="utf-8").splitlines(), name)


def _span(path: Path, lines: list[str], name: str) -> tuple[int, int]:
    """The line numbers of block ``name``'s begin and end markers in ``lines`` (of ``path``)."""
    begin, end = markers(name)
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if not starts and not ends:
        raise BlockError(
            f"{path} has no block `{name}`: add the lines `{begin}` and `{end}` where it belongs"
        )
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise BlockError(f"{path}: block `{name}` needs one `{begin}` followed by one `{end}`")
    return starts[0], ends[0]


def read_block(path: str | Path, name: str) -> str:
    """The current text between the markers of block ``name`` in ``path`` ("" when absent)."""
    begin, end = markers(name)
    text = Path(path).read_text(encoding="utf-8")
    match = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), text, flags=re.S)
    return match.group(1).rstrip("\n") if match else ""
