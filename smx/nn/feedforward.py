"""Position-wise feed-forward network used by the Conformer and Transformer blocks."""

from __future__ import annotations

import torch
from torch import nn

from smx.nn.activations import ActivationName
from smx.nn.activations import activation as make_activation


class FeedForward(nn.Module):
    """Pre-norm feed-forward network: ``LN -> Linear -> act -> Dropout -> Linear -> Dropout``.

    This is the macaron FFN of the Conformer (docs/algorithm.md, "Where the cell sits"); the
    residual connection and its ½ weight live in the block. It works frame by frame, so
    padded frames never reach real ones.

    Arguments
    ---------
    d_model : int
        Input and output size ``D``.
    d_ffn : int
        Hidden size.
    dropout : float
        Dropout after the activation and after the output projection.
    activation : str
        Activation name, see :func:`smx.nn.activations.activation`.
    norm : bool
        Apply the input LayerNorm (default). ``False`` gives the plain
        ``Linear -> act -> Dropout -> Linear -> Dropout`` of a post-norm Transformer block.

    Example
    -------
    >>> ffn = FeedForward(8, 16, dropout=0.0, activation="swish")
    >>> ffn(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        d_model: int,
        d_ffn: int,
        dropout: float,
        activation: ActivationName = "swish",
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model) if norm else nn.Identity()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ffn),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(d_ffn, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D] -> [B, T, D]``."""
        return self.net(self.norm(x))  # [B, T, D]
