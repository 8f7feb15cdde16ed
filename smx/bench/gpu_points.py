"""The pre-training steps ``smx bench gpu`` measures, and the process that measures them.

A point is one (variant, audio length, eager or compiled) step of the paper-scale configs in
bf16 autocast: log-mel front-end, encoder, SSL loss, backward, clipping, AdamW (the loop of
:mod:`smx.bench.pretrain`, under :func:`smx.train.loop.autocast_context`). Its batch is the
paper's per-GPU batch, ``data.max_batch_duration`` seconds of audio per step: 18, 9 and 4
utterances of 20, 40 and 80 s for wav2vec 2.0 (360 s), 20, 10 and 5 for BEST-RQ (400 s).

On CUDA the step time comes from CUDA events and the memory is
``torch.cuda.max_memory_allocated`` during the timed steps (weights, AdamW moments and the
step's activations). On a CPU the time is ``time.perf_counter`` and the memory is not
measured (``None``): the process measures many points, and a process-wide resident peak
would not be the point's own.

One process measures a list of points (:func:`main`: specs on stdin, one line per point on
stdout, prefixed :data:`LINE_PREFIX`). An out-of-memory point is recorded and the process goes
on; any other failure is recorded and the process exits with :data:`EXIT_FAILED`, so that the
caller starts a fresh process for the points after it (a CUDA error can leave the device
unusable for the rest of the process).
"""

from __future__ import annotations

import gc
import json
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smx.config import Params, deep_merge, load
from smx.project import project_root

if TYPE_CHECKING:
    import torch

#: Marks the lines of stdout that carry a point's record.
LINE_PREFIX = "smx-gpu-point "
#: Exit status of a worker that stopped after a failure other than out-of-memory.
EXIT_FAILED = 3

GiB = 2**30


@dataclass(frozen=True)
class Variant:
    """A paper-scale config as ``smx bench gpu`` measures it.

    Arguments
    ---------
    name : str
        Its name in the tables (``<objective>_<mixer>``).
    config : str
        The config file, relative to the project root.
    patch : dict
        Changes to the file's values (:func:`smx.config.deep_merge`).
    label : str
        What it is, in a few words.
    """

    name: str
    config: str
    patch: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def params(self, quick: bool = False) -> Params:
        """The variant's validated config; with ``quick``, shrunk to a one-layer d_model 32 model.

        Example
        -------
        >>> p = VARIANTS["w2v2_mhsa_relpos"].params(quick=True)
        >>> p.model.mixer.pos, p.model.mixer.relpos, p.model.encoder.pos_enc, p.model.encoder.d_model
        ('relpos', 'symmetric', 'none', 32)
        """
        data = load(project_root() / self.config).model_dump(mode="json")
        data = deep_merge(data, self.patch)
        if quick:
            data = deep_merge(data, quick_patch(data))
        return Params.model_validate(data)


#: MHSA with SpeechBrain's relative positions (RelPosEncXL, |i - j|): the papers' baseline.
RELPOS = {
    "model": {"encoder": {"pos_enc": "none"}, "mixer": {"pos": "relpos", "relpos": "symmetric"}}
}

#: Every variant, in the order of the tables.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("w2v2_summarymixing", "configs/w2v2_155m_summarymixing.yaml", {}, "SummaryMixing"),
        Variant(
            "w2v2_mhsa_relpos", "configs/w2v2_155m_mhsa.yaml", RELPOS, "MHSA, relative positions"
        ),
        Variant(
            "w2v2_mhsa_sdpa", "configs/w2v2_155m_mhsa.yaml", {}, "MHSA, absolute positions, SDPA"
        ),
        *(
            Variant(f"bestrq_{kind}", f"configs/bestrq_base_{kind}.yaml", {}, f"BEST-RQ, {kind}")
            for kind in ("summarymixing", "mhsa", "hypermixing", "fastformer", "mamba")
        ),
    )
}

