"""``none``: no token mixing at all, an ablation and the lower bound of the benchmarks.

:class:`NoMixing` returns zeros of its input's shape and has no parameters. In a block whose
mixer branch is ``x + Dropout(mixer(LN(x)))`` (Conformer, Transformer) that branch adds
nothing, so the block keeps only its feed-forward and convolution modules (a Transformer
block becomes a per-frame MLP; a Branchformer block keeps its cgMLP branch and merge).
Frames never exchange information through it.

It is not a model anyone should train for accuracy. It answers one question: what does
everything *around* the mixer cost (front-end, feed-forward and convolution modules,
objective, optimiser)? ``smx bench pretrain --kinds ...,none`` measures that floor in the
same run as the real mixers, so no mixer, however cheap, can make a step faster or smaller
than the ``none`` point. The block's LayerNorm in front of the mixer still runs (its output
is discarded) and its parameters get no gradient; a DDP run would need
``find_unused_parameters``.

Zeros are trivially streamable: the chunked forward and the step API return zeros too and
the streaming state is empty.
"""

from __future__ import annotations

import torch

from smx.nn.base import Mixer, check_chunking, check_mixer_input


class NoMixing(Mixer):
    """A mixer that mixes nothing: ``forward(x, pad_mask) = 0`` of ``x``'s shape, no parameters.

    Arguments
    ---------
    d_model : int
        Input and output size ``D`` (checked on the input).

    Example
    -------
    >>> mixer = NoMixing(8)
    >>> x, pad_mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    >>> y = mixer(x, pad_mask)
    >>> y.shape, bool((y == 0).all()), sum(p.numel() for p in mixer.parameters())
    (torch.Size([2, 5, 8]), True, 0)
    >>> y0, state = mixer.forward_step(x[:, :2], pad_mask[:, :2], mixer.init_state(2, x.device,
    ...     x.dtype), left_chunks=None)
    >>> y0.shape, state
    (torch.Size([2, 2, 8]), None)
    """

    streamable = True

    def __init__(self, d_model: int) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"NoMixing: d_model must be an integer >= 1, got {d_model!r}")
        self.d_model = d_model

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]``, ``pad_mask [B, T]`` -> zeros ``[B, T, D]`` (no gradient path)."""
        check_mixer_input(x, pad_mask, self.d_model, "NoMixing")
        return torch.zeros_like(x)  # [B, T, D]

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
    ) -> torch.Tensor:
        """Chunked forward: zeros, whatever the chunking."""
        check_chunking(chunk_size, left_chunks, "NoMixing")
        return self.forward(x, pad_mask)  # [B, T, D]

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        """No state: nothing is carried from one chunk to the next."""
        return None

    def forward_step(
        self, x: torch.Tensor, pad_mask: torch.Tensor, state: None, left_chunks: int | None
    ) -> tuple[torch.Tensor, None]:
        """One chunk ``x [B, C, D]`` -> ``(zeros [B, C, D], None)``."""
        check_chunking(x.shape[1], left_chunks, "NoMixing")
        return self.forward(x, pad_mask), None
