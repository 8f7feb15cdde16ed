"""The BEST-RQ objective end to end on random audio with a tiny encoder."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from ssl_tiny import grad_norm, random_batch, tiny_bestrq, tiny_model_cfg

from smx.config import BestRQCfg
from smx.nn.build import build_encoder, build_fbank
from smx.nn.frontend import CnnLatentExtractor
from smx.ssl.bestrq import BestRQObjective, target_perplexity
from smx.ssl.quantizer import stack_frames

MIXERS = ["summarymixing", "mhsa"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Intra-op threads fight other processes on this 2-core machine: 1 thread is ~50x faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mixer", MIXERS)
def test_forward_gives_a_finite_loss_and_consistent_metrics(mixer: str) -> None:
    torch.manual_seed(0)
    objective = tiny_bestrq(mixer)
    out = objective(random_batch())  # 201 and 151 feature frames
    assert out.loss.shape == () and torch.isfinite(out.loss)
    m = out.metrics
    assert set(m) == {"loss", "accuracy", "masked_fraction", "target_perplexity", "num_masked"}
    # untrained head: cross-entropy close to log(64) = 4.16
    assert abs(m["loss"] - math.log(64)) < 0.6
    # n = floor(0.15 * 151 + u) = 22 or 23 blocks of 4 frames per utterance; each block is
    # one encoder frame
    assert m["num_masked"] in (44.0, 46.0)
    assert m["masked_fraction"] == pytest.approx(m["num_masked"] * 4 / (201 + 151))
    assert 1.0 <= m["target_perplexity"] <= min(64.0, m["num_masked"])
    assert 0.0 <= m["accuracy"] <= 1.0


def test_targets_come_from_clean_features_and_masked_frames_get_noise() -> None:
    torch.manual_seed(0)
    objective = tiny_bestrq(noise_std=0.5)
    seen = {}
    objective.quantizer.register_forward_pre_hook(lambda m, args: seen.update(q_in=args[0]))
    objective.subsampling.register_forward_pre_hook(lambda m, args: seen.update(noisy=args[0]))
    batch = random_batch()
    objective(batch)
    clean, _ = objective.fbank(batch["audio"], batch["audio_lens"])
    clean = F.pad(clean, (0, 0, 0, -clean.shape[1] % 4))  # [B, 204, 80]
    noisy = seen["noisy"]
    masked = (noisy != clean).any(-1)  # [B, 204] frames that were replaced
    blocks = masked.view(2, -1, 4)
    assert (blocks.all(-1) == blocks.any(-1)).all()  # whole aligned blocks of 4 frames
    assert masked.sum(1).tolist()[0] == masked.sum(1).tolist()[1] > 0
    assert not masked[1, 151:].any()
    assert float(noisy[masked].std()) == pytest.approx(0.5, rel=0.05)
    assert float(noisy[masked].mean()) == pytest.approx(0.0, abs=0.02)
    # the quantiser saw the clean stacks of exactly the masked encoder frames
    assert torch.equal(seen["q_in"], stack_frames(clean, 4)[blocks.all(-1)])


@pytest.mark.parametrize("mixer", MIXERS)
def test_gradients_reach_front_end_encoder_and_heads_not_the_quantizer(mixer: str) -> None:
    torch.manual_seed(0)
    objective = tiny_bestrq(mixer)
    frozen = {k: v.clone() for k, v in objective.quantizer.state_dict().items()}
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.1)
    objective(random_batch()).loss.backward()
    for module in (objective.subsampling, objective.encoder.blocks[0].mixer, objective.heads):
        assert grad_norm(module) > 0, type(module).__name__
    optimizer.step()
    assert list(objective.quantizer.parameters()) == []
    for key, value in objective.quantizer.state_dict().items():
        assert torch.equal(value, frozen[key])


def test_several_codebooks_have_one_head_each() -> None:
    torch.manual_seed(0)
    objective = tiny_bestrq(num_codebooks=3)
    seen = []
    for head in objective.heads:
        head.register_forward_hook(lambda m, args, out: seen.append(out))
    targets = []
    objective.quantizer.register_forward_hook(lambda m, args, out: targets.append(out))
    out = objective(random_batch())
    assert len(objective.heads) == 3 and targets[0].shape[1] == 3
    expected = sum(F.cross_entropy(seen[k], targets[0][:, k]) for k in range(3)) / 3
    assert out.metrics["loss"] == pytest.approx(expected.item(), rel=1e-6)
    out.loss.backward()
    assert all(grad_norm(head) > 0 for head in objective.heads)


@pytest.mark.parametrize("mixer", MIXERS)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(mixer: str) -> None:
    # fixed masks and noise: 20 Adam steps must cut the cross-entropy by >= 20 %
    # (these runs usually cut it by about half: 20 % leaves a wide margin)
    torch.manual_seed(0)
    objective = tiny_bestrq(mixer)
    batch = random_batch()
    optimizer = torch.optim.Adam(objective.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        objective.generator.manual_seed(0)
        torch.manual_seed(1)
        loss = objective(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("train", [False, True])
def test_loss_is_invariant_to_extra_padding(train: bool) -> None:
    # with noise_std = 0 the masked frames are zeros, so nothing depends on the batch shape
    torch.manual_seed(0)
    objective = tiny_bestrq(noise_std=0.0).train(train)
    outputs = []
    for extra in (0, 4000):  # 25 more feature frames of padding
        objective.generator.manual_seed(3)
        outputs.append(objective(random_batch(extra=extra)).metrics)
    plain, padded = outputs
    assert padded["num_masked"] == plain["num_masked"]
    for key in ("loss", "accuracy", "target_perplexity", "masked_fraction"):
        assert padded[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5), key


def test_same_generator_state_same_masks() -> None:
    objective = tiny_bestrq().eval()
    batch = random_batch()
    results = []
    for seed in (5, 5, 6):
        objective.generator.manual_seed(seed)
        torch.manual_seed(0)
        results.append(objective(batch).metrics["loss"])
    assert results[0] == results[1] and results[0] != results[2]


@pytest.mark.parametrize("block", ["transformer", "branchformer"])
def test_other_blocks_train(block: str) -> None:
    torch.manual_seed(0)
    objective = tiny_bestrq(block=block)
    out = objective(random_batch())
    out.loss.backward()
    assert torch.isfinite(out.loss) and grad_norm(objective.encoder.blocks[0]) > 0


def test_front_end_subsampling_must_equal_stack_frames() -> None:
    model = tiny_model_cfg()
    extractor = CnnLatentExtractor(80, channels=(8, 8))  # 2x subsampling, not 4x
    encoder = build_encoder(model, extractor.output_dim)
    objective = BestRQObjective(
        build_fbank(model.frontend, 16000), extractor, encoder, BestRQCfg(codebook_size=8)
    )
    with pytest.raises(ValueError, match="stack_frames=4"):
        objective(random_batch())


def test_target_perplexity_counts_used_codes() -> None:
    uniform = torch.arange(8)[:, None] % 4  # 4 codes used equally
    assert float(target_perplexity(uniform, 16)) == pytest.approx(4.0)
    assert float(target_perplexity(torch.zeros(8, 1, dtype=torch.long), 16)) == pytest.approx(1.0)
    # two codebooks: 4 and 1 -> mean 2.5
    both = torch.cat([uniform, torch.zeros(8, 1, dtype=torch.long)], 1)
    assert float(target_perplexity(both, 16)) == pytest.approx(2.5)
