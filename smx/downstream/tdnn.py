"""Utterance embedders of the speaker and style probes: x-vector TDNN and ECAPA-TDNN.

Both map frames ``[B, T, D]`` with lengths ``[B]`` to one embedding ``[B, E]``. Padded frames
are zeroed on the way in and after every layer (a layer expects zeros there: its input comes
zeroed from the layer before) and excluded from every pooling, so an utterance's embedding
does not depend on the padding of its batch. Per-frame LayerNorm replaces BatchNorm (it does
not mix frames, padded or not).

- :class:`XVector` (Snyder et al. 2018; MP3S probe 1): 5 TDNN layers with kernels
  (5, 3, 3, 1, 1), dilations (1, 2, 3, 1, 1), the last one 3x wider, then statistics
  pooling (mean and standard deviation) and a linear embedding.
- :class:`Ecapa` (Desplanques et al. 2020; MP3S probe 2): a TDNN layer, three
  SE-Res2Net blocks (dilations 2, 3, 4), multi-layer feature aggregation, attentive
  statistics pooling with global context, and a linear embedding.

Example
-------
>>> x, lengths = torch.randn(2, 30, 12), torch.tensor([30, 17])
>>> XVector(12, channels=16)(x, lengths).shape, Ecapa(12, channels=16)(x, lengths).shape
(torch.Size([2, 16]), torch.Size([2, 16]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from smx.nn.base import lengths_to_mask


def masked_mean_std(
    x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over time of ``x [B, T, C]`` where ``mask [B, T]``.

    Example
    -------
    >>> m, s = masked_mean_std(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([[1, 1, 0]]).bool())
    >>> m.tolist(), [[round(v, 3) for v in row] for row in s.tolist()]
    ([[2.0]], [[1.0]])
    """
    w = mask.to(x.dtype)[..., None]  # [B, T, 1]
    count = w.sum(1).clamp(min=1.0)  # [B, 1]
    mean = (x * w).sum(1) / count  # [B, C]
    var = ((x - mean[:, None]).square() * w).sum(1) / count  # [B, C]
    return mean, (var + eps).sqrt()


class TdnnLayer(nn.Module):
    """Dilated 'same' Conv1d over time, ReLU, LayerNorm; padded frames (zero on input) zeroed.

    Arguments
    ---------
    in_dim : int
        Input channels.
    out_dim : int
        Output channels.
    kernel_size : int
        Frames per convolution window (odd, so that the length is kept).
    dilation : int
        Spacing of those frames.

    Raises
    ------
    ValueError
        When ``kernel_size`` is even.

    Example
    -------
    >>> TdnnLayer(4, 6, kernel_size=3, dilation=2)(torch.randn(1, 9, 4), torch.ones(1, 9).bool()).shape
    torch.Size([1, 9, 6])
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: must be odd for 'same' padding, got {kernel_size}")
        pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, dilation=dilation, padding=pad)
        self.norm = nn.LayerNorm(out_dim)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C_in]`` (zero where not ``mask [B, T]``) -> ``[B, T, C_out]``."""
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)  # [B, T, C_out]
        return self.norm(self.activation(y)).masked_fill(~mask[..., None], 0.0)


class XVector(nn.Module):
    """x-vector TDNN embedder.

    The module docstring has an example.

    Arguments
    ---------
    in_dim : int
        Features per frame.
    channels : int
        Width of the TDNN layers (the last one is 3x wider) and of the embedding.
    kernels : Sequence[int]
        Kernel size of each TDNN layer.
    dilations : Sequence[int]
        Dilation of each TDNN layer.
    """

    def __init__(
        self,
        in_dim: int,
        channels: int,
        kernels: Sequence[int] = (5, 3, 3, 1, 1),
        dilations: Sequence[int] = (1, 2, 3, 1, 1),
    ) -> None:
        super().__init__()
        widths = [channels] * (len(kernels) - 1) + [3 * channels]
        sizes = [in_dim, *widths]
        self.layers = nn.ModuleList(
            TdnnLayer(a, b, k, d)
            for a, b, k, d in zip(sizes[:-1], sizes[1:], kernels, dilations, strict=True)
        )
        self.embedding = nn.Linear(2 * widths[-1], channels)
        self.output_dim = channels

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]``, ``lengths [B]`` -> embeddings ``[B, channels]``."""
        mask = lengths_to_mask(lengths, x.shape[1])  # [B, T]
        x = x.masked_fill(~mask[..., None], 0.0)
        for layer in self.layers:
            x = layer(x, mask)
        mean, std = masked_mean_std(x, mask)  # [B, C]
        return self.embedding(torch.cat([mean, std], dim=-1))


class SqueezeExcite(nn.Module):
    """Channel gates from the masked time average (squeeze-and-excitation).

    Arguments
    ---------
    channels : int
        Channels ``C`` of the input, one gate each.
    bottleneck : int
        Width of the hidden layer that computes the gates.
    """

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(channels, bottleneck)
        self.up = nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C]`` scaled per channel."""
        mean, _ = masked_mean_std(x, mask)  # [B, C]
        gate = torch.sigmoid(self.up(torch.relu(self.down(mean))))  # [B, C]
        return x * gate[:, None, :]


