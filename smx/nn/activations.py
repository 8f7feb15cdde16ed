"""Activation functions by name, as the configs spell them."""

from __future__ import annotations

from typing import Literal

from torch import nn

ActivationName = Literal["swish", "gelu", "relu", "leaky_relu"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: ActivationName) -> nn.Module:
    """Build the activation module called ``name``.

    Arguments
    ---------
    name : str
        One of ``"swish"`` (SiLU, the Conformer default), ``"gelu"``, ``"relu"``,
        ``"leaky_relu"`` (negative slope 0.01).

    Returns
    -------
    nn.Module
        A fresh, parameter-free module applied element-wise.

    Example
    -------
    >>> import torch
    >>> activation("relu")(torch.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    >>> activation("tanh")
    Traceback (most recent call last):
    ...
    ValueError: activation must be one of ['swish', 'gelu', 'relu', 'leaky_relu'], got 'tanh'
    """
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()
