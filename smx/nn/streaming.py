"""Chunk configurations for streaming mixers and the dynamic chunk training sampler.

A chunk configuration ``(C, L)`` lets frame ``t`` of chunk ``c = t // C`` see every frame of
chunks ``max(0, c - L) .. c``: its own whole chunk (frames to its right inside the chunk
included) and ``L`` previous chunks, ``L = None`` meaning all of them. Dynamic chunk
training (arXiv 2409.07165) draws a new configuration for every training batch, or ``None``
for full context, so that one model serves both offline and streaming use
(docs/algorithm.md, "Streaming and dynamic chunk training").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from smx.nn.base import check_chunking

if TYPE_CHECKING:
    from smx.config import StreamingCfg


@dataclass(frozen=True)
class ChunkConfig:
    """Chunk size in frames and visible left context in chunks (None = unlimited).

    Arguments
    ---------
    chunk_size : int
        Frames per chunk, ``>= 1``.
    left_chunks : int or None
        Previous chunks every frame sees, ``>= 0``; None = all of them.

    Example
    -------
    >>> ChunkConfig(chunk_size=16, left_chunks=2).left_frames
    32
    >>> ChunkConfig(chunk_size=0, left_chunks=None)
    Traceback (most recent call last):
    ...
    ValueError: ChunkConfig: chunk_size must be an integer >= 1, got 0
    """

    chunk_size: int
    left_chunks: int | None

    def __post_init__(self) -> None:
        check_chunking(self.chunk_size, self.left_chunks, "ChunkConfig")

    @property
    def left_frames(self) -> int | None:
        """Visible left context in frames, ``chunk_size * left_chunks`` (None = unlimited)."""
        return None if self.left_chunks is None else self.chunk_size * self.left_chunks


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"sample_chunk_config: {name} must be in [0, 1], got {value!r}")


def _check_range(low_name: str, low: int, high_name: str, high: int, minimum: int) -> None:
    for name, value in ((low_name, low), (high_name, high)):
        if not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"sample_chunk_config: {name} must be an integer >= {minimum}, got {value!r}"
            )
    if low > high:
        raise ValueError(
            f"sample_chunk_config: {low_name}={low} must not exceed {high_name}={high}"
        )


def _uniform_int(generator: torch.Generator, low: int, high: int) -> int:
    """Integer uniform in ``[low, high]`` (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator).item())


def sample_chunk_config(
    generator: torch.Generator,
    chunkwise_prob: float,
    chunk_min: int,
    chunk_max: int,
    limited_left_prob: float,
    left_min: int,
    left_max: int,
) -> ChunkConfig | None:
    """Draw the chunk configuration of one training batch (dynamic chunk training).

    With probability ``chunkwise_prob`` a chunked configuration: chunk size uniform in
    ``[chunk_min, chunk_max]``, then with probability ``limited_left_prob`` a left context
    uniform in ``[left_min, left_max]`` chunks, otherwise unlimited. Otherwise ``None``: full
    context for this batch. Deterministic for a given generator state.

    Arguments
    ---------
    generator : torch.Generator
        Source of randomness (a CPU generator).
    chunkwise_prob : float
        Probability of a chunked configuration, in ``[0, 1]``.
    chunk_min, chunk_max : int
        Chunk size bounds in frames, ``1 <= chunk_min <= chunk_max``.
    limited_left_prob : float
        Probability of a limited left context given a chunked configuration, in ``[0, 1]``.
    left_min, left_max : int
        Left context bounds in chunks, ``0 <= left_min <= left_max``.

    Returns
    -------
    ChunkConfig or None
        None = full context.

    Example
    -------
    >>> generator = torch.Generator().manual_seed(0)
    >>> config = sample_chunk_config(generator, 1.0, 8, 32, 1.0, 2, 4)
    >>> 8 <= config.chunk_size <= 32 and 2 <= config.left_chunks <= 4
    True
    >>> print(sample_chunk_config(generator, 0.0, 8, 32, 1.0, 2, 4))
    None
    """
    _check_probability("chunkwise_prob", chunkwise_prob)
    _check_probability("limited_left_prob", limited_left_prob)
    _check_range("chunk_min", chunk_min, "chunk_max", chunk_max, minimum=1)
    _check_range("left_min", left_min, "left_max", left_max, minimum=0)
    if torch.rand((), generator=generator).item() >= chunkwise_prob:
        return None
    chunk_size = _uniform_int(generator, chunk_min, chunk_max)
    if torch.rand((), generator=generator).item() >= limited_left_prob:
        return ChunkConfig(chunk_size, None)
    return ChunkConfig(chunk_size, _uniform_int(generator, left_min, left_max))


def training_chunk(
    cfg: StreamingCfg | None, generator: torch.Generator, training: bool
) -> ChunkConfig | None:
    """The chunk configuration of one batch: drawn when dynamic chunk training is on.

    Arguments
    ---------
    cfg : StreamingCfg or None
        ``model.streaming``; None or ``enabled: false`` = full context.
    generator : torch.Generator
        The caller's generator (checkpointed with it, so a resumed run draws the same).
    training : bool
        Whether the model is training; evaluation always uses full context.

    Returns
    -------
    ChunkConfig or None
        What :func:`sample_chunk_config` draws from ``cfg``'s settings; None = full context.

    Example
    -------
    >>> from smx.config import StreamingCfg
    >>> cfg = StreamingCfg(enabled=True, chunkwise_prob=1.0, chunk_min=4, chunk_max=4,
    ...                    limited_left_prob=1.0, left_min=1, left_max=1)
    >>> training_chunk(cfg, torch.Generator().manual_seed(0), training=True)
    ChunkConfig(chunk_size=4, left_chunks=1)
    >>> print(training_chunk(cfg, torch.Generator(), training=False))
    None
    """
    if cfg is None or not cfg.enabled or not training:
        return None
    return sample_chunk_config(
        generator,
        cfg.chunkwise_prob,
        cfg.chunk_min,
        cfg.chunk_max,
        cfg.limited_left_prob,
        cfg.left_min,
        cfg.left_max,
    )
