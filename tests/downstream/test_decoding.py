"""CTC decoding: greedy by hand, prefix beam search against exhaustive path enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from smx.downstream.decoding import beam_decode, greedy_decode, prefix_beam_search


def log_probs(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows).clamp(min=1e-12).log()


def test_greedy_merges_repeats_and_drops_blanks() -> None:
    # best path: a a - a b b - (blank = 0, a = 1, b = 2) -> "a a b"
    path = [1, 1, 0, 1, 2, 2, 0]
    rows = [[0.8 if v == t else 0.1 for v in range(3)] for t in path]
    lp = log_probs(rows)[None]  # [1, 7, 3]
    assert greedy_decode(lp, torch.tensor([7])) == [[1, 1, 2]]
    assert greedy_decode(lp, torch.tensor([3])) == [[1]]  # only the real frames count


def test_beam_search_finds_the_label_greedy_misses() -> None:
    # two frames of p(blank) = 0.6, p(a) = 0.4: the best path is blank-blank ("", 0.36) but the
    # label "a" has three paths: a-a, a-blank, blank-a = 0.16 + 0.24 + 0.24 = 0.64
    lp = log_probs([[0.6, 0.4], [0.6, 0.4]])
    assert greedy_decode(lp[None], torch.tensor([2])) == [[]]
    assert prefix_beam_search(lp, beam_size=2) == [1]
    assert beam_decode(lp[None], torch.tensor([2]), ["<blank>", "a"]) == [[1]]


def label_probabilities(lp: torch.Tensor) -> dict[tuple[int, ...], float]:
    """p(label sequence) summed over every CTC path (exhaustive; tiny T and V only)."""
    probs: dict[tuple[int, ...], float] = {}
    steps, vocab = lp.shape
    for path in itertools.product(range(vocab), repeat=steps):
        p = math.exp(sum(float(lp[t, v]) for t, v in enumerate(path)))
        label = tuple(k for k, _ in itertools.groupby(path) if k != 0)
        probs[label] = probs.get(label, 0.0) + p
    return probs


def test_prefix_beam_search_is_exact_with_a_wide_beam() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        lp = torch.log_softmax(2 * torch.randn(5, 3, generator=gen), dim=-1)
        probs = label_probabilities(lp)
        found = tuple(prefix_beam_search(lp, beam_size=64))
        assert probs[found] == pytest.approx(max(probs.values()), rel=1e-9)


def test_repeated_labels_need_a_blank_between() -> None:
    # a a with no blank in between collapses to one 'a'; a blank a gives "a a"
    lp = log_probs([[0.01, 0.98, 0.01], [0.98, 0.01, 0.01], [0.01, 0.98, 0.01]])
    assert prefix_beam_search(lp, beam_size=4) == [1, 1]
    lp = log_probs([[0.01, 0.98, 0.01], [0.01, 0.98, 0.01], [0.01, 0.98, 0.01]])
    assert prefix_beam_search(lp, beam_size=4) == [1]


def test_beam_decode_respects_lengths_and_rejects_bad_beam() -> None:
    lp = log_probs([[0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])[None].repeat(2, 1, 1)  # [2, 3, 2]
    hyps = beam_decode(lp, torch.tensor([3, 1]), ["<blank>", "a"])
    assert hyps == [[1, 1], [1]]
    with pytest.raises(ValueError, match="beam_size"):
        prefix_beam_search(lp[0], beam_size=0)
