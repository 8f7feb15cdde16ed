"""Depthwise convolutions of the Conformer and Branchformer blocks, with a streaming mode.

Three ways to run the same depthwise convolution over time (docs/algorithm.md, "Streaming
and dynamic chunk training"):

* offline: ``'same'`` padding, every frame sees ``(k-1)/2`` frames on each side;
* dynamic chunk convolution (``forward_chunked``): the time axis is cut into chunks of
  ``chunk_size`` frames; a frame sees ``(k-1)/2`` frames to its left, also from earlier
  chunks, but nothing beyond the end of its own chunk (zeros there);
* stateful steps (``init_state`` / ``forward_step``): one chunk at a time with a cache of the
  last ``(k-1)/2`` input frames, equal to ``forward_chunked`` chunk by chunk.

Padded frames (``pad_mask`` False) are zeroed before the convolution, so they never reach
real frames, and the modules zero their outputs there.

Offline, the ``(k-1)/2`` frames beyond each end of an utterance are zeros
(``padding="zeros"``) or the utterance's own frames mirrored at that end, the edge frame not
repeated (``padding="reflect"``, SpeechBrain's ``Conv1d``, which the Branchformer's CSGU
uses): each row of a padded batch is reflected at its own last real frame, so it gives what
the utterance alone gives. The chunked and step modes always fill with zeros: a chunk's
future is unknown, and the dynamic chunk convolution masks it with zeros whatever the
offline padding.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from smx.nn.activations import ActivationName
from smx.nn.activations import activation as make_activation
from smx.nn.base import check_chunking, check_mixer_input

ConvPadding = Literal["zeros", "reflect"]


def reflect_index(lengths: torch.Tensor, length: int, context: int) -> torch.Tensor:
    """Where each frame of a row padded by ``context`` frames on both sides comes from.

    Position ``t`` in ``[-p, T + p)`` of row ``b`` (``p = context``, ``L = lengths[b]``) reads
    frame ``|t|`` mirrored again at ``L - 1``: ``-1 -> 1``, ``L -> L - 2`` (the edge frame is
    not repeated, as ``F.pad(mode="reflect")`` of the row alone). The result is clamped into
    ``[0, max(L - 1, 0)]``, so rows shorter than ``p + 1`` frames (which ``F.pad`` refuses)
    and the positions past ``L + p`` (whose outputs are padding) still read a real frame.

    Arguments
    ---------
    lengths : torch.Tensor
        ``[B]`` real frames per row.
    length : int
        ``T``, the padded length.
    context : int
        ``p``, frames added on each side.

    Returns
    -------
    torch.Tensor
        ``[B, T + 2p]`` long, on the device of ``lengths``.

    Example
    -------
    >>> reflect_index(torch.tensor([4, 3]), 4, 2).tolist()
    [[2, 1, 0, 1, 2, 3, 2, 1], [2, 1, 0, 1, 2, 1, 0, 0]]
    """
    time = torch.arange(-context, length + context, device=lengths.device).abs()  # [T + 2p]
    last = (lengths - 1).clamp(min=0)[:, None]  # [B, 1]
    mirrored = torch.where(time[None, :] > last, 2 * last - time[None, :], time[None, :])
    return torch.minimum(mirrored.clamp(min=0), last)  # [B, T + 2p]


def _check_kernel_size(kernel_size: int, name: str) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"{name}: kernel_size must be an odd integer >= 1 ('same' padding), got {kernel_size!r}"
        )


class DepthwiseConv1d(nn.Module):
    """Depthwise ``'same'`` convolution over time on ``[B, T, C]`` with chunked and step modes.

    Arguments
    ---------
    channels : int
        Number of channels ``C`` (one kernel per channel).
    kernel_size : int
        Odd kernel width ``k``; the left context cached for streaming is ``(k-1)/2`` frames.
    bias : bool
        Learn a per-channel bias.
    padding : str
        Offline padding beyond each utterance's ends: ``"zeros"`` or ``"reflect"`` (see the
        module docstring; the chunked and step modes use zeros).

    Example
    -------
    >>> conv = DepthwiseConv1d(4, kernel_size=3)
    >>> x, pad_mask = torch.randn(2, 7, 4), torch.ones(2, 7, dtype=torch.bool)
    >>> conv(x, pad_mask).shape
    torch.Size([2, 7, 4])
    >>> state = conv.init_state(2, x.device, x.dtype)
    >>> y0, state = conv.forward_step(x[:, :4], pad_mask[:, :4], state)
    >>> y1, state = conv.forward_step(x[:, 4:], pad_mask[:, 4:], state)
    >>> torch.allclose(torch.cat([y0, y1], 1), conv.forward_chunked(x, pad_mask, 4), atol=1e-6)
    True
    """

    def __init__(
        self, channels: int, kernel_size: int, bias: bool = True, padding: ConvPadding = "zeros"
    ) -> None:
        super().__init__()
        _check_kernel_size(kernel_size, type(self).__name__)
        if padding not in ("zeros", "reflect"):
            raise ValueError(
                f"{type(self).__name__}: padding must be 'zeros' or 'reflect', got {padding!r}"
            )
        self.channels = channels
        self.kernel_size = kernel_size
        self.padding = padding
        self.context = (kernel_size - 1) // 2
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Valid convolution of channel-first ``x [N, C, L]`` -> ``[N, C, L - k + 1]``."""
        return F.conv1d(x, self.conv.weight, self.conv.bias, groups=self.channels)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Offline convolution: ``x [B, T, C]``, ``pad_mask [B, T]`` -> ``[B, T, C]``."""
        check_mixer_input(x, pad_mask, self.channels, type(self).__name__)
        x = x.masked_fill(~pad_mask[..., None], 0.0)  # [B, T, C]
        if self.padding == "reflect":
            index = reflect_index(pad_mask.sum(1), x.shape[1], self.context)  # [B, T + k - 1]
            x = x.gather(1, index[..., None].expand(-1, -1, self.channels))  # [B, T + k - 1, C]
            return self._convolve(x.transpose(1, 2)).transpose(1, 2)  # [B, T, C]
        x = F.pad(x.transpose(1, 2), (self.context, self.context))  # [B, C, T + k - 1]
        return self._convolve(x).transpose(1, 2)  # [B, T, C]

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        """Dynamic chunk convolution: no frame sees beyond the end of its chunk.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, C]``.
        pad_mask : torch.Tensor
            ``[B, T]`` bool, True = real frame.
        chunk_size : int
            Frames per chunk (>= 1); chunk ``c`` covers frames ``[c·C, (c+1)·C)``.

        Returns
        -------
        torch.Tensor
            ``[B, T, C]``.
        """
        name = type(self).__name__
        check_mixer_input(x, pad_mask, self.channels, name)
        check_chunking(chunk_size, None, name)
        batch, length, channels = x.shape
        n_chunks = math.ceil(length / chunk_size)
        x = x.masked_fill(~pad_mask[..., None], 0.0).transpose(1, 2)  # [B, C, T]
        # left context of the first chunk, and the last chunk completed to chunk_size frames
        x = F.pad(x, (self.context, n_chunks * chunk_size - length))  # [B, C, p + N·C]
        windows = x.unfold(-1, chunk_size + self.context, chunk_size)  # [B, C, N, p + C]
        windows = F.pad(windows, (0, self.context))  # [B, C, N, C + 2p]: zeros after each chunk
        windows = windows.transpose(1, 2).reshape(batch * n_chunks, channels, -1)
        y = self._convolve(windows)  # [B·N, C, chunk]
        y = y.reshape(batch, n_chunks, channels, chunk_size).transpose(1, 2)  # [B, C, N, chunk]
        return y.reshape(batch, channels, n_chunks * chunk_size)[..., :length].transpose(1, 2)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Empty cache of the last ``(k-1)/2`` input frames: zeros ``[B, (k-1)/2, C]``."""
        return torch.zeros(batch_size, self.context, self.channels, device=device, dtype=dtype)

    def forward_step(
        self, x: torch.Tensor, pad_mask: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolve one chunk ``x [B, C', C]`` given the cache; return ``(y [B, C', C], cache)``."""
        check_mixer_input(x, pad_mask, self.channels, type(self).__name__)
        x = x.masked_fill(~pad_mask[..., None], 0.0)  # [B, C', C]
        context = torch.cat([state, x], dim=1)  # [B, p + C', C]
        window = F.pad(context.transpose(1, 2), (0, self.context))  # [B, C, p + C' + p]
        y = self._convolve(window).transpose(1, 2)  # [B, C', C]
        return y, context[:, context.shape[1] - self.context :]


class ConvModule(nn.Module):
    """Conformer convolution module (docs/algorithm.md, "Where the cell sits").

    ``LN -> pointwise Linear(D, 2D) -> GLU -> depthwise conv (k, 'same') -> LN -> act ->
    Linear(D, D) -> Dropout``. The pointwise convolution is written as a Linear over the
    feature axis (the same map). SpeechBrain's LayerNorm after the depthwise convolution
    replaces the BatchNorm of the Conformer paper. Padded frames are zeroed before the
    depthwise convolution and in the output.

    Arguments
    ---------
    d_model : int
        Input and output size ``D``.
    kernel_size : int
        Odd depthwise kernel width (31 in SpeechBrain's recipes).
    dropout : float
        Dropout on the output.
    activation : str
        Activation after the second LayerNorm (Swish in SpeechBrain's Conformer).

    Example
    -------
    >>> conv = ConvModule(8, kernel_size=3, dropout=0.0)
    >>> x = torch.randn(2, 6, 8)
    >>> pad_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    >>> y = conv(x, pad_mask)
    >>> y.shape, bool((y[1, 4:] == 0).all())
    (torch.Size([2, 6, 8]), True)
    """

    def __init__(
        self,
        d_model: int,
        kernel_size: int = 31,
        dropout: float = 0.1,
        activation: ActivationName = "swish",
    ) -> None:
        super().__init__()
        _check_kernel_size(kernel_size, type(self).__name__)
        self.d_model = d_model
        self.norm = nn.LayerNorm(d_model)
        self.pointwise = nn.Linear(d_model, 2 * d_model)
        self.glu = nn.GLU(dim=-1)
        self.depthwise = DepthwiseConv1d(d_model, kernel_size)
        self.conv_norm = nn.LayerNorm(d_model)
        self.activation = make_activation(activation)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def _gate(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        check_mixer_input(x, pad_mask, self.d_model, type(self).__name__)
        return self.glu(self.pointwise(self.norm(x)))  # [B, T, D]

    def _finish(self, u: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.out(self.activation(self.conv_norm(u))))  # [B, T, D]
        return y.masked_fill(~pad_mask[..., None], 0.0)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Offline: ``x [B, T, D]``, ``pad_mask [B, T]`` -> ``[B, T, D]``."""
        u = self._gate(x, pad_mask)  # [B, T, D]
        return self._finish(self.depthwise(u, pad_mask), pad_mask)

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        """Dynamic chunk convolution (see :meth:`DepthwiseConv1d.forward_chunked`)."""
        u = self._gate(x, pad_mask)  # [B, T, D]
        return self._finish(self.depthwise.forward_chunked(u, pad_mask, chunk_size), pad_mask)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Cache of the last ``(k-1)/2`` depthwise inputs (after the GLU): ``[B, (k-1)/2, D]``."""
        return self.depthwise.init_state(batch_size, device, dtype)

    def forward_step(
        self, x: torch.Tensor, pad_mask: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk ``x [B, C, D]`` -> ``(y [B, C, D], new cache)``."""
        u = self._gate(x, pad_mask)  # [B, C, D]
        u, state = self.depthwise.forward_step(u, pad_mask, state)
        return self._finish(u, pad_mask), state


class CSGU(nn.Module):
    """Convolutional spatial gating unit of the Branchformer cgMLP branch.

    The channels are split in halves ``(z1, z2)``; ``z2 <- depthwise_conv(LN(z2))`` with
    kernel ``k``, ``'same'`` padding, bias initialised to 1 and no activation; the output is
    ``Dropout(z1 * z2)``, zero on padded frames.

    Arguments
    ---------
    channels : int
        Input size ``U`` (even); the output has ``U/2`` channels.
    kernel_size : int
        Odd depthwise kernel width (31 in SpeechBrain's recipes).
    dropout : float
        Dropout on the gated output.
    padding : str
        Offline padding of the depthwise convolution, ``"zeros"`` or ``"reflect"``
        (SpeechBrain's CSGU reflects; see :class:`DepthwiseConv1d`).

    Example
    -------
    >>> csgu = CSGU(8, kernel_size=3)
    >>> csgu(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)).shape
    torch.Size([2, 5, 4])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 31,
        dropout: float = 0.0,
        padding: ConvPadding = "zeros",
    ) -> None:
        super().__init__()
        _check_kernel_size(kernel_size, type(self).__name__)
        if channels % 2:
            raise ValueError(f"CSGU: channels must be even (split in halves), got {channels}")
        self.channels = channels
        half = channels // 2
        self.norm = nn.LayerNorm(half)
        self.conv = DepthwiseConv1d(half, kernel_size, padding=padding)
        nn.init.ones_(self.conv.conv.bias)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor, pad_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_mixer_input(x, pad_mask, self.channels, type(self).__name__)
        gate, z = x.chunk(2, dim=-1)  # 2 x [B, T, U/2]
        return gate, self.norm(z)

    def _finish(self, gate: torch.Tensor, z: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return self.dropout(gate * z).masked_fill(~pad_mask[..., None], 0.0)  # [B, T, U/2]

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Offline: ``x [B, T, U]``, ``pad_mask [B, T]`` -> ``[B, T, U/2]``."""
        gate, z = self._split(x, pad_mask)
        return self._finish(gate, self.conv(z, pad_mask), pad_mask)

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        """Dynamic chunk convolution version of :meth:`forward`."""
        gate, z = self._split(x, pad_mask)
        return self._finish(gate, self.conv.forward_chunked(z, pad_mask, chunk_size), pad_mask)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Cache of the last ``(k-1)/2`` normalised ``z2`` frames: ``[B, (k-1)/2, U/2]``."""
        return self.conv.init_state(batch_size, device, dtype)

    def forward_step(
        self, x: torch.Tensor, pad_mask: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk ``x [B, C, U]`` -> ``(y [B, C, U/2], new cache)``."""
        gate, z = self._split(x, pad_mask)
        z, state = self.conv.forward_step(z, pad_mask, state)
        return self._finish(gate, z, pad_mask), state
