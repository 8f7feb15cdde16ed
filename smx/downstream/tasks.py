"""The labelled data of each probing task, read from a prepared corpus and checked first.

| task | label (supervision field) | train / dev | test |
| --- | --- | --- | --- |
| asr | ``text`` (characters of ``vocab.json``) | train / dev | test |
| speaker | ``speaker`` | train / dev (the training speakers) | ``heldout`` speakers, scored on ``trials.txt`` |
| intent | ``custom["intent"]`` (``none`` = free reading, a class of its own) | train / dev | test |
| style | ``custom["style"]`` | train / dev | test |

Utterances without the task's label are left out; a task whose labels are missing, a
missing or empty split, fewer than two classes or no usable trial raise :class:`ProbeError`
with one sentence, before any compute is spent.

Example
-------
>>> label_field("intent"), scoring_split("speaker")
('intent', 'heldout')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smx.config import TASKS
from smx.data.loader import load_vocab
from smx.data.manifests import load_cuts
from smx.data.problems import PrepareError
from smx.data.text import CharVocab
from smx.downstream.errors import ProbeError

TRIALS_FILE = "trials.txt"


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
    """The supervision field holding the labels of ``task``."""
    check_task(task)
    return {"asr": "text", "speaker": "speaker"}.get(task, task)


def scoring_split(task: str) -> str:
    """The split a task is scored on: ``heldout`` speakers for verification, else ``test``."""
    return "heldout" if task == "speaker" else "test"


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
        The utterances the task is scored on (:func:`scoring_split`).
    classes : list[str]
        The training split's speakers, intents or styles, sorted; empty for asr.
    vocab : CharVocab | None
        The characters of the asr task; None for the others.
    trials : list[tuple[int, str, str]]
        The speaker task's ``(target, enrol id, test id)`` trials between test utterances.
    """

    task: str
    train: list[Item]
    dev: list[Item]
    test: list[Item]
    classes: list[str] = field(default_factory=list)
    vocab: CharVocab | None = None
    trials: list[tuple[int, str, str]] = field(default_factory=list)

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


def _labelled(corpus: Path, split: str, task: str, name: str) -> list[Item]:
    """The utterances of ``split`` that carry the label ``name``."""
    try:
        cuts = load_cuts(corpus, split)
    except PrepareError as exc:
        raise ProbeError(f"task '{task}' needs a '{split}' split: {exc}") from None
    total, items = 0, []
    for cut in cuts:
        total += 1
        label = cut_label(cut, name)
        if label is not None and label.strip():
            items.append(Item(cut, label))
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


def load_task_data(corpus_dir: str | Path, task: str) -> TaskData:
    """The labelled splits of ``task`` in a prepared corpus (see the module docstring).

    Arguments
    ---------
    corpus_dir : str | Path
        The prepared corpus (Lhotse manifests, ``vocab.json``, ``trials.txt``).
    task : str
        One of :data:`smx.config.TASKS`.

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
    name = label_field(task)
    corpus = Path(corpus_dir)
    train = _labelled(corpus, "train", task, name)
    dev = _labelled(corpus, "dev", task, name)
    test = _labelled(corpus, scoring_split(task), task, name)
    if task == "asr":
        return TaskData(task, train, dev, test, vocab=load_vocab(corpus))
    classes = sorted({item.label for item in train})
    if len(classes) < 2:
        raise ProbeError(
            f"task '{task}' needs at least 2 '{name}' classes in the training split of "
            f"{corpus}, found {len(classes)}"
        )
    if task != "speaker":
        return TaskData(task, train, dev, test, classes=classes)
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
    return TaskData(task, train, dev, test, classes=classes, trials=trials)
