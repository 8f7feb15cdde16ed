"""``smx bench roofline``: achieved FLOP/s of SummaryMixing against plain matmuls of its shapes.

For a mixer alone and for the full encoder (the benchmark config's model, input of
``d_model`` features) a forward+backward pass is run once under
:class:`torch.utils.flop_counter.FlopCounterMode`, which counts the FLOPs of every matmul
and convolution and, through its ``custom_mapping`` hook, records the shape of every matmul
(``mm``, ``addmm``, ``bmm``, ``baddbmm``). The pass is then timed (median of repeats), and
every recorded matmul is replayed as a plain ``torch.mm`` / ``torch.bmm`` of the same shape
on fresh contiguous tensors, as many times as the model called it, in the same process. The
efficiency is the model's achieved FLOP/s (all counted FLOPs / its time) divided by the
FLOP/s of those plain matmuls: what the hardware gives for the same arithmetic, without the
layout copies, element-wise work and Python overhead around it. ``cpu_efficiency`` is the
same ratio with the process's CPU time instead of wall time, which waiting for a core
shared with other jobs does not inflate.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smx.bench.common import (
    check_kinds,
    check_seconds,
    check_threads,
    compile_blocks,
    encoder_frames,
    shown_path,
    variant,
)
from smx.config import Params

if TYPE_CHECKING:
    from smx.bench.measure import Progress

SCOPES = ("mixer", "encoder")


@dataclass(frozen=True)
class MatmulCall:
    """One matmul the model ran: ``batch`` products of ``[m, k] @ [k, n]``."""

    batch: int
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        """``2 * batch * m * k * n`` (one multiply and one add per term, as torch counts)."""
        return 2 * self.batch * self.m * self.k * self.n


def _matmul_shapes(op: str, args: tuple) -> MatmulCall:
    """The product of an ``mm``/``addmm``/``bmm``/``baddbmm`` call from its argument shapes."""
    a, b = (args[1], args[2]) if op in ("addmm", "baddbmm") else (args[0], args[1])
    if op in ("mm", "addmm"):
        return MatmulCall(1, int(a[0]), int(a[1]), int(b[1]))
    return MatmulCall(int(a[0]), int(a[1]), int(a[2]), int(b[2]))


def conv_backward_flops(
    grad_out_shape: Any,
    x_shape: Any,
    w_shape: Any,
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """FLOPs of ``aten.convolution_backward``, grouped convolutions included.

    Each requested gradient (input, weight) costs what the forward convolution costs. The
    weight-gradient formula of torch 2.14's FlopCounterMode ignores ``groups`` and counts a
    depthwise convolution's weight gradient ``groups`` times over (256x for the Conformer's
    depthwise convolution), so this formula replaces it.

    Example
    -------
    >>> conv_backward_flops([1, 8, 10], [1, 8, 12], [8, 1, 3], None, [1], [0], [1], False,
    ...                     [0], 8, [True, True, False])  # 2 x (2 * 10 * 8 * 3)
    960
    """
    from torch.utils.flop_counter import conv_flop_count

    transposed, output_mask = args[4], args[7]
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn: Callable[[], Any]) -> tuple[int, list[MatmulCall]]:
    """Run ``fn`` once; return its FLOPs (FlopCounterMode) and every matmul it ran.

    Convolution backward passes are counted with :func:`conv_backward_flops`.

    Example
    -------
    >>> import torch
    >>> a, b = torch.randn(8, 16), torch.randn(16, 4)
    >>> flops, calls = count_flops(lambda: a @ b)
    >>> flops, calls
    (1024, [MatmulCall(batch=1, m=8, k=16, n=4)])
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    aten = torch.ops.aten
    calls: list[MatmulCall] = []

    def recording(name: str, formula: Callable[..., int]) -> Callable[..., int]:
        plain = getattr(formula, "__wrapped__", formula)  # the registry's formula on shapes

        def count(*args: Any, **kwargs: Any) -> int:
            calls.append(_matmul_shapes(name, args))
            return plain(*args, **kwargs)

        return count

    ops = {"mm": aten.mm, "addmm": aten.addmm, "bmm": aten.bmm, "baddbmm": aten.baddbmm}
    mapping = {op: recording(name, flop_registry[op]) for name, op in ops.items()}
    mapping[aten.convolution_backward] = conv_backward_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops(), calls


def matmul_seconds(calls: list[MatmulCall], repeats: int, device: Any) -> tuple[float, float]:
    """Wall and CPU time to run ``calls`` as plain matmuls on fresh contiguous tensors.

    Calls of one shape run back to back, as many times as the model made them.

    Arguments
    ---------
    calls : list of MatmulCall
        The matmuls the model ran.
    repeats : int
        Timed runs of each shape (after one warm-up run).
    device : torch.device
        Where to run them.

    Returns
    -------
    tuple of float
        Wall and CPU seconds: the sum over shapes of the median time of that shape's run.
    """
    import statistics

    import torch

    wall = cpu = 0.0
    for call, count in Counter(calls).items():
        a = torch.randn(call.batch, call.m, call.k, device=device)
        b = torch.randn(call.batch, call.k, call.n, device=device)
        if call.batch == 1:
            a, b = a[0], b[0]
        op = torch.mm if call.batch == 1 else torch.bmm

        def run(a: torch.Tensor = a, b: torch.Tensor = b, op: Callable = op, n: int = count):
            for _ in range(n):
                op(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        run()  # warm-up
        walls, cpus = [], []
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu_start)
        wall += statistics.median(walls)
        cpu += statistics.median(cpus)
    return wall, cpu


