"""Honest time and peak-memory measurement, one fresh process per point.

CPU peak memory is the process's peak resident set size (``ru_maxrss``) above its
resident size just before the first timed call, so what earlier points allocated cannot
hide or inflate a later one; on CUDA it is ``torch.cuda.max_memory_allocated`` above the
allocation before the first call. Times are wall-clock medians of repeated calls after
warm-up (CUDA-synchronised).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Measurement:
    """Result of timing one callable."""

    times_s: list[float]
    median_s: float
    peak_mem_bytes: int
    device: str


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to ru_maxrss)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(step: Callable[[], Any], device: torch.device, repeats: int = 3, warmup: int = 1) -> Measurement:
    """Time ``step`` ``repeats`` times after ``warmup`` calls; peak memory above the baseline.

    Call this once per process for an honest CPU peak (the RSS peak is process-wide).

    Example
    -------
    >>> m = measure(lambda: torch.ones(1000).sum(), torch.device("cpu"), repeats=2)
    >>> len(m.times_s), m.peak_mem_bytes >= 0
    (2, True)
    """
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = current_rss_bytes()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) - base if cuda else peak_rss_bytes() - base
    return Measurement(times, statistics.median(times), max(int(peak), 0), str(device))


def run_point(module: str, spec: dict[str, Any], timeout_s: float = 1800.0) -> dict[str, Any]:
    """Run ``python -m <module>`` in a fresh process with ``spec`` as JSON on stdin.

    The module prints one JSON object on its last stdout line; it is returned. A failed
    point returns ``{"error": "<last line of stderr>"}`` instead of raising, so one
    out-of-memory point does not lose a whole sweep.
    """
    try:
        res = subprocess.run(
            [sys.executable, "-m", module],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        return {"error": lines[-1] if lines else f"exit code {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def measurement_dict(m: Measurement) -> dict[str, Any]:
    """JSON-ready form of a :class:`Measurement`."""
    return asdict(m)
