"""The probing protocol of one encoder on one task: upstreams x probes x seeds, then metrics.

For each upstream (the pre-trained encoder, its random-init twin, plain fbank features) the
hidden states of every utterance are extracted once (fbank's rows can come from a stored
:func:`probe_baseline` result instead: they do not depend on the encoder, so the pipeline
probes fbank once per task for every variant); then every probe of the task is trained
once per seed (``downstream.seeds`` seeds starting at ``params.seed``; ``downstream.workers``
trainings at once, :mod:`smx.downstream.jobs`) and scored on the task's scored utterances
(:func:`smx.downstream.tasks.scoring_splits`). The result is a JSON-ready dict::

    task, primary_metric, better ("lower" | "higher"), seeds, utterances, chance, beam_search,
    beam_size, probes: {probe: {upstream: {metrics: {name: {mean, std, values}},
                                layer_weights: {mean, std}, best_epoch: [...]}}}

``std`` is the sample standard deviation over seeds (0 for one seed). ``chance`` is the
primary score of an upstream that carries nothing (:func:`chance`; over folds, their mean).

A task with ``folds: session`` (``downstream.tasks``) is probed leave-one-session-out: the
states are extracted once, the probes trained and scored per fold, and each metric's
``mean``, ``std`` and ``values`` span every fold and seed; each metric adds ``fold_means`` (the
mean over seeds of each fold) and ``fold_std`` (their sample standard deviation), and the
result adds ``folds: {by: session, held_out: [...], utterances: [{train, dev, test}, ...]}``
(its ``utterances`` are summed over the folds).

Metrics per task: ``asr`` WER and CER with greedy decoding and with beam search
(``wer_beam``, ``cer_beam``); ``speaker`` EER and minDCF (p_target 0.01) of cosine scores
between held-out speakers (the corpus' ``trials.txt``); ``intent``, ``style`` and
``emotion`` accuracy.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from smx.atomic import write_json
from smx.config import PROBES, DownstreamCfg, Params, differences
from smx.downstream import metrics
from smx.downstream.decoding import BEAM_SIZE, beam_backend, beam_decode, greedy_decode
from smx.downstream.errors import ProbeError
from smx.downstream.features import extract
from smx.downstream.fit import Example
from smx.downstream.jobs import Job, JobResult, Split, run_jobs
from smx.downstream.plots import plot_layer_weights
from smx.downstream.state_cache import cached_states, open_cache
from smx.downstream.tasks import Item, TaskData, check_task, load_task_data, session_folds
from smx.downstream.upstream import (
    Upstream,
    fbank_upstream,
    is_mlflow_uri,
    load_upstream,
    random_upstream,
)

#: the metric a comparison is made on, and its direction (asr: ``downstream.asr_metric``,
#: lower is better; see :func:`primary_metric`)
PRIMARY = {
    "speaker": ("eer", "lower"),
    "intent": ("accuracy", "higher"),
    "style": ("accuracy", "higher"),
    "emotion": ("accuracy", "higher"),
}


def primary_metric(task: str, cfg: DownstreamCfg) -> tuple[str, str]:
    """The metric ``task`` is compared on and whether ``lower`` or ``higher`` is better.

    Example
    -------
    >>> primary_metric("asr", DownstreamCfg()), primary_metric("asr", DownstreamCfg(asr_metric="cer"))
    (('wer', 'lower'), ('cer', 'lower'))
    """
    if task == "asr":
        return cfg.asr_metric, "lower"
    return PRIMARY[task]


UPSTREAMS = ("pretrained", "random_init", "fbank")

#: told what was done (a short line) and how many probe trainings have finished
Progress = Callable[[str, int], None]


def examples(
    data: TaskData, items: Sequence[Item], feats: dict[str, torch.Tensor]
) -> list[Example]:
    """Cached states + targets: character ids for asr, class indices (-1 = unseen) otherwise."""
    out = []
    index = {c: i for i, c in enumerate(data.classes)}
    for item in items:
        if data.vocab is not None:
            target: Any = torch.tensor(data.vocab.encode(item.label), dtype=torch.long)
        else:
            target = index.get(item.label, -1)
        out.append(Example(item.id, item.duration, feats[item.id], target))
    return out


def score(
    data: TaskData,
    outputs: dict[str, torch.Tensor],
    test: Sequence[Example],
    beam_size: int = BEAM_SIZE,
) -> dict[str, float]:
    """The task's metrics from probe outputs on the test examples.

    Arguments
    ---------
    data : TaskData
        The task (vocabulary for asr, trials for speaker).
    outputs : dict[str, torch.Tensor]
        Probe outputs per example id: log-probs ``[T, V]`` (asr), an embedding (speaker) or
        logits (intent, style).
    test : Sequence[Example]
        The test examples, with their targets.
    beam_size : int
        Hypotheses kept per frame by the asr beam search.

    Returns
    -------
    dict[str, float]
        ``wer``, ``cer``, ``wer_beam``, ``cer_beam`` (asr); ``eer``, ``min_dcf`` (speaker);
        ``accuracy`` (intent, style).
    """
    if data.task == "asr":
        assert data.vocab is not None
        refs = [data.vocab.decode(e.target.tolist()) for e in test]
        lps = [outputs[e.id] for e in test]
        greedy = [greedy_decode(lp[None], torch.tensor([lp.shape[0]]))[0] for lp in lps]
        beam = [
            beam_decode(lp[None], torch.tensor([lp.shape[0]]), data.vocab.tokens, beam_size)[0]
            for lp in lps
        ]
        hyp_g = [data.vocab.decode(ids) for ids in greedy]
        hyp_b = [data.vocab.decode(ids) for ids in beam]
        return {
            "wer": metrics.wer(refs, hyp_g).rate,
            "cer": metrics.cer(refs, hyp_g).rate,
            "wer_beam": metrics.wer(refs, hyp_b).rate,
            "cer_beam": metrics.cer(refs, hyp_b).rate,
        }
    if data.task == "speaker":
        emb = {e.id: F.normalize(outputs[e.id], dim=-1) for e in test}
        scores = [float(emb[a] @ emb[b]) for _, a, b in data.trials]
        labels = [t[0] for t in data.trials]
        return {"eer": metrics.eer(scores, labels), "min_dcf": metrics.min_dcf(scores, labels)}
    predictions = [int(outputs[e.id].argmax()) for e in test]
    return {"accuracy": metrics.accuracy([e.target for e in test], predictions)}


def _spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value) and the values, rounded."""
    return {
        "mean": round(statistics.fmean(values), 6),
        "std": round(statistics.stdev(values), 6) if len(values) > 1 else 0.0,
        "values": [round(v, 6) for v in values],
    }


