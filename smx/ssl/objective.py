"""What an SSL objective returns, and the objective of a configuration.

An objective is an ``nn.Module`` whose ``forward(batch) -> LossOutput`` takes a batch dict
with ``"audio"`` ``[B, S]`` float and ``"audio_lens"`` ``[B]`` int (samples) and owns
everything from waveforms to the loss: the front-end, the encoder, the quantiser and the
prediction heads. ``set_step(step)`` tells it the optimiser step (for annealed schedules),
and its ``generator`` (a CPU ``torch.Generator``) draws the masks and negatives: the
training loop reseeds it per worker (``objective.generator.manual_seed(seed + rank)``)
and saves ``generator.get_state()`` in checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from smx.config import Params


@dataclass
class LossOutput:
    """The loss to back-propagate and scalar metrics for logging.

    Attributes
    ----------
    loss : torch.Tensor
        Scalar loss with its graph.
    metrics : dict of str to float
        Detached values (``loss`` included), ready for a logger.
    """

    loss: torch.Tensor
    metrics: dict[str, float]


def build_objective(params: Params) -> nn.Module:
    """The SSL objective of ``params.ssl.kind`` with the model of ``params.model``.

    wav2vec 2.0 gets an encoder with a mask embedding; BEST-RQ feeds noise-filled features
    instead. Mask generators and the BEST-RQ quantiser are seeded with ``params.seed``.

    Arguments
    ---------
    params : Params
        The run's parameters (``model``, ``ssl``, ``data.sample_rate``, ``seed``).

    Returns
    -------
    nn.Module
        A :class:`~smx.ssl.wav2vec2.Wav2Vec2Objective` or
        :class:`~smx.ssl.bestrq.BestRQObjective`.

    Example
    -------
    >>> tiny = {"encoder": {"num_layers": 1, "d_model": 16, "d_ffn": 32, "kernel_size": 3},
    ...         "frontend": {"cnn_channels": [16, 16]},
    ...         "mixer": {"kind": "summarymixing", "local_hidden": [16], "local_out": 16,
    ...                   "summary_hidden": [16], "heads": 2}}
    >>> params = Params.model_validate({"model": tiny, "ssl": {"kind": "wav2vec2",
    ...     "codebook_entries": 8, "code_dim": 8, "proj_dim": 8, "num_negatives": 4}})
    >>> type(build_objective(params)).__name__
    'Wav2Vec2Objective'
    """
    from smx.nn.build import build_encoder, build_fbank, build_subsampling

    frontend = params.model.frontend
    fbank = build_fbank(frontend, params.data.sample_rate)
    subsampling = build_subsampling(frontend, params.model.encoder.dropout)
    if params.ssl.kind == "wav2vec2":
        from smx.ssl.wav2vec2 import Wav2Vec2Objective

        encoder = build_encoder(params.model, subsampling.output_dim, mask_embedding=True)
        return Wav2Vec2Objective(
            fbank, subsampling, encoder, params.ssl, params.seed, params.model.streaming
        )
    from smx.ssl.bestrq import BestRQObjective

    encoder = build_encoder(params.model, subsampling.output_dim)
    return BestRQObjective(
        fbank, subsampling, encoder, params.ssl, params.seed, params.model.streaming
    )


def metric_values(values: dict[str, torch.Tensor | float | int]) -> dict[str, float]:
    """Detach tensors and convert every value to a Python float.

    Arguments
    ---------
    values : dict of str to torch.Tensor, float or int
        Scalar metrics (0-dim tensors or numbers).

    Returns
    -------
    dict of str to float
        The same keys, plain floats.

    Example
    -------
    >>> metric_values({"loss": torch.tensor(1.5, requires_grad=True), "n": 3})
    {'loss': 1.5, 'n': 3.0}
    """
    return {k: float(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in values.items()}


def check_audio_batch(
    batch: Mapping[str, torch.Tensor], name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(audio [B, S], audio_lens [B])`` of a batch dict; ValueError naming what is wrong.

    Arguments
    ---------
    batch : Mapping[str, torch.Tensor]
        Must hold ``audio`` (float ``[B, S]``) and ``audio_lens`` (integer ``[B]``).
    name : str
        Objective name used in the messages.

    Returns
    -------
    tuple of torch.Tensor
        ``audio`` and ``audio_lens``.

    Example
    -------
    >>> batch = {"audio": torch.zeros(2, 8), "audio_lens": torch.tensor([8, 5])}
    >>> audio, lens = check_audio_batch(batch, "objective")
    >>> audio.shape, lens.tolist()
    (torch.Size([2, 8]), [8, 5])
    """
    for key in ("audio", "audio_lens"):
        if key not in batch:
            raise ValueError(f"{name}: batch must hold '{key}', got keys {sorted(batch)}")
    audio, lens = batch["audio"], batch["audio_lens"]
    if audio.dim() != 2 or not audio.is_floating_point():
        raise ValueError(
            f"{name}: batch['audio'] must be a float tensor [B, S], got {audio.dtype} "
            f"{list(audio.shape)}"
        )
    if lens.shape != audio.shape[:1] or lens.is_floating_point() or lens.dtype == torch.bool:
        raise ValueError(
            f"{name}: batch['audio_lens'] must be an integer tensor [B] = [{audio.shape[0]}], "
            f"got {lens.dtype} {list(lens.shape)}"
        )
    return audio, lens
