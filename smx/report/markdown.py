"""``report.md``: header, generated findings, tables, figures and the corpus' limits.

:func:`render` is pure: it takes the gathered :class:`~smx.report.inputs.Study`, the
parameters and the figure paths (relative to the report) and returns the markdown text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smx.bench.mixers import measured
from smx.config import Params
from smx.report.analysis import (
    baseline_variant,
    best_scores,
    cost_baseline,
    findings,
    imported,
    learnable,
    pretrained_here,
    ratio,
    verdict,
)
from smx.report.inputs import INITS, UPSTREAMS, Pretrain, Spread, Study


@dataclass(frozen=True)
class Provenance:
    """What the numbers come from: the git commit and the SHA-256 of dvc.lock."""

    git_commit: str
    dvc_lock_sha256: str


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table.

    Example
    -------
    >>> print(table(["a", "b"], [["1", "2"]]))
    | a | b |
    | --- | --- |
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: float | None, fmt: str) -> str:
    """``value`` formatted by ``fmt``, or ``–`` when there is none.

    Example
    -------
    >>> _cell(0.8, ".2f"), _cell(None, ".2f")
    ('0.80', '–')
    """
    return "–" if value is None else format(value, fmt)


def imported_cell(p: Pretrain) -> str:
    """The updates cell of an imported encoder: where it came from.

    Example
    -------
    >>> imported_cell(Pretrain("sm", "summarymixing", None, None, None, 0, None, None, None,
    ...                        None, None, [], imported_from="ckpt/sm"))
    'imported from ckpt/sm (SpeechBrain), 0 updates'
    """
    return f"imported from {p.imported_from} (SpeechBrain), {p.steps} updates"


def pretrain_row(p: Pretrain, base: Pretrain | None) -> list[str]:
    """A variant's row of :func:`pretrain_table` (ratios ``–`` without a ``base``); an
    imported encoder's says where it came from, with ``–`` for every number."""
    if p.imported:
        return [p.variant, p.mixer, imported_cell(p), *["–"] * 9]
    time_x = ratio(p.step_time_s, base.step_time_s) if base else None
    memory_x = ratio(p.peak_memory_mb, base.peak_memory_mb) if base else None
    return [
        p.variant,
        p.mixer,
        str(p.steps),
        _cell(p.audio_hours, ".3f"),
        _cell(p.first_loss, ".3f"),
        _cell(p.loss, ".3f"),
        _cell(p.accuracy, ".3f"),
        _cell(p.step_time_s, ".3f"),
        _cell(time_x, ".2f") + ("x" if time_x is not None else ""),
        _cell(p.peak_memory_mb, ".0f"),
        _cell(memory_x, ".2f") + ("x" if memory_x is not None else ""),
        _cell(p.audio_seconds_per_second, ".1f"),
    ]


def pretrain_table(study: Study) -> str:
    """One row per variant: updates, losses, step time, peak memory, each over the baseline's
    (``–`` when the baseline's encoder was imported)."""
    base = cost_baseline(study)
    base_p = study.pretrain[base] if base else None
    rows = [pretrain_row(study.pretrain[v], base_p) for v in study.variants]
    name = baseline_variant(study)
    header = [
        "variant",
        "mixer",
        "updates",
        "audio (h)",
        "first loss",
        "final loss",
        "accuracy",
        "step time (s)",
        f"time × {name}",
        "peak memory (MB)",
        f"memory × {name}",
        "audio s per s",
    ]
    return table(header, rows)


def model_lines(study: Study, newest: bool = False) -> str:
    """Where each variant's encoder lives in MLflow, one Markdown list item per variant.

    By default the URI given is the registered version the report's numbers belong to.
    With ``newest``, ``models:/<name>@latest`` where the encoder was registered: the
    committed documents name it, since version numbers depend on the MLflow store.
    """
    lines = []
    for v in study.variants:
        p = study.pretrain[v]
        uri = (p.alias_uri if newest else None) or p.model_uri
        if p.imported:
            where = f"imported from {p.imported_from} (SpeechBrain), not an MLflow model"
        else:
            where = f"`{uri}`" if uri else f"not logged (no models/{v}/registry.json)"
        lines.append(f"- `{v}`: {where}")
    return "\n".join(lines)


def probe_table(study: Study, task: str) -> str:
    """One row per (probe, upstream) of ``task``, one column per variant: mean ± std."""
    first = study.probes[(study.variants[0], task)]
    rows = []
    for probe in first.scores:
        for upstream in UPSTREAMS:
            cells = [str(study.probes[(v, task)].primary(probe, upstream)) for v in study.variants]
            rows.append([probe, upstream.replace("_", " "), *cells])
    return table(["probe", "upstream", *study.variants], rows)


