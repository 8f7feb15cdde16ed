"""Fastformer: additive attention that pools the sequence into two global vectors.

Fastformer (arXiv 2108.09084) in its speech variant, where the value shares the query
projection (docs/algorithm.md, "Other mixers"). With ``H`` heads of size ``d_h = D / H``:

1. ``q_t = W_q x_t + b_q``, ``k_t = W_k x_t + b_k``                       (``D -> D``)
2. ``alpha_{t,h} = softmax_t( w_q(q_t)_h / sqrt(d_h) )``, ``w_q``: Linear(D -> H) on the whole
   ``q_t``; global query ``Q_h = sum_t alpha_{t,h} q_{t,h}`` (dropout on it)
3. ``p_t = k_t * Q``
4. ``beta_{t,h} = softmax_t( w_k(p_t)_h / sqrt(d_h) )``, ``K_h = sum_t beta_{t,h} p_{t,h}``
5. ``y_t = W_o (K * q_t) + q_t``

Both softmaxes run in float32 at least (also under fp16/bf16 autocast). Linear in ``T``: O(T * D^2).

Difference from the implementation used with BEST-RQ (arXiv 2409.02596): padding is
honoured. Padded frames are zeroed on the input and get ``-inf`` scores in both poolings, so
they never reach the global vectors; a row without any real frame pools nothing (zero
weights, no NaN) and its outputs, like those of every padded frame, are zero. That
implementation ignores the mask and leaves outputs at padded positions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from smx.nn.base import Mixer, check_mixer_input


def masked_pool(
    values: torch.Tensor, scores: torch.Tensor, pad_mask: torch.Tensor, heads: int
) -> torch.Tensor:
    """Softmax-over-time pooling of ``values`` per head, over the real frames only.

    Arguments
    ---------
    values : torch.Tensor
        ``[B, T, D]``, ``D`` divisible by ``heads``.
    scores : torch.Tensor
        ``[B, T, H]`` pooling logits.
    pad_mask : torch.Tensor
        ``[B, T]`` bool, True = real frame.
    heads : int
        ``H``.

    Returns
    -------
    torch.Tensor
        ``[B, 1, D]``: ``sum_t softmax_t(scores)_{t,h} values_{t,h}`` per head slice; zero for a
        row without real frames. The softmax is computed in float32 (or wider).

    Example
    -------
    >>> values = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [100.0, 100.0]]])
    >>> scores = torch.zeros(1, 3, 2)
    >>> masked_pool(values, scores, torch.tensor([[True, True, False]]), heads=2).tolist()
    [[[2.0, 20.0]]]
    """
    batch, time, d_model = values.shape
    keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
    any_real = keep.any(1, keepdim=True)  # [B, 1, 1]
    dtype = torch.promote_types(scores.dtype, torch.float32)  # float32 at least
    logits = scores.to(dtype).masked_fill(~keep, float("-inf"))  # [B, T, H]
    logits = torch.where(any_real, logits, 0.0)  # an empty row gets finite logits ...
    weights = torch.softmax(logits, dim=1).masked_fill(~keep, 0.0)  # ... and zero weights
    per_head = values.view(batch, time, heads, d_model // heads)  # [B, T, H, d_h]
    pooled = torch.einsum("bth,bthd->bhd", weights.to(values.dtype), per_head)  # [B, H, d_h]
    return pooled.reshape(batch, 1, d_model)  # [B, 1, D]


class Fastformer(Mixer):
    """Fastformer additive attention mixer, linear in ``T`` (see the module docstring).

    Initialisation as in the implementation used with BEST-RQ: every Linear weight
    N(0, 0.02), biases zero.

    Arguments
    ---------
    d_model : int
        Model width ``D``, divisible by ``heads``.
    heads : int
        ``H``.
    dropout : float
        Dropout on the global query.

    Example
    -------
    >>> mixer = Fastformer(16, heads=4)
    >>> x, pad_mask = torch.randn(2, 10, 16), torch.ones(2, 10, dtype=torch.bool)
    >>> pad_mask[1, 6:] = False
    >>> y = mixer(x, pad_mask)
    >>> y.shape, bool((y[1, 6:] == 0).all())
    (torch.Size([2, 10, 16]), True)
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if not isinstance(heads, int) or heads < 1 or d_model % heads:
            raise ValueError(
                f"Fastformer: heads must be an integer >= 1 dividing d_model={d_model}, "
                f"got {heads!r}"
            )
        self.d_model = d_model
        self.heads = heads
        self.head_dim = d_model // heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.query_score = nn.Linear(d_model, heads)  # w_q
        self.key_score = nn.Linear(d_model, heads)  # w_k
        self.out = nn.Linear(d_model, d_model)  # W_o
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights N(0, 0.02), biases zero."""
        for linear in (self.query, self.key, self.query_score, self.key_score, self.out):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, heads={self.heads}"

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Mix ``x`` through the two pooled global vectors.

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
        check_mixer_input(x, pad_mask, self.d_model, "Fastformer")
        keep = pad_mask.unsqueeze(-1)  # [B, T, 1]
        x = x.masked_fill(~keep, 0.0)  # [B, T, D]
        scale = 1.0 / math.sqrt(self.head_dim)
        q = self.query(x)  # [B, T, D]
        k = self.key(x)  # [B, T, D]
        global_query = masked_pool(q, self.query_score(q) * scale, pad_mask, self.heads)  # [B,1,D]
        p = k * self.dropout(global_query)  # [B, T, D]
        global_key = masked_pool(p, self.key_score(p) * scale, pad_mask, self.heads)  # [B, 1, D]
        y = self.out(global_key * q) + q  # [B, T, D]
        return y.masked_fill(~keep, 0.0)
