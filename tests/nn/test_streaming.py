"""Streaming: chunk configurations, the dynamic chunk sampler, chunked SummaryMixing and its
step API, against a dense reference built from an explicit T x T visibility matrix."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from smx.nn.mixers.summary_mixing import SummaryMixing
from smx.nn.streaming import ChunkConfig, sample_chunk_config


def make(mode: str, d_model: int = 8) -> SummaryMixing:
    heads = 1 if mode == "fast" else 2
    return SummaryMixing(
        d_model, mode, local_hidden=(12,), local_out=4, summary_hidden=(8,), heads=heads
    )


def batch(lengths: list[int], time: int, d_model: int = 8, dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(len(lengths), time, d_model, generator=generator, dtype=dtype)
    pad_mask = torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]
    return x, pad_mask


def visibility(time: int, chunk_size: int, left_chunks: int | None) -> torch.Tensor:
    """``[T, T]`` bool: frame t (row) sees frame j (column)."""
    chunk = torch.arange(time) // chunk_size
    t, j = chunk[:, None], chunk[None, :]
    visible = j <= t
    if left_chunks is not None:
        visible &= j >= t - left_chunks
    return visible


def dense_reference(module: SummaryMixing, x, pad_mask, visible) -> torch.Tensor:
    """The cell with summary_t = sum_j V[t,j] m_j s_j / max(sum_j V[t,j] m_j, 1), densely."""
    keep = pad_mask[..., None].to(x.dtype)
    weights = visible[None].to(x.dtype) * keep.transpose(1, 2)  # [B, T, T]
    if module.mode == "fast":
        local, values = module.projection(x).chunk(2, dim=-1)
    else:
        values = module.summary_mlp(x)
        local = module.local_mlp(x) if module.mode == "full" else None
    summary = (weights @ values) / weights.sum(-1, keepdim=True).clamp(min=1)  # [B, T, Ds]
    if module.mode == "lite":
        return summary * keep
    if module.mode == "full":
        local, summary = module.local_norm(local * keep), module.summary_norm(summary)
    concat = torch.cat([local, summary], dim=-1)  # [B, T, Dl + Ds]
    return module.activation(module.combiner(concat)) * keep


CHUNKINGS = [
    (13, 20, None),  # C >= T: offline
    (13, 13, 0),  # C == T
    (13, 1, None),  # frame-level causal
    (13, 1, 0),
    (13, 1, 3),
    (13, 4, 0),
    (13, 4, 1),
    (13, 4, None),
    (12, 4, 2),  # T multiple of C
    (13, 5, 10),  # L larger than the number of chunks
]


@pytest.mark.parametrize("mode", ["full", "lite", "fast"])
@pytest.mark.parametrize(("time", "chunk_size", "left_chunks"), CHUNKINGS)
def test_forward_chunked_equals_dense_reference(mode, time, chunk_size, left_chunks):
    torch.manual_seed(0)
    module = make(mode).double().eval()
    x, pad_mask = batch([time, 9, 3, 0], time, dtype=torch.float64)
    got = module.forward_chunked(x, pad_mask, chunk_size, left_chunks)
    expected = dense_reference(module, x, pad_mask, visibility(time, chunk_size, left_chunks))
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    if chunk_size >= time:
        torch.testing.assert_close(got, module(x, pad_mask), atol=1e-10, rtol=1e-10)


def test_chunking_changes_the_output():
    torch.manual_seed(0)
    module = make("full").eval()
    x, pad_mask = batch([12, 12], 12)
    offline = module(x, pad_mask)
    chunked = module.forward_chunked(x, pad_mask, 4, 0)
    torch.testing.assert_close(chunked[:, 8:], module(x[:, 8:], pad_mask[:, 8:]))
    assert not torch.allclose(chunked[:, :8], offline[:, :8])


STEP_CASES = [(4, None), (4, 0), (4, 2), (1, 2), (5, 1), (3, None), (30, None)]


@pytest.mark.parametrize("mode", ["full", "lite", "fast"])
@pytest.mark.parametrize(("chunk_size", "left_chunks"), STEP_CASES)
def test_step_api_equals_forward_chunked(mode, chunk_size, left_chunks):
    torch.manual_seed(0)
    module = make(mode).eval()
    time = 23  # not a multiple of most chunk sizes: the final chunk is partial
    x, pad_mask = batch([23, 17, 6], time)
    expected = module.forward_chunked(x, pad_mask, chunk_size, left_chunks)
    state = module.init_state(3, x.device, x.dtype)
    outputs = []
    for start in range(0, time, chunk_size):
        chunk = slice(start, start + chunk_size)
        y, state = module.forward_step(x[:, chunk], pad_mask[:, chunk], state, left_chunks)
        outputs.append(y)
        kept = state.chunk_totals.shape[1]
        assert kept == (0 if left_chunks is None else min(left_chunks, start // chunk_size + 1))
    torch.testing.assert_close(torch.cat(outputs, dim=1), expected, atol=1e-5, rtol=1e-5)
    assert state.count.tolist() == [23.0, 17.0, 6.0]


def test_step_does_not_modify_the_state():
    module = make("full").eval()
    x, pad_mask = batch([4, 2], 4)
    state = module.init_state(2, x.device, x.dtype)
    _, new_state = module.forward_step(x, pad_mask, state, None)
    assert (state.total == 0).all() and (state.count == 0).all()
    assert new_state.count.tolist() == [4.0, 2.0]


# ------------------------------------------------------------------ ChunkConfig


def test_chunk_config():
    config = ChunkConfig(8, 2)
    assert config.left_frames == 16
    assert ChunkConfig(8, None).left_frames is None
    assert ChunkConfig(1, 0).left_frames == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.chunk_size = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        ChunkConfig(0, None)
    with pytest.raises(ValueError, match="left_chunks"):
        ChunkConfig(4, -1)


# ------------------------------------------------------------------ sample_chunk_config

DCT = {
    "chunkwise_prob": 0.6,
    "chunk_min": 3,
    "chunk_max": 7,
    "limited_left_prob": 0.75,
    "left_min": 0,
    "left_max": 4,
}


def draws(seed: int, n: int, **overrides) -> list[ChunkConfig | None]:
    generator = torch.Generator().manual_seed(seed)
    return [sample_chunk_config(generator, **(DCT | overrides)) for _ in range(n)]


def test_sampler_is_deterministic():
    assert draws(3, 50) == draws(3, 50)
    assert draws(3, 50) != draws(4, 50)


def test_sampler_bounds_and_frequencies():
    samples = draws(0, 2000)
    chunked = [c for c in samples if c is not None]
    limited = [c for c in chunked if c.left_chunks is not None]
    assert abs(1 - len(chunked) / len(samples) - 0.4) < 0.05
    assert abs(len(limited) / len(chunked) - 0.75) < 0.05
    assert {c.chunk_size for c in chunked} == {3, 4, 5, 6, 7}
    assert {c.left_chunks for c in limited} == {0, 1, 2, 3, 4}


def test_sampler_extreme_probabilities():
    assert all(c is None for c in draws(0, 100, chunkwise_prob=0.0))
    always = draws(0, 100, chunkwise_prob=1.0, limited_left_prob=0.0)
    assert all(c is not None and c.left_chunks is None for c in always)
    fixed = draws(
        0,
        20,
        chunkwise_prob=1.0,
        limited_left_prob=1.0,
        chunk_min=5,
        chunk_max=5,
        left_min=2,
        left_max=2,
    )
    assert set(fixed) == {ChunkConfig(5, 2)}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chunkwise_prob": 1.5}, r"chunkwise_prob must be in \[0, 1\]"),
        ({"chunkwise_prob": -0.1}, r"chunkwise_prob must be in \[0, 1\]"),
        ({"chunkwise_prob": float("nan")}, r"chunkwise_prob must be in \[0, 1\]"),
        ({"limited_left_prob": 2.0}, r"limited_left_prob must be in \[0, 1\]"),
        ({"chunk_min": 8, "chunk_max": 4}, "chunk_min=8 must not exceed chunk_max=4"),
        ({"left_min": 5, "left_max": 4}, "left_min=5 must not exceed left_max=4"),
        ({"chunk_min": 0}, "chunk_min must be an integer >= 1"),
        ({"left_min": -1}, "left_min must be an integer >= 0"),
    ],
)
def test_sampler_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        draws(0, 1, **overrides)
