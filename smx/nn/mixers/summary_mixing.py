"""SummaryMixing: a linear-time replacement for self-attention (reference §1).

Every frame is transformed locally, all real frames are averaged into one summary vector,
and a combiner merges the two per frame. With ``x [B, T, D]``, the keep mask
``m_t = pad_mask[:, t]`` (True = real frame) and ``act`` the activation:

- ``local_t   = LN_l( m_t * f(x_t) )``              ``f``: MLP ``D -> local_hidden -> local_out``
- ``summary   = LN_s( sum_t m_t s(x_t) / max(sum_t m_t, 1) )``
  ``s``: MLP ``D -> summary_hidden -> D``
- ``y_t       = act( W_c [local_t ; summary] + b_c )`` on real frames, ``0`` on padded ones.

``f`` and ``s`` are :class:`~smx.nn.linear.MLP` s of head-split linears whose every layer,
the last one included, is followed by ``act``; heads never mix inside them. The combiner
``W_c = [W_cl | W_cs]`` is split into its local and summary column blocks, so that its
summary half ``W_cs summary + b_c`` is computed once per utterance (once per chunk when
chunked) and added to ``W_cl local_t`` by broadcasting.

Modes
-----
``full``
    The cell above (LayerNorms optional, dropout on the combiner input).
``lite``
    No local branch, no combiner: ``y_t = summary`` for every real frame (``s`` ends with the
    activation), no LayerNorm, no dropout. Only useful next to another branch supplying local
    information (Branchformer).
``fast``
    One fused projection ``act(Linear(D -> 2 * local_out))`` split into the local half and the
    summary half (summary size = ``local_out``), masked mean of the summary half, combiner
    ``act(Linear(2 * local_out -> D))``, dropout, no LayerNorm, no heads.
``expdecay``
    As ``full``, but frame ``t`` gets its own two-sided exponentially weighted summary
    ``sum_j decay^|t-j| m_j s(x_j) / sum_j decay^|t-j| m_j``, computed with two linear-time
    scans (a forward and a backward exponential moving average) instead of a ``T x T`` matrix.
    No streaming mode.

Streaming (``full``, ``lite``, ``fast``): :meth:`SummaryMixing.forward_chunked` lets frame
``t`` of chunk ``c = t // C`` summarise the real frames of chunks ``max(0, c - L) .. c``
(its whole chunk, never a later chunk), computed from chunk sums and prefix sums in linear
time (reference §1.9); :meth:`SummaryMixing.forward_step` produces the same outputs one chunk
at a time from a running state, at a cost per chunk that does not grow with the position.

Activation checkpointing
------------------------
With ``activation_checkpointing=True`` the offline and chunked forwards do not keep the
cell's intermediate activations for the backward pass (the two MLPs' hidden and output
frames, the LayerNorm input, the combiner's input and pre-activation: about nine
``[B, T, D]`` tensors per layer at the benchmarks' sizes); only ``x`` is kept and the cell is
run again during the backward pass (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant,
same dropout masks). The cell is linear in ``T``, so the recomputation costs one more cell
forward. Only while training with gradients enabled; outputs and gradients are unchanged.

Differences from the reference implementation
---------------------------------------------
- One mask convention, ``pad_mask`` True = real frame (the reference mixes both polarities,
  reference §1.4).
- Pad-aware denominators everywhere: chunked and ``expdecay`` summaries divide by the
  (weighted) number of *real* frames; the reference counts padded frames of the window.
  All-padding rows give finite outputs (the count is clamped at 1).
- Chunked summaries (chunk sums + prefix sums) and ``expdecay`` (two scans) are linear in
  ``T``; the reference multiplies by a ``T x T`` matrix. Streaming keeps running sums rather
  than re-processing the left context.
- Initialisation: head-split linears use a per-head fan-in and zero biases (see
  :class:`~smx.nn.linear.BlockLinear`), so the scale does not depend on ``heads``; the
  combiner keeps ``nn.Linear``'s default weight with a zero bias; LayerNorms ``gamma = 1``,
  ``beta = 0``.
- The summary half of the combiner is computed once per utterance (or chunk), never
  broadcast to ``[B, T, D_s]`` nor concatenated; dropout on it therefore draws one mask per
  utterance (or chunk) instead of one per frame.
- Padded frames of the output are zero (the reference leaves the LayerNorm bias there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from smx.nn.activations import ActivationName
from smx.nn.activations import activation as make_activation
from smx.nn.base import Mixer, check_chunking, check_mixer_input
from smx.nn.linear import MLP

Mode = Literal["full", "lite", "fast", "expdecay"]
MODES: tuple[str, ...] = ("full", "lite", "fast", "expdecay")

#: Frames per block of the ``expdecay`` scans: cost O(T * EXPDECAY_BLOCK * D).
EXPDECAY_BLOCK = 64

#: ``(values [B, T, F], pad_mask [B, T]) -> (summary [B, G, F], frames per group)``: one
#: summary per group of consecutive frames (G = 1 offline, one per chunk, one per frame).
Summarize = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]


# --------------------------------------------------------------------------- summaries


def masked_mean(values: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real frames of every utterance (0 for an all-padding row).

    Arguments
    ---------
    values : torch.Tensor
        ``[B, T, F]``; values at padded frames are ignored, whatever they are.
    pad_mask : torch.Tensor
        ``[B, T]`` bool, True = real frame.

    Returns
    -------
    torch.Tensor
        ``[B, F]``.

    Example
    -------
    >>> values = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])
    >>> pad_mask = torch.tensor([[True, True, False], [False, False, False]])
    >>> masked_mean(values, pad_mask).tolist()
    [[2.0], [0.0]]
    """
    keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
    total = values.masked_fill(~keep, 0).sum(1)  # [B, F]
    count = keep.sum(1).clamp(min=1)  # [B, 1]
    return total / count  # [B, F]


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
    then window sums as differences of prefix sums taken in float64 (no cancellation for long
    inputs). Never forms a ``T x T`` matrix.

    Arguments
    ---------
    values : torch.Tensor
        ``[B, T, F]``.
    pad_mask : torch.Tensor
        ``[B, T]`` bool, True = real frame.
    chunk_size : int
        Frames per chunk ``C >= 1``.
    left_chunks : int or None
        Previous chunks visible ``L >= 0``; None = all of them.

    Returns
    -------
    torch.Tensor
        ``[B, N, F]`` with ``N = ceil(T / C)``, in the dtype of ``values``.

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
    return (window_total / window_count.clamp(min=1)).to(values.dtype)  # [B, N, F]


