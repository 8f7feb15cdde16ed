"""Gumbel product quantiser, perplexity, temperature schedule, random-projection quantiser."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from smx.config import Wav2Vec2Cfg
from smx.ssl.quantizer import (
    GumbelVectorQuantizer,
    RandomProjectionQuantizer,
    gumbel_temperature,
    perplexity,
    stack_frames,
)


def identity_codebook_quantizer(input_dim: int = 6) -> GumbelVectorQuantizer:
    """G = 2 groups of V = 4 entries whose code vectors are the unit vectors of R^4."""
    q = GumbelVectorQuantizer(input_dim, groups=2, entries=4, code_dim=8)
    with torch.no_grad():
        q.codebook.copy_(torch.eye(4).expand(2, 4, 4))
    return q


# ---------------------------------------------------------------------------- Gumbel


def test_training_codes_are_one_hot_per_group_and_match_indices() -> None:
    torch.manual_seed(0)
    q = identity_codebook_quantizer().train()
    out = q(torch.randn(50, 6))
    codes = out.codes.view(50, 2, 4)  # with an identity codebook, codes are the one-hots
    assert torch.allclose(codes, F.one_hot(out.indices, 4).float(), atol=1e-6)
    assert codes.dtype == torch.float32


def test_training_is_stochastic_and_reproducible_with_a_generator() -> None:
    q = identity_codebook_quantizer().train()
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    a = q(x, generator=torch.Generator().manual_seed(1)).indices
    b = q(x, generator=torch.Generator().manual_seed(1)).indices
    c = q(x, generator=torch.Generator().manual_seed(2)).indices
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eval_is_the_argmax_of_the_logits() -> None:
    q = identity_codebook_quantizer().eval()
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    out = q(x)
    expected = q.logits(x).view(30, 2, 4).argmax(-1)
    assert torch.equal(out.indices, expected)
    assert torch.equal(q(x).indices, out.indices)  # no noise
    picked = torch.stack([q.codebook[g, out.indices[:, g]] for g in range(2)], 1)  # [N, G, d]
    assert torch.equal(out.codes, picked.reshape(30, 8))


def test_straight_through_gradient_reaches_logits_and_codebook() -> None:
    torch.manual_seed(0)
    q = GumbelVectorQuantizer(6, groups=2, entries=4, code_dim=8).train()
    x = torch.randn(20, 6, requires_grad=True)
    out = q(x)
    (out.codes * torch.randn(20, 8)).sum().backward()
    assert q.logits.weight.grad.abs().sum() > 0
    assert q.codebook.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_prob_perplexity_is_differentiable_code_perplexity_is_not() -> None:
    q = GumbelVectorQuantizer(6, groups=2, entries=4, code_dim=8)
    out = q(torch.randn(20, 6))
    assert out.prob_perplexity.requires_grad
    assert not out.code_perplexity.requires_grad


def test_float32_under_autocast() -> None:
    q = GumbelVectorQuantizer(6, groups=2, entries=4, code_dim=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(torch.randn(5, 6).bfloat16())
    assert out.codes.dtype == torch.float32
    assert out.prob_perplexity.dtype == torch.float32


def test_perplexity_of_known_distributions() -> None:
    v = 7
    uniform = torch.full((10, 3, v), 1 / v)
    assert float(perplexity(uniform)) == pytest.approx(3 * v)  # V per group
    collapsed = F.one_hot(torch.zeros(10, 3, dtype=torch.long), v).float()
    assert float(perplexity(collapsed)) == pytest.approx(3.0)
    # p = (1/2, 1/4, 1/4): H = 1.5 ln 2, exp(H) = 2 ** 1.5 (one group)
    probs = torch.tensor([[[0.5, 0.25, 0.25]]])
    assert float(perplexity(probs)) == pytest.approx(2**1.5)
    # the mean over frames is taken first: two one-hot frames on different codes -> 2
    two = F.one_hot(torch.tensor([[0], [1]]), 3).float()  # [2, 1, 3]
    assert float(perplexity(two)) == pytest.approx(2.0)


def test_code_and_prob_perplexity_of_the_quantizer() -> None:
    q = GumbelVectorQuantizer(4, groups=1, entries=4, code_dim=4).eval()
    with torch.no_grad():
        q.logits.weight.copy_(torch.eye(4) * 10)
    out = q(torch.eye(4))  # frame i picks entry i: hard assignments uniform over 4
    assert float(out.code_perplexity) == pytest.approx(4.0)
    assert float(out.prob_perplexity.detach()) == pytest.approx(4.0, rel=1e-5)  # symmetric
    same = q(torch.eye(4)[[0, 0, 0]])
    assert float(same.code_perplexity) == pytest.approx(1.0)


def test_temperature_schedule_values() -> None:
    defaults = Wav2Vec2Cfg()
    args = (defaults.gumbel_temp_start, defaults.gumbel_temp_decay, defaults.gumbel_temp_min)
    assert gumbel_temperature(0, *args) == 2.0
    assert gumbel_temperature(300_000, *args) == pytest.approx(2 * math.exp(-1.5), rel=1e-5)
    assert gumbel_temperature(300_000, *args) == pytest.approx(0.446, abs=5e-4)
    assert gumbel_temperature(10_000, *args) == pytest.approx(2 * 0.999995**10_000)
    # the floor 0.25 is reached at ln(8) / -ln(0.999995) ~ 415 888 steps
    assert gumbel_temperature(415_000, *args) > 0.25
    assert gumbel_temperature(417_000, *args) == 0.25
    q = GumbelVectorQuantizer(4, groups=1, entries=4, code_dim=4)
    q.set_step(300_000)
    assert q.temperature == gumbel_temperature(300_000, 2.0, 0.999995, 0.25)
    with pytest.raises(ValueError, match="step"):
        gumbel_temperature(-1, *args)


def test_gumbel_quantizer_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="code_dim"):
        GumbelVectorQuantizer(4, groups=3, entries=4, code_dim=8)
    with pytest.raises(ValueError, match="temp_min"):
        GumbelVectorQuantizer(4, temp_start=0.1, temp_min=0.2)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        GumbelVectorQuantizer(4, groups=1, entries=4, code_dim=4)(torch.zeros(2, 3, 4))


# ---------------------------------------------------------------------------- random projection


def test_stack_frames_concatenates_consecutive_frames() -> None:
    feats = torch.arange(14.0).view(1, 7, 2)  # frames [0,1], [2,3], ..., [12,13]
    stacked = stack_frames(feats, 3)
    assert stacked.shape == (1, 3, 6)
    assert stacked[0, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert stacked[0, 2].tolist() == [12, 13, 0, 0, 0, 0]  # zero-padded to 9 frames


def test_random_projection_is_frozen() -> None:
    q = RandomProjectionQuantizer(12, code_dim=4, codebook_size=10, num_codebooks=2)
    assert list(q.parameters()) == []
    assert set(q.state_dict()) == {"projection", "codebooks"}  # saved with the model
    x = torch.randn(3, 12, requires_grad=True)
    assert not q.project(x).requires_grad and not q(x).requires_grad


def test_random_projection_is_seeded() -> None:
    a, b = RandomProjectionQuantizer(12, seed=3), RandomProjectionQuantizer(12, seed=3)
    c = RandomProjectionQuantizer(12, seed=4)
    assert torch.equal(a.projection, b.projection) and torch.equal(a.codebooks, b.codebooks)
    assert not torch.equal(a.projection, c.projection)


def test_random_projection_init_scales() -> None:
    q = RandomProjectionQuantizer(320, code_dim=16, codebook_size=8192)
    bound = math.sqrt(6 / (320 + 16))  # Xavier-uniform
    assert q.projection.abs().max() <= bound
    assert float(q.projection.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.allclose(q.codebooks.norm(dim=-1), torch.ones(1, 8192), atol=1e-5)


def test_projection_is_normalised_along_features_not_time() -> None:
    q = RandomProjectionQuantizer(12, code_dim=4, codebook_size=10, num_codebooks=2)
    x = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(0))
    projected = q.project(x)  # [B, T, K, code_dim]
    assert projected.shape == (2, 5, 2, 4)
    assert torch.allclose(projected.norm(dim=-1), torch.ones(2, 5, 2), atol=1e-5)
    # not normalised over time (as the SpeechBrain quantiser used for arXiv 2409.02596 did)
    assert not torch.allclose(projected.norm(dim=1), torch.ones(2, 2, 4), atol=1e-2)
    # hence a frame's target does not depend on the other frames (or on padding)
    targets = q(x)
    padded = torch.cat([x, torch.zeros(2, 3, 12)], dim=1)
    assert torch.equal(q(padded)[:, :5], targets)
    assert torch.equal(q(x[:, :2]), targets[:, :2])


def test_nearest_code_is_the_argmax_cosine_on_a_hand_built_codebook() -> None:
    q = RandomProjectionQuantizer(2, code_dim=2, codebook_size=4)
    with torch.no_grad():
        q.projection.copy_(torch.eye(2)[None])
        # unit vectors at 0, 90, 180 and 270 degrees
        q.codebooks.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]]))
    x = torch.tensor([[3.0, 0.5], [0.2, 9.0], [-2.0, 1.0], [-1.0, -5.0], [30.0, 5.0]])
    assert q(x)[:, 0].tolist() == [0, 1, 2, 3, 0]  # scale does not matter


def test_several_codebooks_have_independent_targets() -> None:
    q = RandomProjectionQuantizer(20, code_dim=8, codebook_size=32, num_codebooks=3)
    targets = q(torch.randn(400, 20, generator=torch.Generator().manual_seed(0)))
    assert targets.shape == (400, 3) and targets.dtype == torch.long
    assert not torch.equal(targets[:, 0], targets[:, 1])
    assert int(targets.max()) < 32 and int(targets.min()) >= 0
    with pytest.raises(ValueError, match="20 features"):
        q(torch.randn(4, 19))
