"""SummaryMixing: a linear-time replacement for self-attention (arXiv 2307.07421).

Every frame is transformed locally, all real frames are averaged into one summary vector,
and a combiner merges the two per frame (docs/algorithm.md, "SummaryMixing"). With
``x [B, T, D]``, the keep mask ``m_t = pad_mask[:, t]`` (True = real frame) and ``act`` the
activation:

- ``local_t   = LN_l( m_t * f(x_t) )``              ``f``: MLP ``D -> local_hidden -> local_out``
- ``summary   = LN_s( sum_t m_t s(x_t) / max(sum_t m_t, 1) )``
  ``s``: MLP ``D -> summary_hidden -> D``
- ``y_t       = act( W_c [local_t ; summary] + b_c )`` on real frames, ``0`` on padded ones.

``f`` and ``s`` are :class:`~smx.nn.linear.MLP` s of head-split linears whose every layer,
the last one included, is followed by ``act``; heads never mix inside them. The combiner
``W_c = [W_cl | W_cs]`` is split into its local and summary column blocks, so that its
summary half ``W_cs summary + b_c`` is computed once per utterance (once per chunk when
chunked) and added to ``W_cl local_t`` by broadcasting. The offline forward
(``SummaryMixing._offline``) reads as these three lines; the means are in :mod:`smx.nn.means`.

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

See docs/algorithm.md, "Modes".

Streaming (``full``, ``lite``, ``fast``; arXiv 2409.07165): :meth:`SummaryMixing.forward_chunked`
lets frame ``t`` of chunk ``c = t // C`` summarise the real frames of chunks
``max(0, c - L) .. c`` (its whole chunk, never a later chunk), computed from chunk sums and
prefix sums in linear time; :meth:`SummaryMixing.forward_step` produces the same outputs one
chunk at a time from a running state, at a cost per chunk that does not grow with the
position (docs/algorithm.md, "Streaming and dynamic chunk training").

Precision
---------
Under bf16 autocast (``train.precision: bf16``) the MLPs and the combiner run in bf16, but the
summary means (:mod:`smx.nn.means`) sum, scan and divide in float32 and ``LN_s`` runs on the
float32 mean; the normalised summary is cast back to the activations' dtype before the
combiner. In float32 nothing is cast.

Recomputation
-------------
With ``recompute="activations"`` (the default of :class:`smx.config.SummaryMixingCfg`) the
offline and chunked forwards keep, for the backward pass, only the cell's input and the
outputs of its matrix products (the four MLP layers' and the combiner's); the cheap
element-wise results (activations, masks, the LayerNorm output, the means) are recomputed
from them in the backward pass (:func:`torch.utils.checkpoint.checkpoint` with a selective
policy, :func:`keep_matmul_outputs`; same dropout masks). No matrix product runs twice.
Only while training with gradients enabled: in inference and in streaming
(:meth:`SummaryMixing.forward_step`) the setting is ignored and the outputs are the same.

With ``activation_checkpointing=True`` the offline and chunked forwards do not keep the
cell's intermediate activations for the backward pass (the two MLPs' hidden and output
frames, the LayerNorm input, the combiner's input and pre-activation: about nine
``[B, T, D]`` tensors per layer at the benchmarks' sizes); only ``x`` is kept and the cell is
run again during the backward pass (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant,
same dropout masks). The cell is linear in ``T``, so the recomputation costs one more cell
forward. Only while training with gradients enabled; outputs and gradients are unchanged.
It takes precedence over ``recompute``.

Differences from SpeechBrain's implementation
---------------------------------------------
See also docs/algorithm.md, "Differences from the SpeechBrain implementation".

- One mask convention, ``pad_mask`` True = real frame (SpeechBrain's implementation uses both
  polarities in different branches; docs/algorithm.md, "Padding and masks").
- Pad-aware denominators everywhere: chunked and ``expdecay`` summaries divide by the
  (weighted) number of *real* frames; SpeechBrain's implementation counts the padded frames
  of the window. All-padding rows give finite outputs (the count is clamped at 1).
- Chunked summaries (chunk sums + prefix sums) and ``expdecay`` (two scans) are linear in
  ``T``; SpeechBrain's implementation multiplies by a ``T x T`` matrix. Streaming keeps
  running sums rather than re-processing the left context.
- Initialisation: head-split linears use a per-head fan-in and zero biases (see
  :class:`~smx.nn.linear.BlockLinear`), so the scale does not depend on ``heads``; the
  combiner keeps ``nn.Linear``'s default weight with a zero bias; LayerNorms ``gamma = 1``,
  ``beta = 0``.
- The summary half of the combiner is computed once per utterance (or chunk), never
  broadcast to ``[B, T, D_s]`` nor concatenated; dropout on it therefore draws one mask per
  utterance (or chunk) instead of one per frame.
- Padded frames of the output are zero (SpeechBrain's implementation leaves the LayerNorm
  bias there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

from smx.nn.activations import ActivationName
from smx.nn.activations import activation as make_activation
from smx.nn.base import Mixer, check_chunking, check_mixer_input
from smx.nn.linear import MLP
from smx.nn.means import chunked_mean, decayed_mean, float32_at_least, masked_mean

Mode = Literal["full", "lite", "fast", "expdecay"]
MODES: tuple[str, ...] = ("full", "lite", "fast", "expdecay")
Recompute = Literal["none", "activations"]
RECOMPUTE: tuple[str, ...] = ("none", "activations")

#: The matrix products whose outputs ``recompute="activations"`` keeps for the backward.
_MATMULS = frozenset(
    {
        torch.ops.aten.mm.default,
        torch.ops.aten.addmm.default,
        torch.ops.aten.bmm.default,
        torch.ops.aten.baddbmm.default,
    }
)


def _keep_matmuls(ctx: object, op: object, *args: object, **kwargs: object) -> CheckpointPolicy:
    """Save the outputs of matrix products, recompute everything else."""
    return CheckpointPolicy.MUST_SAVE if op in _MATMULS else CheckpointPolicy.PREFER_RECOMPUTE


def keep_matmul_outputs() -> tuple[object, object]:
    """The ``context_fn`` of a selective checkpoint that keeps only matrix products' outputs.

    Example
    -------
    >>> x = torch.randn(4, 3, requires_grad=True)
    >>> y = checkpoint(lambda t: torch.tanh(t @ t.T), x, use_reentrant=False,
    ...                context_fn=keep_matmul_outputs)
    >>> y.sum().backward(); x.grad.shape
    torch.Size([4, 3])
    """
    return create_selective_checkpoint_contexts(_keep_matmuls)


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


def _without_cast_cache(cell: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``cell`` run with autocast's weight-cast cache off (where autocast is on).

    A selective checkpoint replays the forward's operators one for one. Autocast casts a
    weight once per autocast region and reuses the copy; a weight already cast before the
    cell (by an earlier forward in the same region) would be cast in the recomputation but
    not in the forward. Without the cache both cast alike, to the same values.
    """

    def run(x: torch.Tensor, *rest: torch.Tensor | int | None) -> torch.Tensor:
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return cell(x, *rest)
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, dtype=dtype, cache_enabled=False):
            return cell(x, *rest)

    return run


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
    """Summary of one chunk ``values [B, C, F]`` from the state -> ``([B, 1, F], new state)``.

    The summary is in float32 at least, as the means of :mod:`smx.nn.means`.
    """
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
    return summary.to(float32_at_least(values.dtype)).unsqueeze(1), new_state  # [B, 1, F]


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


