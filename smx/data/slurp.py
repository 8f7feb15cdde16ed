"""SLURP for intent classification (Lhotse 1.33 has no SLURP recipe).

Layout (the SLURP repository with its audio archives unpacked under ``audio/``)::

    DIR/dataset/slurp/train.jsonl, devel.jsonl, test.jsonl   one JSON object a line
    DIR/audio/slurp_real/audio-<n>[-headset].flac
    DIR/dataset/slurp/train_synthetic.jsonl + DIR/audio/slurp_synth/   (only with synthetic)

A line holds ``slurp_id``, ``sentence``, ``scenario``, ``action`` and ``recordings``, a list
of ``{"file": "audio-....flac", ...}``; every recording is one item, its id the file name
without suffix. Labels: ``custom["intent"]`` = ``<scenario>_<action>`` (with ``scenario``,
``action``, ``slurp_id`` and ``part``, the audio folder, beside it); the text is the
sentence (:func:`smx.data.mp3s.transcript`). Splits as published: ``train`` (with the
synthetic part when asked), ``dev`` (``devel``), ``test``.

A missing split file or audio folder, or a line that is not such an object, stops the
preparation before anything is written; a recording whose file is missing, unusable or
named twice is skipped and listed in ``report.json``.

Example
-------
>>> entry = {"slurp_id": 7, "sentence": "wake me up", "scenario": "alarm", "action": "set",
...          "recordings": [{"file": "audio-1.flac"}, {"file": "audio-1-headset.flac"}]}
>>> [(r.item_id, r.intent) for r in slurp_recordings(entry, "train", "slurp_real", "f:1")]
[('audio-1', 'alarm_set'), ('audio-1-headset', 'alarm_set')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from smx.data.corpora import Splits, Verdict, _fingerprint, _require_dir, verify_files
from smx.data.manifests import begin_prepare
from smx.data.mp3s import record_verdicts, transcript, whole_file_item, write_labelled_corpus
from smx.data.problems import PrepareError, PrepareReport

#: split file -> split
SLURP_SPLITS = {"train": "train", "devel": "dev", "test": "test"}
SYNTHETIC_SPLIT = "train_synthetic"
SLURP_FIELDS = ("slurp_id", "sentence", "scenario", "action", "recordings")


@dataclass(frozen=True)
class SlurpRecording:
    """One recording of a SLURP line: its id, file name, split, audio part and labels."""

    item_id: str
    file: str
    split: str
    part: str
    where: str
    slurp_id: Any
    sentence: str
    scenario: str
    action: str

    @property
    def intent(self) -> str:
        """``<scenario>_<action>``."""
        return f"{self.scenario}_{self.action}"


@dataclass(frozen=True)
class SlurpPart:
    """A split file, the split it fills and the audio folder its recordings are in."""

    lines: Path
    split: str
    audio: Path


def _slurp_parts(corpus_dir: str | Path, synthetic: bool) -> tuple[Path, list[SlurpPart]]:
    """The SLURP folder and its split files with their audio folders; all must exist."""
    root = _require_dir(
        corpus_dir, "SLURP", "pass the folder that holds dataset/slurp/ and audio/slurp_real/"
    )
    names = {**SLURP_SPLITS, **({SYNTHETIC_SPLIT: "train"} if synthetic else {})}
    parts = []
    for name, split in names.items():
        lines = root / "dataset" / "slurp" / f"{name}.jsonl"
        audio = root / "audio" / ("slurp_synth" if name == SYNTHETIC_SPLIT else "slurp_real")
        if not lines.is_file():
            raise PrepareError(
                f"the SLURP split file {lines} does not exist; pass the SLURP folder (a "
                "clone of its repository, which holds dataset/slurp/*.jsonl)"
            )
        if not audio.is_dir():
            archive = audio.name + ".tar.gz"
            raise PrepareError(
                f"the SLURP audio folder {audio} does not exist; unpack {archive} into "
                f"{audio.parent}"
            )
        parts.append(SlurpPart(lines, split, audio))
    return root, parts


def slurp_recordings(entry: Any, split: str, part: str, where: str) -> list[SlurpRecording]:
    """The recordings of one SLURP line; :class:`PrepareError` naming ``where`` if malformed.

    Example: the module docstring.
    """
    if not isinstance(entry, dict):
        raise PrepareError(f"{where}: a SLURP line must be a JSON object")
    for name in SLURP_FIELDS:
        if name not in entry:
            raise PrepareError(f"{where}: the SLURP entry has no '{name}' field")
    files = entry["recordings"]
    if not isinstance(files, list) or not all(
        isinstance(r, dict) and isinstance(r.get("file"), str) and r["file"] for r in files
    ):
        raise PrepareError(f"{where}: 'recordings' must be a list of {{\"file\": ...}} objects")
    return [
        SlurpRecording(
            item_id=PurePosixPath(r["file"]).stem,
            file=r["file"],
            split=split,
            part=part,
            where=where,
            slurp_id=entry["slurp_id"],
            sentence=str(entry["sentence"]),
            scenario=str(entry["scenario"]),
            action=str(entry["action"]),
        )
        for r in files
    ]


def read_slurp_part(part: SlurpPart) -> list[SlurpRecording]:
    """Every recording named by a split file, in line order.

    Raises
    ------
    PrepareError
        A line is not JSON or not a SLURP entry (the message names the file and line).
    """
    found = []
    text = part.lines.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{part.lines}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PrepareError(f"{where}: not a JSON object ({exc.msg})") from None
        found.extend(slurp_recordings(entry, part.split, part.audio.name, where))
    return found


def _slurp_items(
    parts: list[SlurpPart], report: PrepareReport
) -> tuple[dict[str, SlurpRecording], dict[str, Path]]:
    """Every recording with its audio file; repeated ids and missing files are skipped."""
    items: dict[str, SlurpRecording] = {}
    audio: dict[str, Path] = {}
    for part in parts:
        for rec in read_slurp_part(part):
            path = part.audio / rec.file
            if rec.item_id in items:
                report.add_skip(
                    rec.item_id, rec.where, f"duplicate id (also {items[rec.item_id].where})"
                )
            elif not path.is_file():
                report.add_skip(rec.item_id, str(path), "no audio file for this recording")
            else:
                items[rec.item_id] = rec
                audio[rec.item_id] = path
    return items, audio


def _slurp_splits(
    usable: dict[str, Verdict],
    items: dict[str, SlurpRecording],
    texts: dict[str, str | None],
    rate: int,
) -> Splits:
    """One recording and supervision (intent, sentence) per usable recording, by split."""
    splits: Splits = {}
    for key, verdict in usable.items():
        rec = items[key]
        custom = {
            "intent": rec.intent,
            "scenario": rec.scenario,
            "action": rec.action,
            "slurp_id": rec.slurp_id,
            "part": rec.part,
        }
        recording, supervision = whole_file_item(key, verdict, rate, texts[key], custom=custom)
        recs, sups = splits.setdefault(rec.split, ([], []))
        recs.append(recording)
        sups.append(supervision)
    return splits


def prepare_slurp(
    corpus_dir: str | Path,
    out_dir: str | Path,
    data_cfg: Any,
    synthetic: bool = False,
    workers: int = 0,
) -> dict[str, Any]:
    """Prepare SLURP (intent labels, published train/devel/test splits).

    Arguments
    ---------
    corpus_dir : str or Path
        The SLURP folder holding ``dataset/slurp/*.jsonl`` and ``audio/slurp_real/``.
    out_dir : str or Path
        The corpus directory to write.
    data_cfg : DataCfg
        The ``data`` section of the config.
    synthetic : bool
        Add ``train_synthetic.jsonl`` with ``audio/slurp_synth/`` to ``train``.
    workers : int
        Processes for the audio checks (0 = all cores).

    Returns
    -------
    dict[str, Any]
        The summary of ``train``, ``dev`` and ``test`` with the count of each intent (see
        :func:`smx.data.manifests.write_corpus`).

    Raises
    ------
    PrepareError
        A missing split file or audio folder, a malformed line, or too much unusable audio.

    Example
    -------
    >>> import json, tempfile, numpy as np, soundfile as sf; from smx.config import DataCfg
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "dataset/slurp").mkdir(parents=True); (root / "audio/slurp_real").mkdir(parents=True)
    >>> for n, name in enumerate(["train", "devel", "test"]):
    ...     sf.write(root / f"audio/slurp_real/audio-{n}.flac", np.full(8000, 0.1), 16000)
    ...     entry = {"slurp_id": n, "sentence": "Wake me up!", "scenario": "alarm",
    ...              "action": "set", "recordings": [{"file": f"audio-{n}.flac"}]}
    ...     _ = (root / f"dataset/slurp/{name}.jsonl").write_text(json.dumps(entry) + "\\n")
    >>> summary = prepare_slurp(root, root / "out", DataCfg())
    >>> [(s, e["intent"]) for s, e in summary["splits"].items()]
    [('train', {'alarm_set': 1}), ('dev', {'alarm_set': 1}), ('test', {'alarm_set': 1})]
    """
    root, parts = _slurp_parts(corpus_dir, synthetic)
    report = PrepareReport()
    items, audio = _slurp_items(parts, report)
    out = Path(out_dir)
    begin_prepare(out, _fingerprint("slurp", root, data_cfg, synthetic=synthetic))
    texts = {key: transcript(rec.sentence, data_cfg.alphabet) for key, rec in items.items()}
    notes = {key: note for key, (_, note) in texts.items() if note}
    verdicts = verify_files(audio, out, data_cfg.sample_rate, workers)
    usable = record_verdicts(verdicts, audio, report, notes)
    texts_kept = {key: text for key, (text, _) in texts.items()}
    splits = _slurp_splits(usable, items, texts_kept, data_cfg.sample_rate)
    return write_labelled_corpus(out, "slurp", splits, report, PrepareReport(), data_cfg)
