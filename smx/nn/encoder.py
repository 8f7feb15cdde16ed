"""The context encoder: input projection, optional mask embedding and positions, the blocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from smx.nn.base import check_chunking, lengths_to_mask
from smx.nn.blocks.common import BlockState
from smx.nn.frontend import check_features
from smx.nn.positional import sinusoidal_positions
from smx.nn.streaming import ChunkConfig


@dataclass
class EncoderOutput:
    """What :class:`Encoder` returns.

    Attributes
    ----------
    last : torch.Tensor
        ``[B, T, D]`` output of the final LayerNorm, zero on padded frames.
    lengths : torch.Tensor
        ``[B]`` real frames per utterance: the input lengths (on the device of ``feats``;
        the encoder keeps the frame rate).
    hidden_states : list of torch.Tensor
        ``num_layers + 1`` tensors ``[B, T, D]``: the encoder input (after projection, mask
        embedding and positions), then the output of each layer; the last entry is the
        final LayerNorm output (the same tensor as ``last``). Padded frames are zero.
    """

    last: torch.Tensor
    lengths: torch.Tensor
    hidden_states: list[torch.Tensor]


@dataclass
class EncoderStreamState:
    """Streaming state of :class:`Encoder`: frames seen so far and each block's state."""

    offset: int
    left_chunks: int | None
    blocks: list[BlockState]


