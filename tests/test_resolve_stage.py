"""The `defaults` and `resolve@<variant>` stages: full configs, defaults written out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from smx.config import load

ROOT = Path(__file__).resolve().parents[1]


def resolve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.resolve", "--params", str(ROOT / "params.yaml"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_defaults_writes_the_base_config_with_every_default(tmp_path: Path) -> None:
    res = resolve("--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"defaults: wrote {tmp_path / 'params.json'}"
    written = json.loads((tmp_path / "params.json").read_text())
    base = load(ROOT / "params.yaml")
    assert written == base.model_dump(mode="json")
    assert "lr_weights" in written["downstream"]  # not in params.yaml: a default
    assert written["model"]["mixer"]["kind"] == base.model.mixer.kind


def test_resolve_writes_the_variant_and_names_an_unknown_one(tmp_path: Path) -> None:
    res = resolve("--variant", "mhsa", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    written = json.loads((tmp_path / "mhsa" / "params.json").read_text())
    assert written["model"]["mixer"]["kind"] == "mhsa" and written["variants"] == {}

    res = resolve("--variant", "ghost", "--out", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.startswith("resolve@ghost: ") and "'ghost' is not defined" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ghost").exists()


def smx_stage(*args: str) -> subprocess.CompletedProcess[str]:
    smx = Path(sys.executable).with_name("smx")
    return subprocess.run(
        [str(smx), "stage", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_smx_stage_runs_the_same_code_as_the_dvc_stage(tmp_path: Path) -> None:
    args = ("--params", str(ROOT / "params.yaml"), "--variant", "mhsa")
    dvc_run = resolve("--variant", "mhsa", "--out", str(tmp_path / "dvc"))
    by_hand = smx_stage("resolve", *args, "--out", str(tmp_path / "smx"))
    assert (dvc_run.returncode, by_hand.returncode) == (0, 0), by_hand.stderr
    assert (
        by_hand.stdout.strip() == f"resolve@mhsa: wrote {tmp_path / 'smx' / 'mhsa' / 'params.json'}"
    )
    written = [(tmp_path / d / "mhsa" / "params.json").read_bytes() for d in ("dvc", "smx")]
    assert written[0] == written[1]

    bad = smx_stage("resolve", "--params", str(ROOT / "params.yaml"), "--variant", "ghost")
    assert bad.returncode == 2
    assert bad.stderr.startswith("resolve@ghost: ") and "'ghost' is not defined" in bad.stderr


def test_smx_stage_passes_help_and_usage_errors_to_the_stage_parser() -> None:
    helped = smx_stage("probe", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: smx stage probe ") and "--task" in helped.stdout
    missing = smx_stage("probe", "--variant", "mhsa")
    assert missing.returncode == 2
    assert "smx stage probe: error: the following arguments are required: --task" in missing.stderr
    listed = smx_stage("--help")
    assert listed.returncode == 0
    for name in (
        "prepare",
        "resolve",
        "pretrain",
        "finetune",
        "baseline",
        "probe",
        "bench",
        "report",
    ):
        assert name in listed.stdout