# --------------------------------------------------------------------------- the cell


class SummaryMixing(Mixer):
    """SummaryMixing cell: per-frame local MLP, mean summary over real frames, combiner.

    See the module docstring for the equations, the four modes and the differences from
    SpeechBrain's implementation.

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
    recompute : str
        ``"activations"``: in training, keep only the input and the matrix products'
        outputs and recompute the element-wise rest in the backward pass; ``"none"``: keep
        everything autograd saves (see the module docstring). Outputs are unchanged.

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
        recompute: Recompute = "none",
    ) -> None:
        super().__init__()
        _check_arguments(
            d_model, mode, local_hidden, local_out, summary_hidden, heads, dropout, decay
        )
        if recompute not in RECOMPUTE:
            raise ValueError(
                f"SummaryMixing: recompute must be one of {list(RECOMPUTE)}, got {recompute!r}"
            )
        self.recompute = recompute
        self.d_model = d_model
        self.mode = mode
        self.heads = heads
        self.activation_checkpointing = activation_checkpointing
        self.streamable = mode != "expdecay"
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.summary_size = local_out if mode == "fast" else d_model
        if mode in ("full", "expdecay"):
            self.local_mlp = MLP(d_model, local_hidden, local_out, heads, activation)
            self.summary_mlp = MLP(d_model, summary_hidden, d_model, heads, activation)
            self.local_norm = nn.LayerNorm(local_out) if use_layernorm else nn.Identity()
            self.summary_norm = nn.LayerNorm(d_model) if use_layernorm else nn.Identity()
            self.combiner = nn.Linear(local_out + d_model, d_model)
        elif mode == "lite":
            self.summary_mlp = MLP(d_model, summary_hidden, d_model, heads, activation)
            self.summary_norm = nn.Identity()
        else:  # fast
            self.projection = MLP(d_model, (), 2 * local_out, 1, activation)
            self.combiner = nn.Linear(2 * local_out, d_model)
            self.summary_norm = nn.Identity()
        if mode == "expdecay":  # config, not state: rebuilt from the arguments, not saved
            self.register_buffer("decay", torch.tensor(decay), persistent=False)
        if hasattr(self, "combiner"):
            nn.init.zeros_(self.combiner.bias)

    def extra_repr(self) -> str:
        ckpt = ", activation_checkpointing=True" if self.activation_checkpointing else ""
        ckpt += f", recompute={self.recompute!r}" if self.recompute != "none" else ""
        return f"d_model={self.d_model}, mode={self.mode!r}, heads={self.heads}{ckpt}"

    # ---- offline: the equations of the module docstring

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
        return self._checkpointed(self._offline, x, pad_mask)

    def _offline(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Local branch, summary over the whole utterance (per frame in expdecay), combiner."""
        keep = pad_mask.unsqueeze(-1)  # [B, T, 1] m_t
        # local_t = LN_l(m_t f(x_t)) [B, T, Dl]; summary inputs s(x_t) [B, T, Ds]
        local, summary_in = self._branches(x, keep)
        if self.mode == "expdecay":  # sum_j decay^|t-j| m_j s(x_j) / sum_j decay^|t-j| m_j
            summary = decayed_mean(summary_in, pad_mask, self.decay)  # [B, T, Ds]
            frames_per_summary = 1
        else:  # sum_t m_t s(x_t) / sum_t m_t
            summary = masked_mean(summary_in, pad_mask, keepdim=True)  # [B, 1, Ds]
            frames_per_summary = x.shape[1]
        summary = self._normed(summary, summary_in.dtype)  # LN_s(summary)
        return self._combine(local, summary, frames_per_summary, keep)  # act(W_c [l; s] + b_c)

    def _branches(
        self, x: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``local_t = LN_l(m_t f(x_t))`` (None in lite) and the summary inputs ``s(x_t)``."""
        if self.mode == "lite":
            return None, self.summary_mlp(x)  # -, [B, T, D]
        if self.mode == "fast":  # one fused projection: [local ; summary inputs]
            local, summary_in = self.projection(x).chunk(2, dim=-1)  # [B, T, Dl] each
            return local.masked_fill(~keep, 0), summary_in
        local = self.local_norm(self.local_mlp(x).masked_fill(~keep, 0))  # [B, T, Dl]
        return local, self.summary_mlp(x)  # [B, T, Dl], [B, T, D]

    def _normed(self, summary: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``LN_s(summary)`` on the float32 mean, in ``dtype`` (the summary inputs') after it.

        Under bf16 autocast the mean and its LayerNorm stay float32 (a bf16 mean would lose
        the small differences between channels that ``LN_s`` magnifies); the combiner and
        the output get the activations' dtype back. Without autocast nothing is cast.
        """
        return self.summary_norm(summary).to(dtype)

    def _combine(
        self,
        local: torch.Tensor | None,
        summary: torch.Tensor,
        frames_per_summary: int,
        keep: torch.Tensor,
    ) -> torch.Tensor:
        """``y_t = act(W_cl local_t + W_cs summary_g + b_c)``, zero on padded frames.

        ``summary [B, G, Ds]`` has one row per group of ``frames_per_summary`` consecutive
        frames (an utterance, a chunk or a frame); the summary half of the combiner runs once
        per row. In ``lite`` (no local branch) every frame receives its summary row.
        """
        if local is None:
            y = _groups_to_frames(summary, frames_per_summary, keep.shape[1])  # [B, T, D]
            return y.masked_fill(~keep, 0)
        w_local, w_summary = self.combiner.weight.split([local.shape[-1], summary.shape[-1]], 1)
        per_frame = F.linear(self.dropout(local), w_local)  # [B, T, D]
        per_group = F.linear(self.dropout(summary), w_summary, self.combiner.bias)  # [B, G, D]
        y = self.activation(_add_per_group(per_frame, per_group, frames_per_summary))  # [B,T,D]
        return y.masked_fill(~keep, 0)  # padded frames are zero

    def _checkpointed(
        self, cell: Callable[..., torch.Tensor], *args: torch.Tensor | int | None
    ) -> torch.Tensor:
        """``cell(*args)``, wholly or partly recomputed in the backward pass while training.

        Outside training with gradients (inference, frozen features) neither setting applies.
        """
        if not (self.training and torch.is_grad_enabled()):
            return cell(*args)
        if self.activation_checkpointing:
            return checkpoint(cell, *args, use_reentrant=False)
        if self.recompute == "activations":
            cell = _without_cast_cache(cell)
            return checkpoint(cell, *args, use_reentrant=False, context_fn=keep_matmul_outputs)
        return cell(*args)

    # ---- streaming

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
        return self._checkpointed(self._chunked, x, pad_mask, chunk_size, left_chunks)

    def _chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
    ) -> torch.Tensor:
        """The cell with one summary per chunk, over the chunk and its visible left chunks."""
        keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
        local, summary_in = self._branches(x, keep)  # [B, T, Dl], [B, T, Ds]
        summary = chunked_mean(summary_in, pad_mask, chunk_size, left_chunks)  # [B, N, Ds]
        summary = self._normed(summary, summary_in.dtype)  # LN_s(summary) [B, N, Ds]
        return self._combine(local, summary, chunk_size, keep)  # [B, T, D]

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

        Returns
        -------
        SummaryMixingState
            Zero sums over no chunk.
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
        keep = pad_mask.unsqueeze(-1)  # [B, C, 1]
        local, summary_in = self._branches(x, keep)  # [B, C, Dl], [B, C, Ds]
        summary, new_state = _step_summary(summary_in, pad_mask, state, left_chunks)  # [B,1,Ds]
        y = self._combine(local, self._normed(summary, summary_in.dtype), x.shape[1], keep)
        return y, new_state
