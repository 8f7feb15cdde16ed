"""The embedded espeak-ng corpus: speakers, styles, splits, trials, determinism, resume."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from data_helpers import tiny_data_cfg
from lhotse import load_manifest
from lhotse.qa import validate_recordings_and_supervisions

from smx.config import DataCfg, SynthCfg
from smx.data import manifests
from smx.data.manifests import MARKER, load_cuts
from smx.data.problems import PrepareError
from smx.data.synth import (
    ACCENTS,
    STYLES,
    TRACT_RANGE,
    VARIANTS,
    WHISPER,
    available_variants,
    espeak_args,
    espeak_version,
    make_plan,
    make_speakers,
    prepare_synth,
    speak,
)

SPLITS = ("train", "dev", "test", "heldout")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------
# plan (no audio)


def test_default_config_has_30_distinct_speakers_and_at_least_4_styles() -> None:
    cfg = SynthCfg()
    speakers = make_speakers(cfg.num_speakers, cfg.seed)
    assert len(speakers) >= 30
    assert len({(s.accent, s.variant, s.pitch, s.rate) for s in speakers}) == len(speakers)
    assert len({(s.accent, s.variant) for s in speakers}) == len(speakers)
    assert len({s.accent for s in speakers}) >= 4
    assert {s.gender for s in speakers} == {"m", "f"}
    assert len(cfg.styles) >= 4 and set(cfg.styles) <= set(STYLES)


def test_config_style_names_are_exactly_the_known_styles() -> None:
    from typing import get_args

    from smx.config import SynthStyle

    assert set(get_args(SynthStyle)) == set(STYLES)


def test_every_listed_voice_and_variant_exists_in_espeak_ng() -> None:
    have = available_variants()
    assert set(VARIANTS) | set(WHISPER.values()) <= have
    import subprocess

    voices = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True).stdout
    names = {line.split()[1] for line in voices.splitlines()[1:]}
    assert set(ACCENTS) <= names


def test_style_offsets_change_espeak_rate_pitch_and_variant() -> None:
    spk = make_speakers(1, seed=0)[0]

    def args(style: str) -> list[str]:
        return espeak_args(spk, STYLES[style], "hi")

    assert args("neutral")[2:7] == [
        f"{spk.accent}+{spk.variant}",
        "-p",
        str(spk.pitch),
        "-s",
        str(spk.rate),
    ]
    assert args("fast")[6] == str(round(spk.rate * 1.4))
    assert args("slow")[6] == str(round(spk.rate * 0.7))
    assert args("high")[4] == str(min(99, spk.pitch + 22))
    assert args("low")[4] == str(max(0, spk.pitch - 22))
    assert args("whisper")[2] == f"{spk.accent}+{WHISPER[spk.gender]}"
    assert args("neutral")[-2:] == ["--stdout", "hi"]


def spectral_centroid(wave: np.ndarray, below_hz: float) -> float:
    """Power-weighted mean frequency of the components of ``wave`` (16 kHz) below ``below_hz``."""
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / 16000)
    keep = freqs < below_hz
    return float((power[keep] * freqs[keep]).sum() / power[keep].sum())


@pytest.mark.parametrize("tract", [0.85, 1.2])
def test_the_tract_scale_multiplies_every_frequency_whatever_the_style(tract: float) -> None:
    speaker = make_speakers(1, seed=0)[0]
    for style in ("neutral", "whisper"):
        base = speak(replace(speaker, tract=1.0), STYLES[style], "the music is too loud", 16000)
        scaled = speak(replace(speaker, tract=tract), STYLES[style], "the music is too loud", 16000)
        assert base.size / scaled.size == pytest.approx(tract, rel=1e-3)  # spoken 1/tract as long
        ratio = spectral_centroid(scaled, 5000 * tract) / spectral_centroid(base, 5000)
        assert ratio == pytest.approx(tract, rel=1e-3)


def test_speakers_draw_their_tract_scale_from_its_range() -> None:
    tracts = [s.tract for s in make_speakers(30, seed=0)]
    assert all(TRACT_RANGE[0] <= t <= TRACT_RANGE[1] for t in tracts)
    assert max(tracts) - min(tracts) > 0.5 * (TRACT_RANGE[1] - TRACT_RANGE[0])


def test_the_plan_is_a_pure_function_of_seed_and_index() -> None:
    cfg = SynthCfg(num_speakers=10, heldout_speakers=3)
    a, b = make_plan(cfg), make_plan(cfg)
    utts = [a.utterance(i) for i in range(200)]
    assert utts == [b.utterance(i) for i in range(200)]
    assert utts[57] == a.utterance(57)  # independent of what was asked before
    other = make_plan(SynthCfg(num_speakers=10, heldout_speakers=3, seed=1))
    assert [u.text for u in utts] != [other.utterance(i).text for i in range(200)]
    counts = Counter(u.speaker.id for u in utts)
    assert set(counts.values()) == {20}  # speakers take turns in shuffled blocks
    heldout = {u.speaker.id for u in utts if u.split == "heldout"}
    assert heldout == set(a.heldout) and len(heldout) == 3
    assert all((u.split == "heldout") == (u.speaker.id in heldout) for u in utts)
    assert {u.split for u in utts} == set(SPLITS)
    assert {u.subset for u in utts} == {"intent", "free"}
    assert all((u.noise == "none") == (u.snr_db is None) for u in utts)
    assert {u.snr_db for u in utts} - {None} == set(cfg.snr_db)


def test_a_corpus_of_chosen_intents_draws_its_sentences_from_their_templates() -> None:
    from smx.data.text import INTENTS

    chosen = ["lights_on", "taxi_order", "alarm_set"]
    plan = make_plan(SynthCfg(num_speakers=4, heldout_speakers=2, intents=chosen))
    utts = [plan.utterance(i) for i in range(300)]
    assert {u.intent for u in utts if u.subset == "intent"} == set(chosen)
    assert {u.intent for u in utts if u.subset == "free"} == {"none"}
    every = make_plan(SynthCfg(num_speakers=4, heldout_speakers=2))
    assert {every.utterance(i).intent for i in range(300)} == {*INTENTS, "none"}


# ----------------------------------------------------------------------------------------
# the corpus (synthesised once per session)


def test_corpus_files_manifests_and_lhotse_validation(synth_corpus: Any) -> None:
    out: Path = synth_corpus.out_dir
    marker = json.loads((out / MARKER).read_text())
    assert marker["splits"] == list(SPLITS)
    for name, digest in marker["files"].items():
        assert sha(out / name) == digest, name
    for split in SPLITS:
        recs = load_manifest(out / f"recordings_{split}.jsonl.gz")
        sups = load_manifest(out / f"supervisions_{split}.jsonl.gz")
        validate_recordings_and_supervisions(recs, sups)
        for rec in recs:
            source = rec.sources[0].source
            assert not Path(source).is_absolute() and source.startswith("audio/")
            info = sf.info(str(out / source))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
            assert info.frames == rec.num_samples
        for sup in sups:
            assert sup.text and sup.speaker and sup.custom["style"] in STYLES
            assert sup.custom["intent"] == "none" or sup.custom["subset"] == "intent"
    with gzip.open(out / "cuts_train.jsonl.gz", "rt") as fh:
        assert len(fh.readlines()) == synth_corpus.summary["splits"]["train"]["utterances"]


def test_corpus_size_follows_the_config(synth_corpus: Any, synth_cfg: DataCfg) -> None:
    target = synth_cfg.synth.hours * 3600
    seconds = [frames / 16000 for _, frames in synth_corpus.run.utterances]
    assert sum(seconds) >= target > sum(seconds) - seconds[-1]  # cut at the first that reaches it
    indices = [u.index for u, _ in synth_corpus.run.utterances]
    assert indices == list(range(len(indices)))  # utterances 0..K-1, none skipped
    on_disk = sorted(p.stem for p in (synth_corpus.out_dir / "audio").rglob("*.flac"))
    assert on_disk == sorted(u.id for u, _ in synth_corpus.run.utterances)


def test_summary_matches_the_cuts(synth_corpus: Any) -> None:
    out = synth_corpus.out_dir
    summary = json.loads((out / "summary.json").read_text())
    assert summary == synth_corpus.summary
    total_utts = 0
    for split in SPLITS:
        cuts = list(load_cuts(out, split))
        entry = summary["splits"][split]
        assert entry["utterances"] == len(cuts)
        assert entry["hours"] == round(sum(c.duration for c in cuts) / 3600, 4)
        assert entry["speakers"] == len({c.supervisions[0].speaker for c in cuts})
        styles = Counter(c.supervisions[0].custom["style"] for c in cuts)
        assert entry["style"] == dict(sorted(styles.items()))
        intents = Counter(c.supervisions[0].custom["intent"] for c in cuts)
        assert entry["intent"] == dict(sorted(intents.items()))
        total_utts += len(cuts)
    assert summary["total"]["utterances"] == total_utts
    assert summary["total"]["speakers"] == 6 and summary["splits"]["heldout"]["speakers"] == 2
    assert summary["skipped"] == 0


def test_heldout_speakers_appear_nowhere_else_and_trials_are_labelled(synth_corpus: Any) -> None:
    out = synth_corpus.out_dir
    speaker_of = {}
    for split in SPLITS:
        for cut in load_cuts(out, split):
            speaker_of[cut.id] = (split, cut.supervisions[0].speaker)
    heldout = {spk for split, spk in speaker_of.values() if split == "heldout"}
    seen = {spk for split, spk in speaker_of.values() if split != "heldout"}
    assert heldout and not heldout & seen
    trials = [line.split() for line in (out / "trials.txt").read_text().splitlines()]
    per_speaker = Counter(spk for split, spk in speaker_of.values() if split == "heldout")
    n_heldout = sum(per_speaker.values())
    assert len(trials) == n_heldout * (n_heldout - 1) // 2  # every pair once
    assert len({(enrol, test) for _, enrol, test in trials}) == len(trials)
    labels = Counter(t[0] for t in trials)
    assert labels["1"] == sum(k * (k - 1) // 2 for k in per_speaker.values()) > 0
    assert labels["0"] > 0
    for label, enrol, test in trials:
        assert speaker_of[enrol][0] == speaker_of[test][0] == "heldout"
        assert enrol < test
        same = speaker_of[enrol][1] == speaker_of[test][1]
        assert same == (label == "1")
    speakers = json.loads((out / "speakers.json").read_text())
    assert {s["id"] for s in speakers if s["heldout"]} == heldout


def test_vocab_is_built_from_training_text(synth_corpus: Any) -> None:
    out = synth_corpus.out_dir
    vocab = json.loads((out / "vocab.json").read_text())["tokens"]
    train_chars = {ch for c in load_cuts(out, "train") for ch in c.supervisions[0].text}
    assert vocab[:2] == ["<blank>", "<unk>"] and set(vocab[2:]) == train_chars
    for split, chars in synth_corpus.summary["chars_outside_vocab"].items():
        text = "".join(c.supervisions[0].text for c in load_cuts(out, split))
        assert chars == {ch: text.count(ch) for ch in sorted(set(text) - train_chars)}


def test_audio_is_the_same_for_any_number_of_workers(synth_corpus: Any, tmp_path: Path) -> None:
    small = tiny_data_cfg(hours=0.006, workers=1)  # the first utterances of the same plan
    result = prepare_synth(tmp_path / "one_worker", small)
    assert result.run.workers == 1
    files = sorted((tmp_path / "one_worker" / "audio").rglob("*.flac"))
    assert len(files) >= 3
    for path in files:
        rel = path.relative_to(tmp_path / "one_worker")
        assert sha(path) == sha(synth_corpus.out_dir / rel), rel


def test_noise_changes_the_audio_at_the_planned_snr(synth_corpus: Any) -> None:
    noisy = [(u, n) for u, n in synth_corpus.run.utterances if u.noise != "none"]
    assert noisy and {u.noise for u, _ in noisy} <= {"white", "pink", "brown", "babble"}


@pytest.fixture
def corpus_copy(synth_corpus: Any, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(synth_corpus.out_dir, copy)
    return copy


def test_rerun_after_interruption_finishes_the_job(
    synth_corpus: Any, synth_cfg: DataCfg, corpus_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = {p.name: sha(p) for p in synth_corpus.out_dir.glob("*.jsonl.gz")}
    audio = sorted((corpus_copy / "audio").rglob("*.flac"))
    lost, kept = audio[:3], audio[3:]
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    for path in lost:
        path.unlink()
    (corpus_copy / "audio" / "spk000" / ".spk000-x.tmp.flac").write_bytes(b"partial")

    calls = []
    real_write = manifests.write_manifest

    def interrupted(items: Any, path: Any) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_write(items, path)

    monkeypatch.setattr(manifests, "write_manifest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_synth(corpus_copy, synth_cfg)
    assert not (corpus_copy / MARKER).exists()
    with pytest.raises(PrepareError, match="not a finished corpus"):
        load_cuts(corpus_copy, "train")
    assert all(p.exists() for p in lost)  # audio came back before the manifests

    monkeypatch.setattr(manifests, "write_manifest", real_write)
    result = prepare_synth(corpus_copy, synth_cfg)
    assert result.run.new_seconds == 0.0  # the interrupted run had remade the lost audio
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps  # and nothing else
    assert (corpus_copy / MARKER).exists()
    assert not list((corpus_copy / "audio").rglob(".*"))  # the killed run's temporary is gone
    assert {p.name: sha(p) for p in corpus_copy.glob("*.jsonl.gz")} == original
    for path in lost:
        assert sha(path) == sha(synth_corpus.out_dir / path.relative_to(corpus_copy))


def test_changed_settings_start_the_folder_over(corpus_copy: Path) -> None:
    cfg = tiny_data_cfg(hours=0.003, seed=5)
    result = prepare_synth(corpus_copy, cfg)
    names = {p.stem for p in (corpus_copy / "audio").rglob("*.flac")}
    assert names == {u.id for u, _ in result.run.utterances}
    assert result.run.new_seconds == pytest.approx(sum(n for _, n in result.run.utterances) / 16000)


def test_a_foreign_non_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(PrepareError, match="not written by smx prepare"):
        prepare_synth(tmp_path, tiny_data_cfg(hours=0.003))
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_missing_espeak_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrepareError, match="apt-get install espeak-ng"):
        espeak_version()
    with pytest.raises(PrepareError, match="espeak-ng was not found"):
        prepare_synth(tmp_path / "out", tiny_data_cfg(hours=0.003))
    assert not (tmp_path / "out").exists()


def test_too_many_skipped_utterances_fail_the_stage(tmp_path: Path) -> None:
    cfg = tiny_data_cfg(
        {"alphabet": "abcdfghijklmnopqrstuvwxyz' ", "max_skip_fraction": 0.5},  # no 'e'
        hours=0.004,
    )
    with pytest.raises(PrepareError, match=r"were skipped, more than data.max_skip_fraction=0.5"):
        prepare_synth(tmp_path / "c", cfg)
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert report["skipped"] > report["kept"] and not (tmp_path / "c" / MARKER).exists()
    for item in report["skipped_items"]:
        assert item["reason"].startswith("characters outside data.alphabet")


def test_the_summary_says_which_settings_carry_which_label(
    synth_corpus: Any, synth_cfg: DataCfg
) -> None:
    labels = synth_corpus.summary["labels"]
    assert labels["speaker"]["settings"] == ["accent", "variant", "pitch", "rate", "tract"]
    assert labels["speaker"]["tract_range"] == list(TRACT_RANGE)
    assert labels["intent"]["intents"] == synth_cfg.synth.intent_names()
    styles = synth_corpus.summary["splits"]["train"]["style"]  # counts per style label
    assert set(styles) <= set(labels["style"]["styles"])
    assert labels["style"]["styles"]["fast"] == {
        "pitch_offset": 0,
        "rate_scale": 1.4,
        "whisper": False,
    }
    on_disk = json.loads((synth_corpus.out_dir / "labels.json").read_text())
    assert on_disk == labels


def test_a_corpus_of_its_own_styles_labels_utterances_with_their_names(tmp_path: Path) -> None:
    styles = {"calm": {"rate_scale": 0.8}, "hasty": {"rate_scale": 1.6}}
    cfg = DataCfg.model_validate(
        {"synth": {"hours": 0.005, "num_speakers": 4, "heldout_speakers": 2, "styles": styles}}
    )
    plan = make_plan(cfg.synth)
    utts = [plan.utterance(i) for i in range(12)]
    assert {u.style for u in utts} == {"calm", "hasty"}
    for u in utts:  # the settings of the style named: espeak-ng gets the speaker's rate x scale
        scale = styles[u.style]["rate_scale"]
        args = espeak_args(u.speaker, u.voice, "hi")
        assert args[args.index("-s") + 1] == str(round(u.speaker.rate * scale))
    result = prepare_synth(tmp_path / "own", cfg)
    assert set(result.summary["labels"]["style"]["styles"]) == {"calm", "hasty"}
    assert set(result.summary["splits"]["train"]["style"]) <= {"calm", "hasty"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "styles",
            "{a: {rate_scale: 1.4}, b: {rate_scale: 1.4}}",
            "data.synth.styles.b: has the same settings as styles.a (rate_scale 1.4, "
            "pitch_offset 0, whisper false), so no probe can tell the two styles apart",
        ),
        ("styles", "{calm: {}}", "data.synth.styles: must list at least 2 distinct speaking"),
        ("styles", "{Calm: {}, b: {whisper: true}}", "data.synth.styles: style name 'Calm' must"),
        ("styles", "[neutral, shouting]", "data.synth.styles"),
        ("intents", "[lights_on, lights_on]", "data.synth.intents: must list at least 2 distinct"),
        ("intents", "[lights_on]", "data.synth.intents: must list at least 2 distinct intents"),
        ("intents", "[lights_on, order_pizza]", "data.synth.intents: 'order_pizza' is not an"),
    ],
)
def test_labels_no_probe_could_tell_apart_are_refused(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    from smx.config import load
    from smx.yamlio import ConfigError

    path = tmp_path / "params.yaml"
    path.write_text(f"data:\n  synth:\n    {field}: {value}\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert message in str(err.value)
