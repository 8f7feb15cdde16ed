"""The MP3S corpora through ``smx prepare``: VoxCeleb1, SLURP and IEMOCAP.

Each test builds a small tree in the corpus' published layout from tones, with one file or
line for every kind of bad input, runs the command and checks the manifests (ids, labels,
splits, trials) against hand-written expectations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from data_helpers import tone, truncate, write_audio
from typer.testing import CliRunner

from smx.cli import app
from smx.data.manifests import MARKER, load_cuts
from smx.downstream.tasks import load_task_data

LENIENT = "data:\n  max_skip_fraction: 0.5\n"


def prepare(*args: str | Path, config: Path | None = None) -> Any:
    """``smx prepare <args>`` in this process (with ``config`` when given)."""
    options = ["--config", str(config)] if config else []
    return CliRunner().invoke(app, ["prepare", *map(str, args), *options])


def lenient(tmp_path: Path) -> Path:
    """A config that allows half of the items to be skipped (the trees hold many bad ones)."""
    path = tmp_path / "lenient.yaml"
    path.write_text(LENIENT)
    return path


def one_sentence(res: Any) -> str:
    """The one line a refused preparation prints (exit code 2, no traceback)."""
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0].removeprefix("smx prepare: ")


def report(out: Path) -> dict[str, str]:
    """Skipped or left-out id -> reason, from ``report.json``."""
    items = json.loads((out / "report.json").read_text())["skipped_items"]
    return {item["id"]: item["reason"] for item in items}


def cuts_of(out: Path, split: str) -> dict[str, Any]:
    """The supervision of each cut of a split, by cut id."""
    return {cut.id: cut.supervisions[0] for cut in load_cuts(out, split)}


def assert_lhotse_valid(out: Path) -> None:
    """Lhotse's own checks pass on every split's manifests as written."""
    from lhotse import load_manifest
    from lhotse.qa import validate, validate_recordings_and_supervisions

    for split in json.loads((out / MARKER).read_text())["splits"]:
        recordings = load_manifest(out / f"recordings_{split}.jsonl.gz")
        supervisions = load_manifest(out / f"supervisions_{split}.jsonl.gz")
        validate_recordings_and_supervisions(recordings, supervisions)
        validate(load_cuts(out, split))


# ----------------------------------------------------------------------------------------
# VoxCeleb1

TRIALS = """\
1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav
0 id10270/x6uYqmx31kE/00001.wav id10271/1gtz-CUIygI/00001.wav

1 id10271/1gtz-CUIygI/00001.wav id10271/1gtz-CUIygI/00002.wav
0 id10270/8jEAjG6SegY/00008.wav id10271/1gtz-CUIygI/00003.wav
1 id10309/vobW27_-JyQ/00001.wav id10309/vobW27_-JyQ/00002.wav
"""
VOX_DEV = [
    "id10001/1zcIwhmdeo4/00001",
    "id10001/1zcIwhmdeo4/00002",
    "id10001/7w0IBEWc9Qw/00001",
    "id10002/0_laIeN-Q44/00001",
    "id10002/0_laIeN-Q44/00002",
    "id10002/6WO410QOeuo/00001",
    "id10002/6WO410QOeuo/00002",
    "id10003/5ablueV_1tw/00001",
]
VOX_TEST = [
    "id10270/x6uYqmx31kE/00001",
    "id10270/8jEAjG6SegY/00008",
    "id10271/1gtz-CUIygI/00001",
    "id10271/1gtz-CUIygI/00002",
    "id10271/1gtz-CUIygI/00003",
]


def voxceleb_tree(root: Path) -> Path:
    """VoxCeleb1's two parts and trial list; a stereo 8 kHz file, a truncated one, a stray."""
    for part, names in (("vox1_dev_wav", VOX_DEV), ("vox1_test_wav", VOX_TEST)):
        for i, name in enumerate(names):
            write_audio(root / part / "wav" / f"{name}.wav", tone(0.6, freq=150.0 + 40 * i))
    stereo = root / "vox1_dev_wav/wav/id10002/6WO410QOeuo/00002.wav"
    write_audio(stereo, tone(0.6, rate=8000, channels=2), 8000)
    truncate(root / "vox1_test_wav/wav/id10271/1gtz-CUIygI/00003.wav", keep=0.01)
    write_audio(root / "vox1_dev_wav/wav/id10001/stray.wav", tone(0.5))
    (root / "veri_test2.txt").write_text(TRIALS)
    return root


