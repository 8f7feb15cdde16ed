"""The labelled data of each probing task, read from a prepared corpus and checked first.

| task | label (supervision field) | train / dev | test |
| --- | --- | --- | --- |
| asr | ``text`` (characters of ``vocab.json``) | train / dev | test |
| speaker | ``speaker`` | train / dev (the training speakers) | ``heldout`` speakers, scored on the corpus' ``trials.txt`` |
| intent, style, emotion | ``custom[<label>]`` (default: the task's name; ``none`` = free reading, a class of its own) | train / dev | test, plus the ``heldout`` speakers' labelled utterances where the corpus has them |

The classification tasks score an utterance-level accuracy, whose steps are one utterance
wide: on the demo corpus' test split of about 70 utterances a step is 1.4 % and the binomial
spread of an accuracy near 0.4 is 5.8 %, larger than the differences the study measures. The
held-out speakers' utterances (about 210 there, by unseen speakers) are trained on by no
probe, so they join the scored set (:func:`scoring_splits`). ASR is scored per character, so
the test split alone already holds thousands of scored units.

Each task reads its own corpus and label (``downstream.tasks``, :func:`task_corpus`); the
utterance-classification tasks share one code path and differ only in the label they read.
With ``folds: session`` a task is probed leave-one-session-out (:func:`session_folds`).

Utterances without the task's label are left out; a task whose labels are missing, a
missing or empty split, fewer than two classes or no usable trial raise :class:`ProbeError`
with one sentence, before any compute is spent.

Example
-------
>>> label_field("intent"), label_field("asr"), scoring_splits("speaker", ["train", "heldout"])
('intent', 'text', ('heldout',))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smx.config import LABELS, TASKS, Params
from smx.data.loader import load_vocab
from smx.data.manifests import MARKER, available_splits, is_complete, load_cuts
from smx.data.problems import PrepareError
from smx.data.text import CharVocab
from smx.downstream.errors import ProbeError

TRIALS_FILE = "trials.txt"
#: the utterance-classification tasks: one code path, each reading ``custom[<label>]``
CLASSIFY = ("intent", "style", "emotion")


def check_task(task: str) -> None:
    """Check that ``task`` is one of :data:`smx.config.TASKS`.

    Raises
    ------
    ProbeError
        When it is not (the message lists the tasks).
    """
    if task not in TASKS:
        raise ProbeError(f"task '{task}' is not a probing task (choose from {', '.join(TASKS)})")


def label_field(task: str) -> str:
    """The supervision field holding the labels of ``task`` by default."""
    check_task(task)
    return LABELS[task][0]


#: the command that prepares each task's usual corpus at ``{corpus}`` (named when a
#: task's corpus is not prepared)
PREPARED_BY = {
    "asr": "smx prepare librispeech <LibriSpeech folder> --out {corpus}",
    "speaker": "smx prepare voxceleb <VoxCeleb1 folder> --out {corpus}",
    "intent": "smx prepare slurp <SLURP folder> --out {corpus}",
    "style": "smx prepare synth --out {corpus}",
    "emotion": "smx prepare iemocap <IEMOCAP_full_release folder> --out {corpus}",
}


def task_corpus(params: Params, task: str) -> Path:
    """The prepared corpus ``task`` reads: its ``corpus`` setting, else ``data.root/data.corpus``.

    Raises
    ------
    ProbeError
        When the folder is not a finished corpus (one sentence naming the task, the folder and
        what prepares it: the ``prepare`` stage for the default corpus).

    Example
    -------
    >>> params = Params.model_validate({"downstream": {"tasks": {"emotion": {"corpus": "/no"}}}})
    >>> task_corpus(params, "emotion")
    Traceback (most recent call last):
    ...
    smx.downstream.errors.ProbeError: task 'emotion' reads /no, which is not a prepared corpus (no COMPLETE.json); prepare it with `smx prepare iemocap <IEMOCAP_full_release folder> --out /no`
    """
    chosen = params.downstream.task(task).corpus
    corpus = Path(chosen) if chosen else Path(params.data.root) / params.data.corpus
    if not is_complete(corpus):
        how = (
            f"`{PREPARED_BY[task].format(corpus=corpus)}`"
            if chosen
            else "the DVC stage `prepare` (`dvc repro prepare`)"
        )
        raise ProbeError(
            f"task '{task}' reads {corpus}, which is not a prepared corpus (no {MARKER}); "
            f"prepare it with {how}"
        )
    return corpus


def scoring_splits(task: str, splits: Sequence[str]) -> tuple[str, ...]:
    """The splits a task is scored on, given the corpus' ``splits``.

    ``heldout`` speakers for verification; ``test`` for asr; ``test`` and, where the corpus
    has it, ``heldout`` for the classification tasks (see the module docstring).

    Example
    -------
    >>> scoring_splits("intent", ["train", "dev", "test", "heldout"])
    ('test', 'heldout')
    >>> scoring_splits("intent", ["train", "dev", "test"]), scoring_splits("asr", ["heldout"])
    (('test',), ('test',))
    """
    if task == "speaker":
        return ("heldout",)
    if task in CLASSIFY and "heldout" in splits:
        return ("test", "heldout")
    return ("test",)


def cut_label(cut: Any, name: str) -> str | None:
    """The label ``name`` of a cut: its text, speaker or a custom field (None when absent).

    Example
    -------
    >>> from lhotse.testing.dummies import dummy_cut, dummy_supervision
    >>> sup = dummy_supervision(0, text="hi")
    >>> sup.custom = {"intent": "greet"}
    >>> cut = dummy_cut(0, supervisions=[sup])
    >>> cut_label(cut, "text"), cut_label(cut, "intent"), cut_label(cut, "style")
    ('hi', 'greet', None)
    """
    if name == "text":
        parts = [s.text for s in cut.supervisions if s.text]
        return " ".join(parts) if parts else None
    for sup in cut.supervisions:
        value = sup.speaker if name == "speaker" else (sup.custom or {}).get(name)
        if value is not None:
            return str(value)
    return None


@dataclass(frozen=True)
class Item:
    """One labelled utterance: its cut (audio, id, duration) and its label.

    Arguments
    ---------
    cut : Any
        The Lhotse cut.
    label : str
        Its label for the task (transcript, speaker or class).
    """

    cut: Any
    label: str

    @property
    def id(self) -> str:
        """The cut's id."""
        return str(self.cut.id)

    @property
    def duration(self) -> float:
        """The cut's duration in seconds."""
        return float(self.cut.duration)


