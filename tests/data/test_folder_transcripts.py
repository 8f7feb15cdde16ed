"""The folder import's transcript files: lines, TSV, CSV and LJSpeech, ids, speakers, errors.

Every test writes a tiny folder of tones and a hand-written transcript file, prepares it,
and checks the cuts (id, text, speaker, audio path) against the transcript.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import tiny_data_cfg, tone, write_audio
from typer.testing import CliRunner

from smx.cli import app
from smx.data.corpora import prepare_folder
from smx.data.manifests import load_cuts
from smx.data.transcripts import ACCEPTED, sniff_format

#: item id -> (text, speaker, audio path relative to the folder)
Expected = dict[str, tuple[str, str | None, str]]


def make_folder(root: Path, files: list[str]) -> Path:
    """``root`` with a one-second tone at each relative path of ``files``."""
    for rel in files:
        write_audio(root / rel, tone(1.0))
    return root


def prepared(root: Path, out: Path, split: str = "train") -> Expected:
    """The cuts of ``split`` in ``out`` as id -> (text, speaker, audio path below ``root``)."""
    found: Expected = {}
    for cut in load_cuts(out, split):
        (sup,) = cut.supervisions
        path = Path(cut.recording.sources[0].source).relative_to(root.resolve())
        found[cut.id] = (sup.text, sup.speaker, path.as_posix())
    return found


def skip_reasons(out: Path) -> dict[str, str]:
    report = json.loads((out / "report.json").read_text())
    return {item["id"]: item["reason"] for item in report["skipped_items"]}


# ----------------------------------------------------------------------------------------
# one test per format


def test_id_text_lines_as_before(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "in", ["ann/u1.wav", "ann/u2.flac", "u3.wav"])
    (tmp_path / "text").write_text("u1 Hello, World!\nu2 good bye\n\nu3 it's me\n")
    summary = prepare_folder(root, tmp_path / "out", tiny_data_cfg(), tmp_path / "text")
    assert prepared(root, tmp_path / "out") == {
        "u1": ("hello world", "ann", "ann/u1.wav"),
        "u2": ("good bye", "ann", "ann/u2.flac"),
        "u3": ("it's me", None, "u3.wav"),
    }
    assert summary["skipped"] == 0


def test_tsv_without_header_names_files_with_their_suffix(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "in", ["a.wav", "b.wav", "c.wav"])
    (root / "transcripts.tsv").write_text(
        "a.wav\tFirst one\nb.wav\tSecond one\nc.wav\tThird\tzoe\n"
    )
    prepare_folder(root, tmp_path / "out", tiny_data_cfg(), root / "transcripts.tsv")
    assert prepared(root, tmp_path / "out") == {
        "a": ("first one", None, "a.wav"),
        "b": ("second one", None, "b.wav"),
        "c": ("third", "zoe", "c.wav"),  # an optional third column: the speaker
    }


def test_tsv_with_header_and_a_speaker_column(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "in", ["clips/a.wav", "clips/b.wav", "clips/c.wav"])
    text = tmp_path / "train.tsv"
    text.write_text(
        "client_id\tpath\tsentence\tup_votes\n"
        'ann\tclips/a.wav\t"Quoted" words\t2\n'
        "bob\tclips/b.wav\tSome text\t0\n"
        "\tclips/c.wav\tNo speaker given\t1\n"
    )
    prepare_folder(root, tmp_path / "out", tiny_data_cfg(), text)
    assert prepared(root, tmp_path / "out") == {
        "clips_a": ("quoted words", "ann", "clips/a.wav"),
        "clips_b": ("some text", "bob", "clips/b.wav"),
        "clips_c": ("no speaker given", "clips", "clips/c.wav"),  # empty cell: the folder
    }


def test_csv_with_header_and_quoted_text_with_commas(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "in", ["x1.wav", "x2.wav", "x3.wav"])
    text = tmp_path / "list.csv"
    text.write_text(
        "Speaker ID,File Name,Transcription\n"
        'eve,x1.wav,"Well, yes, indeed"\n'
        'dan,x2.wav,"She said ""no"", twice"\n'
        "dan,x3,plain\n"
    )
    prepare_folder(root, tmp_path / "out", tiny_data_cfg(), text)
    assert prepared(root, tmp_path / "out") == {
        "x1": ("well yes indeed", "eve", "x1.wav"),
        "x2": ("she said no twice", "dan", "x2.wav"),
        "x3": ("plain", "dan", "x3.wav"),
    }


def test_ljspeech_metadata_uses_the_normalised_text(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "LJSpeech-1.1", [f"wavs/LJ001-000{i}.wav" for i in (1, 2, 3)])
    (root / "metadata.csv").write_text(
        "LJ001-0001|Printing, in 1869, began|Printing, in eighteen sixty-nine, began\n"
        'LJ001-0002|in "being" comparatively modern.|in "being" comparatively modern.\n'
        "LJ001-0003|Mr. Smith|\n"  # no normalised text: the text
    )
    prepare_folder(root, tmp_path / "out", tiny_data_cfg(), root / "metadata.csv")
    assert prepared(root, tmp_path / "out") == {
        "LJ001-0001": ("printing in eighteen sixty nine began", "wavs", "wavs/LJ001-0001.wav"),
        "LJ001-0002": ("in being comparatively modern", "wavs", "wavs/LJ001-0002.wav"),
        "LJ001-0003": ("mr smith", "wavs", "wavs/LJ001-0003.wav"),
    }


def test_format_option_overrides_the_detection(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "in", ["my clip.wav", "other clip.wav"])
    text = tmp_path / "list.txt"
    text.write_text("my clip.wav,hello there\nother clip.wav,bye now\n")
    assert sniff_format(text.name, text.read_text()) == "lines"  # a space in the first field
    prepare_folder(root, tmp_path / "out", tiny_data_cfg(), text, transcript_format="csv")
    assert prepared(root, tmp_path / "out") == {
        "my clip": ("hello there", None, "my clip.wav"),
        "other clip": ("bye now", None, "other clip.wav"),
    }


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("text", "u1 hello there\nu2 bye\n", "lines"),
        ("text", "u1 Hello, World\nu2 Yes, no\n", "lines"),
        ("transcripts.txt", "a.wav\tHello\nb.wav\tBye\n", "tsv"),
        ("data.tsv", "path\ttext\n", "tsv"),
        ("data.tsv", "no tabs here\n", "tsv"),
        ("metadata.csv", "LJ001-0001|Hi, you|Hi, you\n", "ljspeech"),
        ("metadata.csv", "LJ001-0001|Hi|Hi\nLJ001-0002 broken\n", "ljspeech"),
        ("list", "a.wav,Hello\nb.wav,Bye\n", "csv"),
        ("list.csv", "my file.wav,Hello\n", "csv"),
        ("list.csv", "", "csv"),
    ],
)
def test_format_detection_from_name_and_first_lines(name: str, content: str, expected: str) -> None:
    assert sniff_format(name, content) == expected


# ----------------------------------------------------------------------------------------
# ids, speakers, skips


def test_ids_match_with_or_without_suffix_and_with_relative_paths(tmp_path: Path) -> None:
    files = ["wavs/a.wav", "b.flac", "clips/c.wav", "alice/001.wav", "bob/001.wav", "d.wav"]
    root = make_folder(tmp_path / "in", files)
    text = tmp_path / "list.tsv"
    text.write_text(
        "wavs/a.wav\tone\n"  # relative path with suffix
        "b\ttwo\n"  # id without suffix
        "./clips/c\tthree\n"  # relative path without suffix
        "alice/001.wav\tfour\n"  # same file name in two folders: the path decides
        "bob/001\tfive\n"
        f"{root.resolve() / 'd.wav'}\tsix\n"  # absolute path below the folder
        "e.wav\tseven\n"  # no such file: skipped
        "b.wav\tagain\n"  # the same id as 'b': skipped
        "a\tonce more\n"  # fits wavs/a.wav, already used by 'wavs/a.wav': skipped
    )
    cfg = tiny_data_cfg({"max_skip_fraction": 0.5})
    summary = prepare_folder(root, tmp_path / "out", cfg, text, speaker_from="none")
    assert prepared(root, tmp_path / "out") == {
        "wavs_a": ("one", None, "wavs/a.wav"),
        "b": ("two", None, "b.flac"),
        "clips_c": ("three", None, "clips/c.wav"),
        "alice_001": ("four", None, "alice/001.wav"),
        "bob_001": ("five", None, "bob/001.wav"),
        "d": ("six", None, "d.wav"),
    }
    assert skip_reasons(tmp_path / "out") == {
        "e": "no audio file for transcript line",
        "b": "duplicate id in the transcript file (line 8)",
        "a": "its audio file is already used by the transcript line of wavs_a",
    }
    assert summary["skipped"] == 3


def test_a_name_in_several_folders_uses_the_first_and_skips_the_others(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "in", ["s1/u.wav", "s2/u.wav", "s2/lonely.wav", "s2/v.wav"])
    (tmp_path / "text").write_text("u first\nv second\n")
    cfg = tiny_data_cfg({"max_skip_fraction": 0.5})
    prepare_folder(root, tmp_path / "out", cfg, tmp_path / "text")
    assert prepared(root, tmp_path / "out") == {
        "u": ("first", "s1", "s1/u.wav"),
        "v": ("second", "s2", "s2/v.wav"),
    }
    assert skip_reasons(tmp_path / "out") == {
        "u": f"duplicate id (also {root.resolve() / 's1' / 'u.wav'})",
        "lonely": "no transcript line for this audio file",
    }


def test_speaker_from_parent_folder_or_column(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "in", ["train/ann/a.wav", "train/bob/b.wav", "dev/cid/c.wav"])
    text = tmp_path / "list.csv"
    text.write_text("file,text,speaker\na.wav,one,s1\nb.wav,two,s2\nc.wav,three,s3\n")
    out = tmp_path / "out"
    prepare_folder(root, out, tiny_data_cfg(), text, speaker_from="parent")
    assert prepared(root, out) == {
        "a": ("one", "ann", "train/ann/a.wav"),
        "b": ("two", "bob", "train/bob/b.wav"),
    }
    assert prepared(root, out, "dev") == {"c": ("three", "cid", "dev/cid/c.wav")}
    prepare_folder(root, out, tiny_data_cfg(), text, speaker_from="column")  # starts over
    assert {i: s for i, (_, s, _) in prepared(root, out).items()} == {"a": "s1", "b": "s2"}
    assert {i: s for i, (_, s, _) in prepared(root, out, "dev").items()} == {"c": "s3"}


# ----------------------------------------------------------------------------------------
# unreadable transcript files through the command line


def run_folder(root: Path, out: Path, *options: str) -> tuple[int, str]:
    """``smx prepare folder root --out out *options``: exit code and stderr lines."""
    res = CliRunner().invoke(app, ["prepare", "folder", str(root), "--out", str(out), *options])
    return res.exit_code, res.stderr


@pytest.mark.parametrize(
    ("name", "content", "line", "problem"),
    [
        ("list.csv", "file,words\na.wav,hello\n", 1, "its header (file, words) has no text column"),
        ("list.csv", "sentence,speaker\nhello,ann\n", 1, "has no audio column"),
        ("list.tsv", "a.wav\thello\nb.wav\n", 2, "1 field(s) where at least 2"),
        ("metadata.csv", "LJ001-0001|Hello|Hello\n\nLJ001-0002\n", 3, "1 field(s)"),
        ("list.csv", 'a.wav,"unclosed\n', 1, "malformed CSV"),
        ("list.csv", "path,text\nb.wav,fine\n,no audio\n", 3, "the audio field is empty"),
    ],
)
def test_an_unreadable_transcript_file_is_one_sentence_and_writes_nothing(
    tmp_path: Path, name: str, content: str, line: int, problem: str
) -> None:
    root = make_folder(tmp_path / "in", ["a.wav", "b.wav"])
    text = tmp_path / name
    text.write_text(content)
    code, stderr = run_folder(root, tmp_path / "out", "--transcripts", str(text))
    assert code == 2
    (sentence,) = [row for row in stderr.splitlines() if row.strip()]
    assert sentence.startswith(
        f"smx prepare: cannot read the transcript file {text.resolve()} at line {line}: "
    )
    assert problem in sentence and sentence.endswith(f"{ACCEPTED} (--format chooses one)")
    assert not (tmp_path / "out").exists()


def test_option_mistakes_are_one_sentence(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "in", ["a.wav"])
    text = tmp_path / "text"
    text.write_text("a hello\n")
    code, stderr = run_folder(root, tmp_path / "out", "--transcripts", str(text), "--format", "x")
    assert (code, stderr.strip()) == (
        2,
        "smx prepare: unknown --format 'x'; choose one of auto, lines, tsv, csv, ljspeech",
    )
    code, stderr = run_folder(
        root, tmp_path / "out", "--transcripts", str(text), "--speaker-from", "column"
    )
    assert code == 2 and stderr.strip() == (
        "smx prepare: --speaker-from column needs a speaker column (speaker, speaker_id, spk, "
        f"spk_id, client_id) in the transcript file, but {text.resolve()} has none"
    )
    assert not (tmp_path / "out").exists()


def test_the_command_prepares_a_tsv_folder_with_a_speaker_per_parent_folder(
    tmp_path: Path,
) -> None:
    root = make_folder(tmp_path / "in", ["ann/a.wav", "bob/b.wav"])
    (root / "transcripts.tsv").write_text("path\ttext\tspeaker\na.wav\tone\tx\nb.wav\ttwo\tx\n")
    options = ("--transcripts", str(root / "transcripts.tsv"), "--speaker-from", "parent")
    code, stderr = run_folder(root, tmp_path / "out", *options, "--workers", "1")
    assert code == 0, stderr
    assert prepared(root, tmp_path / "out") == {
        "a": ("one", "ann", "ann/a.wav"),
        "b": ("two", "bob", "bob/b.wav"),
    }