class Res2Block(nn.Module):
    """SE-Res2Net block: 1x1 TDNN, Res2 dilated convs over ``scale`` splits, 1x1 TDNN, SE.

    The block's input is added back (residual).

    Arguments
    ---------
    channels : int
        Channels ``C``, in and out (divisible by ``scale`` and by 4).
    dilation : int
        Dilation of the Res2 convolutions.
    kernel_size : int
        Kernel size of the Res2 convolutions.
    scale : int
        Splits of the channels; all but the first get a convolution.

    Raises
    ------
    ValueError
        When ``channels`` is not divisible by ``scale`` and by 4.

    Example
    -------
    >>> Res2Block(16, dilation=2)(torch.randn(2, 7, 16), torch.ones(2, 7).bool()).shape
    torch.Size([2, 7, 16])
    """

    def __init__(self, channels: int, dilation: int, kernel_size: int = 3, scale: int = 4) -> None:
        super().__init__()
        if channels % scale or channels % 4:
            raise ValueError(f"channels: {channels} must be divisible by scale={scale} and by 4")
        self.scale = scale
        width = channels // scale
        self.pre = TdnnLayer(channels, channels, 1)
        self.convs = nn.ModuleList(
            TdnnLayer(width, width, kernel_size, dilation) for _ in range(scale - 1)
        )
        self.post = TdnnLayer(channels, channels, 1)
        self.se = SqueezeExcite(channels, channels // 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C]`` -> ``[B, T, C]``."""
        parts = self.pre(x, mask).chunk(self.scale, dim=-1)  # scale x [B, T, C/scale]
        outs, y = [parts[0]], None
        for part, conv in zip(parts[1:], self.convs, strict=True):
            y = conv(part if y is None else part + y, mask)
            outs.append(y)
        z = self.se(self.post(torch.cat(outs, dim=-1), mask), mask)  # [B, T, C]
        return (z + x).masked_fill(~mask[..., None], 0.0)


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time, with global context.

    Arguments
    ---------
    channels : int
        Channels ``C`` of the input; the output has ``2C``.
    attention : int
        Width of the attention's hidden layer.

    Example
    -------
    >>> AttentiveStatsPool(6, 4)(torch.randn(2, 5, 6), torch.ones(2, 5).bool()).shape
    torch.Size([2, 12])
    """

    def __init__(self, channels: int, attention: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Linear(3 * channels, attention), nn.Tanh(), nn.Linear(attention, channels)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C]`` -> ``[B, 2C]``."""
        mean, std = masked_mean_std(x, mask)  # [B, C]
        context = torch.cat([x, mean[:, None].expand_as(x), std[:, None].expand_as(x)], dim=-1)
        scores = self.attention(context).masked_fill(~mask[..., None], float("-inf"))
        alpha = torch.softmax(scores, dim=1).nan_to_num(0.0)  # [B, T, C]; empty rows -> 0
        mu = (alpha * x).sum(1)  # [B, C]
        sigma = ((alpha * x.square()).sum(1) - mu.square()).clamp(min=1e-5).sqrt()
        return torch.cat([mu, sigma], dim=-1)


class Ecapa(nn.Module):
    """ECAPA-TDNN embedder.

    The module docstring has an example.

    Arguments
    ---------
    in_dim : int
        Features per frame.
    channels : int
        Width ``C`` (a multiple of 8); the aggregation layer has ``3C`` channels, the
        attention ``C / 8`` (MP3S: 512, 1536 and 64) and the embedding ``C``.
    dilations : Sequence[int]
        One SE-Res2Net block per dilation.

    Raises
    ------
    ValueError
        When ``channels`` is not a multiple of 8.
    """

    def __init__(self, in_dim: int, channels: int, dilations: Sequence[int] = (2, 3, 4)) -> None:
        super().__init__()
        if channels % 8:
            raise ValueError(f"channels: must be a multiple of 8, got {channels}")
        self.stem = TdnnLayer(in_dim, channels, 5)
        self.blocks = nn.ModuleList(Res2Block(channels, d) for d in dilations)
        self.aggregate = TdnnLayer(len(dilations) * channels, 3 * channels, 1)
        self.pool = AttentiveStatsPool(3 * channels, channels // 8)
        self.norm = nn.LayerNorm(6 * channels)
        self.embedding = nn.Linear(6 * channels, channels)
        self.output_dim = channels

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]``, ``lengths [B]`` -> embeddings ``[B, channels]``."""
        mask = lengths_to_mask(lengths, x.shape[1])  # [B, T]
        x = self.stem(x.masked_fill(~mask[..., None], 0.0), mask)
        outs = []
        for block in self.blocks:
            x = block(x, mask)
            outs.append(x)
        x = self.aggregate(torch.cat(outs, dim=-1), mask)  # [B, T, 3C]
        return self.embedding(self.norm(self.pool(x, mask)))
