"""The learned softmax-weighted sum of an upstream's hidden states (MP3S)."""

from __future__ import annotations

import torch
from torch import nn


class WeightedLayerSum(nn.Module):
    """``h = sum_l softmax(theta)_l * H_l`` with ``theta`` initialised to zero (uniform weights).

    Arguments
    ---------
    num_layers : int
        ``L``, the hidden states per frame.

    Example
    -------
    >>> mix = WeightedLayerSum(3)
    >>> states = torch.stack([torch.zeros(2, 4, 5), torch.ones(2, 4, 5), 2 * torch.ones(2, 4, 5)], 2)
    >>> out = mix(states).detach()
    >>> out.shape, float(out[0, 0, 0]), round(mix.weights().detach().sum().item(), 6)
    (torch.Size([2, 4, 5]), 1.0, 1.0)
    """

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: must be at least 1, got {num_layers}")
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def weights(self) -> torch.Tensor:
        """``[L]`` non-negative layer weights summing to one."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """``states [B, T, L, D]`` -> ``[B, T, D]``."""
        if states.dim() != 4 or states.shape[2] != self.logits.numel():
            raise ValueError(
                f"states: expected [B, T, L={self.logits.numel()}, D], got {list(states.shape)}"
            )
        return torch.einsum("btld,l->btd", states, self.weights())
