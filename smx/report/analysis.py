"""Comparisons computed from a :class:`~smx.report.inputs.Study`, and the sentences that state them.

Rules, so that every sentence can be checked against the tables:

- a task's score for one upstream is that of its better probe (lowest WER/EER, highest
  accuracy), with that probe's spread;
- ``a`` beats ``b`` when it is better by at least the larger of the two standard deviations
  over seeds; a smaller difference is "within the spread";
- cost ratios divide by the baseline variant (the one whose mixer is MHSA, else the first
  pre-trained one); a variant whose encoder was imported has no pre-training cost and is left
  out of them, and when the baseline itself was imported no cost is compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from smx.bench.mixers import measured
from smx.report.inputs import UPSTREAMS, Probe, Spread, Study

Verdict = Literal["better", "worse", "within"]
BASELINE_MIXER = "mhsa"


def verdict(a: Spread, b: Spread, better: str) -> Verdict:
    """Whether ``a`` is better than ``b`` beyond the spread (the larger std of the two).

    Example
    -------
    >>> verdict(Spread(0.9, 0.01), Spread(0.8, 0.02), "higher")
    'better'
    >>> verdict(Spread(0.9, 0.2), Spread(0.8, 0.02), "higher")
    'within'
    >>> verdict(Spread(0.3, 0.0), Spread(0.2, 0.0), "lower")
    'worse'
    """
    diff = a.mean - b.mean if better == "higher" else b.mean - a.mean
    if abs(diff) < max(a.std, b.std) or diff == 0:
        return "within"
    return "better" if diff > 0 else "worse"


def task_score(result: Probe, upstream: str) -> tuple[str, Spread]:
    """(probe, score) of the better probe of ``upstream`` on the task's primary metric."""
    ranked = sorted(
        result.scores,
        key=lambda p: result.primary(p, upstream).mean * (1 if result.better == "lower" else -1),
    )
    return ranked[0], result.primary(ranked[0], upstream)


def best_scores(study: Study, task: str) -> dict[str, dict[str, Spread]]:
    """Per variant and upstream, the score of its better probe on ``task``'s primary metric.

    Arguments
    ---------
    study : Study
        The gathered study.
    task : str
        One of ``study.tasks``.

    Returns
    -------
    dict
        ``{variant: {upstream: Spread}}``, variants in the study's order and upstreams in
        :data:`~smx.report.inputs.UPSTREAMS`' order (pre-trained, random init, fbank).
    """
    return {
        v: {u: task_score(study.probes[(v, task)], u)[1] for u in UPSTREAMS} for v in study.variants
    }


def learnable(result: Probe) -> str:
    """Whether the task was learnable here: its fbank baseline against chance, in words.

    Example
    -------
    >>> spreads = lambda fbank: {"fbank": {"eer": fbank}}
    >>> probe = lambda fbank, chance: Probe("v", "speaker", "eer", "lower", 3,
    ...                                     {"xvector": spreads(fbank)}, chance)
    >>> learnable(probe(Spread(0.27, 0.02), 0.5))
    'yes (fbank 0.270 ± 0.020, chance 0.500)'
    >>> learnable(probe(Spread(0.49, 0.02), 0.5))
    'no (fbank 0.490 ± 0.020, chance 0.500)'
    >>> learnable(probe(Spread(0.49, 0.02), None))
    'not recorded'
    """
    if result.chance is None:
        return "not recorded"
    fbank = task_score(result, "fbank")[1]
    beats = verdict(fbank, Spread(result.chance, 0.0), result.better) == "better"
    return f"{'yes' if beats else 'no'} (fbank {fbank}, chance {result.chance:.3f})"


def pretrained_here(study: Study) -> list[str]:
    """The variants pre-trained by the study, in its order (not those whose encoder was
    imported: they have no training numbers)."""
    return [v for v in study.variants if not study.pretrain[v].imported]


