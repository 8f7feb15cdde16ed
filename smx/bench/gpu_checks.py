"""The correctness checks ``smx bench gpu`` runs on the device before it measures anything.

The properties the CPU test suite asserts (tests/nn, tests/ssl), asserted again on the
device, where other kernels run (cuDNN convolutions, fused SDPA, bf16 matmuls), on the
one-layer d_model 32 models of ``--quick`` (:func:`smx.bench.gpu_points.quick_patch`):

- padding invariance: an utterance's outputs do not change when a longer one pads the
  batch (every mixer, its encoder in eval mode, float32);
- streaming equality: chunk-by-chunk streaming equals the chunked offline forward
  (the streamable mixers);
- bf16 autocast: the loss and gradients of a pre-training step under bf16 autocast are
  finite and close to float32's, and the weights, gradients and AdamW moments stay float32
  (float32 master weights);
- DDP: a one-process group (NCCL on CUDA, gloo on a CPU) wraps the objective with the
  settings of :func:`smx.train.distributed.ddp_kwargs`; a bf16 step all-reduces float32
  gradients into the bucket views without the "grad strides do not match bucket view
  strides" warning;
- NVML: the calls MLflow's GPU system metrics make answer (CUDA only).

Each check returns a :class:`Check`; an exception inside one is that check's failure.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from smx.bench.gpu_points import VARIANTS, Variant, first_line
from smx.config import MIXER_KINDS, STREAMABLE_MIXERS, Params, deep_merge

#: Largest |difference| allowed between float32 outputs that must be equal (LayerNorm scale).
EXACT_ATOL = 1e-4
#: bf16 autocast against float32: relative loss difference and gradient cosine similarity.
BF16_LOSS_RTOL = 0.05
BF16_GRAD_COSINE = 0.95
#: The DDP warning a badly laid-out gradient bucket gives.
BUCKET_WARNING = "grad strides do not match bucket view strides"
#: Frames, padding, chunking and feature size of the small encoder inputs.
FRAMES, PADDING, CHUNK, LEFT_CHUNKS, INPUT_DIM = 13, 6, 4, 2, 16
#: Seconds of audio per utterance in the bf16 and DDP steps.
STEP_SECONDS = 1.0


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``status`` is ``ok``, ``failed`` or ``skipped``; ``detail`` says why."""

    name: str
    status: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return asdict(self)


def no_dropout(variant: Variant) -> Params:
    """The quick config of ``variant`` without dropout or layerdrop (deterministic steps).

    Example
    -------
    >>> no_dropout(VARIANTS["bestrq_mamba"]).model.encoder.layerdrop
    0.0
    """
    data = variant.params(quick=True).model_dump(mode="json")
    patch: dict[str, Any] = {"encoder": {"dropout": 0.0, "input_dropout": 0.0, "layerdrop": 0.0}}
    if "dropout" in data["model"]["mixer"]:
        patch["mixer"] = {"dropout": 0.0}
    return Params.model_validate(deep_merge(data, {"model": patch}))


def _mixer_variant(kind: str) -> Variant:
    """The variant whose mixer is ``kind`` (BEST-RQ's; MHSA with SpeechBrain's relpos)."""
    return VARIANTS["w2v2_mhsa_relpos"] if kind == "mhsa" else VARIANTS[f"bestrq_{kind}"]


def _encoder(kind: str, device: torch.device) -> Any:
    from smx.nn.build import build_encoder

    torch.manual_seed(0)
    model = no_dropout(_mixer_variant(kind)).model
    return build_encoder(model, INPUT_DIM).to(device).eval()


def padding_invariance(kind: str, device: torch.device) -> str:
    """Outputs of a short utterance alone and beside a longer one; max |difference|."""
    encoder = _encoder(kind, device)
    dim = encoder.input_dim
    short = torch.randn(1, FRAMES, dim, device=device)  # [1, T, F]
    padded = torch.cat([short, torch.randn(1, PADDING, dim, device=device)], dim=1)
    longer = torch.randn(1, FRAMES + PADDING, dim, device=device)
    batch = torch.cat([longer, padded])  # [2, T + P, F]: the short one padded
    lengths = torch.tensor([FRAMES + PADDING, FRAMES], device=device)
    with torch.no_grad():
        alone = encoder(short, torch.tensor([FRAMES], device=device)).last[0]  # [T, D]
        together = encoder(batch, lengths).last[1, :FRAMES]  # [T, D]
    diff = float((alone - together).abs().max())
    if diff > EXACT_ATOL:
        raise AssertionError(f"max abs difference {diff:.2e} > {EXACT_ATOL:g}")
    return f"max abs difference {diff:.1e}"


