"""Real corpora from a local or mounted folder: LibriSpeech, Libri-Light, a generic folder.

LibriSpeech and Libri-Light go through Lhotse's own recipes (``prepare_librispeech``,
``prepare_librilight``). Around them smx makes the input safe: every audio file is decoded
once and checked (:func:`smx.data.audio.check_audio`); files that need a repair (wrong rate,
stereo, NaN/inf samples, clipping) get a repaired 16-bit FLAC copy under
``<out>/repaired/``; files that cannot be used, transcript lines without audio, audio
without a transcript, duplicate ids and transcripts with characters outside
``data.alphabet`` are skipped with their reason in ``report.json``. The recipe then runs on
a staging tree of symbolic links holding only the usable items, and the manifests point at
the original files (absolute paths) or at the repaired copies (paths relative to the
corpus directory).

Every preparer is the same sequence of steps: check the inputs, claim the output folder
(:func:`smx.data.manifests.begin_prepare`), find the items and skip the unusable ones,
check their audio (:func:`verify_files`), build the manifests, and write them with the
report and summary (:func:`smx.data.manifests.write_corpus`).

Splits: LibriSpeech ``train-*`` parts form ``train``, ``dev-*`` form ``dev``, ``test-*``
form ``test`` (the part is kept in the supervision's custom field ``part``); Libri-Light is
all ``train`` (unlabelled), cut into voice-activity segments of at most
``data.max_duration`` seconds; a folder uses its top-level ``train``/``dev``/``test``
sub-folders when it has them, else everything is ``train``.

A folder's transcript file holds ``<id> <text>`` lines, TSV or CSV, or LJSpeech's
``metadata.csv`` (read by :mod:`smx.data.transcripts`, the format detected); each line
names its audio file by id, file name or relative path. A transcript file that cannot be
read stops the preparation before anything is written.

Example
-------
>>> librispeech_split("train-clean-100"), librispeech_split("dev-other"), safe_name("a/b c")
('train', 'dev', 'a_b_c')
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from smx.data.audio import audio_frames, check_audio, write_flac
from smx.data.problems import PrepareError, PrepareReport, progress_bar
from smx.data.text import normalise_text
from smx.data.transcripts import (
    ACCEPTED,
    SPEAKER_COLUMNS,
    SPEAKER_SOURCES,
    TRANSCRIPT_FORMATS,
    TranscriptFile,
    TranscriptLine,
    read_transcript_file,
)

if TYPE_CHECKING:
    from lhotse import CutSet, Recording

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3", ".opus", ".sph")
LIBRISPEECH_PARTS = (
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean-2",
    "train-clean-5",
)
LIBRILIGHT_PARTS = ("small", "medium", "large")
FOLDER_SPLITS = ("train", "dev", "test")

#: split name -> (recordings, supervisions), as :func:`smx.data.manifests.write_corpus` takes
Splits = dict[str, tuple[list[Any], list[Any]]]


def librispeech_split(part: str) -> str:
    """The split of a LibriSpeech part: its name up to the first dash (train, dev, test).

    Arguments
    ---------
    part : str
        A LibriSpeech part such as ``train-clean-100``.

    Returns
    -------
    str
        ``train``, ``dev`` or ``test``.

    Example
    -------
    >>> librispeech_split("test-other")
    'test'
    """
    return part.split("-", 1)[0]


def safe_name(item_id: str) -> str:
    """A file-name-safe form of an id (``/``, spaces and other symbols become ``_``).

    Arguments
    ---------
    item_id : str
        Any id.

    Returns
    -------
    str
        The id with every run of characters outside ``A-Za-z0-9._-`` replaced by ``_``.

    Example
    -------
    >>> safe_name("small/7/book/ch 1")
    'small_7_book_ch_1'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id)


def _require_dir(path: str | Path, what: str, hint: str) -> Path:
    """The resolved folder ``path``; :class:`PrepareError` naming ``what`` if it is missing."""
    folder = Path(path)
    if not folder.is_dir():
        raise PrepareError(f"the {what} folder {folder} does not exist; {hint}")
    return folder.resolve()


def _fingerprint(kind: str, corpus: Path, data_cfg: Any, **extra: Any) -> dict[str, Any]:
    """What determines a prepared corpus (a change starts the output folder over)."""
    return {
        "corpus": kind,
        "format": 1,
        "corpus_dir": str(corpus),
        "sample_rate": data_cfg.sample_rate,
        "alphabet": data_cfg.alphabet,
        "max_duration": data_cfg.max_duration,
        **extra,
    }


def _begin(out_dir: str | Path, fingerprint: dict[str, Any]) -> tuple[Path, PrepareReport]:
    """Claim the output folder for this preparation; return it and an empty report."""
    from smx.data.manifests import begin_prepare

    out = Path(out_dir)
    begin_prepare(out, fingerprint)
    return out, PrepareReport()


