"""The wav2vec 2.0 objective end to end on random audio with a tiny encoder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from ssl_tiny import grad_norm, random_batch, tiny_wav2vec2

from smx.nn.build import build_encoder, build_fbank, build_subsampling
from smx.ssl.objective import LossOutput
from smx.ssl.wav2vec2 import Wav2Vec2Objective

MIXERS = ["summarymixing", "mhsa"]
METRICS = {
    "loss",
    "contrastive",
    "contrastive_per_frame",
    "diversity",
    "feature_penalty",
    "accuracy",
    "code_perplexity",
    "prob_perplexity",
    "gumbel_temp",
    "masked_fraction",
    "num_masked",
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Intra-op threads fight other processes on this 2-core machine: 1 thread is ~50x faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def latent_lengths(objective: Wav2Vec2Objective, batch: dict) -> torch.Tensor:
    frames = objective.fbank.output_lengths(batch["audio_lens"])
    return objective.extractor.output_lengths(frames)


@pytest.mark.parametrize("mixer", MIXERS)
def test_forward_gives_a_finite_loss_and_consistent_metrics(mixer: str) -> None:
    torch.manual_seed(0)
    objective = tiny_wav2vec2(mixer)
    batch = random_batch()  # 2.0 s and 1.5 s
    out = objective(batch)
    assert isinstance(out, LossOutput) and out.loss.shape == () and torch.isfinite(out.loss)
    m = out.metrics
    assert set(m) == METRICS and all(isinstance(v, float) for v in m.values())
    # latents: 201 -> 100 -> 98 and 151 -> 75 -> 73 frames; n = floor(0.65 * 73 / 10 + u + 1)
    # is 5 or 6, so 50 or 60 masked frames per utterance
    assert latent_lengths(objective, batch).tolist() == [98, 73]
    assert m["num_masked"] in (100.0, 120.0)
    assert m["masked_fraction"] == pytest.approx(m["num_masked"] / (98 + 73))
    assert 0.0 <= m["accuracy"] <= 1.0
    assert 2.0 <= m["code_perplexity"] <= 32.0 and 2.0 <= m["prob_perplexity"] <= 32.0
    assert m["diversity"] == pytest.approx((32 - m["prob_perplexity"]) / 32, rel=1e-5)
    assert m["gumbel_temp"] == 2.0
    assert m["contrastive_per_frame"] == pytest.approx(m["contrastive"] / m["num_masked"])
    # L = L_c + N * 0.1 * L_d (the feature penalty weight is 0 by default)
    expected = m["contrastive"] + m["num_masked"] * 0.1 * m["diversity"]
    assert m["loss"] == pytest.approx(expected, rel=1e-5)


def test_feature_penalty_weight_enters_the_loss() -> None:
    torch.manual_seed(0)
    m = tiny_wav2vec2(feature_penalty_weight=0.5)(random_batch()).metrics
    assert m["feature_penalty"] > 0
    expected = m["contrastive"] + m["num_masked"] * (
        0.1 * m["diversity"] + 0.5 * m["feature_penalty"]
    )
    assert m["loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mixer", MIXERS)
def test_gradients_reach_encoder_quantizer_heads_and_cnn(mixer: str) -> None:
    torch.manual_seed(0)
    objective = tiny_wav2vec2(mixer)
    objective(random_batch()).loss.backward()
    for module in (
        objective.extractor,
        objective.encoder.input_proj,
        objective.encoder.blocks[0].mixer,
        objective.encoder.blocks[1],
        objective.quantizer,
        objective.target_proj,
        objective.final_proj,
    ):
        assert grad_norm(module) > 0, type(module).__name__
    assert objective.encoder.mask_embedding.grad.abs().sum() > 0
    assert objective.quantizer.codebook.grad.abs().sum() > 0


def test_masks_are_per_utterance_equal_and_on_real_latent_frames() -> None:
    objective = tiny_wav2vec2()
    seen = {}

    def capture(module, args, kwargs):
        seen["lengths"], seen["masked"] = args[1], kwargs["masked"]

    objective.encoder.register_forward_pre_hook(capture, with_kwargs=True)
    objective(random_batch((2.0, 1.0, 1.5)))
    masked, lengths = seen["masked"], seen["lengths"]
    assert lengths.tolist() == [98, 48, 73]
    counts = masked.sum(1)
    assert (counts == counts[0]).all() and int(counts[0]) > 0
    for b, length in enumerate(lengths.tolist()):
        assert not masked[b, length:].any()


@pytest.mark.parametrize("mixer", MIXERS)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(mixer: str) -> None:
    # fixed masks, negatives and Gumbel noise: 20 Adam steps must cut the loss by >= 20 %
    # (these runs usually cut it by about half: 20 % leaves a wide margin)
    torch.manual_seed(0)
    objective = tiny_wav2vec2(mixer)
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
    torch.manual_seed(0)
    objective = tiny_wav2vec2().train(train)
    outputs = []
    for extra in (0, 4000):  # the padded batch has 25 more latent frames of padding
        objective.generator.manual_seed(3)
        torch.manual_seed(4)
        outputs.append(objective(random_batch(extra=extra)).metrics)
    plain, padded = outputs
    assert padded["num_masked"] == plain["num_masked"]
    for key in ("loss", "contrastive", "accuracy", "prob_perplexity", "feature_penalty"):
        assert padded[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5), key


def test_same_generator_state_same_loss_other_seed_other_masks() -> None:
    objective = tiny_wav2vec2().eval()
    batch = random_batch()
    losses = []
    for seed in (5, 5, 6):
        objective.generator.manual_seed(seed)
        losses.append(objective(batch).metrics["loss"])
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_set_step_anneals_the_gumbel_temperature() -> None:
    objective = tiny_wav2vec2()
    objective.set_step(300_000)
    assert objective(random_batch()).metrics["gumbel_temp"] == pytest.approx(0.4463, abs=1e-4)


@pytest.mark.parametrize("block", ["transformer", "branchformer"])
def test_other_blocks_train(block: str) -> None:
    torch.manual_seed(0)
    objective = tiny_wav2vec2(block=block)
    out = objective(random_batch())
    out.loss.backward()
    assert torch.isfinite(out.loss) and grad_norm(objective.encoder.blocks[0]) > 0


def test_rejects_an_encoder_without_mask_embedding_and_bad_batches() -> None:
    from ssl_tiny import W2V_TINY, tiny_model_cfg

    from smx.config import Wav2Vec2Cfg

    model = tiny_model_cfg()
    extractor = build_subsampling(model.frontend)
    encoder = build_encoder(model, extractor.output_dim)  # no mask embedding
    cfg = Wav2Vec2Cfg.model_validate(W2V_TINY)
    with pytest.raises(ValueError, match="mask embedding"):
        Wav2Vec2Objective(build_fbank(model.frontend, 16000), extractor, encoder, cfg)
    objective = tiny_wav2vec2()
    with pytest.raises(ValueError, match="audio_lens"):
        objective({"audio": torch.randn(2, 16000)})
    with pytest.raises(ValueError, match="float tensor"):
        objective(
            {"audio": torch.ones(2, 16000, dtype=torch.long), "audio_lens": torch.tensor([3, 4])}
        )
    with pytest.raises(ValueError, match="integer tensor"):
        objective({"audio": torch.randn(2, 16000), "audio_lens": torch.tensor([1.0, 2.0])})
