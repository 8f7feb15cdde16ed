"""The mixer interface shared by every context mixer in :mod:`smx.nn.mixers`.

A mixer maps ``x [B, T, D]`` and ``pad_mask [B, T]`` (bool, True = real frame) to
``[B, T, D]``. It must honour the mask: the outputs on real frames do not change when
more padding is appended, and padded frames never reach real ones.

Mixers with a streaming mode also implement :meth:`Mixer.forward_chunked` (every frame
sees its own chunk and ``left_chunks`` previous chunks, ``None`` = all of them) and the
stateful step API :meth:`Mixer.init_state` / :meth:`Mixer.forward_step`, whose outputs
equal those of ``forward_chunked`` chunk by chunk.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def check_mixer_input(x: torch.Tensor, pad_mask: torch.Tensor, d_model: int, name: str) -> None:
    """Raise a ValueError naming the argument when ``x`` or ``pad_mask`` is malformed.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, T, D]`` with ``D == d_model``.
    pad_mask : torch.Tensor
        ``[B, T]`` bool, True = real frame.
    d_model : int
        Expected feature size.
    name : str
        Module name used in the message.

    Example
    -------
    >>> check_mixer_input(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), 4, "m")
    """
    if x.dim() != 3:
        raise ValueError(f"{name}: x must have shape [B, T, D], got {x.dim()} dimensions")
    if x.shape[-1] != d_model:
        raise ValueError(f"{name}: x feature size must be d_model={d_model}, got {x.shape[-1]}")
    if pad_mask.dtype != torch.bool:
        raise ValueError(
            f"{name}: pad_mask must be a bool tensor (True = real frame), got {pad_mask.dtype}"
        )
    if pad_mask.shape != x.shape[:2]:
        raise ValueError(
            f"{name}: pad_mask must have shape [B, T] = {list(x.shape[:2])}, "
            f"got {list(pad_mask.shape)}"
        )


def check_chunking(chunk_size: int, left_chunks: int | None, name: str) -> None:
    """Raise a ValueError when a chunk configuration is invalid.

    Arguments
    ---------
    chunk_size : int
        Frames per chunk ``C``, an integer ``>= 1``.
    left_chunks : int or None
        Visible previous chunks ``L``, an integer ``>= 0``; None = all of them.
    name : str
        Module name used in the message.

    Example
    -------
    >>> check_chunking(8, None, "m")
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{name}: chunk_size must be an integer >= 1, got {chunk_size!r}")
    if left_chunks is not None and (not isinstance(left_chunks, int) or left_chunks < 0):
        raise ValueError(
            f"{name}: left_chunks must be None (unlimited) or an integer >= 0, got {left_chunks!r}"
        )


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, T]`` bool mask, True = real frame.

    Arguments
    ---------
    lengths : torch.Tensor
        ``[B]`` integer real lengths.
    max_len : int or None
        ``T``; None = the longest length.

    Returns
    -------
    torch.Tensor
        ``[B, T]`` bool, on the device of ``lengths``.

    Example
    -------
    >>> lengths_to_mask(torch.tensor([1, 3])).tolist()
    [[True, False, False], [True, True, True]]
    """
    t = int(lengths.max().item()) if max_len is None else max_len
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


class Mixer(nn.Module):
    """Base class of context mixers: ``forward(x [B,T,D], pad_mask [B,T]) -> [B,T,D]``."""

    d_model: int
    #: True when the mixer implements ``forward_chunked`` and the step API.
    streamable: bool = False

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Mix ``x [B, T, D]`` along time over the real frames of ``pad_mask [B, T]``."""
        raise NotImplementedError

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
    ) -> torch.Tensor:
        """Chunked forward: frame t sees its own chunk and ``left_chunks`` chunks before it."""
        raise NotImplementedError(f"{type(self).__name__} has no streaming mode")

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Any:
        """Empty streaming state for :meth:`forward_step`."""
        raise NotImplementedError(f"{type(self).__name__} has no streaming mode")

    def forward_step(
        self, x: torch.Tensor, pad_mask: torch.Tensor, state: Any, left_chunks: int | None
    ) -> tuple[torch.Tensor, Any]:
        """Process one chunk ``x [B, C, D]``; returns the chunk's output and the new state."""
        raise NotImplementedError(f"{type(self).__name__} has no streaming mode")
