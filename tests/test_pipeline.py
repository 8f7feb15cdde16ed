"""The DVC pipeline, through the real `dvc repro` in a temporary git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
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
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["dvc", "config", "core.analytics", "false"], tmp_path)
    return tmp_path


def ran_stages(output: str) -> list[str]:
    return sorted(
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")
    )


def test_repro_then_nothing_then_only_the_changed_variant(repo: Path) -> None:
    first = run(["dvc", "repro"], repo)
    assert ran_stages(first.stdout) == ["prepare", "resolve@mhsa", "resolve@summarymixing"]
    resolved = json.loads((repo / "build" / "mhsa" / "params.json").read_text())
    assert resolved["model"]["mixer"]["kind"] == "mhsa"
    assert resolved["ssl"]["mask_prob"] == 0.65  # defaults are written out

    second = run(["dvc", "repro"], repo)
    assert ran_stages(second.stdout) == []

    yaml = YAML()
    params = yaml.load(repo / "params.yaml")
    params["variants"]["mhsa"]["mixer"]["heads"] = 8
    yaml.dump(params, repo / "params.yaml")
    third = run(["dvc", "repro"], repo)
    assert ran_stages(third.stdout) == ["resolve@mhsa"]


def test_invalid_params_fail_the_stage_with_the_file_line_and_field(repo: Path) -> None:
    text = (
        (repo / "params.yaml")
        .read_text()
        .replace(
            "  mhsa:\n    mixer:\n      kind: mhsa\n      heads: 4",
            "  mhsa:\n    mixer:\n      kind: mhsa\n      heads: 5",
        )
    )
    (repo / "params.yaml").write_text(text)
    res = run(["dvc", "repro", "resolve@mhsa"], repo, check=False)
    assert res.returncode != 0
    assert (
        "params.yaml:" in res.stderr
        and "variants.mhsa.mixer.heads: 5 does not divide" in res.stderr
    )
    assert not (repo / "build" / "mhsa" / "params.json").exists()
