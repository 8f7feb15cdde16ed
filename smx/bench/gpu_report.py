"""The tables of ``smx bench gpu``: points, the published claims, and the checks, in Markdown.

Everything here reads only the stored run (``gpu.json``'s ``meta``, ``checks`` and
``records``), so the tables can be rebuilt without measuring again.

Each point is compared with its objective's MHSA with relative positions (the papers'
baseline: ``w2v2_mhsa_relpos``, ``bestrq_mhsa``) at the same length, batch and mode. The
claims are those of the wav2vec 2.0 155M comparison (arXiv 2407.13377 reports SummaryMixing's
time and memory against relative-position MHSA): at 20 s at most :data:`TARGETS` [20] of
MHSA's time and peak memory, at 80 s at most :data:`TARGETS` [80], and a time per utterance
at 80 s at most :data:`SCALING_TARGET` times that at 20 s (linear in the length, plus the
fixed costs). Against MHSA on fused SDPA the ratios are reported without a target, with the
lengths where SummaryMixing stops paying (its time or memory at least MHSA's).
"""

from __future__ import annotations

from typing import Any

from smx.bench.mixers import measured

#: Claimed (time, memory) of SummaryMixing over relative-position MHSA, by length (s).
TARGETS: dict[float, tuple[float, float]] = {20.0: (0.82, 0.77), 80.0: (0.5, 0.5)}
#: Claimed time per utterance at 80 s over that at 20 s.
SCALING_TARGET = 4.4
#: The baseline of each objective's ratios (MHSA with relative positions).
BASELINES = {"wav2vec2": "w2v2_mhsa_relpos", "bestrq": "bestrq_mhsa"}
SUMMARYMIXING, SDPA = "w2v2_summarymixing", "w2v2_mhsa_sdpa"

GiB = 2**30

Records = list[dict[str, Any]]


def _find(records: Records, variant: str, mode: str, seconds: float) -> dict[str, Any] | None:
    for rec in records:
        if (rec["variant"], rec["mode"], rec["seconds"]) == (variant, mode, seconds):
            return rec
    return None


def ratio(rec: dict[str, Any], base: dict[str, Any] | None, key: str) -> float | None:
    """``rec[key] / base[key]`` when both were measured with the same batch, else None.

    Example
    -------
    >>> ratio({"median_s": 1.0, "batch": 4}, {"median_s": 2.0, "batch": 4}, "median_s")
    0.5
    >>> print(ratio({"median_s": 1.0, "batch": 4}, {"oom": "x", "batch": 4}, "median_s"))
    None
    """
    if base is None or not (measured(rec) and measured(base)) or rec["batch"] != base["batch"]:
        return None
    if rec.get(key) is None or not base.get(key):
        return None
    return rec[key] / base[key]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def note(rec: dict[str, Any]) -> str:
    """What happened to a point that has no measurement (or a non-finite loss)."""
    for key, prefix in (("oom", "out of memory: "), ("error", "failed: "), ("skipped", "")):
        if key in rec:
            return prefix + rec[key]
    return "" if rec.get("loss_finite", True) else "loss not finite"


def point_rows(records: Records) -> list[list[str]]:
    """One row per point: time, memory and the ratios to the objective's baseline."""
    rows = []
    for rec in records:
        base = _find(records, BASELINES[rec["objective"]], rec["mode"], rec["seconds"])
        peak = rec.get("peak_mem_bytes")
        rows.append(
            [
                rec["variant"],
                rec["mode"],
                f"{rec['seconds']:g}",
                str(rec["batch"]),
                _fmt(rec.get("median_s"), 3),
                _fmt(rec["median_s"] / rec["batch"], 4) if measured(rec) else "",
                "n/a" if measured(rec) and peak is None else _fmt(peak and peak / GiB, 1),
                _fmt(ratio(rec, base, "median_s")),
                _fmt(ratio(rec, base, "peak_mem_bytes")),
                note(rec),
            ]
        )
    return rows


