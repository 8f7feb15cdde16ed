"""What the MP3S corpora (VoxCeleb1, SLURP, IEMOCAP) share: labelled whole-file items.

The three preparers (:mod:`smx.data.voxceleb`, :mod:`smx.data.slurp`,
:mod:`smx.data.iemocap`) follow the steps of :mod:`smx.data.corpora`: check the inputs and
read the label files (a malformed or unknown label stops the preparation before anything is
written), claim the output folder, skip unusable items, check the audio
(:func:`smx.data.corpora.verify_files`) and write the manifests
(:func:`smx.data.manifests.write_corpus`). Each audio file is one utterance: one recording
and one supervision covering it, carrying the task's label.

Two kinds of entries go to ``report.json``: items that *should* have been usable (missing,
empty or broken audio, duplicates), checked against ``data.max_skip_fraction``; and items
left out *by the protocol* (IEMOCAP utterances outside the 4 emotion classes, verification
trials without usable audio), listed with their reason but not counted against it.

A transcript is normalised to ``data.alphabet`` (:func:`smx.data.text.normalise_text`);
one with characters outside it keeps its utterance, without the text (the labels are what
these corpora are for), and ``report.json`` lists it among the repaired items.

Example
-------
>>> transcript("Excuse me.", "abcdefghijklmnopqrstuvwxyz' ")
('excuse me', None)
>>> transcript("Room 101", "abcdefghijklmnopqrstuvwxyz' ")
(None, "transcript left out: characters outside data.alphabet: ['0', '1']")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smx.data.corpora import Verdict
from smx.data.manifests import write_corpus
from smx.data.problems import PrepareReport
from smx.data.text import normalise_text

if TYPE_CHECKING:
    from lhotse import Recording, SupervisionSegment


def transcript(raw: str, alphabet: str) -> tuple[str | None, str | None]:
    """The normalised transcript, or None and why it was left out.

    Arguments
    ---------
    raw : str
        The transcript as the corpus writes it.
    alphabet : str
        ``data.alphabet``.

    Returns
    -------
    tuple[str | None, str | None]
        ``(text, None)``, or ``(None, note)`` when characters outside ``alphabet`` remain;
        ``(None, None)`` for an empty transcript.

    Example: the module docstring.
    """
    text, outside = normalise_text(raw, alphabet)
    if not text:
        return None, None
    if outside:
        return None, f"transcript left out: characters outside data.alphabet: {outside}"
    return text, None


def record_verdicts(
    verdicts: Mapping[str, Verdict],
    audio: Mapping[str, Path],
    report: PrepareReport,
    notes: Mapping[str, str],
) -> dict[str, Verdict]:
    """Report every file as kept (its repairs and note) or skipped; return the usable, sorted.

    Arguments
    ---------
    verdicts : Mapping[str, Verdict]
        Item id -> what :func:`smx.data.corpora.verify_files` found.
    audio : Mapping[str, Path]
        Item id -> its audio file (for the report).
    report : PrepareReport
        Receives a kept or skipped entry per item.
    notes : Mapping[str, str]
        Item id -> what else was changed (a transcript left out), reported with the repairs.

    Returns
    -------
    dict[str, Verdict]
        The usable items by id, in id order.

    Example
    -------
    >>> report = PrepareReport()
    >>> found = {"a": Verdict("a", "/a.wav", 16000, (), None),
    ...          "b": Verdict("b", None, 0, (), "empty file (0 bytes)")}
    >>> usable = record_verdicts(found, {"a": Path("/a.wav"), "b": Path("/b.wav")}, report,
    ...                          {"a": "transcript left out"})
    >>> list(usable), report.kept, report.skipped[0]["reason"], report.repaired[0]["repairs"]
    (['a'], 1, 'empty file (0 bytes)', ['transcript left out'])
    """
    usable: dict[str, Verdict] = {}
    for key, verdict in sorted(verdicts.items()):
        if verdict.reason is not None or verdict.source is None:
            report.add_skip(key, str(audio[key]), verdict.reason or "unusable")
            continue
        changes = (*verdict.repairs, *((notes[key],) if key in notes else ()))
        report.add_kept(key, str(audio[key]), changes)
        usable[key] = verdict
    return usable


def whole_file_item(
    item_id: str,
    verdict: Verdict,
    rate: int,
    text: str | None = None,
    speaker: str | None = None,
    custom: dict[str, Any] | None = None,
) -> tuple[Recording, SupervisionSegment]:
    """One recording of a checked file and one supervision covering all of it.

    Arguments
    ---------
    item_id : str
        The id of both.
    verdict : Verdict
        The file's check (its usable source and length in samples at ``rate``).
    rate : int
        The sample rate in Hz.
    text, speaker : str or None
        The transcript and the speaker.
    custom : dict[str, Any] or None
        The labels (``intent``, ``emotion``, ``session`` ...).

    Returns
    -------
    tuple[Recording, SupervisionSegment]
        The recording and its supervision.

    Example
    -------
    >>> rec, sup = whole_file_item("u1", Verdict("u1", "/u1.wav", 24000, (), None), 16000,
    ...                            custom={"intent": "alarm_set"})
    >>> rec.duration, sup.duration, sup.custom["intent"]
    (1.5, 1.5, 'alarm_set')
    """
    from lhotse import Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    duration = verdict.num_samples / rate
    source = AudioSource(type="file", channels=[0], source=verdict.source)
    recording = Recording(item_id, [source], rate, verdict.num_samples, duration)
    supervision = SupervisionSegment(
        id=item_id,
        recording_id=item_id,
        start=0.0,
        duration=duration,
        channel=0,
        text=text,
        speaker=speaker,
        custom=custom,
    )
    return recording, supervision


def write_report(out: Path, report: PrepareReport, left_out: PrepareReport) -> PrepareReport:
    """Write ``report.json`` listing the skips of both reports; return the merged report.

    Example
    -------
    >>> import json, tempfile
    >>> out, report, left_out = Path(tempfile.mkdtemp()), PrepareReport(kept=2), PrepareReport()
    >>> left_out.add_skip("u3", "labels.txt:4", "not one of the four classes (fru)")
    >>> write_report(out, report, left_out).skipped[0]["id"]
    'u3'
    >>> json.loads((out / "report.json").read_text())["skip_reasons"]
    {'not one of the four classes': 1}
    """
    listed = PrepareReport(report.kept, [*report.skipped, *left_out.skipped], report.repaired)
    listed.write(out / "report.json")
    return listed


def write_labelled_corpus(
    out: Path,
    corpus: str,
    splits: dict[str, tuple[list[Any], list[Any]]],
    report: PrepareReport,
    left_out: PrepareReport,
    data_cfg: Any,
    extra_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the corpus; items left out by the protocol are listed but not held against it.

    ``report.json`` lists the skips of both reports; only those of ``report`` count towards
    ``data.max_skip_fraction``.

    Arguments
    ---------
    out : Path
        The corpus directory.
    corpus : str
        Its kind (``voxceleb``, ``slurp``, ``iemocap``).
    splits : dict[str, tuple[list, list]]
        Split name -> (recordings, supervisions).
    report : PrepareReport
        The kept, repaired and unusable items.
    left_out : PrepareReport
        The items the protocol leaves out (only its skips are used).
    data_cfg : DataCfg
        The ``data`` section of the config.
    extra_files : Sequence[str]
        Other files of the corpus (e.g. ``trials.txt``), fingerprinted in the marker.

    Returns
    -------
    dict[str, Any]
        The summary (:func:`smx.data.manifests.write_corpus`); ``skipped`` counts both kinds.

    Raises
    ------
    PrepareError
        Too many unusable items, a split fails Lhotse's validation, or no training split.
    """
    listed = write_report(out, report, left_out)
    report.check(data_cfg.max_skip_fraction, where=out / "report.json")
    return write_corpus(out, corpus, splits, listed, 1.0, extra_files=extra_files)
