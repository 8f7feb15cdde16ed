"""A benchmark's block in ``docs/benchmarks.md``, rendered from its stored JSON.

Each benchmark owns one block of the document (:mod:`smx.docblock`), named
``bench-<name>`` (``bench-<name>-compiled`` for a run with ``--compile``,
``bench-<name>-modes`` for one that measured eager and default side by side). The block holds
how the run was measured, its table (:data:`smx.bench.tables.DOCS_TABLES`), its figure
when the run drew one, and a link to the data. The command that measured writes it after
its outputs; ``smx bench render`` rewrites it from a stored ``<name>.json`` alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from smx.bench.tables import DOCS_TABLES, markdown
from smx.docblock import check_block as check_doc_block
from smx.docblock import replace_block

#: The benchmarks with a block, named as their result files: ``<name>.json``.
BENCHMARKS = tuple(DOCS_TABLES)


def block_name(benchmark: str, compiled: bool = False, modes: bool = False) -> str:
    """The block of ``benchmark`` in the docs (``modes``: eager and default side by side).

    Example
    -------
    >>> block_name("pretrain"), block_name("roofline", compiled=True)
    ('bench-pretrain', 'bench-roofline-compiled')
    >>> block_name("pretrain", modes=True)
    'bench-pretrain-modes'
    """
    return f"bench-{benchmark}" + ("-compiled" if compiled else "-modes" if modes else "")


def benchmark_of(result: Path) -> str:
    """The benchmark that wrote ``result``, from its file name.

    Example
    -------
    >>> benchmark_of(Path("docs/bench/stream.json"))
    'stream'
    >>> benchmark_of(Path("notes.json"))
    Traceback (most recent call last):
    ...
    ValueError: notes.json: not a benchmark result (expected mixers.json, pretrain.json, stream.json, roofline.json or profile.json)
    """
    if result.suffix == ".json" and result.stem in BENCHMARKS:
        return result.stem
    names = [f"{b}.json" for b in BENCHMARKS]
    expected = ", ".join(names[:-1]) + f" or {names[-1]}"
    raise ValueError(f"{result}: not a benchmark result (expected {expected})")


def _threads(threads: int | None) -> str:
    if threads is None:
        return "torch's default intra-op threads (one per core)"
    return f"{threads} intra-op thread{'s' if threads != 1 else ''}"


def setup_line(meta: dict[str, Any]) -> str:
    """How a run was measured: machine, device, threads, repeats, compilation.

    Example
    -------
    >>> meta = {"machine": "Linux-x86_64", "cpus": 2, "bench": {"device": "cpu",
    ...         "threads": 1, "repeats": 3, "warmup": 1, "compile": True}}
    >>> print(setup_line(meta))
    Measured on `Linux-x86_64` (2 CPUs), device `cpu`, 1 intra-op thread, median of 3 timed repeats after 1 untimed warm-up, encoder blocks compiled (`--compile`).
    """
    bench = meta["bench"]
    cpus = f" ({meta['cpus']} CPUs)" if meta.get("cpus") else ""
    parts = [f"Measured on `{meta['machine']}`{cpus}", f"device `{bench['device']}`"]
    if "threads" in bench:
        parts.append(_threads(bench["threads"]))
    if "repeats" in bench:
        n = bench["repeats"]
        timed = "1 timed repeat" if n == 1 else f"median of {n} timed repeats"
        parts.append(f"{timed} after {bench['warmup']} untimed warm-up")
    if "window_s" in bench:
        parts.append(
            f"{bench['warmup_s']:g} s streamed untimed first, the RTF at a position is the "
            f"median over the chunks of the {bench['window_s']:g} s before it"
        )
    if bench.get("compile"):
        parts.append("encoder blocks compiled (`--compile`)")
    return ", ".join(parts) + "."


def _link(path: Path, docs: Path) -> str:
    """``path`` relative to the folder of ``docs``, as a Markdown link target."""
    return Path(os.path.relpath(path.resolve(), docs.resolve().parent)).as_posix()


def render(result: Path, data: dict[str, Any], docs: Path) -> str:
    """The block of the run stored in ``result`` (its content ``data``), for the file ``docs``.

    Arguments
    ---------
    result : Path
        The run's ``<name>.json``; a ``<name>.png`` beside it is shown as its figure.
    data : dict
        Its content: ``meta`` and ``records``.
    docs : Path
        The Markdown file the block goes in (links are relative to its folder).

    Returns
    -------
    str
        The block's text: bold title, how it was measured, the table, figure and data links.
    """
    benchmark = benchmark_of(result)
    table = DOCS_TABLES[benchmark](data["meta"], data["records"])
    parts = [f"**{table.title}.** {setup_line(data['meta'])}", markdown(table)]
    figure = result.with_suffix(".png")
    if figure.is_file():
        parts.append(f"![{benchmark} benchmark]({_link(figure, docs)})")
    data_link = _link(result, docs)
    parts.append(f"Data: [`{data_link}`]({data_link}).")
    return "\n\n".join(parts)


def read_result(result: Path) -> dict[str, Any]:
    """The content of a stored ``<name>.json``; ValueError when it is missing or malformed."""
    benchmark_of(result)
    if not result.is_file():
        raise ValueError(f"{result}: no such file")
    data = json.loads(result.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not {"meta", "records"} <= set(data):
        raise ValueError(f"{result}: expected an object with `meta` and `records`")
    return data


def check_block(docs: Path, name: str) -> None:
    """ValueError (:class:`smx.docblock.BlockError`) unless ``docs`` has block ``name``.

    Run before a measurement, so that a long run does not end on a missing block; the
    file is only read.
    """
    if not docs.is_file():
        raise ValueError(f"--docs: {docs} does not exist")
    check_doc_block(docs, name)


def update_docs(docs: Path, result: Path) -> str:
    """Rewrite the block of the run stored in ``result`` in ``docs``; returns the block's name.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> meta = {"machine": "Linux", "bench": {"device": "cpu", "threads": 1, "repeats": 2,
    ...         "warmup": 1, "compile": False}}
    >>> rec = {"scope": "mixer", "kind": "summarymixing", "seconds": 80.0, "error": "oom"}
    >>> _ = (folder / "roofline.json").write_text(json.dumps({"meta": meta, "records": [rec]}))
    >>> doc = folder / "doc.md"
    >>> _ = doc.write_text("<!-- begin: bench-roofline -->\\n<!-- end: bench-roofline -->\\n")
    >>> update_docs(doc, folder / "roofline.json")
    'bench-roofline'
    >>> from smx.docblock import read_block
    >>> print(read_block(doc, "bench-roofline").splitlines()[4])
    | mixer | summarymixing | 80 | oom |  |  |  |  |  |
    """
    data = read_result(result)
    bench = data["meta"]["bench"]
    modes = len(bench.get("modes", [])) > 1
    name = block_name(benchmark_of(result), bool(bench.get("compile")), modes)
    replace_block(docs, name, render(result, data, docs))
    return name