#: ``--quick``: the sizes of a one-layer d_model 32 model, per section and mixer kind.
QUICK_MODEL = {
    "frontend": {"cnn_channels": [16, 16], "conv2d_channels": [4, 4]},
    "encoder": {"num_layers": 1, "d_model": 32, "d_ffn": 64, "csgu_units": 64, "kernel_size": 3},
}
QUICK_MIXER: dict[str, dict[str, Any]] = {
    "summarymixing": {"local_hidden": [32], "local_out": 32, "summary_hidden": [32], "heads": 2},
    "mhsa": {"heads": 2},
    "fastformer": {"heads": 2},
    "hypermixing": {"heads": 2, "hypernet_size": 32},
    "mamba": {"d_state": 4, "expand": 1},
}
QUICK_SSL: dict[str, dict[str, Any]] = {
    "wav2vec2": {"codebook_entries": 8, "code_dim": 8, "proj_dim": 8, "num_negatives": 4},
    "bestrq": {"codebook_size": 16},
}


def quick_patch(data: dict[str, Any]) -> dict[str, Any]:
    """The changes that shrink the config ``data`` (a dumped :class:`Params`) for ``--quick``."""
    mixer = data["model"]["mixer"]["kind"]
    return {
        "model": {**QUICK_MODEL, "mixer": QUICK_MIXER.get(mixer, {})},
        "ssl": QUICK_SSL[data["ssl"]["kind"]],
    }


def paper_batch(params: Params, seconds: float, batch_seconds: float | None = None) -> int:
    """Utterances of ``seconds`` in the paper's per-GPU batch (``data.max_batch_duration``),
    or in ``batch_seconds`` of audio when given; at least one.

    Example
    -------
    >>> p = VARIANTS["w2v2_summarymixing"].params()
    >>> [paper_batch(p, s) for s in (20, 40, 80)], paper_batch(p, 1.0, batch_seconds=2.0)
    ([18, 9, 4], 2)
    """
    per_step = params.data.max_batch_duration if batch_seconds is None else batch_seconds
    return max(1, math.floor(per_step / seconds))


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (CUDA) or the process (CPU) ran out of memory.

    Example
    -------
    >>> is_out_of_memory(MemoryError()), is_out_of_memory(ValueError("x"))
    (True, False)
    """
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, with its type.

    Example
    -------
    >>> first_line(ValueError("bad\\nmore"))
    'ValueError: bad'
    """
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def oom_message(exc: BaseException) -> str:
    """The allocator's sentence of an out-of-memory error, without its source location.

    Example
    -------
    >>> oom_message(RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. "
    ...     "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes."))
    "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes."
    >>> oom_message(MemoryError())
    'MemoryError'
    """
    text = first_line(exc).split(": ", 1)[-1]
    text = text.split(". ", 1)[-1] if text.startswith("[enforce fail") else text
    return text.split(". GPU ", 1)[0][:160]


class MemoryCap:
    """``--max-memory``: the most memory a point may take; exceeding it is an out-of-memory.

    On CUDA it is the allocator's limit (``torch.cuda.set_per_process_memory_fraction``); on a
    CPU, the process's address-space limit (``RLIMIT_AS``) set that far above its size when
    the point starts. Either way the point fails the way a real out-of-memory does.
    """

    def __init__(self, device: torch.device, max_bytes: int | None) -> None:
        self.device, self.max_bytes = device, max_bytes
        self.saved = resource.getrlimit(resource.RLIMIT_AS)

    def __enter__(self) -> MemoryCap:
        import torch

        if self.max_bytes is None:
            return self
        if self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory
            torch.cuda.set_per_process_memory_fraction(
                min(1.0, self.max_bytes / total), self.device
            )
        else:
            soft = _address_space_bytes() + self.max_bytes
            hard = self.saved[1]
            resource.setrlimit(resource.RLIMIT_AS, (soft if hard < 0 else min(soft, hard), hard))
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.max_bytes is None:
            return
        if self.device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, self.device)
        else:
            resource.setrlimit(resource.RLIMIT_AS, self.saved)