def _ema_scan(values: torch.Tensor, decay: torch.Tensor, block: int) -> torch.Tensor:
    """``h_t = decay * h_{t-1} + v_t`` (``h_{-1} = 0``) over time for ``values [B, T, F]``.

    Inside blocks of ``K`` frames the scan is one matmul with the ``K x K`` lower-triangular
    matrix ``decay^(t - j)``; the state entering every block is the same scan, with decay
    ``decay^K``, over the block ends (recursively). Cost O(T * K * F).
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
    block: int = EXPDECAY_BLOCK,
) -> torch.Tensor:
    """Two-sided exponentially weighted mean over real frames, for every frame, in linear time.

    ``out_t = sum_j decay^|t-j| m_j v_j / sum_j decay^|t-j| m_j`` (denominator clamped at 1,
    which changes nothing on real frames since their own weight is 1). The two-sided sum is a
    forward scan plus a backward scan minus the frame itself; scans run in blocks of
    ``block`` frames (see ``_ema_scan``), in float32 at least. Never forms a ``T x T`` matrix.

    Arguments
    ---------
    values : torch.Tensor
        ``[B, T, F]``.
    pad_mask : torch.Tensor
        ``[B, T]`` bool, True = real frame.
    decay : float or torch.Tensor
        Decay per frame, in ``(0, 1)``.
    block : int
        Frames per block of the scans.

    Returns
    -------
    torch.Tensor
        ``[B, T, F]``.

    Example
    -------
    >>> values = torch.tensor([[[0.0], [4.0], [9.0]]])
    >>> pad_mask = torch.tensor([[True, True, False]])
    >>> mean = decayed_mean(values, pad_mask, decay=0.5)  # weights 1 (itself), 0.5 (neighbour)
    >>> [round(v, 4) for v in mean[0, :2, 0].tolist()]  # (0 + 0.5*4)/1.5, (0.5*0 + 4)/1.5
    [1.3333, 2.6667]
    """
    keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
    dtype = torch.promote_types(values.dtype, torch.float32)
    weighted = torch.cat([values.masked_fill(~keep, 0), keep.to(values.dtype)], dim=-1)
    weighted = weighted.to(dtype)  # [B, T, F + 1] real values, then the real-frame count
    decay = torch.as_tensor(decay, dtype=dtype, device=values.device)
    past = _ema_scan(weighted, decay, block)  # [B, T, F+1] frames j <= t
    future = _ema_scan(weighted.flip(1), decay, block).flip(1)  # [B, T, F+1] frames j >= t
    both = past + future - weighted  # [B, T, F + 1] frame t counted once
    total, count = both[..., :-1], both[..., -1:]
    return (total / count.clamp(min=1)).to(values.dtype)  # [B, T, F]


def _global_summary(values: torch.Tensor, pad_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    return masked_mean(values, pad_mask).unsqueeze(1), values.shape[1]  # [B, 1, F], T


def _chunked_summary(
    values: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
) -> tuple[torch.Tensor, int]:
    return chunked_mean(values, pad_mask, chunk_size, left_chunks), chunk_size  # [B, N, F], C


def _decayed_summary(
    values: torch.Tensor, pad_mask: torch.Tensor, decay: torch.Tensor
) -> tuple[torch.Tensor, int]:
    return decayed_mean(values, pad_mask, decay), 1  # [B, T, F], 1


def _groups_to_frames(per_group: torch.Tensor, group: int, time: int) -> torch.Tensor:
    """Repeat every row of ``per_group [B, G, F]`` for its ``group`` frames -> ``[B, T, F]``."""
    batch, groups, features = per_group.shape
    frames = per_group.unsqueeze(2).expand(batch, groups, group, features)  # [B, G, group, F]
    return frames.reshape(batch, groups * group, features)[:, :time]  # [B, T, F]


def _add_per_group(frames: torch.Tensor, per_group: torch.Tensor, group: int) -> torch.Tensor:
    """``frames [B, T, F] + per_group [B, G, F]``, row g added to its ``group`` frames."""
    batch, time, features = frames.shape
    groups = per_group.shape[1]
    if groups * group != time:  # the last chunk is partial
        frames = F.pad(frames, (0, 0, 0, groups * group - time))
    out = frames.reshape(batch, groups, group, features) + per_group.unsqueeze(2)  # [B,G,g,F]
    return out.reshape(batch, groups * group, features)[:, :time]  # [B, T, F]


# --------------------------------------------------------------------------- streaming state


@dataclass
class SummaryMixingState:
    """Running sums of the summary inputs of the chunks already streamed (float64).

    ``total``/``count`` cover every previous chunk (used with ``left_chunks=None``);
    ``chunk_totals``/``chunk_counts`` hold the per-chunk sums of the last
    ``K <= left_chunks`` chunks (a ring buffer, empty for ``left_chunks`` None or 0).

    Arguments
    ---------
    total : torch.Tensor
        ``[B, Ds]`` sum of ``s(x)`` over the real frames of every previous chunk.
    count : torch.Tensor
        ``[B]`` number of those frames.
    chunk_totals : torch.Tensor
        ``[B, K, Ds]`` per-chunk sums, oldest first.
    chunk_counts : torch.Tensor
        ``[B, K]`` per-chunk real-frame counts.

    Example
    -------
    >>> state = SummaryMixing(8, local_hidden=[8], local_out=8, summary_hidden=[8]).init_state(
    ...     2, torch.device("cpu"), torch.float32)
    >>> state.total.shape, state.chunk_totals.shape
    (torch.Size([2, 8]), torch.Size([2, 0, 8]))
    """

    total: torch.Tensor
    count: torch.Tensor
    chunk_totals: torch.Tensor
    chunk_counts: torch.Tensor


def _last(per_chunk: torch.Tensor, n: int) -> torch.Tensor:
    """The last ``n`` entries along dim 1 (all of them when fewer; none when ``n = 0``)."""
    return per_chunk[:, max(per_chunk.shape[1] - n, 0) :]


def _step_summary(
    values: torch.Tensor, pad_mask: torch.Tensor, state: SummaryMixingState, left: int | None
) -> tuple[torch.Tensor, SummaryMixingState]:
    """Summary of one chunk ``values [B, C, F]`` from the state -> ``([B, 1, F], new state)``."""
    chunk_total = values.masked_fill(~pad_mask.unsqueeze(-1), 0).sum(1, dtype=torch.float64)
    chunk_count = pad_mask.sum(1, dtype=torch.float64)  # [B]
    if left is None:
        window_total = state.total + chunk_total  # [B, F]
        window_count = state.count + chunk_count  # [B]
    else:
        window_total = _last(state.chunk_totals, left).sum(1) + chunk_total  # [B, F]
        window_count = _last(state.chunk_counts, left).sum(1) + chunk_count  # [B]
    kept = 0 if left is None else left
    new_state = SummaryMixingState(
        total=state.total + chunk_total,
        count=state.count + chunk_count,
        chunk_totals=_last(torch.cat([state.chunk_totals, chunk_total.unsqueeze(1)], 1), kept),
        chunk_counts=_last(torch.cat([state.chunk_counts, chunk_count.unsqueeze(1)], 1), kept),
    )
    summary = window_total / window_count.clamp(min=1).unsqueeze(-1)  # [B, F]
    return summary.to(values.dtype).unsqueeze(1), new_state  # [B, 1, F]


# --------------------------------------------------------------------------- the cell


def _check_arguments(
    d_model: int,
    mode: str,
    local_hidden: Sequence[int],
    local_out: int,
    summary_hidden: Sequence[int],
    heads: int,
    dropout: float,
    decay: float,
) -> None:
    name = "SummaryMixing"
    if mode not in MODES:
        raise ValueError(f"{name}: mode must be one of {list(MODES)}, got {mode!r}")
    if not isinstance(heads, int) or heads < 1:
        raise ValueError(f"{name}: heads must be an integer >= 1, got {heads!r}")
    if mode == "fast" and heads != 1:
        raise ValueError(f"{name}: fast mode uses no heads; set heads=1 (got heads={heads})")
    sizes = [("d_model", d_model)]
    if mode in ("full", "expdecay"):
        sizes += [(f"local_hidden[{i}]", size) for i, size in enumerate(local_hidden)]
    if mode != "lite":
        sizes.append(("local_out", local_out))
    if mode != "fast":
        sizes += [(f"summary_hidden[{i}]", size) for i, size in enumerate(summary_hidden)]
    for arg, size in sizes:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{name}: {arg} must be an integer >= 1, got {size!r}")
        if size % heads:
            raise ValueError(f"{name}: {arg}={size} must be divisible by heads={heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    if not 0.0 < decay < 1.0:
        raise ValueError(f"{name}: decay must be in (0, 1), got {decay!r}")


class SummaryMixing(Mixer):
    """SummaryMixing cell: per-frame local MLP, mean summary over real frames, combiner.

    See the module docstring for the equations, the four modes and the differences from the
    reference implementation.

    Arguments
    ---------
    d_model : int
        Input and output size ``D`` (the summary size of ``full``, ``lite``, ``expdecay``).
    mode : str
        ``"full"``, ``"lite"``, ``"fast"`` or ``"expdecay"``.
    local_hidden : Sequence[int]
        Hidden sizes of the local MLP ``f`` (``full``, ``expdecay``).
    local_out : int
        Output size of ``f``; in ``fast`` the size of each half of the fused projection.
    summary_hidden : Sequence[int]
        Hidden sizes of the summary MLP ``s`` (``full``, ``lite``, ``expdecay``).
    heads : int
        Heads of the MLPs; every size must be divisible by it. Must be 1 in ``fast``.
    use_layernorm : bool
        LayerNorm on the local output and on the summary (``full``, ``expdecay``).
    dropout : float
        Dropout on the combiner input (not used in ``lite``).
    activation : str
        ``"swish"``, ``"gelu"`` or ``"relu"``; follows every linear layer.
    decay : float
        Per-frame decay of ``expdecay`` in ``(0, 1)``; a fixed buffer, not trained.
    activation_checkpointing : bool
        In training, recompute the cell in the backward pass instead of storing its
        activations (see the module docstring); outputs and gradients are unchanged.

    Example
    -------
    >>> mixer = SummaryMixing(16, local_hidden=[32], local_out=16, summary_hidden=[32], heads=4)
    >>> x, pad_mask = torch.randn(2, 10, 16), torch.ones(2, 10, dtype=torch.bool)
    >>> pad_mask[1, 6:] = False
    >>> y = mixer(x, pad_mask)
    >>> y.shape, bool((y[1, 6:] == 0).all())
    (torch.Size([2, 10, 16]), True)
    >>> mixer.forward_chunked(x, pad_mask, chunk_size=4, left_chunks=1).shape
    torch.Size([2, 10, 16])
    >>> state = mixer.eval().init_state(2, x.device, x.dtype)
    >>> y0, state = mixer.forward_step(x[:, :4], pad_mask[:, :4], state, left_chunks=1)
    >>> y0.shape
    torch.Size([2, 4, 16])
    """

    def __init__(
        self,
        d_model: int,
        mode: Mode = "full",
        local_hidden: Sequence[int] = (512,),
        local_out: int = 512,
        summary_hidden: Sequence[int] = (512,),
        heads: int = 1,
        use_layernorm: bool = True,
        dropout: float = 0.1,
        activation: ActivationName = "swish",
        decay: float = 0.995,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        _check_arguments(
            d_model, mode, local_hidden, local_out, summary_hidden, heads, dropout, decay
        )
        self.d_model = d_model
        self.mode = mode
        self.heads = heads
        self.activation_checkpointing = activation_checkpointing
        self.streamable = mode != "expdecay"
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout)
        if mode in ("full", "expdecay"):
            self.local_mlp = MLP(d_model, local_hidden, local_out, heads, activation)
            self.summary_mlp = MLP(d_model, summary_hidden, d_model, heads, activation)
            norm = use_layernorm
            self.local_norm = nn.LayerNorm(local_out) if norm else nn.Identity()
            self.summary_norm = nn.LayerNorm(d_model) if norm else nn.Identity()
            self.combiner = nn.Linear(local_out + d_model, d_model)
            self.summary_size = d_model
        elif mode == "lite":
            self.summary_mlp = MLP(d_model, summary_hidden, d_model, heads, activation)
            self.summary_size = d_model
        else:  # fast
            self.projection = MLP(d_model, (), 2 * local_out, 1, activation)
            self.combiner = nn.Linear(2 * local_out, d_model)
            self.summary_size = local_out
        if mode == "expdecay":  # config, not state: rebuilt from the arguments, not saved
            self.register_buffer("decay", torch.tensor(decay), persistent=False)
        if hasattr(self, "combiner"):
            nn.init.zeros_(self.combiner.bias)

    def extra_repr(self) -> str:
        ckpt = ", activation_checkpointing=True" if self.activation_checkpointing else ""
        return f"d_model={self.d_model}, mode={self.mode!r}, heads={self.heads}{ckpt}"

    # ---- the cells: one per mode; ``summarize`` decides offline / chunked / step / expdecay

    def _full(self, x: torch.Tensor, pad_mask: torch.Tensor, summarize: Summarize) -> torch.Tensor:
        """full, expdecay: ``act(W_cl LN_l(m f(x)) + W_cs LN_s(summary) + b)``."""
        keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
        local = self.local_norm(self.local_mlp(x).masked_fill(~keep, 0))  # [B, T, Dl]
        summary, group = summarize(self.summary_mlp(x), pad_mask)  # [B, G, D]
        return self._combine(local, self.summary_norm(summary), group)  # [B, T, D]

    def _fast(self, x: torch.Tensor, pad_mask: torch.Tensor, summarize: Summarize) -> torch.Tensor:
        """fast: ``[local ; values] = act(W x + b)``, then combine local and the mean of values."""
        local, values = self.projection(x).chunk(2, dim=-1)  # [B, T, Dl] each
        local = local.masked_fill(~pad_mask.unsqueeze(-1), 0)  # [B, T, Dl]
        summary, group = summarize(values, pad_mask)  # [B, G, Dl]
        return self._combine(local, summary, group)  # [B, T, D]

    def _lite(self, x: torch.Tensor, pad_mask: torch.Tensor, summarize: Summarize) -> torch.Tensor:
        """lite: every frame receives the summary."""
        summary, group = summarize(self.summary_mlp(x), pad_mask)  # [B, G, D]
        return _groups_to_frames(summary, group, x.shape[1])  # [B, T, D]

    def _combine(self, local: torch.Tensor, summary: torch.Tensor, group: int) -> torch.Tensor:
        """``act(W_cl local_t + W_cs summary_g + b)``; the summary half once per group."""
        w_local, w_summary = self.combiner.weight.split([local.shape[-1], summary.shape[-1]], 1)
        per_frame = F.linear(self.dropout(local), w_local)  # [B, T, D]
        per_group = F.linear(self.dropout(summary), w_summary, self.combiner.bias)  # [B, G, D]
        return self.activation(_add_per_group(per_frame, per_group, group))  # [B, T, D]

    def _cell(self, x: torch.Tensor, pad_mask: torch.Tensor, summarize: Summarize) -> torch.Tensor:
        cells = {"full": self._full, "expdecay": self._full, "fast": self._fast, "lite": self._lite}
        y = cells[self.mode](x, pad_mask, summarize)  # [B, T, D]
        return y.masked_fill(~pad_mask.unsqueeze(-1), 0)  # padded frames are zero

    def _run_cell(
        self, x: torch.Tensor, pad_mask: torch.Tensor, summarize: Summarize
    ) -> torch.Tensor:
        """The cell, recomputed in the backward pass when checkpointing while training."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._cell, x, pad_mask, summarize, use_reentrant=False)
        return self._cell(x, pad_mask, summarize)  # [B, T, D]

    # ---- the public entry points

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Offline forward over the whole utterance.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, D]``.
        pad_mask : torch.Tensor
            ``[B, T]`` bool, True = real frame.

        Returns
        -------
        torch.Tensor
            ``[B, T, D]``, zero on padded frames.
        """
        check_mixer_input(x, pad_mask, self.d_model, "SummaryMixing")
        if self.mode == "expdecay":
            return self._run_cell(x, pad_mask, partial(_decayed_summary, decay=self.decay))
        return self._run_cell(x, pad_mask, _global_summary)

    def _check_streamable(self) -> None:
        if not self.streamable:
            raise ValueError(
                f"SummaryMixing: mode {self.mode!r} has no streaming mode; "
                "use 'full', 'lite' or 'fast'"
            )

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
    ) -> torch.Tensor:
        """Chunked forward: frame t of chunk ``c = t // C`` summarises chunks ``c - L .. c``.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, D]``.
        pad_mask : torch.Tensor
            ``[B, T]`` bool, True = real frame.
        chunk_size : int
            Frames per chunk ``C >= 1``.
        left_chunks : int or None
            Visible previous chunks ``L >= 0``; None = all of them.

        Returns
        -------
        torch.Tensor
            ``[B, T, D]``, zero on padded frames. Linear in ``T``.
        """
        self._check_streamable()
        check_mixer_input(x, pad_mask, self.d_model, "SummaryMixing")
        check_chunking(chunk_size, left_chunks, "SummaryMixing")
        summarize = partial(_chunked_summary, chunk_size=chunk_size, left_chunks=left_chunks)
        return self._run_cell(x, pad_mask, summarize)

    def init_state(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> SummaryMixingState:
        """Empty streaming state (accumulators in float64 whatever ``dtype``: they are tiny).

        Arguments
        ---------
        batch_size : int
            ``B``.
        device : torch.device
            Device of the activations.
        dtype : torch.dtype
            Dtype of the activations (the accumulators are float64).
        """
        self._check_streamable()
        acc = {"device": device, "dtype": torch.float64}
        return SummaryMixingState(
            total=torch.zeros(batch_size, self.summary_size, **acc),
            count=torch.zeros(batch_size, **acc),
            chunk_totals=torch.zeros(batch_size, 0, self.summary_size, **acc),
            chunk_counts=torch.zeros(batch_size, 0, **acc),
        )

    def forward_step(
        self,
        x: torch.Tensor,
        pad_mask: torch.Tensor,
        state: SummaryMixingState,
        left_chunks: int | None,
    ) -> tuple[torch.Tensor, SummaryMixingState]:
        """Process the next chunk; equals :meth:`forward_chunked` with ``chunk_size = C``.

        Use the same ``left_chunks`` for every chunk of a stream. The cost per chunk does not
        depend on the position in the utterance.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, C, D]``: the next chunk (the last one may be shorter).
        pad_mask : torch.Tensor
            ``[B, C]`` bool, True = real frame.
        state : SummaryMixingState
            From :meth:`init_state` or the previous call (not modified).
        left_chunks : int or None
            Visible previous chunks ``L >= 0``; None = all of them.

        Returns
        -------
        tuple[torch.Tensor, SummaryMixingState]
            The chunk's output ``[B, C, D]`` and the new state.
        """
        self._check_streamable()
        check_mixer_input(x, pad_mask, self.d_model, "SummaryMixing")
        check_chunking(x.shape[1], left_chunks, "SummaryMixing")
        new_state = state

        def summarize(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
            nonlocal new_state
            summary, new_state = _step_summary(values, mask, state, left_chunks)
            return summary, values.shape[1]  # [B, 1, F], C

        y = self._cell(x, pad_mask, summarize)  # [B, C, D]
        return y, new_state
