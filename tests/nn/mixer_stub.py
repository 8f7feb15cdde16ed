"""A small exact, streamable test mixer for the block and encoder tests (not a test module).

``y_t = local(x_t) + mean of summary(x_j)`` over the real frames ``j`` visible from ``t``:
all of them offline; in chunked mode, frames of ``t``'s chunk and ``left_chunks`` chunks
before it. Padded frames are removed with ``torch.where``, so even NaN padding cannot leak.
"""

from __future__ import annotations

import torch
from torch import nn

from smx.nn.base import Mixer, check_chunking, check_mixer_input


class MeanMixer(Mixer):
    """Masked-mean mixer with ``forward``, ``forward_chunked`` and the step API."""

    streamable = True

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.local = nn.Linear(d_model, d_model)
        self.summary = nn.Linear(d_model, d_model)

    def _summaries(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return torch.where(pad_mask[..., None], self.summary(x), 0.0)  # [B, T, D]

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        check_mixer_input(x, pad_mask, self.d_model, "MeanMixer")
        total = self._summaries(x, pad_mask).sum(1, keepdim=True)  # [B, 1, D]
        count = pad_mask.sum(1, keepdim=True)[..., None].clamp(min=1)  # [B, 1, 1]
        return self.local(x) + total / count

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
    ) -> torch.Tensor:
        check_mixer_input(x, pad_mask, self.d_model, "MeanMixer")
        check_chunking(chunk_size, left_chunks, "MeanMixer")
        chunk = torch.arange(x.shape[1], device=x.device) // chunk_size  # [T]
        visible = chunk[None, :] <= chunk[:, None]  # [T, T]: no frame beyond the own chunk
        if left_chunks is not None:
            visible = visible & (chunk[None, :] >= chunk[:, None] - left_chunks)
        weights = (visible[None] & pad_mask[:, None, :]).to(x.dtype)  # [B, T, T]
        total = weights @ self._summaries(x, pad_mask)  # [B, T, D]
        return self.local(x) + total / weights.sum(-1, keepdim=True).clamp(min=1)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> list:
        return []  # (sum [B, 1, D], count [B, 1, 1]) of the previous chunks

    def forward_step(
        self, x: torch.Tensor, pad_mask: torch.Tensor, state: list, left_chunks: int | None
    ) -> tuple[torch.Tensor, list]:
        check_mixer_input(x, pad_mask, self.d_model, "MeanMixer")
        past = state if left_chunks is None else state[max(len(state) - left_chunks, 0) :]
        total = self._summaries(x, pad_mask).sum(1, keepdim=True)  # [B, 1, D]
        count = pad_mask.sum(1, keepdim=True)[..., None].to(x.dtype)  # [B, 1, 1]
        entry = (total, count)
        for past_total, past_count in past:
            total, count = total + past_total, count + past_count
        return self.local(x) + total / count.clamp(min=1), [*past, entry]


class PlainMixer(Mixer):
    """A mixer without a streaming mode (``streamable`` False)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return self.proj(x)
