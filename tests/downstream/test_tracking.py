"""MLflow: an encoder loaded from a model URI, and probing results as a nested child run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from downstream_helpers import tiny_params

from smx.downstream.errors import ProbeError
from smx.downstream.upstream import load_upstream
from smx.ssl.objective import build_objective
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


def test_encoder_from_an_mlflow_model_uri(tracking_uri: str, tmp_path: Path) -> None:
    import mlflow

    from smx.train.pretrain import encoder_module

    params = tiny_params()
    torch.manual_seed(0)
    objective = build_objective(params)
    module = encoder_module(params, objective.state_dict())  # what pre-training logs
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment("smx-model-tests", str(tmp_path / "art"))
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pytorch.log_model(
            module, name="encoder", serialization_format="pickle", pip_requirements=["torch"]
        )
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")  # the argument must win
    upstream, arch = load_upstream(info.model_uri, params, tracking_uri=tracking_uri)
    assert arch == params and upstream.num_layers == 3
    assert all(not p.requires_grad for p in upstream.parameters()) and not upstream.training
    audio, lens = torch.randn(1, 8000), torch.tensor([8000])
    states, _ = upstream(audio, lens)
    with torch.no_grad():
        feats, frames = module["fbank"](audio, lens)
        expected = module["encoder"](*module["frontend"](feats, frames))
    torch.testing.assert_close(states[:, :, -1], expected.last)
    other = tiny_params()
    deeper = other.model_copy(
        update={"model": other.model.model_copy(
            update={"encoder": other.model.encoder.model_copy(update={"num_layers": 3})}
        )}
    )  # fmt: skip
    with pytest.raises(ProbeError, match="does not match the architecture of the given config"):
        load_upstream(info.model_uri, deeper, tracking_uri=tracking_uri)
    with pytest.raises(ProbeError, match="cannot load the MLflow model models:/no-such-model/1"):
        load_upstream("models:/no-such-model/1", params, tracking_uri=tracking_uri)
