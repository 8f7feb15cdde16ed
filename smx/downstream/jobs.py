"""Probe trainings as independent jobs: one (upstream, probe, seed) each, run here or in a pool.

A job seeds torch, builds the probe, trains it on cached states (:func:`smx.downstream.fit.fit`)
and returns its outputs on the test split, its layer weights and its best epoch; scoring stays
with the caller. With ``workers > 1`` the jobs run in that many processes, one torch thread
each (a probe 32 wide gains little from a second intra-op thread, much from a second
process). On Linux they are forked: they start at once, with the caller's modules and cached
states already in memory (shared until written; torch's DataLoader forks its workers the same
way); elsewhere they are spawned and receive the states pickled, and a script that runs jobs
needs the ``if __name__ == "__main__":`` guard. A job's result depends on where it ran only
through float rounding (one torch thread in a worker, the caller's threads here).

Example
-------
>>> ex = [Example(str(i), 1.0, torch.full((4, 2, 8), float(i % 2)), i % 2) for i in range(8)]
>>> job = Job("style", "linear", "toy", seed=0, num_layers=2, dim=8, outputs=2)
>>> cfg = DownstreamCfg(epochs=2, probe_dim=8, seeds=1)
>>> [r.job.seed for r in run_jobs([job], {"toy": Split(ex, ex, ex)}, cfg, workers=1)]
[0]
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace

import torch

from smx.config import DownstreamCfg
from smx.downstream.fit import Example, fit, predict
from smx.downstream.probes import build_probe_model


@dataclass(frozen=True)
class Split:
    """The cached examples of one upstream: train, dev and test."""

    train: Sequence[Example]
    dev: Sequence[Example]
    test: Sequence[Example]


@dataclass(frozen=True)
class Job:
    """One probe training: which probe, on which upstream's states, with which seed.

    Arguments
    ---------
    task : str
        The probing task (selects the loss).
    probe : str
        The probe's name (:data:`smx.config.PROBES`).
    upstream : str
        The upstream whose cached states it trains on (a key of the splits).
    seed : int
        Seeds the probe's initialisation and the batch order.
    num_layers : int
        ``L``, the hidden states per frame of the upstream.
    dim : int
        ``D``, the size of each hidden state.
    outputs : int
        Output units (characters for asr, classes otherwise).
    """

    task: str
    probe: str
    upstream: str
    seed: int
    num_layers: int
    dim: int
    outputs: int


@dataclass
class JobResult:
    """A trained probe's test outputs, layer weights and best dev epoch.

    Arguments
    ---------
    job : Job
        The job that trained it.
    outputs : dict[str, torch.Tensor]
        Probe outputs on the test split per example id (:func:`smx.downstream.fit.predict`).
    layer_weights : list[float]
        The ``L`` learned softmax layer weights.
    best_epoch : int
        The 0-based epoch whose weights were kept.
    seconds : float
        Wall-clock time of the job.
    """

    job: Job
    outputs: dict[str, torch.Tensor]
    layer_weights: list[float]
    best_epoch: int
    seconds: float


#: called after each finished job with its result and how many jobs have finished
Done = Callable[[JobResult, int], None]

#: probes whose output depends on the states only through their average over time: the
#: pooled linear probe (the layer sum and the average are both linear, so they commute).
#: They train on each utterance's average, ``[T, L, D] -> [1, L, D]``: the same numbers up to
#: float rounding, at a fraction of the cost
AVERAGE_FIRST = frozenset({"linear"})


def averaged(split: Split) -> Split:
    """Every example's states averaged over time, ``[T, L, D] -> [1, L, D]``.

    Example
    -------
    >>> e = Example("u", 1.0, torch.tensor([[[1.0]], [[3.0]]]), 0)
    >>> averaged(Split([e], [], [])).train[0].states.tolist()
    [[[2.0]]]
    """
    return Split(
        *(
            [replace(e, states=e.states.mean(0, keepdim=True)) for e in part]
            for part in (split.train, split.dev, split.test)
        )
    )


def train_job(job: Job, split: Split, cfg: DownstreamCfg) -> JobResult:
    """Seed, build, train and run one probe on the test split."""
    start = time.perf_counter()
    if job.probe in AVERAGE_FIRST:
        split = averaged(split)
    torch.manual_seed(job.seed)
    model = build_probe_model(
        job.task, job.probe, job.num_layers, job.dim, job.outputs, cfg.probe_dim
    )
    epochs, lr = cfg.epochs_of(job.probe), cfg.lr_of(job.probe)
    result = fit(job.task, model, split.train, split.dev, cfg, job.seed, epochs, lr)
    outputs = predict(model, split.test, cfg.max_batch_duration)
    weights = model.layers.weights().detach().tolist()
    return JobResult(job, outputs, weights, result.best_epoch, time.perf_counter() - start)


def run_jobs(
    jobs: Sequence[Job],
    splits: dict[str, Split],
    cfg: DownstreamCfg,
    workers: int,
    done: Done | None = None,
) -> list[JobResult]:
    """Run every job, here or in a pool of processes.

    Arguments
    ---------
    jobs : Sequence[Job]
        The trainings to run.
    splits : dict[str, Split]
        The cached examples of each upstream named by the jobs.
    cfg : DownstreamCfg
        The ``downstream`` section (learning rates, epochs, batch duration, NewBob).
    workers : int
        Processes to run the jobs in (one torch thread each); 1 runs them one after the
        other in the calling process.
    done : Done | None
        Called after each finished job (in the order they finish).

    Returns
    -------
    list[JobResult]
        Every job's result, in the order of ``jobs``.
    """
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for count, job in enumerate(jobs, start=1):
            results.append(train_job(job, splits[job.upstream], cfg))
            if done:
                done(results[-1], count)
        return results
    return _run_in_pool(jobs, splits, cfg, min(workers, len(jobs)), done)


def _run_in_pool(
    jobs: Sequence[Job],
    splits: dict[str, Split],
    cfg: DownstreamCfg,
    workers: int,
    done: Done | None,
) -> list[JobResult]:
    """:func:`run_jobs` in ``workers`` processes, longest jobs first."""
    # more frames per utterance = a longer training; the probes that train on averages go
    # last (they take a second)
    frames = {name: _frames(split) for name, split in splits.items()}
    order = sorted(
        range(len(jobs)),
        key=lambda i: (jobs[i].probe in AVERAGE_FIRST, -frames[jobs[i].upstream]),
    )
    finished: dict[int, JobResult] = {}
    pool = ProcessPoolExecutor(
        workers, mp_context=_pool_context(), initializer=_start_worker, initargs=(splits,)
    )
    try:
        futures = {pool.submit(_train_in_worker, jobs[i], cfg): i for i in order}
        for count, future in enumerate(as_completed(futures), start=1):
            finished[futures[future]] = future.result()
            if done:
                done(finished[futures[future]], count)
    finally:  # on an error: no waiting for the jobs not started yet
        pool.shutdown(wait=True, cancel_futures=True)
    return [finished[i] for i in range(len(jobs))]


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork where it is the platform's default (Linux), spawn elsewhere (macOS, Windows)."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def _frames(split: Split) -> int:
    """Frames of the training examples of ``split`` (how long its probes train)."""
    return sum(e.states.shape[0] for e in split.train)


#: a pool worker's cached states per upstream, set once when it starts
_worker_splits: dict[str, Split] = {}


def _start_worker(splits: dict[str, Split]) -> None:
    """Pool initializer: one torch thread, the cached states kept for every job."""
    torch.set_num_threads(1)
    _worker_splits.update(splits)


def _train_in_worker(job: Job, cfg: DownstreamCfg) -> JobResult:
    """:func:`train_job` on the states the worker received when it started."""
    return train_job(job, _worker_splits[job.upstream], cfg)
