"""Span masks (wav2vec 2.0) and block masks (BEST-RQ): counts, bounds, alignment, determinism."""

from __future__ import annotations

import pytest
import torch

from smx.ssl.masking import block_mask, num_spans, span_mask


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D bool tensor as (start, length)."""
    out, start = [], None
    for t, v in enumerate([*row.tolist(), False]):
        if v and start is None:
            start = t
        elif not v and start is not None:
            out.append((start, t - start))
            start = None
    return out


# ---------------------------------------------------------------------------- span masks


def test_num_spans_formula() -> None:
    # floor(0.65 * 100 / 10 + u + 1) = floor(7.5 + u)
    assert num_spans(100, 0.65, 10, 0.0) == 7
    assert num_spans(100, 0.65, 10, 0.49) == 7
    assert num_spans(100, 0.65, 10, 0.5) == 8
    assert num_spans(0, 0.65, 10, 0.99) == 1


def test_span_mask_same_count_per_utterance_and_within_real_length() -> None:
    lengths = torch.tensor([100, 80, 60])
    # 0.4 * 60 / 4 = 6 exactly, so n = floor(6 + u + 1) = 7 for every u: 28 frames
    for seed in range(20):
        mask = span_mask(lengths, 110, 0.4, 4, gen(seed))
        assert mask.shape == (3, 110) and mask.dtype == torch.bool
        assert mask.sum(1).tolist() == [28, 28, 28]
        for b, length in enumerate(lengths.tolist()):
            assert not mask[b, length:].any()


def test_span_mask_count_takes_both_values_of_the_random_draw() -> None:
    # 0.5 * 60 / 4 = 7.5: n = 8 (u < 0.5) or 9 (u >= 0.5), i.e. 32 or 36 frames
    counts = {
        int(span_mask(torch.tensor([60, 90]), 90, 0.5, 4, gen(s)).sum(1)[0]) for s in range(40)
    }
    assert counts == {32, 36}


def test_span_mask_spans_have_the_mask_length() -> None:
    # one utterance of 1000 frames, n = 0.03 * 1000 / 10 + 1 = 4 spans of 10 frames
    clean = 0
    for seed in range(40):
        row = span_mask(torch.tensor([1000]), 1000, 0.03, 10, gen(seed))[0]
        assert int(row.sum()) == 40
        lengths = [length for _, length in runs(row)]
        if all(length % 10 == 0 for length in lengths):
            clean += 1  # no overlap: every run is one span (or adjacent spans)
    # P(two of 4 spans overlap) ~ 6 * 19 / 991 ~ 11 %, so most draws are clean
    assert clean >= 30


def test_span_mask_caps_the_count_at_the_shortest_utterance() -> None:
    # L_min = 5 = mask_length, n = floor(0.5 + u + 1) in {1, 2}: M = min(5 or 10, 5) = 5
    lengths = torch.tensor([5, 30, 17])
    for seed in range(10):
        mask = span_mask(lengths, 30, 0.5, 5, gen(seed))
        assert mask.sum(1).tolist() == [5, 5, 5]
        assert mask[0, :5].all()  # the shortest utterance is fully masked
        assert not mask[2, 17:].any()


def test_span_mask_utterance_shorter_than_a_span_does_not_crash() -> None:
    # SpeechBrain's guard crashes here; M = min(n * 5, 3) = 3 frames everywhere
    mask = span_mask(torch.tensor([3, 30]), 30, 0.5, 5, gen(0))
    assert mask.sum(1).tolist() == [3, 3]
    assert mask[0, :3].all() and not mask[0, 3:].any()


def test_span_mask_empty_utterance_masks_nothing() -> None:
    mask = span_mask(torch.tensor([0, 30]), 30, 0.5, 5, gen(0))
    assert not mask.any()


def test_span_mask_is_deterministic_per_generator() -> None:
    lengths = torch.tensor([200, 150])
    a = span_mask(lengths, 200, 0.65, 10, gen(7))
    b = span_mask(lengths, 200, 0.65, 10, gen(7))
    c = span_mask(lengths, 200, 0.65, 10, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_span_mask_does_not_depend_on_padding() -> None:
    lengths = torch.tensor([50, 40])
    short = span_mask(lengths, 50, 0.65, 10, gen(3))
    long = span_mask(lengths, 80, 0.65, 10, gen(3))
    assert torch.equal(long[:, :50], short) and not long[:, 50:].any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lengths": torch.tensor([5, 40])}, "max_len=30"),
        ({"lengths": torch.tensor([[5, 4]])}, r"shape \[B\]"),
        ({"lengths": torch.tensor([5.0, 4.0])}, "integer"),
        ({"mask_prob": 1.0}, "mask_prob"),
        ({"mask_length": 0}, "mask_length"),
    ],
)
@pytest.mark.parametrize("fn", [span_mask, block_mask])
def test_masks_reject_bad_arguments(fn, kwargs: dict, match: str) -> None:
    args = {"lengths": torch.tensor([20, 30]), "max_len": 30, "mask_prob": 0.5, "mask_length": 4}
    with pytest.raises(ValueError, match=match):
        fn(**{**args, **kwargs}, generator=gen(0))


# ---------------------------------------------------------------------------- block masks


def test_block_mask_blocks_start_on_multiples_of_the_mask_length() -> None:
    lengths = torch.tensor([64, 50, 61])
    for seed in range(20):
        mask = block_mask(lengths, 64, 0.125, 4, gen(seed))
        for b, length in enumerate(lengths.tolist()):
            for start, run in runs(mask[b]):
                assert start % 4 == 0 and run % 4 == 0
            assert not mask[b, length:].any()
        # the last complete block of utterance 1 ends at 48: frames 48, 49 are never masked
        assert not mask[1, 48:].any()


def test_block_mask_count_and_masked_fraction() -> None:
    # 0.125 * 64 = 8 exactly: n = max(1, floor(8 + u)) = 8 blocks of 4 = 32 frames each
    lengths = torch.tensor([64, 100])
    mask = block_mask(lengths, 100, 0.125, 4, gen(0))
    assert mask.sum(1).tolist() == [32, 32]
    # the BEST-RQ recipe's values on equal lengths: n = floor(0.15 * 1000 + u) = 150 -> 60 %
    mask = block_mask(torch.tensor([1000, 1000]), 1000, 0.15, 4, gen(1))
    assert mask.float().mean().item() == pytest.approx(0.6)


def test_block_mask_is_per_utterance() -> None:
    lengths = torch.tensor([40, 400])
    beyond_shortest = 0
    for seed in range(10):
        mask = block_mask(lengths, 400, 0.15, 4, gen(seed))
        assert mask.sum(1).tolist() == [24, 24]  # n = floor(6 + u) = 6
        beyond_shortest += int(mask[1, 40:].any())
    assert beyond_shortest >= 8  # the long utterance is masked over its whole length
    equal = block_mask(torch.tensor([400, 400]), 400, 0.15, 4, gen(0))
    assert not torch.equal(equal[0], equal[1])


def test_block_mask_too_short_masks_nothing_and_at_least_one_block_otherwise() -> None:
    assert not block_mask(torch.tensor([3, 40]), 40, 0.15, 4, gen(0)).any()
    # 0.15 * 4 + u < 1 mostly, but n = max(1, .) = 1 block
    assert block_mask(torch.tensor([4, 40]), 40, 0.15, 4, gen(0)).sum(1).tolist() == [4, 4]


def test_block_mask_is_deterministic_per_generator() -> None:
    lengths = torch.tensor([300, 200])
    a = block_mask(lengths, 300, 0.15, 4, gen(5))
    assert torch.equal(a, block_mask(lengths, 300, 0.15, 4, gen(5)))
    assert not torch.equal(a, block_mask(lengths, 300, 0.15, 4, gen(6)))
