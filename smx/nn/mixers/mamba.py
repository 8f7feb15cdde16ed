"""Bidirectional Mamba: two selective state-space scans, forward and backward.

One direction (the Mamba block of Gu & Dao, arXiv 2312.00752; docs/algorithm.md, "Other
mixers") on ``u [B, T, D]``, with
``D_in = expand * D``, ``N = d_state`` and ``R = dt_rank``:

1. ``[x, z] = W_in u``                                    (``D -> 2 D_in``, no bias)
2. ``x <- SiLU(causal depthwise Conv1d(x))``             (kernel ``d_conv``, with bias)
3. ``[delta, B, C] = W_x x``                              (``D_in -> R + 2N``, no bias);
   ``Delta = softplus(W_dt delta + b_dt)``               (``R -> D_in``)
4. ``A = -exp(A_log)``; per channel ``h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t``,
   ``y_t = C_t . h_t + D x_t``
5. ``out_t = W_out (y_t * SiLU(z_t))``                   (``D_in -> D``, no bias)

The selective scan (step 4) runs in pure PyTorch (:func:`selective_scan`): chunks of
``chunk_size`` steps are scanned in parallel, the state ``[B, D_in, N]`` is carried from
chunk to chunk. On a CUDA tensor, when the optional ``mamba_ssm`` package imports, its fused
``selective_scan_fn`` kernel is used instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from smx.nn.base import Mixer, check_mixer_input

#: Steps per chunk of the parallel scan (memory O(B * chunk * D_in * N) per chunk).
SCAN_CHUNK = 32

#: Range of the initial ``Delta = softplus(b_dt)``, sampled log-uniformly, and its floor.
DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 0.1, 1e-4


@functools.cache
def _cuda_selective_scan() -> Callable[..., torch.Tensor] | None:
    """mamba_ssm's fused CUDA scan, or None when the package is missing or does not load."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError, RuntimeError):
        return None
    return selective_scan_fn


