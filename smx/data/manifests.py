"""Lhotse manifests of a prepared corpus: writing, validation, summary and loading.

A prepared corpus directory holds, per split (``train``, ``dev``, ``test``, and
``heldout`` for the synthetic corpus' unseen speakers)::

    recordings_<split>.jsonl.gz    RecordingSet
    supervisions_<split>.jsonl.gz  SupervisionSet (text, speaker, custom: intent, style, ...)
    cuts_<split>.jsonl.gz          CutSet

plus ``summary.json`` (hours, utterances, speakers, per-class counts per split),
``report.json`` (every skipped or repaired item with its reason), ``vocab.json`` (the
characters of the training text) and, written last, the completion marker
``COMPLETE.json``. A run first removes the marker, writes audio, then each manifest
atomically, then the marker: an interrupted run never leaves a corpus that looks complete,
and :func:`load_cuts` refuses a corpus without the marker.

Audio paths: files inside the corpus directory (synthesised or repaired audio) are stored
*relative to the corpus directory*, so the directory can be moved or copied to another
machine; files of an external corpus (LibriSpeech ...) are stored as absolute paths.
:func:`load_cuts` joins relative paths to the corpus directory's current location.

Example
-------
>>> import tempfile
>>> from lhotse import Recording, SupervisionSegment
>>> from lhotse.audio import AudioSource
>>> rec = Recording("u1", [AudioSource("file", [0], "audio/u1.flac")], 16000, 32000, 2.0)
>>> sup = SupervisionSegment("u1", "u1", 0.0, 2.0, text="hi", speaker="s1",
...                          custom={"intent": "greet"})
>>> out = Path(tempfile.mkdtemp())
>>> summary = write_corpus(out, "demo", {"train": ([rec], [sup])}, PrepareReport(kept=1), 0.0)
>>> summary["splits"]["train"]["utterances"], summary["splits"]["train"]["intent"]
(1, {'greet': 1})
>>> cut = next(iter(load_cuts(out, "train")))
>>> cut.supervisions[0].custom["intent"], cut.recording.sources[0].source.endswith("audio/u1.flac")
('greet', True)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.qa import validate, validate_recordings_and_supervisions
from lhotse.utils import fastcopy

from smx import __version__
from smx.atomic import atomic_path, write_json
from smx.data.problems import PrepareError, PrepareReport
from smx.data.text import CharVocab

SPLITS = ("train", "dev", "test", "heldout")
MARKER = "COMPLETE.json"
STATE = ".smx_prepare.json"  # what the run in progress is making (resume / start over)
CLASS_FIELDS = ("intent", "style", "emotion", "noise", "subset", "part")
OWN_OUTPUTS = ("audio", "repaired", "shar", ".staging")


def manifest_path(corpus_dir: str | Path, kind: str, split: str) -> Path:
    """The path of one manifest of a corpus.

    Arguments
    ---------
    corpus_dir : str or Path
        The corpus directory.
    kind : str
        ``recordings``, ``supervisions`` or ``cuts``.
    split : str
        The split.

    Returns
    -------
    Path
        ``<corpus_dir>/<kind>_<split>.jsonl.gz``.

    Example
    -------
    >>> manifest_path("data/synth", "cuts", "dev").as_posix()
    'data/synth/cuts_dev.jsonl.gz'
    """
    return Path(corpus_dir) / f"{kind}_{split}.jsonl.gz"


def write_manifest(items: Iterable[Any], path: str | Path) -> None:
    """Write Lhotse manifest items as gzipped JSON lines, atomically and byte-reproducibly.

    The gzip header carries no time stamp, so identical manifests give identical files.

    Arguments
    ---------
    items : Iterable
        Recordings, SupervisionSegments or Cuts (anything with ``to_dict()``).
    path : str or Path
        The ``.jsonl.gz`` file; Lhotse's ``load_manifest`` reads it back.

    Example
    -------
    >>> import tempfile
    >>> from lhotse import load_manifest
    >>> path = Path(tempfile.mkdtemp()) / "s.jsonl.gz"
    >>> write_manifest([SupervisionSegment("a", "r", 0.0, 1.5, text="hi")], path)
    >>> load_manifest(path)[0].text
    'hi'
    """
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        for item in items:
            line = json.dumps(item.to_dict(), ensure_ascii=False, sort_keys=True)
            gz.write(line.encode("utf-8") + b"\n")


def begin_prepare(out_dir: str | Path, fingerprint: dict[str, Any]) -> bool:
    """Claim ``out_dir`` for a preparation described by ``fingerprint``; return True to resume.

    A folder holding a run with the same fingerprint is resumed (audio already written is
    kept); one holding a different smx corpus is cleared; a non-empty folder that smx did
    not write is refused. The completion marker is removed first in every case.

    Arguments
    ---------
    out_dir : str or Path
        The corpus directory.
    fingerprint : dict[str, Any]
        JSON-ready description of everything that determines the corpus.

    Returns
    -------
    bool
        True when a run with the same fingerprint is resumed.

    Raises
    ------
    PrepareError
        ``out_dir`` is a file, or a non-empty folder that smx did not write.

    Example
    -------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "c"
    >>> begin_prepare(out, {"seed": 0}), begin_prepare(out, {"seed": 0}), is_complete(out)
    (False, True, False)
    """
    out = Path(out_dir)
    state = out / STATE
    if out.exists() and not out.is_dir():
        raise PrepareError(f"{out} exists and is not a folder; choose another --out")
    resume = False
    if out.is_dir() and any(out.iterdir()):
        if not state.is_file():
            raise PrepareError(
                f"{out} is not empty and was not written by smx prepare; "
                "choose an empty or new --out folder"
            )
        resume = json.loads(state.read_text(encoding="utf-8")) == fingerprint
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    if not resume:
        for child in out.iterdir():
            if child.name in OWN_OUTPUTS and child.is_dir():
                shutil.rmtree(child)
            elif child.name.endswith((".jsonl.gz", ".json", ".txt")):
                child.unlink()
        write_json(state, fingerprint)
    return resume


def is_complete(corpus_dir: str | Path) -> bool:
    """True when the corpus was prepared to the end (its completion marker exists).

    Arguments
    ---------
    corpus_dir : str or Path
        Any folder.

    Returns
    -------
    bool
        Whether ``COMPLETE.json`` is there.

    Example
    -------
    >>> is_complete("/nonexistent")
    False
    """
    return (Path(corpus_dir) / MARKER).is_file()


def validate_split(split: str, recordings: RecordingSet, supervisions: SupervisionSet) -> CutSet:
    """Validate a split with Lhotse's own checks and return its CutSet.

    There is one cut per (mono) recording and it carries the recording's id, so that ids in
    trials files and reports name cuts too.

    Arguments
    ---------
    split : str
        Its name, for the error message.
    recordings : RecordingSet
        The split's recordings.
    supervisions : SupervisionSet
        The split's supervisions.

    Returns
    -------
    CutSet
        One cut per recording, with the recording's id.

    Raises
    ------
    PrepareError
        Lhotse's validation fails (the message names the split).

    Example
    -------
    >>> from lhotse.audio import AudioSource
    >>> rec = Recording("r", [AudioSource("file", [0], "r.flac")], 16000, 16000, 1.0)
    >>> recs = RecordingSet.from_recordings([rec])
    >>> sups = SupervisionSet.from_segments([SupervisionSegment("s", "r", 0.0, 1.0)])
    >>> [c.id for c in validate_split("dev", recs, sups)]
    ['r']
    >>> bad = SupervisionSet.from_segments([SupervisionSegment("s", "r", 0.5, 2.0)])
    >>> validate_split("dev", recs, bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smx.data.problems.PrepareError: split 'dev' failed Lhotse's validation: ...
    """
    try:
        validate_recordings_and_supervisions(recordings, supervisions)
        cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
        cuts = CutSet.from_cuts(fastcopy(cut, id=cut.recording_id) for cut in cuts)
        validate(cuts)
    except AssertionError as exc:
        raise PrepareError(f"split '{split}' failed Lhotse's validation: {exc}") from None
    return cuts


def summarise(cuts_by_split: dict[str, CutSet]) -> dict[str, Any]:
    """Hours, utterances, speakers and per-class counts (intent, style, ...) of each split.

    Arguments
    ---------
    cuts_by_split : dict[str, CutSet]
        Split name -> its cuts.

    Returns
    -------
    dict[str, Any]
        ``{"splits": {split: entry}, "total": entry}``; an entry has ``hours``,
        ``utterances``, ``speakers`` and a count per value of each class field present.

    Example
    -------
    >>> summarise({})
    {'splits': {}, 'total': {'hours': 0.0, 'utterances': 0, 'speakers': 0}}
    """
    splits: dict[str, Any] = {}
    all_speakers: set[str] = set()
    total_seconds, total_utts = 0.0, 0
    for split, cuts in cuts_by_split.items():
        seconds, count, speakers = 0.0, 0, set()
        classes: dict[str, Counter[str]] = {name: Counter() for name in CLASS_FIELDS}
        for cut in cuts:
            seconds += cut.duration
            count += 1
            for sup in cut.supervisions:
                if sup.speaker:
                    speakers.add(sup.speaker)
                for name in CLASS_FIELDS:
                    value = (sup.custom or {}).get(name)
                    if value is not None:
                        classes[name][str(value)] += 1
        entry: dict[str, Any] = {
            "hours": round(seconds / 3600, 4),
            "utterances": count,
            "speakers": len(speakers),
        }
        entry.update({k: dict(sorted(v.items())) for k, v in classes.items() if v})
        splits[split] = entry
        all_speakers |= speakers
        total_seconds += seconds
        total_utts += count
    total = {
        "hours": round(total_seconds / 3600, 4),
        "utterances": total_utts,
        "speakers": len(all_speakers),
    }
    return {"splits": splits, "total": total}


def _split_order(split: str) -> tuple[int, str]:
    """Sort key: train, dev, test, heldout, then other splits by name."""
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def _write_splits(
    out: Path,
    splits: dict[str, tuple[Sequence[Recording], Sequence[SupervisionSegment]]],
    cut_transform: Callable[[CutSet], CutSet] | None,
) -> dict[str, CutSet]:
    """Validate and write the three manifests of every split that has a recording.

    Returns the cuts of each split written, in the order train, dev, test, heldout, others.
    """
    cuts_by_split: dict[str, CutSet] = {}
    for split in sorted(splits, key=_split_order):
        recordings = RecordingSet.from_recordings(sorted(splits[split][0], key=lambda r: r.id))
        supervisions = SupervisionSet.from_segments(sorted(splits[split][1], key=lambda s: s.id))
        if len(recordings) == 0:
            continue
        cuts = validate_split(split, recordings, supervisions)
        if cut_transform is not None:
            cuts = cut_transform(cuts)
        cuts = cuts.sort_by_recording_id() if len(cuts) else cuts
        for kind, manifest in (
            ("recordings", recordings),
            ("supervisions", supervisions),
            ("cuts", cuts),
        ):
            write_manifest(manifest, manifest_path(out, kind, split))
        cuts_by_split[split] = cuts
    return cuts_by_split


def _manifest_files(out: Path, cuts_by_split: dict[str, CutSet]) -> list[str]:
    """File names of the manifests written for these splits."""
    kinds = ("recordings", "supervisions", "cuts")
    return [manifest_path(out, kind, split).name for split in cuts_by_split for kind in kinds]


def _write_vocab(out: Path, cuts_by_split: dict[str, CutSet]) -> dict[str, Any]:
    """Write the training text's vocabulary; return its size and other splits' unknown chars."""
    vocab = CharVocab.from_texts(s.text for c in cuts_by_split["train"] for s in c.supervisions)
    vocab.save(out / "vocab.json")
    oov = {
        split: dict(
            sorted(vocab.unknown_chars(s.text for c in cuts for s in c.supervisions).items())
        )
        for split, cuts in cuts_by_split.items()
        if split != "train"
    }
    return {
        "vocab_size": len(vocab),
        "chars_outside_vocab": {k: dict(sorted(v.items())) for k, v in oov.items() if v},
    }


def _write_marker(out: Path, corpus: str, splits: list[str], files: list[str]) -> None:
    """Write the completion marker with the checksum of every file of the corpus."""
    marker = {
        "smx_version": __version__,
        "corpus": corpus,
        "splits": splits,
        "files": {name: _sha256(out / name) for name in files},
    }
    write_json(out / MARKER, marker)


def write_corpus(
    out_dir: str | Path,
    corpus: str,
    splits: dict[str, tuple[Sequence[Recording], Sequence[SupervisionSegment]]],
    report: PrepareReport,
    max_skip_fraction: float,
    cut_transform: Callable[[CutSet], CutSet] | None = None,
    extra_files: Sequence[str] = (),
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate and write the manifests of every split, the summary, vocabulary and marker.

    Arguments
    ---------
    out_dir : str or Path
        The corpus directory (audio already written).
    corpus : str
        Its kind, recorded in the summary (``synth``, ``librispeech`` ...).
    splits : dict[str, tuple[Sequence[Recording], Sequence[SupervisionSegment]]]
        Split name -> (recordings, supervisions).
    report : PrepareReport
        What was skipped/repaired; written to ``report.json`` and checked first.
    max_skip_fraction : float
        Fail when a larger share of the items was skipped.
    cut_transform : Callable[[CutSet], CutSet] or None
        Applied to each split's cuts (e.g. windows for long recordings).
    extra_files : Sequence[str]
        Other files of the corpus (written before) to fingerprint in the marker.
    extra_summary : dict | None
        Entries added to the summary (synth: which settings carry which label).

    Returns
    -------
    dict[str, Any]
        The summary (:func:`summarise` plus corpus, vocabulary and report counts), also
        written to ``summary.json``.

    Raises
    ------
    PrepareError
        Too much was skipped, a split fails Lhotse's validation, or no training split.
        (Example: the module docstring.)
    """
    out = Path(out_dir)
    report.write(out / "report.json")
    report.check(max_skip_fraction, where=out / "report.json")
    cuts_by_split = _write_splits(out, splits, cut_transform)
    if "train" not in cuts_by_split:
        raise PrepareError(
            f"no usable training utterances were found for {out}; a corpus needs a training "
            f"part or folder (skipped items are listed in {out / 'report.json'})"
        )
    summary = summarise(cuts_by_split)
    summary.update(corpus=corpus, **_write_vocab(out, cuts_by_split))
    summary.update(skipped=len(report.skipped), repaired=len(report.repaired))
    summary.update(extra_summary or {})
    write_json(out / "summary.json", summary)
    files = ["report.json", *_manifest_files(out, cuts_by_split), "summary.json", "vocab.json"]
    _write_marker(out, corpus, list(cuts_by_split), [*files, *extra_files])
    return summary


def _sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def available_splits(corpus_dir: str | Path) -> list[str]:
    """The splits of a finished corpus, in the order train, dev, test, heldout, others.

    Arguments
    ---------
    corpus_dir : str or Path
        A corpus directory.

    Returns
    -------
    list[str]
        The split names (empty for an unfinished corpus).

    Example
    -------
    >>> available_splits("/nonexistent")
    []
    """
    marker = Path(corpus_dir) / MARKER
    if not marker.is_file():
        return []
    return list(json.loads(marker.read_text(encoding="utf-8"))["splits"])


def load_cuts(corpus_dir: str | Path, split: str) -> CutSet:
    """Open one split of a finished corpus lazily, with audio paths resolved.

    Arguments
    ---------
    corpus_dir : str or Path
        A corpus written by ``smx prepare`` (it may have been moved).
    split : str
        ``train``, ``dev``, ``test`` or ``heldout``.

    Returns
    -------
    CutSet
        The split's cuts, their relative audio paths joined to the corpus directory.

    Raises
    ------
    PrepareError
        The corpus is unfinished or lacks the split.

    Example
    -------
    >>> load_cuts("/nonexistent", "train")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smx.data.problems.PrepareError: /nonexistent is not a finished corpus (no COMPLETE.json); ...
    """
    root = Path(corpus_dir).resolve()
    if not is_complete(root):
        raise PrepareError(
            f"{corpus_dir} is not a finished corpus (no {MARKER}); run smx prepare again "
            "with the same --out to finish it"
        )
    path = manifest_path(root, "cuts", split)
    if not path.is_file():
        have = ", ".join(available_splits(root)) or "none"
        raise PrepareError(f"{corpus_dir} has no split '{split}' (it has: {have})")
    return CutSet.from_jsonl_lazy(path).with_recording_path_prefix(str(root))


def load_summary(corpus_dir: str | Path) -> dict[str, Any]:
    """The ``summary.json`` of a finished corpus (see :func:`write_corpus` for its fields).

    Arguments
    ---------
    corpus_dir : str or Path
        A corpus written by ``smx prepare``.

    Returns
    -------
    dict[str, Any]
        The summary.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_json(folder / "summary.json", summarise({}))
    >>> load_summary(folder)["total"]["utterances"]
    0
    """
    return json.loads((Path(corpus_dir) / "summary.json").read_text(encoding="utf-8"))


def format_summary(summary: dict[str, Any]) -> Any:
    """A rich Table of the summary: one row per split, classes in the last column.

    Arguments
    ---------
    summary : dict[str, Any]
        As :func:`write_corpus` returns it.

    Returns
    -------
    rich.table.Table
        Columns split, hours, utterances, speakers, classes; a last row for the total.

    Example
    -------
    >>> format_summary(summarise({})).row_count
    1
    """
    from rich.table import Table

    table = Table(title=f"corpus: {summary.get('corpus', '?')}")
    for col in ("split", "hours", "utterances", "speakers", "classes"):
        table.add_column(col, overflow="fold")
    rows = [*summary["splits"].items(), ("total", summary["total"])]
    for split, entry in rows:
        classes = "; ".join(f"{name}: {len(entry[name])}" for name in CLASS_FIELDS if name in entry)
        table.add_row(
            split,
            f"{entry['hours']:.3f}",
            str(entry["utterances"]),
            str(entry["speakers"]),
            classes,
        )
    return table
