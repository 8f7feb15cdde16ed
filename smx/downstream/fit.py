"""Training one probe on cached hidden states: two Adam optimisers, NewBob, best dev epoch.

The probe (and the AAM head of the speaker task) uses ``downstream.lr`` (or the probe's
``probe_lr``), the layer weights ``downstream.lr_weights`` (docs/algorithm.md, "MP3S
protocol"). After every epoch the dev loss is computed; when it improved by less than
``newbob_threshold`` (relative) both learning rates are multiplied by ``newbob_factor``. The
weights of the epoch with the lowest dev loss are kept (the last epoch's when no dev
utterance has a usable label).

Losses: CTC on characters (blank 0) for ``asr``, AAM-softmax cross-entropy over the training
speakers for ``speaker``, cross-entropy for the classification tasks.

Example
-------
>>> ex = [Example("a", 1.0, torch.ones(3, 2, 4), 0), Example("b", 1.0, torch.ones(5, 2, 4), 1)]
>>> states, lengths = pad_states(ex)
>>> states.shape, lengths.tolist()
(torch.Size([2, 5, 2, 4]), [3, 5])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from smx.config import DownstreamCfg
from smx.downstream.features import duration_batches
from smx.downstream.probes import ProbeModel


@dataclass(frozen=True)
class Example:
    """A cached utterance: hidden states ``[T, L, D]`` and its target.

    Arguments
    ---------
    id : str
        The utterance's id.
    duration : float
        Its duration in seconds (for batching).
    states : torch.Tensor
        ``[T, L, D]`` hidden states of its real frames.
    target : Any
        A ``[U]`` tensor of character ids (asr) or a class index (-1 = a class unseen in
        training: scored as an error, left out of the dev loss).
    """

    id: str
    duration: float
    states: torch.Tensor
    target: Any


@dataclass
class FitResult:
    """How training went: dev loss per epoch, the epoch kept, the final learning rates.

    Arguments
    ---------
    dev_losses : list[float]
        Dev loss after each epoch (NaN when no dev utterance has a usable label).
    best_epoch : int
        The 0-based epoch whose weights were kept.
    lr : float
        The probe's learning rate after the last NewBob decay.
    lr_weights : float
        The layer weights' learning rate after the last NewBob decay.
    """

    dev_losses: list[float] = field(default_factory=list)
    best_epoch: int = -1
    lr: float = 0.0
    lr_weights: float = 0.0


def pad_states(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded ``[B, T, L, D]`` states and ``[B]`` lengths of a batch."""
    lengths = torch.tensor([e.states.shape[0] for e in examples], dtype=torch.long)
    first = examples[0].states
    out = first.new_zeros(len(examples), int(lengths.max()), *first.shape[1:])
    for i, e in enumerate(examples):
        out[i, : e.states.shape[0]] = e.states
    return out, lengths


def batch_loss(task: str, model: ProbeModel, examples: Sequence[Example]) -> torch.Tensor | None:
    """Mean loss of a batch (None when no example of it has a usable target)."""
    if task != "asr":
        examples = [e for e in examples if e.target >= 0]
        if not examples:
            return None
    states, lengths = pad_states(examples)
    out = model(states, lengths)
    if task == "asr":
        targets = [e.target for e in examples]
        return F.ctc_loss(
            out.transpose(0, 1),  # [T, B, V]
            torch.cat(targets),
            lengths,
            torch.tensor([len(t) for t in targets]),
            blank=0,
            reduction="mean",
            zero_infinity=True,
        )
    labels = torch.tensor([e.target for e in examples])
    logits = model.head(out, labels) if model.head is not None else out  # [B, C]
    return F.cross_entropy(logits, labels)


