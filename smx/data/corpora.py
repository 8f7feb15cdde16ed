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

Splits: LibriSpeech ``train-*`` parts form ``train``, ``dev-*`` form ``dev``, ``test-*``
form ``test`` (the part is kept in the supervision's custom field ``part``); Libri-Light is
all ``train`` (unlabelled), cut into voice-activity segments of at most
``data.max_duration`` seconds; a folder uses its top-level ``train``/``dev``/``test``
sub-folders when it has them, else everything is ``train``.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from smx.data.audio import audio_frames, check_audio, write_flac
from smx.data.problems import PrepareError, PrepareReport, progress_bar
from smx.data.text import normalise_text

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


def librispeech_split(part: str) -> str:
    """The split of a LibriSpeech part: its name up to the first dash (train, dev, test).

    Example: the module docstring.
    """
    return part.split("-", 1)[0]


def safe_name(item_id: str) -> str:
    """A file-name-safe form of an id (``/`` and spaces become ``_``).

    Example: the module docstring.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id)


def _require_dir(path: str | Path, what: str, hint: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise PrepareError(f"the {what} folder {folder} does not exist; {hint}")
    return folder.resolve()


# ----------------------------------------------------------------------------------------
# audio verification (in parallel worker processes)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one file: where its usable audio is, or why it is skipped.

    ``source`` is the original file (absolute path) or the repaired copy (relative to the
    corpus directory); None when skipped, with ``reason`` saying why.
    """

    key: str
    source: str | None  # the file to use: original (absolute) or repaired copy (relative)
    num_samples: int
    repairs: tuple[str, ...]
    reason: str | None


def _verify(job: tuple[str, str, str, str, int]) -> Verdict:
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
    files: item key -> audio path; the key also names the repaired copy.
    out_dir: the corpus directory.
    sampling_rate: the target rate.
    workers: processes (0 = all cores; small jobs run in this process).

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


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def _use(verdict: Verdict, out: Path) -> Path:
    """Absolute path of the audio to use for ``verdict``."""
    assert verdict.source is not None
    source = Path(verdict.source)
    return source if source.is_absolute() else out / source


# ----------------------------------------------------------------------------------------
# LibriSpeech


@dataclass
class _Line:
    part: str
    folder: Path  # speaker/chapter folder of the transcript
    text: str


def _librispeech_parts(corpus: Path, parts: Sequence[str] | None) -> list[str]:
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
    corpus_dir: the ``LibriSpeech`` folder holding parts such as ``train-clean-100``.
    out_dir: the corpus directory to write (manifests, report, repaired audio).
    data_cfg: the ``data`` section of the config.
    parts: the parts to use (default: every part present).
    workers: processes for the audio checks (0 = all cores).

    Returns the summary (see :func:`smx.data.manifests.write_corpus`).

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
    corpus = _require_dir(
        corpus_dir,
        "LibriSpeech",
        "pass the folder that holds the parts (e.g. /data/LibriSpeech with train-clean-100/)",
    )
    parts = _librispeech_parts(corpus, parts)
    from lhotse.recipes import prepare_librispeech as lhotse_librispeech

    from smx.data.manifests import begin_prepare, write_corpus

    out = Path(out_dir)
    begin_prepare(out, _fingerprint("librispeech", corpus, data_cfg, parts=list(parts)))
    report = PrepareReport()
    lines: dict[str, _Line] = {}
    for part in parts:
        for trans in sorted((corpus / part).rglob("*.trans.txt")):
            for raw in trans.read_text(encoding="utf-8", errors="replace").splitlines():
                if not raw.strip():
                    continue
                utt_id, _, text = raw.strip().partition(" ")
                if utt_id in lines:
                    report.add_skip(utt_id, str(trans), "duplicate id (a later transcript line)")
                    continue
                lines[utt_id] = _Line(part, trans.parent, text.strip())
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
    texts: dict[str, str] = {}
    for utt_id in sorted(audio):
        text, outside = normalise_text(lines[utt_id].text, data_cfg.alphabet)
        if outside or not text:
            why = f"characters outside data.alphabet: {outside}" if text else "empty transcript"
            report.add_skip(utt_id, str(audio.pop(utt_id)), why)
        else:
            texts[utt_id] = text
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    by_folder: dict[tuple[str, Path], list[str]] = {}
    for utt_id, verdict in sorted(verdicts.items()):
        if verdict.reason is not None:
            report.add_skip(utt_id, str(audio[utt_id]), verdict.reason)
            continue
        report.add_kept(utt_id, str(audio[utt_id]), verdict.repairs)
        line = lines[utt_id]
        rel = line.folder.relative_to(corpus / line.part)
        _link(_use(verdict, out), staging / line.part / rel / f"{utt_id}.flac")
        by_folder.setdefault((line.part, rel), []).append(utt_id)
    for (part, rel), ids in by_folder.items():
        trans_name = f"{'-'.join(rel.parts)}.trans.txt"
        body = "".join(f"{i} {texts[i]}\n" for i in ids)
        (staging / part / rel / trans_name).write_text(body, encoding="utf-8")
    splits: dict[str, tuple[list[Any], list[Any]]] = {}
    kept_parts = sorted({part for part, _ in by_folder})
    manifests = lhotse_librispeech(staging, dataset_parts=kept_parts) if kept_parts else {}
    for part in kept_parts:
        recs, sups = splits.setdefault(librispeech_split(part), ([], []))
        for rec in manifests[part]["recordings"]:
            source = verdicts[rec.id].source
            recs.append(replace(rec, sources=[replace(rec.sources[0], source=source)]))
        for sup in manifests[part]["supervisions"]:
            sups.append(replace(sup, text=texts[sup.id], custom={"part": part}))
    summary = write_corpus(out, "librispeech", splits, report, data_cfg.max_skip_fraction)
    shutil.rmtree(staging, ignore_errors=True)
    return summary


# ----------------------------------------------------------------------------------------
# Libri-Light


def prepare_librilight(
    corpus_dir: str | Path, out_dir: str | Path, data_cfg: Any, workers: int = 0
) -> dict[str, Any]:
    """Prepare Libri-Light (``small|medium|large/<speaker>/<book>/<file>.flac`` + ``.json``).

    The per-file JSON holds the speaker and the voice-activity segments; each segment
    becomes a cut (split into windows of at most ``data.max_duration`` s). All cuts are
    unlabelled training data.

    Arguments
    ---------
    corpus_dir: the Libri-Light folder holding ``small``, ``medium`` and/or ``large``.
    out_dir: the corpus directory to write.
    data_cfg: the ``data`` section of the config.
    workers: processes for the audio checks (0 = all cores).

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
    corpus = _require_dir(
        corpus_dir,
        "Libri-Light",
        "pass the folder that holds small/, medium/ or large/",
    )
    parts = [p for p in LIBRILIGHT_PARTS if (corpus / p).is_dir()]
    if not parts:
        raise PrepareError(
            f"{corpus} holds no Libri-Light part (small, medium, large); pass the Libri-Light "
            "folder itself"
        )
    from lhotse import CutSet
    from lhotse.recipes import prepare_librilight as lhotse_librilight

    from smx.data.manifests import begin_prepare, write_corpus

    out = Path(out_dir)
    begin_prepare(out, _fingerprint("librilight", corpus, data_cfg, parts=parts))
    report = PrepareReport()
    audio: dict[str, Path] = {}
    for part in parts:
        for path in sorted((corpus / part).rglob("*.flac")):
            key = path.relative_to(corpus).with_suffix("").as_posix()
            meta = path.with_suffix(".json")
            problem = _librilight_meta_problem(meta)
            if problem:
                report.add_skip(key, str(path), problem)
            else:
                audio[key] = path
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    for key, verdict in sorted(verdicts.items()):
        if verdict.reason is not None:
            report.add_skip(key, str(audio[key]), verdict.reason)
            continue
        report.add_kept(key, str(audio[key]), verdict.repairs)
        target = _use(verdict, out)
        if verdict.repairs:  # the recipe reads the JSON beside the (resolved) audio file
            shutil.copyfile(audio[key].with_suffix(".json"), target.with_suffix(".json"))
        _link(target, staging / f"{key}.flac")
    manifests_dir = staging / "_manifests"
    manifests_dir.mkdir(parents=True, exist_ok=True)
    kept_parts = [p for p in parts if (staging / p).is_dir()]
    for part in LIBRILIGHT_PARTS:  # the recipe skips parts whose manifests already exist
        if part not in kept_parts:
            for kind in ("recordings", "supervisions"):
                (manifests_dir / f"librilight_{kind}_{part}.jsonl.gz").touch()
    manifests = lhotse_librilight(staging, output_dir=manifests_dir) if kept_parts else {}
    recs: list[Any] = []
    sups: list[Any] = []
    for part in kept_parts:
        for rec in manifests[part]["recordings"]:
            source = verdicts[rec.id].source
            new_id = safe_name(rec.id)
            recs.append(replace(rec, id=new_id, sources=[replace(rec.sources[0], source=source)]))
        for sup in manifests[part]["supervisions"]:
            new_rec = safe_name(sup.recording_id)
            sups.append(
                replace(sup, id=safe_name(sup.id), recording_id=new_rec, custom={"part": part})
            )
    max_duration = data_cfg.max_duration

    def segments(cuts: CutSet) -> CutSet:
        pieces = cuts.trim_to_supervisions(keep_overlapping=False)
        return pieces.cut_into_windows(duration=max_duration)

    summary = write_corpus(
        out,
        "librilight",
        {"train": (recs, sups)},
        report,
        data_cfg.max_skip_fraction,
        cut_transform=lambda cuts: CutSet.from_cuts(c for c in segments(cuts) if c.duration > 0),
    )
    shutil.rmtree(staging, ignore_errors=True)
    return summary


def _librilight_meta_problem(meta: Path) -> str | None:
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


# ----------------------------------------------------------------------------------------
# generic folder


def read_transcripts(path: Path, report: PrepareReport) -> dict[str, str]:
    """Read ``<id> <text>`` lines (Kaldi ``text`` style); duplicate ids are skipped.

    Arguments
    ---------
    path: the transcript file.
    report: receives a skip for every repeated id.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "text"
    >>> _ = path.write_text("u1 hello there\\nu2 bye\\nu1 again\\n")
    >>> report = PrepareReport()
    >>> read_transcripts(path, report), len(report.skipped)
    ({'u1': 'hello there', 'u2': 'bye'}, 1)
    """
    texts: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not raw.strip():
            continue
        item_id, _, text = raw.strip().partition(" ")
        if item_id in texts:
            report.add_skip(item_id, str(path), "duplicate id in the transcript file")
            continue
        texts[item_id] = text.strip()
    return texts


def prepare_folder(
    audio_dir: str | Path,
    out_dir: str | Path,
    data_cfg: Any,
    transcripts: str | Path | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Prepare a folder of audio files with an optional transcript file.

    Arguments
    ---------
    audio_dir: the folder; audio files (``.flac .wav .ogg .mp3 .opus .sph``) anywhere below.
        The id of a file is its name without suffix; its speaker is the name of its folder
        (none for files directly in the split's root). Top-level ``train``, ``dev``,
        ``test`` folders become splits; otherwise everything is ``train``.
    out_dir: the corpus directory to write.
    data_cfg: the ``data`` section of the config.
    transcripts: a file of ``<id> <text>`` lines; files without a line are skipped. None
        prepares unlabelled audio (for pre-training).
    workers: processes for the audio checks (0 = all cores).

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> from smx.config import DataCfg
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "alice").mkdir()
    >>> sf.write(root / "alice" / "u1.wav", 0.1 * np.sin(np.arange(16000) / 3), 16000)
    >>> sf.write(root / "alice" / "u2.wav", np.zeros((0, 2)), 16000)  # zero-length: skipped
    >>> _ = (root / "text").write_text("u1 Hello, World!\\nu2 nothing\\n")
    >>> cfg = DataCfg(max_skip_fraction=0.5)
    >>> summary = prepare_folder(root, root / "out", cfg, root / "text")
    >>> summary["total"], summary["skipped"]
    ({'hours': 0.0003, 'utterances': 1, 'speakers': 1}, 1)
    """
    root = _require_dir(audio_dir, "audio", "pass the folder that holds the audio files")
    text_file = None
    if transcripts is not None:
        text_file = Path(transcripts)
        if not text_file.is_file():
            raise PrepareError(
                f"the transcript file {text_file} does not exist; pass a file of "
                "'<id> <text>' lines, or leave --transcripts out for unlabelled audio"
            )
        text_file = text_file.resolve()
    from lhotse import Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    from smx.data.manifests import begin_prepare, write_corpus

    out = Path(out_dir)
    begin_prepare(
        out,
        _fingerprint("folder", root, data_cfg, transcripts=str(text_file) if text_file else None),
    )
    report = PrepareReport()
    texts = read_transcripts(text_file, report) if text_file else None
    has_splits = any((root / s).is_dir() for s in FOLDER_SPLITS)
    audio: dict[str, Path] = {}
    where: dict[str, tuple[str, str | None]] = {}  # id -> (split, speaker)
    out_resolved = out.resolve()
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        if not path.is_file() or out_resolved in path.resolve().parents:
            continue
        rel = path.relative_to(root)
        split = rel.parts[0] if has_splits and rel.parts[0] in FOLDER_SPLITS else "train"
        if has_splits and rel.parts[0] not in FOLDER_SPLITS:
            report.add_skip(path.stem, str(path), "outside the train/dev/test folders")
            continue
        inner = rel.parts[1:-1] if has_splits else rel.parts[:-1]
        item_id = path.stem
        if item_id in audio:
            report.add_skip(item_id, str(path), f"duplicate id (also {audio[item_id]})")
            continue
        if texts is not None and item_id not in texts:
            report.add_skip(item_id, str(path), "no transcript line for this audio file")
            continue
        audio[item_id] = path
        where[item_id] = (split, inner[-1] if inner else None)
    if texts is not None:
        for item_id in sorted(set(texts) - set(audio) - {s["id"] for s in report.skipped}):
            report.add_skip(item_id, str(text_file), "no audio file for transcript line")
    clean: dict[str, str | None] = {}
    for item_id in sorted(audio):
        if texts is None:
            clean[item_id] = None
            continue
        text, outside = normalise_text(texts[item_id], data_cfg.alphabet)
        if outside or not text:
            why = f"characters outside data.alphabet: {outside}" if text else "empty transcript"
            report.add_skip(item_id, str(audio.pop(item_id)), why)
        else:
            clean[item_id] = text
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    rate = data_cfg.sample_rate
    splits: dict[str, tuple[list[Any], list[Any]]] = {}
    for item_id, verdict in sorted(verdicts.items()):
        if verdict.reason is not None or verdict.source is None:
            report.add_skip(item_id, str(audio[item_id]), verdict.reason or "unusable")
            continue
        report.add_kept(item_id, str(audio[item_id]), verdict.repairs)
        split, speaker = where[item_id]
        duration = verdict.num_samples / rate
        source = AudioSource(type="file", channels=[0], source=verdict.source)
        recs, sups = splits.setdefault(split, ([], []))
        recs.append(Recording(item_id, [source], rate, verdict.num_samples, duration))
        sups.append(
            SupervisionSegment(
                id=item_id,
                recording_id=item_id,
                start=0.0,
                duration=duration,
                channel=0,
                text=clean[item_id],
                speaker=speaker,
            )
        )
    return write_corpus(out, "folder", splits, report, data_cfg.max_skip_fraction)


def _fingerprint(kind: str, corpus: Path, data_cfg: Any, **extra: Any) -> dict[str, Any]:
    return {
        "corpus": kind,
        "format": 1,
        "corpus_dir": str(corpus),
        "sample_rate": data_cfg.sample_rate,
        "alphabet": data_cfg.alphabet,
        "max_duration": data_cfg.max_duration,
        **extra,
    }


PREPARERS: dict[str, Callable[..., dict[str, Any]]] = {
    "librispeech": prepare_librispeech,
    "librilight": prepare_librilight,
    "folder": prepare_folder,
}
