"""Learning-rate schedules as plain functions of the optimiser step, and the optimiser.

The learning rate of update ``n`` (1-based: the first update is ``n = 1``) is
``schedule(n)``; the training loop writes it into every parameter group before the update,
so a schedule has no state besides the step, which checkpoints already hold.

``warmcool`` is the schedule of the wav2vec 2.0 SummaryMixing recipe (arXiv 2407.13377)
without its artefact: SpeechBrain's ``WarmCoolDecayLRSchedule`` with
``cooldown = total - warmup`` starts the cool-down from ``lr * 0.75 ** (warmup / 100k)``
(about 8 % below the peak, in one step at ``n = warmup + 1``). Here the cool-down starts from
the peak ``lr`` itself, so the curve is continuous: linear warm-up to ``lr``, then linear
decay to 0 at ``total`` (docs/algorithm.md, "Differences from the SpeechBrain
implementation").

``noam`` is BEST-RQ's (arXiv 2202.01855; docs/algorithm.md, "BEST-RQ"):
``lr * sqrt(w) * min(n ** -0.5, n * w ** -1.5)``, peak ``lr`` at ``n = w``, then
proportional to ``n ** -0.5``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Schedule = Callable[[int], float]


def warmcool(step: int, lr: float, warmup: int, total: int) -> float:
    """Linear warm-up from 0 to ``lr`` over ``warmup`` steps, then linear decay to 0 at ``total``.

    Arguments
    ---------
    step : int
        The update number (1-based; 0 gives 0).
    lr : float
        The peak learning rate.
    warmup : int
        Warm-up updates (0: start at the peak).
    total : int
        The update at which the rate reaches 0 (``train.max_steps``).

    Returns
    -------
    float
        The learning rate of update ``step``.

    Example
    -------
    >>> [warmcool(n, 1.0, 10, 110) for n in (0, 5, 10, 60, 110, 200)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    if step <= 0:
        return 0.0
    if step <= warmup:
        return lr * step / warmup
    return lr * max(total - step, 0) / max(total - warmup, 1)


def noam(step: int, lr: float, warmup: int) -> float:
    """The Noam schedule normalised to peak ``lr`` at ``warmup``: ``∝ n`` then ``∝ n^-1/2``.

    Arguments
    ---------
    step : int
        The update number (1-based; 0 gives 0).
    lr : float
        The peak learning rate, reached at ``step == warmup``.
    warmup : int
        Warm-up updates (0: ``lr / sqrt(n)`` from the first step).

    Returns
    -------
    float
        The learning rate of update ``step``.

    Example
    -------
    >>> [round(noam(n, 1.0, 100), 6) for n in (0, 50, 100, 400)]
    [0.0, 0.5, 1.0, 0.5]
    """
    if step <= 0:
        return 0.0
    if warmup == 0:
        return lr / math.sqrt(step)
    return lr * math.sqrt(warmup) * min(step**-0.5, step * warmup**-1.5)


def tristage(
    step: int,
    lr: float,
    warmup: int,
    hold: int,
    total: int,
    init_scale: float = 0.01,
    final_scale: float = 0.05,
) -> float:
    """Tri-stage: linear from ``init_scale·lr`` to ``lr``, hold, exponential decay to ``final_scale·lr``.

    Arguments
    ---------
    step : int
        The update number (1-based).
    lr : float
        The peak learning rate.
    warmup : int
        Updates of the linear first stage.
    hold : int
        Updates at the peak; the decay lasts from there until ``total``.
    total : int
        The update at which the decay ends.
    init_scale : float
        The first rate, as a fraction of ``lr``.
    final_scale : float
        The rate from ``total`` on, as a fraction of ``lr``.

    Returns
    -------
    float
        The learning rate of update ``step``.

    Example
    -------
    >>> [round(tristage(n, 1.0, 10, 10, 40), 4) for n in (0, 10, 15, 20, 40, 50)]
    [0.01, 1.0, 1.0, 1.0, 0.05, 0.05]
    >>> round(tristage(30, 1.0, 10, 10, 40), 4)  # halfway through the decay: sqrt(0.05)
    0.2236
    """
    step = max(step, 0)
    if step < warmup:
        return lr * (init_scale + (1.0 - init_scale) * step / warmup)
    if step <= warmup + hold:
        return lr
    decay = max(total - warmup - hold, 1)
    progress = min((step - warmup - hold) / decay, 1.0)
    return lr * math.exp(math.log(final_scale) * progress)


def constant(step: int, lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then ``lr``.

    Example
    -------
    >>> [constant(n, 2.0, 4) for n in (0, 2, 4, 100)]
    [0.0, 1.0, 2.0, 2.0]
    """
    if warmup and step < warmup:
        return lr * max(step, 0) / warmup
    return lr


def make_schedule(train: Any) -> Schedule:
    """The schedule named by ``train.schedule`` with the section's ``lr``, warm-up and steps.

    ``tristage`` holds the peak until the middle of the post-warm-up steps, then decays.

    Arguments
    ---------
    train : TrainCfg
        The ``train`` section (:class:`smx.config.TrainCfg`).

    Returns
    -------
    Schedule
        The learning rate of each update: ``schedule(n) -> float``.

    Raises
    ------
    ValueError
        ``train.schedule`` names no schedule.

    Example
    -------
    >>> from smx.config import TrainCfg
    >>> sched = make_schedule(TrainCfg(lr=1.0, warmup_steps=10, max_steps=110))
    >>> sched(5), sched(60)
    (0.5, 0.5)
    """
    kind, lr, warmup, total = train.schedule, train.lr, train.warmup_steps, train.max_steps
    if kind == "warmcool":
        return lambda n: warmcool(n, lr, warmup, total)
    if kind == "noam":
        return lambda n: noam(n, lr, warmup)
    if kind == "tristage":
        hold = (total - warmup) // 2
        return lambda n: tristage(n, lr, warmup, hold, total)
    if kind == "constant":
        return lambda n: constant(n, lr, warmup)
    raise ValueError(f"train.schedule: expected warmcool, noam, tristage or constant, got {kind}")


def make_optimizer(parameters: Any, train: Any) -> Any:
    """AdamW over ``parameters`` with the ``train`` section's hyper-parameters.

    ``foreach``: multi-tensor operations over all parameters instead of a Python loop over
    them; torch picks them by default on CUDA only, and on a CPU they give the same numbers
    in a faster optimiser step.
    """
    import torch

    return torch.optim.AdamW(
        parameters,
        lr=train.lr,
        betas=(train.betas[0], train.betas[1]),
        eps=train.eps,
        weight_decay=train.weight_decay,
        foreach=True,
    )