def _scan_chunk(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scan one chunk of ``K`` steps from ``state [B, D_in, N]`` -> ``(y [B, K, D_in], state)``.

    ``h_t = a_t h_{t-1} + b_t`` is an associative recurrence: the pairs compose as
    ``(a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2)``. A Hillis-Steele scan composes every
    step with the ``1, 2, 4, ...`` steps before it, so after ``log2 K`` rounds ``decay_t``
    holds ``prod_{s<=t} a_s`` and ``drive_t`` the state reached from zero; only products of
    decays in ``[0, 1]`` and sums appear, so no exponent can overflow, whatever ``Delta``.
    """
    decay = torch.exp(delta.unsqueeze(-1) * A)  # [B, K, D_in, N] a_t = exp(Delta_t A)
    drive = (delta * x).unsqueeze(-1) * B.unsqueeze(2)  # [B, K, D_in, N] b_t = Delta_t B_t x_t
    steps = 1
    while steps < x.shape[1]:  # compose step t with the ``steps`` steps before it
        later = torch.addcmul(drive[:, steps:], decay[:, steps:], drive[:, :-steps])
        drive = torch.cat([drive[:, :steps], later], dim=1)  # [B, K, D_in, N]
        decay = torch.cat([decay[:, :steps], decay[:, steps:] * decay[:, :-steps]], dim=1)
        steps *= 2
    states = drive + decay * state.unsqueeze(1)  # [B, K, D_in, N] h_t
    y = torch.einsum("bkdn,bkn->bkd", states, C)  # [B, K, D_in] C_t . h_t
    return y, states[:, -1]


def selective_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    chunk_size: int = SCAN_CHUNK,
) -> torch.Tensor:
    """Selective scan ``h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t``, ``y_t = C_t h_t + D x_t``.

    The sequence is cut into chunks of ``chunk_size`` steps; inside a chunk all steps are
    computed at once by a log-depth parallel scan (see ``_scan_chunk``), and the state
    ``[B, D_in, N]`` entering the next chunk is carried by a loop over ``T / chunk_size``
    chunks. A closed form ``sum_s exp(S_t - S_s) b_s`` over cumulative sums ``S`` of
    ``Delta A`` would need a ``[K, K, D_in, N]`` tensor per chunk, or overflow for large
    ``Delta`` once factored as ``exp(S_t) * cumsum(exp(-S_s) b_s)``; the log-depth scan needs
    neither. Memory stays at one chunk's ``[B, chunk_size, D_in, N]`` (see ``_scan_chunks``).
    Computed in float32 at least; ``h_0 = 0``.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, T, D_in]`` input.
    delta : torch.Tensor
        ``[B, T, D_in]`` step sizes ``Delta > 0``.
    A : torch.Tensor
        ``[D_in, N]`` state matrix (diagonal per channel, negative).
    B : torch.Tensor
        ``[B, T, N]`` input matrices.
    C : torch.Tensor
        ``[B, T, N]`` output matrices.
    D : torch.Tensor
        ``[D_in]`` skip weights.
    chunk_size : int
        Steps per chunk ``>= 1``.

    Returns
    -------
    torch.Tensor
        ``[B, T, D_in]`` in the dtype of ``x``.

    Example
    -------
    >>> x, delta = torch.ones(1, 3, 1), torch.full((1, 3, 1), math.log(2.0))
    >>> A, B, C, D = -torch.ones(1, 1), torch.ones(1, 3, 1), torch.ones(1, 3, 1), torch.zeros(1)
    >>> y = selective_scan(x, delta, A, B, C, D, chunk_size=2)  # h_t = h_{t-1} / 2 + log 2
    >>> [round(v, 4) for v in (y.flatten() / math.log(2.0)).tolist()]
    [1.0, 1.5, 1.75]
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"selective_scan: chunk_size must be an integer >= 1, got {chunk_size!r}")
    dtype = torch.promote_types(x.dtype, torch.float32)
    xs, deltas, Bs, Cs = (t.to(dtype).contiguous() for t in (x, delta, B, C))  # dense chunks
    y = _scan_chunks(xs, deltas, A.to(dtype), Bs, Cs, chunk_size)  # [B, T, D_in] C_t . h_t
    return (y + D.to(dtype) * xs).to(x.dtype)


def _scan_chunks(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
) -> torch.Tensor:
    """``C_t . h_t`` for ``x [B, T, D_in]``, one chunk after the other from ``h_0 = 0``.

    When gradients are needed every chunk is checkpointed (recomputed in the backward pass),
    so the whole ``[B, T, D_in, N]`` state is never stored.
    """
    batch, time, channels = x.shape
    state = x.new_zeros(batch, channels, A.shape[-1])  # [B, D_in, N]
    remember = torch.is_grad_enabled() and any(t.requires_grad for t in (x, delta, A, B, C))
    outputs = []
    for start in range(0, time, chunk_size):
        part = slice(start, start + chunk_size)
        args = (x[:, part], delta[:, part], A, B[:, part], C[:, part], state)
        if remember:
            y, state = checkpoint(_scan_chunk, *args, use_reentrant=False)
        else:
            y, state = _scan_chunk(*args)
        outputs.append(y)  # [B, K, D_in]
    return torch.cat(outputs, dim=1) if outputs else x.new_zeros(batch, 0, channels)  # [B,T,D_in]


def _mark_no_weight_decay(parameter: nn.Parameter) -> nn.Parameter:
    parameter._no_weight_decay = True  # type: ignore[attr-defined]
    return parameter