def _finish(
    out: Path, corpus: str, splits: Splits, report: PrepareReport, data_cfg: Any, **options: Any
) -> dict[str, Any]:
    """Write the manifests, report and summary of the corpus; return the summary."""
    from smx.data.manifests import write_corpus

    return write_corpus(out, corpus, splits, report, data_cfg.max_skip_fraction, **options)


# ----------------------------------------------------------------------------------------
# audio verification (in parallel worker processes)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one file: where its usable audio is, or why it is skipped.

    Arguments
    ---------
    key : str
        The item's key (its id).
    source : str or None
        The file to use: the original file (absolute path) or the repaired copy (relative
        to the corpus directory); None when skipped.
    num_samples : int
        Samples of the usable audio at the target rate (0 when skipped).
    repairs : tuple[str, ...]
        What the repaired copy changed, in words (empty when the original is used).
    reason : str or None
        Why the file is skipped, or None when it is usable.

    Example
    -------
    >>> Verdict("a", None, 0, (), "empty file (0 bytes)").reason
    'empty file (0 bytes)'
    """

    key: str
    source: str | None
    num_samples: int
    repairs: tuple[str, ...]
    reason: str | None


def _verify(job: tuple[str, str, str, str, int]) -> Verdict:
    """Check one file ``(key, path, out_dir, name, rate)``; write its repaired copy if needed."""
    key, path, out_dir, name, rate = job
    repaired_rel = f"repaired/{name}.flac"
    repaired = Path(out_dir) / repaired_rel
    check = check_audio(path, rate)
    if not check.ok:
        return Verdict(key, None, 0, (), check.reason)
    if not check.repairs:
        return Verdict(key, path, check.num_samples, (), None)
    if audio_frames(repaired, rate) != check.num_samples:  # a re-run keeps finished copies
        write_flac(repaired, check.samples, rate)
    return Verdict(key, repaired_rel, check.num_samples, check.repairs, None)


def verify_files(
    files: dict[str, Path], out_dir: Path, sampling_rate: int, workers: int = 0
) -> dict[str, Verdict]:
    """Check every file (key -> path) on all cores; write repaired copies to ``out/repaired``.

    Arguments
    ---------
    files : dict[str, Path]
        Item key -> audio path; the key also names the repaired copy.
    out_dir : Path
        The corpus directory.
    sampling_rate : int
        The target rate in Hz.
    workers : int
        Processes (0 = all cores; small jobs run in this process).

    Returns
    -------
    dict[str, Verdict]
        Item key -> what the check found.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> folder = Path(tempfile.mkdtemp())
    >>> sf.write(folder / "a.wav", np.full(800, 0.1), 8000)
    >>> (folder / "b.wav").touch()
    >>> found = verify_files({"a": folder / "a.wav", "b": folder / "b.wav"}, folder / "out", 16000)
    >>> found["a"].source, found["a"].num_samples, found["b"].reason
    ('repaired/a.flac', 1600, 'empty file (0 bytes)')
    """
    jobs = [
        (key, str(path), str(out_dir), safe_name(key), sampling_rate)
        for key, path in sorted(files.items())
    ]
    workers = workers or len(os.sched_getaffinity(0))
    verdicts: dict[str, Verdict] = {}
    with progress_bar("checking audio", len(jobs), "files") as advance:
        if workers <= 1 or len(jobs) < 32:
            results = map(_verify, jobs)
            for verdict in results:
                verdicts[verdict.key] = verdict
                advance(1)
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for verdict in pool.imap_unordered(_verify, jobs, chunksize=8):
                    verdicts[verdict.key] = verdict
                    advance(1)
    return verdicts


def _record_verdicts(
    verdicts: dict[str, Verdict], audio: dict[str, Path], report: PrepareReport
) -> dict[str, Verdict]:
    """Report every file as kept (with its repairs) or skipped; return the usable ones, sorted."""
    usable: dict[str, Verdict] = {}
    for key, verdict in sorted(verdicts.items()):
        if verdict.reason is not None or verdict.source is None:
            report.add_skip(key, str(audio[key]), verdict.reason or "unusable")
            continue
        report.add_kept(key, str(audio[key]), verdict.repairs)
        usable[key] = verdict
    return usable


def _link(target: Path, link: Path) -> None:
    """Make ``link`` a symbolic link to ``target`` (replacing any file there)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def _use(verdict: Verdict, out: Path) -> Path:
    """Absolute path of the audio to use for ``verdict``."""
    assert verdict.source is not None
    source = Path(verdict.source)
    return source if source.is_absolute() else out / source