def streaming_equality(kind: str, device: torch.device) -> str:
    """Chunk-by-chunk streaming against the chunked offline forward; max |difference|."""
    from smx.nn.streaming import ChunkConfig

    encoder = _encoder(kind, device)
    feats = torch.randn(2, FRAMES, encoder.input_dim, device=device)  # [B, T, F]
    lengths = torch.tensor([FRAMES, FRAMES - 3], device=device)
    pad_mask = torch.arange(FRAMES, device=device)[None, :] < lengths[:, None]  # [B, T]
    with torch.no_grad():
        offline = encoder(feats, lengths, chunk=ChunkConfig(CHUNK, LEFT_CHUNKS)).last
        state = encoder.init_stream(2, device, feats.dtype, left_chunks=LEFT_CHUNKS)
        chunks = []
        for start in range(0, FRAMES, CHUNK):
            part = slice(start, start + CHUNK)
            out, state = encoder.stream_step(feats[:, part], pad_mask[:, part], state)
            chunks.append(out)
    streamed = torch.cat(chunks, dim=1)  # [B, T, D]
    diff = float(((offline - streamed) * pad_mask[..., None]).abs().max())
    if diff > EXACT_ATOL:
        raise AssertionError(f"max abs difference {diff:.2e} > {EXACT_ATOL:g}")
    return f"max abs difference {diff:.1e}"