class Mamba(nn.Module):
    """One causal Mamba direction ``[B, T, D] -> [B, T, D]`` (no mask: see :class:`BiMamba`).

    Initialisation as mamba_ssm's defaults: ``A_log = log(1..N)`` for every
    channel, ``D = 1`` (both tagged ``_no_weight_decay``), ``W_dt`` uniform in
    ``±R^(-1/2)``, ``b_dt`` such that ``softplus(b_dt)`` is log-uniform in ``[1e-3, 0.1]``
    (floor ``1e-4``); other layers keep PyTorch's default initialisation.

    Arguments
    ---------
    d_model : int
        ``D``.
    d_state : int
        ``N``.
    d_conv : int
        Kernel of the causal depthwise convolution.
    expand : int
        ``D_in = expand * D``.
    dt_rank : int
        ``R``.
    scan_chunk : int
        Steps per chunk of :func:`selective_scan`.

    Example
    -------
    >>> Mamba(8, d_state=4, d_conv=3, expand=2, dt_rank=2)(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        d_model: int,
        d_state: int,
        d_conv: int,
        expand: int,
        dt_rank: int,
        scan_chunk: int = SCAN_CHUNK,
    ) -> None:
        super().__init__()
        inner = expand * d_model
        self.d_model, self.d_state, self.d_inner, self.dt_rank = d_model, d_state, inner, dt_rank
        self.scan_chunk = scan_chunk
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner)
        self.out_proj = nn.Linear(inner, d_model, bias=False)
        log_a = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(inner, 1)
        self.A_log = _mark_no_weight_decay(nn.Parameter(log_a))  # [D_in, N]
        self.D = _mark_no_weight_decay(nn.Parameter(torch.ones(inner)))  # [D_in]
        self._init_dt()

    def _init_dt(self) -> None:
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        log_dt = torch.empty(self.d_inner).uniform_(math.log(DT_MIN), math.log(DT_MAX))
        dt = log_dt.exp().clamp(min=DT_FLOOR)  # [D_in] target softplus(b_dt)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, d_inner={self.d_inner}"

    def _scan(
        self,
        x: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
    ) -> torch.Tensor:
        """Selective scan: the fused CUDA kernel when available, else :func:`selective_scan`."""
        kernel = _cuda_selective_scan() if x.is_cuda else None
        if kernel is None:
            return selective_scan(x, delta, A, B, C, self.D, self.scan_chunk)
        channels_first = (t.to(x.dtype).transpose(1, 2).contiguous() for t in (x, delta, B, C))
        x_cf, delta_cf, b_cf, c_cf = channels_first  # [B, D_in | N, T]
        return kernel(x_cf, delta_cf, A, b_cf, c_cf, self.D.float()).transpose(1, 2)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u [B, T, D] -> [B, T, D]``; frame ``t`` depends on frames ``<= t`` only."""
        time = u.shape[1]
        x, z = self.in_proj(u).chunk(2, dim=-1)  # [B, T, D_in] each
        x = self.conv(x.transpose(1, 2))[..., :time]  # [B, D_in, T] causal: trim the lookahead
        x = F.silu(x).transpose(1, 2)  # [B, T, D_in]
        delta, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(delta).float())  # [B, T, D_in]
        A = -torch.exp(self.A_log.float())  # [D_in, N]
        y = self._scan(x, delta, A, B, C)  # [B, T, D_in]
        return self.out_proj(y.to(z.dtype) * F.silu(z))  # [B, T, D]