def _with_source(rec: Recording, source: str | None) -> Recording:
    """``rec`` reading its audio from ``source`` instead of the staging tree's link."""
    return replace(rec, sources=[replace(rec.sources[0], source=source)])


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A fresh ``.staging`` folder for a recipe's input, removed once the corpus is written.

    A failed preparation leaves it in place; the next run starts it afresh.
    """
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    yield staging
    shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# transcripts


def _transcript_lines(path: Path) -> Iterator[tuple[str, str]]:
    """``(id, text)`` of every non-empty ``<id> <text>`` line of ``path``."""
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if raw.strip():
            item_id, _, text = raw.strip().partition(" ")
            yield item_id, text.strip()


def _normalise_transcripts(
    raw: Mapping[str, str], audio: dict[str, Path], alphabet: str, report: PrepareReport
) -> tuple[dict[str, Path], dict[str, str]]:
    """Normalise the transcript of every audio item; skip those empty or outside ``alphabet``.

    Returns the audio of the items kept and their normalised transcripts.
    """
    kept: dict[str, Path] = {}
    texts: dict[str, str] = {}
    for item_id in sorted(audio):
        text, outside = normalise_text(raw[item_id], alphabet)
        if outside or not text:
            why = f"characters outside data.alphabet: {outside}" if text else "empty transcript"
            report.add_skip(item_id, str(audio[item_id]), why)
        else:
            kept[item_id] = audio[item_id]
            texts[item_id] = text
    return kept, texts


# ----------------------------------------------------------------------------------------
# LibriSpeech


@dataclass
class _Line:
    """One LibriSpeech transcript line: its part, its speaker/chapter folder and its text."""

    part: str
    folder: Path
    text: str


def _librispeech_input(
    corpus_dir: str | Path, parts: Sequence[str] | None
) -> tuple[Path, list[str]]:
    """The LibriSpeech folder and the parts to prepare; :class:`PrepareError` if missing."""
    corpus = _require_dir(
        corpus_dir,
        "LibriSpeech",
        "pass the folder that holds the parts (e.g. /data/LibriSpeech with train-clean-100/)",
    )
    return corpus, _librispeech_parts(corpus, parts)


def _librispeech_parts(corpus: Path, parts: Sequence[str] | None) -> list[str]:
    """The parts to prepare: ``parts`` (each must be present), or every part present."""
    present = [p for p in LIBRISPEECH_PARTS if (corpus / p).is_dir()]
    if parts:
        missing = [p for p in parts if p not in present]
        if missing:
            raise PrepareError(
                f"{corpus} has no LibriSpeech part {', '.join(missing)} "
                f"(found: {', '.join(present) or 'none'})"
            )
        return list(parts)
    if not present:
        raise PrepareError(
            f"{corpus} holds no LibriSpeech part (dev-clean, train-clean-100, ...); pass the "
            "LibriSpeech folder itself, the one that contains the part folders"
        )
    return present


def _librispeech_lines(
    corpus: Path, parts: Sequence[str], report: PrepareReport
) -> dict[str, _Line]:
    """Every transcript line of the parts by utterance id; a repeated id is skipped."""
    lines: dict[str, _Line] = {}
    for part in parts:
        for trans in sorted((corpus / part).rglob("*.trans.txt")):
            for utt_id, text in _transcript_lines(trans):
                if utt_id in lines:
                    report.add_skip(utt_id, str(trans), "duplicate id (a later transcript line)")
                    continue
                lines[utt_id] = _Line(part, trans.parent, text)
    return lines


def _librispeech_audio(
    corpus: Path, parts: Sequence[str], lines: dict[str, _Line], report: PrepareReport
) -> dict[str, Path]:
    """The FLAC file of every transcript line; skips duplicates and unmatched files or lines."""
    audio: dict[str, Path] = {}
    for part in parts:
        for path in sorted((corpus / part).rglob("*.flac")):
            if path.stem in audio:
                report.add_skip(path.stem, str(path), f"duplicate id (also {audio[path.stem]})")
            elif path.stem not in lines:
                report.add_skip(path.stem, str(path), "no transcript line for this audio file")
            else:
                audio[path.stem] = path
    for utt_id in sorted(set(lines) - set(audio)):
        report.add_skip(utt_id, str(lines[utt_id].folder), "no audio file for transcript line")
    return audio


def _stage_librispeech(
    usable: dict[str, Verdict],
    lines: dict[str, _Line],
    texts: dict[str, str],
    corpus: Path,
    out: Path,
    staging: Path,
) -> list[str]:
    """Lay out the usable utterances and their transcripts as LibriSpeech under ``staging``.

    Returns the parts that kept at least one utterance, sorted.
    """
    by_folder: dict[tuple[str, Path], list[str]] = {}
    for utt_id, verdict in usable.items():
        line = lines[utt_id]
        rel = line.folder.relative_to(corpus / line.part)
        _link(_use(verdict, out), staging / line.part / rel / f"{utt_id}.flac")
        by_folder.setdefault((line.part, rel), []).append(utt_id)
    for (part, rel), ids in by_folder.items():
        trans_name = f"{'-'.join(rel.parts)}.trans.txt"
        body = "".join(f"{i} {texts[i]}\n" for i in ids)
        (staging / part / rel / trans_name).write_text(body, encoding="utf-8")
    return sorted({part for part, _ in by_folder})


def _librispeech_splits(
    staging: Path, parts: list[str], usable: dict[str, Verdict], texts: dict[str, str]
) -> Splits:
    """Run Lhotse's recipe on the staging tree; point its manifests back at the real audio."""
    from lhotse.recipes import prepare_librispeech as lhotse_librispeech

    splits: Splits = {}
    manifests = lhotse_librispeech(staging, dataset_parts=parts) if parts else {}
    for part in parts:
        recs, sups = splits.setdefault(librispeech_split(part), ([], []))
        for rec in manifests[part]["recordings"]:
            recs.append(_with_source(rec, usable[rec.id].source))
        for sup in manifests[part]["supervisions"]:
            sups.append(replace(sup, text=texts[sup.id], custom={"part": part}))
    return splits


