"""Size a configuration before spending compute: parameters, FLOPs per second of audio, memory.

:func:`describe` builds the SSL objective of a config on the CPU (as training builds it) and
reports three things (``smx config describe FILE`` prints them).

Parameters, per part of the objective:

* ``frontend``: the subsampling network between log-mel frames and the encoder (the wav2vec
  2.0 CNN latent extractor or the conv2d front-end; the log-mel features have no weights);
* ``encoder``: input projection, mask embedding, blocks and final norm;
* ``ssl``: what only pre-training uses (quantiser, projections, prediction heads).

``model = frontend + encoder`` is what pre-training hands to downstream tasks (the entries of
``encoder.pt``, :data:`smx.train.pretrain.ENCODER_PREFIXES`) and what the papers' model sizes
count: the "155M" wav2vec 2.0 model is 154.1 M front-end + encoder (154.8 M with the
quantiser and projections); docs/algorithm.md, "wav2vec 2.0".

FLOPs: one training-mode forward and backward of the objective on one utterance of
``probe_seconds`` of noise, counted with :class:`torch.utils.flop_counter.FlopCounterMode` and
divided by ``probe_seconds``. Layerdrop is turned off so that every layer counts (the cost of
a step that keeps all layers). The counter counts matrix products, convolutions and attention
kernels at 2 FLOPs per multiply-add; element-wise work (activations, norms, softmax, Mamba's
scan) is not counted. Two corrections to torch 2.14's table: the CPU flash-attention kernel,
missing from it, is counted with torch's SDPA formula; and a convolution's backward is counted
as one forward-sized convolution per gradient it computes, because torch's formula ignores
``groups`` for the weight gradient and overcounts a depthwise convolution by its channel
count. Per-second figures assume a cost linear in
duration: exact for the linear mixers; MHSA's attention term grows with utterance length, so
a short probe understates MHSA on long utterances.

Memory per GPU for ``batch_seconds`` of audio per step (default ``data.max_batch_duration``,
the bucketing sampler's budget per GPU; gradient accumulation runs the micro-batches one after
another, so it does not add activations):

* weights: 4 bytes per parameter (fp32 master weights) plus the buffers' own bytes;
* gradients: 4 bytes per trainable parameter;
* optimizer: 8 bytes per trainable parameter (AdamW's two fp32 moments);
* ddp: 4 bytes per trainable parameter when ``cluster.num_workers > 1`` (DDP's gradient
  buckets, a second copy of the gradients);
* autocast: 2 bytes per trainable parameter when ``train.precision`` is bf16 (the bf16 weight
  copies autocast caches during the forward);
* activations: the tensors autograd saves for backward during the probe's forward, measured
  with :func:`torch.autograd.graph.saved_tensors_hooks` (each storage once, parameters and
  buffers excluded), floating-point ones at 2 bytes per element under bf16 and 4 otherwise,
  scaled linearly from ``probe_seconds`` to ``batch_seconds``.

Not included: the CUDA context and cuBLAS/cuDNN workspaces (several hundred MB), allocator
fragmentation, temporaries of the backward pass, and the ``[B, H, T, T]`` attention weights
that MHSA saves when SDPA falls back to its math kernel (the fused kernels keep O(T) state).
Treat the total as a lower bound to compare configs, not as a promise.

Example
-------
>>> probe = measure(lambda: nn.Linear(4, 3, bias=False)(torch.ones(1, 5, 4)).sum())
>>> probe.forward_flops, probe.backward_flops, probe.saved_float_elements
(120, 120, 20)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter

from smx.config import Params

FP32_BYTES = 4
BF16_BYTES = 2
ADAMW_STATES = 2  # exp_avg and exp_avg_sq, fp32 each
FRONTEND_PARTS = ("extractor", "subsampling")
ENCODER_PART = "encoder"
GIB = 2**30


# ----------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class ParamCount:
    """Parameters per part of an SSL objective (see the module docstring)."""

    frontend: int
    encoder: int
    ssl: int
    trainable: int
    buffer_bytes: int

    @property
    def model(self) -> int:
        """Front-end + encoder: what pre-training leaves for downstream tasks."""
        return self.frontend + self.encoder

    @property
    def total(self) -> int:
        """Every parameter of the objective."""
        return self.frontend + self.encoder + self.ssl


@dataclass(frozen=True)
class Probe:
    """What one forward and backward cost: FLOPs and the tensors saved for backward."""

    forward_flops: int
    backward_flops: int
    saved_float_elements: int
    saved_other_bytes: int


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU for one step of ``batch_seconds`` of audio (see the module docstring)."""

    batch_seconds: float
    weights: int
    gradients: int
    optimizer: int
    ddp: int
    autocast: int
    activations: int

    @property
    def total(self) -> int:
        """The sum of every term."""
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.ddp
            + self.autocast
            + self.activations
        )