@dataclass
class TaskData:
    """The splits of one task, its classes (or vocabulary) and verification trials.

    Arguments
    ---------
    task : str
        The probing task.
    train : list[Item]
        The training utterances.
    dev : list[Item]
        The dev utterances (for speaker: only those of training speakers).
    test : list[Item]
        The utterances the task is scored on (:func:`scoring_splits`).
    classes : list[str]
        The training split's speakers, intents or styles, sorted; empty for asr.
    vocab : CharVocab | None
        The characters of the asr task; None for the others.
    trials : list[tuple[int, str, str]]
        The speaker task's ``(target, enrol id, test id)`` trials between test utterances.
    corpus : Path | None
        The prepared corpus the utterances come from (None: made by hand); the probes
        cache hidden states per corpus (:mod:`smx.downstream.state_cache`).
    """

    task: str
    train: list[Item]
    dev: list[Item]
    test: list[Item]
    classes: list[str] = field(default_factory=list)
    vocab: CharVocab | None = None
    trials: list[tuple[int, str, str]] = field(default_factory=list)
    corpus: Path | None = None

    @property
    def num_outputs(self) -> int:
        """Output units of the probe: characters (with blank and unknown) or classes."""
        return len(self.vocab) if self.vocab is not None else len(self.classes)

    def cuts(self) -> list[Any]:
        """Every cut of the three splits, once each."""
        seen: dict[str, Any] = {}
        for item in (*self.train, *self.dev, *self.test):
            seen.setdefault(item.id, item.cut)
        return list(seen.values())