def test_voxceleb_speakers_splits_and_trials(tmp_path: Path) -> None:
    root, out = voxceleb_tree(tmp_path / "VoxCeleb1"), tmp_path / "voxceleb"
    res = prepare("voxceleb", root, "--out", out, config=lenient(tmp_path))
    assert res.exit_code == 0, res.output
    assert f"verification trials in {out / 'trials.txt'}" in res.stdout

    train, dev, heldout = cuts_of(out, "train"), cuts_of(out, "dev"), cuts_of(out, "heldout")
    assert sorted(train) == [
        "id10001-1zcIwhmdeo4-00001",
        "id10001-1zcIwhmdeo4-00002",
        "id10002-0_laIeN-Q44-00001",
        "id10002-0_laIeN-Q44-00002",
        "id10002-6WO410QOeuo-00001",
        "id10003-5ablueV_1tw-00001",
    ]
    assert sorted(dev) == ["id10001-7w0IBEWc9Qw-00001", "id10002-6WO410QOeuo-00002"]
    assert sorted(heldout) == [
        "id10270-8jEAjG6SegY-00008",
        "id10270-x6uYqmx31kE-00001",
        "id10271-1gtz-CUIygI-00001",
        "id10271-1gtz-CUIygI-00002",
    ]
    for cut_id, sup in {**train, **dev, **heldout}.items():
        assert sup.speaker == cut_id.split("-")[0]
        assert sup.custom == {"part": "vox1_test_wav" if cut_id in heldout else "vox1_dev_wav"}
    assert (out / "trials.txt").read_text() == (
        "1 id10270-x6uYqmx31kE-00001 id10270-8jEAjG6SegY-00008\n"
        "0 id10270-x6uYqmx31kE-00001 id10271-1gtz-CUIygI-00001\n"
        "1 id10271-1gtz-CUIygI-00001 id10271-1gtz-CUIygI-00002\n"
    )
    trial_list = root.resolve() / "veri_test2.txt"
    why = report(out)
    assert why.pop("id10271-1gtz-CUIygI-00003").startswith(("truncated", "not a readable"))
    assert why == {
        "id10001/stray.wav": "not at <speaker>/<video>/<utt>.wav",
        "veri_test2.txt:5": "trial without usable audio (id10271/1gtz-CUIygI/00003.wav not "
        "in the prepared test audio)",
        "veri_test2.txt:6": "trial without usable audio (id10309/vobW27_-JyQ/00001.wav and "
        "id10309/vobW27_-JyQ/00002.wav not in the prepared test audio)",
    }
    on_disk = json.loads((out / "report.json").read_text())
    assert {i["path"] for i in on_disk["skipped_items"] if i["id"].startswith("veri")} == {
        str(trial_list)
    }
    assert on_disk["repaired_items"][0]["id"] == "id10002-6WO410QOeuo-00002"
    assert json.loads((out / "summary.json").read_text())["skipped"] == 4
    assert_lhotse_valid(out)

    task = load_task_data(out, "speaker")
    assert task.classes == ["id10001", "id10002", "id10003"]
    assert len(task.dev) == 2 and len(task.test) == 4 and len(task.trials) == 3


