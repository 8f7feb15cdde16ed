"""Each task reads its own corpus and label: VoxCeleb1 speakers, SLURP intents, IEMOCAP
emotions leave-one-session-out; the config's task mapping, its messages and DVC's stages."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pytest
from downstream_helpers import tiny_params
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_mp3s_corpora import iemocap_tree, lenient, prepare, slurp_tree, voxceleb_tree

from smx.config import load
from smx.downstream.errors import ProbeError
from smx.downstream.run import probe_encoder
from smx.downstream.tasks import task_corpus
from smx.stages.common import StageInputError
from smx.yamlio import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def prepared(tmp_path: Path, kind: str, tree: Path, *args: str) -> Path:
    """``smx prepare <kind> <tree> --out <tmp>/prepared-<kind>`` (lenient), checked to succeed."""
    out = tmp_path / f"prepared-{kind}"
    res = prepare(kind, tree, "--out", out, *args, config=lenient(tmp_path))
    assert res.exit_code == 0, res.output
    return out


def test_speaker_on_voxceleb_scores_its_own_trials(tmp_path: Path, encoder_file: Path) -> None:
    corpus = prepared(tmp_path, "voxceleb", voxceleb_tree(tmp_path / "VoxCeleb1"))
    params = tiny_params(seeds=1, epochs=1, tasks={"speaker": {"corpus": str(corpus)}})
    assert task_corpus(params, "speaker") == corpus
    result = probe_encoder(encoder_file, "speaker", params, corpus, probes=["xvector"])
    # trials.txt: 5 trials; one names a truncated (skipped) file, one a speaker not in the tree
    assert result["trials"] == 3
    assert result["chance"] == 0.5  # the EER of random scores
    assert result["utterances"] == {"train": 6, "dev": 2, "test": 4}
    eer = result["probes"]["xvector"]["pretrained"]["metrics"]["eer"]
    assert len(eer["values"]) == 1 and 0.0 <= eer["mean"] <= 1.0
    assert (result["primary_metric"], result["better"]) == ("eer", "lower")


def test_intent_on_slurp_reads_its_intents(tmp_path: Path, encoder_file: Path) -> None:
    corpus = prepared(tmp_path, "slurp", slurp_tree(tmp_path / "slurp"))
    params = tiny_params(seeds=1, epochs=1, tasks={"intent": {"corpus": str(corpus)}})
    result = probe_encoder(encoder_file, "intent", params, corpus, probes=["linear"])
    assert result["utterances"] == {"train": 4, "dev": 1, "test": 1}
    # the one test utterance's intent (audio_volume_up) is not a training class: never right,
    # by the probes as by always answering the commonest training intent (chance)
    assert result["chance"] == 0.0
    for upstream in ("pretrained", "random_init", "fbank"):
        accuracy = result["probes"]["linear"][upstream]["metrics"]["accuracy"]
        assert accuracy["values"] == [0.0]


def test_emotion_on_iemocap_leave_one_session_out(tmp_path: Path, encoder_file: Path) -> None:
    tree = iemocap_tree(tmp_path / "IEMOCAP_full_release")
    corpus = prepared(tmp_path, "iemocap", tree, "--sessions", "1,2,3")
    task = {"corpus": str(corpus), "label": "emotion", "folds": "session", "held_out": [1, 2]}
    params = tiny_params(seeds=2, epochs=1, tasks={"emotion": task})
    result = probe_encoder(encoder_file, "emotion", params, corpus, probes=["linear"])
    # session 1: 5 labelled utterances, session 2: 2, session 3: 2 (the tree's labels);
    # fold 1 tests on 1, dev 2, trains on 3; fold 2 tests on 2, dev 3, trains on 1
    assert result["folds"] == {
        "by": "session",
        "held_out": [1, 2],
        "utterances": [{"train": 2, "dev": 2, "test": 5}, {"train": 5, "dev": 2, "test": 2}],
    }
    assert result["utterances"] == {"train": 7, "dev": 4, "test": 7}
    assert result["task"] == "emotion" and result["seeds"] == [0, 1]
    for upstream in ("pretrained", "random_init", "fbank"):
        accuracy = result["probes"]["linear"][upstream]["metrics"]["accuracy"]
        values = accuracy["values"]  # fold 1 seeds 0, 1, then fold 2 seeds 0, 1
        assert len(values) == 4
        assert accuracy["mean"] == pytest.approx(statistics.fmean(values), abs=1e-6)
        assert accuracy["std"] == pytest.approx(statistics.stdev(values), abs=1e-6)
        means = [statistics.fmean(values[:2]), statistics.fmean(values[2:])]
        assert accuracy["fold_means"] == pytest.approx(means, abs=1e-6)
        assert accuracy["fold_std"] == pytest.approx(statistics.stdev(means), abs=1e-6)
        # every accuracy is a count of right answers over 5 (fold 1) or 2 (fold 2) utterances
        assert all(round(v * 5, 4).is_integer() for v in values[:2])
        assert all(v in (0.0, 0.5, 1.0) for v in values[2:])


def test_session_folds_need_three_sessions(tmp_path: Path, encoder_file: Path) -> None:
    tree = iemocap_tree(tmp_path / "IEMOCAP_full_release")
    corpus = prepared(tmp_path, "iemocap", tree, "--sessions", "1,2")
    task = {"corpus": str(corpus), "folds": "session", "held_out": [1, 2]}
    params = tiny_params(seeds=1, epochs=1, tasks={"emotion": task})
    with pytest.raises(ProbeError) as err:
        probe_encoder(encoder_file, "emotion", params, corpus, probes=["linear"])
    assert str(err.value) == (
        "task 'emotion': leave-one-session-out needs 3 sessions or more (train, dev, test) "
        f"in {corpus}, found [1, 2]"
    )


def write_config(path: Path, downstream: str) -> Path:
    path.write_text(f"downstream:\n{downstream}")
    return path


@pytest.mark.parametrize(
    ("downstream", "message"),
    [
        ("  tasks: [asr, pitch]\n", "2: downstream.tasks: 'pitch' is not a probing task (choose from asr, speaker, intent, style, emotion)"),
        ("  tasks:\n    pitch: {}\n", "2: downstream.tasks: 'pitch' is not a probing task (choose from asr, speaker, intent, style, emotion)"),
        ("  tasks:\n    emotion:\n      label: speaker\n", "4: downstream.tasks.emotion.label: 'speaker' is not a label of task 'emotion' (choose from emotion, intent, style)"),
        ("  tasks:\n    asr:\n      label: intent\n", "4: downstream.tasks.asr.label: 'intent' is not a label of task 'asr' (choose from text)"),
        ("  tasks:\n    speaker:\n      folds: session\n", "4: downstream.tasks.speaker.folds: 'session' needs a classification task"),
        ("  tasks:\n    emotion:\n      folds: session\n      held_out: [1, 6]\n", "5: downstream.tasks.emotion.held_out: must list distinct sessions 1-5, got [1, 6]"),
    ],
)  # fmt: skip
def test_task_config_problems_are_one_sentence(
    tmp_path: Path, downstream: str, message: str
) -> None:
    path = write_config(tmp_path / "c.yaml", downstream)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == f"{path}:{message}"


def test_both_task_forms_name_corpus_and_label(tmp_path: Path) -> None:
    listed = load(write_config(tmp_path / "a.yaml", "  tasks: [asr, style]\n")).downstream
    assert list(listed.tasks) == ["asr", "style"]
    assert (listed.task("asr").label, listed.task("style").label) == ("text", "style")
    mapping = "  tasks:\n    speaker: {corpus: data/voxceleb}\n    intent: {label: style}\n"
    mapped = load(write_config(tmp_path / "b.yaml", mapping)).downstream
    assert list(mapped.tasks) == ["speaker", "intent"]
    assert (mapped.task("speaker").corpus, mapped.task("speaker").label) == (
        "data/voxceleb",
        "speaker",
    )
    assert (mapped.task("intent").corpus, mapped.task("intent").label) == (None, "style")


def test_the_stage_names_the_task_its_corpus_and_what_prepares_it(tmp_path: Path) -> None:
    from smx.stages import baseline

    missing = tmp_path / "nowhere"
    config = write_config(tmp_path / "c.yaml", f"  tasks:\n    emotion:\n      corpus: {missing}\n")
    args = argparse.Namespace(params=str(config), task="emotion", metrics_dir=str(tmp_path))
    with pytest.raises(StageInputError) as err:
        baseline.run(args)
    assert str(err.value) == (
        f"baseline@emotion: task 'emotion' reads {missing}, which is not a prepared corpus "
        f"(no COMPLETE.json); prepare it with `smx prepare iemocap <IEMOCAP_full_release "
        f"folder> --out {missing}`"
    )
    default = load(write_config(tmp_path / "d.yaml", "  tasks: [asr]\n"))
    default = default.model_copy(
        update={"data": default.data.model_copy(update={"root": str(tmp_path)})}
    )
    with pytest.raises(ProbeError) as err:
        task_corpus(default, "asr")
    assert str(err.value) == (
        f"task 'asr' reads {tmp_path / 'synth'}, which is not a prepared corpus (no "
        "COMPLETE.json); prepare it with the DVC stage `prepare` (`dvc repro prepare`)"
    )


def dvc_stages(folder: Path) -> list[str]:
    from dvc_helpers import run

    out = run(["dvc", "stage", "list", "--names-only"], folder).stdout
    return [name for name in out.split() if name.startswith(("baseline@", "probe@"))]


def test_dvc_expands_the_task_list_and_the_task_mapping(tmp_path: Path) -> None:
    from dvc_helpers import make_dvc_repo

    from smx.config import load as load_config

    load_config(ROOT / "params.yaml")  # the default params.yaml validates
    folder = make_dvc_repo(tmp_path)
    variants = list(load_config(folder / "params.yaml").variants)
    listed = dvc_stages(folder)
    assert listed == [
        "baseline@asr",
        "baseline@speaker",
        *(f"probe@{v}-{t}" for v in variants for t in ("asr", "speaker")),
    ]
    yaml = YAML()
    params = yaml.load(folder / "params.yaml")
    params["downstream"]["tasks"] = {
        "speaker": {"corpus": "data/voxceleb"},
        "emotion": {"corpus": "data/iemocap", "folds": "session", "held_out": [1, 2]},
    }
    yaml.dump(params, folder / "params.yaml")
    load_config(folder / "params.yaml")
    assert dvc_stages(folder) == [
        "baseline@speaker",
        "baseline@emotion",
        *(f"probe@{v}-{t}" for v in variants for t in ("speaker", "emotion")),
    ]
