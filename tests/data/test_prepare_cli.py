"""``smx prepare`` as a user runs it: the console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SMX = shutil.which("smx", path=str(Path(sys.executable).parent)) or "smx"
TINY_YAML = """\
data:
  min_duration: 0.5
  max_duration: 8.0
  max_batch_duration: 16.0
  synth:
    hours: 0.004
    num_speakers: 5
    heldout_speakers: 2
    free_sentences: 40
"""


def smx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [SMX, *args], capture_output=True, text=True, env=full_env, timeout=300, check=False
    )


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.e2e
def test_prepare_synth_prints_the_summary_speed_and_outputs(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    out = tmp_path / "corpus"
    res = smx("prepare", "synth", "--out", str(out), "--config", str(config), "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert "x faster than real time" in res.stdout
    assert f"to {out}" in res.stdout and str(out / "trials.txt") in res.stdout
    assert "heldout" in res.stdout and "total" in res.stdout  # the summary table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["speakers"] == 5 and (out / "COMPLETE.json").exists()


def test_missing_espeak_is_one_sentence_with_the_fix(tmp_path: Path) -> None:
    res = smx("prepare", "synth", "--out", str(tmp_path / "c"), env={"PATH": str(tmp_path)})
    line = one_line_error(res)
    assert "espeak-ng was not found" in line and "apt-get install espeak-ng" in line


def test_missing_corpus_folders_are_one_sentence(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "nowhere")
    out = str(tmp_path / "out")
    for args in (
        ("librispeech", nowhere, "--out", out),
        ("librilight", nowhere, "--out", out),
        ("folder", nowhere, "--out", out),
        ("shar", nowhere, "--out", out),
    ):
        line = one_line_error(smx("prepare", *args))
        assert line.startswith("smx prepare: ") and "nowhere" in line, args


def test_bad_config_and_options_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  synth:\n    styles: [neutral, angry]\n")
    res = smx("prepare", "synth", "--out", str(tmp_path / "c"), "--config", str(bad))
    assert res.returncode == 2 and f"{bad}:3: data.synth.styles" in res.stderr
    res = smx("prepare", "synth", "--out", str(tmp_path / "c"), "--hours", "-1")
    assert "hours" in one_line_error(res)


def test_shar_command_exports_the_corpus(synth_corpus: Any, tmp_path: Path) -> None:
    out = tmp_path / "shar"
    res = smx("prepare", "shar", str(synth_corpus.out_dir), "--out", str(out), "--split", "dev")
    assert res.returncode == 0, res.stderr
    n_dev = synth_corpus.summary["splits"]["dev"]["utterances"]
    assert f"dev: {n_dev} cuts in 1 shards -> {out / 'dev'}" in res.stdout
    assert f"wrote Shar shards to {out}" in res.stdout


@pytest.mark.parametrize("command", ["synth", "librispeech", "librilight", "folder", "shar"])
def test_every_command_documents_an_example(command: str) -> None:
    res = smx("prepare", command, "--help")
    assert res.returncode == 0 and f"Example: smx prepare {command}" in res.stdout