def test_voxceleb_dev_fraction_and_trials_option(tmp_path: Path) -> None:
    root = voxceleb_tree(tmp_path / "VoxCeleb1")
    trials = tmp_path / "my_trials.txt"
    trials.write_text("1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n")
    out = tmp_path / "voxceleb"
    res = prepare(
        "voxceleb", root, "--out", out, "--trials", trials, "--dev-fraction", "0.5",
        config=lenient(tmp_path),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sorted(cuts_of(out, "dev")) == [
        "id10001-1zcIwhmdeo4-00002",
        "id10001-7w0IBEWc9Qw-00001",
        "id10002-6WO410QOeuo-00001",
        "id10002-6WO410QOeuo-00002",
    ]
    assert (out / "trials.txt").read_text() == (
        "1 id10270-x6uYqmx31kE-00001 id10270-8jEAjG6SegY-00008\n"
    )


def test_voxceleb_bad_inputs_are_one_sentence_and_write_nothing(tmp_path: Path) -> None:
    root, out = voxceleb_tree(tmp_path / "VoxCeleb1"), tmp_path / "voxceleb"
    trial_list = root.resolve() / "veri_test2.txt"
    trial_list.write_text("1 id10270/x6uYqmx31kE/00001.wav\n")
    assert one_sentence(prepare("voxceleb", root, "--out", out)) == (
        f"{trial_list}:1: a trial must read '<1|0> <speaker>/<video>/<utterance>.wav "
        "<speaker>/<video>/<utterance>.wav', got '1 id10270/x6uYqmx31kE/00001.wav'"
    )
    trial_list.write_text("1 id10309/vobW27_-JyQ/00001.wav id10309/vobW27_-JyQ/00002.wav\n")
    assert one_sentence(prepare("voxceleb", root, "--out", out)) == (
        f"none of the 1 trials of {trial_list} names two files of vox1_test_wav/wav that "
        "are there; is the test part complete?"
    )
    trial_list.unlink()
    assert one_sentence(prepare("voxceleb", root, "--out", out)) == (
        f"the VoxCeleb1-O trial list {trial_list} does not exist; put veri_test2.txt "
        "(lines '<1|0> <speaker>/<video>/<utterance>.wav <speaker>/<video>/<utterance>.wav') "
        "there or name it with --trials"
    )
    (root / "vox1_test_wav").rename(root / "elsewhere")
    assert one_sentence(prepare("voxceleb", root, "--out", out)) == (
        f"the VoxCeleb1 folder {root.resolve()} has no vox1_test_wav/wav folder; unzip "
        f"vox1_test_wav.zip into {root.resolve() / 'vox1_test_wav'}"
    )
    assert not out.exists()


def test_voxceleb_refuses_when_every_trial_names_unusable_audio(tmp_path: Path) -> None:
    root, out = voxceleb_tree(tmp_path / "VoxCeleb1"), tmp_path / "voxceleb"
    trial_list = root.resolve() / "veri_test2.txt"
    trial_list.write_text("0 id10270/8jEAjG6SegY/00008.wav id10271/1gtz-CUIygI/00003.wav\n")
    res = prepare("voxceleb", root, "--out", out, config=lenient(tmp_path))
    assert res.exit_code == 2 and "Traceback" not in res.output  # after the audio checks' bar
    assert res.stderr.strip().splitlines()[-1] == (
        f"smx prepare: no trial of {trial_list} is left: each names audio that was skipped (the reasons "
        f"are listed in {out / 'report.json'})"
    )
    assert report(out)["veri_test2.txt:1"].startswith("trial without usable audio")
    assert not (out / MARKER).exists() and not (out / "trials.txt").exists()


# ----------------------------------------------------------------------------------------
# SLURP


def slurp_line(slurp_id: int, sentence: str, intent: str, *files: str) -> str:
    scenario, action = intent.split("_", 1)
    recordings = [{"file": f, "wer": 0.0, "ent_wer": 0.0, "status": "correct"} for f in files]
    entry = {
        "slurp_id": slurp_id,
        "sentence": sentence,
        "sentence_annotation": sentence,
        "intent": intent,
        "action": action,
        "tokens": [],
        "scenario": scenario,
        "recordings": recordings,
        "entities": [],
    }
    return json.dumps(entry) + "\n"


def slurp_tree(root: Path) -> Path:
    """The SLURP layout: three split files, real and synthetic audio, every bad input."""
    lines = {
        "train": [
            slurp_line(1, "wake me up at five am", "alarm_set", "audio-1001.flac", "audio-1001-headset.flac"),
            slurp_line(2, "what's the weather like", "weather_query", "audio-1002.flac"),
            slurp_line(3, "play 2 songs", "play_music", "audio-1003.flac", "audio-1099.flac"),
        ],
        "devel": [
            slurp_line(4, "set an alarm", "alarm_set", "audio-1004.flac"),
            slurp_line(5, "wake me up at five am", "alarm_set", "audio-1001.flac"),
        ],
        "test": [
            slurp_line(6, "how hot is it", "weather_query", "audio-1006.flac"),
            slurp_line(7, "turn it up", "audio_volume_up", "audio-1007.flac"),
        ],
        "train_synthetic": [slurp_line(8, "olly wake me", "alarm_set", "audio--1504190166.flac")],
    }  # fmt: skip
    (root / "dataset" / "slurp").mkdir(parents=True)
    for name, rows in lines.items():
        (root / "dataset" / "slurp" / f"{name}.jsonl").write_text("".join(rows))
    real = root / "audio" / "slurp_real"
    for i, name in enumerate(["1001", "1001-headset", "1002", "1003", "1004", "1007", "9999"]):
        write_audio(real / f"audio-{name}.flac", tone(0.5, freq=200.0 + 50 * i))
    (real / "audio-1006.flac").touch()
    write_audio(root / "audio" / "slurp_synth" / "audio--1504190166.flac", tone(0.5))
    return root


def test_slurp_intents_texts_and_published_splits(tmp_path: Path) -> None:
    root, out = slurp_tree(tmp_path / "slurp"), tmp_path / "prepared"
    res = prepare("slurp", root, "--out", out, config=lenient(tmp_path))
    assert res.exit_code == 0, res.output
    found = {
        split: {i: (s.custom["intent"], s.text) for i, s in cuts_of(out, split).items()}
        for split in ("train", "dev", "test")
    }
    assert found == {
        "train": {
            "audio-1001": ("alarm_set", "wake me up at five am"),
            "audio-1001-headset": ("alarm_set", "wake me up at five am"),
            "audio-1002": ("weather_query", "what's the weather like"),
            "audio-1003": ("play_music", None),
        },
        "dev": {"audio-1004": ("alarm_set", "set an alarm")},
        "test": {"audio-1007": ("audio_volume_up", "turn it up")},
    }
    assert cuts_of(out, "test")["audio-1007"].custom == {
        "intent": "audio_volume_up",
        "scenario": "audio",
        "action": "volume_up",
        "slurp_id": 7,
        "part": "slurp_real",
    }
    devel = root.resolve() / "dataset/slurp/devel.jsonl"
    train = root.resolve() / "dataset/slurp/train.jsonl"
    assert report(out) == {
        "audio-1099": "no audio file for this recording",
        "audio-1001": f"duplicate id (also {train}:1)",
        "audio-1006": "empty file (0 bytes)",
    }
    repaired = json.loads((out / "report.json").read_text())["repaired_items"]
    assert repaired == [
        {
            "id": "audio-1003",
            "path": str(root.resolve() / "audio/slurp_real/audio-1003.flac"),
            "repairs": ["transcript left out: characters outside data.alphabet: ['2']"],
        }
    ]
    assert f"{devel}:2" in json.dumps(json.loads((out / "report.json").read_text()))
    assert_lhotse_valid(out)

    task = load_task_data(out, "intent")
    assert task.classes == ["alarm_set", "play_music", "weather_query"]
    assert [i.label for i in task.dev] == ["alarm_set"]
    assert [i.label for i in task.test] == ["audio_volume_up"]


def test_slurp_synthetic_part_only_when_asked(tmp_path: Path) -> None:
    root, out = slurp_tree(tmp_path / "slurp"), tmp_path / "prepared"
    res = prepare("slurp", root, "--out", out, "--synthetic", config=lenient(tmp_path))
    assert res.exit_code == 0, res.output
    synth = cuts_of(out, "train")["audio--1504190166"]
    assert synth.custom["part"] == "slurp_synth" and synth.text == "olly wake me"
    assert len(cuts_of(out, "train")) == 5


@pytest.mark.parametrize(
    ("break_it", "sentence"),
    [
        (lambda r: (r / "dataset/slurp/devel.jsonl").unlink(), "the SLURP split file {r}/dataset/slurp/devel.jsonl does not exist; pass the SLURP folder (a clone of its repository, which holds dataset/slurp/*.jsonl)"),
        (lambda r: (r / "audio/slurp_real").rename(r / "real"), "the SLURP audio folder {r}/audio/slurp_real does not exist; unpack slurp_real.tar.gz into {r}/audio"),
        (lambda r: (r / "dataset/slurp/test.jsonl").write_text('{"slurp_id": 6,\n'), "{r}/dataset/slurp/test.jsonl:1: not a JSON object (Expecting property name enclosed in double quotes)"),
        (lambda r: (r / "dataset/slurp/test.jsonl").write_text('\n{"slurp_id": 6, "sentence": "x"}\n'), "{r}/dataset/slurp/test.jsonl:2: the SLURP entry has no 'scenario' field"),
        (lambda r: (r / "dataset/slurp/test.jsonl").write_text(slurp_line(6, "x", "a_b", "audio-1006.flac").replace('"file"', '"name"')), "{r}/dataset/slurp/test.jsonl:1: 'recordings' must be a list of {{\"file\": ...}} objects"),
    ],
)  # fmt: skip
def test_slurp_bad_inputs_are_one_sentence_and_write_nothing(
    tmp_path: Path, break_it: Any, sentence: str
) -> None:
    root = slurp_tree(tmp_path / "slurp").resolve()
    break_it(root)
    out = tmp_path / "prepared"
    assert one_sentence(prepare("slurp", root, "--out", out)) == sentence.format(r=root)
    assert not out.exists()


def test_slurp_synthetic_needs_its_split_file(tmp_path: Path) -> None:
    root = slurp_tree(tmp_path / "slurp").resolve()
    (root / "dataset/slurp/train_synthetic.jsonl").unlink()
    out = tmp_path / "prepared"
    assert one_sentence(prepare("slurp", root, "--out", out, "--synthetic")).startswith(
        f"the SLURP split file {root}/dataset/slurp/train_synthetic.jsonl does not exist"
    )
    assert not out.exists()


# ----------------------------------------------------------------------------------------
# IEMOCAP

#: session -> dialog -> (utterance suffix, label) of its EmoEvaluation file
IEMOCAP_LABELS = {
    1: {
        "Ses01F_impro01": [("F000", "neu"), ("M000", "exc"), ("F001", "fru"), ("M001", "hap"), ("F002", "xxx"), ("M002", "neu")],
        "Ses01M_script01_1": [("F000", "sad"), ("M000", "ang")],
    },
    2: {"Ses02F_impro01": [("F000", "ang"), ("M000", "sad"), ("F001", "neu")]},
    3: {"Ses03M_impro02": [("F000", "neu"), ("M000", "hap")]},
    4: {"Ses04F_script01_1": [("F000", "neu"), ("M000", "ang")]},
    5: {"Ses05M_impro03": [("F000", "sad"), ("M000", "exc")]},
}  # fmt: skip
EMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def emo_block(utterance: str, label: str, start: float) -> str:
    """One EmoEvaluation block: the label line and the evaluators' lines below it."""
    return (
        f"[{start:.4f} - {start + 1.5:.4f}]\t{utterance}\t{label}\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\nC-E3:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
    )


def iemocap_tree(root: Path) -> Path:
    """IEMOCAP_full_release: 5 sessions, labels, transcripts and every bad input."""
    for session, dialogs in IEMOCAP_LABELS.items():
        base = root / f"Session{session}"
        (base / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (base / "dialog" / "transcriptions").mkdir(parents=True)
        for dialog, utterances in dialogs.items():
            blocks = [EMO_HEADER]
            for i, (suffix, label) in enumerate(utterances):
                utt = f"{dialog}_{suffix}"
                blocks.append(emo_block(utt, label, 2.0 * i))
                if utt != "Ses01F_impro01_M002":  # a label line without audio
                    wav = base / "sentences" / "wav" / dialog / f"{utt}.wav"
                    write_audio(wav, tone(0.5, freq=180.0 + 30 * i))
            (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("".join(blocks))
    (root / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_F001.wav").write_bytes(b"")
    write_audio(root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F003.wav", tone(0.5))
    (root / "Session1/dialog/EmoEvaluation/._Ses01F_impro01.txt").write_bytes(b"\x00\x05junk")
    (root / "Session1/dialog/transcriptions/Ses01F_impro01.txt").write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
        "Ses01F_impro01_M000 [008.5000-010.0000]: Yeah! [LAUGHTER] Sure.\n"
        "Ses01F_impro01_M001 [010.1000-011.0000]: Room 101.\n"
        "M: [BREATHING]\n"
    )
    return root


def test_iemocap_four_classes_sessions_and_speakers(tmp_path: Path) -> None:
    root, out = iemocap_tree(tmp_path / "IEMOCAP_full_release"), tmp_path / "iemocap"
    res = prepare("iemocap", root, "--out", out, config=lenient(tmp_path))
    assert res.exit_code == 0, res.output
    assert "not one of the four classes: 2" in res.stdout
    found = {
        split: {
            i: (s.custom["emotion"], s.custom["session"], s.speaker, s.text)
            for i, s in cuts_of(out, split).items()
        }
        for split in ("train", "dev", "test")
    }
    assert found == {
        "train": {
            "Ses01F_impro01_F000": ("neutral", 1, "Ses01F", "excuse me"),
            "Ses01F_impro01_M000": ("happy", 1, "Ses01M", "yeah sure"),
            "Ses01F_impro01_M001": ("happy", 1, "Ses01M", None),
            "Ses01M_script01_1_F000": ("sad", 1, "Ses01F", None),
            "Ses01M_script01_1_M000": ("angry", 1, "Ses01M", None),
            "Ses02F_impro01_F000": ("angry", 2, "Ses02F", None),
            "Ses02F_impro01_M000": ("sad", 2, "Ses02M", None),
            "Ses03M_impro02_F000": ("neutral", 3, "Ses03F", None),
            "Ses03M_impro02_M000": ("happy", 3, "Ses03M", None),
        },
        "dev": {
            "Ses04F_script01_1_F000": ("neutral", 4, "Ses04F", None),
            "Ses04F_script01_1_M000": ("angry", 4, "Ses04M", None),
        },
        "test": {
            "Ses05M_impro03_F000": ("sad", 5, "Ses05F", None),
            "Ses05M_impro03_M000": ("happy", 5, "Ses05M", None),
        },
    }
    labels = root.resolve() / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    on_disk = json.loads((out / "report.json").read_text())
    assert report(out) == {
        "Ses01F_impro01_F001": "not one of the four classes (fru)",
        "Ses01F_impro01_F002": "not one of the four classes (xxx)",
        "Ses01F_impro01_M002": "no audio file for this label line",
        "Ses01F_impro01_F003": "no label line for this audio file",
        "Ses02F_impro01_F001": "empty file (0 bytes)",
    }
    paths = {item["id"]: item["path"] for item in on_disk["skipped_items"]}
    assert paths["Ses01F_impro01_F001"] == f"{labels}:{3 + 5 * 2}"
    assert on_disk["skip_reasons"]["not one of the four classes"] == 2
    assert on_disk["repaired_items"][0]["id"] == "Ses01F_impro01_M001"
    assert json.loads((out / "summary.json").read_text())["skipped"] == 5
    assert_lhotse_valid(out)


def test_iemocap_sessions_option_chooses_sessions(tmp_path: Path) -> None:
    root, out = iemocap_tree(tmp_path / "IEMOCAP_full_release"), tmp_path / "iemocap"
    (root / "Session3").rename(root / "Session3_elsewhere")
    res = prepare("iemocap", root, "--out", out, "--sessions", "2,4", config=lenient(tmp_path))
    assert res.exit_code == 0, res.output
    assert sorted(cuts_of(out, "train")) == ["Ses02F_impro01_F000", "Ses02F_impro01_M000"]
    assert sorted(cuts_of(out, "dev")) == ["Ses04F_script01_1_F000", "Ses04F_script01_1_M000"]
    assert json.loads((out / MARKER).read_text())["splits"] == ["train", "dev"]


@pytest.mark.parametrize(
    ("args", "break_it", "sentence"),
    [
        ((), lambda r: (r / "Session3").rename(r / "S3"), "the IEMOCAP session folder {r}/Session3 does not exist; pass the IEMOCAP_full_release folder, or choose the sessions there with --sessions"),
        ((), lambda r: (r / "Session4/sentences").rename(r / "S4"), "the IEMOCAP session folder {r}/Session4/sentences/wav does not exist; pass the IEMOCAP_full_release folder, or choose the sessions there with --sessions"),
        ((), lambda r: (r / "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt").write_text(EMO_HEADER + emo_block("Ses02F_impro01_F000", "joy", 1.0)), "{r}/Session2/dialog/EmoEvaluation/Ses02F_impro01.txt:3: unknown emotion label 'joy' for Ses02F_impro01_F000 (known: neu, hap, exc, sad, ang, fru, sur, fea, dis, oth, xxx)"),
        ((), lambda r: (r / "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt").write_text("[1.0 - 2.0] Ses02F_impro01_F000\n"), "{r}/Session2/dialog/EmoEvaluation/Ses02F_impro01.txt:1: a label line must read '[start - end]<TAB>utterance<TAB>label<TAB>[v, a, d]', got '[1.0 - 2.0] Ses02F_impro01_F000'"),
        (("--sessions", "1,6"), None, "--sessions must list sessions 1-5 separated by commas, got '1,6'"),
        (("--sessions", "4,5"), None, "the chosen --sessions hold no training session; include one of 1, 2, 3 (Session 4 is dev, Session 5 test)"),
    ],
)  # fmt: skip
def test_iemocap_bad_inputs_are_one_sentence_and_write_nothing(
    tmp_path: Path, args: tuple[str, ...], break_it: Any, sentence: str
) -> None:
    root = iemocap_tree(tmp_path / "IEMOCAP_full_release").resolve()
    if break_it:
        break_it(root)
    out = tmp_path / "iemocap"
    assert one_sentence(prepare("iemocap", root, "--out", out, *args)) == sentence.format(r=root)
    assert not out.exists()


# ----------------------------------------------------------------------------------------
# the commands


@pytest.mark.parametrize("command", ["voxceleb", "slurp", "iemocap"])
def test_every_command_documents_its_layout_and_an_example(command: str) -> None:
    res = prepare(command, "--help")
    assert res.exit_code == 0 and f"Example: smx prepare {command}" in res.stdout
    assert f"--out data/{command}" in res.stdout


@pytest.mark.parametrize("command", ["voxceleb", "slurp", "iemocap"])
def test_a_missing_corpus_folder_is_one_sentence(command: str, tmp_path: Path) -> None:
    res = prepare(command, tmp_path / "nowhere", "--out", tmp_path / "out")
    assert one_sentence(res).endswith("does not exist; pass the " + {
        "voxceleb": "folder that holds vox1_dev_wav/ and vox1_test_wav/",
        "slurp": "folder that holds dataset/slurp/ and audio/slurp_real/",
        "iemocap": "IEMOCAP_full_release folder that holds Session1-5/",
    }[command])  # fmt: skip
    assert not (tmp_path / "out").exists()
