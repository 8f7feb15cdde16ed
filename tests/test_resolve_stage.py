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
