"""VoxCeleb1 for speaker verification, through Lhotse's VoxCeleb recipe.

Layout (the two archives unzipped into folders of their names, and the VoxCeleb1-O trial
list)::

    DIR/vox1_dev_wav/wav/<speaker>/<video>/<utterance>.wav    1,211 speakers
    DIR/vox1_test_wav/wav/<speaker>/<video>/<utterance>.wav   40 speakers
    DIR/veri_test2.txt                  <1|0> <spk>/<video>/<utt>.wav <spk>/<video>/<utt>.wav

Item ids are the recipe's: ``<speaker>-<video>-<utterance>`` (``id10270-x6uYqmx31kE-00001``);
each supervision carries its speaker and, in ``custom["part"]``, the folder it came from.
The recipe's per-file step (``lhotse.recipes.voxceleb._process_file``) reads every usable
file from a staging tree; its public entry ``prepare_voxceleb`` is not used because it
downloads the trial list from the internet into the working directory.

Splits: the dev speakers' utterances form ``train`` and ``dev`` (the last
``dev_fraction`` of each speaker's utterances in id order, at least one when the speaker has
two or more, so that every dev utterance is by a training speaker); the test speakers form
``heldout``. The trial list becomes ``trials.txt`` (``<1|0> <enrol id> <test id>``, read by
:func:`smx.downstream.tasks.read_trials`): a trial whose audio is missing or unusable is
left out and listed in ``report.json``; a missing or malformed trial list, or one with no
trial left, stops the preparation.

Example
-------
>>> voxceleb_id(PurePosixPath("id10270/x6uYqmx31kE/00001.wav"))
'id10270-x6uYqmx31kE-00001'
>>> sorted(dev_items({"a": ["a1", "a2", "a3", "a4"], "b": ["b1"]}, 0.3))
['a4']

Two dev speakers (one gives an utterance to ``dev``), two test speakers and one trial:

>>> import tempfile, numpy as np, soundfile as sf; from smx.config import DataCfg
>>> root = Path(tempfile.mkdtemp())
>>> for part, spk, utt in [("dev", "id1", 1), ("dev", "id1", 2), ("dev", "id2", 1),
...                        ("test", "id8", 1), ("test", "id9", 1)]:
...     path = root / f"vox1_{part}_wav/wav/{spk}/vid/0000{utt}.wav"
...     path.parent.mkdir(parents=True, exist_ok=True)
...     sf.write(path, 0.1 * np.sin(np.arange(16000) / (3 + utt)), 16000)
>>> _ = (root / "veri_test2.txt").write_text("0 id8/vid/00001.wav id9/vid/00001.wav\\n")
>>> summary = prepare_voxceleb(root, root / "out", DataCfg())
>>> [(s, e["utterances"]) for s, e in summary["splits"].items()]
[('train', 2), ('dev', 1), ('heldout', 2)]
>>> (root / "out" / "trials.txt").read_text()
'0 id8-vid-00001 id9-vid-00001\\n'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from smx.atomic import write_text
from smx.data.corpora import (
    Splits,
    Verdict,
    _fingerprint,
    _link,
    _require_dir,
    _staging,
    _use,
    _with_source,
    verify_files,
)
from smx.data.manifests import begin_prepare
from smx.data.mp3s import record_verdicts, write_labelled_corpus, write_report
from smx.data.problems import PrepareError, PrepareReport

#: the part folders, in the recipe's split names
VOXCELEB1_PARTS = {"vox1_dev_wav": "dev", "vox1_test_wav": "test"}
TRIAL_LIST = "veri_test2.txt"
DEV_FRACTION = 0.1
TRIAL_FORMAT = "<1|0> <speaker>/<video>/<utterance>.wav <speaker>/<video>/<utterance>.wav"


def voxceleb_id(rel: PurePosixPath) -> str:
    """The recipe's id of ``<speaker>/<video>/<utterance>.wav``: the three names joined by ``-``.

    Example: the module docstring.
    """
    return "-".join(PurePosixPath(name).stem for name in rel.parts)


def dev_items(ids_by_speaker: Mapping[str, list[str]], fraction: float) -> set[str]:
    """The ``dev`` utterances: the last ``fraction`` of each speaker's ids in sorted order.

    A speaker with two or more utterances gives at least one and keeps at least one for
    ``train``; a speaker with one gives none.

    Example: the module docstring.
    """
    dev: set[str] = set()
    for ids in ids_by_speaker.values():
        count = len(ids)
        if count < 2:
            continue
        take = min(count - 1, max(1, round(count * fraction)))
        dev.update(sorted(ids)[count - take :])
    return dev


@dataclass(frozen=True)
class Trial:
    """One line of the trial list: 1 for the same speaker, and the two files it names."""

    line: int
    target: int
    enrol: PurePosixPath
    test: PurePosixPath


@dataclass(frozen=True)
class Utterance:
    """One audio file of a part: its path, its path below ``wav/`` and its part folder."""

    path: Path
    rel: PurePosixPath
    part: str


def _voxceleb_input(
    corpus_dir: str | Path, trials: str | Path | None, dev_fraction: float | None
) -> tuple[Path, Path, float]:
    """The VoxCeleb1 folder, the trial list and the dev fraction, checked."""
    fraction = DEV_FRACTION if dev_fraction is None else dev_fraction
    if not 0 < fraction < 1:
        raise PrepareError(f"the dev fraction must lie between 0 and 1, got {fraction}")
    root = _require_dir(
        corpus_dir, "VoxCeleb1", "pass the folder that holds vox1_dev_wav/ and vox1_test_wav/"
    )
    for part in VOXCELEB1_PARTS:
        if not (root / part / "wav").is_dir():
            raise PrepareError(
                f"the VoxCeleb1 folder {root} has no {part}/wav folder; unzip {part}.zip "
                f"into {root / part}"
            )
    trial_list = Path(trials) if trials is not None else root / TRIAL_LIST
    if not trial_list.is_file():
        raise PrepareError(
            f"the VoxCeleb1-O trial list {trial_list} does not exist; put {TRIAL_LIST} "
            f"(lines '{TRIAL_FORMAT}') there or name it with --trials"
        )
    return root, trial_list.resolve(), fraction


def read_trial_list(path: Path) -> list[Trial]:
    """Every trial of a VoxCeleb trial list; :class:`PrepareError` naming a malformed line.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "veri_test2.txt"
    >>> _ = path.write_text("1 a/v/1.wav a/w/2.wav\\n\\n0 a/v/1.wav b/u/1.wav\\n")
    >>> [(t.line, t.target, t.test.as_posix()) for t in read_trial_list(path)]
    [(1, 1, 'a/w/2.wav'), (3, 0, 'b/u/1.wav')]
    """
    trials = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        files = [PurePosixPath(f) for f in fields[1:]]
        if len(fields) != 3 or fields[0] not in ("0", "1") or any(len(f.parts) != 3 for f in files):
            raise PrepareError(
                f"{path}:{number}: a trial must read '{TRIAL_FORMAT}', got {line.strip()!r}"
            )
        trials.append(Trial(number, int(fields[0]), files[0], files[1]))
    if not trials:
        raise PrepareError(f"the trial list {path} holds no trial ('{TRIAL_FORMAT}' lines)")
    return trials


def _voxceleb_audio(root: Path, report: PrepareReport) -> dict[str, Utterance]:
    """Every ``.wav`` at ``<part>/wav/<speaker>/<video>/<utterance>.wav`` by id.

    Files at another depth are skipped; a speaker in both parts stops the preparation.
    """
    found: dict[str, Utterance] = {}
    part_of_speaker: dict[str, str] = {}
    for part in VOXCELEB1_PARTS:
        folder = root / part / "wav"
        for path in sorted(folder.rglob("*.wav")):
            rel = PurePosixPath(path.relative_to(folder).as_posix())
            if len(rel.parts) != 3:
                report.add_skip(rel.as_posix(), str(path), "not at <speaker>/<video>/<utt>.wav")
                continue
            speaker = rel.parts[0]
            if part_of_speaker.setdefault(speaker, part) != part:
                raise PrepareError(
                    f"speaker {speaker} has audio in both {root / part_of_speaker[speaker]} and "
                    f"{root / part}; VoxCeleb1's dev and test speakers must not overlap"
                )
            found[voxceleb_id(rel)] = Utterance(path, rel, part)
    return found


def _check_trials_have_audio(
    trials: list[Trial], found: Mapping[str, Utterance], path: Path
) -> None:
    """Stop before anything is written when no trial names two test files that are there."""
    test = {key for key, utt in found.items() if utt.part == "vox1_test_wav"}
    if not any({voxceleb_id(t.enrol), voxceleb_id(t.test)} <= test for t in trials):
        raise PrepareError(
            f"none of the {len(trials)} trials of {path} names two files of "
            f"vox1_test_wav/wav that are there; is the test part complete?"
        )


def _write_trials(
    trials: list[Trial],
    heldout: set[str],
    path: Path,
    out: Path,
    reports: tuple[PrepareReport, PrepareReport],
) -> None:
    """Write ``trials.txt``: the trials between usable held-out files, as ids.

    The other trials go to the second report (left out); when none is kept, ``report.json``
    is written and :class:`PrepareError` raised.
    """
    report, left_out = reports
    kept = []
    for trial in trials:
        missing = [f for f in (trial.enrol, trial.test) if voxceleb_id(f) not in heldout]
        if missing:
            names = " and ".join(f.as_posix() for f in missing)
            why = f"trial without usable audio ({names} not in the prepared test audio)"
            left_out.add_skip(f"{path.name}:{trial.line}", str(path), why)
            continue
        kept.append(f"{trial.target} {voxceleb_id(trial.enrol)} {voxceleb_id(trial.test)}\n")
    if not kept:
        write_report(out, report, left_out)
        raise PrepareError(
            f"no trial of {path} is left: each names audio that was skipped (the reasons "
            f"are listed in {out / 'report.json'})"
        )
    write_text(out / "trials.txt", "".join(kept))


def _recipe_items(
    usable: dict[str, Verdict], found: Mapping[str, Utterance], out: Path, staging: Path
) -> tuple[Any, Any]:
    """Lhotse's recording and supervision of each usable file, reading the checked audio."""
    from lhotse import RecordingSet, SupervisionSet
    from lhotse.qa import fix_manifests
    from lhotse.recipes.voxceleb import SpeakerMetadata, _process_file

    recordings, supervisions = [], []
    for key, verdict in usable.items():
        utt = found[key]
        target = _use(verdict, out)
        link = staging / "wav" / utt.rel.with_suffix(target.suffix)
        _link(target, link)
        speaker = utt.rel.parts[0]
        meta = {speaker: SpeakerMetadata(speaker, "", None, "", VOXCELEB1_PARTS[utt.part])}
        rec, sup = _process_file(link, meta)
        recordings.append(_with_source(rec, verdict.source))
        supervisions.append(replace(sup, custom={"part": utt.part}))
    return fix_manifests(
        RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)
    )


