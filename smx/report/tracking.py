"""The study in MLflow: each variant's numbers on its parent run, the report in a report run.

Each variant's parent run (:func:`smx.train.tracking.variant_run`, found by variant and
encoder config hash; its pre-training, probing and fine-tuning runs are its children) gets
the metrics of :func:`smx.report.build.variant_metrics` at step 0 under names that are the
same for every variant, so ``mlflow ui`` compares the parents side by side, and the tags
``git_commit``, ``dvc_lock_sha256`` and ``report_run_id``.

``report.md``, ``summary.json`` and the figures go to one run of the experiment tagged
``smx.role=report`` (one per git commit and dvc.lock hash; re-running the stage on the same
inputs reuses it), not to the parents: the report compares all variants and belongs to none,
and a parent outlives a commit (it is keyed by the encoder config), so its artifacts would
be overwritten by the next study's report. Each parent links to it with ``report_run_id``.

MLflow is imported inside the functions only.
"""

from __future__ import annotations

import time

from smx.config import Params
from smx.report.build import ReportFiles, variant_metrics
from smx.report.inputs import Study
from smx.report.markdown import Provenance
from smx.train.checkpoint import config_hash
from smx.train.tracking import tagged_run, variant_run

REPORT_ROLE = "report"


def report_run(uri: str, experiment: str, provenance: Provenance, variants: list[str]) -> str:
    """The experiment's report run for this commit and dvc.lock: found by its tags, else created."""
    tags = {
        "smx.role": REPORT_ROLE,
        "git_commit": provenance.git_commit,
        "dvc_lock_sha256": provenance.dvc_lock_sha256,
        "variants": ",".join(variants),
    }
    return tagged_run(uri, experiment, "report", tags)


def log_study(
    uri: str, params: Params, study: Study, files: ReportFiles, provenance: Provenance
) -> dict[str, str]:
    """Log every variant's numbers to its parent and the report files to the report run.

    Returns ``{variant: parent run id, ..., "report": report run id}``.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient(uri)
    experiment = params.tracking.experiment
    report_id = report_run(uri, experiment, provenance, study.variants)
    tags = {
        "git_commit": provenance.git_commit,
        "dvc_lock_sha256": provenance.dvc_lock_sha256,
    }
    runs: dict[str, str] = {}
    now = int(time.time() * 1000)
    for v in study.variants:
        run_id = variant_run(uri, experiment, v, config_hash(params.variant(v)))
        metrics = [Metric(k, float(x), now, 0) for k, x in variant_metrics(study, v).items()]
        run_tags = [RunTag(k, x) for k, x in {**tags, "report_run_id": report_id}.items()]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000], tags=run_tags if i == 0 else [])
        runs[v] = run_id
    client.log_artifact(report_id, str(files.report))
    client.log_artifact(report_id, str(files.summary))
    for path in files.figures.values():
        client.log_artifact(report_id, str(path), artifact_path="figures")
    client.set_terminated(report_id)
    runs["report"] = report_id
    return runs