def imported(study: Study) -> list[str]:
    """The variants whose encoder was imported instead of pre-trained, in the study's order."""
    return [v for v in study.variants if study.pretrain[v].imported]


def baseline_variant(study: Study) -> str:
    """The variant every cost ratio divides by: the MHSA one, else the first pre-trained one
    (else the first)."""
    for v in study.variants:
        if study.pretrain[v].mixer == BASELINE_MIXER:
            return v
    return (pretrained_here(study) or study.variants)[0]


def cost_baseline(study: Study) -> str | None:
    """:func:`baseline_variant` when it was pre-trained here, else None (nothing to divide by)."""
    base = baseline_variant(study)
    return None if study.pretrain[base].imported else base


@dataclass(frozen=True)
class CostRatio:
    """A variant's pre-training step time and peak memory over the baseline's."""

    variant: str
    baseline: str
    time: float
    memory: float


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or None when either is unknown (an imported encoder's cost).

    Example
    -------
    >>> ratio(0.8, 1.0), ratio(None, 1.0), ratio(0.8, None)
    (0.8, None, None)
    """
    return None if value is None or base is None else value / base


def cost_ratios(study: Study) -> list[CostRatio]:
    """Step time and peak memory of every other pre-trained variant over the baseline's; none
    when the baseline's encoder was imported."""
    base = cost_baseline(study)
    if base is None:
        return []
    b = study.pretrain[base]
    out = []
    for v in pretrained_here(study):
        p = study.pretrain[v]
        time, memory = (
            ratio(p.step_time_s, b.step_time_s),
            ratio(p.peak_memory_mb, b.peak_memory_mb),
        )
        if v != base and time is not None and memory is not None:
            out.append(CostRatio(v, base, time, memory))
    return out


def beaten_tasks(study: Study, variant: str, against: str) -> tuple[int, list[str]]:
    """How many tasks the pre-trained encoder won against ``against``; the others, and why."""
    wins, misses = 0, []
    for task in study.tasks:
        result = study.probes[(variant, task)]
        outcome = verdict(
            task_score(result, "pretrained")[1], task_score(result, against)[1], result.better
        )
        if outcome == "better":
            wins += 1
        else:
            misses.append(f"{task}: {'within the spread' if outcome == 'within' else 'worse'}")
    return wins, misses


def pretraining_helps(study: Study, variant: str) -> str:
    """One sentence: on how many tasks the pre-trained encoder beat random init and fbank.

    Example: "the pre-trained summarymixing encoder beat random init on 3/4 tasks (not on
    speaker: within the spread) and fbank features on 4/4 tasks".
    """
    total = len(study.tasks)
    parts = []
    for against, name in (("random_init", "random init"), ("fbank", "fbank features")):
        wins, misses = beaten_tasks(study, variant, against)
        not_on = f" (not on {'; '.join(misses)})" if misses else ""
        parts.append(f"{name} on {wins}/{total} tasks{not_on}")
    return f"the pre-trained {variant} encoder beat {parts[0]} and {parts[1]}"


def task_winner(study: Study, task: str) -> str:
    """One sentence: which variant's pre-trained encoder scored best on ``task``, spread considered.

    Each variant is compared with the best of the others on its better probe.
    """
    results = {v: study.probes[(v, task)] for v in study.variants}
    first = results[study.variants[0]]
    metric, better = first.primary_metric, first.better
    scores = {v: task_score(r, "pretrained") for v, r in results.items()}
    sign = 1 if better == "lower" else -1
    order = sorted(study.variants, key=lambda v: sign * scores[v][1].mean)
    shown = ", ".join(f"{v} {scores[v][1]} ({scores[v][0]})" for v in order)
    head = f"{task} ({metric}, {better} is better): {shown}"
    if len(order) < 2:
        return head
    best, runner = order[0], order[1]
    if scores[best][1].mean == scores[runner][1].mean:
        return f"{head}: {best} and {runner} tie"
    if verdict(scores[best][1], scores[runner][1], better) == "better":
        return f"{head}: {best} wins"
    return f"{head}: {best} leads {runner} within the spread"


def finetune_sentence(study: Study) -> str:
    """One sentence on the fine-tuned test error rate per variant, pre-trained against random
    init, on the ASR metric the study compares (``downstream.asr_metric``: CER where every
    WER stays near 1).

    Fine-tuning runs once per (variant, init), so there is no spread to compare with.
    """
    metric = study.asr_metric

    def test_score(variant: str, init: str) -> float:
        return float(getattr(study.finetune[variant].inits[init], metric)["test"])

    parts = []
    for v in study.variants:
        pre, rand = test_score(v, "pretrained"), test_score(v, "random_init")
        word = "lower" if pre < rand else ("higher" if pre > rand else "equal")
        parts.append(f"{v} {pre:.3f} vs {rand:.3f} ({word} from pre-training)")
    scores = {v: test_score(v, "pretrained") for v in study.variants}
    best = min(study.variants, key=scores.__getitem__)
    lowest = (
        f"lowest after pre-training: {best}"
        if list(scores.values()).count(scores[best]) == 1
        else "no single lowest after pre-training"
    )
    return (
        f"fine-tuned test {metric.upper()} from the pre-trained encoder vs from random init "
        f"(one run each, no spread): {', '.join(parts)}; {lowest}"
    )


def bench_sentences(study: Study) -> list[str]:
    """At the longest benchmarked input, each mixer's step time and memory over MHSA's."""
    out = []
    records = study.bench.records
    for objective in sorted({r["objective"] for r in records}):
        points = [r for r in records if r["objective"] == objective and measured(r)]
        with_ratio = [r for r in points if "time_ratio" in r and r["kind"] != BASELINE_MIXER]
        if not with_ratio:
            continue
        longest = max(r["seconds"] for r in with_ratio)
        parts = [
            f"{r['kind']} {r['time_ratio']:.2f}x the time and {r['mem_ratio']:.2f}x the memory"
            for r in with_ratio
            if r["seconds"] == longest
        ]
        out.append(
            f"in the scaling benchmark ({objective}, {longest:g} s input, one step), "
            f"against MHSA: {'; '.join(parts)}"
        )
    return out


def cost_sentence(study: Study, c: CostRatio) -> str:
    """One variant's pre-training step time and peak memory against the baseline's."""
    p, b = study.pretrain[c.variant], study.pretrain[c.baseline]
    return (
        f"{c.variant}'s pre-training step took {c.time:.2f}x {c.baseline}'s time and "
        f"{c.memory:.2f}x its peak memory (median step {p.step_time_s:.3f} s vs "
        f"{b.step_time_s:.3f} s; {p.peak_memory_mb:.0f} vs {b.peak_memory_mb:.0f} MB)"
    )


def import_sentence(study: Study, variant: str) -> str:
    """Where an imported encoder came from, and that it has no pre-training cost.

    When it is the baseline, that no pre-training costs are compared.
    """
    p = study.pretrain[variant]
    line = (
        f"{variant}'s encoder was imported from {p.imported_from} (SpeechBrain) instead of "
        "pre-trained here, so it has no pre-training cost to compare"
    )
    if variant == baseline_variant(study) and pretrained_here(study):
        line += f"; as {variant} is the baseline, no pre-training costs are compared"
    return line


def findings(study: Study) -> list[str]:
    """The generated sentences of the report's summary, in the order shown."""
    lines = [cost_sentence(study, c) for c in cost_ratios(study)]
    lines += [import_sentence(study, v) for v in imported(study)]
    lines += bench_sentences(study)
    lines += [pretraining_helps(study, v) for v in study.variants]
    lines += [task_winner(study, t) for t in study.tasks]
    lines.append(finetune_sentence(study))
    return [line + "." for line in lines]
