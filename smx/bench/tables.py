"""The result tables of the benchmarks, built from a run's stored JSON (``meta`` and ``records``).

The console table a command prints and the Markdown table of ``docs/benchmarks.md`` come
from the same rows, so the docs show what the command measured and nothing typed by hand.
Every function here reads only ``meta`` and ``records``: a table can be rebuilt from a
stored ``<name>.json`` at any time, without measuring again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smx.bench.mixers import measured

Records = list[dict[str, Any]]

MiB = 2**20


@dataclass(frozen=True)
class BenchTable:
    """A titled table of strings.

    Arguments
    ---------
    title : str
        What was measured, in one line.
    columns : tuple of str
        Column headers.
    rows : list of list of str
        One row per point; a failed or skipped point may have fewer cells than columns.
    """

    title: str
    columns: tuple[str, ...]
    rows: list[list[str]]


def _ratio(rec: dict[str, Any], key: str) -> str:
    return f"{rec[key]:.2f}" if key in rec else ""


def _mib(rec: dict[str, Any], digits: int = 0) -> str:
    return f"{rec['peak_mem_bytes'] / MiB:.{digits}f}"


def mixers_title(bench: dict[str, Any]) -> str:
    """The title of ``smx bench mixers``'s table: the encoder that was measured.

    Example
    -------
    >>> mixers_title({"batch": 1, "d_model": 256, "num_layers": 12, "block": "conformer"})
    'forward+backward, batch 1, d_model 256, 12-layer conformer (encoder scope)'
    """
    return (
        f"forward+backward, batch {bench['batch']}, d_model {bench['d_model']}, "
        f"{bench['num_layers']}-layer {bench['block']} (encoder scope)"
    )


def mixers_table(meta: dict[str, Any], records: Records) -> BenchTable:
    """``smx bench mixers``: one row per (scope, mixer, length), ratios against MHSA.

    Example
    -------
    >>> meta = {"bench": {"batch": 1, "d_model": 32, "num_layers": 1, "block": "conformer"}}
    >>> rec = {"scope": "mixer", "kind": "mhsa", "seconds": 5.0, "frames": 248,
    ...        "median_s": 0.01, "peak_mem_bytes": 2**20, "time_ratio": 1.0, "mem_ratio": 1.0}
    >>> mixers_table(meta, [rec]).rows
    [['mixer', 'mhsa', '5', '248', '0.010', '1.0', '1.00', '1.00']]
    """
    columns = ("scope", "mixer", "seconds", "frames", "median s", "peak MiB")
    rows = []
    for r in records:
        point = [r["scope"], r["kind"], f"{r['seconds']:g}", str(r["frames"])]
        if "error" in r:
            rows.append([*point, r["error"], "", "", ""])
            continue
        cells = [
            f"{r['median_s']:.3f}",
            _mib(r, 1),
            _ratio(r, "time_ratio"),
            _ratio(r, "mem_ratio"),
        ]
        rows.append(point + cells)
    return BenchTable(mixers_title(meta["bench"]), (*columns, "time / mhsa", "mem / mhsa"), rows)


def mixers_by_length(meta: dict[str, Any], records: Records) -> BenchTable:
    """``smx bench mixers`` in short: time at every length, memory and ratios at the longest.

    One row per (scope, mixer); a point that failed shows ``failed``.

    Example
    -------
    >>> meta = {"bench": {"batch": 1, "d_model": 32, "num_layers": 1, "block": "conformer"}}
    >>> recs = [{"scope": "mixer", "kind": "mhsa", "seconds": s, "frames": 50 * s,
    ...          "median_s": s / 10, "peak_mem_bytes": s * 2**20} for s in (5.0, 10.0)]
    >>> table = mixers_by_length(meta, recs)
    >>> table.columns[2:4], table.rows
    (('time s at 5 s', 'time s at 10 s'), [['mixer', 'mhsa', '0.500', '1.000', '10', '', '']])
    """
    lengths = sorted({r["seconds"] for r in records})
    longest = lengths[-1]
    at = {(r["scope"], r["kind"], r["seconds"]): r for r in records}
    rows = []
    for scope, kind in dict.fromkeys((r["scope"], r["kind"]) for r in records):
        times = [at.get((scope, kind, s), {}) for s in lengths]
        cells = [f"{t['median_s']:.3f}" if measured(t) else "failed" for t in times]
        last = times[-1]
        ratios = [_ratio(last, "time_ratio"), _ratio(last, "mem_ratio")]
        rows.append([scope, kind, *cells, _mib(last) if measured(last) else "", *ratios])
    columns = (
        "scope",
        "mixer",
        *(f"time s at {s:g} s" for s in lengths),
        f"peak MiB at {longest:g} s",
        f"time / mhsa at {longest:g} s",
        f"mem / mhsa at {longest:g} s",
    )
    return BenchTable(mixers_title(meta["bench"]), columns, rows)


def pretrain_table(meta: dict[str, Any], records: Records) -> BenchTable:
    """``smx bench pretrain``: one row per (objective, mode, mixer, length), with ratios.

    The ratios divide by MHSA and by the ``none`` floor of the same objective, mode and
    length; the floor's columns are left out where no point has a floor ratio (a run
    without ``none``). A run from before the modes shows an empty mode.

    Example
    -------
    >>> rec = {"objective": "bestrq", "mode": "default", "kind": "mamba", "seconds": 80.0,
    ...        "frames": 2000, "skipped": "over budget"}
    >>> table = pretrain_table({"bench": {"batch": 1}}, [rec])
    >>> table.rows[0][:6], table.columns[-1]
    (['bestrq', 'default', 'mamba', '80', '2000', 'over budget'], 'mem / mhsa')
    """
    columns = ("objective", "mode", "mixer", "s", "frames", "wall s", "CPU s", "peak MiB")
    ratios = ("wall / mhsa", "CPU / mhsa", "mem / mhsa")
    keys = ("time_ratio", "cpu_ratio", "mem_ratio")
    title = f"full pre-training step, batch {meta['bench']['batch']}; ratios divide by MHSA"
    floor_keys = ("floor_cpu_ratio", "floor_mem_ratio")
    if any(key in r for r in records for key in floor_keys):
        ratios += ("CPU / floor", "mem / floor")
        keys += floor_keys
        title += " and by the none floor of this run"
    rows = []
    for r in records:
        cells = (
            [f"{r['median_s']:.2f}", f"{r['median_cpu_s']:.2f}", _mib(r)]
            if measured(r)
            else [r.get("skipped") or r.get("error", ""), "", ""]
        )
        point = [r["objective"], r.get("mode", ""), r["kind"], f"{r['seconds']:g}"]
        rows.append([*point, str(r["frames"]), *cells, *(_ratio(r, key) for key in keys)])
    return BenchTable(title, (*columns, *ratios), rows)


def stream_table(meta: dict[str, Any], records: Records) -> BenchTable:
    """``smx bench stream``: real-time factor at the first and last reported positions.

    Example
    -------
    >>> meta = {"bench": {"seconds": 300.0, "chunk_s": 0.64, "left_chunks": None}}
    >>> rec = {"kind": "mhsa", "rtf_at": {"10": 0.1, "300": 1.0}, "growth": 10.0,
    ...        "rtf_mean": 0.5, "peak_mem_bytes": 700 * 2**20, "chunks": []}
    >>> table = stream_table(meta, [rec])
    >>> table.title, table.rows
    ('streaming 300 s in chunks of 0.64 s, left context all chunks', [['mhsa', '0.1000', '1.0000', '10.00', '0.5000', '700']])
    """
    from smx.bench.stream import REPORT_AT_S

    bench = meta["bench"]
    first, last = (f"{p:g}" for p in (REPORT_AT_S[0], REPORT_AT_S[-1]))
    rows = []
    for r in records:
        if "chunks" not in r:
            rows.append([r["kind"], r.get("error", ""), "", "", "", ""])
            continue
        at = [r["rtf_at"][p] for p in (first, last)]
        cells = ["" if rtf is None else f"{rtf:.4f}" for rtf in at]
        rows.append([r["kind"], *cells, _ratio(r, "growth"), f"{r['rtf_mean']:.4f}", _mib(r)])
    left = "all" if bench["left_chunks"] is None else bench["left_chunks"]
    title = (
        f"streaming {bench['seconds']:g} s in chunks of {bench['chunk_s']:.2f} s, "
        f"left context {left} chunks"
    )
    columns = ("mixer", f"RTF at {first} s", f"RTF at {last} s", "growth", "mean RTF", "peak MiB")
    return BenchTable(title, columns, rows)


def roofline_table(meta: dict[str, Any], records: Records) -> BenchTable:
    """``smx bench roofline``: achieved FLOP/s against plain matmuls of the same shapes.

    Example
    -------
    >>> rec = {"scope": "mixer", "kind": "summarymixing", "seconds": 80.0, "flops": 3.1e9,
    ...        "median_s": 0.21, "achieved_flops_per_s": 14.8e9, "matmul_flops_per_s": 39.4e9,
    ...        "efficiency": 0.376, "cpu_efficiency": 0.361}
    >>> roofline_table({}, [rec]).rows
    [['mixer', 'summarymixing', '80', '3.1', '0.210', '14.8', '39.4', '38%', '36%']]
    """
    columns = ("scope", "mixer", "seconds", "GFLOP", "time s", "GFLOP/s", "matmul GFLOP/s")
    rows = []
    for r in records:
        point = [r["scope"], r["kind"], f"{r['seconds']:g}"]
        if "efficiency" not in r:
            rows.append([*point, r.get("error", "")])
            continue
        giga = (r[k] / 1e9 for k in ("flops", "achieved_flops_per_s", "matmul_flops_per_s"))
        flops, achieved, matmul = (f"{g:.1f}" for g in giga)
        efficiency = (f"{r[k]:.0%}" for k in ("efficiency", "cpu_efficiency"))
        rows.append([*point, flops, f"{r['median_s']:.3f}", achieved, matmul, *efficiency])
    title = "forward+backward: achieved FLOP/s against plain matmuls of the same shapes"
    return BenchTable(title, (*columns, "efficiency", "CPU-time efficiency"), rows)


def profile_table(meta: dict[str, Any], records: list[dict[str, Any]]) -> BenchTable:
    """``smx bench profile``: one row per (mixer, operator): calls, self time, share of the step, total time.

    Example
    -------
    >>> rec = {"kind": "none", "ranked_by": "self_cpu_ms", "ops": [{"name": "aten::mm",
    ...        "calls": 4, "self_cpu_ms": 12.5, "cpu_ms": 12.5, "share": 0.5}]}
    >>> profile_table({"bench": {"seconds": 20.0, "fast": True}}, [rec]).rows
    [['none', 'aten::mm', '4', '12.5', '50.0 %', '12.5']]
    """
    bench = meta["bench"]
    rows = []
    for r in records:
        if "ops" not in r:
            rows.append([r["kind"], r.get("error", "")])
            continue
        for op in r["ops"]:
            self_ms = op[r["ranked_by"]]
            cells = [str(op["calls"]), f"{self_ms:.1f}", f"{op['share']:.1%}".replace("%", " %")]
            rows.append([r["kind"], op["name"], *cells, f"{op['cpu_ms']:.1f}"])
    what = "default fast path" if bench["fast"] else "eager"
    title = f"top operators of one pre-training step at {bench['seconds']:g} s ({what})"
    return BenchTable(title, ("mixer", "operator", "calls", "self ms", "share", "total ms"), rows)


TableOf = Callable[[dict[str, Any], Records], BenchTable]

#: The table each command prints, by benchmark name.
CONSOLE_TABLES: dict[str, TableOf] = {
    "mixers": mixers_table,
    "pretrain": pretrain_table,
    "stream": stream_table,
    "roofline": roofline_table,
    "profile": profile_table,
}

#: The table of each benchmark in the docs (the mixers' long table in short).
DOCS_TABLES: dict[str, TableOf] = {**CONSOLE_TABLES, "mixers": mixers_by_length}


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return " ".join(text.replace("|", "\\|").split())


def markdown(table: BenchTable) -> str:
    """The table as GitHub Markdown (short rows padded with empty cells).

    Example
    -------
    >>> print(markdown(BenchTable("t", ("a", "b"), [["1", "x|y"], ["2"]])))
    | a | b |
    | --- | --- |
    | 1 | x\\|y |
    | 2 |  |
    """
    width = len(table.columns)
    lines = [
        "| " + " | ".join(table.columns) + " |",
        "| " + " | ".join("---" for _ in table.columns) + " |",
    ]
    for row in table.rows:
        cells = [_cell(c) for c in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
