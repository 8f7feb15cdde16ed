"""IEMOCAP for 4-class emotion recognition (Lhotse 1.33 has no IEMOCAP recipe).

Layout (``IEMOCAP_full_release``)::

    DIR/Session<n>/sentences/wav/<dialog>/<utterance>.wav
    DIR/Session<n>/dialog/EmoEvaluation/<dialog>.txt      [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]
    DIR/Session<n>/dialog/transcriptions/<dialog>.txt     Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.

Labels: the usual 4 classes, ``neutral`` (``neu``), ``happy`` (``hap`` and ``exc``),
``sad`` and ``angry`` (``ang``), in ``custom["emotion"]``; the session (1-5) in
``custom["session"]``; the speaker is the session and the speaker's gender
(``Ses01F_impro01_M003`` -> ``Ses01M``); the text is the transcript line without its
bracketed noises (``[LAUGHTER]``), or None without one. Utterances with another known label
(``fru sur fea dis oth xxx``) are left out and listed in ``report.json`` ("not one of the 4
classes"); an unknown label, a malformed label line or a missing session folder stops the
preparation before anything is written.

Splits: one fold of the leave-one-session-out protocol, Sessions 1-3 ``train``, Session 4
``dev``, Session 5 ``test``; ``custom["session"]`` lets a probe run the other folds.

Example
-------
>>> iemocap_speaker("Ses01F_impro01_M003"), iemocap_speaker("Ses05M_script02_2_F011")
('Ses01M', 'Ses05F')
>>> parse_label_line("[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[2.5000, 2.5000, 2.5000]")
('Ses01F_impro01_F000', 'neu')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smx.data.corpora import Splits, Verdict, _fingerprint, _require_dir, verify_files
from smx.data.manifests import begin_prepare
from smx.data.mp3s import record_verdicts, transcript, whole_file_item, write_labelled_corpus
from smx.data.problems import PrepareError, PrepareReport

SESSIONS = (1, 2, 3, 4, 5)
#: session -> split (one fold of leave-one-session-out)
SESSION_SPLITS = {1: "train", 2: "train", 3: "train", 4: "dev", 5: "test"}
#: label -> class of the 4-class protocol
EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
OTHER_LABELS = ("fru", "sur", "fea", "dis", "oth", "xxx")
LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[.*\]\s*$")
TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s*(.*)$")
SPEAKER = re.compile(r"^(Ses\d\d)[FM]_.*_([FM])\d+$")


def iemocap_speaker(utterance: str) -> str | None:
    """The speaker of an utterance: its session and the gender letter of its last part.

    Example: the module docstring.
    """
    match = SPEAKER.match(utterance)
    return f"{match[1]}{match[2]}" if match else None


def parse_label_line(line: str) -> tuple[str, str] | None:
    """``(utterance, label)`` of an EmoEvaluation line ``[start - end] utt label [v, a, d]``.

    Returns None for a malformed line.

    Example: the module docstring.
    """
    match = LABEL_LINE.match(line)
    return (match[1], match[2]) if match else None


@dataclass(frozen=True)
class Label:
    """One utterance's label line: where it is, its session, dialog and emotion class."""

    utterance: str
    session: int
    dialog: str
    emotion: str
    where: str


def parse_sessions(text: str) -> list[int]:
    """The sessions of a comma-separated list such as ``1,2,3``.

    Example
    -------
    >>> parse_sessions("3, 1,2")
    [1, 2, 3]
    """
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        chosen = []
    if not chosen or any(s not in SESSIONS for s in chosen):
        raise PrepareError(f"--sessions must list sessions 1-5 separated by commas, got {text!r}")
    return chosen


