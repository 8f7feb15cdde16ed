"""``smx bench gpu``: the GPU path checked and measured in one command (``scripts/gpu_check.sh``).

1. Checks on the device (:mod:`smx.bench.gpu_checks`): padding invariance, streaming
   equality, bf16 autocast against float32 with float32 master weights, one-process DDP
   gradient buckets, NVML.
2. One pre-training step of every paper-scale variant (:mod:`smx.bench.gpu_points`) at 20,
   40 and 80 s in bf16 with the paper's per-GPU batch, eager then compiled: time from CUDA
   events, ``torch.cuda.max_memory_allocated``. The points run in a separate process, in
   order of importance (the wav2vec 2.0 comparison first, compiled last) within a time budget:
   what the budget leaves out is marked in the table, as is every out-of-memory point.
3. ``gpu.json`` and ``gpu.md`` (:mod:`smx.bench.gpu_report`), written atomically; with
   ``--docs``, the block ``bench-gpu`` of that Markdown file too.

``--device cpu --quick`` runs the same code on one-layer d_model 32 models, 0.5 and 1 s
inputs, 2 s of audio per step, SummaryMixing also compiled (at 0.5 s, with the ``aot_eager``
backend: dynamo and AOT autograd without inductor's code generation, which takes about 40 s
on a CPU): the CI run of the GPU path. Without typer or rich (the bare GPU machine has
only torch and the carried wheels): ``python -m smx.bench.gpu --help``.

Exit status: 0 when every check passed and every point was measured or marked (out of
memory, budget); 1 when a check or a point failed; 2 for bad arguments or a missing device.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from smx.bench.gpu_points import EXIT_FAILED, LINE_PREFIX, VARIANTS, paper_batch
from smx.bench.pretrain import DEFAULT_LENGTHS_S

EXIT_USER = 2
QUICK_LENGTHS_S = (0.5, 1.0)
#: ``--quick``: audio per step, and the only variant also measured compiled (shortest length).
QUICK_BATCH_SECONDS = 2.0
QUICK_COMPILED = ("w2v2_summarymixing",)
#: Seconds for all points (8 minutes on one H200 with the install and the checks).
DEFAULT_BUDGET_S = 400.0
QUICK_BUDGET_S = 120.0
#: A point projected to take longer per step than this is skipped (Mamba's PyTorch scan).
DEFAULT_STEP_BUDGET_S = 20.0


class UserError(ValueError):
    """Bad arguments or an unusable device: one sentence, exit 2."""


@dataclass
class GpuBench:
    """What ``smx bench gpu`` runs (the options of :func:`parse`)."""

    device: str = "cuda"
    quick: bool = False
    lengths_s: list[float] = field(default_factory=lambda: list(DEFAULT_LENGTHS_S))
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    compiled: list[str] = field(default_factory=lambda: list(VARIANTS))
    compile_backend: str = "inductor"
    batch: int | None = None
    batch_seconds: float | None = None
    repeats: int = 3
    warmup: int = 1
    budget_s: float = DEFAULT_BUDGET_S
    step_budget_s: float = DEFAULT_STEP_BUDGET_S
    max_memory_gib: float | None = None
    checks: bool = True
    out: Path = Path("reports/bench/gpu")
    docs: Path | None = None


def _list(value: str, allowed: list[str], option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if value in ("all", "none"):
        return list(allowed) if value == "all" else []
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise UserError(f"{option}: unknown variant(s) {unknown}; choose from {allowed}")
    return items


def _lengths(value: str) -> list[float]:
    try:
        lengths = sorted(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--lengths: comma-separated seconds expected, got {value!r}") from None
    if not lengths or lengths[0] <= 0:
        raise UserError(f"--lengths: give durations in seconds above 0, got {value!r}")
    return lengths


def parser() -> argparse.ArgumentParser:
    """The options (``python -m smx.bench.gpu --help``)."""
    p = argparse.ArgumentParser(
        prog="smx bench gpu",
        description="Check and measure the GPU path: checks on the device, then one bf16 "
        "pre-training step per paper-scale variant and length, eager and compiled.",
        epilog="On a bare GPU machine: scripts/gpu_check.sh (installs the carried wheels first).",
    )
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="tiny models and lengths (CI on a CPU)")
    p.add_argument("--lengths", help="seconds, comma-separated (default 20,40,80; quick 0.5,1)")
    p.add_argument("--variants", default="all", help=f"comma-separated of {', '.join(VARIANTS)}")
    p.add_argument("--compile", help="variants also measured compiled: a list, all or none")
    p.add_argument("--compile-backend", help="torch.compile backend (inductor; quick aot_eager)")
    p.add_argument("--batch", type=int, help="utterances per step (default: the paper's batch)")
    p.add_argument("--batch-seconds", type=float, help="audio per step (default: the config's)")
    p.add_argument("--repeats", type=int, help="timed steps per point (3; quick 2)")
    p.add_argument("--budget", type=float, help="seconds for all points (400; quick 120)")
    p.add_argument(
        "--step-budget", type=float, default=DEFAULT_STEP_BUDGET_S, help="seconds per step"
    )
    p.add_argument("--max-memory-gib", type=float, help="a point needing more is out of memory")
    p.add_argument("--skip-checks", action="store_true", help="measure only")
    p.add_argument("--out", type=Path, default=Path("reports/bench/gpu"), help="output folder")
    p.add_argument("--docs", type=Path, help="also rewrite the block bench-gpu of this file")
    return p


def parse(argv: list[str]) -> GpuBench:
    """The run the arguments ask for; :class:`UserError` for a bad value."""
    a = parser().parse_args(argv)
    if a.device not in ("cuda", "cpu") and not a.device.startswith("cuda:"):
        raise UserError(f"--device: cuda or cpu, got {a.device!r}")
    quick = a.quick
    variants = _list(a.variants, list(VARIANTS), "--variants")
    compiled = QUICK_COMPILED if quick and a.compile is None else a.compile or "all"
    compiled_list = (
        compiled if isinstance(compiled, tuple) else _list(compiled, variants, "--compile")
    )
    for name, value in (("--batch", a.batch), ("--repeats", a.repeats)):
        if value is not None and value < 1:
            raise UserError(f"{name}: an integer >= 1, got {value}")
    return GpuBench(
        device=a.device,
        quick=quick,
        lengths_s=_lengths(a.lengths)
        if a.lengths
        else list(QUICK_LENGTHS_S if quick else DEFAULT_LENGTHS_S),
        variants=variants,
        compiled=[v for v in compiled_list if v in variants],
        compile_backend=a.compile_backend or ("aot_eager" if quick else "inductor"),
        batch=a.batch,
        batch_seconds=a.batch_seconds or (QUICK_BATCH_SECONDS if quick else None),
        repeats=a.repeats or (2 if quick else 3),
        budget_s=a.budget or (QUICK_BUDGET_S if quick else DEFAULT_BUDGET_S),
        step_budget_s=a.step_budget,
        max_memory_gib=a.max_memory_gib,
        checks=not a.skip_checks,
        out=a.out,
        docs=a.docs,
    )


def plan(bench: GpuBench) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(record, spec)`` of every point, most important first: eager before compiled,
    wav2vec 2.0 before BEST-RQ, shorter before longer."""
    from smx.bench.common import encoder_frames

    points = []
    for mode in ("eager", "compiled"):
        names = bench.variants if mode == "eager" else bench.compiled
        lengths = bench.lengths_s[:1] if mode == "compiled" and bench.quick else bench.lengths_s
        for objective in ("w2v2_", "bestrq_"):
            chosen = [n for n in names if n.startswith(objective)]
            configs = {n: VARIANTS[n].params(quick=bench.quick) for n in chosen}
            for seconds in lengths:
                for name in chosen:
                    params = configs[name]
                    batch = bench.batch or paper_batch(params, seconds, bench.batch_seconds)
                    record = {
                        "id": len(points),
                        "variant": name,
                        "objective": params.ssl.kind,
                        "mode": mode,
                        "seconds": seconds,
                        "batch": batch,
                        "frames": encoder_frames(params.model, seconds, params.data.sample_rate),
                    }
                    points.append((record, _spec(bench, record, params)))
    return points