def finetune_table(study: Study) -> str:
    """One row per (variant, init): WER and CER on dev and test, updates, training time.

    Then the streaming test CER at each chunk size any variant was evaluated at (``–``
    where a variant was not, e.g. a mixer that cannot stream).
    """
    chunks = sorted(
        {c for v in study.variants for f in study.finetune[v].inits.values() for c in f.stream_cer},
        key=float,
    )
    rows = []
    for v in study.variants:
        for init in INITS:
            f = study.finetune[v].inits[init]
            streamed = [
                f"{f.stream_cer[c]['test']:.3f}" if "test" in f.stream_cer.get(c, {}) else "–"
                for c in chunks
            ]
            rows.append(
                [
                    v,
                    init.replace("_", " "),
                    f"{f.wer['dev']:.3f}",
                    f"{f.cer['dev']:.3f}",
                    f"{f.wer['test']:.3f}",
                    f"{f.cer['test']:.3f}",
                    *streamed,
                    f"{f.steps} ({f.freeze_steps})",
                    f"{f.train_seconds:.0f}",
                ]
            )
    header = [
        "variant",
        "init",
        "dev WER",
        "dev CER",
        "test WER",
        "test CER",
        *(f"test CER, {c} s chunks" for c in chunks),
        "updates (encoder frozen)",
        "train s",
    ]
    return table(header, rows)


def _ratio(record: dict, key: str) -> str:
    """A benchmark record's ratio ``key`` as ``0.60x``, or ``–`` when it has none."""
    return f"{record[key]:.2f}x" if key in record else "–"


def bench_table(study: Study) -> str:
    """One row per benchmark point: times, peak memory and ratios to MHSA, or why skipped."""
    rows = []
    for r in study.bench.records:
        if measured(r):
            cells = [
                f"{r['median_s']:.2f}",
                f"{r['median_cpu_s']:.2f}" if r.get("median_cpu_s") else "–",
                f"{r['peak_mem_bytes'] / 2**20:.0f}",
                _ratio(r, "time_ratio"),
                _ratio(r, "cpu_ratio"),
                _ratio(r, "mem_ratio"),
            ]
        else:
            cells = [str(r.get("skipped") or r.get("error") or "not measured"), *["–"] * 5]
        rows.append(
            [r["objective"], r["kind"], f"{r['seconds']:g}", str(r.get("frames", "–")), *cells]
        )
    header = [
        "objective",
        "mixer",
        "input (s)",
        "frames",
        "wall s",
        "CPU s",
        "peak MiB",
        "wall × MHSA",
        "CPU × MHSA",
        "memory × MHSA",
    ]
    return table(header, rows)


def seen(study: Study) -> str:
    """How much audio the encoders pre-trained here saw, naming the imported ones."""
    trained = [study.pretrain[v] for v in pretrained_here(study)]
    hours = max((p.audio_hours or 0.0 for p in trained), default=0.0)
    steps = max((p.steps for p in trained), default=0)
    others = imported(study)
    if not others:
        return f"each encoder saw up to {hours:.3f} h of audio in {steps} updates"
    names = ", ".join(others)
    if not trained:
        return f"every encoder was imported, none pre-trained here: {names}"
    return (
        f"each encoder pre-trained here saw up to {hours:.3f} h of audio in {steps} updates; "
        f"imported: {names}"
    )


def limits(params: Params, study: Study) -> str:
    """The fixed paragraph on what the embedded corpus cannot show, with the published scale."""
    corpus = (
        f"about {params.data.synth.hours:g} h of synthetic espeak-ng speech"
        if params.data.corpus == "synth"
        else f"the `{params.data.corpus}` corpus"
    )
    enc, down = params.model.encoder, params.downstream
    own = ", ".join(f"{probe}: {n}" for probe, n in sorted(down.probe_epochs.items()))
    epochs = f"{down.epochs} epochs" + (f" ({own})" if own else "")
    rates = ", ".join(f"{probe}: {lr:g}" for probe, lr in sorted(down.probe_lr.items()))
    epochs += f" at learning rate {down.lr:g}" + (f" ({rates})" if rates else "")
    return " ".join(
        [
            f"These runs use {corpus} ({seen(study)}), encoders of {enc.num_layers} layers",
            f"of width {enc.d_model}",
            f"and probes {down.probe_dim} wide trained for {epochs} over",
            f"{down.seeds} seeds, on this machine's CPU.",
            "Absolute WER, EER and accuracy are therefore meaningless as speech results:",
            "synthetic voices are far easier to tell apart and far poorer in acoustics than",
            "real speakers, and models this small and this briefly trained are nowhere near",
            "convergence. What the numbers do show is that the comparison protocol runs end",
            "to end (same data, same probes, same seeds, pre-trained against random init and",
            "fbank) and the relative cost of the mixers. Cost ratios measured on a 2-core CPU",
            "with utterances of a few seconds also differ from those on A100 GPUs at scale:",
            "the quadratic cost of self-attention dominates only for long inputs (see the",
            "scaling benchmark). For scale, the published numbers: wav2vec 2.0 pre-training",
            "of a 155 M model on 4 A100s took 18 % less time and 23 % less peak VRAM with",
            "SummaryMixing than with MHSA, with better or equivalent MP3S downstream results",
            "(arXiv 2407.13377); with BEST-RQ, linear mixers used 20-60 % less VRAM and ran",
            "7-65 % faster than MHSA on 20-80 s inputs (arXiv 2409.02596); a supervised",
            "Conformer on LibriSpeech 960 h trained in 98 instead of 137 GPU-hours with 21",
            "instead of 46 GB peak VRAM at equal or better WER (2.1 vs 2.3 % on test-clean;",
            "arXiv 2307.07421).\n",
        ]
    )


