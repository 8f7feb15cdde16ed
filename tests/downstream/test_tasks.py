"""Task data from a prepared corpus; missing labels, splits and trials give one clear sentence."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lhotse import Recording, SupervisionSegment
from lhotse.audio import AudioSource

from smx.data.manifests import PrepareReport, write_corpus
from smx.downstream.errors import ProbeError
from smx.downstream.tasks import load_task_data


def summary(corpus: Path) -> dict[str, Any]:
    return json.loads((corpus / "summary.json").read_text())["splits"]


def test_synthetic_corpus_tasks(corpus_root: Path) -> None:
    corpus = corpus_root / "synth"
    counts = summary(corpus)
    asr = load_task_data(corpus, "asr")
    assert (len(asr.train), len(asr.dev), len(asr.test)) == (
        counts["train"]["utterances"],
        counts["dev"]["utterances"],
        counts["test"]["utterances"],
    )
    assert asr.vocab is not None and asr.num_outputs == len(asr.vocab)
    assert all(item.label.strip() for item in asr.train)

    intent = load_task_data(corpus, "intent")
    assert intent.classes == sorted(counts["train"]["intent"])
    # classification is scored on the test split and the held-out speakers' utterances
    scored = counts["test"]["utterances"] + counts["heldout"]["utterances"]
    assert len(intent.test) == len({i.id for i in intent.test}) == scored
    assert {i.id for i in asr.test} < {i.id for i in intent.test}
    style = load_task_data(corpus, "style")
    assert style.classes == sorted(counts["train"]["style"])
    assert style.num_outputs == len(style.classes)

    speaker = load_task_data(corpus, "speaker")
    assert len(speaker.classes) == counts["train"]["speakers"] == 4
    assert {i.label for i in speaker.dev} <= set(speaker.classes)
    heldout = {i.label for i in speaker.test}
    assert len(heldout) == 2 and not heldout & set(speaker.classes)
    trials = (corpus / "trials.txt").read_text().split("\n")
    assert len(speaker.trials) == len([t for t in trials if t.strip()])
    assert {t[0] for t in speaker.trials} == {0, 1}
    # every cut once, for one feature extraction pass
    assert len(speaker.cuts()) == len({i.id for i in speaker.train + speaker.dev + speaker.test})


Custom = dict[str, str] | None


def tiny_corpus(
    out: Path,
    custom: Custom | Callable[[str, int], Custom],
    splits: tuple[str, ...] = ("train", "dev", "test"),
) -> Path:
    """A corpus of 4 utterances per split (audio files need not exist to read labels).

    ``custom``: every utterance's labels, or a function of (split, index) giving them.
    """
    parts: dict[str, Any] = {}
    for split in splits:
        recs, sups = [], []
        for i in range(4):
            rid = f"{split}{i}"
            recs.append(
                Recording(rid, [AudioSource("file", [0], f"{rid}.flac")], 16000, 16000, 1.0)
            )
            labels = custom(split, i) if callable(custom) else custom
            sups.append(
                SupervisionSegment(
                    rid, rid, 0.0, 1.0, text="hi", speaker=f"s{i % 2}", custom=labels
                )
            )
        parts[split] = (recs, sups)
    write_corpus(out, "folder", parts, PrepareReport(kept=4 * len(splits)), 0.0)
    return out


def test_task_without_labels_in_the_manifest(tmp_path: Path) -> None:
    corpus = tiny_corpus(tmp_path / "c", custom=None)
    with pytest.raises(ProbeError) as err:
        load_task_data(corpus, "intent")
    assert str(err.value) == (
        f"task 'intent' needs 'intent' labels, but none of the 4 utterances of the 'train' "
        f"split of {corpus} has one"
    )
    assert len(load_task_data(corpus, "asr").train) == 4  # text is there


def test_missing_test_split(tmp_path: Path) -> None:
    corpus = tiny_corpus(tmp_path / "c", {"style": "fast"}, splits=("train", "dev"))
    with pytest.raises(
        ProbeError, match=r"task 'asr' needs a 'test' split: .* has no split 'test'"
    ):
        load_task_data(corpus, "asr")


def test_heldout_speakers_join_the_classification_scoring(tmp_path: Path) -> None:
    def styles(split: str, i: int) -> Custom:
        # two styles; the held-out split's odd utterances carry no style label
        return None if split == "heldout" and i % 2 == 1 else {"style": ("fast", "slow")[i % 2]}

    splits = ("train", "dev", "test", "heldout")
    corpus = tiny_corpus(tmp_path / "c", styles, splits=splits)
    style = load_task_data(corpus, "style")
    assert [i.id for i in style.test] == [
        "test0", "test1", "test2", "test3", "heldout0", "heldout2"
    ]  # fmt: skip
    assert [i.label for i in style.test[-2:]] == ["fast", "fast"]
    assert [i.id for i in load_task_data(corpus, "asr").test] == [f"test{i}" for i in range(4)]


def test_single_class_and_missing_trials(tmp_path: Path) -> None:
    splits = ("train", "dev", "test", "heldout")
    corpus = tiny_corpus(tmp_path / "c", {"style": "fast"}, splits=splits)
    with pytest.raises(ProbeError, match=r"at least 2 'style' classes .* found 1"):
        load_task_data(corpus, "style")
    with pytest.raises(ProbeError, match=r"trials in .*trials\.txt; the file is missing"):
        load_task_data(corpus, "speaker")
    (corpus / "trials.txt").write_text("1 heldout0 heldout2\n1 heldout1 heldout3\n")
    with pytest.raises(ProbeError, match="same- and different-speaker trials"):
        load_task_data(corpus, "speaker")
    (corpus / "trials.txt").write_text("yes heldout0 heldout2\n")
    with pytest.raises(ProbeError, match=r"trials\.txt:1: a trial must read"):
        load_task_data(corpus, "speaker")


def test_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="'pitch' is not a probing task"):
        load_task_data(tmp_path, "pitch", label="pitch")
