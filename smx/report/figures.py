"""The report's PNG figures (matplotlib, Agg back-end), each written atomically.

Every function draws one figure from a :class:`~smx.report.inputs.Study` and returns the
path it wrote. :data:`FIGURES` maps the file names to the functions, in the report's order.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smx.atomic import atomic_path
from smx.bench.mixers import plot as plot_bench
from smx.bench.pretrain import plot_time
from smx.report.analysis import best_scores, imported, pretrained_here
from smx.report.inputs import INITS, SPLITS, UPSTREAMS, Study


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically and close it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def _bars(ax: Any, groups: list[str], series: dict[str, tuple[list[float], list[float]]]) -> None:
    """Grouped bars: one group per x label, one bar per series (means, error bars)."""
    width = 0.8 / max(len(series), 1)
    for i, (label, (means, errs)) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(groups))]
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=label)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)


def downstream(study: Study, path: Path) -> Path:
    """One panel per (probe, task): each variant's pre-trained encoder beside its baselines."""
    plt = _pyplot()
    first = {t: study.probes[(study.variants[0], t)] for t in study.tasks}
    rows = max(len(r.scores) for r in first.values())
    fig, axes = plt.subplots(
        rows, len(study.tasks), figsize=(3.6 * len(study.tasks), 2.9 * rows), squeeze=False
    )
    for col, task in enumerate(study.tasks):
        for row in range(rows):
            ax = axes[row][col]
            probes = list(first[task].scores)
            if row >= len(probes):
                ax.axis("off")
                continue
            probe = probes[row]
            series = {}
            for upstream in UPSTREAMS:
                cells = [study.probes[(v, task)].primary(probe, upstream) for v in study.variants]
                series[upstream.replace("_", " ")] = (
                    [c.mean for c in cells],
                    [c.std for c in cells],
                )
            _bars(ax, study.variants, series)
            result = first[task]
            arrow = "↓" if result.better == "lower" else "↑"
            ax.set_title(f"{task} / {probe}", fontsize=10)
            ax.set_ylabel(f"{result.primary_metric} {arrow}")
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Downstream probes: mean ± std over seeds", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def best_probes(study: Study, path: Path) -> Path:
    """One panel per task: each variant's better probe on the encoder and on its baselines."""
    plt = _pyplot()
    tasks = study.tasks
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.0), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        scores = best_scores(study, task)
        series = {
            upstream.replace("_", " "): (
                [scores[v][upstream].mean for v in study.variants],
                [scores[v][upstream].std for v in study.variants],
            )
            for upstream in UPSTREAMS
        }
        _bars(ax, study.variants, series)
        result = study.probes[(study.variants[0], task)]
        arrow = "↓" if result.better == "lower" else "↑"
        ax.set(title=task, ylabel=f"{result.primary_metric} {arrow}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("Each task's better probe: mean ± std over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def finetune_wer(study: Study, path: Path) -> Path:
    """Fine-tuned WER on dev and test per variant, pre-trained against random init."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(4.5 * len(SPLITS), 3.2), squeeze=False)
    for ax, split in zip(axes[0], SPLITS, strict=True):
        series = {
            init.replace("_", " "): (
                [study.finetune[v].inits[init].wer[split] for v in study.variants],
                [0.0] * len(study.variants),
            )
            for init in INITS
        }
        _bars(ax, study.variants, series)
        ax.set(title=f"CTC fine-tuning: {split} WER", ylabel="WER ↓")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _left_out(fig: Any, study: Study) -> tuple[float, float, float, float]:
    """Name the imported encoders (no training numbers) at the bottom of ``fig``; the
    rectangle left for the axes (``tight_layout``)."""
    names = imported(study)
    if not names:
        return (0, 0, 1, 1)
    fig.text(
        0.01, 0.01, f"left out, imported (SpeechBrain): {', '.join(names)}", fontsize=7, va="bottom"
    )
    return (0, 0.06, 1, 1)


def pretrain_loss(study: Study, path: Path) -> Path:
    """The pre-training loss curves of every variant pre-trained here in one plot (imported
    encoders, which have none, named below it)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for v in pretrained_here(study):
        steps, losses = zip(*study.pretrain[v].curve, strict=True)
        mixer = study.pretrain[v].mixer
        ax.plot(steps, losses, marker=".", label=v if mixer == v else f"{v} ({mixer})")
    ax.set(title="Self-supervised pre-training loss", xlabel="update", ylabel="loss")
    if pretrained_here(study):
        ax.legend()
    fig.tight_layout(rect=_left_out(fig, study))
    return _save(fig, path)


def pretrain_cost(study: Study, path: Path) -> Path:
    """Median time per pre-training step and peak memory per variant pre-trained here (bars;
    imported encoders, which have no cost, named below them)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    variants = pretrained_here(study)
    panels = (
        ("time per step (median)", "s", [study.pretrain[v].step_time_s for v in variants]),
        ("peak memory (rank 0)", "MB", [study.pretrain[v].peak_memory_mb for v in variants]),
    )
    for ax, (title, unit, values) in zip(axes, panels, strict=True):
        bars = ax.bar(variants, values, color=[f"C{i}" for i in range(len(variants))])
        ax.bar_label(bars, fmt="{:.4g}", fontsize=8)
        ax.set(title=f"Pre-training: {title}", ylabel=unit)
    fig.tight_layout(rect=_left_out(fig, study))
    return _save(fig, path)


def bench_scaling(study: Study, path: Path) -> Path:
    """Time and peak memory of one pre-training step against input length, per mixer.

    Drawn by :func:`smx.bench.mixers.plot`, as ``smx bench pretrain`` draws it.
    """
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        drawn = Path(folder) / "bench.png"
        plot_bench(study.bench.records, drawn, group="objective", **plot_time(study.bench.threads))
        with atomic_path(path) as tmp:
            tmp.write_bytes(drawn.read_bytes())
    return path


#: file name -> (what it shows, function), in the report's order
FIGURES: dict[str, tuple[str, Callable[[Study, Path], Path]]] = {
    "pretrain_loss.png": ("Pre-training loss curves", pretrain_loss),
    "pretrain_cost.png": ("Time per step and peak memory", pretrain_cost),
    "best_probes.png": (
        "Each task's better probe: pre-trained, random init and fbank",
        best_probes,
    ),
    "downstream.png": ("Downstream probes with baselines", downstream),
    "finetune_wer.png": ("Fine-tuned WER", finetune_wer),
    "bench_scaling.png": ("Scaling benchmark", bench_scaling),
}


def draw_all(study: Study, folder: Path) -> dict[str, Path]:
    """Draw every figure of :data:`FIGURES` into ``folder``; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: fn(study, folder / name) for name, (_, fn) in FIGURES.items()}
