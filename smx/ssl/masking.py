"""Time masks for self-supervised pre-training: wav2vec 2.0 spans and BEST-RQ blocks.

Both functions take the true per-utterance lengths and an explicit ``torch.Generator``,
so a mask depends only on the lengths and the generator state (SpeechBrain's recipes draw
their masks from unseeded numpy/Python RNGs). The random numbers are
drawn on the generator's device; the mask is returned on ``lengths.device``. Masks are
bool ``[B, T]`` with True = masked frame, and only real frames (``t < lengths[b]``) are
ever masked.
"""

from __future__ import annotations

import math

import torch


def _check_lengths(lengths: torch.Tensor, max_len: int, name: str) -> None:
    if lengths.dim() != 1:
        raise ValueError(f"{name}: lengths must have shape [B], got {list(lengths.shape)}")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(f"{name}: lengths must be an integer tensor, got {lengths.dtype}")
    if bool(((lengths < 0) | (lengths > max_len)).any()):
        raise ValueError(
            f"{name}: lengths must lie in [0, max_len={max_len}], got {lengths.tolist()}"
        )


def _check_mask_args(mask_prob: float, mask_length: int, name: str) -> None:
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"{name}: mask_prob must lie in (0, 1), got {mask_prob}")
    if not isinstance(mask_length, int) or mask_length < 1:
        raise ValueError(f"{name}: mask_length must be an integer >= 1, got {mask_length!r}")


def _uniform(generator: torch.Generator, size: int = 1) -> torch.Tensor:
    """``size`` uniform numbers in [0, 1) from ``generator`` (float64, on its device)."""
    return torch.rand(size, generator=generator, device=generator.device, dtype=torch.float64)


def num_spans(shortest: int, mask_prob: float, mask_length: int, u: float) -> int:
    """Spans per utterance (wav2vec 2.0): ``floor(mask_prob * L_min / mask_length + u + 1)``.

    Arguments
    ---------
    shortest : int
        ``L_min``, the shortest real length of the batch.
    mask_prob, mask_length : float, int
        As in :func:`span_mask`.
    u : float
        A uniform number in [0, 1).

    Example
    -------
    >>> num_spans(100, 0.65, 10, u=0.5)  # floor(6.5 + 1.5)
    8
    """
    return math.floor(mask_prob * shortest / mask_length + u + 1)


