"""wav2vec 2.0 loss terms: negative sampling, contrastive loss, diversity, feature penalty.

Masked frames are addressed as one flat list in row-major order of the ``[B, T]`` mask
(``masked.nonzero()`` order): the targets and context vectors of the ``N`` masked frames
are ``[N, D]`` tensors, and negatives are indices into that list. Since a mask only ever
covers real frames (:mod:`smx.ssl.masking`), negatives are never padded frames.

Logits, losses and the feature penalty are computed in float32, also under bf16 autocast
(their inputs are cast up and autocast is off inside).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: smallest norm a vector is divided by in the cosine similarities (cosine_similarity's eps)
COSINE_EPS = 1e-8


def sample_negatives(
    masked: torch.Tensor, num_negatives: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``num_negatives`` distractors for every masked frame from its own utterance.

    For masked frame ``n`` of utterance ``b`` (with ``m_b`` masked frames), each negative is
    drawn uniformly, with replacement, among the ``m_b - 1`` *other* masked frames of
    ``b``: never the frame itself, never another utterance, never an unmasked or padded
    frame. SpeechBrain's flattened offset ``i * (T - 1)`` shifts the candidates of utterance
    ``i > 0`` into the previous utterance and can return the positive; this one does not.
    Sampling with replacement (as SpeechBrain does) fills all
    ``K`` slots whenever ``m_b >= 2``, even if ``m_b - 1 < K``; when ``m_b = 1`` there is no
    candidate: the slots point at the frame itself and are marked invalid (their logits
    become ``-inf`` in :func:`contrastive_logits`).

    Arguments
    ---------
    masked : torch.Tensor
        ``[B, T]`` bool, True = masked (only real frames).
    num_negatives : int
        ``K`` negatives per masked frame.
    generator : torch.Generator
        Source of the random numbers (drawn on its device).

    Returns
    -------
    tuple of torch.Tensor
        ``indices [N, K]`` (long, into the ``N`` masked frames in row-major order) and
        ``valid [N, K]`` (bool), on ``masked.device``.

    Example
    -------
    >>> masked = torch.tensor([[True, True, False], [False, True, True]])
    >>> indices, valid = sample_negatives(masked, 3, torch.Generator().manual_seed(0))
    >>> indices.tolist()  # frame 0's only candidate is frame 1, frame 2's is frame 3, ...
    [[1, 1, 1], [0, 0, 0], [3, 3, 3], [2, 2, 2]]
    """
    if masked.dim() != 2 or masked.dtype != torch.bool:
        raise ValueError(
            f"sample_negatives: masked must be a bool tensor of shape [B, T], "
            f"got {masked.dtype} {list(masked.shape)}"
        )
    if num_negatives < 1:
        raise ValueError(f"sample_negatives: num_negatives must be >= 1, got {num_negatives}")
    device = masked.device
    counts = masked.sum(1)  # [B]
    starts = counts.cumsum(0) - counts  # [B] first flat index of each utterance
    utterance = masked.nonzero()[:, 0]  # [N]
    total = utterance.shape[0]
    rank = torch.arange(total, device=device) - starts[utterance]  # [N] position in utterance
    candidates = (counts[utterance] - 1)[:, None]  # [N, 1] other masked frames
    u = torch.rand(
        total, num_negatives, generator=generator, device=generator.device, dtype=torch.float64
    ).to(device)  # [N, K]
    choice = torch.minimum((u * candidates).long(), (candidates - 1).clamp(min=0))  # [N, K]
    choice = choice + (choice >= rank[:, None]).long()  # skip the frame itself
    valid = (candidates >= 1).expand(total, num_negatives)  # [N, K]
    itself = torch.arange(total, device=device)[:, None]  # [N, 1]
    indices = torch.where(valid, starts[utterance][:, None] + choice, itself)  # [N, K]
    return indices, valid


