"""Lhotse Shar shards of a prepared corpus, for sequential reading from object storage.

``export_shar`` writes, per split, ``<out>/<split>/cuts.NNNNNN.jsonl.gz`` with
``recording.NNNNNN.tar`` (FLAC audio inside the tar, so a shard is self-contained and
can be copied to S3/GCS). Each split is written to a hidden ``.<split>.partial`` folder
and renamed when complete; ``COMPLETE.json`` is written last. ``load_shar`` opens a
split as a lazy CutSet that :class:`smx.data.loader.TrainLoader` batches like any other.

Lhotse's bucketing sampler keeps up to ``buffer_size`` cuts in memory; with Shar those
cuts carry their audio, so large-scale runs should size the buffer accordingly.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lhotse import CutSet

from smx.atomic import write_json
from smx.data.manifests import MARKER, available_splits, load_cuts
from smx.data.problems import PrepareError, progress_bar


def export_shar(
    corpus_dir: str | Path,
    out_dir: str | Path,
    splits: Sequence[str] | None = None,
    shard_size: int = 1000,
) -> dict[str, Any]:
    """Write Shar shards of the given splits (default: all) of a finished corpus.

    Arguments
    ---------
    corpus_dir : str or Path
        A corpus written by ``smx prepare``.
    out_dir : str or Path
        The Shar folder (one sub-folder per split).
    splits : Sequence[str] or None
        Which splits; None = every split of the corpus.
    shard_size : int
        Cuts per shard.

    Returns
    -------
    dict[str, Any]
        ``{"corpus_dir": path, "splits": {split: {"shards": n, "cuts": n}}}``, also
        written to ``COMPLETE.json``.

    Raises
    ------
    PrepareError
        ``shard_size`` is below 1, the corpus is unfinished, or it lacks a split asked for.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> from smx.config import DataCfg
    >>> from smx.data.audio import write_flac
    >>> from smx.data.corpora import prepare_folder
    >>> root = Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     write_flac(root / "in" / f"u{i}.flac", np.full(16000, 0.1), 16000)
    >>> _ = prepare_folder(root / "in", root / "corpus", DataCfg())
    >>> export_shar(root / "corpus", root / "shar", shard_size=2)["splits"]
    {'train': {'shards': 2, 'cuts': 3}}
    >>> [c.id for c in load_shar(root / "shar", "train")]
    ['u0', 'u1', 'u2']
    """
    chosen = _chosen_splits(corpus_dir, splits, shard_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    result = {split: _export_split(corpus_dir, split, out, shard_size) for split in chosen}
    summary = {"corpus_dir": str(Path(corpus_dir).resolve()), "splits": result}
    write_json(out / MARKER, summary)
    return summary


def _chosen_splits(
    corpus_dir: str | Path, splits: Sequence[str] | None, shard_size: int
) -> list[str]:
    """The splits to export (default: all); :class:`PrepareError` for a bad request."""
    if shard_size < 1:
        raise PrepareError(f"--shard-size must be at least 1, got {shard_size}")
    have = available_splits(corpus_dir)
    if not have:
        raise PrepareError(f"{corpus_dir} is not a finished corpus; run smx prepare for it first")
    chosen = list(splits) if splits else have
    unknown = [s for s in chosen if s not in have]
    if unknown:
        names = ", ".join(f"'{s}'" for s in unknown)
        raise PrepareError(f"{corpus_dir} has no split {names} (it has: {', '.join(have)})")
    return chosen


def _export_split(corpus_dir: str | Path, split: str, out: Path, shard_size: int) -> dict[str, int]:
    """Write one split's shards to ``out/<split>``, in one rename once they are complete."""
    cuts = load_cuts(corpus_dir, split)
    count = sum(1 for _ in cuts)
    partial = out / f".{split}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    with progress_bar(f"shar {split}", count, "cuts") as advance:
        paths = cuts.map(_Advance(advance)).to_shar(
            partial, fields={"recording": "flac"}, shard_size=shard_size
        )
    final = out / split
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return {"shards": len(paths["cuts"]), "cuts": count}


class _Advance:
    """Identity map over cuts that moves a progress bar."""

    def __init__(self, advance: Any) -> None:
        self.advance = advance

    def __call__(self, cut: Any) -> Any:
        """Count ``cut`` and return it unchanged."""
        self.advance(1)
        return cut


def load_shar(
    shar_dir: str | Path, split: str, shuffle_shards: bool = False, seed: int = 0
) -> CutSet:
    """Open one split of a Shar export as a lazy CutSet (audio read from the tar shards).

    Arguments
    ---------
    shar_dir : str or Path
        The folder written by :func:`export_shar`.
    split : str
        Which split.
    shuffle_shards : bool
        Visit the shards in a random order (seeded by ``seed``) each epoch.
    seed : int
        Seed of the shard order.

    Returns
    -------
    CutSet
        The split's cuts, their audio inside the shards.

    Raises
    ------
    PrepareError
        The export is unfinished or lacks the split.

    Example: :func:`export_shar`.
    """
    root = Path(shar_dir)
    marker = root / MARKER
    if not marker.is_file():
        raise PrepareError(
            f"{shar_dir} is not a finished Shar export (no {MARKER}); run smx prepare shar again"
        )
    splits = json.loads(marker.read_text(encoding="utf-8"))["splits"]
    if split not in splits:
        raise PrepareError(f"{shar_dir} has no split '{split}' (it has: {', '.join(splits)})")
    return CutSet.from_shar(in_dir=root / split, shuffle_shards=shuffle_shards, seed=seed)