def prepare_librispeech(
    corpus_dir: str | Path,
    out_dir: str | Path,
    data_cfg: Any,
    parts: Sequence[str] | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Prepare LibriSpeech (speaker/chapter folders, FLAC, ``<spk>-<chap>.trans.txt``).

    Arguments
    ---------
    corpus_dir : str or Path
        The ``LibriSpeech`` folder holding parts such as ``train-clean-100``.
    out_dir : str or Path
        The corpus directory to write (manifests, report, repaired audio).
    data_cfg : DataCfg
        The ``data`` section of the config.
    parts : Sequence[str] or None
        The parts to use (default: every part present).
    workers : int
        Processes for the audio checks (0 = all cores).

    Returns
    -------
    dict[str, Any]
        The summary of the train, dev and test splits, with the count of utterances per
        part (see :func:`smx.data.manifests.write_corpus`).

    Raises
    ------
    PrepareError
        The folder or a requested part is missing, or too much input was unusable.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> from smx.config import DataCfg
    >>> root = Path(tempfile.mkdtemp()) / "LibriSpeech"
    >>> chapter = root / "train-clean-5" / "84" / "121"
    >>> chapter.mkdir(parents=True)
    >>> for i in range(2):
    ...     sf.write(chapter / f"84-121-000{i}.flac", 0.1 * np.sin(np.arange(16000) / 3), 16000)
    >>> _ = (chapter / "84-121.trans.txt").write_text("84-121-0000 HELLO\\n84-121-0001 BYE\\n")
    >>> summary = prepare_librispeech(root, root.parent / "out", DataCfg())
    >>> summary["splits"]["train"]["utterances"], summary["splits"]["train"]["speakers"]
    (2, 1)
    """
    corpus, parts = _librispeech_input(corpus_dir, parts)
    fingerprint = _fingerprint("librispeech", corpus, data_cfg, parts=list(parts))
    out, report = _begin(out_dir, fingerprint)
    lines = _librispeech_lines(corpus, parts, report)
    audio = _librispeech_audio(corpus, parts, lines, report)
    raw = {utt_id: line.text for utt_id, line in lines.items()}
    audio, texts = _normalise_transcripts(raw, audio, data_cfg.alphabet, report)
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    with _staging(out) as staging:
        usable = _record_verdicts(verdicts, audio, report)
        kept_parts = _stage_librispeech(usable, lines, texts, corpus, out, staging)
        splits = _librispeech_splits(staging, kept_parts, usable, texts)
        return _finish(out, "librispeech", splits, report, data_cfg)


# ----------------------------------------------------------------------------------------
# Libri-Light


def _librilight_input(corpus_dir: str | Path) -> tuple[Path, list[str]]:
    """The Libri-Light folder and the parts it holds; :class:`PrepareError` if none."""
    corpus = _require_dir(
        corpus_dir, "Libri-Light", "pass the folder that holds small/, medium/ or large/"
    )
    parts = [p for p in LIBRILIGHT_PARTS if (corpus / p).is_dir()]
    if not parts:
        raise PrepareError(
            f"{corpus} holds no Libri-Light part (small, medium, large); pass the Libri-Light "
            "folder itself"
        )
    return corpus, parts


def _librilight_meta_problem(meta: Path) -> str | None:
    """Why the voice-activity ``.json`` beside an audio file cannot be used, or None."""
    if not meta.is_file():
        return "no voice-activity .json beside the audio file"
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        segments = info["voice_activity"]
        _ = info["speaker"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        return f"unreadable .json beside the audio file ({exc.__class__.__name__})"
    if not segments:
        return "no voice-activity segment in the .json"
    return None


def _librilight_audio(corpus: Path, parts: list[str], report: PrepareReport) -> dict[str, Path]:
    """Every FLAC file with a usable ``.json``, keyed ``<part>/<speaker>/<book>/<name>``."""
    audio: dict[str, Path] = {}
    for part in parts:
        for path in sorted((corpus / part).rglob("*.flac")):
            key = path.relative_to(corpus).with_suffix("").as_posix()
            problem = _librilight_meta_problem(path.with_suffix(".json"))
            if problem:
                report.add_skip(key, str(path), problem)
            else:
                audio[key] = path
    return audio


def _stage_librilight(
    usable: dict[str, Verdict], audio: dict[str, Path], out: Path, staging: Path
) -> None:
    """Link the usable files under ``staging`` in Libri-Light's layout."""
    for key, verdict in usable.items():
        target = _use(verdict, out)
        if verdict.repairs:  # the recipe reads the JSON beside the (resolved) audio file
            shutil.copyfile(audio[key].with_suffix(".json"), target.with_suffix(".json"))
        _link(target, staging / f"{key}.flac")


def _run_librilight_recipe(staging: Path, parts: list[str]) -> dict[str, Any]:
    """Lhotse's Libri-Light manifests of the parts that kept a file under ``staging``."""
    from lhotse.recipes import prepare_librilight as lhotse_librilight

    manifests_dir = staging / "_manifests"
    manifests_dir.mkdir(parents=True, exist_ok=True)
    kept_parts = [p for p in parts if (staging / p).is_dir()]
    for part in LIBRILIGHT_PARTS:  # the recipe skips parts whose manifests already exist
        if part not in kept_parts:
            for kind in ("recordings", "supervisions"):
                (manifests_dir / f"librilight_{kind}_{part}.jsonl.gz").touch()
    manifests = lhotse_librilight(staging, output_dir=manifests_dir) if kept_parts else {}
    return {part: manifests[part] for part in kept_parts}


def _librilight_items(
    manifests: dict[str, Any], usable: dict[str, Verdict]
) -> tuple[list[Any], list[Any]]:
    """Recordings and supervisions with file-name-safe ids, reading the real audio."""
    recs: list[Any] = []
    sups: list[Any] = []
    for part, manifest in manifests.items():
        for rec in manifest["recordings"]:
            recs.append(replace(_with_source(rec, usable[rec.id].source), id=safe_name(rec.id)))
        for sup in manifest["supervisions"]:
            new_rec = safe_name(sup.recording_id)
            sups.append(
                replace(sup, id=safe_name(sup.id), recording_id=new_rec, custom={"part": part})
            )
    return recs, sups


def _vad_windows(cuts: CutSet, max_duration: float) -> CutSet:
    """One cut per voice-activity segment, in windows of at most ``max_duration`` s."""
    from lhotse import CutSet

    pieces = cuts.trim_to_supervisions(keep_overlapping=False)
    windows = pieces.cut_into_windows(duration=max_duration)
    return CutSet.from_cuts(c for c in windows if c.duration > 0)


def prepare_librilight(
    corpus_dir: str | Path, out_dir: str | Path, data_cfg: Any, workers: int = 0
) -> dict[str, Any]:
    """Prepare Libri-Light (``small|medium|large/<speaker>/<book>/<file>.flac`` + ``.json``).

    The per-file JSON holds the speaker and the voice-activity segments; each segment
    becomes a cut (split into windows of at most ``data.max_duration`` s). All cuts are
    unlabelled training data.

    Arguments
    ---------
    corpus_dir : str or Path
        The Libri-Light folder holding ``small``, ``medium`` and/or ``large``.
    out_dir : str or Path
        The corpus directory to write.
    data_cfg : DataCfg
        The ``data`` section of the config.
    workers : int
        Processes for the audio checks (0 = all cores).

    Returns
    -------
    dict[str, Any]
        The summary of the one split, ``train``, its cuts being the voice-activity windows
        (see :func:`smx.data.manifests.write_corpus`).

    Raises
    ------
    PrepareError
        The folder holds no Libri-Light part, or too much input was unusable.

    Example
    -------
    >>> import json, tempfile, numpy as np, soundfile as sf
    >>> from smx.config import DataCfg
    >>> root = Path(tempfile.mkdtemp()) / "librilight"
    >>> book = root / "small" / "7" / "book"
    >>> book.mkdir(parents=True)
    >>> sf.write(book / "ch1.flac", 0.1 * np.sin(np.arange(48000) / 3), 16000)
    >>> vad = {"speaker": "7", "voice_activity": [[0.0, 1.0], [1.5, 3.0]]}
    >>> _ = (book / "ch1.json").write_text(json.dumps(vad))
    >>> summary = prepare_librilight(root, root.parent / "out", DataCfg())
    >>> from smx.data.manifests import load_cuts
    >>> sorted(c.duration for c in load_cuts(root.parent / "out", "train"))
    [1.0, 1.5]
    """
    corpus, parts = _librilight_input(corpus_dir)
    out, report = _begin(out_dir, _fingerprint("librilight", corpus, data_cfg, parts=parts))
    audio = _librilight_audio(corpus, parts, report)
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    with _staging(out) as staging:
        usable = _record_verdicts(verdicts, audio, report)
        _stage_librilight(usable, audio, out, staging)
        train = _librilight_items(_run_librilight_recipe(staging, parts), usable)
        windows = partial(_vad_windows, max_duration=data_cfg.max_duration)
        return _finish(out, "librilight", {"train": train}, report, data_cfg, cut_transform=windows)


# ----------------------------------------------------------------------------------------
# generic folder


def _folder_input(
    audio_dir: str | Path, transcripts: str | Path | None
) -> tuple[Path, Path | None]:
    """The audio folder and the transcript file (None: unlabelled); both must exist."""
    root = _require_dir(audio_dir, "audio", "pass the folder that holds the audio files")
    if transcripts is None:
        return root, None
    text_file = Path(transcripts)
    if not text_file.is_file():
        raise PrepareError(
            f"the transcript file {text_file} does not exist; pass a file of {ACCEPTED}, "
            "or leave --transcripts out for unlabelled audio"
        )
    return root, text_file.resolve()


def _folder_transcript_file(
    text_file: Path | None, transcript_format: str, speaker_from: str
) -> TranscriptFile | None:
    """The transcript file read (None: unlabelled), checked against ``speaker_from``."""
    for option, value, choices in (
        ("--speaker-from", speaker_from, SPEAKER_SOURCES),
        ("--format", transcript_format, TRANSCRIPT_FORMATS),
    ):
        if value not in choices:
            raise PrepareError(f"unknown {option} {value!r}; choose one of {', '.join(choices)}")
    table = read_transcript_file(text_file, transcript_format) if text_file else None
    if speaker_from == "column" and (table is None or not table.has_speakers):
        has_none = f"{text_file} has none" if text_file else "there is no transcript file"
        raise PrepareError(
            f"--speaker-from column needs a speaker column ({', '.join(SPEAKER_COLUMNS)}) "
            f"in the transcript file, but {has_none}"
        )
    return table


@dataclass(frozen=True)
class _AudioRef:
    """The audio file a transcript line names: its folders, its stem, its audio suffix.

    Example
    -------
    >>> ref = _audio_ref("wavs/LJ001-0001.wav", Path("/corpus"))
    >>> ref.item_id, ref.fits(Path("wavs/LJ001-0001.wav")), ref.fits(Path("LJ001-0001.flac"))
    ('wavs_LJ001-0001', True, False)
    """

    folders: tuple[str, ...]
    stem: str
    suffix: str | None

    @property
    def item_id(self) -> str:
        """The item's id: the folders and the stem joined by ``_``."""
        return "_".join((*self.folders, self.stem))

    def fits(self, rel: Path) -> bool:
        """Whether the file at ``rel`` (relative to the folder) is the one named.

        Its stem (and suffix, when named) must be equal, and the shorter of the two folder
        paths must end the longer one.
        """
        if rel.stem != self.stem or (self.suffix and rel.suffix.lower() != self.suffix):
            return False
        folders = rel.parts[:-1]
        common = min(len(folders), len(self.folders))
        return folders[len(folders) - common :] == self.folders[len(self.folders) - common :]


def _audio_ref(audio: str, root: Path) -> _AudioRef:
    """What ``audio`` (an id, a file name, a relative or absolute path) names below ``root``."""
    path = PurePosixPath(audio.strip().replace("\\", "/"))
    if path.is_absolute() and path.is_relative_to(root.as_posix()):
        path = path.relative_to(root.as_posix())
    parts = [part for part in path.parts if part not in ("/", ".")] or [audio]
    name = parts[-1]
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return _AudioRef(tuple(parts[:-1]), name[: -len(suffix)], suffix)
    return _AudioRef(tuple(parts[:-1]), name, None)


def read_transcripts(
    transcripts: TranscriptFile, root: Path, report: PrepareReport
) -> dict[str, TranscriptLine]:
    """The lines of a transcript file by item id; a repeated id is skipped.

    A line names its audio file by id (the name without suffix), by name or by a path
    relative to the folder (:class:`_AudioRef`). Its item id is what it names without the
    audio suffix, folders joined by ``_`` (``LJ001-0001`` and ``LJ001-0001.wav`` ->
    ``LJ001-0001``; ``alice/1.wav`` -> ``alice_1``).

    Arguments
    ---------
    transcripts : TranscriptFile
        The file read by :func:`smx.data.transcripts.read_transcript_file`.
    root : Path
        The audio folder (absolute paths below it count from it).
    report : PrepareReport
        Receives a skip for every repeated id.

    Returns
    -------
    dict[str, TranscriptLine]
        Item id -> its first line.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "text"
    >>> _ = path.write_text("u1 hello there\\nu2 bye\\nu1.wav again\\n")
    >>> report = PrepareReport()
    >>> lines = read_transcripts(read_transcript_file(path), path.parent, report)
    >>> {i: line.text for i, line in lines.items()}, report.skipped[0]["reason"]
    ({'u1': 'hello there', 'u2': 'bye'}, 'duplicate id in the transcript file (line 3)')
    """
    lines: dict[str, TranscriptLine] = {}
    for line in transcripts.lines:
        item_id = _audio_ref(line.audio, root).item_id
        if item_id in lines:
            why = f"duplicate id in the transcript file (line {line.line})"
            report.add_skip(item_id, str(transcripts.path), why)
            continue
        lines[item_id] = line
    return lines


@dataclass(frozen=True)
class _Place:
    """Where a folder's audio file belongs: its split and its speaker (its folder's name)."""

    split: str
    speaker: str | None


def _audio_files(root: Path, out: Path) -> list[Path]:
    """Audio files below ``root``, sorted, leaving out the output folder if it lies inside."""
    out_resolved = out.resolve()
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    return [p for p in found if p.is_file() and out_resolved not in p.resolve().parents]


def _folder_files(root: Path, out: Path, report: PrepareReport) -> dict[Path, _Place | None]:
    """Every audio file and where it belongs; None (reported as skipped) outside the splits."""
    has_splits = any((root / s).is_dir() for s in FOLDER_SPLITS)
    files: dict[Path, _Place | None] = {}
    for path in _audio_files(root, out):
        rel = path.relative_to(root)
        if has_splits and rel.parts[0] not in FOLDER_SPLITS:
            report.add_skip(path.stem, str(path), "outside the train/dev/test folders")
            files[path] = None
            continue
        inner = rel.parts[1:-1] if has_splits else rel.parts[:-1]
        files[path] = _Place(rel.parts[0] if has_splits else "train", inner[-1] if inner else None)
    return files


def _item_place(place: _Place, line: TranscriptLine | None, speaker_from: str) -> _Place:
    """``place`` with the speaker that ``speaker_from`` chooses (column, folder or none)."""
    column = line.speaker if line else None
    speaker = {
        "auto": column or place.speaker,
        "column": column,
        "parent": place.speaker,
        "none": None,
    }[speaker_from]
    return replace(place, speaker=speaker)


def _unlabelled_audio(
    files: dict[Path, _Place | None], speaker_from: str, report: PrepareReport
) -> tuple[dict[str, Path], dict[str, _Place]]:
    """Every file in the splits by id (its stem) and where it belongs; repeats are skipped."""
    audio: dict[str, Path] = {}
    where: dict[str, _Place] = {}
    for path, place in files.items():
        if place is None:
            continue
        if path.stem in audio:
            report.add_skip(path.stem, str(path), f"duplicate id (also {audio[path.stem]})")
            continue
        audio[path.stem] = path
        where[path.stem] = _item_place(place, None, speaker_from)
    return audio, where


def _labelled_audio(
    root: Path,
    files: dict[Path, _Place | None],
    transcripts: TranscriptFile,
    speaker_from: str,
    report: PrepareReport,
) -> tuple[dict[str, Path], dict[str, _Place], dict[str, str]]:
    """The audio file of every transcript line, where it belongs, and its raw text.

    A line names its file by id, name or relative path (:class:`_AudioRef`); when several
    files fit, the first in path order is used and the others are skipped as duplicates.
    Lines without audio and files without a line are reported as skipped.
    """
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path)
    audio: dict[str, Path] = {}
    where: dict[str, _Place] = {}
    owner: dict[Path, str] = {}
    also: dict[Path, str] = {}  # a further fitting file of an item -> the item
    lines = read_transcripts(transcripts, root, report)
    for item_id, line in lines.items():
        ref = _audio_ref(line.audio, root)
        found = [p for p in by_stem.get(ref.stem, []) if ref.fits(p.relative_to(root))]
        free = [p for p in found if files[p] is not None and p not in owner]
        taken = [owner[p] for p in found if p in owner]
        if not free:
            if found and not taken:
                continue  # reported: outside the train/dev/test folders
            why = "no audio file for transcript line"
            if taken:
                why = f"its audio file is already used by the transcript line of {taken[0]}"
            report.add_skip(item_id, str(transcripts.path), why)
            continue
        first, place = free[0], files[free[0]]
        assert place is not None
        owner[first] = item_id
        also.update((p, item_id) for p in free[1:] if p not in also)
        audio[item_id] = first
        where[item_id] = _item_place(place, line, speaker_from)
    for path, place in files.items():
        if place is None or path in owner:
            continue
        if path in also:
            report.add_skip(also[path], str(path), f"duplicate id (also {audio[also[path]]})")
        else:
            report.add_skip(path.stem, str(path), "no transcript line for this audio file")
    return audio, where, {item_id: line.text for item_id, line in lines.items()}


