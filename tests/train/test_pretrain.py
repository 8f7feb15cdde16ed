"""Pre-training on a real Ray instance with 2 workers, logged to a real MLflow server.

The reference run (30 steps, seed 0) is the session's ``pretrained`` fixture, shared with the
fine-tuning tests; the killed-worker, --resume and NaN runs each train again with the same
config and seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from tiny import PretrainRun, pretrain_tiny, tiny_params

from smx.provenance import with_source
from smx.train.checkpoint import config_hash, read_state
from smx.train.launch import PretrainError, run_name

pytestmark = pytest.mark.e2e

#: the runs are bit-identical on this CPU; the bound allows for a different BLAS or thread count
WEIGHT_ATOL = 1e-5


def encoder_weights(run: PretrainRun) -> dict[str, torch.Tensor]:
    return torch.load(run.encoder, weights_only=True)["state_dict"]


def metric_steps(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    history = mlflow.MlflowClient(uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


def test_two_worker_run_learns_and_writes_every_output(
    pretrained: PretrainRun, mlflow_server: str
) -> None:
    res = pretrained.result
    metrics = res.metrics
    assert metrics["steps"] == 30 and metrics["skipped_steps"] == 0

    def mean(key: str, steps: slice) -> float:
        values = [v for _, v in metric_steps(mlflow_server, res.run_id, key)]
        assert len(values) == 30, key
        return sum(values[steps]) / len(values[steps])

    # Chance level: with 10 negatives the true target is one of 11 candidates, so the
    # contrastive loss per masked frame is ln(11) = 2.40 nats and the accuracy 1/11. The
    # summed loss depends on how many frames a batch masks, so the per-frame loss is
    # compared, averaged over 5 steps against batch noise. Measured here: 2.55 -> 2.34 nats
    # in 30 updates and accuracy 0.09 -> 0.15. Required: 0.1 nats lower (half the measured
    # fall) and below chance; accuracy above 1.3 x chance.
    first = mean("contrastive_per_frame", slice(0, 5))
    last = mean("contrastive_per_frame", slice(-5, None))
    assert last < first - 0.1 and last < math.log(11), (first, last)
    assert mean("accuracy", slice(-5, None)) > 1.3 / 11

    saved = torch.load(pretrained.encoder, weights_only=True)
    assert saved["step"] == 30 and saved["config_hash"] == config_hash(pretrained.params)
    assert saved["source_hash"] == _source()
    keys = saved["state_dict"]
    assert keys and all(k.startswith(("fbank.", "extractor.", "encoder.")) for k in keys)
    rows = (pretrained.out / "plots" / "pretrain" / "sm.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 31
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 31))
    assert (pretrained.out / "metrics" / "pretrain" / "sm.json").is_file()

    run = mlflow.MlflowClient(mlflow_server).get_run(res.run_id)
    assert run.data.params["model.encoder.d_model"] == "32"
    assert run.data.params["ssl.kind"] == "wav2vec2"
    assert run.data.tags["variant"] == "sm" and run.data.tags["mixer"] == "summarymixing"
    assert len(run.data.tags["git_commit"]) >= 7 and run.data.tags["source_hash"] == _source()
    for key in ("lr", "grad_norm", "audio_seconds_per_second", "step_time", "peak_memory_mb"):
        assert key in run.data.metrics, key
    assert run.info.status == "FINISHED"
    versions = mlflow.MlflowClient(mlflow_server).search_model_versions("name='smx-test-sm'")
    (version,) = [v for v in versions if v.run_id == res.run_id]
    assert version.tags["source_hash"] == _source() and version.tags["variant"] == "sm"
    registry = json.loads((pretrained.out / "models" / "sm" / "registry.json").read_text())
    assert registry["uri"] == f"models:/smx-test-sm/{version.version}"
    assert registry["alias_uri"] == "models:/smx-test-sm@latest"


def test_a_killed_worker_resumes_to_the_same_weights(
    pretrained: PretrainRun, corpus_root: Path, mlflow_server: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("SMX_KILL_AT_STEP", "15")
    run = pretrain_tiny(corpus_root, tmp_path, mlflow_server)
    run_dir = run.storage / run_name(run.params, "sm", _source())
    assert (run_dir / "killed_at_step_15").is_file()  # the kill happened

    steps = [s for s, _ in metric_steps(mlflow_server, run.result.run_id, "loss")]
    assert steps == list(range(1, 31))  # continuous, no step logged twice
    ref, got = encoder_weights(pretrained), encoder_weights(run)
    assert ref.keys() == got.keys()
    worst = max(float((ref[k] - got[k]).abs().max()) for k in ref)
    assert worst <= WEIGHT_ATOL, worst


def test_resume_from_a_checkpoint_in_a_new_run(
    pretrained: PretrainRun, corpus_root: Path, mlflow_server: str, tmp_path: Path
) -> None:
    folder = (
        pretrained.storage / run_name(pretrained.params, "sm", _source()) / "checkpoint_00000020"
    )
    assert read_state(folder)["step"] == 20
    run = pretrain_tiny(corpus_root, tmp_path, mlflow_server, resume=folder)
    assert run.result.metrics["steps"] == 30
    steps = [s for s, _ in metric_steps(mlflow_server, run.result.run_id, "loss")]
    assert steps == list(range(21, 31))
    ref, got = encoder_weights(pretrained), encoder_weights(run)
    assert max(float((ref[k] - got[k]).abs().max()) for k in ref) <= WEIGHT_ATOL


def test_nan_steps_are_skipped_then_the_run_stops_with_the_last_good_checkpoint(
    corpus_root: Path, mlflow_server: str, ray_cluster: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("SMX_INJECT_NAN_STEPS", "4,12,13,14")
    with pytest.raises(PretrainError, match=r"not finite for 3 steps in a row") as info:
        pretrain_tiny(corpus_root, tmp_path, mlflow_server, max_steps=20, checkpoint_every=5)
    assert info.value.during_training
    params = tiny_params(
        corpus_root, tmp_path / "ray", mlflow_server, max_steps=20, checkpoint_every=5
    )
    run_dir = tmp_path / "ray" / run_name(params, "sm", _source())
    assert sorted(p.name for p in run_dir.glob("checkpoint_0*")) == [
        "checkpoint_00000005",
        "checkpoint_00000010",
    ]
    state = read_state(run_dir / "checkpoint_00000010", with_source(config_hash(params), _source()))
    assert state["step"] == 10 and state["skipped_steps"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert str(run_dir / "checkpoint_00000010") in str(info.value)

    run_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    skipped = dict(metric_steps(mlflow_server, run_id, "skipped_steps"))
    assert skipped[3] == 0 and skipped[4] == 1 and skipped[11] == 1 and skipped[14] == 4
    loss = dict(metric_steps(mlflow_server, run_id, "loss"))
    assert math.isnan(loss[4]) and math.isfinite(loss[5])
    assert mlflow.MlflowClient(mlflow_server).get_run(run_id).info.status == "FAILED"


def _source() -> str:
    from smx.provenance import source_hash

    return source_hash()