def contrastive_logits(
    context: torch.Tensor,
    targets: torch.Tensor,
    negative_indices: torch.Tensor,
    negative_valid: torch.Tensor,
    logit_temp: float,
) -> torch.Tensor:
    """Cosine-similarity logits of each context vector against its positive and negatives.

    ``logits[n] = cos(c_n, [y_n, y_{i_1}, ..., y_{i_K}]) / logit_temp`` (float32, also
    under autocast), with ``-inf`` for a negative that is invalid or identical to the
    positive (the quantiser can give two frames the same code; SpeechBrain masks those too).

    Arguments
    ---------
    context : torch.Tensor
        ``[N, D]`` projected encoder outputs at the masked frames.
    targets : torch.Tensor
        ``[N, D]`` projected quantised targets of the same frames.
    negative_indices, negative_valid : torch.Tensor
        ``[N, K]`` from :func:`sample_negatives`.
    logit_temp : float
        ``kappa`` (0.1 in the wav2vec 2.0 recipe).

    Returns
    -------
    torch.Tensor
        ``[N, 1 + K]``; column 0 is the positive.

    Example
    -------
    >>> y = torch.eye(3)
    >>> logits = contrastive_logits(y, y, torch.tensor([[1], [2], [0]]),
    ...                             torch.ones(3, 1, dtype=torch.bool), 0.5)
    >>> logits.tolist()
    [[2.0, 0.0], [2.0, 0.0], [2.0, 0.0]]
    """
    if context.dim() != 2 or context.shape != targets.shape:
        raise ValueError(
            f"contrastive_logits: context and targets must both have shape [N, D], "
            f"got {list(context.shape)} and {list(targets.shape)}"
        )
    if negative_indices.shape != negative_valid.shape or negative_indices.shape[:1] != (
        context.shape[0],
    ):
        raise ValueError(
            f"contrastive_logits: negative_indices and negative_valid must have shape [N, K] "
            f"with N={context.shape[0]}, got {list(negative_indices.shape)} and "
            f"{list(negative_valid.shape)}"
        )
    with torch.autocast(context.device.type, enabled=False):
        # normalise the N targets once, then gather: no [N, 1 + K, D] tensor but the gathered
        # candidates, and one batched dot product instead of a broadcast cosine similarity
        unit_context = F.normalize(context.float(), dim=-1, eps=COSINE_EPS)  # [N, D]
        unit_targets = F.normalize(targets.float(), dim=-1, eps=COSINE_EPS)  # [N, D]
        rows = torch.arange(context.shape[0], device=context.device)[:, None]  # [N, 1]
        candidates = unit_targets[torch.cat([rows, negative_indices], dim=1)]  # [N, 1 + K, D]
        logits = (candidates @ unit_context[:, :, None]).squeeze(-1) / logit_temp  # [N, 1 + K]
    same = (candidates[:, 1:] == candidates[:, :1]).all(-1)  # [N, K]
    blocked = torch.cat([torch.zeros_like(same[:, :1]), same | ~negative_valid], dim=1)
    return logits.masked_fill(blocked, float("-inf"))


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with target index 0, **summed** over masked frames (as SpeechBrain does).

    Divide by ``N`` for the per-frame value. An empty batch gives 0.

    Arguments
    ---------
    logits : torch.Tensor
        ``[N, 1 + K]`` from :func:`contrastive_logits`, column 0 the positive.

    Returns
    -------
    torch.Tensor
        Scalar float32 sum.

    Example
    -------
    >>> import math
    >>> loss = contrastive_loss(torch.tensor([[10.0, 0.0, 0.0]]))
    >>> round(float(loss), 6) == round(math.log(1 + 2 * math.exp(-10)), 6)
    True
    """
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    with torch.autocast(logits.device.type, enabled=False):
        return F.cross_entropy(logits.float(), target, reduction="sum")


def contrastive_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Fraction of frames whose positive beats every negative strictly (0 for ``N = 0``).

    Frames without any valid negative count as correct.

    Arguments
    ---------
    logits : torch.Tensor
        As for :func:`contrastive_loss`.

    Returns
    -------
    torch.Tensor
        Scalar in ``[0, 1]``.

    Example
    -------
    >>> round(float(contrastive_accuracy(torch.tensor([[2.0, 1.0], [1.0, 1.0], [0.0, 3.0]]))), 4)
    0.3333
    """
    if logits.shape[0] == 0:
        return logits.new_zeros(())
    negatives = logits[:, 1:]  # [N, K]
    if negatives.shape[1] == 0:
        return logits.new_ones(())
    correct = logits[:, 0] > negatives.amax(-1)  # [N]
    return correct.float().mean()


def diversity_loss(prob_perplexity: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Codebook diversity loss ``(G*V - PP) / (G*V)``: 0 when all codes are used equally.

    Arguments
    ---------
    prob_perplexity : torch.Tensor
        Scalar perplexity ``PP`` of the batch-averaged code probabilities.
    num_codes : int
        ``G * V``, all entries of all codebooks.

    Returns
    -------
    torch.Tensor
        Scalar in ``[0, 1)``.

    Example
    -------
    >>> float(diversity_loss(torch.tensor(640.0), 640)), float(diversity_loss(torch.tensor(2.0), 4))
    (0.0, 0.5)
    """
    return (num_codes - prob_perplexity) / num_codes


def feature_penalty(latents: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared CNN latent over the real frames (wav2vec 2.0's feature penalty).

    Arguments
    ---------
    latents : torch.Tensor
        ``[B, T, C]``.
    pad_mask : torch.Tensor
        ``[B, T]`` bool, True = real frame.

    Returns
    -------
    torch.Tensor
        Scalar float32 mean over every real frame and channel of the batch.

    Example
    -------
    >>> latents = torch.tensor([[[1.0, 3.0], [100.0, 100.0]]])
    >>> float(feature_penalty(latents, torch.tensor([[True, False]])))  # (1 + 9) / 2
    5.0
    """
    if latents.dim() != 3 or pad_mask.shape != latents.shape[:2] or pad_mask.dtype != torch.bool:
        raise ValueError(
            f"feature_penalty: latents must be [B, T, C] and pad_mask a bool [B, T], got "
            f"{list(latents.shape)} and {pad_mask.dtype} {list(pad_mask.shape)}"
        )
    with torch.autocast(latents.device.type, enabled=False):
        squares = latents.float().square().masked_fill(~pad_mask[..., None], 0.0)  # [B, T, C]
        count = pad_mask.sum() * latents.shape[-1]
        return squares.sum() / count.clamp(min=1)