def _folder_fingerprint(
    root: Path, data_cfg: Any, table: TranscriptFile | None, speaker_from: str
) -> dict[str, Any]:
    """What determines a prepared folder: its files, the transcripts and how they were read."""
    read_as = {"transcripts": str(table.path), "transcript_format": table.format} if table else {}
    return _fingerprint("folder", root, data_cfg, speaker_from=speaker_from, **read_as)


def _folder_items(
    root: Path,
    out: Path,
    table: TranscriptFile | None,
    alphabet: str,
    speaker_from: str,
    report: PrepareReport,
) -> tuple[dict[str, Path], dict[str, _Place], Mapping[str, str | None]]:
    """The audio of every item kept, where it belongs and its normalised transcript.

    Unlabelled audio (no transcript file) keeps every file, with None for its transcript.
    """
    files = _folder_files(root, out, report)
    if table is None:
        audio, where = _unlabelled_audio(files, speaker_from, report)
        return audio, where, dict.fromkeys(audio)
    audio, where, raw = _labelled_audio(root, files, table, speaker_from, report)
    audio, texts = _normalise_transcripts(raw, audio, alphabet, report)
    return audio, where, texts


def _folder_splits(
    usable: dict[str, Verdict],
    where: dict[str, _Place],
    texts: Mapping[str, str | None],
    rate: int,
) -> Splits:
    """One recording and one whole-file supervision per usable file, grouped by split."""
    from lhotse import Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    splits: Splits = {}
    for item_id, verdict in usable.items():
        duration = verdict.num_samples / rate
        source = AudioSource(type="file", channels=[0], source=verdict.source)
        recs, sups = splits.setdefault(where[item_id].split, ([], []))
        recs.append(Recording(item_id, [source], rate, verdict.num_samples, duration))
        sups.append(
            SupervisionSegment(
                id=item_id,
                recording_id=item_id,
                start=0.0,
                duration=duration,
                channel=0,
                text=texts[item_id],
                speaker=where[item_id].speaker,
            )
        )
    return splits


