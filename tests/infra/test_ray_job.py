"""`ray job submit ... -- smx pretrain` against a head node started with `ray start --head`.

The head node (the session's ``ray_cluster``) and the MLflow server are real processes on
127.0.0.1, stopped whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import mlflow
import pytest
from servers import RAY_ENV, RayHead, free_port
from tiny import tiny_params

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


def env() -> dict[str, str]:
    """The venv first on PATH and the test head node's Ray settings (no token auth)."""
    return {**os.environ, **RAY_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def ray(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ray"), *args], env=env(), capture_output=True, text=True, timeout=timeout
    )


def test_a_submitted_job_trains_checkpoints_and_logs_to_the_shared_server(
    ray_cluster: RayHead, corpus_root: Path, mlflow_server: str, tmp_path: Path, monkeypatch: Any
) -> None:
    head = ray_cluster.dashboard
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # for the job client of this process
    params = tiny_params(corpus_root, tmp_path / "storage", mlflow_server)
    data = params.model_dump(mode="json")
    data["train"].update(max_steps=6, checkpoint_every=3, warmup_steps=1)
    data["cluster"]["num_workers"] = 1
    config = tmp_path / "job.json"
    config.write_text(json.dumps(data))
    job_id = f"smx-test-{uuid.uuid4().hex[:8]}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    runtime_env = {"env_vars": {"SMX_GIT_COMMIT": commit}}

    submitted = ray(
        "job",
        "submit",
        f"--address={head}",
        f"--submission-id={job_id}",
        f"--working-dir={ROOT}",
        f"--runtime-env-json={json.dumps(runtime_env)}",
        "--",
        "smx",
        "pretrain",
        "--config",
        str(config),
        "--name",
        "job",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        timeout=900,
    )
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    from ray.job_submission import JobStatus, JobSubmissionClient

    assert JobSubmissionClient(head).get_job_status(job_id) == JobStatus.SUCCEEDED

    checkpoints = sorted((tmp_path / "storage").glob("job-*/checkpoint_0*"))
    assert [c.name for c in checkpoints] == ["checkpoint_00000003", "checkpoint_00000006"]
    assert all((c / "state.pt").is_file() and (c / "rank_0.pt").is_file() for c in checkpoints)
    assert (tmp_path / "out" / "models" / "job" / "encoder.pt").is_file()

    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("smx-tests")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.git_commit = '{commit}'"
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")]
    assert steps == list(range(1, 7))


def test_a_ray_address_that_does_not_answer_stops_before_training(
    corpus_root: Path, tmp_path: Path
) -> None:
    params = tiny_params(corpus_root, tmp_path / "storage", f"sqlite:///{tmp_path}/m.db")
    config = tmp_path / "job.json"
    config.write_text(json.dumps(params.model_dump(mode="json")))
    address = f"127.0.0.1:{free_port()}"
    res = subprocess.run(
        [str(BIN / "smx"), "pretrain", "--config", str(config), "--no-progress"],
        env={**env(), "RAY_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2
    assert f"RAY_ADDRESS={address}: no Ray cluster answers there" in res.stderr
    assert "Traceback" not in res.stderr
