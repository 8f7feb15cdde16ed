"""Task metrics: word and character error rates, EER and minDCF, accuracy.

Error rates come from a Levenshtein alignment that also counts substitutions, deletions and
insertions; corpus-level rates divide the summed errors by the summed reference lengths.
Verification metrics sweep the decision threshold over every score: EER is where the false
acceptance and false rejection rates cross (linear interpolation between operating points),
minDCF the lowest normalised detection cost ``C_miss P_miss p + C_fa P_fa (1 - p)`` divided
by ``min(C_miss p, C_fa (1 - p))`` (the NIST SRE / VoxCeleb convention).

Example
-------
>>> wer(["the cat sat"], ["the bat sat down"]).rate
0.6666666666666666
>>> round(eer([0.9, 0.8, 0.7, 0.4, 0.6, 0.5, 0.3, 0.2], [1, 1, 1, 1, 0, 0, 0, 0]), 4)
0.25
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the VoxCeleb / NIST SRE 2008 operating point of minDCF
P_TARGET = 0.01


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations turning references into hypotheses, and the reference length.

    Counts add up over utterances with ``+``.

    Arguments
    ---------
    substitutions : int
        Reference tokens replaced by another token.
    deletions : int
        Reference tokens missing from the hypothesis.
    insertions : int
        Hypothesis tokens with no reference token.
    ref_len : int
        Tokens of the reference.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """``errors / ref_len`` (0 for an empty reference without errors, else inf)."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.ref_len

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.ref_len + other.ref_len,
        )


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """Minimum-edit alignment of two token sequences, with its operations counted.

    Among alignments of minimum cost, substitutions are preferred to a deletion plus an
    insertion.

    Example
    -------
    >>> align_counts(list("abcd"), list("xbd"))
    ErrorCounts(substitutions=1, deletions=1, insertions=0, ref_len=4)
    """
    n, m = len(ref), len(hyp)
    # cost[i][j]: (edits, substitutions, deletions, insertions) of ref[:i] -> hyp[:j]
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        row = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            diag = prev[j - 1]
            if ref[i - 1] == hyp[j - 1]:
                best = diag
            else:
                best = (diag[0] + 1, diag[1] + 1, diag[2], diag[3])
            up, left = prev[j], row[j - 1]
            deletion = (up[0] + 1, up[1], up[2] + 1, up[3])
            insertion = (left[0] + 1, left[1], left[2], left[3] + 1)
            for cand in (deletion, insertion):
                if cand[0] < best[0]:
                    best = cand
            row.append(best)
        prev = row
    _, subs, dels, ins = prev[m]
    return ErrorCounts(subs, dels, ins, n)


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
    """ValueError unless there is one hypothesis per reference."""
    if len(refs) != len(hyps):
        raise ValueError(
            f"hyps: expected one hypothesis per reference ({len(refs)}), got {len(hyps)}"
        )


