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

from smx.downstream.errors import ProbeError
from smx.downstream.run import probe_baseline, probe_encoder, run_probing
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


def test_a_stored_baseline_gives_the_fbank_rows_probing_fbank_would(
    corpus_root: Path, encoder_file: Path
) -> None:
    _, params = load_upstream(encoder_file)
    params = params.model_copy(
        update={"downstream": params.downstream.model_copy(update=DOWNSTREAM)}
    )
    corpus = corpus_root / "synth"
    baseline = probe_baseline("intent", params, corpus, probes=["linear"])
    assert baseline["settings"]["downstream"]["seeds"] == DOWNSTREAM["seeds"]
    assert set(baseline["probes"]["linear"]) == {"fbank"}
    reused = probe_encoder(
        encoder_file, "intent", params, corpus, probes=["linear"], baseline=baseline
    )
    probed = probe_encoder(encoder_file, "intent", params, corpus, probes=["linear"])
    assert reused["probes"]["linear"]["fbank"] == baseline["probes"]["linear"]["fbank"]
    assert reused == probed  # same seeds, same order: the shared baseline changes no number

    other = params.model_copy(
        update={"downstream": params.downstream.model_copy(update={"lr": 0.5})}
    )
    with pytest.raises(ProbeError, match=r"other settings \(downstream\.lr\)"):
        probe_encoder(encoder_file, "intent", other, corpus, probes=["linear"], baseline=baseline)


