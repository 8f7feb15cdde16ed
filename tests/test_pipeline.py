"""The DVC pipeline, through the real `dvc repro` in a temporary git repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dvc_helpers import ran_stages, run
from ruamel.yaml import YAML

pytestmark = pytest.mark.e2e


def test_repro_then_nothing_then_only_the_changed_variant(dvc_repo: Path) -> None:
    first = run(["dvc", "repro"], dvc_repo)
    assert ran_stages(first.stdout) == [
        "prepare",
        "pretrain@mhsa",
        "pretrain@summarymixing",
        "resolve@mhsa",
        "resolve@summarymixing",
    ]
    resolved = json.loads((dvc_repo / "build" / "mhsa" / "params.json").read_text())
    assert resolved["model"]["mixer"]["kind"] == "mhsa"
    assert resolved["ssl"]["mask_prob"] == 0.65  # defaults are written out

    second = run(["dvc", "repro"], dvc_repo)
    assert ran_stages(second.stdout) == []

    yaml = YAML()
    params = yaml.load(dvc_repo / "params.yaml")
    params["variants"]["mhsa"]["mixer"]["heads"] = 8
    yaml.dump(params, dvc_repo / "params.yaml")
    third = run(["dvc", "repro"], dvc_repo)
    assert ran_stages(third.stdout) == ["pretrain@mhsa", "resolve@mhsa"]
    for variant in ("summarymixing", "mhsa"):
        assert (dvc_repo / "models" / variant / "encoder.pt").is_file()
        metrics = json.loads((dvc_repo / "metrics" / "pretrain" / f"{variant}.json").read_text())
        assert metrics["steps"] == 4


def test_invalid_params_fail_the_stage_with_the_file_line_and_field(dvc_repo: Path) -> None:
    text = (
        (dvc_repo / "params.yaml")
        .read_text()
        .replace(
            "  mhsa:\n    mixer:\n      kind: mhsa\n      heads: 4",
            "  mhsa:\n    mixer:\n      kind: mhsa\n      heads: 5",
        )
    )
    (dvc_repo / "params.yaml").write_text(text)
    res = run(["dvc", "repro", "resolve@mhsa"], dvc_repo, check=False)
    assert res.returncode != 0
    assert (
        "params.yaml:" in res.stderr
        and "variants.mhsa.mixer.heads: 5 does not divide" in res.stderr
    )
    assert not (dvc_repo / "build" / "mhsa" / "params.json").exists()
