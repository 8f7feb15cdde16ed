"""Real corpora through Lhotse's recipes (LibriSpeech, Libri-Light) and the folder import.

The corpora are small trees in each corpus' exact layout, built here from the synthetic
corpus' audio, with one file or line for every kind of bad input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from data_helpers import tiny_data_cfg, tone, truncate, write_audio

from smx.data.corpora import prepare_folder, prepare_librilight, prepare_librispeech
from smx.data.loader import collate
from smx.data.manifests import MARKER, load_cuts
from smx.data.problems import PrepareError


def synth_files(synth_corpus: Any, count: int) -> list[tuple[Path, str]]:
    """(audio path, transcript) of the first ``count`` synthetic training utterances."""
    cuts = list(load_cuts(synth_corpus.out_dir, "train"))[:count]
    return [(Path(c.recording.sources[0].source), c.supervisions[0].text) for c in cuts]


def reasons(out: Path) -> dict[str, str]:
    report = json.loads((out / "report.json").read_text())
    return {item["id"]: item["reason"] for item in report["skipped_items"]}


# ----------------------------------------------------------------------------------------
# LibriSpeech


@pytest.fixture
def librispeech_tree(synth_corpus: Any, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A LibriSpeech folder with train-clean-5 and dev-clean, and its expected kept texts."""
    root = tmp_path / "LibriSpeech"
    files = iter(synth_files(synth_corpus, 12))
    expected: dict[str, str] = {}
    layout = {("train-clean-5", "19", "198"): 4, ("train-clean-5", "26", "495"): 4}
    layout[("dev-clean", "84", "121123")] = 3
    for (part, spk, chap), count in layout.items():
        folder = root / part / spk / chap
        folder.mkdir(parents=True)
        lines = []
        for i in range(count):
            src, text = next(files)
            utt = f"{spk}-{chap}-{i:04d}"
            shutil.copy(src, folder / f"{utt}.flac")
            lines.append(f"{utt} {text.upper()}")
            expected[utt] = text
        (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    folder = root / "train-clean-5" / "19" / "198"
    src, _ = next(files)
    shutil.copy(src, folder / "19-198-0004.flac")
    truncate(folder / "19-198-0004.flac")
    (folder / "19-198-0005.flac").touch()
    (folder / "19-198-0006.flac").write_text("not audio\n" * 50)
    shutil.copy(src, folder / "19-198-0008.flac")  # audio without a transcript line
    wave, _ = sf.read(src)
    stereo = np.stack([wave, wave], axis=1)
    write_audio(folder / "19-198-0009.flac", stereo[:: max(1, 16000 // 8000)], 8000)
    write_audio(folder / "19-198-0010.flac", tone(1.5))
    write_audio(folder / "19-198-0011.flac", tone(1.2))
    with open(folder / "19-198.trans.txt", "a") as fh:
        fh.write("19-198-0000 A DUPLICATE LINE\n")
        fh.write("19-198-0004 TRUNCATED\n19-198-0005 EMPTY\n19-198-0006 NOT AUDIO\n")
        fh.write("19-198-0007 NO AUDIO FOR THIS LINE\n")
        fh.write("19-198-0009 STEREO AT EIGHT KILOHERTZ\n")
        fh.write("19-198-0010 ROOM 101\n")
        fh.write("19-198-0011 CAFÉ NAÏVE\n")
    expected["19-198-0009"] = "stereo at eight kilohertz"
    expected["19-198-0011"] = "cafe naive"
    return root, expected


def test_librispeech_through_lhotse_with_bad_input(
    librispeech_tree: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, expected = librispeech_tree
    out = tmp_path / "prepared"
    cfg = tiny_data_cfg({"max_skip_fraction": 0.5})
    summary = prepare_librispeech(root, out, cfg)
    why = reasons(out)
    assert why["19-198-0000"] == "duplicate id (a later transcript line)"
    assert why["19-198-0004"].startswith(("truncated", "not a readable"))
    assert why["19-198-0005"] == "empty file (0 bytes)"
    assert why["19-198-0006"].startswith("not a readable audio file")
    assert why["19-198-0007"] == "no audio file for transcript line"
    assert why["19-198-0008"] == "no transcript line for this audio file"
    assert why["19-198-0010"] == "characters outside data.alphabet: ['0', '1']"
    assert len(why) == 7 and summary["skipped"] == 7 and summary["repaired"] == 1
    assert summary["splits"]["train"]["utterances"] == 10
    assert summary["splits"]["dev"]["utterances"] == 3
    assert summary["splits"]["train"]["part"] == {"train-clean-5": 10}
    assert not (out / ".staging").exists() and (out / MARKER).exists()

    cuts = {c.id: c for split in ("train", "dev") for c in load_cuts(out, split)}
    assert set(cuts) == set(expected)
    for utt, cut in cuts.items():
        sup = cut.supervisions[0]
        assert sup.text == expected[utt]
        assert sup.speaker == utt.split("-")[0]
        assert sup.language == "English"  # set by Lhotse's recipe
    repaired = cuts["19-198-0009"].recording
    assert repaired.sampling_rate == 16000 and repaired.num_channels == 1
    on_disk = json.loads((out / "report.json").read_text())["repaired_items"]
    assert on_disk[0]["repairs"] == [
        "down-mixed 2 channels to mono",
        "resampled 8000 Hz to 16000 Hz",
    ]
    from lhotse import load_manifest

    sources = {r.id: r.sources[0].source for r in load_manifest(out / "recordings_train.jsonl.gz")}
    assert sources["19-198-0009"] == "repaired/19-198-0009.flac"  # inside the corpus: relative
    assert sources["19-198-0001"] == str(root.resolve() / "train-clean-5/19/198/19-198-0001.flac")
    batch = collate(load_cuts(out, "train").subset(cut_ids=["19-198-0001", "19-198-0009"]))
    assert batch["audio"].shape[0] == 2 and batch["audio_lens"].min() > 0


def test_librispeech_fails_when_too_much_is_skipped(
    librispeech_tree: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = librispeech_tree
    with pytest.raises(PrepareError, match=r"7 of 20 items \(35\.0%\) were skipped"):
        prepare_librispeech(root, tmp_path / "out", tiny_data_cfg())
    assert len(reasons(tmp_path / "out")) == 7 and not (tmp_path / "out" / MARKER).exists()


def test_librispeech_folder_problems_say_what_to_pass(tmp_path: Path) -> None:
    cfg = tiny_data_cfg()
    with pytest.raises(PrepareError, match=r"LibriSpeech folder .* does not exist; pass"):
        prepare_librispeech(tmp_path / "nowhere", tmp_path / "out", cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="holds no LibriSpeech part"):
        prepare_librispeech(tmp_path / "empty", tmp_path / "out", cfg)
    (tmp_path / "empty" / "dev-clean").mkdir()
    with pytest.raises(PrepareError, match="no LibriSpeech part test-clean"):
        prepare_librispeech(tmp_path / "empty", tmp_path / "out", cfg, parts=["test-clean"])


# ----------------------------------------------------------------------------------------
# Libri-Light


def test_librilight_through_lhotse_in_voice_activity_windows(
    synth_corpus: Any, tmp_path: Path
) -> None:
    root = tmp_path / "librilight"
    files = synth_files(synth_corpus, 12)
    waves = [sf.read(p, dtype="float32")[0] for p, _ in files]
    long_a, long_b = np.concatenate(waves), np.concatenate(waves[:3])
    book = root / "small" / "100" / "book_a"
    write_audio(book / "chapter_01.flac", long_a)
    seconds_a = len(long_a) / 16000
    vad_a = [[0.0, 2.0], [2.5, seconds_a - 0.1]]  # the second segment is longer than 10 s
    (book / "chapter_01.json").write_text(json.dumps({"speaker": "100", "voice_activity": vad_a}))
    other = root / "small" / "200" / "book_b"
    stereo = np.stack([long_b, long_b], axis=1)
    write_audio(other / "chapter_02.flac", stereo, 16000)  # repaired (down-mixed)
    vad_b = [[0.5, 3.0]]
    (other / "chapter_02.json").write_text(json.dumps({"speaker": "200", "voice_activity": vad_b}))
    write_audio(other / "chapter_03.flac", tone(2.0))  # no .json beside it
    out = tmp_path / "prepared"
    summary = prepare_librilight(root, out, tiny_data_cfg({"max_skip_fraction": 0.5}))
    assert reasons(out) == {
        "small/200/book_b/chapter_03": "no voice-activity .json beside the audio file"
    }
    assert list(summary["splits"]) == ["train"] and summary["repaired"] == 1
    cuts = list(load_cuts(out, "train"))
    durations = sorted(round(c.duration, 3) for c in cuts)
    long_segment = seconds_a - 0.1 - 2.5  # more than 20 s: windows of 10 s and the rest
    windows = [10.0] * int(long_segment // 10) + [round(long_segment % 10, 3)]
    expected = sorted([2.0, 2.5, *windows])
    assert durations == pytest.approx(expected, abs=2e-3)
    assert all(c.duration <= 10.0 + 1e-6 for c in cuts)
    assert {c.supervisions[0].speaker for c in cuts} == {"100", "200"}
    assert all(s.text is None for c in cuts for s in c.supervisions)
    assert summary["splits"]["train"]["speakers"] == 2
    batch = collate(load_cuts(out, "train"))
    assert batch["text"] == [None] * len(cuts)
    assert sorted(batch["audio_lens"].tolist()) == sorted(c.num_samples for c in cuts)


def test_librilight_folder_problems_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match=r"Libri-Light folder .* does not exist"):
        prepare_librilight(tmp_path / "nowhere", tmp_path / "out", tiny_data_cfg())
    with pytest.raises(PrepareError, match="holds no Libri-Light part"):
        prepare_librilight(tmp_path, tmp_path / "out", tiny_data_cfg())


# ----------------------------------------------------------------------------------------
# generic folder


@pytest.fixture
def messy_folder(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "mine"
    a = root / "train" / "spkA"
    write_audio(a / "a01.wav", tone(1.0))
    nan = tone(1.0)
    nan[5] = np.nan
    write_audio(a / "a02.wav", nan, subtype="FLOAT")
    inf = tone(1.0)
    inf[7] = np.inf
    write_audio(a / "a03.wav", inf, subtype="FLOAT")
    write_audio(a / "a04.wav", tone(1.0, rate=8000), rate=8000)
    write_audio(a / "a05.wav", tone(1.0, channels=2))
    (a / "a06.wav").touch()
    (a / "a07.wav").write_text("definitely not audio" * 30)
    write_audio(a / "a08.wav", np.zeros(0, dtype=np.float32))
    truncate(write_audio(a / "a09.wav", tone(2.0), subtype="PCM_16"))
    write_audio(a / "a10.wav", np.full(800, np.nan, np.float32), subtype="FLOAT")
    write_audio(a / "a11.wav", tone(1.0))  # no transcript line
    write_audio(a / "a13.flac", tone(1.0))
    write_audio(a / "a14.flac", tone(1.0))
    write_audio(root / "dev" / "spkB" / "b01.wav", tone(1.0))
    write_audio(root / "dev" / "b02.wav", tone(1.5))  # no speaker folder
    write_audio(root / "dev" / "spkB" / "a01.wav", tone(1.0))  # duplicate id
    write_audio(root / "extra" / "x01.wav", tone(1.0))  # outside train/dev/test
    (root / "train" / "README.txt").write_text("not an audio suffix: ignored")
    text = tmp_path / "text"
    lines = [f"a{i:02d} sentence number {w}" for i, w in enumerate(["zero"] * 11)]
    lines += ["a01 again the same id", "a12 a line without audio", "a13 Ünïcode 42"]
    lines += ["a14 Naïve, Café!", "b01 hello", "b02 hi there", "x01 outside"]
    text.write_text("\n".join(lines[1:]) + "\n")
    return root, text


def test_folder_import_repairs_or_skips_every_kind_of_bad_input(
    messy_folder: tuple[Path, Path], tmp_path: Path
) -> None:
    root, text = messy_folder
    out = tmp_path / "prepared"
    summary = prepare_folder(root, out, tiny_data_cfg({"max_skip_fraction": 0.9}), text)
    why = reasons(out)
    assert why.pop("a01").startswith(("duplicate id in the transcript", "duplicate id (also"))
    assert why == {
        "a06": "empty file (0 bytes)",
        "a07": why["a07"],
        "a08": "zero-length audio (0 samples)",
        "a09": why["a09"],
        "a10": "no finite samples (all NaN or inf)",
        "a11": "no transcript line for this audio file",
        "a12": "no audio file for transcript line",
        "a13": "characters outside data.alphabet: ['2', '4']",
        "x01": "outside the train/dev/test folders",
    }
    assert why["a07"].startswith("not a readable audio file")
    assert why["a09"].startswith("truncated WAV")
    report = json.loads((out / "report.json").read_text())
    repairs = {r["id"]: r["repairs"] for r in report["repaired_items"]}
    assert repairs == {
        "a02": ["replaced 1 NaN/inf samples with 0"],
        "a03": ["replaced 1 NaN/inf samples with 0"],
        "a04": ["resampled 8000 Hz to 16000 Hz"],
        "a05": ["down-mixed 2 channels to mono"],
    }
    cuts = {c.id: c for split in ("train", "dev") for c in load_cuts(out, split)}
    assert set(cuts) == {"a01", "a02", "a03", "a04", "a05", "a14", "b01", "b02"}
    # the first file in path order keeps a duplicated id: dev/spkB/a01.wav
    assert summary["splits"]["dev"]["utterances"] == 3
    assert cuts["a01"].supervisions[0].speaker == "spkB"
    dups = [s for s in report["skipped_items"] if s["id"] == "a01"]
    assert {d["reason"].split(" (")[0] for d in dups} == {
        "duplicate id in the transcript file",
        "duplicate id",
    }
    assert cuts["a14"].supervisions[0].text == "naive cafe"
    assert cuts["a02"].supervisions[0].speaker == "spkA"
    assert cuts["b02"].supervisions[0].speaker is None
    for cut in cuts.values():
        audio = cut.load_audio()  # [1, S]
        assert np.isfinite(audio).all() and audio.shape == (1, cut.num_samples)
        assert cut.recording.sampling_rate == 16000
    assert cuts["a04"].num_samples == 16000


def test_folder_import_without_transcripts_is_unlabelled(tmp_path: Path) -> None:
    write_audio(tmp_path / "in" / "s1" / "u1.wav", tone(1.0))
    write_audio(tmp_path / "in" / "s1" / "u2.wav", tone(2.0))
    summary = prepare_folder(tmp_path / "in", tmp_path / "out", tiny_data_cfg())
    cuts = list(load_cuts(tmp_path / "out", "train"))
    assert [c.supervisions[0].text for c in cuts] == [None, None]
    assert summary["total"] == {"hours": round(3 / 3600, 4), "utterances": 2, "speakers": 1}


def test_folder_problems_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match=r"audio folder .* does not exist"):
        prepare_folder(tmp_path / "nowhere", tmp_path / "out", tiny_data_cfg())
    with pytest.raises(PrepareError, match=r"transcript file .* does not exist"):
        prepare_folder(tmp_path, tmp_path / "out", tiny_data_cfg(), tmp_path / "text.txt")
