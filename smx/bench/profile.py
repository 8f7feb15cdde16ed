"""``smx bench profile``: the operators that take a pre-training step's time, per mixer.

Profile before optimising: one step of ``smx bench pretrain`` (front-end, encoder, the SSL
loss, backward, clipping, AdamW) runs under :mod:`torch.profiler` for each mixer, in a
fresh process per mixer, after untimed warm-up steps (compilation, AdamW moments). The
operators are ranked by their *self* time (time inside the operator, not in the operators
it calls): on the CPU always, on CUDA too when the step runs there. Every row gives the
operator's calls, its self time, its share of the step's total self time and its total
time (with its children). ``fast`` is whether the point ran the step with training's
defaults or eagerly (the modes ``default`` and ``eager`` of :mod:`smx.bench.pretrain`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smx.bench.common import check_seconds, check_threads, encoder_frames, shown_path, variant
from smx.config import NO_MIXING, Params

#: The mixers profiled by default: SummaryMixing, the MHSA baseline and the floor.
DEFAULT_KINDS = ("summarymixing", "mhsa", NO_MIXING)

#: Operators listed per mixer by default.
DEFAULT_TOP = 15


@dataclass
class ProfileBench:
    """What to profile: one config, its mixers, one length.

    Arguments
    ---------
    config : Path
        The benchmark config (``variants`` names the mixers).
    params : Params
        Its validated content.
    kinds : list of str
        Variants to profile, each a variant of ``params``.
    seconds : float
        Utterance length.
    batch : int
        Utterances per step.
    top : int
        Operators listed per mixer.
    warmup : int
        Untimed steps before the profiled one (at least 1).
    fast : bool
        Run the default fast path (compiled blocks, recomputation) rather than eager.
    device : str
        ``cpu`` or ``cuda``.
    threads : int or None
        Intra-op threads of each point's process; None = torch's default.
    """

    config: Path
    params: Params
    kinds: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))
    seconds: float = 20.0
    batch: int = 1
    top: int = DEFAULT_TOP
    warmup: int = 1
    fast: bool = True
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.kinds:
            raise ValueError("kinds: no variant given")
        self.seconds = check_seconds([self.seconds], "seconds")[0]
        check_threads(self.threads)
        for name, value in (("batch", self.batch), ("top", self.top), ("warmup", self.warmup)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        for kind in self.kinds:
            variant(self.params, kind, self.config)

    def meta(self) -> dict[str, Any]:
        """JSON-ready description of the run."""
        return {
            "config": shown_path(self.config),
            "kinds": self.kinds,
            "seconds": self.seconds,
            "batch": self.batch,
            "top": self.top,
            "warmup": self.warmup,
            "fast": self.fast,
            "device": self.device,
            "threads": self.threads,
        }


def run(bench: ProfileBench, progress: Any = None) -> list[dict[str, Any]]:
    """Profile every mixer in its own process; one record per mixer (``ops`` or ``error``)."""
    from smx.bench.measure import run_points
    from smx.bench.pretrain import mode_params

    points = []
    for kind in bench.kinds:
        cfg = mode_params(variant(bench.params, kind, bench.config), _mode(bench.fast))
        record = {
            "kind": kind,
            "seconds": bench.seconds,
            "frames": encoder_frames(cfg.model, bench.seconds, cfg.data.sample_rate),
        }
        spec = {"params": cfg.model_dump(mode="json"), **bench.meta()}
        points.append((record, spec))
    return run_points("smx.bench.profile", points, threads=bench.threads, progress=progress)


def _mode(fast: bool) -> str:
    return "default" if fast else "eager"


def top_operators(events: Any, top: int, device: str) -> dict[str, Any]:
    """The ``top`` operators of ``events`` (``profiler.key_averages()``) by self time.

    On CUDA they are ranked by self device time, else by self CPU time; times are ms.
    """
    cuda = device == "cuda"
    rows = []
    for e in events:
        row = {
            "name": e.key,
            "calls": int(e.count),
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "cpu_ms": e.cpu_time_total / 1e3,
        }
        if cuda:
            row["self_cuda_ms"] = e.self_device_time_total / 1e3
        rows.append(row)
    key = "self_cuda_ms" if cuda else "self_cpu_ms"
    total = sum(r[key] for r in rows) or 1.0
    rows.sort(key=lambda r: r[key], reverse=True)
    for r in rows:
        r["share"] = r[key] / total
    return {"ranked_by": key, "total_self_ms": total, "ops": rows[:top]}


def main_point() -> None:
    """One mixer in its own process: spec JSON on stdin, the top operators on stdout."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from smx.bench.pretrain import pretrain_step

    spec = json.loads(sys.stdin.read())
    params = Params.model_validate(spec["params"])
    device = torch.device(spec["device"])
    step, _ = pretrain_step(params, spec["seconds"], spec["batch"], device)
    for _ in range(spec["warmup"]):
        step()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    print(json.dumps(top_operators(prof.key_averages(), spec["top"], device.type)))


if __name__ == "__main__":
    main_point()
