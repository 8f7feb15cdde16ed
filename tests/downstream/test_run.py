"""The probing protocol on the tiny corpus: frozen encoder untouched, results, pipeline stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from downstream_helpers import DATA, DOWNSTREAM, ONE_THREAD, TINY_MODEL, TINY_SSL
from mlflow import MlflowClient
from ruamel.yaml import YAML

from smx.downstream.run import run_probing
from smx.downstream.tasks import load_task_data
from smx.downstream.upstream import load_upstream


def test_probing_leaves_the_frozen_encoder_unchanged(corpus_root: Path, encoder_file: Path) -> None:
    upstream, params = load_upstream(encoder_file)
    params = params.model_copy(
        update={"downstream": params.downstream.model_copy(update=DOWNSTREAM)}
    )
    before = {k: v.clone() for k, v in upstream.state_dict().items()}
    data = load_task_data(corpus_root / "synth", "speaker")
    result = run_probing(data, {"pretrained": upstream}, params, probes=["xvector"])
    after = upstream.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and not p.requires_grad for p in upstream.parameters())

    entry = result["probes"]["xvector"]["pretrained"]
    assert set(entry["metrics"]) == {"eer", "min_dcf"}
    eer = entry["metrics"]["eer"]
    assert len(eer["values"]) == 2 and all(0.0 <= v <= 1.0 for v in eer["values"])
    assert eer["mean"] == pytest.approx(sum(eer["values"]) / 2, abs=1e-6)
    weights = entry["layer_weights"]["mean"]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert result["trials"] == len(data.trials) and result["seeds"] == [0, 1]
    assert (result["primary_metric"], result["better"]) == ("eer", "lower")


ROOT = Path(__file__).resolve().parents[2]


def probe_stage(*args: str, tracking_uri: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m pipelines.probe ARGS`` from the project root, as a DVC stage runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.probe", *args],
        cwd=ROOT,
        env={**ONE_THREAD, "MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_params(path: Path, corpus_root: Path, **downstream: object) -> Path:
    params = {
        "seed": 0,
        "data": {**DATA, "root": str(corpus_root)},
        "model": TINY_MODEL,
        "ssl": TINY_SSL["wav2vec2"],
        "downstream": {**DOWNSTREAM, **downstream},
        "variants": {"tiny": {}, "deep": {"encoder": {"num_layers": 3}}},
    }
    YAML().dump(params, path)
    return path


def test_pipeline_stage_writes_asr_metrics_and_plot(
    corpus_root: Path, encoder_file: Path, tmp_path: Path
) -> None:
    params = write_params(tmp_path / "params.yaml", corpus_root, seeds=1, asr_metric="cer")
    res = probe_stage(
        "--params", str(params),
        "--variant", "tiny",
        "--task", "asr",
        "--encoder", str(encoder_file),
        "--metrics-dir", str(tmp_path / "metrics"),
        "--plots-dir", str(tmp_path / "plots"),
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"wrote {tmp_path / 'metrics' / 'tiny' / 'asr.json'}" in res.stdout
    result = json.loads((tmp_path / "metrics" / "tiny" / "asr.json").read_text())
    assert result["variant"] == "tiny" and result["beam_search"] in ("prefix", "torchaudio")
    assert (result["primary_metric"], result["better"]) == ("cer", "lower")  # asr_metric
    assert "asr: cer " in res.stdout
    assert set(result["probes"]) == {"bilstm", "conv"}
    for by_upstream in result["probes"].values():
        assert set(by_upstream) == {"pretrained", "random_init", "fbank"}
        for entry in by_upstream.values():
            assert set(entry["metrics"]) == {"wer", "cer", "wer_beam", "cer_beam"}
            assert all(m["values"][0] >= 0.0 for m in entry["metrics"].values())
        assert len(by_upstream["fbank"]["layer_weights"]["mean"]) == 1
    png = tmp_path / "plots" / "tiny" / "asr_layer_weights.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the MLflow run is a child of the variant's parent run, with the metrics and both files
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (child,) = client.search_runs(
        [client.get_experiment_by_name("smx").experiment_id], "tags.`smx.role` = 'probe'"
    )
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["smx.role"] == "variant" and parent.data.tags["variant"] == "tiny"
    wer = result["probes"]["bilstm"]["pretrained"]["metrics"]["wer"]["mean"]
    assert child.data.metrics["bilstm.pretrained.wer"] == pytest.approx(wer)
    files = {f.path for f in client.list_artifacts(child.info.run_id, "probe")}
    assert files == {"probe/asr.json", "probe/asr_layer_weights.png"}


def test_pipeline_stage_refuses_an_encoder_of_another_variant(
    corpus_root: Path, encoder_file: Path, tmp_path: Path
) -> None:
    params = write_params(tmp_path / "params.yaml", corpus_root)
    res = probe_stage(
        "--params", str(params),
        "--variant", "deep",
        "--task", "style",
        "--encoder", str(encoder_file),
        "--metrics-dir", str(tmp_path),
        "--plots-dir", str(tmp_path),
        "--no-mlflow",
    )  # fmt: skip
    assert res.returncode == 2
    err = res.stderr.strip()
    assert err.startswith(f"probe@deep-style: {encoder_file} does not match the architecture")
    assert len(err.splitlines()) == 1
    assert not list(tmp_path.glob("**/*.json")) and not list(tmp_path.glob("**/*.png"))


def test_pipeline_stage_names_the_missing_input_and_the_stage_that_makes_it(
    corpus_root: Path, tmp_path: Path
) -> None:
    res = probe_stage("--variant", "ghost", "--task", "asr", "--no-mlflow")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "probe@ghost-asr: build/ghost/params.json is missing; run `dvc repro resolve@ghost` "
        "first (is `ghost` listed under `variants` in params.yaml?)"
    )
    params = write_params(tmp_path / "params.yaml", corpus_root)
    missing = tmp_path / "models" / "tiny" / "encoder.pt"
    res = probe_stage(
        "--params", str(params), "--variant", "tiny", "--task", "asr",
        "--encoder", str(missing), "--no-mlflow",
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"probe@tiny-asr: {missing} is missing; run `dvc repro pretrain@tiny` first"
    )
