"""The smx command line, run as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
SMX = shutil.which("smx", path=str(Path(sys.executable).parent)) or "smx"


def smx(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [SMX, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=300
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_validate_ok() -> None:
    res = smx("config", "validate", "params.yaml")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "params.yaml: OK"


def test_validate_reports_every_file_and_exits_2_without_traceback(tmp_path: Path) -> None:
    bad1 = tmp_path / "bad1.yaml"
    bad1.write_text("model:\n  mixer:\n    kind: mhsa\n    nheads: 8\n")
    bad2 = tmp_path / "bad2.yaml"
    bad2.write_text("train:\n  lr: [1\n")
    res = smx("config", "validate", "params.yaml", str(bad1), str(bad2))
    assert res.returncode == 2
    assert "params.yaml: OK" in res.stdout
    lines = res.stderr.strip().splitlines()
    allowed = "allowed keys: kind, heads, dropout, pos, relpos"
    assert lines[0] == f"{bad1}:4: model.mixer.nheads: unknown key 'nheads'; {allowed}"
    assert lines[1].startswith(f"{bad2}:3: YAML syntax error")
    assert "Traceback" not in res.stderr


def test_show_prints_defaults_and_variants(tmp_path: Path) -> None:
    res = smx("config", "show", "params.yaml")
    assert res.returncode == 0, res.stderr
    shown = YAML(typ="safe").load(res.stdout)
    assert shown["model"]["encoder"]["d_model"] == 128  # from params.yaml
    assert shown["ssl"]["mask_prob"] == 0.15  # a default of BEST-RQ in smx.config
    res = smx("config", "show", "params.yaml", "--variant", "mhsa", "--json")
    assert json.loads(res.stdout)["model"]["mixer"] == {
        "kind": "mhsa",
        "heads": 4,
        "dropout": 0.1,
        "pos": "abs",
    }
    res = smx("config", "show", "params.yaml", "--variant", "nope")
    assert res.returncode == 2 and "variant 'nope' is not defined" in res.stderr
    assert "Traceback" not in res.stderr


def test_diff(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("train:\n  lr: 1.0e-3\n")
    b = tmp_path / "b.yaml"
    b.write_text("train:\n  lr: 2.0e-3\nmodel:\n  mixer:\n    kind: mhsa\n")
    same = smx("config", "diff", str(a), str(a))
    assert same.returncode == 0 and "no differences" in same.stdout
    res = smx("config", "diff", str(a), str(b))
    assert res.returncode == 1
    assert "train.lr" in res.stdout and "0.001" in res.stdout and "0.002" in res.stdout
    assert (
        "model.mixer.kind" in res.stdout and "model.mixer.mode" in res.stdout
    )  # mode absent for mhsa
    assert "model.encoder.d_model" not in res.stdout


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["config"],
        ["config", "validate"],
        ["config", "show"],
        ["config", "diff"],
        ["doctor"],
        ["bench"],
        ["bench", "mixers"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    res = smx(*command, "--help")
    assert res.returncode == 0
    assert "Example: smx" in res.stdout


def test_doctor_reports_every_component() -> None:
    # The disk row's verdict depends on the machine; its threshold is tested below.
    res = smx("doctor", "--min-free-gb", "0")
    for component in (
        "python",
        "torch",
        "torchaudio",
        "cuda",
        "espeak-ng",
        "ray",
        "mlflow",
        "dvc",
        "git",
        "disk",
    ):
        assert f"│ {component} " in res.stdout, component
    assert res.returncode == 0, res.stdout + res.stderr  # everything is installed by `make test`


def test_doctor_flags_too_little_free_disk() -> None:
    res = smx("doctor", "--min-free-gb", "1000000", env={"COLUMNS": "200"})
    assert res.returncode == 1
    assert "problems: disk" in res.stderr
    assert "free at least 1e+06 GB" in res.stdout


def test_doctor_refuses_a_negative_disk_threshold() -> None:
    res = smx("doctor", "--min-free-gb", "-1")
    assert res.returncode == 2
    assert "--min-free-gb" in res.stderr
    assert "Traceback" not in res.stderr


def test_doctor_flags_unreachable_services() -> None:
    dead = free_port()
    res = smx(
        "doctor",
        env={
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{dead}",
            "RAY_ADDRESS": f"http://127.0.0.1:{dead}",
        },
    )
    assert res.returncode == 1
    assert "problems: ray, mlflow" in res.stderr
    assert "Traceback" not in res.stderr
