"""Training input: duration filters, bucketing sampler, collation, resumable loading.

The sampler is Lhotse's ``DynamicBucketingSampler``: cuts of similar duration share a
batch and every batch holds at most ``data.max_batch_duration`` seconds of audio. It is
rank- and world-size-aware (each DDP rank gets its own batches; pass the rank explicitly,
e.g. from Ray's train context, or let Lhotse read ``RANK``/``WORLD_SIZE``).
:class:`TrainLoader` counts the batches the training loop has *consumed*, so its
``state_dict`` resumes at the next unseen batch even when DataLoader workers prefetch.

A batch (:func:`collate`) is a dict::

    audio       [B, S] float32, zero-padded on the right
    audio_lens  [B] int64, samples of each utterance
    text, speaker, intent, style, ids   lists of B values (None when a corpus lacks them)

Example
-------
>>> from lhotse.testing.dummies import dummy_cut
>>> from lhotse import CutSet
>>> cuts = CutSet.from_cuts([dummy_cut(i, duration=1.0 + i) for i in range(4)])
>>> list(c.id for c in filter_duration(cuts, 1.5, 3.5))
['dummy-mono-cut-0001', 'dummy-mono-cut-0002']
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.dataset.collation import collate_audio

from smx.data.text import CharVocab

log = logging.getLogger(__name__)


class _DurationFilter:
    """Picklable ``min <= duration <= max`` predicate."""

    def __init__(self, min_duration: float, max_duration: float) -> None:
        self.min_duration, self.max_duration = min_duration, max_duration

    def __call__(self, cut: Any) -> bool:
        return self.min_duration <= cut.duration <= self.max_duration


def filter_duration(cuts: CutSet, min_duration: float, max_duration: float) -> CutSet:
    """Keep cuts with ``min_duration <= duration <= max_duration`` seconds (lazily).

    Arguments
    ---------
    cuts : CutSet
        Any CutSet.
    min_duration, max_duration : float
        Bounds in seconds (``data.min_duration``/``max_duration``).

    Returns
    -------
    CutSet
        The lazy filtered CutSet.

    Example: the module docstring.
    """
    return cuts.filter(_DurationFilter(min_duration, max_duration))


def make_sampler(
    cuts: CutSet,
    data_cfg: Any,
    *,
    shuffle: bool = True,
    drop_last: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
    seed: int = 0,
) -> DynamicBucketingSampler:
    """A duration-bucketing sampler with ``data.max_batch_duration`` s of audio per batch.

    Arguments
    ---------
    cuts : CutSet
        The (lazy) cuts, already filtered by duration.
    data_cfg : DataCfg
        The ``data`` section (``max_batch_duration``, ``num_buckets``).
    shuffle, drop_last : bool
        Shuffle within buckets (seeded by ``seed`` + epoch); drop incomplete last batches
        (keep True for DDP training).
    rank, world_size : int or None
        This process' DDP rank and the number of ranks (None: Lhotse reads them from the
        environment or torch.distributed; a single process without either).
    seed : int
        Shuffling seed; equal on every rank.

    Returns
    -------
    DynamicBucketingSampler
        Yields the CutSet of each batch.

    Raises
    ------
    ValueError
        Fewer than 2 cuts are left.

    Example
    -------
    >>> from lhotse.testing.dummies import dummy_cut
    >>> from smx.config import DataCfg
    >>> cuts = CutSet.from_cuts([dummy_cut(i, duration=1.0) for i in range(8)])
    >>> cfg = DataCfg(min_duration=0.5, max_duration=2.0, max_batch_duration=2.0)
    >>> sampler = make_sampler(cuts, cfg, rank=1, world_size=2)
    >>> [len(batch) for batch in sampler]  # rank 1 of 2: every other batch of 2 s
    [2, 2]
    """
    buckets = sum(1 for _ in itertools.islice(cuts, data_cfg.num_buckets))
    if buckets < 2:
        raise ValueError(f"cuts: expected at least 2 cuts after the duration filter, got {buckets}")
    return DynamicBucketingSampler(
        cuts,
        max_duration=data_cfg.max_batch_duration,
        num_buckets=buckets,
        shuffle=shuffle,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
        seed=seed,
    )


def _field(cut: Any, name: str) -> Any:
    """The first value of label ``name`` among the cut's supervisions (field or custom)."""
    for sup in cut.supervisions:
        value = getattr(sup, name, None) if name in ("text", "speaker") else None
        if value is None and sup.custom:
            value = sup.custom.get(name)
        if value is not None:
            return value
    return None


