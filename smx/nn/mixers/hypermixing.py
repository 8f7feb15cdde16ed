"""HyperMixing: token mixing with weights generated from the tokens (arXiv 2203.03691).

Multi-head HyperMixer token mixing (HyperConformer). With ``H`` heads of size
``d_h = D / H``, ``k = hypernet_size / H`` and the masked input ``x``:

1. hyper-network input ``h_t = x_t + e_t`` (``e``: absolute sinusoidal positions); the mixed
   content ``x`` itself gets no positions;
2. per head, two separate generators (``d_h -> d_h -> k`` MLPs with GELU) make
   ``W1 = MLP_1(h) [T, k]`` and ``W2 = MLP_2(h) [T, k]``, zero on padded frames;
3. per head ``Y_h = (GELU(X_h^T W1) W2^T)^T``: ``[d_h, T] [T, k] -> GELU -> [d_h, k] [k, T]``;
4. heads concatenated, LayerNorm, padded frames zeroed.

Linear in ``T``: O(T * k * D). The generators of all heads are block-diagonal linears (one
einsum over ``[H, in, out]`` weights), initialised Xavier-uniform with gain ``sqrt(2)`` per
head (docs/algorithm.md, "Other mixers").

Differences from SpeechBrain's implementation: generator biases start at zero (SpeechBrain
draws them Xavier-uniform too); positions have no maximum length (SpeechBrain's table stops
at 3000); the optional dropout (SpeechBrain has none) acts on the mixed heads before the
LayerNorm; the output is zero on padded frames (SpeechBrain leaves the LayerNorm bias there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from smx.nn.base import Mixer, check_mixer_input
from smx.nn.linear import BlockLinear
from smx.nn.positional import sinusoidal_positions


def _generator(d_model: int, out_features: int, heads: int) -> nn.Sequential:
    """Per-head MLP ``d_h -> d_h -> out_features / heads`` with GELU, as block-diagonal linears."""
    mlp = nn.Sequential(
        BlockLinear(d_model, d_model, heads), nn.GELU(), BlockLinear(d_model, out_features, heads)
    )
    for layer in (mlp[0], mlp[2]):
        _, fan_in, fan_out = layer.weight.shape
        bound = math.sqrt(2.0) * math.sqrt(6.0 / (fan_in + fan_out))  # Xavier, gain sqrt(2)
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.zeros_(layer.bias)
    return mlp


class HyperMixing(Mixer):
    """Multi-head HyperMixing token mixer, linear in ``T`` (see the module docstring).

    Arguments
    ---------
    d_model : int
        Model width ``D``, divisible by ``heads``.
    heads : int
        ``H``.
    hypernet_size : int
        Total token-mixing width ``H * k``, divisible by ``heads``.
    dropout : float
        Dropout on the mixed heads, before the LayerNorm.

    Example
    -------
    >>> mixer = HyperMixing(16, heads=4, hypernet_size=32)
    >>> x, pad_mask = torch.randn(2, 10, 16), torch.ones(2, 10, dtype=torch.bool)
    >>> pad_mask[1, 6:] = False
    >>> y = mixer(x, pad_mask)
    >>> y.shape, bool((y[1, 6:] == 0).all())
    (torch.Size([2, 10, 16]), True)
    >>> HyperMixing(16, heads=3, hypernet_size=30)
    Traceback (most recent call last):
    ...
    ValueError: HyperMixing: d_model=16 must be divisible by heads=3
    """

    def __init__(self, d_model: int, heads: int, hypernet_size: int, dropout: float = 0.0):
        super().__init__()
        if not isinstance(heads, int) or heads < 1:
            raise ValueError(f"HyperMixing: heads must be an integer >= 1, got {heads!r}")
        for name, size in (("d_model", d_model), ("hypernet_size", hypernet_size)):
            if not isinstance(size, int) or size < 1 or size % heads:
                raise ValueError(f"HyperMixing: {name}={size} must be divisible by heads={heads}")
        self.d_model = d_model
        self.heads = heads
        self.head_dim = d_model // heads
        self.hypernet_size = hypernet_size
        self.tokens_per_head = hypernet_size // heads  # k
        self.generate_in = _generator(d_model, hypernet_size, heads)  # W1
        self.generate_out = _generator(d_model, hypernet_size, heads)  # W2
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, heads={self.heads}, hypernet_size={self.hypernet_size}"

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Mix ``x`` along time with token-generated weights.

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
        check_mixer_input(x, pad_mask, self.d_model, "HyperMixing")
        batch, time, _ = x.shape
        heads, k = self.heads, self.tokens_per_head
        keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
        x = x.masked_fill(~keep, 0.0)  # [B, T, D]
        positions = sinusoidal_positions(time, self.d_model, device=x.device, dtype=x.dtype)
        hyper_in = x + positions  # [B, T, D]
        w_in = self.generate_in(hyper_in).masked_fill(~keep, 0.0)  # [B, T, H*k]
        w_out = self.generate_out(hyper_in).masked_fill(~keep, 0.0)  # [B, T, H*k]
        w_in = w_in.view(batch, time, heads, k)  # [B, T, H, k]
        w_out = w_out.view(batch, time, heads, k)  # [B, T, H, k]
        content = x.view(batch, time, heads, self.head_dim)  # [B, T, H, d_h]
        hidden = F.gelu(torch.einsum("bthd,bthk->bhdk", content, w_in))  # [B, H, d_h, k]
        mixed = torch.einsum("bhdk,bthk->bthd", hidden, w_out)  # [B, T, H, d_h]
        y = self.norm(self.dropout(mixed.reshape(batch, time, self.d_model)))  # [B, T, D]
        return y.masked_fill(~keep, 0.0)