POINT_COLUMNS = (
    "variant",
    "mode",
    "length (s)",
    "batch",
    "step (s)",
    "s per utterance",
    "peak (GiB)",
    "time / relpos MHSA",
    "memory / relpos MHSA",
    "note",
)


def _verdict(value: float | None, target: float | None) -> str:
    if value is None:
        return "not measured"
    if target is None:
        return "reported"
    return "met" if value <= target else "NOT met"


def _scaling(records: Records, mode: str, lengths: list[float]) -> list[list[str]]:
    if len(lengths) < 2:
        return []
    short, long = lengths[0], lengths[-1]
    a, b = (_find(records, SUMMARYMIXING, mode, s) for s in (short, long))
    value = None
    if a is not None and b is not None and measured(a) and measured(b):
        value = (b["median_s"] / b["batch"]) / (a["median_s"] / a["batch"])
    target = SCALING_TARGET if (short, long) == (20.0, 80.0) else None
    what = f"SummaryMixing time per utterance, {long:g} s / {short:g} s"
    return [[mode, what, _fmt(value), _fmt(target, 1), _verdict(value, target)]]


def claim_rows(records: Records, lengths: list[float]) -> list[list[str]]:
    """The claims of the wav2vec 2.0 155M comparison, per mode, with their verdicts."""
    rows = []
    for mode in ("eager", "compiled"):
        if not any(r["mode"] == mode and r["variant"] == SUMMARYMIXING for r in records):
            continue
        for seconds in lengths:
            sm = _find(records, SUMMARYMIXING, mode, seconds)
            if sm is None:
                continue
            targets = TARGETS.get(seconds, (None, None))
            for base_name, label in (("w2v2_mhsa_relpos", "relpos MHSA"), (SDPA, "SDPA MHSA")):
                base = _find(records, base_name, mode, seconds)
                if base is None:
                    continue
                for i, (key, what) in enumerate(
                    (("median_s", "time"), ("peak_mem_bytes", "memory"))
                ):
                    value = ratio(sm, base, key)
                    target = targets[i] if base_name != SDPA else None
                    claim = f"SummaryMixing {what} / {label} at {seconds:g} s"
                    rows.append([mode, claim, _fmt(value), _fmt(target), _verdict(value, target)])
        rows += _scaling(records, mode, lengths)
    return rows


def stops_paying(records: Records, lengths: list[float]) -> str:
    """Where SummaryMixing is no faster or no smaller than MHSA on fused SDPA (eager)."""
    found = []
    for seconds in lengths:
        sm, base = (_find(records, v, "eager", seconds) for v in (SUMMARYMIXING, SDPA))
        if sm is None:
            continue
        worse = [
            what
            for key, what in (("median_s", "time"), ("peak_mem_bytes", "memory"))
            if (r := ratio(sm, base, key)) is not None and r >= 1.0
        ]
        if worse:
            found.append(f"{seconds:g} s ({' and '.join(worse)})")
    if not found:
        return "SummaryMixing is faster and smaller than SDPA MHSA at every measured length."
    return "SummaryMixing does not pay against SDPA MHSA at " + ", ".join(found) + "."


def markdown_table(columns: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    """A Markdown table.

    Example
    -------
    >>> print(markdown_table(("a", "b"), [["1", "2"]]))
    | a | b |
    | --- | --- |
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render(data: dict[str, Any]) -> str:
    """The Markdown report of a stored run: setup, checks, points, claims."""
    meta, records = data["meta"], data["records"]
    lengths = sorted({r["seconds"] for r in records})
    checks = [[c["name"], c["status"], c["detail"]] for c in data["checks"]]
    claims = claim_rows(records, lengths)
    parts = [
        f"**{meta['device_name']}**, torch {meta['torch']}, {meta['setup']}",
        markdown_table(("check", "status", "detail"), checks) if checks else "No checks run.",
        markdown_table(POINT_COLUMNS, point_rows(records)),
    ]
    if claims:
        parts.append(markdown_table(("mode", "claim", "value", "target", "verdict"), claims))
        parts.append(stops_paying(records, lengths))
    return "\n\n".join(parts) + "\n"
