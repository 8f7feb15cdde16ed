"""MLflow: each variant's numbers on its parent run, the report in a report run; the CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_helpers import write_import, write_inputs, write_params

from smx.config import load
from smx.report.build import write_report
from smx.report.inputs import gather
from smx.report.markdown import Provenance
from smx.tracking import log_study, variant_run
from smx.train.checkpoint import config_hash

EXPERIMENT = "smx-report-tests"
PROJECT = Path(__file__).resolve().parents[2]


def report_stage(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pipelines.report`` as DVC runs it (from the project folder)."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.report", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(autouse=True)
def restore_tracking_uri() -> Iterator[None]:
    """MLflow's process-wide tracking URI is restored after each test."""
    from mlflow.tracking._tracking_service import utils  # no public way to unset the URI

    before = utils._tracking_uri
    try:
        yield
    finally:
        utils._tracking_uri = before


def test_each_variant_parent_gets_its_numbers_and_the_report_run_the_files(
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment(EXPERIMENT, artifact_location=str(tmp_path / "artifacts"))
    write_inputs(tmp_path)
    params = load(write_params(tmp_path, uri, EXPERIMENT))
    # the parent pre-training made (same variant, same encoder config): the report must reuse it
    sm_parent = variant_run(
        uri, EXPERIMENT, "summarymixing", config_hash(params.variant("summarymixing"))
    )
    study = gather(tmp_path, params)
    provenance = Provenance("0123abc", "e" * 64)
    files = write_report(study, params, tmp_path / "reports", provenance)

    runs = log_study(uri, params, study, files, provenance)

    assert runs["summarymixing"] == sm_parent
    sm, mhsa = (client.get_run(runs[v]).data for v in ("summarymixing", "mhsa"))
    assert sorted(sm.metrics) == sorted(mhsa.metrics)  # comparable side by side
    assert sm.metrics["pretrain.step_time_s"] == pytest.approx(0.8)
    assert mhsa.metrics["pretrain.step_time_s"] == pytest.approx(1.0)
    assert mhsa.metrics["pretrain.peak_memory_mb"] == 1000.0
    assert sm.metrics["pretrain.audio_seconds_per_second"] == 125.0
    assert sm.metrics["pretrain.final_loss"] == 4.0
    assert sm.metrics["probe.speaker.xvector.random_init.eer"] == pytest.approx(0.22)
    assert sm.metrics["probe.speaker.xvector.random_init.eer_std"] == pytest.approx(0.04)
    assert mhsa.metrics["probe.style.linear.pretrained.accuracy"] == pytest.approx(0.74)
    assert mhsa.metrics["finetune.pretrained.dev.cer"] == pytest.approx(0.30)
    assert len([k for k in sm.metrics if k.startswith("probe.")]) == 4 * 2 * 3 * 2
    for data in (sm, mhsa):
        assert data.tags["git_commit"] == "0123abc"
        assert data.tags["dvc_lock_sha256"] == "e" * 64
        assert data.tags["report_run_id"] == runs["report"]
        assert data.tags["smx.role"] == "variant"
    report = client.get_run(runs["report"])
    assert report.data.tags["smx.role"] == "report"
    assert report.data.tags["variants"] == "summarymixing,mhsa"
    names = {a.path for a in client.list_artifacts(runs["report"])}
    assert names == {"report.md", "summary.json", "figures"}
    figures = {a.path for a in client.list_artifacts(runs["report"], "figures")}
    assert figures == {f"figures/{name}" for name in files.figures}

    again = log_study(uri, params, study, files, provenance)  # the stage re-run: same runs
    assert again == runs
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    assert len(client.search_runs([experiment])) == 3


def test_the_stage_against_a_real_server(
    mlflow_server: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow import MlflowClient

    from smx.stages.common import run_stage  # in-process: one interpreter less to start

    write_inputs(tmp_path)
    params_file = write_params(tmp_path, mlflow_server, "smx-report-server")
    out = tmp_path / "out"

    args = ["--params", str(params_file), "--root", str(tmp_path), "--out", str(out)]
    code = run_stage("report", args)

    printed = capsys.readouterr().out
    assert code == 0
    assert f"wrote {out / 'report.md'} and {out / 'summary.json'}" in printed
    assert str(out / "figures" / "downstream.png") in printed
    assert "browse with: make ui" in printed
    assert "report: the mhsa encoder as an MLflow model: models:/smx-mhsa/3" in printed
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("smx-report-server").experiment_id
    parents = client.search_runs([experiment], "tags.`smx.role` = 'variant'")
    assert sorted(r.data.tags["variant"] for r in parents) == ["mhsa", "summarymixing"]
    assert all(r.data.metrics["finetune.pretrained.test.wer"] > 0 for r in parents)
    (report,) = client.search_runs([experiment], "tags.`smx.role` = 'report'")
    lock = (tmp_path / "dvc.lock").read_bytes()
    assert report.data.tags["dvc_lock_sha256"] == hashlib.sha256(lock).hexdigest()
    assert "report.md" in {a.path for a in client.list_artifacts(report.info.run_id)}
    assert (
        f"dvc.lock sha256: `{hashlib.sha256(lock).hexdigest()}`" in (out / "report.md").read_text()
    )


def test_an_imported_variants_parent_gets_no_pretraining_numbers(
    mlflow_server: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import math

    from mlflow import MlflowClient

    from smx.stages.common import run_stage

    write_inputs(tmp_path)
    write_import(tmp_path, "summarymixing")
    params_file = write_params(tmp_path, mlflow_server, "smx-report-import")
    args = ["--params", str(params_file), "--root", str(tmp_path), "--out", str(tmp_path / "o")]

    assert run_stage("report", args) == 0

    assert "report: the summarymixing encoder as an MLflow model: not logged" in (
        capsys.readouterr().out
    )
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("smx-report-import").experiment_id
    parents = client.search_runs([experiment], "tags.`smx.role` = 'variant'")
    metrics = {r.data.tags["variant"]: r.data.metrics for r in parents}
    sm, mhsa = metrics["summarymixing"], metrics["mhsa"]
    assert [name for name in sm if name.startswith("pretrain.")] == []
    assert sorted(sm) == sorted(name for name in mhsa if not name.startswith("pretrain."))
    assert not [name for name, value in sm.items() if math.isnan(value)]
    assert mhsa["pretrain.step_time_s"] == pytest.approx(1.0)
    assert sm["probe.speaker.xvector.pretrained.eer"] == pytest.approx(0.20)
    assert sm["finetune.pretrained.test.wer"] == pytest.approx(0.55)


def test_the_stage_exits_2_naming_the_missing_file(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    params_file = write_params(tmp_path, f"sqlite:///{tmp_path}/mlflow.db")
    (tmp_path / "metrics/finetune/mhsa.json").unlink()
    done = report_stage(
        "--params", str(params_file), "--root", str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert done.returncode == 2
    err = done.stderr
    assert err == "report: metrics/finetune/mhsa.json is missing; run `dvc repro finetune@mhsa`\n"
    assert not (tmp_path / "o").exists()


def test_the_stage_exits_2_when_mlflow_is_down(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    params_file = write_params(tmp_path, "http://127.0.0.1:9")
    done = report_stage(
        "--params", str(params_file), "--root", str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert done.returncode == 2
    err = done.stderr
    assert err.startswith("report: MLflow tracking server http://127.0.0.1:9 is unreachable")
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()