def probe_stage(*args: str, tracking_uri: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m pipelines.probe ARGS`` from the project root, as a DVC stage runs it."""
    return stage("probe", *args, tracking_uri=tracking_uri)


def stage(name: str, *args: str, tracking_uri: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m pipelines.NAME ARGS`` from the project root, as a DVC stage runs it."""
    return subprocess.run(
        [sys.executable, "-m", f"pipelines.{name}", *args],
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


@pytest.fixture(scope="module")
def asr_baseline(corpus_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metrics/baseline/asr.json written by the `baseline@asr` stage (1 seed, CER)."""
    tmp = tmp_path_factory.mktemp("baseline")
    params = write_params(tmp / "params.yaml", corpus_root, seeds=1, asr_metric="cer")
    res = stage("baseline", "--params", str(params), "--task", "asr", "--metrics-dir", str(tmp))
    assert res.returncode == 0, res.stderr
    assert f"wrote {tmp / 'asr.json'}" in res.stdout
    assert "baseline@asr: asr: hidden states of fbank" in res.stderr  # progress lines
    return tmp / "asr.json"


def asr_probe_stage(
    params: Path, encoder: Path, baseline: Path, out: Path, *args: str, tracking_uri: str = ""
) -> subprocess.CompletedProcess[str]:
    """`probe@tiny-asr` on ``encoder`` with ``baseline``, writing under ``out``/metrics|plots."""
    return probe_stage(
        "--params", str(params),
        "--variant", "tiny",
        "--task", "asr",
        "--encoder", str(encoder),
        "--baseline", str(baseline),
        "--metrics-dir", str(out / "metrics"),
        "--plots-dir", str(out / "plots"),
        *args,
        tracking_uri=tracking_uri,
    )  # fmt: skip


def test_baseline_stage_writes_the_fbank_rows_of_both_probes(asr_baseline: Path) -> None:
    result = json.loads(asr_baseline.read_text())
    assert result["task"] == "asr" and result["primary_metric"] == "cer"
    assert {p: set(rows) for p, rows in result["probes"].items()} == {
        "bilstm": {"fbank"},
        "conv": {"fbank"},
    }
    assert result["settings"]["seed"] == 0 and result["settings"]["downstream"]["seeds"] == 1


def test_baseline_stage_names_a_missing_corpus(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", tmp_path / "nowhere")
    res = stage(
        "baseline", "--params", str(params), "--task", "style", "--metrics-dir", str(tmp_path)
    )
    assert res.returncode == 2
    assert res.stderr.startswith("baseline@style: ") and "nowhere" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "style.json").exists()


def test_pipeline_stage_writes_asr_metrics_and_plot(
    corpus_root: Path, encoder_file: Path, asr_baseline: Path, tmp_path: Path
) -> None:
    params = write_params(tmp_path / "params.yaml", corpus_root, seeds=1, asr_metric="cer")
    res = asr_probe_stage(
        params, encoder_file, asr_baseline, tmp_path, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"
    )
    assert res.returncode == 0, res.stderr
    assert "probing fbank here" not in res.stderr
    assert "on fbank" not in res.stderr  # no fbank training: its rows come from the baseline
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
    baseline = json.loads(asr_baseline.read_text())
    assert result["fbank_baseline"] == str(asr_baseline)
    assert all(
        result["probes"][p]["fbank"] == baseline["probes"][p]["fbank"] for p in ("bilstm", "conv")
    )
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


def test_pipeline_stage_probes_fbank_itself_when_the_baseline_does_not_fit(
    corpus_root: Path, encoder_file: Path, asr_baseline: Path, tmp_path: Path
) -> None:
    # the baseline was made with the default beam_size (10); this config asks for 2
    params = write_params(
        tmp_path / "params.yaml", corpus_root, seeds=1, asr_metric="cer", beam_size=2, epochs=1
    )
    res = asr_probe_stage(params, encoder_file, asr_baseline, tmp_path, "--no-mlflow")
    assert res.returncode == 0, res.stderr
    assert (
        f"probe@tiny-asr: probing fbank here: {asr_baseline} does not fit: it was made with "
        "other settings (downstream.beam_size)"
    ) in res.stderr
    result = json.loads((tmp_path / "metrics" / "tiny" / "asr.json").read_text())
    assert result["fbank_baseline"] == "probed in this stage"
    assert result["beam_size"] == 2
    assert all(
        set(rows) == {"pretrained", "random_init", "fbank"} for rows in result["probes"].values()
    )


def test_pipeline_stage_refuses_an_encoder_of_another_variant(
    corpus_root: Path, encoder_file: Path, asr_baseline: Path, tmp_path: Path
) -> None:
    params = write_params(tmp_path / "params.yaml", corpus_root, seeds=1, asr_metric="cer")
    res = probe_stage(
        "--params", str(params),
        "--variant", "deep",
        "--task", "asr",
        "--encoder", str(encoder_file),
        "--baseline", str(asr_baseline),
        "--metrics-dir", str(tmp_path),
        "--plots-dir", str(tmp_path),
        "--no-mlflow",
    )  # fmt: skip
    assert res.returncode == 2
    err = res.stderr.strip()
    assert err.startswith(f"probe@deep-asr: {encoder_file} does not match the architecture")
    assert len(err.splitlines()) == 1
    assert not list(tmp_path.glob("**/*.json")) and not list(tmp_path.glob("**/*.png"))


def test_pipeline_stage_names_the_missing_input_and_the_stage_that_makes_it(
    corpus_root: Path, encoder_file: Path, tmp_path: Path
) -> None:
    res = probe_stage("--variant", "ghost", "--task", "asr", "--no-mlflow")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "probe@ghost-asr: resolved/ghost/params.json is missing; run `dvc repro resolve@ghost` "
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
    missing = tmp_path / "metrics" / "baseline" / "asr.json"
    res = probe_stage(
        "--params", str(params), "--variant", "tiny", "--task", "asr",
        "--encoder", str(encoder_file), "--baseline", str(missing), "--no-mlflow",
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"probe@tiny-asr: {missing} is missing; run `dvc repro baseline@asr` first"
    )
    broken = tmp_path / "asr.json"
    broken.write_text('{"task": "asr", ')
    res = probe_stage(
        "--params", str(params), "--variant", "tiny", "--task", "asr",
        "--encoder", str(encoder_file), "--baseline", str(broken), "--no-mlflow",
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.startswith(f"probe@tiny-asr: {broken} is not readable JSON (")
    assert res.stderr.strip().endswith("re-run `dvc repro baseline@asr`")
