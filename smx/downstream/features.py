"""Hidden states of frozen upstreams, extracted once per utterance and kept in memory.

The upstream is frozen, so its outputs never change while probes train: every utterance is
encoded once and the probes of every seed read the cached ``[T, L, D]`` tensors. Batches
group utterances of similar duration, each at most ``max_batch_duration`` seconds of audio
(one longer utterance forms a batch of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from lhotse import CutSet

from smx.data.loader import collate
from smx.downstream.upstream import Upstream

T = TypeVar("T")


def duration_batches(items: Iterable[T], max_batch_duration: float) -> list[list[T]]:
    """Items sorted by ``duration`` and cut into batches of at most ``max_batch_duration`` s.

    An item longer than ``max_batch_duration`` forms a batch of its own.

    Arguments
    ---------
    items : Iterable[T]
        Anything with a ``duration`` attribute in seconds.
    max_batch_duration : float
        Total seconds per batch.

    Returns
    -------
    list[list[T]]
        The batches, shortest items first.

    Example
    -------
    >>> class Cut:
    ...     def __init__(self, id, duration): self.id, self.duration = id, duration
    >>> cuts = [Cut("a", 3), Cut("b", 1), Cut("c", 2)]
    >>> [[c.id for c in batch] for batch in duration_batches(cuts, 3.5)]
    [['b', 'c'], ['a']]
    """
    batches: list[list[T]] = []
    current: list[T] = []
    total = 0.0
    for item in sorted(items, key=lambda x: x.duration):  # type: ignore[attr-defined]
        duration = float(item.duration)  # type: ignore[attr-defined]
        if current and total + duration > max_batch_duration:
            batches.append(current)
            current, total = [], 0.0
        current.append(item)
        total += duration
    if current:
        batches.append(current)
    return batches


def extract(
    upstreams: Mapping[str, Upstream], cuts: Sequence[Any], max_batch_duration: float
) -> dict[str, dict[str, torch.Tensor]]:
    """Every cut's hidden states under every upstream.

    Each batch's audio is read once and run through every upstream; only the real frames of
    each cut are kept.

    Arguments
    ---------
    upstreams : Mapping[str, Upstream]
        Frozen upstreams by name (:mod:`smx.downstream.upstream`).
    cuts : Sequence[Any]
        Lhotse cuts with audio.
    max_batch_duration : float
        Seconds of audio per forward pass.

    Returns
    -------
    dict[str, dict[str, torch.Tensor]]
        Upstream name -> cut id -> ``[T, L, D]`` float32 hidden states.
    """
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in upstreams}
    for batch_cuts in duration_batches(cuts, max_batch_duration):
        batch = collate(CutSet.from_cuts(batch_cuts))
        for name, upstream in upstreams.items():
            states, lengths = upstream(batch["audio"], batch["audio_lens"])  # [B, T, L, D], [B]
            for cut_id, row, n in zip(batch["ids"], states, lengths.tolist(), strict=True):
                out[name][cut_id] = row[:n].float().clone()
    return out
