"""``smx bench profile``: the top operators of one pre-training step per mixer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_helpers import smx, tiny_config


@pytest.mark.e2e
def test_profile_cli_writes_the_top_operators_of_each_mixer(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "wav2vec2")
    res = smx(
        "bench", "profile", "--config", str(config), "--kinds", "summarymixing",
        "--seconds", "0.5", "--top", "3", "--threads", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "profile.json").read_text())
    assert data["meta"]["bench"]["fast"] is True
    for record, kind in zip(data["records"], ["summarymixing"], strict=True):
        assert record["kind"] == kind and record["ranked_by"] == "self_cpu_ms"
        ops = record["ops"]
        assert len(ops) == 3 and all(op["name"] and op["calls"] >= 1 for op in ops)
        shares = [op["share"] for op in ops]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1
    assert "top operators of one pre-training step at 0.5 s" in res.stdout


def test_profile_cli_bad_input_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    res = smx("bench", "profile", "--kinds", "lstm", "--out", str(tmp_path), timeout=120)
    assert res.returncode == 2, res.stdout
    assert "variants has no entry 'lstm'" in res.stderr and "Traceback" not in res.stderr
