"""Honest time and peak-memory measurement, one fresh process per point.

CPU peak memory is the process's peak resident set size above its resident size just
before the timed calls. Warm-up runs first (it loads code pages and thread pools, which are
not the model's memory); then the kernel's peak counter is reset (``/proc/self/clear_refs``)
and the timed calls run. Each point runs in a fresh process whose allocator returns large
blocks to the system on free (``MALLOC_MMAP_THRESHOLD_``), so memory freed after warm-up
is not silently reused and the peak is the point's own. On CUDA it is
``torch.cuda.max_memory_allocated`` above the allocation before the timed calls. Times are
wall-clock medians of repeated calls after warm-up (CUDA-synchronised).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

#: Allocations from this size up are mmapped and returned to the system when freed.
MMAP_THRESHOLD = 64 * 1024


@dataclass(frozen=True)
class Measurement:
    """Result of timing one callable.

    ``times_s`` are wall-clock times; ``cpu_times_s`` the CPU time the process used in the
    same calls (all its threads). With one thread and other jobs on the machine, CPU time
    is the steadier of the two: waiting for a core counts in wall time only.
    """

    times_s: list[float]
    median_s: float
    peak_mem_bytes: int
    device: str
    cpu_times_s: list[float] = field(default_factory=list)
    median_cpu_s: float = 0.0


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to ru_maxrss)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size since the last :func:`reset_peak_rss` (VmHWM; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(
    step: Callable[[], Any], device: torch.device, repeats: int = 3, warmup: int = 1
) -> Measurement:
    """Time ``step`` ``repeats`` times after ``warmup`` calls; peak memory above the baseline.

    Call this once per process for an honest CPU peak (the RSS peak is process-wide).

    Arguments
    ---------
    step : callable
        The work to time, called without arguments.
    device : torch.device
        Where it runs: peak memory is the resident set on CPU, allocated memory on CUDA.
    repeats, warmup : int
        Timed calls (their median is reported) and untimed calls before them.

    Returns
    -------
    Measurement
        Wall and CPU times of every timed call, their medians and the peak memory.

    Example
    -------
    >>> m = measure(lambda: torch.ones(1000).sum(), torch.device("cpu"), repeats=2)
    >>> len(m.times_s), m.peak_mem_bytes >= 0
    (2, True)
    """
    cuda = device.type == "cuda"
    for _ in range(warmup):
        step()
    gc.collect()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        reset_peak_rss()
        base = current_rss_bytes()
    times, cpu_times = [], []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    peak = torch.cuda.max_memory_allocated(device) - base if cuda else peak_rss_bytes() - base
    return Measurement(
        times,
        statistics.median(times),
        max(int(peak), 0),
        str(device),
        cpu_times,
        statistics.median(cpu_times),
    )


def run_point(
    module: str, spec: dict[str, Any], timeout_s: float = 1800.0, threads: int | None = None
) -> dict[str, Any]:
    """Run ``python -m <module>`` in a fresh process with ``spec`` as JSON on stdin.

    A failed point returns ``{"error": "<last line of stderr>"}`` instead of raising, so
    one out-of-memory point does not lose a whole sweep.

    Arguments
    ---------
    module : str
        The point's module; it prints one JSON object on its last stdout line.
    spec : dict
        What to measure, sent as JSON on its stdin.
    timeout_s : float
        A point running longer is killed and reported as an error.
    threads : int or None
        The process's intra-op threads (``OMP_NUM_THREADS``); None = torch's default.

    Returns
    -------
    dict
        The module's JSON object, or ``{"error": ...}``.
    """
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    try:
        res = subprocess.run(
            [sys.executable, "-m", module],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        return {"error": lines[-1] if lines else f"exit code {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


#: Called with each point's record as soon as the point is done (a progress line).
Progress = Callable[[dict[str, Any]], None]


def run_points(
    module: str,
    points: Iterable[tuple[dict[str, Any], dict[str, Any]]],
    threads: int | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Measure each point in a fresh process (:func:`run_point`), one after the other.

    Arguments
    ---------
    module : str
        The point's module, as for :func:`run_point`.
    points : iterable of (record, spec)
        What identifies each point in the results (mixer, length, ...) and its spec.
    threads : int or None
        Intra-op threads of every point's process; None = torch's default.
    progress : Progress or None
        Told of each record as soon as its point is done.

    Returns
    -------
    list of dict
        Each point's record updated with its result (or ``error``), in the order given.
    """
    records = []
    for record, spec in points:
        records.append({**record, **run_point(module, spec, threads=threads)})
        if progress is not None:
            progress(records[-1])
    return records


def measurement_dict(m: Measurement) -> dict[str, Any]:
    """JSON-ready form of a :class:`Measurement`."""
    return asdict(m)