@dataclass(frozen=True)
class Description:
    """Size of one configuration: parameters, FLOPs per second of audio, memory per GPU."""

    params: ParamCount
    forward_flops_per_second: float
    train_flops_per_second: float
    memory: MemoryEstimate
    probe_seconds: float
    audio_seconds_per_step: float
    max_steps: int

    @property
    def train_flops_per_step(self) -> float:
        """FLOPs of one optimiser step over every worker (full batches assumed)."""
        return self.train_flops_per_second * self.audio_seconds_per_step

    @property
    def train_flops_per_run(self) -> float:
        """FLOPs of ``train.max_steps`` steps."""
        return self.train_flops_per_step * self.max_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: every field, the derived totals included."""
        params = asdict(self.params) | {"model": self.params.model, "total": self.params.total}
        memory = asdict(self.memory) | {"total": self.memory.total}
        return {
            "params": params,
            "forward_flops_per_second": self.forward_flops_per_second,
            "train_flops_per_second": self.train_flops_per_second,
            "train_flops_per_step": self.train_flops_per_step,
            "train_flops_per_run": self.train_flops_per_run,
            "memory": memory,
            "probe_seconds": self.probe_seconds,
            "audio_seconds_per_step": self.audio_seconds_per_step,
            "max_steps": self.max_steps,
        }


# ----------------------------------------------------------------------------------------
# parameters


def count_parameters(objective: nn.Module) -> ParamCount:
    """Parameters of an SSL objective per part, by the name of its top-level child.

    Example
    -------
    >>> toy = nn.ModuleDict({"extractor": nn.Linear(2, 3), "encoder": nn.Linear(3, 3),
    ...                      "quantizer": nn.Linear(3, 1, bias=False)})
    >>> c = count_parameters(toy)
    >>> c.frontend, c.encoder, c.ssl, c.model, c.total
    (9, 12, 3, 21, 24)
    """
    parts = {"frontend": 0, "encoder": 0, "ssl": 0}
    trainable = 0
    for name, param in objective.named_parameters():
        top = name.split(".", 1)[0]
        part = "frontend" if top in FRONTEND_PARTS else "encoder" if top == ENCODER_PART else "ssl"
        parts[part] += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    buffer_bytes = sum(b.numel() * b.element_size() for b in objective.buffers())
    return ParamCount(**parts, trainable=trainable, buffer_bytes=buffer_bytes)


def count_config_parameters(params: Params) -> ParamCount:
    """Build the objective of ``params`` on the CPU (no forward pass) and count its parameters.

    A 155M-parameter objective takes a few seconds to build.

    Returns
    -------
    ParamCount
        The parameters per part, as :func:`count_parameters` counts them.
    """
    from smx.ssl.objective import build_objective

    return count_parameters(build_objective(params))


# ----------------------------------------------------------------------------------------
# FLOPs and saved activations


def _conv_backward_flops(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: list[bool],
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """One forward-sized convolution per gradient computed (grouped convolutions included)."""
    forward = flop_counter.conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def _cpu_flash_flops(q: list[int], k: list[int], v: list[int], *args: Any, **kwargs: Any) -> int:
    """The CPU flash-attention kernel, counted with torch's SDPA formula."""
    return flop_counter.sdpa_flop_count(q, k, v)


def _cpu_flash_backward_flops(
    grad_out: list[int], q: list[int], k: list[int], v: list[int], *args: Any, **kwargs: Any
) -> int:
    """The CPU flash-attention backward, counted with torch's SDPA backward formula."""
    return flop_counter.sdpa_backward_flop_count(grad_out, q, k, v)


def _flop_mapping() -> dict[Any, Callable[..., int]]:
    """The counter's corrections: aten operator -> FLOP formula (see the module docstring)."""
    aten = torch.ops.aten
    return {
        aten.convolution_backward: _conv_backward_flops,
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops,
    }