def _audio(params: Params, device: torch.device) -> dict[str, torch.Tensor]:
    samples = round(STEP_SECONDS * params.data.sample_rate)
    generator = torch.Generator().manual_seed(params.seed)
    audio = torch.randn(2, samples, generator=generator).to(device)  # [B, S]
    return {"audio": audio, "audio_lens": torch.tensor([samples, samples * 3 // 4], device=device)}


def _loss_and_grads(
    objective: Any, batch: dict[str, torch.Tensor], precision: str, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward+backward from the same random state: the loss and all gradients, flat."""
    from smx.train.loop import autocast_context

    device = batch["audio"].device
    torch.manual_seed(seed)
    objective.generator.manual_seed(seed)  # masks and negatives
    objective.zero_grad(set_to_none=True)
    with autocast_context(device, precision):
        loss = objective(batch).loss
    loss.backward()
    grads = [p.grad.flatten() for p in objective.parameters() if p.grad is not None]
    return loss.detach(), torch.cat(grads).float()


def bf16_autocast(name: str, device: torch.device) -> str:
    """bf16 autocast step against float32: finite, close, float32 weights and AdamW state."""
    from smx.ssl.objective import build_objective
    from smx.train.schedule import make_optimizer

    params = no_dropout(VARIANTS[name])
    torch.manual_seed(params.seed)
    objective = build_objective(params).to(device).train()
    batch = _audio(params, device)
    loss32, grads32 = _loss_and_grads(objective, batch, "fp32", params.seed)
    loss16, grads16 = _loss_and_grads(objective, batch, "bf16", params.seed)
    if not (torch.isfinite(loss16) and torch.isfinite(grads16).all()):
        raise AssertionError(f"bf16 loss {float(loss16)} or its gradients are not finite")
    rel = float((loss16 - loss32).abs() / loss32.abs().clamp(min=1e-6))
    cosine = float(torch.nn.functional.cosine_similarity(grads16, grads32, dim=0))
    if rel > BF16_LOSS_RTOL or cosine < BF16_GRAD_COSINE:
        raise AssertionError(
            f"bf16 loss differs from float32's by {rel:.1%} (at most {BF16_LOSS_RTOL:.0%}), "
            f"gradient cosine {cosine:.3f} (at least {BF16_GRAD_COSINE})"
        )
    optimizer = make_optimizer(objective.parameters(), params.train)
    optimizer.step()
    _master_weights(objective, optimizer, loss16)
    return f"loss {rel:.1%} from float32, gradient cosine {cosine:.4f}"


def _master_weights(model: torch.nn.Module, optimizer: Any | None, loss: torch.Tensor) -> None:
    """Raise unless the loss, every weight, gradient and AdamW moment is float32."""
    tensors = {"the loss": loss}
    for name, p in model.named_parameters():
        tensors[name] = p
        if p.grad is not None:
            tensors[f"{name}.grad"] = p.grad
        state = optimizer.state.get(p, {}) if optimizer is not None else {}
        for key, value in state.items():
            if key != "step":
                tensors[f"{name} AdamW {key}"] = value
    other = [f"{k} ({v.dtype})" for k, v in tensors.items() if v.dtype != torch.float32]
    if other:
        raise AssertionError(f"not float32: {', '.join(other[:3])}")


@contextmanager
def _warn_always() -> Iterator[None]:
    """torch's warn-once warnings (DDP's bucket warning is one) every time, as Python warnings."""
    saved = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        yield
    finally:
        torch.set_warn_always(saved)


def ddp_buckets(device: torch.device) -> str:
    """A bf16 step of the objective in one-process DDP: float32 buckets, no stride warning."""
    import torch.distributed as dist

    from smx.ssl.objective import build_objective
    from smx.train.distributed import ddp_kwargs, process_group_backend
    from smx.train.loop import autocast_context

    backend = process_group_backend(device.type == "cuda")
    params = no_dropout(VARIANTS["w2v2_summarymixing"])
    torch.manual_seed(params.seed)
    objective = build_objective(params).to(device).train()
    batch = _audio(params, device)
    with tempfile.TemporaryDirectory() as folder:
        store = dist.FileStore(str(Path(folder) / "store"), 1)
        dist.init_process_group(backend, store=store, rank=0, world_size=1)
        try:
            ids = [device.index] if device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(
                objective, device_ids=ids, **ddp_kwargs(params.model.encoder.layerdrop > 0)
            )
            with warnings.catch_warnings(record=True) as caught, _warn_always():
                warnings.simplefilter("always")
                for _ in range(2):
                    with autocast_context(device, "bf16"):
                        loss = model(batch).loss
                    loss.backward()
                    _master_weights(model, None, loss.float())
                    model.zero_grad(set_to_none=True)
        finally:
            dist.destroy_process_group()
    bad = [str(w.message) for w in caught if BUCKET_WARNING in str(w.message).lower()]
    if bad:
        raise AssertionError(bad[0].splitlines()[0])
    return f"{backend}, {ddp_kwargs(False)}"


def nvml(device: torch.device) -> str:
    """The NVML calls of MLflow's GPU system metrics (memory, utilisation, power)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
        watts = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    return (
        f"{count} GPU(s); GPU {device.index or 0}: {memory.used / 2**30:.1f} of "
        f"{memory.total / 2**30:.0f} GiB used, {util.gpu} % busy, {watts:.0f} W"
    )


def _run(name: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(name, "ok", fn())
    except Exception as exc:
        return Check(name, "failed", first_line(exc))


def planned(device: torch.device) -> list[tuple[str, Callable[[], str]]]:
    """Every check of ``device``: its name and the call that runs it."""
    checks: list[tuple[str, Callable[[], str]]] = []
    for kind in MIXER_KINDS:
        checks.append((f"padding invariance: {kind}", lambda k=kind: padding_invariance(k, device)))
    for kind in STREAMABLE_MIXERS:
        checks.append((f"streaming equality: {kind}", lambda k=kind: streaming_equality(k, device)))
    for name in ("w2v2_summarymixing", "w2v2_mhsa_relpos", "bestrq_mamba"):
        checks.append((f"bf16 autocast: {name}", lambda n=name: bf16_autocast(n, device)))
    checks.append(("DDP gradient buckets", lambda: ddp_buckets(device)))
    if device.type == "cuda":
        checks.append(("NVML (MLflow GPU metrics)", lambda: nvml(device)))
    return checks


def run_checks(device: torch.device, report: Callable[[Check], None] | None = None) -> list[Check]:
    """Run every check on ``device`` in float32 matmuls (no TF32); ``report`` hears each."""
    results = []
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for name, fn in planned(device):
            results.append(_run(name, fn))
            if report is not None:
                report(results[-1])
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return results
