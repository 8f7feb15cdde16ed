"""Streaming evaluation of a CTC model: the encoder fed chunk by chunk, as a live recogniser.

The front-end features are computed over the whole utterance; the encoder then runs chunk
after chunk through its stateful step API (:meth:`smx.nn.encoder.Encoder.stream_step`),
seeing ``left_chunks`` previous chunks (``model.streaming.eval_left``; None = all), and the
CTC head turns each chunk's outputs into log-probabilities. Greedy decoding runs over their
concatenation (:func:`smx.downstream.ctc.transcribe` with a ``chunk``). In eval mode the
log-probabilities equal those of the chunk-masked offline forward
``Encoder.forward(..., chunk=ChunkConfig(C, L))`` (docs/algorithm.md, "Streaming and
dynamic chunk training"), so the scores say what chunking costs, not what a bug costs.

Chunk sizes are given in seconds (``downstream.finetune.stream_chunks``) and rounded to
whole encoder frames of the front-end (``hop_ms`` times its subsampling).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from smx.nn.base import lengths_to_mask
from smx.nn.streaming import ChunkConfig

if TYPE_CHECKING:
    from smx.config import Params
    from smx.downstream.ctc import CTCModel

#: the config field that lists the chunk sizes, named in every error about them
FIELD = "downstream.finetune.stream_chunks"


def chunk_frames(seconds: float, frame_seconds: float) -> int:
    """Encoder frames of a chunk of ``seconds``: the nearest whole number of frames.

    Arguments
    ---------
    seconds : float
        The chunk size, at least one frame.
    frame_seconds : float
        Seconds per encoder frame (``FrontendCfg.frame_seconds``).

    Returns
    -------
    int
        Frames per chunk, at least 1.

    Raises
    ------
    ValueError
        When ``seconds`` is not positive or shorter than one frame.

    Example
    -------
    >>> chunk_frames(0.64, 0.04), chunk_frames(0.5, 0.04), chunk_frames(0.64, 0.02)
    (16, 12, 32)
    >>> chunk_frames(0.01, 0.02)
    Traceback (most recent call last):
    ...
    ValueError: downstream.finetune.stream_chunks: 0.01 s is shorter than one encoder frame (0.02 s)
    """
    if not seconds > 0:  # also refuses NaN
        raise ValueError(f"{FIELD}: chunk sizes must be positive seconds, got {seconds!r}")
    if seconds < frame_seconds * (1 - 1e-9):
        raise ValueError(
            f"{FIELD}: {seconds:g} s is shorter than one encoder frame ({frame_seconds:g} s)"
        )
    return max(1, round(seconds / frame_seconds))


def stream_chunks(params: Params) -> dict[float, ChunkConfig]:
    """The chunk configuration of each streaming-evaluation chunk size of ``params``.

    Arguments
    ---------
    params : Params
        ``downstream.finetune.stream_chunks`` (seconds), ``model.frontend`` (frame length)
        and ``model.streaming.eval_left`` (left context in chunks).

    Returns
    -------
    dict[float, ChunkConfig]
        Seconds -> chunk size in frames and left chunks, in the order of the config.

    Example
    -------
    >>> from smx.config import Params
    >>> params = Params.model_validate({"model": {"frontend": {"kind": "conv2d"},
    ...     "streaming": {"eval_left": 2}}})
    >>> stream_chunks(params)[0.64]
    ChunkConfig(chunk_size=16, left_chunks=2)
    """
    frame = params.model.frontend.frame_seconds
    left = params.model.streaming.eval_left
    return {
        s: ChunkConfig(chunk_frames(s, frame), left)
        for s in params.downstream.finetune.stream_chunks
    }


def metric_key(seconds: float, metric: str) -> str:
    """The name of a streaming score: chunk size in seconds and metric.

    Example
    -------
    >>> metric_key(0.64, "cer"), metric_key(1.0, "wer")
    ('stream_0.64s_cer', 'stream_1s_wer')
    """
    return f"stream_{seconds:g}s_{metric}"


def unstreamable_mixer(encoder: nn.Module) -> str | None:
    """Why ``encoder`` cannot stream: the first mixer without a streaming mode, or None.

    Example
    -------
    >>> from smx.config import Params
    >>> from smx.downstream.upstream import build_parts
    >>> params = Params.model_validate({"model": {"mixer": {"kind": "fastformer"}}})
    >>> unstreamable_mixer(build_parts(params)[2])
    'the mixer Fastformer of encoder layer 0 has no streaming mode'
    """
    for i, block in enumerate(encoder.blocks):
        mixer = getattr(block, "mixer", None)
        if not getattr(mixer, "streamable", False):
            return f"the mixer {type(mixer).__name__} of encoder layer {i} has no streaming mode"
    return None


def stream_log_probs(
    model: CTCModel, audio: torch.Tensor, audio_lens: torch.Tensor, chunk: ChunkConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC log posteriors ``[B, T, V]`` and real frames ``[B]``, the encoder run chunk by chunk.

    Call it in eval mode (dropout off) without gradients; SpecAugment is not applied.

    Arguments
    ---------
    model : CTCModel
        The model (front-end, encoder with the step API, head).
    audio : torch.Tensor
        ``[B, S]`` waveforms.
    audio_lens : torch.Tensor
        ``[B]`` real samples.
    chunk : ChunkConfig
        Frames per chunk and visible left chunks.

    Returns
    -------
    tuple
        ``log_probs [B, T, V]`` (the head's log-softmax of each chunk, concatenated) and
        ``lengths [B]``.
    """
    feats, frames = model.fbank(audio, audio_lens)  # [B, T_f, F]
    latents, lengths = model.frontend(feats, frames)  # [B, T, C]
    batch, time = latents.shape[:2]
    pad_mask = lengths_to_mask(lengths, time)  # [B, T]
    state = model.encoder.init_stream(batch, latents.device, latents.dtype, chunk.left_chunks)
    outputs = [model.head.weight.new_zeros(batch, 0, model.head.out_features)]
    for start in range(0, time, chunk.chunk_size):
        part = slice(start, start + chunk.chunk_size)
        encoded, state = model.encoder.stream_step(latents[:, part], pad_mask[:, part], state)
        outputs.append(model.head(encoded).log_softmax(-1))  # [B, C, V]
    return torch.cat(outputs, dim=1), lengths  # [B, T, V]
