"""The pre-training loop that every Ray Train worker runs: plain PyTorch, Ray at the edges.

:func:`train_loop_per_worker` reads its rank from ``ray.train.get_context()``, resumes from
``ray.train.get_checkpoint()`` (or a ``--resume`` folder), wraps the objective with
``ray.train.torch.prepare_model`` (DDP) and reports checkpoints with ``ray.train.report``;
the rest is an ordinary loop: Lhotse batches for this rank, gradient accumulation, bf16
autocast on the training device (CPU or CUDA, :func:`autocast_context`), clipping, the LR
schedule, NaN/inf steps skipped. The encoder blocks are compiled where ``train.compile`` asks
for it (:mod:`smx.nn.fast`); time spent compiling is left out of the logged step time.

Determinism and resume. Every rank seeds torch/numpy/python and the objective's mask
generator with ``seed + rank``; a checkpoint stores these RNG states and the loader's
position per rank, so a run resumed from the checkpoint of step ``c`` draws exactly the
batches, masks, Gumbel noise and dropout that the uninterrupted run drew after step ``c``.

Test hooks (environment variables, read by the workers):

- ``SMX_INJECT_NAN_STEPS="5,6,7"``: the loss of these steps is multiplied by NaN.
- ``SMX_KILL_AT_STEP=N``: rank 1 (rank 0 with one worker) exits abruptly at the start of
  step N, once: the marker file ``<run_dir>/killed_at_step_N`` prevents a second kill.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import resource
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from smx.config import Params, TrainCfg
from smx.nn.fast import apply_fast_path, compile_seconds
from smx.provenance import with_source
from smx.train.checkpoint import (
    config_hash,
    read_rank_state,
    read_state,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from smx.train.distributed import ddp_kwargs
from smx.train.schedule import Schedule, make_optimizer, make_schedule

#: the metrics of a step that are summed (not averaged) over ranks
SUMMED = ("audio_seconds", "bad")


class Diverged(RuntimeError):
    """Too many consecutive non-finite steps."""


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python's ``random`` with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@functools.cache
def bf16_autocast_supported(device_type: str) -> bool:
    """Whether torch can run bf16 autocast on ``device_type`` (``"cpu"``, ``"cuda"``, ...).

    torch disables autocast with a warning where the dtype is not supported (e.g. MPS on an
    old torch); this tries it once and reads back whether bf16 autocast is really on.

    Example
    -------
    >>> bf16_autocast_supported("cpu"), bf16_autocast_supported("meta")
    (True, False)
    """
    if not torch.amp.is_autocast_available(device_type):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device_type, dtype=torch.bfloat16):
                enabled = torch.is_autocast_enabled(device_type)
                return enabled and torch.get_autocast_dtype(device_type) == torch.bfloat16
    except RuntimeError:  # e.g. a CUDA device without bf16
        return False


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse ``train.precision`` bf16 on a device whose type cannot run bf16 autocast.

    Raises
    ------
    ValueError
        One sentence naming ``train.precision`` and the device type.
    """
    if precision == "bf16" and not bf16_autocast_supported(device.type):
        raise ValueError(
            f"train.precision is bf16 but torch {torch.__version__} cannot run bf16 autocast "
            f"on the training device ({device.type}); set train.precision: fp32"
        )