def wer(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    """Word error counts over a corpus (words split on white space).

    Raises
    ------
    ValueError
        When ``refs`` and ``hyps`` differ in length.

    Example
    -------
    >>> c = wer(["a b c", "d e"], ["a x c y", "e"])
    >>> (c.substitutions, c.deletions, c.insertions, c.ref_len), c.rate
    ((1, 1, 1, 5), 0.6)
    """
    _check_pairs(refs, hyps)
    total = ErrorCounts()
    for ref, hyp in zip(refs, hyps, strict=True):
        total = total + align_counts(ref.split(), hyp.split())
    return total


def cer(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    """Character error counts over a corpus (spaces count as characters).

    Raises
    ------
    ValueError
        When ``refs`` and ``hyps`` differ in length.

    Example
    -------
    >>> c = cer(["ab c"], ["abc"])
    >>> (c.deletions, c.ref_len), c.rate
    ((1, 4), 0.25)
    """
    _check_pairs(refs, hyps)
    total = ErrorCounts()
    for ref, hyp in zip(refs, hyps, strict=True):
        total = total + align_counts(list(ref), list(hyp))
    return total


def accuracy(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """Fraction of predictions equal to their label.

    Raises
    ------
    ValueError
        When there is not one prediction per label, or no label at all.

    Example
    -------
    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    if len(labels) != len(predictions) or not labels:
        raise ValueError(
            f"predictions: expected one per label and at least one, got {len(predictions)} "
            f"for {len(labels)} labels"
        )
    return sum(int(a == b) for a, b in zip(labels, predictions, strict=True)) / len(labels)


def operating_points(
    scores: Sequence[float], labels: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """False acceptance and false rejection rates at every threshold, strictest first.

    Point ``k`` accepts the trials whose score is at least the ``k``-th highest distinct
    score; point 0 accepts nothing (FAR 0, FRR 1), the last accepts everything.

    Arguments
    ---------
    scores : Sequence[float]
        One score per trial (higher = more likely the same speaker).
    labels : Sequence[int]
        1 for a target (same-speaker) trial, 0 for a non-target trial.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        FAR and FRR, one entry per distinct score plus the initial point.

    Raises
    ------
    ValueError
        When there is not one label per score, a label is neither 0 nor 1, or the trials are
        all targets or all non-targets.

    Example
    -------
    >>> far, frr = operating_points([0.9, 0.1, 0.5], [1, 0, 0])
    >>> far.tolist(), frr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [1.0, 0.0, 0.0, 0.0])
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(
            f"labels: expected one label per score ({s.size}), got shape {list(y.shape)}"
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels: every label must be 1 (target) or 0 (non-target)")
    n_target, n_nontarget = int(y.sum()), int((1 - y).sum())
    if n_target == 0 or n_nontarget == 0:
        raise ValueError(
            f"labels: need both target and non-target trials, got {n_target} and {n_nontarget}"
        )
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_group = np.r_[s[1:] != s[:-1], True]  # ties are accepted together
    accepted_targets = np.cumsum(y)[last_of_group]
    accepted_nontargets = np.cumsum(1 - y)[last_of_group]
    far = np.r_[0.0, accepted_nontargets / n_nontarget]
    frr = np.r_[1.0, 1.0 - accepted_targets / n_target]
    return far, frr


def eer(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Equal error rate: where the FAR and FRR curves cross (in ``[0, 1]``).

    Between the last operating point with ``FAR < FRR`` and the first with
    ``FAR >= FRR`` the curve is taken as a straight line. The arguments and errors are
    those of :func:`operating_points`.

    Example
    -------
    >>> eer([1.0, 0.5, 0.3, 0.2], [1, 0, 1, 0])
    0.5
    >>> eer([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    0.0
    """
    far, frr = operating_points(scores, labels)
    k = int(np.argmax(far >= frr))  # the last point (accept all) has FAR 1 >= FRR 0
    if k == 0:
        return 0.0
    d0, d1 = frr[k - 1] - far[k - 1], frr[k] - far[k]  # d0 > 0 >= d1
    t = d0 / (d0 - d1)
    return float(far[k - 1] + t * (far[k] - far[k - 1]))


def min_dcf(
    scores: Sequence[float],
    labels: Sequence[int],
    p_target: float = P_TARGET,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Minimum normalised detection cost over all thresholds (see the module docstring).

    Arguments
    ---------
    scores : Sequence[float]
        One score per trial (higher = more likely the same speaker).
    labels : Sequence[int]
        1 for a target trial, 0 for a non-target trial.
    p_target : float
        Prior probability of a target trial, in ``(0, 1)``.
    c_miss : float
        Cost of rejecting a target trial.
    c_fa : float
        Cost of accepting a non-target trial.

    Returns
    -------
    float
        The lowest cost, divided by that of the better trivial decision.

    Raises
    ------
    ValueError
        When ``p_target`` is outside ``(0, 1)``, or as :func:`operating_points`.

    Example
    -------
    >>> min_dcf([1.0, 0.5, 0.3, 0.2], [1, 0, 1, 0], p_target=0.5)
    0.5
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target: must lie in (0, 1), got {p_target}")
    far, frr = operating_points(scores, labels)
    cost = c_miss * frr * p_target + c_fa * far * (1.0 - p_target)
    return float(cost.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))