def time_groups(study: Study) -> list[tuple[str, list[str]]]:
    """The rows of :func:`time_table`: a name and the DVC stages it sums."""
    variants, tasks = study.variants, study.tasks
    groups = [("prepare (the corpus)", ["prepare"])]
    groups.append(("configs", ["defaults", *(f"resolve@{v}" for v in variants)]))
    groups += [(f"pre-training {v}", [f"pretrain@{v}"]) for v in variants]
    groups += [(f"fine-tuning {v}", [f"finetune@{v}"]) for v in variants]
    for task in tasks:
        stages = [f"baseline@{task}", *(f"probe@{v}-{task}" for v in variants)]
        groups.append((f"probes {task} (fbank, then each variant)", stages))
    return [*groups, ("benchmark", ["bench"])]


def time_table(study: Study) -> str:
    """Wall time per part of the pipeline and its share, from the stages' ``metrics/time``.

    A part none of whose stages recorded a time shows "–" (a stage last run before stages
    recorded their time, or by hand); the total and the shares count the recorded ones.
    """
    times = study.stage_times
    if not times:
        return "No stage recorded its time (stages record it when `dvc repro` runs them)."
    total = sum(times.values())
    rows = []
    for name, stages in time_groups(study):
        known = [times[s] for s in stages if s in times]
        seconds = sum(known)
        cells = [f"{seconds:.0f}", f"{seconds / total:.0%}"] if known else ["–", "–"]
        rows.append([name, *cells])
    rows.append(["**total**", f"**{total:.0f}** ({total / 60:.1f} min)", "100%"])
    return table(["part of the pipeline", "seconds", "share"], rows)


def best_probe_cell(scores: dict[str, Spread], better: str) -> str:
    """``pre-trained / random init / fbank`` scores, the pre-trained one bold when it wins.

    It wins when it beats the random init beyond the spread (:func:`verdict`).

    Example
    -------
    >>> best_probe_cell(
    ...     {"pretrained": Spread(0.6, 0.01), "random_init": Spread(0.7, 0.02),
    ...      "fbank": Spread(0.9, 0.05)}, "lower")
    '**0.600 ± 0.010** / 0.700 ± 0.020 / 0.900 ± 0.050'
    """
    shown = [str(scores[upstream]) for upstream in UPSTREAMS]
    if verdict(scores["pretrained"], scores["random_init"], better) == "better":
        shown[0] = f"**{shown[0]}**"
    return " / ".join(shown)


def best_probe_table(study: Study) -> str:
    """One row per task, one column per variant: :func:`best_probe_cell` of each."""
    rows = []
    for task in study.tasks:
        first = study.probes[(study.variants[0], task)]
        scores = best_scores(study, task)
        cells = [best_probe_cell(scores[v], first.better) for v in study.variants]
        name = f"{task} ({first.primary_metric}, {first.better} is better)"
        rows.append([name, *cells, learnable(first)])
    return table(["task (metric)", *study.variants, "learnable here"], rows)


def best_probe_caption(study: Study) -> str:
    """What :func:`best_probe_table`'s cells hold and what the bold means."""
    seeds = study.probes[(study.variants[0], study.tasks[0])].seeds
    return (
        "Each cell: pre-trained / random init / fbank, each scored with the better of the "
        f"task's probes, mean ± std over {seeds} seeds. **Bold**: the pre-trained encoder "
        "beats its random init by more than the larger std. **Learnable here**: whether "
        "the fbank baseline beats chance (an empty transcript, random scores, the commonest "
        "class) by more than its std; where it does not, the corpus cannot teach the task and "
        "no encoder's score on it says anything."
    )