def _address_space_bytes() -> int:
    """The process's virtual size (``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _compile(objective: Any, backend: str) -> None:
    """``torch.compile`` the encoder's blocks with ``backend`` (regional, as ``--compile``)."""
    from smx.bench.common import compile_blocks

    if backend == "inductor":
        compile_blocks(objective.encoder)
    else:
        for block in objective.encoder.blocks:
            block.compile(backend=backend)


def _timer(device: torch.device) -> Callable[[Callable[[], None]], float]:
    """Seconds one call takes: CUDA events on a GPU, ``time.perf_counter`` on a CPU."""
    import torch

    def cuda(fn: Callable[[], None]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0

    def cpu(fn: Callable[[], None]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return cuda if device.type == "cuda" else cpu


def measure_point(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the variant, run ``warmup`` untimed and ``repeats`` timed steps; the measurement."""
    import torch

    from smx.ssl.objective import build_objective
    from smx.train.loop import autocast_context
    from smx.train.schedule import make_optimizer

    params = Params.model_validate(spec["config"])
    device = torch.device(spec["device"])
    torch.manual_seed(params.seed)
    objective = build_objective(params).to(device).train()
    if spec["compiled"]:
        _compile(objective, spec["compile_backend"])
    optimizer = make_optimizer(objective.parameters(), params.train)
    samples = round(spec["seconds"] * params.data.sample_rate)
    batch = {
        "audio": torch.randn(spec["batch"], samples, device=device),  # [B, S]
        "audio_lens": torch.full((spec["batch"],), samples, device=device),  # [B]
    }
    losses: list[float] = []

    def step() -> None:
        with autocast_context(device, spec["precision"]):
            out = objective(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), params.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))

    timer = _timer(device)
    warmup_s = sum(timer(step) for _ in range(spec["warmup"]))
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = [timer(step) for _ in range(spec["repeats"])]
    return {
        "median_s": statistics.median(times),
        "times_s": times,
        "warmup_s": warmup_s,
        "peak_mem_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        "params": sum(p.numel() for p in objective.parameters()),
        "loss": losses[-1],
        "loss_finite": all(math.isfinite(v) for v in losses),
    }


def run_point(spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Measure one point under its memory cap: ``(record, the process may go on)``."""
    import torch

    device = torch.device(spec["device"])
    max_bytes = None if spec.get("max_memory_gib") is None else int(spec["max_memory_gib"] * GiB)
    try:
        with MemoryCap(device, max_bytes):
            return measure_point(spec), True
    except Exception as exc:
        oom = is_out_of_memory(exc)
        record = {"oom": oom_message(exc)} if oom else {"error": first_line(exc)}
        del exc
        return record, oom
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if spec["compiled"]:
            torch._dynamo.reset()


def not_run(previous: dict[str, Any] | None, spec: dict[str, Any]) -> str | None:
    """Why a point is not run: the same variant and mode did not fit, failed or is too slow."""
    from smx.bench.pretrain import over_budget

    if previous is None:
        return None
    if "oom" in previous:
        return f"not run: out of memory at {previous['seconds']:g} s"
    return over_budget(previous, spec["seconds"], spec["step_budget_s"])


def main() -> None:
    """Measure the points of stdin's JSON list, one record line each on stdout."""
    specs = json.loads(sys.stdin.read())
    previous: dict[tuple[str, bool], dict[str, Any]] = {}
    for spec in specs:
        key = (spec["variant"], spec["compiled"])
        reason = not_run(previous.get(key), spec)
        record, go_on = ({"skipped": reason}, True) if reason else run_point(spec)
        record = {"id": spec["id"], "seconds": spec["seconds"], **record}
        previous[key] = record
        print(LINE_PREFIX + json.dumps(record), flush=True)
        if not go_on:
            sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