def _session_folders(corpus_dir: str | Path, sessions: list[int]) -> tuple[Path, dict[int, Path]]:
    """The IEMOCAP folder and each chosen session's folder; all must exist."""
    root = _require_dir(
        corpus_dir, "IEMOCAP", "pass the IEMOCAP_full_release folder that holds Session1-5/"
    )
    unknown = [s for s in sessions if s not in SESSIONS]
    if unknown:
        raise PrepareError(f"IEMOCAP has sessions 1-5, not {unknown[0]}")
    if not any(SESSION_SPLITS[s] == "train" for s in sessions):
        raise PrepareError(
            "the chosen --sessions hold no training session; include one of 1, 2, 3 "
            "(Session 4 is dev, Session 5 test)"
        )
    folders = {}
    for session in sessions:
        folder = root / f"Session{session}"
        for inner in ("sentences/wav", "dialog/EmoEvaluation"):
            if not (folder / inner).is_dir():
                missing = folder if not folder.is_dir() else folder / inner
                raise PrepareError(
                    f"the IEMOCAP session folder {missing} does not exist; pass the "
                    "IEMOCAP_full_release folder, or choose the sessions there with --sessions"
                )
        folders[session] = folder
    return root, folders


def _visible(folder: Path, pattern: str) -> list[Path]:
    """The files matching ``pattern`` in ``folder``, sorted, without macOS ``._`` files."""
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("._"))


def _label_file(path: Path, session: int, left_out: PrepareReport) -> list[Label]:
    """The 4-class labels of one EmoEvaluation file; other known labels go to ``left_out``."""
    labels = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.startswith("["):
            continue
        where = f"{path}:{number}"
        parsed = parse_label_line(line)
        if parsed is None:
            raise PrepareError(
                f"{where}: a label line must read '[start - end]<TAB>utterance<TAB>label"
                f"<TAB>[v, a, d]', got {line.strip()!r}"
            )
        utterance, label = parsed
        if label in EMOTIONS:
            labels.append(Label(utterance, session, path.stem, EMOTIONS[label], where))
        elif label in OTHER_LABELS:
            left_out.add_skip(utterance, where, f"not one of the four classes ({label})")
        else:
            known = ", ".join([*EMOTIONS, *OTHER_LABELS])
            raise PrepareError(
                f"{where}: unknown emotion label {label!r} for {utterance} (known: {known})"
            )
    return labels


