"""The DVC stage ``prepare`` through the real ``dvc repro`` in a temporary git repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dvc_helpers import run
from ruamel.yaml import YAML
from tiny import DATA

pytestmark = pytest.mark.e2e


def test_prepare_stage_writes_the_corpus_and_metrics_then_is_cached(dvc_repo: Path) -> None:
    first = run(["dvc", "repro", "prepare"], dvc_repo)
    assert "Running stage 'prepare'" in first.stdout
    assert (dvc_repo / "data" / "synth" / "COMPLETE.json").exists()
    metrics = json.loads((dvc_repo / "metrics" / "prepare.json").read_text())
    assert metrics["corpus"] == "synth" and metrics["total"]["speakers"] == DATA["synth"]["num_speakers"]
    assert metrics["synthesis"]["realtime_factor"] > 0
    summary = json.loads((dvc_repo / "data" / "synth" / "summary.json").read_text())
    assert {k: metrics[k] for k in summary} == summary
    second = run(["dvc", "repro", "prepare"], dvc_repo)
    assert "Running stage" not in second.stdout
    shown = run(["dvc", "metrics", "show", "--json"], dvc_repo)
    assert "realtime_factor" in shown.stdout


def test_a_bad_corpus_dir_fails_the_stage_with_one_sentence(dvc_repo: Path) -> None:
    yaml = YAML()
    params = yaml.load(dvc_repo / "params.yaml")
    params["data"].update(corpus="librispeech", corpus_dir="/nonexistent/LibriSpeech")
    yaml.dump(params, dvc_repo / "params.yaml")
    res = run(["dvc", "repro", "prepare"], dvc_repo, check=False)
    assert res.returncode != 0
    assert "prepare: the LibriSpeech folder /nonexistent/LibriSpeech does not exist" in res.stderr
