"""wav2vec 2.0 loss terms on hand-built tensors: negatives, contrastive, diversity, penalty."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from smx.nn.base import lengths_to_mask
from smx.ssl.losses import (
    contrastive_accuracy,
    contrastive_logits,
    contrastive_loss,
    diversity_loss,
    feature_penalty,
    sample_negatives,
)
from smx.ssl.masking import span_mask


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- negatives


def test_negatives_hand_built_case_enumerates_the_allowed_set() -> None:
    masked = torch.tensor(
        [
            [True, True, False, True, False],  # flat 0, 1, 2 (t = 0, 1, 3)
            [False, True, True, False, False],  # flat 3, 4
            [True, False, False, False, False],  # flat 5: alone, no candidate
        ]
    )
    allowed = {0: {1, 2}, 1: {0, 2}, 2: {0, 1}, 3: {4}, 4: {3}}
    indices, valid = sample_negatives(masked, 60, gen(0))
    assert indices.shape == (6, 60) and valid.shape == (6, 60)
    for n, options in allowed.items():
        assert valid[n].all()
        assert set(indices[n].tolist()) == options  # 60 draws hit every option
    assert not valid[5].any() and (indices[5] == 5).all()


def test_negatives_never_padded_never_positive_only_same_utterance() -> None:
    lengths = torch.tensor([30, 21, 12, 40])
    masked = span_mask(lengths, 40, 0.5, 3, gen(1))
    indices, valid = sample_negatives(masked, 25, gen(2))
    where = masked.nonzero()  # [N, 2] (utterance, frame) of each masked frame
    own_utt, neg_utt = where[:, 0][:, None], where[indices][..., 0]  # [N, 1], [N, K]
    neg_frame = where[indices][..., 1]  # [N, K]
    assert valid.all()
    assert (neg_utt == own_utt).all()  # same utterance
    assert (neg_frame < lengths[neg_utt]).all()  # a real frame
    assert masked[neg_utt, neg_frame].all()  # a masked frame
    assert (indices != torch.arange(len(where))[:, None]).all()  # never the positive


def test_negatives_are_uniform_over_candidates() -> None:
    masked = torch.tensor([[True, True, True, True, False]])  # 3 candidates per frame
    indices, _ = sample_negatives(masked, 3000, gen(0))
    counts = torch.bincount(indices[0], minlength=4).float()
    assert counts[0] == 0
    assert torch.allclose(counts[1:] / 3000, torch.full((3,), 1 / 3), atol=0.03)


def test_negatives_deterministic_and_validated() -> None:
    masked = torch.rand(2, 20, generator=gen(0)) < 0.5
    a, _ = sample_negatives(masked, 7, gen(4))
    b, _ = sample_negatives(masked, 7, gen(4))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="bool tensor"):
        sample_negatives(masked.long(), 7, gen(0))
    with pytest.raises(ValueError, match="num_negatives"):
        sample_negatives(masked, 0, gen(0))


# ---------------------------------------------------------------------------- contrastive


@pytest.mark.parametrize("kappa", [0.1, 0.5, 2.0])
def test_contrastive_loss_exact_positive_orthogonal_negatives(kappa: float) -> None:
    # 5 masked frames of one utterance with orthonormal targets: the positive has
    # cosine 1, every negative cosine 0, so each frame costs log(1 + K exp(-1/kappa))
    n, k = 5, 4
    targets = torch.eye(n)
    indices, valid = sample_negatives(torch.ones(1, n, dtype=torch.bool), k, gen(0))
    logits = contrastive_logits(targets.clone(), targets, indices, valid, kappa)
    assert logits.shape == (n, 1 + k)
    expected = n * math.log(1 + k * math.exp(-1 / kappa))
    # float32 log-softmax: absolute error ~1e-6 per frame (kappa = 0.1 gives 1.8e-4 per frame)
    assert float(contrastive_loss(logits)) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert float(contrastive_accuracy(logits)) == 1.0


def test_contrastive_logits_hand_computed_cosines() -> None:
    context = torch.tensor([[2.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0], [0.0, 3.0], [-1.0, 0.0]])
    context = torch.cat([context, torch.zeros(2, 2)])  # rows 1, 2 unused
    indices = torch.tensor([[1, 2], [0, 2], [0, 1]])
    valid = torch.ones(3, 2, dtype=torch.bool)
    logits = contrastive_logits(context, targets, indices, valid, 0.5)
    # cos([2,0],[1,1]) = 1/sqrt2, cos([2,0],[0,3]) = 0, cos([2,0],[-1,0]) = -1; / 0.5
    assert logits[0].tolist() == pytest.approx([2 / math.sqrt(2), 0.0, -2.0], abs=1e-6)
    loss_0 = -F.log_softmax(logits[0], -1)[0]
    assert float(loss_0) == pytest.approx(
        math.log(1 + math.exp(-math.sqrt(2)) + math.exp(-2 - math.sqrt(2))), rel=1e-6
    )


def test_identical_or_invalid_negatives_get_minus_infinity() -> None:
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # frames 0, 1 share a code
    context = torch.tensor([[1.0, 0.2], [1.0, 0.0], [0.3, 1.0]])
    indices = torch.tensor([[1, 2], [0, 2], [0, 0]])
    valid = torch.tensor([[True, True], [True, True], [True, False]])
    logits = contrastive_logits(context, targets, indices, valid, 0.1)
    assert logits[0, 1] == float("-inf") and logits[1, 1] == float("-inf")
    assert logits[2, 2] == float("-inf") and torch.isfinite(logits[2, 1])
    assert torch.isfinite(logits[:, 0]).all()
    loss = contrastive_loss(logits)
    assert torch.isfinite(loss)
    # frame 0: only [positive, frame 2] remain
    row = logits[0, [0, 2]]
    assert float(-F.log_softmax(logits[0], -1)[0]) == pytest.approx(
        float(-F.log_softmax(row, -1)[0]), rel=1e-6
    )


def test_contrastive_loss_is_summed_over_frames() -> None:
    logits = torch.randn(7, 5, generator=gen(0))
    mean = F.cross_entropy(logits, torch.zeros(7, dtype=torch.long))
    assert float(contrastive_loss(logits)) == pytest.approx(7 * float(mean), rel=1e-6)
    assert float(contrastive_loss(torch.zeros(0, 5))) == 0.0


def test_contrastive_gradient_reaches_context_and_targets() -> None:
    context = torch.randn(4, 3, generator=gen(0), requires_grad=True)
    targets = torch.randn(4, 3, generator=gen(1), requires_grad=True)
    indices, valid = sample_negatives(torch.ones(1, 4, dtype=torch.bool), 3, gen(2))
    contrastive_loss(contrastive_logits(context, targets, indices, valid, 0.1)).backward()
    assert context.grad.abs().sum() > 0 and targets.grad.abs().sum() > 0


def test_contrastive_logits_and_gradients_equal_the_broadcast_cosine_definition() -> None:
    """The gathered unit vectors give cos(c_n, y_k) / kappa as F.cosine_similarity does on the
    [N, 1 + K, D] broadcast, with the same gradients (masked frames of two utterances)."""
    masked = torch.rand(2, 40, generator=gen(3)) < 0.5
    n = int(masked.sum())
    indices, valid = sample_negatives(masked, 10, gen(4))
    context = (3 * torch.randn(n, 16, generator=gen(5))).requires_grad_()
    targets = torch.randn(n, 16, generator=gen(6)).requires_grad_()
    logits = contrastive_logits(context, targets, indices, valid, 0.1)
    candidates = torch.cat([targets[:, None], targets[indices]], dim=1)  # [N, 1 + K, D]
    expected = F.cosine_similarity(context[:, None], candidates, dim=-1) / 0.1
    finite = torch.isfinite(logits)
    assert finite[:, 0].all() and (finite[:, 1:] == valid).all()
    torch.testing.assert_close(logits[finite], expected[finite], rtol=1e-5, atol=1e-5)
    ours = torch.autograd.grad(contrastive_loss(logits), [context, targets])
    reference = expected.masked_fill(~finite, float("-inf"))
    theirs = torch.autograd.grad(contrastive_loss(reference), [context, targets])
    for got, want in zip(ours, theirs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_contrastive_accuracy_hand_cases() -> None:
    logits = torch.tensor(
        [[3.0, 1.0, 2.0], [1.0, 2.0, 0.0], [1.0, 1.0, 0.0], [0.0, -math.inf, -math.inf]]
    )
    # correct, wrong, a tie is wrong, no valid negative counts as correct
    assert float(contrastive_accuracy(logits)) == pytest.approx(0.5)
    assert float(contrastive_accuracy(torch.zeros(0, 3))) == 0.0


def test_contrastive_logits_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        contrastive_logits(
            torch.zeros(3, 2),
            torch.zeros(3, 4),
            torch.zeros(3, 1).long(),
            torch.ones(3, 1, dtype=torch.bool),
            0.1,
        )
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        contrastive_logits(
            torch.zeros(3, 2),
            torch.zeros(3, 2),
            torch.zeros(2, 1).long(),
            torch.ones(2, 1, dtype=torch.bool),
            0.1,
        )


# ---------------------------------------------------------------------------- others


def test_diversity_loss_uniform_and_collapsed() -> None:
    groups, entries = 2, 320
    assert float(diversity_loss(torch.tensor(float(groups * entries)), groups * entries)) == 0.0
    collapsed = float(diversity_loss(torch.tensor(float(groups)), groups * entries))
    assert collapsed == pytest.approx(1 - 1 / entries)


def test_feature_penalty_ignores_padding() -> None:
    latents = torch.arange(24.0).view(2, 3, 4)
    lengths = torch.tensor([3, 1])
    pad_mask = lengths_to_mask(lengths, 3)
    real = torch.cat([latents[0], latents[1, :1]])  # 4 real frames x 4 channels
    expected = float(real.square().mean())
    assert float(feature_penalty(latents, pad_mask)) == pytest.approx(expected)
    noisy = latents.clone()
    noisy[1, 1:] = 1e6  # padded frames do not count
    assert float(feature_penalty(noisy, pad_mask)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="pad_mask"):
        feature_penalty(latents, pad_mask.float())
