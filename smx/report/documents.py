"""The study's headline in the project's hand-written documents, rewritten by the report stage.

README.md shows one figure and the best-probe table of the last study, and docs/results.md
the same table with what it says; both sit in marked blocks (:mod:`smx.docblock`), so every
other line stays as its author wrote it and the numbers can never be typed by hand:

    README.md          block ``demo``:        the figure, the table and the encoders' MLflow URIs
    docs/results.md    block ``demo-probes``: the figure, the table and the verdicts
    docs/results.md    block ``demo-time``:   the wall time of each part of the pipeline
    docs/figures/      ``best_probes.png``, the report's figure of the same name

A document that is absent (a copy of the project without its docs) is skipped; one without
its block's markers raises :class:`~smx.docblock.BlockError`, naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from smx.atomic import atomic_path
from smx.docblock import replace_block
from smx.report.analysis import pretraining_helps
from smx.report.figures import FIGURES
from smx.report.inputs import Study
from smx.report.markdown import best_probe_caption, best_probe_table, model_lines, time_table

README_BLOCK = "demo"
RESULTS_BLOCK = "demo-probes"
TIME_BLOCK = "demo-time"
FIGURE = "best_probes.png"


@dataclass(frozen=True)
class Documents:
    """Where the generated blocks and their figure go.

    Arguments
    ---------
    readme : Path
        The README, holding block ``demo``.
    results : Path
        The results page, holding block ``demo-probes``.
    figures : Path
        The git-tracked folder the documents' figure is copied to.

    Example
    -------
    >>> Documents.under(Path("proj")).results.as_posix()
    'proj/docs/results.md'
    """

    readme: Path
    results: Path
    figures: Path

    @classmethod
    def under(cls, root: Path) -> Documents:
        """The project's own: ``README.md``, ``docs/results.md`` and ``docs/figures/``."""
        return cls(root / "README.md", root / "docs" / "results.md", root / "docs" / "figures")


@dataclass
class Published:
    """What :func:`publish` rewrote, and the documents it skipped because they are absent."""

    written: list[Path] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)


def figure_link(figure: Path, document: Path) -> str:
    """The path of ``figure`` relative to ``document``'s folder, as Markdown links want it.

    Example
    -------
    >>> figure_link(Path("docs/figures/a.png"), Path("README.md"))
    'docs/figures/a.png'
    >>> figure_link(Path("docs/figures/a.png"), Path("docs/results.md"))
    'figures/a.png'
    """
    return Path(os.path.relpath(figure, document.parent)).as_posix()


def readme_block(study: Study, link: str) -> str:
    """Block ``demo``: the best-probe figure at ``link``, the table, its caption, the models."""
    title = FIGURES[FIGURE][0]
    models = (
        "The encoders in the MLflow model registry (the newest version of each; "
        "`reports/report.md` names the version these numbers came from):\n\n"
        + model_lines(study, newest=True)
    )
    parts = [f"![{title}]({link})", best_probe_table(study), best_probe_caption(study), models]
    return "\n\n".join(parts)


def results_block(study: Study, link: str) -> str:
    """Block ``demo-probes``: :func:`readme_block` and, per variant, what pre-training won."""
    verdicts = "\n".join(f"- {pretraining_helps(study, v)}." for v in study.variants)
    return readme_block(study, link) + "\n\n" + verdicts


def time_block(study: Study, link: str) -> str:
    """Block ``demo-time``: :func:`~smx.report.markdown.time_table` (``link`` is unused)."""
    return time_table(study)


def publish(study: Study, figure: Path, documents: Documents) -> Published:
    """Rewrite the documents' blocks from ``study`` and copy the report's ``figure`` beside them.

    Arguments
    ---------
    study : Study
        The gathered study.
    figure : Path
        The report's ``best_probes.png``.
    documents : Documents
        Where the blocks and the figure's copy go; absent documents are skipped.

    Returns
    -------
    Published
        The files rewritten (the figure last) and the documents skipped.

    Raises
    ------
    BlockError
        A document lacks its block's markers (one sentence naming the file).
    """
    published = Published()
    copy = documents.figures / FIGURE
    for path, name, block in (
        (documents.readme, README_BLOCK, readme_block),
        (documents.results, RESULTS_BLOCK, results_block),
        (documents.results, TIME_BLOCK, time_block),
    ):
        if not path.is_file():
            if path not in published.absent:
                published.absent.append(path)
            continue
        replace_block(path, name, block(study, figure_link(copy, path)))
        if path not in published.written:
            published.written.append(path)
    if published.written:
        with atomic_path(copy) as tmp:
            tmp.write_bytes(figure.read_bytes())
        published.written.append(copy)
    return published