class Encoder(nn.Module):
    """Stack of mixer blocks over a feature sequence (docs/algorithm.md, "Where the cell sits").

    ``feats -> Linear(input_dim, D) -> Dropout -> [mask embedding on masked frames]
    -> [+ absolute sinusoidal positions] -> blocks -> LayerNorm(eps 1e-6)``.

    The blocks are built by the caller and passed in (any modules with the block API of
    :mod:`smx.nn.blocks`: ``forward(x, pad_mask)``, ``forward_chunked(x, pad_mask,
    chunk_size, left_chunks)``, ``init_state`` and ``forward_step``). Padded frames are
    zeroed on the encoder input and after every layer, so garbage in padded input frames
    never reaches real frames.

    Layerdrop: in training, each layer is skipped independently with probability
    ``layerdrop`` (its hidden state is then the previous one); never in eval mode nor in
    :meth:`stream_step`. Under ``torch.compile`` a skipped layer is still computed and its
    output discarded with ``torch.where`` (branch-free, so the graph does not break).

    Arguments
    ---------
    input_dim : int
        Features per input frame (e.g. 512 CNN latents).
    d_model : int
        Model width ``D``.
    blocks : sequence of nn.Module
        The layers, each ``[B, T, D] -> [B, T, D]`` (at least one).
    input_dropout : float
        Dropout after the input projection.
    layerdrop : float
        Probability in ``[0, 1]`` of skipping each layer in training.
    pos_enc : str
        ``"abs"`` adds absolute sinusoidal positions to the input; ``"none"`` does not.
    mask_embedding : bool
        Learn a mask embedding (uniform [0, 1) init, as wav2vec 2.0) that replaces the
        projected input on the frames given by ``masked``.

    Example
    -------
    >>> from smx.nn.blocks import ConformerBlock
    >>> from smx.nn.mixers.summary_mixing import SummaryMixing
    >>> def block():
    ...     mixer = SummaryMixing(16, local_hidden=[16], local_out=16, summary_hidden=[16], heads=2)
    ...     return ConformerBlock(16, mixer, d_ffn=32, kernel_size=3)
    >>> encoder = Encoder(12, 16, [block(), block()], mask_embedding=True).eval()
    >>> feats, lengths = torch.randn(2, 9, 12), torch.tensor([9, 6])
    >>> out = encoder(feats, lengths, masked=torch.rand(2, 9) < 0.5)
    >>> out.last.shape, len(out.hidden_states)
    (torch.Size([2, 9, 16]), 3)
    >>> state = encoder.init_stream(2, feats.device, feats.dtype, left_chunks=1)
    >>> y, state = encoder.stream_step(feats[:, :4], lengths_to_mask(lengths, 9)[:, :4], state)
    >>> chunked = encoder(feats, lengths, chunk=ChunkConfig(4, 1)).last
    >>> torch.allclose(y, chunked[:, :4], atol=1e-5)
    True
    """

    def __init__(
        self,
        input_dim: int,
        d_model: int,
        blocks: Sequence[nn.Module],
        input_dropout: float = 0.1,
        layerdrop: float = 0.0,
        pos_enc: Literal["abs", "none"] = "abs",
        mask_embedding: bool = False,
    ) -> None:
        super().__init__()
        if len(blocks) < 1:
            raise ValueError("Encoder: blocks must hold at least one layer, got none")
        if not 0.0 <= layerdrop <= 1.0:
            raise ValueError(f"Encoder: layerdrop must lie in [0, 1], got {layerdrop}")
        if pos_enc not in ("abs", "none"):
            raise ValueError(f"Encoder: pos_enc must be 'abs' or 'none', got {pos_enc!r}")
        self.input_dim = input_dim
        self.d_model = d_model
        self.layerdrop = layerdrop
        self.pos_enc = pos_enc
        self.input_proj = nn.Linear(input_dim, d_model)
        self.input_dropout = nn.Dropout(input_dropout)
        self.mask_embedding = nn.Parameter(torch.rand(d_model)) if mask_embedding else None
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d_model, eps=1e-6)

    def _embed(
        self,
        feats: torch.Tensor,
        pad_mask: torch.Tensor,
        masked: torch.Tensor | None,
        offset: int,
    ) -> torch.Tensor:
        """Project ``feats [B, T, F]``, apply the mask embedding and positions -> ``[B, T, D]``."""
        x = self.input_dropout(self.input_proj(feats))  # [B, T, D]
        if masked is not None:
            if self.mask_embedding is None:
                raise ValueError(
                    "Encoder: masked was given but the encoder has no mask embedding "
                    "(build it with mask_embedding=True)"
                )
            if masked.dtype != torch.bool or masked.shape != pad_mask.shape:
                raise ValueError(
                    f"Encoder: masked must be a bool tensor of shape [B, T] = "
                    f"{list(pad_mask.shape)}, got {masked.dtype} {list(masked.shape)}"
                )
            x = torch.where(masked[..., None], self.mask_embedding.to(x.dtype), x)  # [B, T, D]
        if self.pos_enc == "abs":
            positions = sinusoidal_positions(
                x.shape[1], self.d_model, offset=offset, device=x.device, dtype=x.dtype
            )  # [T, D]
            x = x + positions
        return x.masked_fill(~pad_mask[..., None], 0.0)

    def forward(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        masked: torch.Tensor | None = None,
        chunk: ChunkConfig | None = None,
    ) -> EncoderOutput:
        """Encode a padded batch.

        Arguments
        ---------
        feats : torch.Tensor
            ``[B, T, input_dim]`` input features.
        lengths : torch.Tensor
            ``[B]`` real frames per utterance (integers in ``[0, T]``).
        masked : torch.Tensor or None
            ``[B, T]`` bool, True = replace this frame by the mask embedding.
        chunk : ChunkConfig or None
            Chunked (streaming-compatible) mode: every block runs ``forward_chunked`` with
            ``chunk.chunk_size`` and ``chunk.left_chunks``. None = full context.

        Returns
        -------
        EncoderOutput
            ``last [B, T, D]``, ``lengths [B]``, ``hidden_states`` (``num_layers + 1``).
        """
        check_features(feats, lengths, self.input_dim, type(self).__name__)
        lengths = lengths.to(feats.device)
        if chunk is not None:
            check_chunking(chunk.chunk_size, chunk.left_chunks, type(self).__name__)
        pad_mask = lengths_to_mask(lengths, feats.shape[1])  # [B, T]
        x = self._embed(feats, pad_mask, masked, offset=0)  # [B, T, D]
        hidden_states = [x]
        keep = self._sample_kept_layers(x.device)
        for i, block in enumerate(self.blocks):
            if isinstance(keep, list) and not keep[i]:
                hidden_states.append(x)  # skipped layer
                continue
            if chunk is None:
                y = block(x, pad_mask)  # [B, T, D]
            else:
                y = block.forward_chunked(x, pad_mask, chunk.chunk_size, chunk.left_chunks)
            if isinstance(keep, torch.Tensor):
                y = torch.where(keep[i], y, x)  # branch-free layerdrop while compiling
            x = y.masked_fill(~pad_mask[..., None], 0.0)  # [B, T, D]
            hidden_states.append(x)
        last = self.norm(x).masked_fill(~pad_mask[..., None], 0.0)  # [B, T, D]
        hidden_states[-1] = last
        return EncoderOutput(last=last, lengths=lengths, hidden_states=hidden_states)

    def _sample_kept_layers(self, device: torch.device) -> list[bool] | torch.Tensor | None:
        """Layerdrop decisions: None (keep all), a list of bools, or a bool tensor (compiling)."""
        if not self.training or self.layerdrop == 0.0:
            return None
        if torch.compiler.is_compiling():
            return torch.rand(len(self.blocks), device=device) >= self.layerdrop  # [L]
        return (torch.rand(len(self.blocks)) >= self.layerdrop).tolist()

    def init_stream(
        self,
        batch_size: int,
        device: torch.device,
        dtype: torch.dtype,
        left_chunks: int | None = None,
    ) -> EncoderStreamState:
        """Empty streaming state; ``left_chunks`` previous chunks are visible (None = all)."""
        check_chunking(1, left_chunks, type(self).__name__)
        states = [block.init_state(batch_size, device, dtype) for block in self.blocks]
        return EncoderStreamState(offset=0, left_chunks=left_chunks, blocks=states)

    def stream_step(
        self, feats: torch.Tensor, pad_mask: torch.Tensor, state: EncoderStreamState
    ) -> tuple[torch.Tensor, EncoderStreamState]:
        """Encode the next chunk.

        Fed chunk after chunk with a constant chunk size ``C`` (the last chunk may be
        shorter), the outputs equal ``forward(..., chunk=ChunkConfig(C, left_chunks)).last``
        in eval mode.

        Arguments
        ---------
        feats : torch.Tensor
            ``[B, C, input_dim]`` features of the chunk.
        pad_mask : torch.Tensor
            ``[B, C]`` bool, True = real frame.
        state : EncoderStreamState
            From :meth:`init_stream` or the previous step.

        Returns
        -------
        tuple
            ``last [B, C, D]`` (final LayerNorm, zero on padded frames) and the new state.
        """
        name = type(self).__name__
        if feats.dim() != 3 or feats.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name}: feats must have shape [B, C, {self.input_dim}], got {list(feats.shape)}"
            )
        if pad_mask.dtype != torch.bool or pad_mask.shape != feats.shape[:2]:
            raise ValueError(
                f"{name}: pad_mask must be a bool tensor of shape [B, C] = "
                f"{list(feats.shape[:2])}, got {pad_mask.dtype} {list(pad_mask.shape)}"
            )
        x = self._embed(feats, pad_mask, None, offset=state.offset)  # [B, C, D]
        new_states = []
        for block, block_state in zip(self.blocks, state.blocks, strict=True):
            x, block_state = block.forward_step(x, pad_mask, block_state, state.left_chunks)
            x = x.masked_fill(~pad_mask[..., None], 0.0)  # [B, C, D]
            new_states.append(block_state)
        last = self.norm(x).masked_fill(~pad_mask[..., None], 0.0)  # [B, C, D]
        new_state = EncoderStreamState(state.offset + feats.shape[1], state.left_chunks, new_states)
        return last, new_state
