"""Block-diagonal ("head-split") linear layers and the MLPs SummaryMixing builds from them.

With ``heads = h`` the input vector ``[..., in]`` is cut into ``h`` contiguous slices of
``in / h`` features and slice ``i`` goes through its own weight ``[in / h, out / h]``
(docs/algorithm.md, "SummaryMixing"). Stacking such layers with the same ``heads`` keeps
the heads apart: the output slice ``i`` of one layer is exactly the input slice ``i`` of the
next one, so heads never mix inside an :class:`MLP`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from smx.nn.activations import ActivationName
from smx.nn.activations import activation as make_activation


class BlockLinear(nn.Module):
    """Block-diagonal linear layer: ``heads`` independent linears on contiguous slices.

    ``y[..., i*o:(i+1)*o] = x[..., i*n:(i+1)*n] @ weight[i] + bias[i*o:(i+1)*o]`` with
    ``n = in / heads``, ``o = out / heads``; computed by one batched matmul (``einsum``)
    over the weight ``[heads, n, o]``. ``heads = 1`` is an ordinary linear layer.

    Initialisation: every block is initialised like an ``nn.Linear(n, o)`` of its own,
    weight uniform in ``±1/sqrt(n)`` (per-head fan-in), bias zero. The scale is therefore
    the same whatever ``heads`` is. This deliberately differs from SpeechBrain's
    ``ParallelLinear``, whose ``kaiming_uniform_`` on the 3-D
    weight uses the fan ``n * o`` and so draws weights ``sqrt(o)`` times smaller, draws
    random (non-zero) biases, and falls back to ``nn.Linear``'s different scale when
    ``heads = 1``.

    Arguments
    ---------
    in_features : int
        Input size, divisible by ``heads``.
    out_features : int
        Output size, divisible by ``heads``.
    heads : int
        Number of diagonal blocks.
    bias : bool
        Add a learned bias (initialised to zero).

    Example
    -------
    >>> layer = BlockLinear(8, 12, heads=4)
    >>> layer.weight.shape
    torch.Size([4, 2, 3])
    >>> layer(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 12])
    >>> BlockLinear(8, 10, heads=4)
    Traceback (most recent call last):
    ...
    ValueError: BlockLinear: out_features=10 must be divisible by heads=4
    """

    def __init__(self, in_features: int, out_features: int, heads: int = 1, bias: bool = True):
        super().__init__()
        if not isinstance(heads, int) or heads < 1:
            raise ValueError(f"BlockLinear: heads must be an integer >= 1, got {heads!r}")
        for name, size in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"BlockLinear: {name} must be an integer >= 1, got {size!r}")
            if size % heads:
                raise ValueError(f"BlockLinear: {name}={size} must be divisible by heads={heads}")
        self.in_features = in_features
        self.out_features = out_features
        self.heads = heads
        self.weight = nn.Parameter(torch.empty(heads, in_features // heads, out_features // heads))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weight uniform in ``±1/sqrt(in_features / heads)``, bias zero."""
        bound = 1.0 / math.sqrt(self.in_features // self.heads)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in] -> [..., out]``."""
        lead = x.shape[:-1]
        x = x.reshape(*lead, self.heads, self.in_features // self.heads)  # [..., h, in/h]
        y = torch.einsum("...hi,hio->...ho", x, self.weight)  # [..., h, out/h]
        y = y.reshape(*lead, self.out_features)  # [..., out]
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"heads={self.heads}, bias={self.bias is not None}"
        )


class MLP(nn.Sequential):
    """Stack of :class:`BlockLinear` layers, each followed by the activation (the last too).

    Sizes ``in_features -> hidden[0] -> ... -> out_features``. As in SpeechBrain's
    SummaryMixing MLPs the activation follows *every* layer, including the last
    one, so the output is an activation output. All layers use the same ``heads``, so the
    heads never mix: output slice ``i`` depends on input slice ``i`` only.

    Arguments
    ---------
    in_features : int
        Input size.
    hidden : Sequence[int]
        Hidden sizes (may be empty: one layer).
    out_features : int
        Output size.
    heads : int
        Number of heads of every layer; every size must be divisible by it.
    activation : str
        Activation name, see :func:`smx.nn.activations.activation`.

    Example
    -------
    >>> mlp = MLP(8, [16], 4, heads=2, activation="relu")
    >>> len(mlp), mlp(torch.randn(3, 8)).shape
    (4, torch.Size([3, 4]))
    >>> bool((mlp(torch.randn(3, 8)) >= 0).all())  # ends with the activation
    True
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        heads: int = 1,
        activation: ActivationName = "swish",
    ) -> None:
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for size_in, size_out in pairwise(sizes):
            layers += [BlockLinear(size_in, size_out, heads), make_activation(activation)]
        super().__init__(*layers)