def mean_loss(
    task: str, model: ProbeModel, examples: Sequence[Example], max_batch_duration: float
) -> float:
    """Average batch loss over ``examples`` in eval mode (no gradients)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in duration_batches(examples, max_batch_duration):
            loss = batch_loss(task, model, batch)
            if loss is not None:
                total, count = total + float(loss), count + 1
    return total / count if count else math.nan


def improvement(previous: float, current: float) -> float:
    """Relative decrease of the dev loss (NewBob's criterion; 0 when it cannot be computed).

    Example
    -------
    >>> improvement(2.0, 1.5), improvement(1.0, 1.25), improvement(0.0, 0.0)
    (0.25, -0.25, 0.0)
    """
    if previous == 0 or math.isnan(previous) or math.isnan(current):
        return 0.0
    return (previous - current) / abs(previous)


def fit(
    task: str,
    model: ProbeModel,
    train: Sequence[Example],
    dev: Sequence[Example],
    cfg: DownstreamCfg,
    seed: int,
    epochs: int | None = None,
    lr: float | None = None,
) -> FitResult:
    """Train ``model`` on ``train`` for ``epochs`` epochs; keep its best dev epoch.

    Arguments
    ---------
    task : str
        ``asr``, ``speaker``, ``intent`` or ``style`` (selects the loss).
    model : ProbeModel
        Layer weights + probe; trained in place, left in eval mode with the kept weights.
    train : Sequence[Example]
        The cached training examples.
    dev : Sequence[Example]
        The cached dev examples (NewBob and the epoch kept).
    cfg : DownstreamCfg
        The ``downstream`` section (lr, lr_weights, batch duration, NewBob).
    seed : int
        Seeds the batch order (the caller seeds the model's initialisation).
    epochs : int | None
        Training epochs (None: ``cfg.epochs``; the jobs pass ``cfg.epochs_of(probe)``).
    lr : float | None
        Peak learning rate of the probe and its head (None: ``cfg.lr``; the jobs pass
        ``cfg.lr_of(probe)``).

    Returns
    -------
    FitResult
        The dev losses, the epoch kept and the final learning rates.
    """
    generator = torch.Generator().manual_seed(seed)
    weights = [model.layers.logits]
    others = [p for n, p in model.named_parameters() if not n.startswith("layers.")]
    optimizers = [  # foreach: the same numbers, a few per cent faster on CPU (see make_optimizer)
        torch.optim.Adam(others, lr=cfg.lr if lr is None else lr, foreach=True),
        torch.optim.Adam(weights, lr=cfg.lr_weights, foreach=True),
    ]
    batches = duration_batches(train, cfg.max_batch_duration)
    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None
    for epoch in range(cfg.epochs if epochs is None else epochs):
        _train_epoch(task, model, batches, optimizers, generator)
        dev_loss = mean_loss(task, model, dev, cfg.max_batch_duration)
        previous = result.dev_losses[-1] if result.dev_losses else None
        result.dev_losses.append(dev_loss)
        best = result.dev_losses[result.best_epoch] if best_state is not None else math.inf
        if not dev_loss >= best:  # lower, or no dev loss to compare (NaN): keep the newest
            result.best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
        if previous is not None and improvement(previous, dev_loss) < cfg.newbob_threshold:
            _scale_lr(optimizers, cfg.newbob_factor)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.lr = optimizers[0].param_groups[0]["lr"]
    result.lr_weights = optimizers[1].param_groups[0]["lr"]
    return result


def _train_epoch(
    task: str,
    model: ProbeModel,
    batches: Sequence[Sequence[Example]],
    optimizers: Sequence[torch.optim.Optimizer],
    generator: torch.Generator,
) -> None:
    """One pass over ``batches`` in an order drawn from ``generator``, every optimiser stepping."""
    model.train()
    for i in torch.randperm(len(batches), generator=generator).tolist():
        loss = batch_loss(task, model, batches[i])
        if loss is None:
            continue
        for opt in optimizers:
            opt.zero_grad()
        loss.backward()
        for opt in optimizers:
            opt.step()


def _scale_lr(optimizers: Sequence[torch.optim.Optimizer], factor: float) -> None:
    """Multiply the learning rate of every parameter group by ``factor`` (NewBob's decay)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] *= factor


def predict(
    model: ProbeModel, examples: Sequence[Example], max_batch_duration: float
) -> dict[str, torch.Tensor]:
    """Probe outputs per example id (frame outputs cut to the real frames), in eval mode."""
    model.eval()
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for batch in duration_batches(examples, max_batch_duration):
            states, lengths = pad_states(batch)
            y = model(states, lengths)
            for e, row, n in zip(batch, y, lengths.tolist(), strict=True):
                out[e.id] = row[:n] if y.dim() == 3 else row
    return out