def _voxceleb_splits(
    recordings: Any, supervisions: Any, found: Mapping[str, Utterance], dev_fraction: float
) -> Splits:
    """``train``/``dev`` from the dev speakers, ``heldout`` from the test speakers."""
    by_speaker: dict[str, list[str]] = {}
    for sup in supervisions:
        if found[sup.id].part == "vox1_dev_wav":
            by_speaker.setdefault(sup.speaker, []).append(sup.id)
    dev = dev_items(by_speaker, dev_fraction)
    splits: Splits = {}
    for sup in supervisions:
        if found[sup.id].part == "vox1_test_wav":
            split = "heldout"
        else:
            split = "dev" if sup.id in dev else "train"
        recs, sups = splits.setdefault(split, ([], []))
        recs.append(recordings[sup.recording_id])
        sups.append(sup)
    return splits


def prepare_voxceleb(
    corpus_dir: str | Path,
    out_dir: str | Path,
    data_cfg: Any,
    trials: str | Path | None = None,
    dev_fraction: float | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Prepare VoxCeleb1 (dev and test parts, VoxCeleb1-O trials) for speaker verification.

    Arguments
    ---------
    corpus_dir : str or Path
        The folder holding ``vox1_dev_wav/wav``, ``vox1_test_wav/wav`` and the trial list.
    out_dir : str or Path
        The corpus directory to write (manifests, ``trials.txt``, report, repaired audio).
    data_cfg : DataCfg
        The ``data`` section of the config.
    trials : str, Path or None
        The trial list (default ``<corpus_dir>/veri_test2.txt``).
    dev_fraction : float or None
        The share of each dev speaker's utterances that forms ``dev`` (0 < f < 1; default
        :data:`DEV_FRACTION`).
    workers : int
        Processes for the audio checks (0 = all cores).

    Returns
    -------
    dict[str, Any]
        The summary of ``train``, ``dev``, ``heldout`` (:func:`smx.data.manifests.write_corpus`).

    Raises
    ------
    PrepareError
        A missing folder or trial list, a malformed trial line, a speaker in both parts,
        no trial with usable audio, or too much unusable audio.

    Example: the module docstring.
    """
    root, trial_list, dev_fraction = _voxceleb_input(corpus_dir, trials, dev_fraction)
    trial_lines = read_trial_list(trial_list)
    report, left_out = PrepareReport(), PrepareReport()
    found = _voxceleb_audio(root, report)
    _check_trials_have_audio(trial_lines, found, trial_list)
    out = Path(out_dir)
    options = {"trials": str(trial_list), "dev_fraction": dev_fraction}
    begin_prepare(out, _fingerprint("voxceleb", root, data_cfg, **options))
    audio = {key: utt.path for key, utt in found.items()}
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    usable = record_verdicts(verdicts, audio, report, {})
    heldout = {key for key in usable if found[key].part == "vox1_test_wav"}
    _write_trials(trial_lines, heldout, trial_list, out, (report, left_out))
    with _staging(out) as staging:
        recordings, supervisions = _recipe_items(usable, found, out, staging)
        splits = _voxceleb_splits(recordings, supervisions, found, dev_fraction)
        return write_labelled_corpus(
            out, "voxceleb", splits, report, left_out, data_cfg, extra_files=("trials.txt",)
        )
