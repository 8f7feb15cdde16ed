"""The source hash: which smx code a training run executes, as part of its identity.

A run's name and its checkpoints carry the hash of the Python files that training executes
(the model, the objectives, the training loop, the data loading and the config schema), read
from the imported ``smx`` package: the working tree as it is, committed or not. A changed
mixer gives a new hash, so a relaunch starts a new run instead of resuming one made with
other code; an unchanged tree keeps its hash, so a crashed run resumes.

The hash covers every ``*.py`` file under :data:`TRAINING_SOURCES`, by relative path and
bytes, in sorted order; caches and other files are left out. Container images record it at
build time (``smx version --source-hash``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import smx

#: the parts of the ``smx`` package that a training run executes (relative to the package)
TRAINING_SOURCES = (
    "__init__.py",
    "atomic.py",
    "config.py",
    "yamlio.py",
    "provenance.py",
    "nn",
    "ssl",
    "train",
    "data",
    "downstream",
)


class SourceHashError(ValueError):
    """The smx source cannot be hashed (a part is missing or unreadable)."""


def package_dir() -> Path:
    """The folder of the imported ``smx`` package."""
    return Path(smx.__file__).resolve().parent


def source_files(
    package: Path | None = None, parts: Sequence[str] = TRAINING_SOURCES
) -> list[Path]:
    """The ``*.py`` files of ``parts`` under ``package``, sorted by relative path.

    Raises
    ------
    SourceHashError
        A part does not exist, or holds no Python file.

    Example
    -------
    >>> [p.name for p in source_files(parts=["atomic.py"])]
    ['atomic.py']
    """
    package = package or package_dir()
    files: list[Path] = []
    for part in parts:
        path = package / part
        if path.is_file():
            files.append(path)
            continue
        found = sorted(path.rglob("*.py")) if path.is_dir() else []
        if not found:
            raise SourceHashError(
                f"cannot hash the smx source: {path} is missing or holds no Python file "
                "(training names its runs by the code it executes)"
            )
        files.extend(found)
    return sorted(set(files), key=lambda p: p.relative_to(package).as_posix())


def source_hash(package: Path | None = None, parts: Sequence[str] = TRAINING_SOURCES) -> str:
    """SHA-256 of the Python files training executes, by relative path and content.

    Arguments
    ---------
    package : Path | None
        The ``smx`` package folder; None = the imported one.
    parts : Sequence[str]
        Files and folders of the package to cover.

    Returns
    -------
    str
        64 hex digits; equal for equal trees wherever they lie.

    Raises
    ------
    SourceHashError
        A part is missing or a file cannot be read; one sentence naming it.

    Example
    -------
    >>> len(source_hash()), source_hash() == source_hash()
    (64, True)
    """
    package = package or package_dir()
    digest = hashlib.sha256()
    for path in source_files(package, parts):
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise SourceHashError(
                f"cannot hash the smx source: {path} cannot be read ({exc.strerror or exc})"
            ) from None
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(len(content).to_bytes(8, "little") + content)
    return digest.hexdigest()


def with_source(config: str, source: str) -> str:
    """A checkpoint's hash: a config hash combined with the source hash ('' = config alone).

    Example
    -------
    >>> with_source("abc", ""), with_source("abc", "1") == with_source("abc", "2")
    ('abc', False)
    """
    if not source:
        return config
    return hashlib.sha256(f"{config}:{source}".encode()).hexdigest()
