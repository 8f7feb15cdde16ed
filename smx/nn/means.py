"""Means over the real frames of padded sequences: whole, chunked, exponentially decayed.

Every function takes ``values`` and a ``pad_mask`` (bool, True = real frame), ignores the
values at padded frames whatever they are, and gives finite results for rows without any
real frame: the count of real frames is clamped at 1, so such a mean is 0. None of them
forms a ``T x T`` matrix: they are linear in ``T``. These are the summaries of
SummaryMixing (:mod:`smx.nn.mixers.summary_mixing`; docs/algorithm.md, "SummaryMixing" and
"Streaming and dynamic chunk training").

Precision: sums, scans and divisions run in float32 at least, also under bf16/fp16
autocast, and so do the results (:func:`float32_at_least` of the input dtype): a bf16
input gives a float32 mean, which the caller casts back where it feeds low-precision
layers. Float32 and float64 inputs keep their dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Frames per block of the exponential scans of :func:`decayed_mean`: cost O(T * block * F).
SCAN_BLOCK = 64


def float32_at_least(dtype: torch.dtype) -> torch.dtype:
    """The dtype the means compute and return in: ``dtype``, or float32 when narrower.

    Example
    -------
    >>> float32_at_least(torch.bfloat16), float32_at_least(torch.float64)
    (torch.float32, torch.float64)
    """
    return torch.promote_types(dtype, torch.float32)


def masked_mean(
    values: torch.Tensor, pad_mask: torch.Tensor, keepdim: bool = False
) -> torch.Tensor:
    """Mean of ``values`` over the real entries of ``pad_mask``, per utterance.

    ``pad_mask`` covers the leading axes of ``values``: the mean runs over every axis of the
    mask after the batch one (``[B, T]``: over time; ``[B, T, F]``: over time and features)
    and keeps the axes after the mask.

    Arguments
    ---------
    values : torch.Tensor
        ``[B, T, *F]``; values at padded entries are ignored, whatever they are.
    pad_mask : torch.Tensor
        ``[B, T]`` (or ``[B, T, F1, ...]``, a prefix of the shape of ``values``) bool,
        True = real entry.
    keepdim : bool
        Keep the averaged axes with size 1, as in :meth:`torch.Tensor.sum`.

    Returns
    -------
    torch.Tensor
        ``[B, *F]`` for a ``[B, T]`` mask (``[B, 1, *F]`` with ``keepdim``); 0 for a row
        without any real entry. Summed and returned in float32 at least.

    Example
    -------
    >>> values = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])
    >>> pad_mask = torch.tensor([[True, True, False], [False, False, False]])
    >>> masked_mean(values, pad_mask).tolist()  # (1 + 3) / 2; no real frame: 0
    [[2.0], [0.0]]
    >>> masked_mean(values, pad_mask, keepdim=True).shape
    torch.Size([2, 1, 1])
    """
    axes = tuple(range(1, pad_mask.dim()))
    keep = pad_mask.reshape(*pad_mask.shape, *[1] * (values.dim() - pad_mask.dim()))
    dtype = float32_at_least(values.dtype)
    total = values.masked_fill(~keep, 0).sum(axes, keepdim=keepdim, dtype=dtype)  # [B, *F]
    count = keep.sum(axes, keepdim=keepdim).clamp(min=1)  # [B, 1...]
    return total / count  # [B, *F]


def _window_sum(per_chunk: torch.Tensor, left_chunks: int | None) -> torch.Tensor:
    """Sum of chunks ``c - left_chunks .. c`` for every chunk ``c`` of ``per_chunk [B, N, F]``."""
    prefix = per_chunk.cumsum(1)  # [B, N, F] chunks 0..c
    n = per_chunk.shape[1]
    if left_chunks is None or left_chunks + 1 >= n:
        return prefix
    before = F.pad(prefix[:, : n - left_chunks - 1], (0, 0, left_chunks + 1, 0))  # 0..c-L-1
    return prefix - before  # [B, N, F]


def chunked_mean(
    values: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
) -> torch.Tensor:
    """Mean of every chunk's visible real frames: its own chunk and ``left_chunks`` before it.

    Chunk ``c`` covers frames ``c*C .. c*C + C - 1``; its mean runs over the real frames of
    chunks ``max(0, c - L) .. c`` (``L = None``: all previous chunks). Linear time: chunk sums,
    then window sums as differences of prefix sums taken in float64, so that the difference
    of two large prefix sums loses nothing on long inputs.

    Arguments
    ---------
    values, pad_mask : torch.Tensor
        ``[B, T, F]`` and its ``[B, T]`` bool mask, True = real frame.
    chunk_size, left_chunks : int, int or None
        Frames per chunk ``C >= 1`` and previous chunks visible ``L >= 0`` (None = all).

    Returns
    -------
    torch.Tensor
        ``[B, N, F]`` with ``N = ceil(T / C)``, in the dtype of ``values`` or float32 when
        that is narrower.

    Example
    -------
    >>> values = torch.tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]]])
    >>> pad_mask = torch.ones(1, 5, dtype=torch.bool)
    >>> chunked_mean(values, pad_mask, chunk_size=2, left_chunks=None).flatten().tolist()
    [1.5, 2.5, 3.0]
    >>> chunked_mean(values, pad_mask, chunk_size=2, left_chunks=0).flatten().tolist()
    [1.5, 3.5, 5.0]
    """
    batch, time, features = values.shape
    n = -(-time // chunk_size)
    pad = n * chunk_size - time
    total = F.pad(values.masked_fill(~pad_mask.unsqueeze(-1), 0), (0, 0, 0, pad))  # [B, N*C, F]
    count = F.pad(pad_mask, (0, pad))  # [B, N*C]
    chunk_total = total.view(batch, n, chunk_size, features).sum(2, dtype=torch.float64)  # [B,N,F]
    chunk_count = count.view(batch, n, chunk_size).sum(2, dtype=torch.float64)  # [B, N]
    window_total = _window_sum(chunk_total, left_chunks)  # [B, N, F]
    window_count = _window_sum(chunk_count.unsqueeze(-1), left_chunks)  # [B, N, 1]
    mean = window_total / window_count.clamp(min=1)  # [B, N, F] float64
    return mean.to(float32_at_least(values.dtype))


def _ema_scan(values: torch.Tensor, decay: torch.Tensor, block: int) -> torch.Tensor:
    """``h_t = decay * h_{t-1} + v_t`` (``h_{-1} = 0``) over time for ``values [B, T, F]``.

    Inside blocks of ``K`` frames the scan is one matmul with the ``K x K`` lower-triangular
    matrix ``decay^(t - j)``; the state entering every block is the same scan, with decay
    ``decay^K``, over the block ends (recursively). Cost O(T * K * F). Runs in the dtype of
    ``values``: call it outside autocast (the matmuls would run in bf16 there).
    """
    batch, time, features = values.shape
    size = min(block, time)
    n = -(-time // size)
    blocks = F.pad(values, (0, 0, 0, n * size - time)).view(batch, n, size, features)  # [B,N,K,F]
    step = torch.arange(size, device=values.device)
    lag = step[:, None] - step[None, :]  # [K, K] t - j
    within = torch.where(lag >= 0, decay ** lag.clamp(min=0), 0.0).to(values.dtype)  # [K, K]
    scanned = torch.einsum("tj,bnjf->bntf", within, blocks)  # [B, N, K, F] scans inside blocks
    if n > 1:
        ends = _ema_scan(scanned[:, :, -1], decay**size, block)  # [B, N, F] state at block ends
        entering = F.pad(ends[:, :-1], (0, 0, 1, 0))  # [B, N, F] state before each block
        carry = (decay ** (step + 1)).to(values.dtype)  # [K] decay^(k+1)
        scanned = scanned + carry[:, None] * entering.unsqueeze(2)  # [B, N, K, F]
    return scanned.reshape(batch, n * size, features)[:, :time]  # [B, T, F]


def decayed_mean(
    values: torch.Tensor,
    pad_mask: torch.Tensor,
    decay: float | torch.Tensor,
    block: int = SCAN_BLOCK,
) -> torch.Tensor:
    """Two-sided exponentially weighted mean over real frames, for every frame, in linear time.

    ``out_t = sum_j decay^|t-j| m_j v_j / sum_j decay^|t-j| m_j`` (denominator clamped at 1,
    which changes nothing on real frames since their own weight is 1). The two-sided sum is a
    forward scan plus a backward scan minus the frame itself; scans run in blocks of
    ``block`` frames (see ``_ema_scan``), in float32 at least even under autocast.

    Arguments
    ---------
    values, pad_mask : torch.Tensor
        ``[B, T, F]`` and its ``[B, T]`` bool mask, True = real frame.
    decay : float or torch.Tensor
        Decay per frame, in ``(0, 1)``.
    block : int
        Frames per block of the scans.

    Returns
    -------
    torch.Tensor
        ``[B, T, F]``, in float32 at least.

    Example
    -------
    >>> values = torch.tensor([[[0.0], [4.0], [9.0]]])
    >>> pad_mask = torch.tensor([[True, True, False]])
    >>> mean = decayed_mean(values, pad_mask, decay=0.5)  # weights 1 (itself), 0.5 (neighbour)
    >>> [round(v, 4) for v in mean[0, :2, 0].tolist()]  # (0 + 0.5*4)/1.5, (0.5*0 + 4)/1.5
    [1.3333, 2.6667]
    """
    keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
    dtype = float32_at_least(values.dtype)
    weighted = torch.cat([values.masked_fill(~keep, 0), keep.to(values.dtype)], dim=-1)
    weighted = weighted.to(dtype)  # [B, T, F + 1] real values, then the real-frame count
    decay = torch.as_tensor(decay, dtype=dtype, device=values.device)
    with torch.autocast(values.device.type, enabled=False):  # the scans' matmuls in `dtype`
        past = _ema_scan(weighted, decay, block)  # [B, T, F+1] frames j <= t
        future = _ema_scan(weighted.flip(1), decay, block).flip(1)  # [B, T, F+1] j >= t
    both = past + future - weighted  # [B, T, F + 1] frame t counted once
    total, count = both[..., :-1], both[..., -1:]
    return total / count.clamp(min=1)  # [B, T, F]
