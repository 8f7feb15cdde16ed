"""MLflow: probing results as a nested child run (registered encoders: test_registry.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smx.downstream.errors import ProbeError
from smx.tracking import log_probe_run

RESULT = {
    "task": "intent",
    "primary_metric": "accuracy",
    "better": "higher",
    "seeds": [0, 1],
    "variant": "tiny",
    "probes": {
        "linear": {
            "pretrained": {
                "metrics": {"accuracy": {"mean": 0.75, "std": 0.05, "values": [0.7, 0.8]}},
                "layer_weights": {"mean": [0.2, 0.3, 0.5], "std": [0.0, 0.0, 0.0]},
            },
            "fbank": {
                "metrics": {"accuracy": {"mean": 0.5, "std": 0.0, "values": [0.5, 0.5]}},
                "layer_weights": {"mean": [1.0], "std": [0.0]},
            },
        }
    },
}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLite store; MLflow's process-wide tracking URI is restored afterwards."""
    from mlflow.tracking._tracking_service import utils  # no public way to unset the URI

    before = utils._tracking_uri
    try:
        yield f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    finally:
        utils._tracking_uri = before


def test_probe_results_are_a_child_of_the_variant_run(tracking_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(
        "smx-probe-tests", artifact_location=str(tmp_path / "art")
    )
    parent = client.create_run(experiment, run_name="pretrain-tiny").info.run_id
    report = tmp_path / "intent.json"
    report.write_text("{}")
    child = log_probe_run(tracking_uri, parent, RESULT, files=[report], params={"epochs": 2})
    run = client.get_run(child)
    assert run.info.experiment_id == experiment
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.run_name == "probe-tiny-intent"
    assert run.data.metrics["linear.pretrained.accuracy"] == 0.75
    assert run.data.metrics["linear.pretrained.accuracy_std"] == 0.05
    assert run.data.metrics["linear.pretrained.layer_weight.2"] == 0.5
    assert run.data.params["seeds"] == "0,1" and run.data.params["epochs"] == "2"
    assert [a.path for a in client.list_artifacts(child, "probe")] == ["probe/intent.json"]
    assert run.info.status == "FINISHED"
    with pytest.raises(ProbeError, match="MLflow run 0123 does not exist"):
        log_probe_run(tracking_uri, "0123", RESULT)
