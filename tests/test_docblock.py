"""Generated blocks in Markdown documents: replaced in place, everything else kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from smx.docblock import BlockError, check_block, read_block, replace_block

DOC = "# Doc\n\nintro\n<!-- begin: a -->\nold a\n<!-- end: a -->\nmiddle\n<!-- begin: b -->\n<!-- end: b -->\nend\n"


def test_replacing_one_block_keeps_the_other_lines(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    replace_block(doc, "b", "\n| x | y |\n| 1 | 2 |\n")
    replace_block(doc, "a", "new a")
    assert doc.read_text() == DOC.replace("old a", "new a").replace(
        "<!-- begin: b -->\n", "<!-- begin: b -->\n| x | y |\n| 1 | 2 |\n"
    )
    assert read_block(doc, "b") == "| x | y |\n| 1 | 2 |"
    assert read_block(doc, "missing") == ""


def test_replacing_twice_gives_the_same_file(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    replace_block(doc, "a", "table")
    once = doc.read_text()
    replace_block(doc, "a", "table")
    assert doc.read_text() == once


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers\n", "has no block `a`: add the lines `<!-- begin: a -->`"),
        ("<!-- end: a -->\n<!-- begin: a -->\n", "needs one `<!-- begin: a -->` followed by"),
        ("<!-- begin: a -->\n<!-- begin: a -->\n<!-- end: a -->\n", "needs one"),
        ("<!-- begin: a -->\n", "needs one"),
    ],
)
def test_bad_markers_name_the_file_and_leave_it_untouched(
    tmp_path: Path, text: str, message: str
) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    with pytest.raises(BlockError, match=r"doc\.md") as err:
        replace_block(doc, "a", "x")
    assert message in str(err.value)
    assert doc.read_text() == text


def test_a_block_name_with_spaces_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BlockError, match="only letters"):
        replace_block(tmp_path / "doc.md", "two words", "x")


def test_checking_a_block_reads_the_file_and_never_writes_it(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC.rstrip("\n"))  # no final newline: a rewrite would add one
    check_block(doc, "a")
    assert doc.read_text() == DOC.rstrip("\n")
    with pytest.raises(BlockError, match="has no block `c`"):
        check_block(doc, "c")