def prepare_folder(
    audio_dir: str | Path,
    out_dir: str | Path,
    data_cfg: Any,
    transcripts: str | Path | None = None,
    workers: int = 0,
    transcript_format: str = "auto",
    speaker_from: str = "auto",
) -> dict[str, Any]:
    """Prepare a folder of audio files with an optional transcript file.

    Top-level ``train``/``dev``/``test`` folders become splits (else all is ``train``). Item
    ids: :func:`read_transcripts` (unlabelled: the file name without suffix).

    Arguments
    ---------
    audio_dir : str or Path
        The folder; audio files (``.flac .wav .ogg .mp3 .opus .sph``) anywhere below.
    out_dir : str or Path
        The corpus directory to write.
    data_cfg : DataCfg
        The ``data`` section of the config.
    transcripts : str, Path or None
        ``<id> <text>`` lines, TSV, CSV or LJSpeech's ``metadata.csv``
        (:mod:`smx.data.transcripts`); None prepares unlabelled audio (for pre-training).
    workers : int
        Processes for the audio checks (0 = all cores).
    transcript_format : str
        ``auto`` (detected), ``lines``, ``tsv``, ``csv`` or ``ljspeech``.
    speaker_from : str
        ``auto`` (a speaker column, else as ``parent``), ``column``, ``parent`` or ``none``.

    Returns
    -------
    dict[str, Any]
        The summary of every split (see :func:`smx.data.manifests.write_corpus`).

    Raises
    ------
    PrepareError
        Missing input, an unreadable transcript file (nothing written) or too many skips.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf; from smx.config import DataCfg
    >>> root = Path(tempfile.mkdtemp())
    >>> sf.write(root / "u1.wav", 0.1 * np.sin(np.arange(16000) / 3), 16000)
    >>> _ = (root / "list.tsv").write_text("u1.wav\\tHello, World!\\nu2.wav\\tno audio\\n")
    >>> summary = prepare_folder(root, root / "out", DataCfg(max_skip_fraction=0.5), root / "list.tsv")
    >>> summary["total"], summary["skipped"]
    ({'hours': 0.0003, 'utterances': 1, 'speakers': 0}, 1)
    """
    root, text_file = _folder_input(audio_dir, transcripts)
    table = _folder_transcript_file(text_file, transcript_format, speaker_from)
    out, report = _begin(out_dir, _folder_fingerprint(root, data_cfg, table, speaker_from))
    audio, where, texts = _folder_items(root, out, table, data_cfg.alphabet, speaker_from, report)
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    usable = _record_verdicts(verdicts, audio, report)
    splits = _folder_splits(usable, where, texts, data_cfg.sample_rate)
    return _finish(out, "folder", splits, report, data_cfg)


PREPARERS: dict[str, Callable[..., dict[str, Any]]] = {
    "librispeech": prepare_librispeech,
    "librilight": prepare_librilight,
    "folder": prepare_folder,
}
