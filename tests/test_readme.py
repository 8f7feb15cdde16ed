"""README.md: its Python example runs as written, its links lead somewhere, and the report
stage finds the blocks it rewrites there and in docs/results.md."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from smx.docblock import markers
from smx.report.documents import README_BLOCK, RESULTS_BLOCK, TIME_BLOCK, Documents

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
DOCUMENTS = Documents.under(PROJECT)


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```<language> blocks of a Markdown text."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.M | re.S)


def test_the_python_example_runs_as_written() -> None:
    (example,) = fenced(README.read_text(encoding="utf-8"), "pycon")
    test = doctest.DocTestParser().get_doctest(example, {}, "README.md", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0, "README.md's example failed (see above)"


@pytest.mark.parametrize("document", [README, PROJECT / "docs" / "results.md"])
def test_relative_links_lead_to_files(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert links
    missing = [link for link in links if not (document.parent / link).exists()]
    assert missing == [], f"{document.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize(
    ("document", "block"),
    [
        (DOCUMENTS.readme, README_BLOCK),
        (DOCUMENTS.results, RESULTS_BLOCK),
        (DOCUMENTS.results, TIME_BLOCK),
    ],
)
def test_the_generated_blocks_are_where_the_report_stage_writes(document: Path, block: str) -> None:
    lines = document.read_text(encoding="utf-8").splitlines()
    begin, end = markers(block)
    assert lines.count(begin) == 1 and lines.count(end) == 1
    assert lines.index(begin) + 1 < lines.index(end), f"{document.name}: block {block} is empty"


def test_the_readme_stays_a_front_door() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250