def _read_labelled(corpus: Path, split: str, name: str) -> tuple[int, list[Item]]:
    """(utterances of ``split``, those of them that carry the label ``name``)."""
    total, items = 0, []
    for cut in load_cuts(corpus, split):
        total += 1
        label = cut_label(cut, name)
        if label is not None and label.strip():
            items.append(Item(cut, label))
    return total, items


def _labelled(corpus: Path, split: str, task: str, name: str) -> list[Item]:
    """The utterances of ``split`` that carry the label ``name``; none is a ProbeError."""
    try:
        total, items = _read_labelled(corpus, split, name)
    except PrepareError as exc:
        raise ProbeError(f"task '{task}' needs a '{split}' split: {exc}") from None
    if total == 0:
        raise ProbeError(f"task '{task}': the '{split}' split of {corpus} is empty")
    if not items:
        raise ProbeError(
            f"task '{task}' needs '{name}' labels, but none of the {total} utterances of the "
            f"'{split}' split of {corpus} has one"
        )
    return items


def read_trials(path: Path) -> list[tuple[int, str, str]]:
    """Verification trials ``(1 = same speaker, enrol id, test id)`` of a trials file.

    Each non-empty line reads ``<1|0> <enrol id> <test id>``.

    Raises
    ------
    ProbeError
        When the file is missing or a line is not a trial (the message names the line).

    Example
    -------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "trials.txt"
    >>> _ = p.write_text("1 a b\\n0 a c\\n")
    >>> read_trials(p)
    [(1, 'a', 'b'), (0, 'a', 'c')]
    """
    if not path.is_file():
        raise ProbeError(f"task 'speaker' needs verification trials in {path}; the file is missing")
    trials = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ProbeError(
                f"{path}:{number}: a trial must read '<1|0> <enrol id> <test id>', got {line!r}"
            )
        trials.append((int(parts[0]), parts[1], parts[2]))
    return trials


def load_task_data(corpus_dir: str | Path, task: str, label: str | None = None) -> TaskData:
    """The labelled splits of ``task`` in a prepared corpus (see the module docstring).

    Arguments
    ---------
    corpus_dir : str | Path
        The prepared corpus (Lhotse manifests, ``vocab.json``, ``trials.txt``).
    task : str
        One of :data:`smx.config.TASKS`.
    label : str | None
        The label field to read (default: the task's, :func:`label_field`).

    Returns
    -------
    TaskData
        The splits, classes or vocabulary, and trials of the task.

    Raises
    ------
    ProbeError
        Before any compute, when the task is unknown, a split is missing or empty or has no
        label, the training split has fewer than two classes, or (speaker) no dev utterance
        is by a training speaker or the trials do not hold both kinds.
    """
    check_task(task)
    name = label or label_field(task)
    corpus = Path(corpus_dir)
    train = _labelled(corpus, "train", task, name)
    dev = _labelled(corpus, "dev", task, name)
    first, *extra = scoring_splits(task, available_splits(corpus))
    test = _labelled(corpus, first, task, name)
    for split in extra:  # optional: a split without the label adds nothing
        test += _read_labelled(corpus, split, name)[1]
    if task == "asr":
        return TaskData(task, train, dev, test, vocab=load_vocab(corpus), corpus=corpus)
    classes = _classes(task, name, train, corpus)
    if task != "speaker":
        return TaskData(task, train, dev, test, classes=classes, corpus=corpus)
    known = set(classes)
    dev = [item for item in dev if item.label in known]
    if not dev:
        raise ProbeError(
            f"task 'speaker': no utterance of the 'dev' split of {corpus} is by a training speaker"
        )
    ids = {item.id for item in test}
    trials = [t for t in read_trials(corpus / TRIALS_FILE) if t[1] in ids and t[2] in ids]
    if len({t[0] for t in trials}) < 2:
        raise ProbeError(
            f"task 'speaker' needs same- and different-speaker trials between utterances of "
            f"the 'heldout' split in {corpus / TRIALS_FILE}, found {len(trials)} usable trials"
        )
    return TaskData(task, train, dev, test, classes, trials=trials, corpus=corpus)