def autocast_context(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The forward pass's autocast for ``train.precision``: bf16 on ``device``, or none (fp32).

    bf16 runs on CPU and CUDA alike (``device_type=device.type``); the reductions that need
    float32 (summary means, SSL losses, the CTC head) turn autocast off locally. Use a new
    context for every forward pass.

    Arguments
    ---------
    device : torch.device
        The device the forward pass runs on.
    precision : str
        ``train.precision``: ``"bf16"`` or ``"fp32"``.

    Returns
    -------
    AbstractContextManager
        ``torch.autocast(device.type, dtype=torch.bfloat16)`` or a context that does nothing.

    Raises
    ------
    ValueError
        When ``precision`` is bf16 and ``device`` cannot run bf16 autocast
        (:func:`check_precision`).

    Example
    -------
    >>> with autocast_context(torch.device("cpu"), "bf16"):
    ...     torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype
    torch.bfloat16
    >>> with autocast_context(torch.device("cpu"), "fp32"):
    ...     torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype
    torch.float32
    """
    check_precision(device, precision)
    if precision != "bf16":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def endless(loader: Any) -> Iterator[dict[str, Any]]:
    """The loader's batches, epoch after epoch (an epoch may be empty once, after resuming).

    Example
    -------
    >>> import itertools
    >>> list(itertools.islice(endless([1, 2]), 5))
    [1, 2, 1, 2, 1]
    """
    empty = 0
    while True:
        got = False
        for batch in loader:
            got = True
            yield batch
        empty = 0 if got else empty + 1
        if empty >= 2:
            raise RuntimeError("the training loader yields no batch for this rank")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, else the resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def reduce_metrics(metrics: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average ``metrics`` over ranks (``SUMMED`` keys are summed); identity without DDP."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(metrics)
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    world = dist.get_world_size()
    return {
        k: float(v) if k in SUMMED else float(v) / world
        for k, v in zip(keys, values.tolist(), strict=True)
    }


class Hooks:
    """Fault-injection hooks for tests, read from the environment (see the module doc)."""

    def __init__(self, run_dir: Path | None) -> None:
        nan = os.environ.get("SMX_INJECT_NAN_STEPS", "")
        self.nan_steps = {int(s) for s in nan.split(",") if s.strip()}
        kill = os.environ.get("SMX_KILL_AT_STEP")
        self.kill_step = int(kill) if kill else None
        self.run_dir = run_dir

    def maybe_kill(self, step: int, rank: int, world: int) -> None:
        """Exit abruptly (once per run) at ``kill_step`` on the last rank."""
        if self.kill_step != step or rank != world - 1 or self.run_dir is None:
            return
        marker = self.run_dir / f"killed_at_step_{step}"
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("killed\n")
        os._exit(1)


class Progress:
    """Rank 0's progress file, read by the driver's progress bar."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, **values: Any) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text(json.dumps(values))
            os.replace(tmp, self.path)
        except OSError:  # progress is best effort
            pass


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry point: pre-train ``config["params"]`` on this worker's rank.

    Arguments
    ---------
    config : dict[str, Any]
        A dict from :func:`smx.train.launch.loop_config`: ``params`` (the resolved config
        as JSON data), ``corpus_dir``, ``run_dir``, ``tracking_uri``, ``run_id``,
        ``resume_from`` (a checkpoint folder or None), ``system_metrics``.

    Returns
    -------
    dict[str, Any]
        The run's summary (:meth:`Trainer.summary`: ``status`` is ``finished`` or
        ``diverged``); Ray hands rank 0's to the driver as ``Result.return_value``.

    Example
    -------
    See ``tests/train`` (it needs a Ray Train worker context).
    """
    return run_worker(Trainer, config)


def run_worker(trainer_class: type[Trainer], config: dict[str, Any]) -> dict[str, Any]:
    """Build ``trainer_class`` for this worker's rank and run it from Ray's latest checkpoint
    (after an automatic restart) or from ``config["resume_from"]``."""
    import ray.train

    ctx = ray.train.get_context()
    trainer = trainer_class(config, ctx.get_world_rank(), ctx.get_world_size())
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            return trainer.run(Path(folder))
    resume = config.get("resume_from")
    return trainer.run(Path(resume) if resume else None)


class Trainer:
    """The state of one worker's training run (built by :func:`train_loop_per_worker`).

    Subclasses change what is trained by overriding the hooks :meth:`settings`,
    :meth:`build_model`, :meth:`build_loader`, :meth:`build_schedule`, :meth:`model_hash`,
    :meth:`inputs` and :meth:`extra_state` (see :mod:`smx.train.finetune_loop`); the loop,
    checkpoints, resume, DDP, logging and NaN handling stay here. The model is any module
    whose ``forward(inputs)`` returns :class:`smx.ssl.objective.LossOutput` and that has
    ``set_step(step)``; a ``generator`` attribute (a ``torch.Generator``) is seeded per rank
    and saved in checkpoints when present.
    """

    def __init__(self, config: dict[str, Any], rank: int, world: int) -> None:
        import ray.train.torch

        self.config, self.rank, self.world = config, rank, world
        self.params = params = Params.model_validate(config["params"])
        self.train_cfg = train = self.settings()
        self.device = ray.train.torch.get_device()
        run_dir = config.get("run_dir")
        self.run_dir = Path(run_dir) if run_dir else None
        self.hooks = Hooks(self.run_dir)

        seed_everything(params.seed)  # identical initial weights on every rank
        self.objective = self.build_model().to(self.device)
        self.source = str(config.get("source_hash") or "")
        self.model_id = self.model_hash()
        self.hash = with_source(self.model_id, self.source)  # what its checkpoints carry
        seed_everything(params.seed + rank)  # per-rank dropout, Gumbel noise, layerdrop
        self.generator: torch.Generator | None = getattr(self.objective, "generator", None)
        if self.generator is not None:
            self.generator.manual_seed(params.seed + rank)  # per-rank masks
        self.loader = self.build_loader()
        self.optimizer = make_optimizer(self.objective.parameters(), train)
        self.schedule = self.build_schedule()
        self.step = self.start_step = 0
        self.skipped = 0
        self.streak = 0
        self.audio_seconds = 0.0
        self.elapsed = 0.0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ hooks
    def settings(self) -> TrainCfg:
        """The loop's settings: steps, optimiser, schedule, checkpoints (``train``)."""
        return self.params.train

    def build_model(self) -> torch.nn.Module:
        """The module to train (called with the torch RNG seeded by ``seed``)."""
        from smx.ssl.objective import build_objective

        return build_objective(self.params)

    def model_hash(self) -> str:
        """The hash a checkpoint must carry to be loaded into this model."""
        return config_hash(self.params)

    def build_loader(self) -> Any:
        """This rank's resumable batches (:class:`smx.data.loader.TrainLoader`)."""
        from smx.data.loader import TrainLoader
        from smx.data.manifests import load_cuts

        cuts = load_cuts(self.config["corpus_dir"], "train")
        return TrainLoader(
            cuts, self.params.data, rank=self.rank, world_size=self.world, seed=self.params.seed
        )

    def build_schedule(self) -> Schedule:
        """The learning rate of each update (:func:`smx.train.schedule.make_schedule`)."""
        return make_schedule(self.train_cfg)

    def find_unused_parameters(self) -> bool:
        """DDP must look for parameters without gradients (layerdrop skips whole layers)."""
        return self.params.model.encoder.layerdrop > 0

    def inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The model's input of one loader batch, on the training device."""
        return {
            "audio": batch["audio"].to(self.device, non_blocking=True),  # [B, S]
            "audio_lens": batch["audio_lens"].to(self.device),  # [B]
        }

    def extra_state(self) -> dict[str, Any]:
        """More entries of rank 0's checkpoint state (plain data)."""
        return {}

    def logged(self, step: int) -> bool:
        """Whether ``step`` gets a history row and MLflow metrics (every ``log_every``, the last)."""
        return step % self.train_cfg.log_every == 0 or step == self.train_cfg.max_steps

    # ------------------------------------------------------------------ state
    def load(self, folder: Path) -> None:
        """Restore everything from a checkpoint folder (refused if the model differs)."""
        state = read_state(folder, self.model_id, self.source)
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.skipped = int(state["skipped_steps"])
        self.streak = int(state["nan_streak"])
        self.audio_seconds = float(state["audio_seconds"])
        self.elapsed = float(state["elapsed"])
        self.history = list(state["history"])
        mine = read_rank_state(folder, self.rank)
        if mine is not None and mine["loader"]["world_size"] == self.world:
            self.loader.load_state_dict(mine["loader"])
            set_rng_state(mine["rng"], self.generator)

    def save(self, metrics: dict[str, Any]) -> None:
        """Write this rank's part of the checkpoint of ``self.step`` and report it to Ray."""
        import ray.train

        name = f"checkpoint_{self.step:08d}"
        local = Path(tempfile.mkdtemp(prefix="smx-ckpt-")) / name
        rank_state = {
            "step": self.step,
            "loader": self.loader.state_dict(),
            "rng": rng_state(self.generator),
        }
        shared = None
        if self.rank == 0:
            shared = {
                "step": self.step,
                "config_hash": self.hash,
                "source_hash": self.source,
                "params": json.dumps(self.params.model_dump(mode="json")),
                "world_size": self.world,
                "model": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": {"kind": self.train_cfg.schedule, "step": self.step},
                "skipped_steps": self.skipped,
                "nan_streak": self.streak,
                "audio_seconds": self.audio_seconds,
                "elapsed": self.elapsed,
                "history": self.history,
                **self.extra_state(),
            }
        write_checkpoint(local, self.rank, rank_state, shared)
        try:
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(str(local)),
                checkpoint_dir_name=name,
            )
        finally:
            shutil.rmtree(local.parent, ignore_errors=True)

    # ------------------------------------------------------------------ loop
    def run(self, resume: Path | None) -> dict[str, Any]:
        """Train until ``train.max_steps`` (or divergence), reporting checkpoints; the summary."""
        import ray.train
        import ray.train.torch

        check_precision(self.device, self.train_cfg.precision)  # refused before any work
        if resume is not None:
            self.load(resume)
        train = self.train_cfg
        apply_fast_path(self.objective, train.compile, self.device)  # train.compile
        model = ray.train.torch.prepare_model(
            self.objective,
            move_to_device=False,
            parallel_strategy_kwargs=ddp_kwargs(self.find_unused_parameters()),
        )
        logger = None
        if self.rank == 0 and self.config.get("run_id"):
            from smx.tracking import RunLogger

            logger = RunLogger(
                self.config["tracking_uri"],
                self.config["run_id"],
                system_metrics=bool(self.config.get("system_metrics", True)),
            )
        progress = Progress(
            self.run_dir / "progress.json" if self.rank == 0 and self.run_dir else None
        )
        batches = endless(self.loader)
        status = "finished"
        last = self.history[-1]["loss"] if self.history else math.nan
        metrics: dict[str, float] = {"loss": last}
        self.start_step = self.step
        if self.rank == 0:
            self.show(progress, last)
        try:
            while self.step < train.max_steps:
                self.step += 1
                self.hooks.maybe_kill(self.step, self.rank, self.world)
                metrics = self.train_step(model, batches)
                if self.rank == 0:
                    self.record(metrics, logger, progress)
                if self.streak >= train.max_nan_steps:
                    status = "diverged"
                    break
                if self.step % train.checkpoint_every == 0 or self.step == train.max_steps:
                    self.save(self.summary(metrics, status))
        except BaseException:
            if logger is not None:
                logger.close("FAILED")
            raise
        if logger is not None:
            logger.close("FAILED" if status == "diverged" else "FINISHED")
        return self.summary(metrics, status)

    def summary(self, metrics: dict[str, float], status: str) -> dict[str, Any]:
        """The metrics attached to a Ray report."""
        return {
            "status": status,
            "step": self.step,
            "loss": metrics["loss"],
            "skipped_steps": self.skipped,
            "nan_streak": self.streak,
            "audio_hours": self.audio_seconds / 3600,
        }

    def train_step(self, model: torch.nn.Module, batches: Iterator[dict[str, Any]]) -> dict:
        """One optimiser update over ``train.grad_accum`` batches; skipped if not finite."""
        train, device = self.train_cfg, self.device
        start, compiling = time.perf_counter(), compile_seconds()
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.objective.set_step(self.step)
        model.train()
        sums: dict[str, float] = {}
        audio_seconds, data_time, bad = 0.0, 0.0, 0.0
        for micro in range(train.grad_accum):
            t0 = time.perf_counter()
            batch = next(batches)
            data_time += time.perf_counter() - t0
            inputs = self.inputs(batch)
            last = micro == train.grad_accum - 1
            sync = nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                with autocast_context(device, train.precision):
                    out = model(inputs)
                loss = out.loss
                if self.step in self.hooks.nan_steps:
                    loss = loss * float("nan")
                (loss / train.grad_accum).backward()
            values = dict(out.metrics, loss=float(loss.detach()))
            bad = max(bad, 0.0 if math.isfinite(values["loss"]) else 1.0)
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value / train.grad_accum
            audio_seconds += float(batch["audio_lens"].sum()) / self.params.data.sample_rate
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip))
        local = dict(sums, audio_seconds=audio_seconds, bad=bad, data_time=data_time)
        metrics = reduce_metrics(local, device)  # the same on every rank
        if metrics["bad"] > 0 or not math.isfinite(grad_norm):
            self.skipped += 1
            self.streak += 1
        else:
            self.optimizer.step()
            self.streak = 0
        self.optimizer.zero_grad(set_to_none=True)
        # compilation (the first step, a new input shape) is not the step's time
        step_time = time.perf_counter() - start - (compile_seconds() - compiling)
        self.elapsed += step_time
        self.audio_seconds += metrics["audio_seconds"]
        metrics.pop("bad")
        metrics.update(
            lr=lr,
            grad_norm=grad_norm,
            step_time=step_time,
            audio_seconds_per_second=metrics["audio_seconds"] / step_time,
            peak_memory_mb=peak_memory_mb(device),
            skipped_steps=float(self.skipped),
        )
        return metrics

    def show(self, progress: Progress, loss: float) -> None:
        """Rank 0: write the progress file the driver's bar reads."""
        progress.write(
            step=self.step,
            max_steps=self.train_cfg.max_steps,
            loss=loss,
            audio_hours=self.audio_seconds / 3600,
            skipped_steps=self.skipped,
            start_step=self.start_step,
            time=time.time(),
        )

    def record(self, metrics: dict[str, float], logger: Any, progress: Progress) -> None:
        """Rank 0: history row and MLflow metrics every ``log_every`` steps; progress file."""
        train = self.train_cfg
        self.show(progress, metrics["loss"])
        if not self.logged(self.step):
            return
        if progress.path is None:  # no shared progress file: log lines reach the driver
            print(
                f"step {self.step}/{train.max_steps} loss {metrics['loss']:.4g} "
                f"{self.audio_seconds / 3600:.3f} h audio, {metrics['step_time']:.2f} s/step",
                flush=True,
            )
        row = {"step": float(self.step), **metrics}
        self.history.append(row)
        if logger is not None:
            logger.log(metrics, self.step)