def real_first_order(pad_mask: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Per row, the frame indices with the real frames first (in time order or reversed).

    Padded frames follow, in time order. For a row of length ``n`` padded at the end this is
    the identity, or ``t -> n - 1 - t`` on the real part when ``reverse``.

    Arguments
    ---------
    pad_mask : torch.Tensor
        ``[B, T]`` bool, True = real frame.
    reverse : bool
        Order the real frames from last to first.

    Returns
    -------
    torch.Tensor
        ``[B, T]`` long, a permutation of ``0 .. T-1`` per row.

    Example
    -------
    >>> real_first_order(torch.tensor([[True, True, True, False]]), reverse=True).tolist()
    [[2, 1, 0, 3]]
    >>> real_first_order(torch.tensor([[False, True, False, True]])).tolist()
    [[1, 3, 0, 2]]
    """
    time = pad_mask.shape[1]
    t = torch.arange(time, device=pad_mask.device).expand_as(pad_mask)  # [B, T]
    real_key = time - 1 - t if reverse else t
    return torch.where(pad_mask, real_key, time + t).argsort(dim=1)  # [B, T]


def _permute(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Frames of ``x [B, T, D]`` taken in ``order [B, T]``."""
    return x.gather(1, order.unsqueeze(-1).expand_as(x))


def _unpermute(y: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_permute`: frame ``p`` of ``y`` goes back to ``order[:, p]``."""
    return torch.zeros_like(y).scatter(1, order.unsqueeze(-1).expand_as(y), y)


class BiMamba(Mixer):
    """Bidirectional Mamba mixer: a forward and a time-reversed Mamba, outputs summed.

    The "add" bidirectional strategy of the BEST-RQ experiments (arXiv 2409.02596): two
    independent :class:`Mamba` modules, one reading the utterance forwards, one backwards
    (its output put back in time order), and ``y = forward + backward``. Linear in ``T``:
    O(T * D_in * N).

    Deliberate differences from the implementation of those experiments (a mamba_ssm
    ``Block``; docs/algorithm.md, "Other mixers"):

    (a) Padding is honoured. Padded inputs are zeroed and each direction reads the real
        frames of every row as one contiguous sequence, with the padded frames after them:
        the backward direction reverses only the valid part of each row (a per-row gather
        ``t -> len - 1 - t``), so padded frames come after every real frame in *both*
        directions and, the scans being causal, never influence a real frame. Real outputs
        do not change when padding is appended (that implementation reversed the whole
        padded row, so the padding, non-zero after the conv bias, was scanned before the
        real frames of shorter utterances). Padded outputs are zero. Padding need not be at
        the end: the real frames are gathered first, in order.
    (b) No RMSNorm and no residual inside the mixer. The host block already provides the
        pre-norm and the residual; that implementation's ``Block`` added its own RMSNorm and
        residual, so the input was effectively added twice.

    Arguments
    ---------
    d_model : int
        ``D``.
    d_state : int
        State size ``N`` per channel.
    d_conv : int
        Kernel of the causal depthwise convolution.
    expand : int
        ``D_in = expand * D``.
    dt_rank : int or None
        Rank ``R`` of the step-size projection; None = ``ceil(D / 16)``.
    scan_chunk : int
        Steps per chunk of the parallel scan.

    Example
    -------
    >>> mixer = BiMamba(16, d_state=4)
    >>> x, pad_mask = torch.randn(2, 10, 16), torch.ones(2, 10, dtype=torch.bool)
    >>> pad_mask[1, 6:] = False
    >>> y = mixer(x, pad_mask)
    >>> y.shape, bool((y[1, 6:] == 0).all()), mixer.forward_mamba.dt_rank
    (torch.Size([2, 10, 16]), True, 1)
    >>> torch.allclose(mixer(x[1:, :6], pad_mask[1:, :6]), y[1:, :6], atol=1e-5)
    True
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        scan_chunk: int = SCAN_CHUNK,
    ) -> None:
        super().__init__()
        sizes = {"d_model": d_model, "d_state": d_state, "d_conv": d_conv, "expand": expand}
        if dt_rank is not None:
            sizes["dt_rank"] = dt_rank
        sizes["scan_chunk"] = scan_chunk
        for name, size in sizes.items():
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"BiMamba: {name} must be an integer >= 1, got {size!r}")
        rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        self.d_model = d_model
        self.forward_mamba = Mamba(d_model, d_state, d_conv, expand, rank, scan_chunk)
        self.backward_mamba = Mamba(d_model, d_state, d_conv, expand, rank, scan_chunk)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Sum of the forward and backward scans over the real frames.

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
        check_mixer_input(x, pad_mask, self.d_model, "BiMamba")
        keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
        x = x.masked_fill(~keep, 0.0)  # [B, T, D]
        y = x.new_zeros(x.shape)  # [B, T, D]
        for mamba, reverse in ((self.forward_mamba, False), (self.backward_mamba, True)):
            order = real_first_order(pad_mask, reverse)  # [B, T]
            y = y + _unpermute(mamba(_permute(x, order)), order)  # [B, T, D]
        return y.masked_fill(~keep, 0.0)