def collate(cuts: CutSet) -> dict[str, Any]:
    """Load and pad the audio of ``cuts``; gather their labels.

    Arguments
    ---------
    cuts : CutSet
        The cuts of one batch.

    Returns
    -------
    dict[str, Any]
        ``audio [B, S]`` float32, ``audio_lens [B]`` int64, and lists ``text``,
        ``speaker``, ``intent``, ``style``, ``ids`` (None where a cut has no such label).

    Example
    -------
    >>> from lhotse.testing.dummies import dummy_cut
    >>> batch = collate(CutSet.from_cuts([dummy_cut(0, duration=1.0, with_data=True),
    ...                                   dummy_cut(1, duration=0.5, with_data=True)]))
    >>> batch["audio"].shape, batch["audio"].dtype, batch["audio_lens"].tolist()
    (torch.Size([2, 16000]), torch.float32, [16000, 8000])
    """
    audio, lens = collate_audio(cuts)  # [B, S], [B]
    texts = []
    for cut in cuts:
        parts = [s.text for s in cut.supervisions if s.text]
        texts.append(" ".join(parts) if parts else None)
    return {
        "audio": audio.to(torch.float32),
        "audio_lens": lens.to(torch.int64),
        "text": texts,
        "speaker": [_field(c, "speaker") for c in cuts],
        "intent": [_field(c, "intent") for c in cuts],
        "style": [_field(c, "style") for c in cuts],
        "ids": [c.id for c in cuts],
    }


class SpeechDataset(torch.utils.data.Dataset):
    """A map-style dataset whose "index" is the CutSet of one batch (Lhotse's convention).

    Example
    -------
    >>> from lhotse.testing.dummies import dummy_cut
    >>> SpeechDataset()[CutSet.from_cuts([dummy_cut(0, with_data=True)])]["ids"]
    ['dummy-mono-cut-0000']
    """

    def __getitem__(self, cuts: CutSet) -> dict[str, Any]:
        """The batch of ``cuts`` (:func:`collate`)."""
        return collate(cuts)


