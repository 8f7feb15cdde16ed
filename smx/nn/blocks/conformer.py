"""Conformer block (SpeechBrain style: pre-norm, macaron feed-forwards) hosting any mixer."""

from __future__ import annotations

import torch
from torch import nn

from smx.nn.activations import ActivationName
from smx.nn.base import Mixer
from smx.nn.blocks.common import Branch, MixerBlock, check_mixer_width
from smx.nn.convolution import ConvModule
from smx.nn.feedforward import FeedForward


class ConformerBlock(MixerBlock):
    """Conformer layer with a pluggable mixer in place of self-attention.

    ``x <- x + ½·FFN1(x)``; ``x <- x + Dropout(mixer(LN1(x)))``; ``x <- x + Conv(x)``;
    ``x <- LN2(x + ½·FFN2(x))`` (the last LayerNorm sits after the second residual).
    SpeechBrain's Conformer adds no dropout on the MHSA output (attention dropout only), hence
    ``mixer_dropout`` defaults to 0; mixers such as SummaryMixing apply their own dropout
    (docs/algorithm.md, "Where the cell sits").

    Arguments
    ---------
    d_model : int
        Model width ``D``.
    mixer : Mixer
        Context mixer ``[B, T, D] -> [B, T, D]`` (it receives the LN1-normalised input).
    d_ffn : int
        Hidden size of both feed-forward networks.
    kernel_size : int
        Odd depthwise kernel of the convolution module.
    dropout : float
        Dropout inside the feed-forwards and the convolution module.
    activation : str
        Activation of the feed-forwards and of the convolution module (Swish by default).
    mixer_dropout : float
        Dropout on the mixer output before its residual.

    Example
    -------
    >>> from smx.nn.mixers.summary_mixing import SummaryMixing
    >>> mixer = SummaryMixing(16, local_hidden=[16], local_out=16, summary_hidden=[16], heads=2)
    >>> block = ConformerBlock(16, mixer, d_ffn=32, kernel_size=3).eval()
    >>> x, pad_mask = torch.randn(2, 10, 16), torch.ones(2, 10, dtype=torch.bool)
    >>> block(x, pad_mask).shape
    torch.Size([2, 10, 16])
    >>> state = block.init_state(2, x.device, x.dtype)
    >>> y, state = block.forward_step(x[:, :4], pad_mask[:, :4], state, left_chunks=1)
    >>> torch.allclose(y, block.forward_chunked(x, pad_mask, 4, 1)[:, :4], atol=1e-5)
    True
    """

    conv_module = "conv"

    def __init__(
        self,
        d_model: int,
        mixer: Mixer,
        d_ffn: int,
        kernel_size: int = 31,
        dropout: float = 0.1,
        activation: ActivationName = "swish",
        mixer_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_mixer_width(mixer, d_model, type(self).__name__)
        self.d_model = d_model
        self.ffn1 = FeedForward(d_model, d_ffn, dropout, activation)
        self.mixer_norm = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.mixer_dropout = nn.Dropout(mixer_dropout)
        self.conv = ConvModule(d_model, kernel_size, dropout, activation)
        self.ffn2 = FeedForward(d_model, d_ffn, dropout, activation)
        self.out_norm = nn.LayerNorm(d_model)

    def _layer(self, x: torch.Tensor, mix: Branch, conv: Branch | None) -> torch.Tensor:
        """The block equations, with the mixer and convolution passed as functions."""
        x = x + 0.5 * self.ffn1(x)  # [B, T, D]
        x = x + self.mixer_dropout(mix(self.mixer_norm(x)))  # [B, T, D]
        x = x + conv(x)  # [B, T, D]
        return self.out_norm(x + 0.5 * self.ffn2(x))  # [B, T, D]
