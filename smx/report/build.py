"""Write the report: figures, ``report.md`` and ``summary.json``, each atomically.

``summary.json`` holds, per variant, the flat numbers that are also logged to the variant's
MLflow parent run (:func:`variant_metrics`), so ``dvc metrics show`` and ``mlflow ui``
compare the same values under the same names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from smx.atomic import write_json, write_text
from smx.config import Params
from smx.report.figures import draw_all
from smx.report.inputs import INITS, SPLITS, Study
from smx.report.markdown import Provenance, render


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (``dvc.lock``), or ``none`` when it does not exist.

    Example
    -------
    >>> file_sha256("/nonexistent/dvc.lock")
    'none'
    """
    path = Path(path)
    if not path.is_file():
        return "none"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pretrain_metrics(study: Study, variant: str) -> dict[str, float]:
    """``pretrain.*``: step time, throughput, peak memory, final loss and training time; none
    for an imported encoder (it was not trained here, and MLflow gets no NaN)."""
    p = study.pretrain[variant]
    if p.imported:
        return {}
    values = {
        "pretrain.step_time_s": p.step_time_s,
        "pretrain.audio_seconds_per_second": p.audio_seconds_per_second,
        "pretrain.peak_memory_mb": p.peak_memory_mb,
        "pretrain.final_loss": p.loss,
        "pretrain.train_seconds": p.train_seconds,
    }
    return {name: value for name, value in values.items() if value is not None}


def variant_metrics(study: Study, variant: str) -> dict[str, float]:
    """The variant's numbers under stable names, the same for every variant pre-trained here.

    ``pretrain.*`` (:func:`pretrain_metrics`; none for an imported encoder), ``probe.<task>.
    <probe>.<upstream>.<primary metric>`` with ``_std``, ``finetune.<init>.<split>.wer`` and
    ``.cer``.
    """
    out = pretrain_metrics(study, variant)
    for task in study.tasks:
        result = study.probes[(variant, task)]
        for probe, by_upstream in result.scores.items():
            for upstream in by_upstream:
                score = result.primary(probe, upstream)
                name = f"probe.{task}.{probe}.{upstream}.{result.primary_metric}"
                out[name] = score.mean
                out[f"{name}_std"] = score.std
    for init in INITS:
        f = study.finetune[variant].inits[init]
        for split in SPLITS:
            out[f"finetune.{init}.{split}.wer"] = f.wer[split]
            out[f"finetune.{init}.{split}.cer"] = f.cer[split]
    return out


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went."""

    report: Path
    summary: Path
    figures: dict[str, Path]

    def all(self) -> list[Path]:
        return [self.report, self.summary, *self.figures.values()]


def write_report(study: Study, params: Params, out: Path, provenance: Provenance) -> ReportFiles:
    """Draw the figures into ``out/figures`` and write ``out/report.md`` and ``out/summary.json``."""
    figures = draw_all(study, out / "figures")
    relative = {name: f"figures/{name}" for name in figures}
    report = out / "report.md"
    write_text(report, render(study, params, relative, provenance))
    summary = out / "summary.json"
    write_json(
        summary,
        {
            "git_commit": provenance.git_commit,
            "dvc_lock_sha256": provenance.dvc_lock_sha256,
            "variants": {v: variant_metrics(study, v) for v in study.variants},
        },
    )
    return ReportFiles(report, summary, figures)