def _transcripts(folder: Path) -> dict[str, str]:
    """Utterance -> raw transcript of every ``transcriptions/*.txt`` line of a session."""
    texts: dict[str, str] = {}
    for path in _visible(folder / "dialog" / "transcriptions", "*.txt"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = TRANSCRIPT_LINE.match(line.strip())
            if match:
                texts.setdefault(match[1], match[2])
    return texts


def _iemocap_labels(
    folders: dict[int, Path], report: PrepareReport, left_out: PrepareReport
) -> tuple[dict[str, Label], dict[str, Path]]:
    """The 4-class label and audio file of every utterance; unmatched ones are skipped."""
    labels: dict[str, Label] = {}
    audio: dict[str, Path] = {}
    for session, folder in folders.items():
        for path in _visible(folder / "dialog" / "EmoEvaluation", "*.txt"):
            for label in _label_file(path, session, left_out):
                wav = folder / "sentences" / "wav" / label.dialog / f"{label.utterance}.wav"
                if label.utterance in labels:
                    why = f"duplicate label line (also {labels[label.utterance].where})"
                    report.add_skip(label.utterance, label.where, why)
                elif not wav.is_file():
                    report.add_skip(label.utterance, str(wav), "no audio file for this label line")
                else:
                    labels[label.utterance] = label
                    audio[label.utterance] = wav
    named = set(labels) | {s["id"] for s in (*left_out.skipped, *report.skipped)}
    for folder in folders.values():
        for wav in _visible(folder / "sentences" / "wav", "*/*.wav"):
            if wav.stem not in named:
                report.add_skip(wav.stem, str(wav), "no label line for this audio file")
    return labels, audio


def _iemocap_texts(
    folders: dict[int, Path], labels: dict[str, Label], alphabet: str
) -> tuple[dict[str, str | None], dict[str, str]]:
    """Each labelled utterance's normalised transcript (or None) and notes on those left out."""
    raw: dict[str, str] = {}
    for folder in folders.values():
        raw.update(_transcripts(folder))
    texts: dict[str, str | None] = {}
    notes: dict[str, str] = {}
    for utterance in labels:
        spoken = re.sub(r"\[[^\]]*\]", " ", raw.get(utterance, ""))
        texts[utterance], note = transcript(spoken, alphabet)
        if note:
            notes[utterance] = note
    return texts, notes


def _iemocap_splits(
    usable: dict[str, Verdict], labels: dict[str, Label], texts: dict[str, str | None], rate: int
) -> Splits:
    """One recording and supervision (emotion, session, speaker) per utterance, by session."""
    splits: Splits = {}
    for key, verdict in usable.items():
        label = labels[key]
        custom = {"emotion": label.emotion, "session": label.session}
        recording, supervision = whole_file_item(
            key, verdict, rate, texts[key], iemocap_speaker(key), custom
        )
        recs, sups = splits.setdefault(SESSION_SPLITS[label.session], ([], []))
        recs.append(recording)
        sups.append(supervision)
    return splits


def prepare_iemocap(
    corpus_dir: str | Path,
    out_dir: str | Path,
    data_cfg: Any,
    sessions: list[int] | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Prepare IEMOCAP's 4 emotion classes, by session.

    Arguments
    ---------
    corpus_dir : str or Path
        The ``IEMOCAP_full_release`` folder holding ``Session1`` ... ``Session5``.
    out_dir : str or Path
        The corpus directory to write.
    data_cfg : DataCfg
        The ``data`` section of the config.
    sessions : list[int] or None
        The sessions to use (default all 5, at least one of 1-3).
    workers : int
        Processes for the audio checks (0 = all cores).

    Returns
    -------
    dict[str, Any]
        The summary (:func:`smx.data.manifests.write_corpus`) of ``train`` (Sessions 1-3),
        ``dev`` (4), ``test`` (5); ``skipped`` counts the utterances outside the 4 classes.

    Raises
    ------
    PrepareError
        A missing session folder, a bad label line or label, or too much unusable audio.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf; from smx.config import DataCfg
    >>> root = Path(tempfile.mkdtemp())
    >>> wav = root / "Session1/sentences/wav/Ses01F_impro01"
    >>> labels = root / "Session1/dialog/EmoEvaluation"
    >>> wav.mkdir(parents=True); labels.mkdir(parents=True)
    >>> for utt in ("F000", "M000", "M001"):
    ...     sf.write(wav / f"Ses01F_impro01_{utt}.wav", np.full(8000, 0.1), 16000)
    >>> _ = (labels / "Ses01F_impro01.txt").write_text(
    ...     "[0.1 - 0.6]\\tSes01F_impro01_F000\\tneu\\t[2.5, 2.5, 2.5]\\n"
    ...     "[0.7 - 1.2]\\tSes01F_impro01_M000\\texc\\t[3.5, 3.0, 3.0]\\n"
    ...     "[1.3 - 1.8]\\tSes01F_impro01_M001\\tfru\\t[2.0, 3.0, 3.0]\\n")
    >>> summary = prepare_iemocap(root, root / "out", DataCfg(), sessions=[1])
    >>> summary["splits"]["train"]["utterances"], summary["skipped"]
    (2, 1)
    """
    root, folders = _session_folders(corpus_dir, sorted(set(sessions or SESSIONS)))
    report, left_out = PrepareReport(), PrepareReport()
    labels, audio = _iemocap_labels(folders, report, left_out)
    texts, notes = _iemocap_texts(folders, labels, data_cfg.alphabet)
    out = Path(out_dir)
    begin_prepare(out, _fingerprint("iemocap", root, data_cfg, sessions=list(folders)))
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    usable = record_verdicts(verdicts, audio, report, notes)
    splits = _iemocap_splits(usable, labels, texts, data_cfg.sample_rate)
    return write_labelled_corpus(out, "iemocap", splits, report, left_out, data_cfg)