@dataclass
class RooflineBench:
    """What to measure: scopes (mixer, encoder) of each mixer kind at each length.

    Arguments
    ---------
    config, params : Path, Params
        The benchmark config file and its validated content, whose ``variants`` hold one
        entry per mixer kind.
    kinds : list of str
        The mixer kinds to measure.
    scopes : list of str
        ``mixer`` (one mixer layer) and/or ``encoder`` (the full encoder).
    lengths_s : list of float
        Input lengths in seconds.
    batch, repeats, warmup : int
        Utterances per pass, timed passes (median reported) and untimed passes before them.
    device : str
        ``cpu`` or ``cuda``.
    threads : int or None
        Intra-op threads of every point's process; None = torch's default (one per core).
    compile : bool
        ``torch.compile`` the encoder's blocks (or the mixer) before the timed passes.
    """

    config: Path
    params: Params
    kinds: list[str]
    scopes: list[str]
    lengths_s: list[float]
    batch: int = 1
    repeats: int = 3
    warmup: int = 1
    device: str = "cpu"
    threads: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        check_threads(self.threads)
        self.kinds = check_kinds(self.kinds)
        self.lengths_s = check_seconds(self.lengths_s, "lengths")
        bad = [s for s in self.scopes if s not in SCOPES]
        if bad or not self.scopes:
            raise ValueError(f"scopes: must be a list of {list(SCOPES)}, got {self.scopes}")
        if self.repeats < 1:
            raise ValueError(f"repeats: must be an integer >= 1, got {self.repeats}")
        for kind in self.kinds:
            variant(self.params, kind, self.config)

    def meta(self) -> dict[str, Any]:
        """JSON-ready description of the run."""
        return {k: v for k, v in asdict(self).items() if k != "params"} | {
            "config": shown_path(self.config)
        }


def run(bench: RooflineBench, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Measure every (scope, kind, length) point of ``bench``, each in a fresh process.

    ``progress`` is told of each record as it is done. Returns one record per point:
    ``scope``, ``kind``, ``seconds``, ``frames``, the FLOP counts, times and efficiencies
    (or ``error``).
    """
    from smx.bench.measure import run_points

    return run_points("smx.bench.roofline", _points(bench), bench.threads, progress)


def _points(bench: RooflineBench) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(record, spec)`` of every point, scope by scope, kind by kind, length by length."""
    for scope, kind in ((s, k) for s in bench.scopes for k in bench.kinds):
        cfg = variant(bench.params, kind, bench.config)
        for seconds in bench.lengths_s:
            frames = encoder_frames(cfg.model, seconds, cfg.data.sample_rate)
            spec = {
                "scope": scope,
                "params": cfg.model_dump(mode="json"),
                "frames": frames,
                "batch": bench.batch,
                "repeats": bench.repeats,
                "warmup": bench.warmup,
                "device": bench.device,
                "compile": bench.compile,
            }
            yield {"scope": scope, "kind": kind, "seconds": seconds, "frames": frames}, spec


def main_point() -> None:
    """One point in its own process: spec JSON on stdin, result JSON on stdout."""
    import torch

    from smx.bench.measure import measure
    from smx.nn.build import build_encoder, build_mixer

    spec = json.loads(sys.stdin.read())
    params = Params.model_validate(spec["params"])
    torch.manual_seed(params.seed)
    device = torch.device(spec["device"])
    model = params.model
    d_model, frames, batch = model.encoder.d_model, spec["frames"], spec["batch"]
    x = torch.randn(batch, frames, d_model, device=device, requires_grad=True)  # [B, T, D]
    module: torch.nn.Module
    if spec["scope"] == "mixer":
        module = build_mixer(model.mixer, model.encoder).to(device).train()
        pad_mask = torch.ones(batch, frames, dtype=torch.bool, device=device)  # [B, T]

        def step() -> None:
            module(x, pad_mask).sum().backward()

    else:
        module = build_encoder(model, input_dim=d_model).to(device).train()
        lengths = torch.full((batch,), frames, dtype=torch.long, device=device)

        def step() -> None:
            module(x, lengths).last.sum().backward()

    flops, calls = count_flops(step)  # eager: the same arithmetic as the compiled graph
    if spec["compile"]:
        compile_blocks(module) if spec["scope"] == "encoder" else module.compile()
    m = measure(step, device, repeats=spec["repeats"], warmup=spec["warmup"])
    matmul_flops = sum(c.flops for c in calls)
    reference_s, reference_cpu_s = matmul_seconds(calls, spec["repeats"], device)
    achieved, reference = flops / m.median_s, matmul_flops / reference_s
    result = {
        "flops": flops,
        "matmul_flops": matmul_flops,
        "matmul_calls": len(calls),
        "matmul_shapes": len(set(calls)),
        "median_s": m.median_s,
        "times_s": m.times_s,
        "median_cpu_s": m.median_cpu_s,
        "achieved_flops_per_s": achieved,
        "matmul_time_s": reference_s,
        "matmul_cpu_s": reference_cpu_s,
        "matmul_flops_per_s": reference,
        "efficiency": achieved / reference,
        # the same with the CPU time of the process (steadier when other jobs share the cores)
        "cpu_efficiency": (flops / m.median_cpu_s) / (matmul_flops / reference_cpu_s),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main_point()
