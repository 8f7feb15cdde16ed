"""Manifests on disk: atomic reproducible files, folder claiming, validation, relocation."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lhotse import Recording, SupervisionSegment, load_manifest
from lhotse.audio import AudioSource

from smx.data.manifests import (
    MARKER,
    available_splits,
    begin_prepare,
    load_cuts,
    summarise,
    validate_split,
    write_corpus,
    write_manifest,
)
from smx.data.problems import PrepareError, PrepareReport


def rec(rid: str, seconds: float = 2.0, source: str | None = None) -> Recording:
    src = AudioSource("file", [0], source or f"audio/{rid}.flac")
    return Recording(rid, [src], 16000, int(seconds * 16000), seconds)


def sup(rid: str, seconds: float = 2.0, **custom: Any) -> SupervisionSegment:
    return SupervisionSegment(
        rid, rid, 0.0, seconds, text="hello", speaker=custom.pop("speaker", "s1"), custom=custom
    )


def test_write_manifest_is_byte_reproducible_and_readable_by_lhotse(tmp_path: Path) -> None:
    items = [rec("a"), rec("b", 3.0)]
    write_manifest(items, tmp_path / "one.jsonl.gz")
    write_manifest(items, tmp_path / "two.jsonl.gz")
    assert (tmp_path / "one.jsonl.gz").read_bytes() == (tmp_path / "two.jsonl.gz").read_bytes()
    loaded = load_manifest(tmp_path / "one.jsonl.gz")
    assert [r.id for r in loaded] == ["a", "b"] and loaded["b"].duration == 3.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl.gz", "two.jsonl.gz"]


def test_begin_prepare_resumes_clears_or_refuses(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert begin_prepare(out, {"v": 1}) is False  # new folder
    (out / "audio").mkdir()
    (out / "audio" / "x.flac").write_bytes(b"x")
    (out / MARKER).write_text("{}")
    assert begin_prepare(out, {"v": 1}) is True  # same settings: resume, marker removed
    assert (out / "audio" / "x.flac").exists() and not (out / MARKER).exists()
    (out / "cuts_train.jsonl.gz").write_bytes(b"old")
    (out / "notes.md").write_text("mine")
    assert begin_prepare(out, {"v": 2}) is False  # other settings: our outputs go
    assert not (out / "audio").exists() and not (out / "cuts_train.jsonl.gz").exists()
    assert (out / "notes.md").read_text() == "mine"  # not ours: left alone
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1,2")
    with pytest.raises(PrepareError, match="not written by smx prepare"):
        begin_prepare(foreign, {"v": 1})
    (tmp_path / "file").write_text("x")
    with pytest.raises(PrepareError, match="not a folder"):
        begin_prepare(tmp_path / "file", {"v": 1})


def test_validate_split_reports_lhotse_problems_with_the_split_name() -> None:
    from lhotse import RecordingSet, SupervisionSet

    recs = RecordingSet.from_recordings([rec("a", 1.0)])
    too_long = SupervisionSet.from_segments([sup("a", 5.0)])
    with pytest.raises(PrepareError, match="split 'dev' failed Lhotse's validation"):
        validate_split("dev", recs, too_long)
    cuts = validate_split("dev", recs, SupervisionSet.from_segments([sup("a", 1.0)]))
    assert [c.id for c in cuts] == ["a"]  # cut id = recording id


def test_summarise_counts_hours_utterances_speakers_and_classes() -> None:
    from lhotse import CutSet, RecordingSet, SupervisionSet

    recs = [rec("a", 1800.0), rec("b", 900.0), rec("c", 900.0)]
    sups = [
        sup("a", 1800.0, speaker="s1", intent="x", style="fast"),
        sup("b", 900.0, speaker="s2", intent="x", style="slow"),
        sup("c", 900.0, speaker="s1", intent="y"),
    ]
    cuts = CutSet.from_manifests(
        recordings=RecordingSet.from_recordings(recs),
        supervisions=SupervisionSet.from_segments(sups),
    )
    summary = summarise({"train": cuts})
    assert summary["splits"]["train"] == {
        "hours": 1.0,
        "utterances": 3,
        "speakers": 2,
        "intent": {"x": 2, "y": 1},
        "style": {"fast": 1, "slow": 1},
    }
    assert summary["total"] == {"hours": 1.0, "utterances": 3, "speakers": 2}


def write_tiny_corpus(out: Path) -> dict[str, Any]:
    import soundfile as sf

    (out / "audio").mkdir(parents=True)
    for rid in ("a", "b", "c"):
        sf.write(out / "audio" / f"{rid}.flac", np.full(32000, 0.25, np.float32), 16000)
    splits = {
        "train": ([rec("a"), rec("b")], [sup("a"), sup("b")]),
        "dev": ([rec("c")], [sup("c")]),
    }
    return write_corpus(out, "demo", splits, PrepareReport(kept=3), 0.0)


def test_relative_audio_paths_survive_moving_the_corpus(tmp_path: Path) -> None:
    write_tiny_corpus(tmp_path / "before")
    shutil.move(tmp_path / "before", tmp_path / "after")
    cuts = list(load_cuts(tmp_path / "after", "train"))
    assert [c.id for c in cuts] == ["a", "b"]
    audio = cuts[0].load_audio()  # [1, S]
    assert audio.shape == (1, 32000) and np.allclose(audio, 0.25, atol=1e-4)
    assert available_splits(tmp_path / "after") == ["train", "dev"]


def test_load_cuts_refuses_unfinished_corpora_and_unknown_splits(tmp_path: Path) -> None:
    write_tiny_corpus(tmp_path / "c")
    with pytest.raises(PrepareError, match=r"no split 'test' \(it has: train, dev\)"):
        load_cuts(tmp_path / "c", "test")
    (tmp_path / "c" / MARKER).unlink()
    with pytest.raises(PrepareError, match="not a finished corpus"):
        load_cuts(tmp_path / "c", "train")


def test_write_corpus_needs_training_data_and_checks_the_skip_share(tmp_path: Path) -> None:
    only_dev = {"dev": ([rec("c")], [sup("c")])}
    with pytest.raises(PrepareError, match="no usable training utterances"):
        write_corpus(tmp_path / "a", "demo", only_dev, PrepareReport(kept=1), 0.0)
    report = PrepareReport(kept=1)
    report.add_skip("x", "x.wav", "empty file (0 bytes)")
    with pytest.raises(PrepareError, match=r"1 of 2 items \(50\.0%\) were skipped"):
        write_corpus(tmp_path / "b", "demo", only_dev, report, 0.2)
    assert (tmp_path / "b" / "report.json").exists()  # the reasons are kept for the user
    assert not (tmp_path / "b" / MARKER).exists()