def aggregate(
    data: TaskData, runs: Sequence[JobResult], test: Sequence[Example], cfg: DownstreamCfg
) -> dict[str, Any]:
    """One probe on one upstream over its seeds: metrics, layer weights, best epochs.

    Arguments
    ---------
    data : TaskData
        The task.
    runs : Sequence[JobResult]
        The probe's trainings on the upstream, one per seed.
    test : Sequence[Example]
        The upstream's test examples.
    cfg : DownstreamCfg
        The ``downstream`` section (beam size).

    Returns
    -------
    dict[str, Any]
        ``{metrics: {name: {mean, std, values}}, layer_weights: {mean, std}, best_epoch}``.
    """
    return aggregate_folds([(data, runs, test)], cfg, folded=False)


#: one fold of a probe on an upstream: the fold's task data, its trainings, its test examples
Fold = tuple[TaskData, Sequence[JobResult], Sequence[Example]]


def aggregate_folds(
    folds: Sequence[Fold], cfg: DownstreamCfg, folded: bool = True
) -> dict[str, Any]:
    """:func:`aggregate` over every fold and seed; ``folded`` adds ``fold_means``, ``fold_std``."""
    per_fold = [[score(d, r.outputs, test, cfg.beam_size) for r in runs] for d, runs, test in folds]
    scores = [s for fold in per_fold for s in fold]
    runs = [r for _, fold_runs, _ in folds for r in fold_runs]
    by_layer = list(zip(*(r.layer_weights for r in runs), strict=True))
    metrics_out = {k: _spread([s[k] for s in scores]) for k in scores[0]}
    if folded:
        for k, entry in metrics_out.items():
            means = [statistics.fmean(s[k] for s in fold) for fold in per_fold]
            spread = _spread(means)
            entry.update(fold_means=spread["values"], fold_std=spread["std"])
    return {
        "metrics": metrics_out,
        "layer_weights": {
            "mean": [round(statistics.fmean(w), 6) for w in by_layer],
            "std": [round(statistics.stdev(w), 6) if len(w) > 1 else 0.0 for w in by_layer],
        },
        "best_epoch": [r.best_epoch for r in runs],
    }