def span_mask(
    lengths: torch.Tensor,
    max_len: int,
    mask_prob: float,
    mask_length: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """wav2vec 2.0 span mask with the same number of masked frames in every utterance.

    As in the wav2vec 2.0 recipe (docs/algorithm.md, "wav2vec 2.0"):
    ``n = floor(mask_prob * L_min / mask_length + U(0,1) + 1)`` spans (:func:`num_spans`)
    with ``L_min`` the shortest length in the batch; for each utterance ``b``,
    ``min(n, L_b - mask_length + 1)`` distinct span starts are drawn uniformly among the
    starts whose span fits inside the utterance (``0 .. L_b - mask_length``; SpeechBrain
    excludes the last one), each span covers ``mask_length`` frames, overlaps merge, and
    random unmasked real frames are added until the utterance has exactly
    ``M = min(n * mask_length, L_min)`` masked frames.

    Short utterances (where SpeechBrain's guard crashes): capping ``M`` at ``L_min`` lets
    every utterance reach it; when the spans of a longer utterance cover more than ``M``
    frames, randomly chosen masked frames are unmasked again. The shortest utterance is
    therefore fully masked when ``L_min <= n * mask_length`` (with the recipe's values,
    below 29 to 57 latent frames depending on the draw, about 0.6-1.1 s), and an empty
    utterance makes ``M = 0`` (nothing masked).

    Arguments
    ---------
    lengths : torch.Tensor
        ``[B]`` real frames per utterance on the masked (latent) time axis.
    max_len : int
        ``T``, the padded length of the mask.
    mask_prob : float
        Fraction-like parameter in (0, 1) (0.65 in the wav2vec 2.0 recipe).
    mask_length : int
        Frames per span (10 in the wav2vec 2.0 recipe).
    generator : torch.Generator
        Source of all random numbers.

    Returns
    -------
    torch.Tensor
        ``[B, T]`` bool, True = masked; ``M`` True per row, all at real frames.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> mask = span_mask(torch.tensor([50, 40]), 50, 0.5, 4, g)
    >>> mask.shape, mask.sum(1).tolist(), bool(mask[1, 40:].any())
    (torch.Size([2, 50]), [24, 24], False)
    """
    _check_lengths(lengths, max_len, "span_mask")
    _check_mask_args(mask_prob, mask_length, "span_mask")
    shortest = int(lengths.min()) if lengths.numel() else 0
    spans = num_spans(shortest, mask_prob, mask_length, float(_uniform(generator)))
    count = min(spans * mask_length, shortest)  # masked frames of every utterance
    mask = torch.zeros(lengths.shape[0], max_len, dtype=torch.bool)
    for b, length in enumerate(lengths.tolist()):
        row = _draw_spans(length, spans, mask_length, generator)  # [L_b]
        mask[b, :length] = _adjust_count(row, count, generator)
    return mask.to(lengths.device)


def _draw_spans(
    length: int, spans: int, mask_length: int, generator: torch.Generator
) -> torch.Tensor:
    """``[L]`` bool: up to ``spans`` spans at distinct random starts that fit in ``length``."""
    row = torch.zeros(length, dtype=torch.bool)
    num_starts = length - mask_length + 1
    if num_starts > 0:
        order = torch.randperm(num_starts, generator=generator, device=generator.device)
        starts = order[:spans].cpu()  # [n]
        row[(starts[:, None] + torch.arange(mask_length)).flatten()] = True
    return row


def _adjust_count(row: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Add (or remove) random frames of ``row [L]`` until exactly ``count`` are True."""
    have = int(row.sum())
    if have == count:
        return row
    score = _uniform(generator, row.shape[0]).cpu()  # [L]
    if have < count:  # top up with random unmasked frames
        score[row] = -1.0
        row[score.topk(count - have).indices] = True
    else:  # too many: unmask random masked frames
        score[~row] = 2.0
        row[score.topk(have - count, largest=False).indices] = False
    return row


def block_mask(
    lengths: torch.Tensor,
    max_len: int,
    mask_prob: float,
    mask_length: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """BEST-RQ block mask: ``n`` blocks of ``mask_length`` frames starting on multiples of it.

    SpeechBrain's BEST-RQ draws ``n = max(1, floor(mask_prob * L_min + U(0,1)))`` block starts
    among the multiples of ``mask_length`` of the shortest utterance and shares them with
    the whole batch. Here ``n`` is computed the same way (so every utterance has the same
    ``n * mask_length`` masked frames), but each utterance draws its own ``n`` distinct
    starts among its own candidates ``0, m, 2m, ...`` whose block ends inside its real
    length (``start + mask_length <= L_b``): masks differ across utterances and cover the
    whole of long utterances, not only their first ``L_min`` frames. ``n`` is capped at the
    number of candidates of the shortest utterance, ``L_min // mask_length`` (0 when
    ``L_min < mask_length``: nothing is masked). With the defaults (0.15, 4) about
    ``0.15 * 4 = 60 %`` of the shortest utterance is masked.

    Arguments
    ---------
    lengths : torch.Tensor
        ``[B]`` real feature frames per utterance.
    max_len : int
        ``T``, the padded length of the mask.
    mask_prob : float
        Probability in (0, 1) that a frame starts a block (0.15 in the BEST-RQ recipe).
    mask_length : int
        Frames per block (4 in the BEST-RQ recipe: 40 ms, one encoder frame).
    generator : torch.Generator
        Source of all random numbers.

    Returns
    -------
    torch.Tensor
        ``[B, T]`` bool, True = masked.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> mask = block_mask(torch.tensor([40, 47]), 47, 0.15, 4, g)  # n = floor(0.15 * 40 + u)
    >>> mask.sum(1).tolist(), bool(mask[0, 40:].any())
    ([24, 24], False)
    """
    name = "block_mask"
    _check_lengths(lengths, max_len, name)
    _check_mask_args(mask_prob, mask_length, name)
    shortest = int(lengths.min()) if lengths.numel() else 0
    u = float(_uniform(generator))
    num_blocks = min(max(1, math.floor(mask_prob * shortest + u)), shortest // mask_length)
    mask = torch.zeros(lengths.shape[0], max_len, dtype=torch.bool)
    offsets = torch.arange(mask_length)
    for b, length in enumerate(lengths.tolist()):
        if num_blocks == 0:
            break
        order = torch.randperm(length // mask_length, generator=generator, device=generator.device)
        starts = order[:num_blocks].cpu() * mask_length  # [n]
        mask[b, (starts[:, None] + offsets).flatten()] = True
    return mask.to(lengths.device)
