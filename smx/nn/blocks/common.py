"""What the encoder blocks that host a mixer share: checks and the streaming plumbing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from smx.nn.base import Mixer, check_chunking, check_mixer_input

#: A branch of a block as a function of its input: the mixer or the convolution.
Branch = Callable[[torch.Tensor], torch.Tensor]

#: Streaming state of a block: ``{"mixer": <mixer state>, "conv": <conv cache>, ...}``.
BlockState = dict[str, Any]


def check_mixer_width(mixer: Mixer, d_model: int, name: str) -> None:
    """Raise a ValueError when ``mixer`` does not map ``d_model`` features to ``d_model``.

    Arguments
    ---------
    mixer : Mixer
        The hosted mixer; one without a ``d_model`` attribute is trusted.
    d_model : int
        The block's width.
    name : str
        Block name used in the message.

    Example
    -------
    >>> from torch import nn
    >>> check_mixer_width(nn.Identity(), 8, "block")  # a module without d_model is trusted
    """
    width = getattr(mixer, "d_model", d_model)
    if width != d_model:
        raise ValueError(f"{name}: mixer.d_model must equal d_model={d_model}, got {width}")


def check_streamable(mixer: Mixer, name: str) -> None:
    """Raise a ValueError when ``mixer`` has no streaming mode (``mixer.streamable`` False).

    Arguments
    ---------
    mixer : Mixer
        The hosted mixer.
    name : str
        Block name used in the message.

    Example
    -------
    >>> from torch import nn
    >>> check_streamable(nn.Identity(), "block")
    Traceback (most recent call last):
    ...
    ValueError: block: the mixer Identity has no streaming mode (mixer.streamable is False)
    """
    if not getattr(mixer, "streamable", False):
        raise ValueError(
            f"{name}: the mixer {type(mixer).__name__} has no streaming mode "
            "(mixer.streamable is False)"
        )


class MixerBlock(nn.Module):
    """Base of the blocks: the equations live in :meth:`_layer`, the plumbing here.

    A subclass sets ``d_model`` and ``mixer`` and implements ``_layer(x, mix, conv)``, the
    block equations with the mixer and its convolution passed as functions; ``conv_module``
    names its convolution (``None`` for a block without one). This class then provides the
    offline forward, the chunked forward and the stateful step API (the state holds the
    mixer's state and the convolution cache), all running the same ``_layer``.
    """

    d_model: int
    mixer: Mixer
    #: attribute name of the block's convolution (ConvModule / CSGU), or None
    conv_module: str | None = None

    def _layer(self, x: torch.Tensor, mix: Branch, conv: Branch | None) -> torch.Tensor:
        raise NotImplementedError

    def _conv(self) -> nn.Module | None:
        return getattr(self, self.conv_module) if self.conv_module else None

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Offline: ``x [B, T, D]``, ``pad_mask [B, T]`` (True = real) -> ``[B, T, D]``."""
        check_mixer_input(x, pad_mask, self.d_model, type(self).__name__)
        conv = self._conv()
        return self._layer(
            x,
            lambda h: self.mixer(h, pad_mask),
            None if conv is None else lambda h: conv(h, pad_mask),
        )

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
    ) -> torch.Tensor:
        """Chunked: the mixer sees its chunk + ``left_chunks`` chunks, the conv is chunked."""
        name = type(self).__name__
        check_streamable(self.mixer, name)
        check_mixer_input(x, pad_mask, self.d_model, name)
        check_chunking(chunk_size, left_chunks, name)
        conv = self._conv()
        return self._layer(
            x,
            lambda h: self.mixer.forward_chunked(h, pad_mask, chunk_size, left_chunks),
            None if conv is None else lambda h: conv.forward_chunked(h, pad_mask, chunk_size),
        )

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> BlockState:
        """Empty streaming state: the mixer's state and the convolution cache (if any)."""
        check_streamable(self.mixer, type(self).__name__)
        state: BlockState = {"mixer": self.mixer.init_state(batch_size, device, dtype)}
        conv = self._conv()
        if conv is not None:
            state["conv"] = conv.init_state(batch_size, device, dtype)
        return state

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

        def step_conv(h: torch.Tensor) -> torch.Tensor:
            y, new["conv"] = conv.forward_step(h, pad_mask, state["conv"])
            return y

        conv = self._conv()
        return self._layer(x, mix, None if conv is None else step_conv), new