def _checked_probes(task: str, probes: Sequence[str] | None) -> list[str]:
    """``probes`` (default: both probes of ``task``); a probe of another task is a ProbeError."""
    names = list(probes or PROBES[task])
    for name in names:
        if name not in PROBES[task]:
            raise ProbeError(
                f"probe '{name}' is not a probe of task '{task}' (choose from "
                f"{', '.join(PROBES[task])})"
            )
    return names


def _job_progress(
    task: str, progress: Progress | None, total: int
) -> Callable[[JobResult, int], None]:
    """The callback that reports each finished probe training to ``progress``."""

    def done(r: JobResult, count: int) -> None:
        if progress:
            j = r.job
            progress(
                f"{task}/{j.probe} on {j.upstream}, seed {j.seed}: trained in "
                f"{r.seconds:.0f} s ({count}/{total})",
                count,
            )

    return done


def run_probing(
    data: TaskData,
    upstreams: dict[str, Upstream],
    params: Params,
    probes: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The protocol of the module docstring over the given upstreams.

    The states of every upstream are extracted first (each batch of audio read once for all
    of them); then the probe trainings (upstreams x probes x seeds) run as jobs,
    ``downstream.workers`` at once.

    Arguments
    ---------
    data : TaskData
        The task's labelled splits.
    upstreams : dict[str, Upstream]
        Name -> frozen upstream (``pretrained``, ``random_init``, ``fbank``).
    params : Params
        Seeds and the ``downstream`` settings.
    probes : Sequence[str] | None
        Probe names (default: both of the task).
    progress : Progress | None
        Called with a short line after the extraction and after each training.

    Returns
    -------
    dict[str, Any]
        The JSON-ready result of the module docstring.

    Raises
    ------
    ProbeError
        When a probe is not one of the task's.
    """
    names = _checked_probes(data.task, probes)
    states = _extract(data.task, upstreams, data.cuts(), params, progress, data.corpus)
    runs, splits = _train(data, states, upstreams, names, params, progress)
    return _result(data, names, list(upstreams), runs, splits, params)


def run_folds(
    folds: Sequence[tuple[int, TaskData]],
    upstreams: dict[str, Upstream],
    params: Params,
    probes: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """:func:`run_probing` over session folds: states extracted once, probes trained per fold.

    Arguments
    ---------
    folds : Sequence[tuple[int, TaskData]]
        ``(held-out session, its splits)`` (:func:`smx.downstream.tasks.session_folds`).
    upstreams, params, probes, progress
        As in :func:`run_probing`.

    Returns
    -------
    dict[str, Any]
        The result of the module docstring, spread over folds and seeds, with ``folds``.
    """
    first = folds[0][1]
    names = _checked_probes(first.task, probes)
    cuts = {cut.id: cut for _, data in folds for cut in data.cuts()}
    states = _extract(first.task, upstreams, list(cuts.values()), params, progress, first.corpus)
    trained = [_train(data, states, upstreams, names, params, progress) for _, data in folds]
    result = _result(first, names, list(upstreams), trained[0][0], trained[0][1], params)
    cfg = params.downstream
    for name in names:
        for label in upstreams:
            parts = [
                (data, runs[name, label], splits[label].test)
                for (_, data), (runs, splits) in zip(folds, trained, strict=True)
            ]
            result["probes"][name][label] = aggregate_folds(parts, cfg)
    counts = [_utterances(data) for _, data in folds]
    result["utterances"] = {k: sum(c[k] for c in counts) for k in counts[0]}
    result["folds"] = {"by": "session", "held_out": [s for s, _ in folds], "utterances": counts}
    result["chance"] = round(statistics.fmean(chance(d, result["better"]) for _, d in folds), 6)
    return result


def chance(data: TaskData, better: str) -> float:
    """The primary score of an upstream that carries nothing: what "learnable" is judged against.

    asr: the error rate of an empty transcript (1.0); speaker: the EER of random scores (0.5);
    a classification task: the accuracy of always answering the training split's commonest
    class, on the scored utterances (:func:`smx.downstream.tasks.scoring_splits`).

    Example
    -------
    >>> cut = lambda i: type("Cut", (), {"id": str(i), "duration": 1.0})()
    >>> items = lambda *labels: [Item(cut(i), label) for i, label in enumerate(labels)]
    >>> data = TaskData("intent", items("a", "a", "b"), [], items("a", "b", "b", "b"))
    >>> chance(data, "higher"), chance(TaskData("speaker", [], [], []), "lower")
    (0.25, 0.5)
    """
    if data.task == "asr":
        return 1.0
    if data.task == "speaker":
        return 0.5
    if not data.train or not data.test:
        return 0.0 if better == "higher" else 1.0
    labels = [item.label for item in data.train]
    commonest = max(sorted(set(labels)), key=labels.count)
    return sum(item.label == commonest for item in data.test) / len(data.test)


def _utterances(data: TaskData) -> dict[str, int]:
    """Utterances of each split of ``data``."""
    return {"train": len(data.train), "dev": len(data.dev), "test": len(data.test)}


def _extract(
    task: str,
    upstreams: dict[str, Upstream],
    cuts: list[Any],
    params: Params,
    progress: Progress | None,
    corpus: Path | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """The hidden states of every upstream for ``cuts``, told to ``progress``.

    With the ``corpus`` they come from and the state cache on (:mod:`.state_cache`), an
    upstream's states are loaded when another task already extracted them, and extracted
    for the whole corpus and stored when not.
    """
    batch = params.downstream.max_batch_duration
    store = open_cache() if corpus is not None else None
    if store is None or corpus is None:
        if progress:
            progress(f"{task}: hidden states of {', '.join(upstreams)}", 0)
        return extract(upstreams, cuts, batch)
    if progress:
        progress(f"{task}: hidden states of {', '.join(upstreams)} (cache: {store.root})", 0)
    states, hits = cached_states(upstreams, cuts, corpus, batch, extract, store)
    if progress and hits:
        progress(f"{task}: {', '.join(hits)} loaded from the cache", 0)
    return states


def _train(
    data: TaskData,
    states: dict[str, dict[str, torch.Tensor]],
    upstreams: dict[str, Upstream],
    names: Sequence[str],
    params: Params,
    progress: Progress | None,
) -> tuple[dict[tuple[str, str], list[JobResult]], dict[str, Split]]:
    """Every probe training of ``data`` (upstreams x probes x seeds), by (probe, upstream)."""
    cfg = params.downstream
    splits = {
        label: Split(*(examples(data, s, feats) for s in (data.train, data.dev, data.test)))
        for label, feats in states.items()
    }
    jobs = _jobs(data, upstreams, names, params)
    runs: dict[tuple[str, str], list[JobResult]] = {}
    for r in run_jobs(
        jobs, splits, cfg, cfg.workers, _job_progress(data.task, progress, len(jobs))
    ):
        runs.setdefault((r.job.probe, r.job.upstream), []).append(r)
    return runs, splits


def _result(
    data: TaskData,
    names: Sequence[str],
    labels: Sequence[str],
    runs: dict[tuple[str, str], list[JobResult]],
    splits: dict[str, Split],
    params: Params,
) -> dict[str, Any]:
    """The result of :func:`run_probing` from the trainings of every (probe, upstream)."""
    cfg = params.downstream
    primary, better = primary_metric(data.task, cfg)
    result: dict[str, Any] = {
        "task": data.task,
        "primary_metric": primary,
        "better": better,
        "seeds": [params.seed + i for i in range(cfg.seeds)],
        "utterances": _utterances(data),
        "chance": round(chance(data, better), 6),
        "probes": {
            name: {
                label: aggregate(data, runs[name, label], splits[label].test, cfg)
                for label in labels
            }
            for name in names
        },
    }
    if data.task == "asr" and data.vocab is not None:
        result["beam_search"] = beam_backend(data.vocab.tokens)
        result["beam_size"] = cfg.beam_size
    if data.task == "speaker":
        result["trials"] = len(data.trials)
    return result


def _jobs(
    data: TaskData, upstreams: dict[str, Upstream], names: Sequence[str], params: Params
) -> list[Job]:
    """One probe training per upstream, probe and seed (``downstream.seeds`` from ``seed``)."""
    return [
        Job(data.task, name, label, params.seed + i, up.num_layers, up.dim, data.num_outputs)
        for label, up in upstreams.items()
        for name in names
        for i in range(params.downstream.seeds)
    ]


def baseline_settings(params: Params, task: str, arch: Params | None = None) -> dict[str, Any]:
    """Everything the fbank baseline of ``task`` depends on besides the corpus' audio.

    A stored baseline is reused only under equal settings (:func:`baseline_mismatch`);
    ``downstream.workers`` is left out: it only says how many trainings run at once.

    Arguments
    ---------
    params : Params
        Seed, data and ``downstream`` settings.
    task : str
        The probing task.
    arch : Params | None
        The config whose front-end makes the features (default: ``params``).

    Returns
    -------
    dict[str, Any]
        JSON-ready settings, stored with the baseline.
    """
    features = arch or params
    return {
        "task": task,
        "task_data": params.downstream.task(task).model_dump(mode="json"),
        "seed": params.seed,
        "data": params.data.model_dump(mode="json"),
        "frontend": features.model.frontend.model_dump(mode="json"),
        "sample_rate": features.data.sample_rate,
        "downstream": params.downstream.model_dump(
            mode="json", exclude={"tasks", "finetune", "workers"}
        ),
    }


def baseline_mismatch(
    baseline: dict[str, Any],
    params: Params,
    task: str,
    probes: Sequence[str] | None = None,
    arch: Params | None = None,
) -> str | None:
    """Why a stored fbank baseline cannot stand in for probing fbank under ``params``.

    Arguments
    ---------
    baseline : dict[str, Any]
        A stored :func:`probe_baseline` result.
    params : Params
        The settings of the probing it would stand in for.
    task : str
        The probing task.
    probes : Sequence[str] | None
        The probes that need an fbank row (default: both of the task).
    arch : Params | None
        As in :func:`baseline_settings`.

    Returns
    -------
    str | None
        The first reason in words, or None when the baseline fits.

    Example
    -------
    >>> params = Params()
    >>> rows = {"bilstm": {"fbank": {}}, "conv": {"fbank": {}}}
    >>> stored = {"settings": baseline_settings(params, "asr"), "probes": rows}
    >>> baseline_mismatch(stored, params, "asr") is None
    True
    >>> baseline_mismatch(stored, params.model_copy(update={"seed": 7}), "asr")
    'it was made with other settings (seed)'
    >>> baseline_mismatch({**stored, "probes": {"conv": {"fbank": {}}}}, params, "asr")
    'it has no result for probe bilstm'
    """
    if not isinstance(baseline.get("settings"), dict):
        return "it records no settings"
    differ = differences(baseline["settings"], baseline_settings(params, task, arch))
    if differ:
        return f"it was made with other settings ({differ[0][0]})"
    rows = baseline.get("probes", {})
    missing = [p for p in probes or PROBES[task] if "fbank" not in rows.get(p, {})]
    if missing:
        return f"it has no result for probe {', '.join(missing)}"
    return None


def load_task(
    corpus_dir: str | Path, task: str, params: Params
) -> TaskData | list[tuple[int, TaskData]]:
    """The task's splits with its label (``downstream.tasks``), or its session folds.

    Raises
    ------
    ProbeError
        As :func:`smx.downstream.tasks.load_task_data` and
        :func:`smx.downstream.tasks.session_folds`.
    """
    cfg = params.downstream.task(task)
    if cfg.folds == "session":
        return session_folds(corpus_dir, task, cfg.label, cfg.held_out)
    return load_task_data(corpus_dir, task, cfg.label)


def _run(
    data: TaskData | list[tuple[int, TaskData]],
    upstreams: dict[str, Upstream],
    params: Params,
    probes: Sequence[str] | None,
    progress: Progress | None,
) -> dict[str, Any]:
    """:func:`run_probing` on one task's splits, :func:`run_folds` on its folds."""
    if isinstance(data, TaskData):
        return run_probing(data, upstreams, params, probes, progress)
    return run_folds(data, upstreams, params, probes, progress)


def probe_baseline(
    task: str,
    params: Params,
    corpus_dir: str | Path,
    *,
    probes: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The fbank baseline of ``task`` alone.

    It does not depend on the encoder, so one result serves every variant whose
    :func:`baseline_settings` are equal (``probe_encoder(..., baseline=...)``).

    Arguments
    ---------
    task : str
        The probing task.
    params : Params
        Seeds, data, front-end and ``downstream`` settings.
    corpus_dir : str | Path
        The task's prepared corpus (:func:`smx.downstream.tasks.task_corpus`).
    probes : Sequence[str] | None
        Probe names (default: both of the task).
    progress : Progress | None
        As in :func:`run_probing`.

    Returns
    -------
    dict[str, Any]
        The result of :func:`run_probing` on fbank, with its ``settings``.

    Raises
    ------
    ProbeError
        When the task, its labels or splits, or a probe name are unusable.
    """
    check_task(task)
    data = load_task(corpus_dir, task, params)
    result = _run(data, {"fbank": fbank_upstream(params)}, params, probes, progress)
    result["settings"] = baseline_settings(params, task)
    return result


def probe_encoder(
    source: str | Path,
    task: str,
    params: Params,
    corpus_dir: str | Path,
    *,
    probes: Sequence[str] | None = None,
    arch: Params | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the encoder at ``source`` on ``task`` against its random-init and fbank baselines.

    Arguments
    ---------
    source : str | Path
        An ``encoder.pt`` or an MLflow model URI (:func:`smx.downstream.upstream.load_upstream`).
    task : str
        One of :data:`smx.config.TASKS`; its label and folds are those of ``downstream.tasks``.
    params : Params
        Seeds and the ``downstream`` and ``data`` settings.
    corpus_dir : str | Path
        The task's prepared corpus (:func:`smx.downstream.tasks.task_corpus`).
    probes : Sequence[str] | None
        Probe names (default: both of the task).
    arch : Params | None
        The expected architecture (None: the one stored in ``encoder.pt``; an MLflow URI
        uses ``params``).
    tracking_uri : str | None
        MLflow tracking URI for model URIs.
    progress : Progress | None
        Told what was done and how many probe trainings have finished.
    baseline : dict[str, Any] | None
        A :func:`probe_baseline` result to take the fbank rows from instead of probing fbank
        again; it must fit (:func:`baseline_mismatch`).

    Returns
    -------
    dict[str, Any]
        The result of :func:`run_probing`, with the ``encoder``'s source, layers and size.

    Raises
    ------
    ProbeError
        When the task, its labels or splits (checked first), the encoder (checked before any
        compute), the baseline or a probe name are unusable.
    """
    check_task(task)
    data = load_task(corpus_dir, task, params)
    pretrained, arch = _pretrained_upstream(source, arch, params, tracking_uri)
    _check_baseline(baseline, params, task, probes, arch)
    upstreams = _encoder_upstreams(pretrained, arch, params.seed, with_fbank=baseline is None)
    result = _run(data, upstreams, params, probes, progress)
    if baseline is not None:
        for name, rows in result["probes"].items():
            rows["fbank"] = baseline["probes"][name]["fbank"]
    encoder = {"source": str(source), "layers": pretrained.num_layers, "dim": pretrained.dim}
    result["encoder"] = encoder
    return result


def _pretrained_upstream(
    source: str | Path, arch: Params | None, params: Params, tracking_uri: str | None
) -> tuple[Upstream, Params]:
    """The encoder at ``source`` and its architecture; an MLflow model is built from ``params``."""
    if arch is None and is_mlflow_uri(str(source)):
        arch = params
    return load_upstream(source, arch, tracking_uri)


def _check_baseline(
    baseline: dict[str, Any] | None,
    params: Params,
    task: str,
    probes: Sequence[str] | None,
    arch: Params,
) -> None:
    """ProbeError unless the stored fbank ``baseline`` (if any) can stand in for probing fbank."""
    if baseline is None:
        return
    why = baseline_mismatch(baseline, params, task, probes, arch)
    if why:
        raise ProbeError(f"the fbank baseline cannot be reused: {why}")


def _encoder_upstreams(
    pretrained: Upstream, arch: Params, seed: int, with_fbank: bool
) -> dict[str, Upstream]:
    """The pre-trained encoder, its random-init twin and, ``with_fbank``, plain fbank."""
    upstreams: dict[str, Upstream] = {
        "pretrained": pretrained,
        "random_init": random_upstream(arch, seed=seed),
    }
    if with_fbank:
        upstreams["fbank"] = fbank_upstream(arch)
    return upstreams


def write_results(result: dict[str, Any], metrics_path: str | Path, plot_path: str | Path) -> None:
    """Write the metrics JSON and the layer-weight PNG, each atomically."""
    write_json(metrics_path, result)
    plot_layer_weights(result, plot_path)
