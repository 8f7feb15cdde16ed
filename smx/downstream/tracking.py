"""MLflow logging of one probing result as a child run nested under the variant's run.

Optional: nothing else in :mod:`smx.downstream` needs MLflow, which is imported only when
:func:`log_probe_run` is called. The child run is created with ``MlflowClient`` in the
parent's experiment, tagged ``mlflow.parentRunId`` (the UI nests it), and holds:

- params: task, probes, upstreams, seeds, probe width, epochs;
- metrics: ``<probe>.<upstream>.<metric>`` (mean over seeds) and ``..._std``, and
  ``<probe>.<upstream>.layer_weight.<l>``;
- artifacts: the given files (metrics JSON, layer-weight PNG) under ``probe/``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smx.downstream.errors import ProbeError


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of a probing result as flat MLflow metric names.

    Example
    -------
    >>> res = {"probes": {"linear": {"fbank": {"metrics": {"accuracy": {"mean": 0.5, "std": 0.1}},
    ...                                        "layer_weights": {"mean": [1.0]}}}}}
    >>> flat_metrics(res)
    {'linear.fbank.accuracy': 0.5, 'linear.fbank.accuracy_std': 0.1, 'linear.fbank.layer_weight.0': 1.0}
    """
    out: dict[str, float] = {}
    for probe, by_upstream in result["probes"].items():
        for upstream, entry in by_upstream.items():
            prefix = f"{probe}.{upstream}"
            for name, value in entry["metrics"].items():
                out[f"{prefix}.{name}"] = float(value["mean"])
                out[f"{prefix}.{name}_std"] = float(value["std"])
            for layer, weight in enumerate(entry["layer_weights"]["mean"]):
                out[f"{prefix}.layer_weight.{layer}"] = float(weight)
    return out


def log_probe_run(
    tracking_uri: str,
    parent_run_id: str,
    result: dict[str, Any],
    files: Sequence[str | Path] = (),
    params: dict[str, Any] | None = None,
) -> str:
    """Log ``result`` (from :func:`smx.downstream.run.run_probing`) as a nested child run.

    Arguments
    ---------
    tracking_uri: the MLflow tracking URI (``sqlite:///...``, ``http://...``).
    parent_run_id: the variant's run; the child joins its experiment.
    result: the probing result.
    files: artifacts to attach (e.g. the metrics JSON and the layer-weight PNG).
    params: extra run parameters (e.g. ``downstream`` settings), flat names -> values.

    Returns the child run's id; an unknown parent raises :class:`ProbeError`.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException:
        raise ProbeError(
            f"MLflow run {parent_run_id} does not exist at {tracking_uri}; "
            "pass the run id of the variant's pre-training"
        ) from None
    task = result["task"]
    variant = result.get("variant") or parent.data.tags.get("mlflow.runName", "encoder")
    upstreams = sorted({u for by in result["probes"].values() for u in by})
    run = client.create_run(
        parent.info.experiment_id,
        run_name=f"probe-{variant}-{task}",
        tags={
            "mlflow.parentRunId": parent_run_id,
            "smx.stage": "probe",
            "smx.role": "probe",
            "smx.task": task,
            "variant": variant,
        },
    )
    run_id = run.info.run_id
    values = {
        "task": task,
        "probes": ",".join(result["probes"]),
        "upstreams": ",".join(upstreams),
        "seeds": ",".join(str(s) for s in result["seeds"]),
        **(params or {}),
    }
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in flat_metrics(result).items()],
        params=[Param(k, str(v)) for k, v in values.items()],
        tags=[RunTag("smx.primary_metric", result["primary_metric"])],
    )
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path="probe")
    client.set_terminated(run_id)
    return run_id
