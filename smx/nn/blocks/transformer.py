"""Transformer block (pre- or post-norm) hosting any mixer in place of self-attention."""

from __future__ import annotations

import torch
from torch import nn

from smx.nn.activations import ActivationName
from smx.nn.base import Mixer
from smx.nn.blocks.common import Branch, MixerBlock, check_mixer_width
from smx.nn.feedforward import FeedForward


class TransformerBlock(MixerBlock):
    """Transformer encoder layer with a pluggable mixer.

    Pre-norm (default): ``x <- x + Dropout(mixer(LN1(x)))``; ``x <- x + FFN(LN2(x))``, where
    LN2 is the input LayerNorm of :class:`~smx.nn.feedforward.FeedForward`.
    Post-norm: ``x <- LN1(x + Dropout(mixer(x)))``; ``x <- LN2(x + FFN(x))``.
    The feed-forward is ``Linear -> act -> Dropout -> Linear -> Dropout``.

    Arguments
    ---------
    d_model : int
        Model width ``D``.
    mixer : Mixer
        Context mixer ``[B, T, D] -> [B, T, D]``.
    d_ffn : int
        Feed-forward hidden size.
    dropout : float
        Dropout on the mixer output and inside the feed-forward.
    activation : str
        Feed-forward activation (GELU by default).
    pre_norm : bool
        Pre-norm (True) or post-norm (False) residuals.

    Example
    -------
    >>> from smx.nn.mixers.summary_mixing import SummaryMixing
    >>> mixer = SummaryMixing(16, local_hidden=[16], local_out=16, summary_hidden=[16], heads=2)
    >>> block = TransformerBlock(16, mixer, d_ffn=32, dropout=0.0)
    >>> block(torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.bool)).shape
    torch.Size([2, 7, 16])
    """

    def __init__(
        self,
        d_model: int,
        mixer: Mixer,
        d_ffn: int,
        dropout: float = 0.1,
        activation: ActivationName = "gelu",
        pre_norm: bool = True,
    ) -> None:
        super().__init__()
        check_mixer_width(mixer, d_model, type(self).__name__)
        self.d_model = d_model
        self.pre_norm = pre_norm
        self.mixer_norm = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.mixer_dropout = nn.Dropout(dropout)
        # pre-norm: the FFN's own input LayerNorm is LN2; post-norm: LN2 follows the residual
        self.ffn = FeedForward(d_model, d_ffn, dropout, activation, norm=pre_norm)
        self.ffn_norm = nn.Identity() if pre_norm else nn.LayerNorm(d_model)

    def _layer(self, x: torch.Tensor, mix: Branch, conv: Branch | None = None) -> torch.Tensor:
        """The block equations, with the mixer passed as a function."""
        if self.pre_norm:
            x = x + self.mixer_dropout(mix(self.mixer_norm(x)))  # [B, T, D]
            return x + self.ffn(x)  # [B, T, D]
        x = self.mixer_norm(x + self.mixer_dropout(mix(x)))  # [B, T, D]
        return self.ffn_norm(x + self.ffn(x))  # [B, T, D]
