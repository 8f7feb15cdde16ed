"""configs/mp3s.yaml, the MP3S suite: every task on its own corpus, IEMOCAP by session."""

from __future__ import annotations

from pathlib import Path

from smx.config import load

ROOT = Path(__file__).resolve().parents[2]


def test_the_mp3s_suite_config_validates_and_describes() -> None:
    from typer.testing import CliRunner

    from smx.cli import app

    path = ROOT / "configs" / "mp3s.yaml"
    ds = load(path).downstream
    assert list(ds.tasks) == ["asr", "speaker", "intent", "emotion"]
    emotion = ds.task("emotion")
    assert (emotion.label, emotion.folds, emotion.held_out) == (
        "emotion",
        "session",
        [1, 2, 3, 4, 5],
    )
    assert all(ds.task(t).corpus for t in ds.tasks) and ds.probe_dim == 1024
    res = CliRunner().invoke(app, ["config", "describe", str(path)])
    assert res.exit_code == 0, res.output