def _spec(bench: GpuBench, record: dict[str, Any], params: Any) -> dict[str, Any]:
    return {
        "id": record["id"],
        "variant": record["variant"],
        "config": params.model_dump(mode="json"),
        "seconds": record["seconds"],
        "batch": record["batch"],
        "compiled": record["mode"] == "compiled",
        "compile_backend": bench.compile_backend,
        "warmup": bench.warmup,
        "repeats": bench.repeats,
        "device": bench.device,
        "precision": "bf16",
        "step_budget_s": bench.step_budget_s,
        "max_memory_gib": bench.max_memory_gib,
    }


# ----------------------------------------------------------------------------- the runner


def _reader(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_worker(specs: list[dict[str, Any]], seconds_left: float, log: Any, on_record: Any) -> str:
    """Measure ``specs`` in one process until it ends or the time is up.

    ``on_record`` hears each record as the process writes it. Returns why the process
    stopped: ``""`` (all done, or a recorded failure), ``"budget"`` (killed at the deadline)
    or ``"died: exit code N"``.
    """
    from smx.project import project_root

    proc = subprocess.Popen(
        [sys.executable, "-m", "smx.bench.gpu_points"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=project_root(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(specs))
    proc.stdin.close()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + seconds_left
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            proc.kill()
            proc.wait()
            return "budget"
        if line is None:
            break
        if line.startswith(LINE_PREFIX):
            on_record(json.loads(line[len(LINE_PREFIX) :]))
    code = proc.wait()
    return "" if code in (0, EXIT_FAILED) else f"died: exit code {code}"


def run_points(
    points: list[tuple[dict[str, Any], dict[str, Any]]], budget_s: float, log: Any, say: Any
) -> list[dict[str, Any]]:
    """Every point's record: measured, out of memory, skipped, failed or not run (budget)."""
    results: dict[int, dict[str, Any]] = {}
    records = {rec["id"]: rec for rec, _ in points}
    pending = [spec for _, spec in points]
    deadline = time.monotonic() + budget_s

    def on_record(rec: dict[str, Any]) -> None:
        results[rec["id"]] = {**records[rec["id"]], **rec}
        say(_point_line(results[rec["id"]], len(results), len(points)))

    while pending:
        stop = run_worker(pending, deadline - time.monotonic(), log, on_record)
        pending = [s for s in pending if s["id"] not in results]
        if stop == "budget":
            why = f"not run: the time budget of {budget_s:g} s was spent"
            for spec in pending:
                results[spec["id"]] = {**records[spec["id"]], "skipped": why}
            break
        if stop and pending:  # the process died during the first pending point
            first = pending.pop(0)
            results[first["id"]] = {**records[first["id"]], "error": f"the process {stop}"}
            say(_point_line(results[first["id"]], len(results), len(points)))
    return [results[i] for i in sorted(results)]


def _point_line(rec: dict[str, Any], done: int, total: int) -> str:
    from smx.bench.gpu_report import note

    what = f"{rec['median_s']:.3f} s per step" if "median_s" in rec else note(rec)
    if rec.get("peak_mem_bytes") is not None:
        what += f", peak {rec['peak_mem_bytes'] / 2**30:.1f} GiB"
    where = f"{rec['variant']} {rec['mode']} {rec['seconds']:g} s x {rec['batch']}"
    return f"[{done}/{total}] {where}: {what}"


# ----------------------------------------------------------------------------- the command


def device_meta(device: str) -> dict[str, Any]:
    """The device and software the run used; :class:`UserError` when CUDA is missing."""
    import importlib.util

    try:
        import torch

        import smx.nn.frontend  # noqa: F401  (torchaudio)
    except ImportError as exc:
        raise UserError(
            f"{exc}; on a bare GPU machine run scripts/gpu_check.sh, which installs the "
            "carried wheels (scripts/fetch_gpu_wheels.sh)"
        ) from None
    meta: dict[str, Any] = {"torch": torch.__version__, "device": device}
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {device}: torch {torch.__version__} (CUDA {torch.version.cuda}) "
                "sees no CUDA device; run on a GPU machine, or pass --device cpu --quick"
            )
        nccl = torch.cuda.nccl.version() if torch.distributed.is_nccl_available() else None
        meta.update(
            device_name=torch.cuda.get_device_name(device),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            nccl=".".join(map(str, nccl)) if nccl else None,
            bf16=torch.cuda.is_bf16_supported(),
        )
    else:
        meta["device_name"] = "CPU"
    meta["mamba_kernel"] = "mamba_ssm" if importlib.util.find_spec("mamba_ssm") else "PyTorch scan"
    return meta


def _setup_line(bench: GpuBench, meta: dict[str, Any]) -> str:
    batch = (
        f"batch {bench.batch}"
        if bench.batch
        else (
            f"{bench.batch_seconds:g} s of audio per step"
            if bench.batch_seconds
            else "the paper's per-GPU batch (data.max_batch_duration)"
        )
    )
    size = "quick one-layer d_model 32 models" if bench.quick else "paper-scale configs"
    cuda = f"CUDA {meta['cuda']}, NCCL {meta['nccl']}, " if meta.get("cuda") else ""
    return (
        f"{cuda}{size}, bf16 autocast, {batch}, median of {bench.repeats} steps after "
        f"{bench.warmup}, compiled with {bench.compile_backend}, Mamba: {meta['mamba_kernel']}."
    )


def measure(bench: GpuBench, say: Any) -> dict[str, Any]:
    """Run the checks and the points; the run's data (``gpu.json``)."""
    import tempfile

    import torch

    from smx.bench.gpu_checks import run_checks

    started = time.monotonic()
    meta = device_meta(bench.device)
    meta["setup"] = _setup_line(bench, meta)
    say(f"{meta['device_name']}: {meta['setup']}")
    checks = []
    if bench.checks:
        report = lambda c: say(f"check {c.name}: {c.status} ({c.detail})")  # noqa: E731
        checks = [c.as_dict() for c in run_checks(torch.device(bench.device), report)]
    with tempfile.TemporaryFile("w+") as log:
        records = run_points(plan(bench), bench.budget_s, log, say)
        log.seek(0)
        worker_log = log.read()
    meta["bench"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(bench).items()}
    meta["wall_s"] = time.monotonic() - started
    return {"meta": meta, "checks": checks, "records": records, "worker_log": worker_log}


def write(bench: GpuBench, data: dict[str, Any]) -> list[Path]:
    """Write gpu.json, gpu.md and the measuring process's log atomically; their paths."""
    from smx.atomic import write_json, write_text
    from smx.bench.gpu_report import render

    log = data.pop("worker_log")
    paths = [bench.out / "gpu.json", bench.out / "gpu.md", bench.out / "gpu-worker.log"]
    write_json(paths[0], data)
    write_text(paths[1], render(data))
    write_text(paths[2], log)
    if bench.docs is not None:
        from smx.docblock import replace_block

        replace_block(bench.docs, "bench-gpu", render(data).rstrip("\n"))
    return paths


def failed(data: dict[str, Any]) -> bool:
    """A check failed, or a point failed other than by running out of memory or time."""
    return any(c["status"] == "failed" for c in data["checks"]) or any(
        "error" in r for r in data["records"]
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m smx.bench.gpu [options]``; the exit status."""

    from smx.docblock import BlockError

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        bench = parse(sys.argv[1:] if argv is None else argv)
        if bench.docs is not None:
            from smx.docblock import check_block

            check_block(bench.docs, "bench-gpu")
        data = measure(bench, say)
    except (UserError, BlockError) as exc:
        say(f"smx bench gpu: {exc}")
        return EXIT_USER
    paths = write(bench, data)
    print(Path(paths[1]).read_text(), end="")
    print(f"wrote {', '.join(map(str, paths))}" + (f"; updated {bench.docs}" if bench.docs else ""))
    return 1 if failed(data) else 0


if __name__ == "__main__":
    sys.exit(main())
