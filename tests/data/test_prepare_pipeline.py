"""The DVC stage ``prepare`` through the real ``dvc repro`` in a temporary git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for item in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / item, tmp_path / item)
    for folder in ("smx", "pipelines"):
        shutil.copytree(
            ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    yaml = YAML()
    params = yaml.load(tmp_path / "params.yaml")
    synth = params["data"]["synth"]
    synth.update(hours=0.004, num_speakers=5, heldout_speakers=2)
    params["data"]["min_duration"] = 0.5
    yaml.dump(params, tmp_path / "params.yaml")
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["dvc", "config", "core.analytics", "false"], tmp_path)
    return tmp_path


def test_prepare_stage_writes_the_corpus_and_metrics_then_is_cached(repo: Path) -> None:
    first = run(["dvc", "repro", "prepare"], repo)
    assert "Running stage 'prepare'" in first.stdout
    assert (repo / "data" / "synth" / "COMPLETE.json").exists()
    metrics = json.loads((repo / "metrics" / "prepare.json").read_text())
    assert metrics["corpus"] == "synth" and metrics["total"]["speakers"] == 5
    assert metrics["synthesis"]["realtime_factor"] > 0
    summary = json.loads((repo / "data" / "synth" / "summary.json").read_text())
    assert {k: metrics[k] for k in summary} == summary
    second = run(["dvc", "repro", "prepare"], repo)
    assert "Running stage" not in second.stdout
    shown = run(["dvc", "metrics", "show", "--json"], repo)
    assert "realtime_factor" in shown.stdout


def test_a_bad_corpus_dir_fails_the_stage_with_one_sentence(repo: Path) -> None:
    yaml = YAML()
    params = yaml.load(repo / "params.yaml")
    params["data"].update(corpus="librispeech", corpus_dir="/nonexistent/LibriSpeech")
    yaml.dump(params, repo / "params.yaml")
    res = run(["dvc", "repro", "prepare"], repo, check=False)
    assert res.returncode != 0
    assert "prepare: the LibriSpeech folder /nonexistent/LibriSpeech does not exist" in res.stderr