def _classes(task: str, name: str, train: list[Item], where: object) -> list[str]:
    """The sorted labels of ``train``; fewer than two is a ProbeError naming ``where``."""
    classes = sorted({item.label for item in train})
    if len(classes) < 2:
        raise ProbeError(
            f"task '{task}' needs at least 2 '{name}' classes in the training split of "
            f"{where}, found {len(classes)}"
        )
    return classes


def session_of(cut: Any) -> int | None:
    """The ``custom["session"]`` of a cut's first supervision that has one (None: none has)."""
    for sup in cut.supervisions:
        value = (sup.custom or {}).get("session")
        if value is not None:
            return int(value)
    return None


def session_folds(
    corpus_dir: str | Path, task: str, label: str | None, held_out: Sequence[int]
) -> list[tuple[int, TaskData]]:
    """Leave-one-session-out folds of a classification task: one per session of ``held_out``.

    Every split of the corpus is pooled; the fold of session ``s`` tests on ``s``, takes the
    next remaining session (in ascending order, wrapping round) as dev and trains on the rest.

    Arguments
    ---------
    corpus_dir : str | Path
        A prepared corpus whose utterances carry ``custom["session"]`` (IEMOCAP).
    task : str
        An utterance-classification task.
    label : str | None
        The label field (default: the task's).
    held_out : Sequence[int]
        The sessions tested, one fold each.

    Returns
    -------
    list[tuple[int, TaskData]]
        ``(held-out session, its splits)`` in the order of ``held_out``.

    Raises
    ------
    ProbeError
        When the task is not a classification task, an utterance has no session, the corpus
        holds fewer than 3 sessions or none of a held-out one, or a fold's training split has
        fewer than 2 classes.
    """
    name = label or label_field(task)
    if task not in CLASSIFY:
        raise ProbeError(
            f"task '{task}' cannot be probed by session folds (only {', '.join(CLASSIFY)})"
        )
    corpus = Path(corpus_dir)
    by_session = _pooled_sessions(corpus, task, name)
    sessions = sorted(by_session)
    if len(sessions) < 3:
        raise ProbeError(
            f"task '{task}': leave-one-session-out needs 3 sessions or more (train, dev, test) "
            f"in {corpus}, found {sessions}"
        )
    folds = []
    for test in held_out:
        if test not in by_session:
            raise ProbeError(
                f"task '{task}': held-out session {test} has no utterance in {corpus} "
                f"(sessions: {', '.join(map(str, sessions))})"
            )
        rest = [s for s in sessions if s != test]
        dev = next((s for s in rest if s > test), rest[0])
        train = [item for s in rest if s != dev for item in by_session[s]]
        where = f"the fold holding out session {test} of {corpus}"
        classes = _classes(task, name, train, where)
        data = TaskData(task, train, by_session[dev], by_session[test], classes, corpus=corpus)
        folds.append((test, data))
    return folds


def _pooled_sessions(corpus: Path, task: str, name: str) -> dict[int, list[Item]]:
    """The labelled utterances of every split of ``corpus``, by session."""
    by_session: dict[int, list[Item]] = {}
    for split in json.loads((corpus / MARKER).read_text())["splits"]:
        for item in _labelled(corpus, split, task, name):
            session = session_of(item.cut)
            if session is None:
                raise ProbeError(
                    f"task '{task}' is probed by session folds, but utterance {item.id} of the "
                    f"'{split}' split of {corpus} has no 'session'"
                )
            by_session.setdefault(session, []).append(item)
    return by_session
