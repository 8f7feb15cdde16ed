"""Dynamic chunk training: with ``model.streaming.enabled`` every training batch runs the
encoder with a chunk configuration drawn from the objective's generator; evaluation and a
disabled config run full context."""

from __future__ import annotations

import pytest
import torch
from ssl_tiny import random_batch, tiny_bestrq, tiny_wav2vec2

from smx.config import Params, StreamingCfg
from smx.downstream.ctc import build_ctc_model
from smx.nn.streaming import ChunkConfig

#: always chunked, 4 frames, 1 left chunk
FIXED = StreamingCfg(
    enabled=True,
    chunkwise_prob=1.0,
    chunk_min=4,
    chunk_max=4,
    limited_left_prob=1.0,
    left_min=1,
    left_max=1,
)


def chunks_seen(encoder: torch.nn.Module, run) -> list:
    """The ``chunk`` argument of every encoder call while ``run()`` runs."""
    seen: list = []

    def hook(_module, _args, kwargs):
        seen.append(kwargs.get("chunk"))

    handle = encoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("build", [tiny_bestrq, tiny_wav2vec2])
def test_training_batches_get_a_drawn_chunk_and_evaluation_full_context(build) -> None:
    objective = build()
    objective.streaming = FIXED
    batch = random_batch()
    objective.train()
    assert chunks_seen(objective.encoder, lambda: objective(batch)) == [ChunkConfig(4, 1)]
    objective.eval()
    with torch.no_grad():
        assert chunks_seen(objective.encoder, lambda: objective(batch)) == [None]
    objective.train()
    objective.streaming = StreamingCfg()  # enabled: false
    assert chunks_seen(objective.encoder, lambda: objective(batch)) == [None]


def test_the_chunked_loss_differs_from_full_context_and_repeats_with_the_seed() -> None:
    def loss(streaming: StreamingCfg | None) -> float:
        torch.manual_seed(0)  # the same weights
        objective = tiny_bestrq(seed=3)
        objective.streaming = streaming
        return float(objective.train()(random_batch()).loss.detach())

    assert loss(FIXED) == loss(FIXED)
    assert loss(FIXED) != loss(None)


def test_the_drawn_chunks_vary_between_batches_within_the_configured_ranges() -> None:
    objective = tiny_bestrq()
    objective.streaming = StreamingCfg(
        enabled=True, chunkwise_prob=0.5, chunk_min=2, chunk_max=9, left_min=0, left_max=3
    )
    objective.train()
    seen = []
    for _ in range(12):
        seen += chunks_seen(objective.encoder, lambda: objective(random_batch()))
    chunked = [c for c in seen if c is not None]
    assert None in seen and chunked  # both full-context and chunked batches
    assert all(2 <= c.chunk_size <= 9 for c in chunked)
    assert all(c.left_chunks is None or 0 <= c.left_chunks <= 3 for c in chunked)
    assert len({c.chunk_size for c in chunked}) > 1


def test_fine_tuning_draws_chunks_from_the_config() -> None:
    tiny = {
        "frontend": {"kind": "conv2d", "conv2d_channels": [8, 8]},
        "encoder": {"num_layers": 1, "d_model": 16, "d_ffn": 32, "kernel_size": 3},
        "mixer": {
            "kind": "summarymixing",
            "local_hidden": [16],
            "local_out": 16,
            "summary_hidden": [16],
            "heads": 2,
        },
        "streaming": FIXED.model_dump(),
    }
    model = build_ctc_model(Params.model_validate({"model": tiny}), vocab_size=5)
    batch = {
        **random_batch(),
        "tokens": torch.tensor([[1, 2], [3, 0]]),
        "token_lens": torch.tensor([2, 1]),
    }
    model.train()
    assert chunks_seen(
        model.encoder, lambda: model.log_probs(batch["audio"], batch["audio_lens"])
    ) == [ChunkConfig(4, 1)]
    model.eval()
    assert chunks_seen(
        model.encoder, lambda: model.log_probs(batch["audio"], batch["audio_lens"])
    ) == [None]
