"""Conformer block (SpeechBrain style: pre-norm, macaron feed-forwards) hosting any mixer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from smx.nn.activations import ActivationName
from smx.nn.base import Mixer, check_chunking, check_mixer_input
from smx.nn.blocks.common import BlockState, check_mixer_width, check_streamable
from smx.nn.convolution import ConvModule
from smx.nn.feedforward import FeedForward

Branch = Callable[[torch.Tensor], torch.Tensor]


class ConformerBlock(nn.Module):
    """Conformer layer with a pluggable mixer in place of self-attention (reference §1.7).

    ``x <- x + ½·FFN1(x)``; ``x <- x + Dropout(mixer(LN1(x)))``; ``x <- x + Conv(x)``;
    ``x <- LN2(x + ½·FFN2(x))`` (the last LayerNorm sits after the second residual).
    The reference adds no dropout on the MHSA output (attention dropout only), hence
    ``mixer_dropout`` defaults to 0; mixers such as SummaryMixing apply their own dropout.

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

    def _layer(self, x: torch.Tensor, mix: Branch, conv: Branch) -> torch.Tensor:
        """The block equations, with the mixer and convolution passed as functions."""
        x = x + 0.5 * self.ffn1(x)  # [B, T, D]
        x = x + self.mixer_dropout(mix(self.mixer_norm(x)))  # [B, T, D]
        x = x + conv(x)  # [B, T, D]
        return self.out_norm(x + 0.5 * self.ffn2(x))  # [B, T, D]

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Offline: ``x [B, T, D]``, ``pad_mask [B, T]`` (True = real) -> ``[B, T, D]``."""
        check_mixer_input(x, pad_mask, self.d_model, type(self).__name__)
        return self._layer(x, lambda h: self.mixer(h, pad_mask), lambda h: self.conv(h, pad_mask))

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
    ) -> torch.Tensor:
        """Chunked: the mixer sees its chunk + ``left_chunks`` chunks, the conv is chunked."""
        name = type(self).__name__
        check_streamable(self.mixer, name)
        check_mixer_input(x, pad_mask, self.d_model, name)
        check_chunking(chunk_size, left_chunks, name)
        return self._layer(
            x,
            lambda h: self.mixer.forward_chunked(h, pad_mask, chunk_size, left_chunks),
            lambda h: self.conv.forward_chunked(h, pad_mask, chunk_size),
        )

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> BlockState:
        """Empty streaming state: the mixer's state and the convolution cache."""
        check_streamable(self.mixer, type(self).__name__)
        return {
            "mixer": self.mixer.init_state(batch_size, device, dtype),
            "conv": self.conv.init_state(batch_size, device, dtype),
        }

    def forward_step(
        self, x: torch.Tensor, pad_mask: torch.Tensor, state: BlockState, left_chunks: int | None
    ) -> tuple[torch.Tensor, BlockState]:
        """One chunk ``x [B, C, D]`` -> ``(y [B, C, D], state)``; equals ``forward_chunked``."""
        name = type(self).__name__
        check_streamable(self.mixer, name)
        check_mixer_input(x, pad_mask, self.d_model, name)
        new: BlockState = {}

        def mix(h: torch.Tensor) -> torch.Tensor:
            y, new["mixer"] = self.mixer.forward_step(h, pad_mask, state["mixer"], left_chunks)
            return y

        def conv(h: torch.Tensor) -> torch.Tensor:
            y, new["conv"] = self.conv.forward_step(h, pad_mask, state["conv"])
            return y

        return self._layer(x, mix, conv), new
