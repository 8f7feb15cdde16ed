"""Checks shared by the encoder blocks that host a mixer."""

from __future__ import annotations

from typing import Any

from smx.nn.base import Mixer

#: Streaming state of a block: ``{"mixer": <mixer state>, "conv": <conv cache>, ...}``.
BlockState = dict[str, Any]


def check_mixer_width(mixer: Mixer, d_model: int, name: str) -> None:
    """Raise a ValueError when ``mixer`` does not map ``d_model`` features to ``d_model``.

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
