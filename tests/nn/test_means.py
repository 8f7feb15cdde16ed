"""Masked, chunked and exponentially decayed means against hand-computed values and loops."""

from __future__ import annotations

import pytest
import torch

from smx.nn.means import chunked_mean, decayed_mean, masked_mean

# ------------------------------------------------------------------ masked_mean


def test_masked_mean_by_hand():
    """A 2 x 3 batch: padding excluded, the all-padding row finite (0)."""
    values = torch.tensor(
        [
            [[1.0, 10.0], [2.0, 20.0], [6.0, 60.0]],  # 3 real frames
            [[4.0, -4.0], [1e6, 1e6], [float("nan"), float("inf")]],  # 1 real frame
        ]
    )
    pad_mask = torch.tensor([[True, True, True], [True, False, False]])
    mean = masked_mean(values, pad_mask)  # [2, 2]
    assert mean.tolist() == [[3.0, 30.0], [4.0, -4.0]]  # (1+2+6)/3, (10+20+60)/3; 4/1
    empty = masked_mean(values, torch.zeros(2, 3, dtype=torch.bool))
    assert empty.tolist() == [[0.0, 0.0], [0.0, 0.0]]  # nothing real, even nan/inf padding


def test_masked_mean_random_rows():
    values = torch.randn(2, 4, 3)
    pad_mask = torch.tensor([[False] * 4, [True, False, True, False]])
    mean = masked_mean(values, pad_mask)
    assert (mean[0] == 0).all()
    torch.testing.assert_close(mean[1], (values[1, 0] + values[1, 2]) / 2)


def test_masked_mean_keepdim_and_mask_over_features():
    values = torch.tensor([[[1.0, 3.0], [5.0, 7.0], [100.0, 100.0]]])  # [1, 3, 2]
    pad_mask = torch.tensor([[True, True, False]])
    assert masked_mean(values, pad_mask, keepdim=True).tolist() == [[[3.0, 5.0]]]
    per_entry = pad_mask[..., None].expand(1, 3, 2)  # average over time and features
    assert masked_mean(values, per_entry).tolist() == [4.0]  # (1 + 3 + 5 + 7) / 4
    assert masked_mean(values, per_entry, keepdim=True).shape == (1, 1, 1)


# ------------------------------------------------------------------ chunked_mean


def naive_chunked_mean(values, pad_mask, chunk_size, left_chunks):
    """Loop over utterances and chunks, averaging the real frames of the visible window."""
    batch, time, features = values.shape
    chunks = -(-time // chunk_size)
    out = torch.zeros(batch, chunks, features, dtype=torch.float64)
    for b in range(batch):
        for c in range(chunks):
            first = 0 if left_chunks is None else max(0, c - left_chunks) * chunk_size
            last = min((c + 1) * chunk_size, time)
            rows = [values[b, t].double() for t in range(first, last) if pad_mask[b, t]]
            if rows:
                out[b, c] = torch.stack(rows).mean(0)
    return out


def test_chunked_mean_by_hand():
    values = torch.tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]]])
    pad_mask = torch.tensor([[True, True, True, False, True]])
    # chunks {1, 2}, {3, -}, {5}
    everything = chunked_mean(values, pad_mask, chunk_size=2, left_chunks=None).flatten()
    assert everything.tolist() == [1.5, 2.0, 2.75]  # (1+2)/2, (1+2+3)/3, (1+2+3+5)/4
    own_chunk = chunked_mean(values, pad_mask, chunk_size=2, left_chunks=0).flatten()
    assert own_chunk.tolist() == [1.5, 3.0, 5.0]


@pytest.mark.parametrize(
    ("time", "chunk_size", "left_chunks"),
    [(11, 4, None), (11, 4, 0), (11, 3, 1), (12, 4, 2), (5, 8, None), (9, 1, 3)],
)
def test_chunked_mean_equals_naive_loop(time, chunk_size, left_chunks):
    torch.manual_seed(0)
    values = torch.randn(3, time, 4)
    pad_mask = torch.arange(time)[None] < torch.tensor([time, time // 2, 0])[:, None]
    got = chunked_mean(values, pad_mask, chunk_size, left_chunks)
    expected = naive_chunked_mean(values, pad_mask, chunk_size, left_chunks)
    torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=1e-6)
    assert (got[2] == 0).all()  # all-padding row


def test_chunked_mean_long_input_no_drift():
    """Window sums from float64 prefix sums stay exact far into a long input."""
    time, chunk_size = 20000, 4
    values = (
        torch.full((1, time, 1), 1000.0) + torch.arange(time, dtype=torch.float32)[None, :, None]
    )
    pad_mask = torch.ones(1, time, dtype=torch.bool)
    mean = chunked_mean(values, pad_mask, chunk_size, left_chunks=1)  # [1, N, 1]
    last = values[0, -2 * chunk_size :, 0].mean()
    torch.testing.assert_close(mean[0, -1, 0], last, atol=0, rtol=1e-6)


# ------------------------------------------------------------------ decayed_mean


def test_decayed_mean_by_hand():
    values = torch.tensor([[[2.0], [4.0], [8.0], [99.0]]])
    pad_mask = torch.tensor([[True, True, True, False]])
    mean = decayed_mean(values, pad_mask, decay=0.5)[0, :3, 0]
    expected = [
        (2 + 0.5 * 4 + 0.25 * 8) / (1 + 0.5 + 0.25),
        (0.5 * 2 + 4 + 0.5 * 8) / (0.5 + 1 + 0.5),
        (0.25 * 2 + 0.5 * 4 + 8) / (0.25 + 0.5 + 1),
    ]
    torch.testing.assert_close(mean, torch.tensor(expected))


@pytest.mark.parametrize(("time", "block"), [(40, 3), (40, 64), (150, 64), (5, 2)])
def test_decayed_mean_equals_dense_weights(time, block):
    """The two scans equal the naive ``T x T`` weighting ``decay^|t-j|`` over real frames."""
    torch.manual_seed(0)
    decay = 0.9
    values = torch.randn(3, time, 5, dtype=torch.float64)
    lengths = torch.tensor([time, time // 2, 1])
    pad_mask = torch.arange(time)[None] < lengths[:, None]
    lag = (torch.arange(time)[:, None] - torch.arange(time)[None, :]).abs()
    weights = (decay ** lag.double())[None] * pad_mask[:, None, :]  # [B, T, T]
    expected = (weights @ values) / weights.sum(-1, keepdim=True).clamp(min=1)
    got = decayed_mean(values, pad_mask, decay, block=block)
    torch.testing.assert_close(got[pad_mask], expected[pad_mask], atol=1e-10, rtol=1e-10)
    assert torch.isfinite(got).all()


def test_decayed_mean_all_padding_row_is_finite():
    values = torch.full((1, 6, 2), float("nan"))
    mean = decayed_mean(values, torch.zeros(1, 6, dtype=torch.bool), decay=0.9, block=4)
    assert (mean == 0).all()
