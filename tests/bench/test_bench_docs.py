"""``docs/benchmarks.md``: each benchmark's block rendered from its stored JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_helpers import smx, tiny_config

from smx.bench.docs import block_name, read_result, render, update_docs
from smx.bench.tables import mixers_by_length
from smx.docblock import BlockError, read_block
from smx.project import project_root

DOCS = project_root() / "docs" / "benchmarks.md"
STORED = sorted((project_root() / "docs" / "bench").rglob("*.json"))

STREAM_RESULT = {
    "meta": {
        "machine": "Linux-test",
        "cpus": 2,
        "bench": {"seconds": 1.0, "chunk_s": 0.5, "left_chunks": None, "device": "cpu",
                  "threads": 1, "warmup_s": 0.5, "window_s": 0.5},
    },
    "records": [
        {"kind": "summarymixing", "frames": 48, "wall_s": 0.1, "rtf_mean": 0.1,
         "peak_mem_bytes": 2**20, "rtf_at": {"10": 0.125, "300": None},
         "chunks": [{"end_s": 0.5, "rtf": 0.1}, {"end_s": 1.0, "rtf": 0.1}]},
        {"kind": "mhsa", "frames": 48, "error": "MemoryError: out | of memory"},
    ],
}  # fmt: skip

DOC = """# Title

Hand-written text.

<!-- begin: bench-stream -->
old table
<!-- end: bench-stream -->

<!-- begin: bench-mixers -->
kept
<!-- end: bench-mixers -->
"""


def stored_stream(folder: Path) -> Path:
    path = folder / "stream.json"
    path.write_text(json.dumps(STREAM_RESULT))
    return path


@pytest.mark.parametrize("result", STORED, ids=lambda p: str(p.relative_to(DOCS.parent)))
def test_the_docs_show_the_stored_results(result: Path) -> None:
    data = read_result(result)
    bench = data["meta"]["bench"]
    name = block_name(result.stem, bool(bench.get("compile")), len(bench.get("modes", [])) > 1)
    assert read_block(DOCS, name) == render(result, data, DOCS), (
        f"{name} is stale: run smx bench render {result.relative_to(project_root())}"
    )


def test_a_block_is_rendered_from_a_stored_result_and_nothing_else_changes(
    tmp_path: Path,
) -> None:
    result, doc = stored_stream(tmp_path), tmp_path / "doc.md"
    doc.write_text(DOC)
    assert update_docs(doc, result) == "bench-stream"
    block = read_block(doc, "bench-stream").splitlines()
    assert block[0].startswith("**streaming 1 s in chunks of 0.50 s, left context all chunks.**")
    assert "Measured on `Linux-test` (2 CPUs), device `cpu`, 1 intra-op thread" in block[0]
    assert "| mixer | RTF at 10 s | RTF at 300 s | growth | mean RTF | peak MiB |" in block
    assert "| summarymixing | 0.1250 |  |  | 0.1000 | 1 |" in block
    assert "| mhsa | MemoryError: out \\| of memory |  |  |  |  |" in block  # one cell
    assert block[-1] == "Data: [`stream.json`](stream.json)."
    assert not any(line.startswith("![") for line in block)  # no stream.png beside it
    outside = doc.read_text().replace("\n".join(block), "old table")
    assert outside == DOC

    (tmp_path / "stream.png").write_bytes(b"\x89PNG")
    update_docs(doc, result)
    assert "![stream benchmark](stream.png)" in read_block(doc, "bench-stream")


def test_a_missing_block_is_a_clear_error_and_leaves_the_file(tmp_path: Path) -> None:
    result, doc = stored_stream(tmp_path), tmp_path / "doc.md"
    doc.write_text("# No blocks here\n")
    with pytest.raises(BlockError, match="has no block `bench-stream`: add the lines"):
        update_docs(doc, result)
    assert doc.read_text() == "# No blocks here\n"


def test_render_cli_rewrites_blocks_and_reports_mistakes_in_one_sentence(tmp_path: Path) -> None:
    result, doc = stored_stream(tmp_path), tmp_path / "doc.md"
    doc.write_text(DOC)
    res = smx("bench", "render", str(result), "--docs", str(doc), timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"updated block `bench-stream` of {doc} from {result}" in res.stdout
    assert "| summarymixing | 0.1250 |" in doc.read_text()

    doc.write_text("# No blocks here\n")
    res = smx("bench", "render", str(result), "--docs", str(doc), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"smx bench render: {doc} has no block `bench-stream`" in res.stderr
    res = smx("bench", "render", str(doc), "--docs", str(doc), timeout=120)
    assert res.returncode == 2 and "doc.md: not a benchmark result" in res.stderr


def test_the_mixers_docs_table_has_one_row_per_mixer_and_a_column_per_length() -> None:
    meta = {"bench": {"batch": 1, "d_model": 32, "num_layers": 1, "block": "conformer"}}
    records = [
        {"scope": "encoder", "kind": "mhsa", "seconds": 5.0, "median_s": 1.0,
         "peak_mem_bytes": 2**20, "time_ratio": 1.0, "mem_ratio": 1.0},
        {"scope": "encoder", "kind": "mhsa", "seconds": 80.0, "error": "killed"},
        {"scope": "encoder", "kind": "summarymixing", "seconds": 5.0, "median_s": 0.5,
         "peak_mem_bytes": 2**20, "time_ratio": 0.5, "mem_ratio": 1.0},
        {"scope": "encoder", "kind": "summarymixing", "seconds": 80.0, "median_s": 8.0,
         "peak_mem_bytes": 16 * 2**20},
    ]  # fmt: skip
    table = mixers_by_length(meta, records)
    assert table.columns[2:] == (
        "time s at 5 s", "time s at 80 s", "peak MiB at 80 s", "time / mhsa at 80 s",
        "mem / mhsa at 80 s",
    )  # fmt: skip
    assert table.rows == [
        ["encoder", "mhsa", "1.000", "failed", "", "", ""],
        ["encoder", "summarymixing", "0.500", "8.000", "16", "", ""],
    ]


def test_a_measuring_command_checks_its_docs_block_before_measuring(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    res = smx("bench", "roofline", "--docs", str(doc), "--out", str(tmp_path), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"smx bench roofline: {doc} has no block `bench-roofline`" in res.stderr
    assert not (tmp_path / "roofline.json").exists()  # nothing was measured
    res = smx("bench", "stream", "--docs", str(tmp_path / "none.md"), timeout=120)
    assert (
        res.returncode == 2 and "--docs: " in res.stderr and "none.md does not exist" in res.stderr
    )


@pytest.mark.e2e
def test_roofline_cli_writes_its_docs_block(tmp_path: Path) -> None:
    path = tiny_config(tmp_path, "wav2vec2")
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- begin: bench-roofline -->\n<!-- end: bench-roofline -->\n")
    res = smx(
        "bench", "roofline", "--config", str(path), "--scopes", "mixer", "--lengths", "1",
        "--repeats", "1", "--threads", "1", "--out", str(tmp_path / "out"), "--docs", str(doc),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"updated block `bench-roofline` of {doc}" in res.stdout
    block = read_block(doc, "bench-roofline")
    assert "| mixer | summarymixing | 1 |" in block
    assert "Data: [`out/roofline.json`](out/roofline.json)." in block
    data = json.loads((tmp_path / "out" / "roofline.json").read_text())
    assert data["meta"]["cpus"] >= 1
