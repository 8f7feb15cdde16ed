"""Metrics against hand-computed cases: WER/CER edit operations, EER and minDCF, accuracy."""

from __future__ import annotations

import random

import pytest
import torchaudio

from smx.downstream.metrics import (
    ErrorCounts,
    accuracy,
    align_counts,
    cer,
    eer,
    min_dcf,
    operating_points,
    wer,
)


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", (0, 0, 0)),
        ("the cat sat on the mat", "the bat sat on the mat", (1, 0, 0)),  # substitution
        ("the cat sat on the mat", "the cat on the mat", (0, 1, 0)),  # deletion
        ("the cat sat on the mat", "the cat sat down on the mat", (0, 0, 1)),  # insertion
        # 'a' deleted, 'x' for 'c', 'f' inserted (every other alignment costs more)
        ("a b c d e", "b x d e f", (1, 1, 1)),
        ("one two", "", (0, 2, 0)),
        ("", "hello there", (0, 0, 2)),
    ],
)
def test_word_alignment_counts(ref: str, hyp: str, expected: tuple[int, int, int]) -> None:
    c = align_counts(ref.split(), hyp.split())
    assert (c.substitutions, c.deletions, c.insertions) == expected
    assert c.ref_len == len(ref.split())


def test_corpus_wer_sums_errors_over_reference_words() -> None:
    refs = ["the cat sat on the mat", "hello world"]
    hyps = ["the bat sat on mat", "hello big world"]
    c = wer(refs, hyps)
    # utterance 1: cat->bat (S), 'the' deleted (D); utterance 2: 'big' inserted (I)
    assert (c.substitutions, c.deletions, c.insertions, c.ref_len) == (1, 1, 1, 8)
    assert c.rate == pytest.approx(3 / 8)


def test_cer_counts_characters_and_spaces() -> None:
    c = cer(["abc de"], ["abx d"])
    # c->x (S), 'e' deleted (D); the space matches
    assert (c.substitutions, c.deletions, c.insertions, c.ref_len) == (1, 1, 0, 6)
    assert c.rate == pytest.approx(2 / 6)
    assert cer(["ab"], ["ab c"]).insertions == 2  # ' ' and 'c'


def test_error_rate_of_empty_reference() -> None:
    assert ErrorCounts().rate == 0.0
    assert wer([""], ["x"]).rate == float("inf")


def test_edit_distance_agrees_with_torchaudio() -> None:
    rng = random.Random(0)
    for _ in range(200):
        ref = [rng.choice("abc") for _ in range(rng.randint(0, 8))]
        hyp = [rng.choice("abcd") for _ in range(rng.randint(0, 8))]
        assert align_counts(ref, hyp).errors == torchaudio.functional.edit_distance(ref, hyp)


def test_wer_needs_one_hypothesis_per_reference() -> None:
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        wer(["a b"], [])


# a known score set: 4 target and 4 non-target trials, one of each on the wrong side
TARGETS = [0.9, 0.8, 0.7, 0.4]
NONTARGETS = [0.6, 0.5, 0.3, 0.2]
SCORES = TARGETS + NONTARGETS
LABELS = [1] * 4 + [0] * 4


def test_operating_points_by_hand() -> None:
    far, frr = operating_points(SCORES, LABELS)
    # thresholds 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2 (accept score >= threshold)
    assert far.tolist() == [0, 0, 0, 0, 0.25, 0.5, 0.5, 0.75, 1.0]
    assert frr.tolist() == [1, 0.75, 0.5, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0]


def test_eer_on_known_score_set() -> None:
    # at threshold 0.45: 1 of 4 targets (0.4) rejected, 1 of 4 non-targets (0.5) accepted
    assert eer(SCORES, LABELS) == pytest.approx(0.25)
    assert eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0  # separable
    assert eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(1.0)  # inverted
    # FAR/FRR move from (0.25, 0.5) to (0.25, 0): they cross at 0.25 on that segment
    assert eer([1.0, 0.5, 0.3, 0.2, 0.1, 0.0], [1, 0, 1, 0, 0, 0]) == pytest.approx(0.25)
    # ties: every score equal, the curve jumps from (0, 1) to (1, 0): crossing at 0.5
    assert eer([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.5)


def test_min_dcf_on_known_score_set() -> None:
    # p_target 0.5: cost 0.5*FRR + 0.5*FAR, lowest at (FAR, FRR) = (0, 0.25): 0.125,
    # normalised by min(0.5, 0.5) -> 0.25
    assert min_dcf(SCORES, LABELS, p_target=0.5) == pytest.approx(0.25)
    # p_target 0.01: a false alarm costs 99x a miss: the best point accepts no non-target,
    # (0, 0.25): 0.01 * 0.25 / 0.01 = 0.25
    assert min_dcf(SCORES, LABELS) == pytest.approx(0.25)
    assert min_dcf([0.9, 0.1], [1, 0]) == 0.0
    # c_miss 10, p 0.5: (0.5, 0) costs 0.25 -> 0.25 / min(5, 0.5) = 0.5
    assert min_dcf(SCORES, LABELS, p_target=0.5, c_miss=10.0) == pytest.approx(0.5)


def test_verification_metrics_reject_bad_trials() -> None:
    with pytest.raises(ValueError, match="both target and non-target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="one label per score"):
        eer([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="1 \\(target\\) or 0"):
        min_dcf([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="p_target"):
        min_dcf(SCORES, LABELS, p_target=1.0)


def test_accuracy() -> None:
    assert accuracy([1, 2, 3, -1], [1, 2, 0, 0]) == 0.5  # -1: a class unseen in training
    with pytest.raises(ValueError, match="at least one"):
        accuracy([], [])