class _SkipBatches:
    """Iterate a sampler, dropping its first ``skip`` batches (no audio is loaded for them)."""

    def __init__(self, sampler: Iterable[CutSet], skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[CutSet]:
        batches = iter(self.sampler)  # a Lhotse sampler is its own iterator: iter() restarts it
        for _ in range(self.skip):
            if next(batches, None) is None:
                return
        while (batch := next(batches, None)) is not None:
            yield batch


class TrainLoader:
    """Batches of a CutSet for training: bucketed, rank-aware, resumable.

    Iterating yields the batches of the current epoch; a complete pass moves to the next
    epoch. ``state_dict()`` records the epoch and how many batches the caller has taken, so
    ``load_state_dict`` on a fresh loader over the same cuts continues with the next batch.

    Arguments
    ---------
    cuts : CutSet
        The cuts (lazy, e.g. :func:`smx.data.manifests.load_cuts` or a Shar CutSet).
    data_cfg : DataCfg
        The ``data`` section (duration filters, batch duration, buckets, workers).
    rank, world_size : int or None
        DDP rank and world size (None: from the environment).
    seed : int
        Shuffling seed (same on every rank).
    shuffle, drop_last : bool
        As for :func:`make_sampler`.
    num_workers : int or None
        DataLoader worker processes (None: ``data.num_loader_workers``).

    Example
    -------
    >>> from lhotse.testing.dummies import dummy_cut
    >>> from smx.config import DataCfg
    >>> cuts = CutSet.from_cuts([dummy_cut(i, duration=1.0, with_data=True) for i in range(6)])
    >>> cfg = DataCfg(min_duration=0.5, max_duration=2.0, max_batch_duration=2.0)
    >>> loader = TrainLoader(cuts, cfg, rank=0, world_size=1, shuffle=False)
    >>> [b["audio"].shape[0] for b in loader]
    [2, 2, 2]
    """

    def __init__(
        self,
        cuts: CutSet,
        data_cfg: Any,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        num_workers: int | None = None,
    ) -> None:
        kept = filter_duration(cuts, data_cfg.min_duration, data_cfg.max_duration)
        self.sampler = make_sampler(
            kept,
            data_cfg,
            shuffle=shuffle,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            seed=seed,
        )
        self.num_workers = data_cfg.num_loader_workers if num_workers is None else num_workers
        self.seed = seed
        self.epoch = 0
        self.batches_done = 0

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (a different shuffle per epoch)."""
        self.epoch, self.batches_done = epoch, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.sampler.set_epoch(self.epoch)
        loader = torch.utils.data.DataLoader(
            SpeechDataset(),
            sampler=_SkipBatches(self.sampler, self.batches_done),
            batch_size=None,
            num_workers=self.num_workers,
            # its own generator: a DataLoader iterator draws a seed from the global torch RNG
            # otherwise, so resuming mid-epoch would shift dropout and noise of the next steps
            generator=torch.Generator().manual_seed(self.seed + self.epoch),
        )
        for batch in loader:
            self.batches_done += 1
            yield batch
        self.set_epoch(self.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        """Where the training loop is: epoch, batches taken, and the partition they assume."""
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "seed": self.seed,
            "rank": self.sampler.rank,
            "world_size": self.sampler.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the next batch is the first one not yet taken."""
        if state["world_size"] != self.sampler.world_size or state["seed"] != self.seed:
            raise ValueError(
                f"state: saved with world_size={state['world_size']}, seed={state['seed']}; "
                f"this loader has world_size={self.sampler.world_size}, seed={self.seed}, "
                "so its batches differ and the position cannot be restored"
            )
        self.epoch, self.batches_done = int(state["epoch"]), int(state["batches_done"])


def load_vocab(corpus_dir: str | Path) -> CharVocab:
    """The character vocabulary of a prepared corpus (built from its training text).

    Arguments
    ---------
    corpus_dir : str or Path
        A corpus written by ``smx prepare`` (reads its ``vocab.json``).

    Returns
    -------
    CharVocab
        The vocabulary.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> CharVocab.from_texts(["hi"]).save(Path(folder) / "vocab.json")
    >>> load_vocab(folder).tokens
    ['<blank>', '<unk>', 'h', 'i']
    """
    return CharVocab.load(Path(corpus_dir) / "vocab.json")


def unknown_chars(cuts: Iterable[Any], vocab: CharVocab) -> Counter[str]:
    """Characters of the cuts' transcripts that ``vocab`` lacks; logged as a warning.

    Arguments
    ---------
    cuts : Iterable
        Cuts whose supervisions carry text (None texts are ignored).
    vocab : CharVocab
        The vocabulary, e.g. :func:`load_vocab`.

    Returns
    -------
    Counter[str]
        How often each unknown character occurs.

    Example
    -------
    >>> from lhotse.testing.dummies import dummy_cut, dummy_supervision
    >>> cut = dummy_cut(0, supervisions=[dummy_supervision(0, text="hi!")])
    >>> unknown_chars([cut], CharVocab("hi"))
    Counter({'!': 1})
    """
    found = vocab.unknown_chars(s.text for c in cuts for s in c.supervisions)
    if found:
        listed = ", ".join(f"{c!r} x{n}" for c, n in sorted(found.items()))
        log.warning("characters outside the vocabulary (mapped to <unk>): %s", listed)
    return found