def measure(loss_fn: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor] = ()) -> Probe:
    """FLOPs of ``loss_fn()`` and of its backward, and what autograd saves in between.

    Saved tensors are counted once per storage: floating-point ones by element (the caller
    chooses the bytes per element), the others (masks, indices) by bytes.

    Arguments
    ---------
    loss_fn : Callable[[], torch.Tensor]
        Runs the forward pass and returns a scalar to back-propagate.
    exclude : Iterable[torch.Tensor]
        Tensors not to count as saved activations (the model's parameters and buffers).

    Returns
    -------
    Probe
        Forward and backward FLOPs, saved floating-point elements and other saved bytes.

    Example
    -------
    >>> conv = nn.Conv1d(8, 8, kernel_size=3, groups=8, bias=False)  # depthwise
    >>> x = torch.ones(1, 8, 10, requires_grad=True)
    >>> p = measure(lambda: conv(x).sum(), exclude=conv.parameters())
    >>> p.forward_flops, p.backward_flops  # 2 * 8 channels * 3 taps * 8 outputs; x2 backward
    (384, 768)
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    floats: dict[int, int] = {}
    others: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if storage.nbytes() and ptr not in skip:
            if t.is_floating_point():
                floats[ptr] = storage.nbytes() // t.element_size()
            else:
                others[ptr] = storage.nbytes()
        return t

    mapping = _flop_mapping()
    forward = flop_counter.FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), forward:
        loss = loss_fn()
    backward = flop_counter.FlopCounterMode(display=False, custom_mapping=mapping)
    with backward:
        loss.backward()
    return Probe(
        forward.get_total_flops(),
        backward.get_total_flops(),
        sum(floats.values()),
        sum(others.values()),
    )


def _without_layerdrop(params: Params) -> Params:
    """``params`` with layerdrop off, so that the probe runs (and counts) every layer."""
    data = params.model_dump()
    data["model"]["encoder"]["layerdrop"] = 0.0
    data["variants"] = {}
    return Params.model_validate(data)


def probe_objective(objective: nn.Module, params: Params, seconds: float) -> Probe:
    """:func:`measure` one training step of ``objective`` on ``seconds`` of seeded noise.

    Arguments
    ---------
    objective : nn.Module
        The SSL objective built from ``params``; it is put in training mode.
    params : Params
        The configuration (sample rate, seed of the noise and of the step's randomness).
    seconds : float
        Duration of the one-utterance batch.

    Returns
    -------
    Probe
        What :func:`measure` reports for the step.
    """
    rate = params.data.sample_rate
    samples = round(seconds * rate)
    generator = torch.Generator().manual_seed(params.seed)
    batch = {
        "audio": 0.1 * torch.randn(1, samples, generator=generator),  # [1, S]
        "audio_lens": torch.tensor([samples]),  # [1]
    }
    exclude = [*objective.parameters(), *objective.buffers()]
    objective.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        return measure(lambda: objective(batch).loss, exclude)


# ----------------------------------------------------------------------------------------
# memory and the whole description


def estimate_memory(
    counts: ParamCount, probe: Probe, probe_seconds: float, batch_seconds: float, params: Params
) -> MemoryEstimate:
    """Bytes per GPU of training ``params`` on ``batch_seconds`` of audio per step.

    Arguments
    ---------
    counts : ParamCount
        The objective's parameters.
    probe : Probe
        What one step on ``probe_seconds`` of audio saved for backward.
    probe_seconds : float
        Duration of the probe's utterance.
    batch_seconds : float
        Seconds of audio per GPU per step; the activations scale linearly to it.
    params : Params
        The configuration (precision, number of workers).

    Returns
    -------
    MemoryEstimate
        Each term of the estimate, in bytes (see the module docstring).

    Example
    -------
    >>> counts = ParamCount(frontend=0, encoder=10, ssl=0, trainable=10, buffer_bytes=8)
    >>> probe = Probe(0, 0, saved_float_elements=100, saved_other_bytes=6)
    >>> m = estimate_memory(counts, probe, 2.0, 4.0, Params())  # defaults: bf16, 1 worker
    >>> m.weights, m.gradients, m.optimizer, m.ddp, m.autocast, m.activations
    (48, 40, 80, 0, 20, 412)
    """
    bf16 = params.train.precision == "bf16"
    trainable = counts.trainable
    per_float = BF16_BYTES if bf16 else FP32_BYTES
    saved = probe.saved_float_elements * per_float + probe.saved_other_bytes
    return MemoryEstimate(
        batch_seconds=batch_seconds,
        weights=counts.total * FP32_BYTES + counts.buffer_bytes,
        gradients=trainable * FP32_BYTES,
        optimizer=trainable * FP32_BYTES * ADAMW_STATES,
        ddp=trainable * FP32_BYTES if params.cluster.num_workers > 1 else 0,
        autocast=trainable * BF16_BYTES if bf16 else 0,
        activations=round(saved * batch_seconds / probe_seconds),
    )


def describe(
    params: Params, batch_seconds: float | None = None, probe_seconds: float = 2.0
) -> Description:
    """Parameters, FLOPs per second of audio and memory per GPU of ``params``.

    The probe of a 155M-parameter model takes tens of seconds on a 2-core CPU.

    Arguments
    ---------
    params : Params
        A validated configuration.
    batch_seconds : float | None
        Seconds of audio per GPU per step (default ``data.max_batch_duration``).
    probe_seconds : float
        Duration of the measured utterance.

    Returns
    -------
    Description
        Parameters, FLOPs and memory of one training step (see the module docstring).

    Raises
    ------
    ValueError
        When ``batch_seconds`` or ``probe_seconds`` is not positive.
    """
    if batch_seconds is None:
        batch_seconds = params.data.max_batch_duration
    if not batch_seconds > 0:
        raise ValueError(f"batch_seconds must be a positive number of seconds, got {batch_seconds}")
    if not probe_seconds > 0:
        raise ValueError(f"probe_seconds must be a positive number of seconds, got {probe_seconds}")
    from smx.ssl.objective import build_objective

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        objective = build_objective(_without_layerdrop(params))
    counts = count_parameters(objective)
    probe = probe_objective(objective, params, probe_seconds)
    steps = params.train.grad_accum * params.cluster.num_workers
    return Description(
        params=counts,
        forward_flops_per_second=probe.forward_flops / probe_seconds,
        train_flops_per_second=(probe.forward_flops + probe.backward_flops) / probe_seconds,
        memory=estimate_memory(counts, probe, probe_seconds, batch_seconds, params),
        probe_seconds=probe_seconds,
        audio_seconds_per_step=batch_seconds * steps,
        max_steps=params.train.max_steps,
    )


# ----------------------------------------------------------------------------------------
# text


def _m(n: float) -> str:
    """A parameter count in millions."""
    return f"{n / 1e6:.2f} M"


def _scaled(n: float, units: tuple[tuple[float, str], ...]) -> str:
    """``n`` in the largest of ``units`` (largest first) it reaches, else in the smallest."""
    if n == 0:
        return "0"
    for size, name in units:
        if abs(n) >= size:
            return f"{n / size:.2f} {name}"
    size, name = units[-1]
    return f"{n / size:.2f} {name}"


def _flops(n: float) -> str:
    return _scaled(n, ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")))


def _bytes(n: float) -> str:
    return _scaled(n, ((GIB, "GiB"), (2**20, "MiB"), (2**10, "KiB")))


def summary_rows(d: Description, params: Params) -> list[tuple[str, str]]:
    """``(quantity, value)`` rows for printing a :class:`Description`.

    Example
    -------
    >>> counts = ParamCount(frontend=1_000_000, encoder=2_000_000, ssl=0, trainable=3_000_000,
    ...                     buffer_bytes=0)
    >>> memory = MemoryEstimate(10.0, 0, 0, 0, 0, 0, 0)
    >>> d = Description(counts, 2e9, 6e9, memory, 2.0, 40.0, 10)
    >>> dict(summary_rows(d, Params()))["parameters: model (front-end + encoder)"]
    '3.00 M'
    """
    m, enc, train = d.memory, params.model.encoder, params.train
    hours = d.audio_seconds_per_step * d.max_steps / 3600
    return [
        (
            "model",
            f"{params.ssl.kind}, {enc.block} x {enc.num_layers}, d_model {enc.d_model}, "
            f"mixer {params.model.mixer.kind}",
        ),
        ("parameters: front-end", _m(d.params.frontend)),
        ("parameters: encoder", _m(d.params.encoder)),
        ("parameters: model (front-end + encoder)", _m(d.params.model)),
        ("parameters: SSL heads", _m(d.params.ssl)),
        ("parameters: total", _m(d.params.total)),
        ("FLOPs per second of audio: forward", _flops(d.forward_flops_per_second)),
        ("FLOPs per second of audio: training (fwd + bwd)", _flops(d.train_flops_per_second)),
        (
            "memory per GPU: batch",
            f"{m.batch_seconds:g} s of audio, {train.precision}, "
            f"{params.cluster.num_workers} worker(s)",
        ),
        ("memory per GPU: weights", _bytes(m.weights)),
        ("memory per GPU: gradients", _bytes(m.gradients)),
        ("memory per GPU: AdamW states", _bytes(m.optimizer)),
        ("memory per GPU: DDP gradient buckets", _bytes(m.ddp)),
        ("memory per GPU: autocast weight copies", _bytes(m.autocast)),
        ("memory per GPU: activations", _bytes(m.activations)),
        ("memory per GPU: total (lower bound)", _bytes(m.total)),
        (
            "run",
            f"{d.max_steps} steps x {d.audio_seconds_per_step:g} s of audio "
            f"(batch x grad_accum {train.grad_accum} x {params.cluster.num_workers} workers) "
            f"= {hours:,.0f} h of audio, {d.train_flops_per_run:.2e} FLOPs",
        ),
    ]