def _figure(figures: dict[str, str], name: str) -> str:
    """The markdown image of figure ``name`` at its path relative to the report."""
    from smx.report.figures import FIGURES

    return f"![{FIGURES[name][0]}]({figures[name]})"


def _summary(study: Study, params: Params, provenance: Provenance) -> list[str]:
    """The title, the provenance and the generated findings with the best-probe table."""
    mixers = ", ".join(f"{v} ({study.pretrain[v].mixer})" for v in study.variants)
    return [
        "# smx study report: SummaryMixing against MHSA",
        "",
        f"- git commit: `{provenance.git_commit}`",
        f"- dvc.lock sha256: `{provenance.dvc_lock_sha256}`",
        f"- variants: {mixers}; SSL objective {params.ssl.kind}; tasks: {', '.join(study.tasks)}",
        "",
        "## What the numbers show",
        "",
        "Computed from the tables below. A task's score is that of its better probe; a "
        "difference smaller than the larger standard deviation over seeds is *within the "
        "spread*.",
        "",
        *[f"- {line}" for line in findings(study)],
        "",
        best_probe_table(study),
        "",
        best_probe_caption(study),
        "",
    ]


def imported_note(study: Study) -> str:
    """The sentence (with a leading space) naming the imported encoders left out of the
    loss and cost figures; empty when every encoder was pre-trained here."""
    names = imported(study)
    if not names:
        return ""
    listed = ", ".join(f"`{v}`" for v in names)
    return (
        f" Imported from a SpeechBrain checkpoint instead of pre-trained here: {listed}; "
        "no training numbers, left out of the loss and cost figures."
    )


def _pretraining(study: Study, figures: dict[str, str]) -> list[str]:
    """The pre-training section: its table and the loss and cost figures."""
    return [
        "## Pre-training",
        "",
        pretrain_table(study),
        "",
        "Step time is the median over the logged updates; peak memory is the resident set "
        f"of the rank-0 worker.{imported_note(study)}",
        "",
        "The encoders as MLflow models (load one anywhere with "
        "`mlflow.pyfunc.load_model(URI)`, or probe it with `smx probe --encoder URI`):",
        "",
        model_lines(study),
        "",
        _figure(figures, "pretrain_loss.png"),
        "",
        _figure(figures, "pretrain_cost.png"),
        "",
    ]


def _probing(study: Study, figures: dict[str, str]) -> list[str]:
    """The probing section: the best-probe figure, one table per task, every probe's figure."""
    parts = [
        "## Downstream probes (frozen encoders)",
        "",
        "Primary metric per task, mean ± std over seeds; baselines: the same architecture "
        "with random weights (random init) and the log-mel features (fbank).",
        "",
        _figure(figures, "best_probes.png"),
        "",
    ]
    for task in study.tasks:
        result = study.probes[(study.variants[0], task)]
        parts += [
            f"### {task}: {result.primary_metric} ({result.better} is better)",
            "",
            probe_table(study, task),
            "",
        ]
    return [*parts, _figure(figures, "downstream.png"), ""]


def _finetuning_and_bench(study: Study, figures: dict[str, str]) -> list[str]:
    """The fine-tuning and scaling-benchmark sections, each a table and a figure."""
    return [
        "## CTC fine-tuning",
        "",
        finetune_table(study),
        "",
        _figure(figures, "finetune_wer.png"),
        "",
        "## Scaling benchmark (`smx bench pretrain`)",
        "",
        "One full pre-training step on random audio of each length; ratios divide by MHSA "
        "at the same objective and length.",
        "",
        bench_table(study),
        "",
        _figure(figures, "bench_scaling.png"),
        "",
        "## Where the time went",
        "",
        "Wall time of each stage the last time `dvc repro` ran it (imports included), summed "
        "by part of the pipeline.",
        "",
        time_table(study),
        "",
    ]


def render(study: Study, params: Params, figures: dict[str, str], provenance: Provenance) -> str:
    """The whole report.

    Arguments
    ---------
    study : Study
        Every upstream output, gathered by :func:`~smx.report.inputs.gather`.
    params : Params
        The study's configuration (for the limits paragraph).
    figures : dict
        Figure file name (a key of :data:`~smx.report.figures.FIGURES`) -> its path
        relative to the report.
    provenance : Provenance
        The git commit and the SHA-256 of ``dvc.lock`` the header names.

    Returns
    -------
    str
        The markdown text of ``report.md``.
    """
    parts = [
        *_summary(study, params, provenance),
        *_pretraining(study, figures),
        *_probing(study, figures),
        *_finetuning_and_bench(study, figures),
        "## What the embedded corpus cannot show",
        "",
        limits(params, study),
        "## Inputs",
        "",
        *[f"- `{path}`" for path in study.inputs],
        "",
    ]
    return "\n".join(parts)
