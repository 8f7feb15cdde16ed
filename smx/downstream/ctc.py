"""CTC character ASR on a whole encoder: SpecAugment, a frozen-then-trained encoder, scoring.

:class:`CTCModel` is the fine-tuning model: the pre-training front-end and encoder (built
by :func:`smx.downstream.upstream.build_parts`, so an ``encoder.pt`` loads into it) and a
linear head over the characters of :class:`smx.data.text.CharVocab` (id 0 = the CTC blank).
Its ``forward(batch) -> LossOutput`` is what :class:`smx.train.loop.Trainer` trains:

    audio [B, S] -> fbank [B, T_f, 80] -> SpecAugment (training only)
      -> front-end + encoder [B, T, D] -> head [B, T, V] -> log-softmax -> CTC loss

While ``step <= freeze_steps`` (set by the training loop through :meth:`CTCModel.set_step`)
the front-end and encoder run under ``torch.no_grad()``, as fairseq's
``freeze_finetune_updates``: they get no gradient, so the optimiser leaves them untouched and
only the head learns; afterwards everything trains.

The loss is the CTC negative log-likelihood **per encoder frame**, in nats: summed over the
utterances of the batch, divided by their real encoder frames (so batches of long and short
utterances give comparable numbers; a uniform guess costs about ``log V``). Utterances whose
transcript cannot be aligned to their frames contribute 0 (``zero_infinity``).

Example
-------
>>> from smx.config import Params
>>> from smx.data.text import CharVocab
>>> params = Params.model_validate({"model": {
...     "frontend": {"cnn_channels": [16, 16]},
...     "encoder": {"num_layers": 1, "d_model": 16, "d_ffn": 32, "kernel_size": 3},
...     "mixer": {"kind": "mhsa", "heads": 2}}})
>>> vocab = CharVocab("ab ")
>>> model = build_ctc_model(params, len(vocab))
>>> targets, target_lens = encode_texts(["ab", "b a"], vocab)
>>> batch = {"audio": torch.randn(2, 16000), "audio_lens": torch.tensor([16000, 12000]),
...          "targets": targets, "target_lens": target_lens}
>>> out = model(batch)
>>> out.loss.shape, out.metrics["frozen"], targets.tolist()  # default freeze_steps: frozen
(torch.Size([]), 1.0, [[2, 3, 0], [3, 4, 2]])
>>> log_probs, lengths = model.eval().log_probs(batch["audio"], batch["audio_lens"])
>>> log_probs.shape, lengths.tolist()
(torch.Size([2, 48, 5]), [48, 35])
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from smx.config import FinetuneCfg, Params, StreamingCfg
from smx.data.text import CharVocab
from smx.downstream.decoding import BLANK, greedy_decode
from smx.downstream.features import duration_batches
from smx.downstream.metrics import cer, wer
from smx.downstream.streaming_eval import stream_log_probs
from smx.downstream.upstream import build_parts
from smx.nn.streaming import ChunkConfig, training_chunk
from smx.ssl.objective import LossOutput, check_audio_batch, metric_values


class SpecAugment(nn.Module):
    """Frequency and time masking of log-mel features ``[B, T, F]`` in training mode only.

    Each utterance gets its own masks (torchaudio's ``iid_masks``), filled with 0 (the mean
    of the per-utterance normalised features). Up to ``freq_masks`` bands of at most
    ``freq_width`` bins, and ``time_masks`` spans of at most ``min(time_width,
    time_fraction * T / time_masks)`` frames each. In eval mode the input is returned as is.
    The masks draw from the global torch RNG (saved in training checkpoints).

    Arguments
    ---------
    freq_masks : int
        Number of frequency masks.
    freq_width : int
        Maximum width of a frequency mask, in mel bins.
    time_masks : int
        Number of time masks.
    time_width : int
        Maximum width of a time mask, in frames.
    time_fraction : float
        The most of the ``T`` frames that all time masks together may cover.

    Example
    -------
    >>> aug = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width=20)
    >>> x = torch.randn(3, 200, 80) + 5.0
    >>> bool((aug.eval()(x) == x).all()), bool((aug.train()(x) == 0).any())
    (True, True)
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 10,
        time_width: int = 100,
        time_fraction: float = 0.15,
    ) -> None:
        super().__init__()
        self.freq_masks, self.time_masks = freq_masks, time_masks
        self.freq = torchaudio.transforms.FrequencyMasking(freq_width, iid_masks=True)
        share = time_fraction / max(time_masks, 1)
        self.time = torchaudio.transforms.TimeMasking(time_width, iid_masks=True, p=share)

    @classmethod
    def from_config(cls, cfg: FinetuneCfg) -> SpecAugment:
        """The masks of ``downstream.finetune``."""
        return cls(
            cfg.freq_masks,
            cfg.freq_mask_width,
            cfg.time_masks,
            cfg.time_mask_width,
            cfg.time_mask_fraction,
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Masked features ``[B, T, F]`` (training) or ``feats`` itself (eval)."""
        if not self.training:
            return feats
        x = feats.transpose(1, 2)  # [B, F, T]: torchaudio masks (..., freq, time)
        for _ in range(self.freq_masks):
            x = self.freq(x)
        for _ in range(self.time_masks):
            x = self.time(x)
        return x.transpose(1, 2)  # [B, T, F]


class CTCModel(nn.Module):
    """Front-end + encoder + linear CTC head, with the encoder frozen for the first steps.

    The module docstring has an example.

    Arguments
    ---------
    fbank : nn.Module
        The log-mel features (from :func:`smx.downstream.upstream.build_parts`).
    frontend : nn.Module
        The subsampling front-end (from the same).
    encoder : nn.Module
        The encoder (from the same); its ``d_model`` sizes the head.
    vocab_size : int
        Output units ``V`` (``len(CharVocab)``; id 0 is the blank), at least 2.
    freeze_steps : int
        Updates ``1 .. freeze_steps`` train the head only.
    specaugment : nn.Module | None
        The feature masking (None: none).
    streaming : StreamingCfg | None
        ``model.streaming``: when enabled, every training batch runs the encoder with a
        chunk configuration drawn from :attr:`generator` (dynamic chunk training); the
        training loop seeds and checkpoints that generator.
    """

    def __init__(
        self,
        fbank: nn.Module,
        frontend: nn.Module,
        encoder: nn.Module,
        vocab_size: int,
        freeze_steps: int = 0,
        specaugment: nn.Module | None = None,
        streaming: StreamingCfg | None = None,
    ) -> None:
        super().__init__()
        self.streaming = streaming
        self.generator = torch.Generator()
        if vocab_size < 2:
            raise ValueError(
                f"vocab_size: expected at least 2 (blank + a character), got {vocab_size}"
            )
        self.fbank, self.frontend, self.encoder = fbank, frontend, encoder
        self.specaugment = specaugment if specaugment is not None else nn.Identity()
        self.head = nn.Linear(int(encoder.d_model), vocab_size)
        self.freeze_steps = freeze_steps
        self.step = 0

    @property
    def frozen(self) -> bool:
        """True while the current update is one of the first ``freeze_steps``."""
        return self.step <= self.freeze_steps

    def set_step(self, step: int) -> None:
        """The optimiser update about to run (1-based), which decides :attr:`frozen`."""
        self.step = step

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The front-end and encoder entries of the state dict (everything but the head)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}

    def log_probs(
        self, audio: torch.Tensor, audio_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log posteriors ``[B, T, V]`` and real frames ``[B]`` of waveforms ``[B, S]``.

        The head and the log-softmax run in float32, also under bf16 autocast (the encoder
        may run in bf16), so the CTC loss sums float32 log posteriors.
        """
        frozen = self.training and self.frozen
        with torch.no_grad() if frozen else nullcontext():
            feats, frames = self.fbank(audio, audio_lens)  # [B, T_f, F]
            feats = self.specaugment(feats)
            latents, lengths = self.frontend(feats, frames)  # [B, T, C]
            chunk = training_chunk(self.streaming, self.generator, self.training)
            encoded = self.encoder(latents, lengths, chunk=chunk).last  # [B, T, D]
        with torch.autocast(encoded.device.type, enabled=False):
            logits = self.head(encoded.to(self.head.weight.dtype)).float()  # [B, T, V]
            return logits.log_softmax(-1), lengths  # [B, T, V]

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        """CTC loss per real encoder frame of a batch.

        Arguments
        ---------
        batch : dict[str, torch.Tensor]
            ``audio [B, S]``, ``audio_lens [B]``, ``targets [B, U]`` (character ids,
            zero-padded) and ``target_lens [B]``.

        Returns
        -------
        LossOutput
            The loss and the metrics ``loss`` and ``frozen`` (1.0 while the encoder is frozen).
        """
        audio, audio_lens = check_audio_batch(batch, type(self).__name__)
        targets, target_lens = batch["targets"], batch["target_lens"]
        log_probs, lengths = self.log_probs(audio, audio_lens)
        total = F.ctc_loss(
            log_probs.transpose(0, 1).float(),  # [T, B, V]
            targets,
            lengths,
            target_lens,
            blank=BLANK,
            reduction="sum",
            zero_infinity=True,
        )
        loss = total / lengths.sum().clamp(min=1)  # per real encoder frame
        return LossOutput(loss, metric_values({"loss": loss, "frozen": float(self.frozen)}))


def build_ctc_model(params: Params, vocab_size: int) -> CTCModel:
    """The fine-tuning model of ``params``, with random weights.

    The front-end and encoder are built exactly as for pre-training, so
    :func:`load_encoder` can fill them from an ``encoder.pt``; the head is drawn after them,
    so the same seed gives the same head whatever the encoder's origin.

    Arguments
    ---------
    params : Params
        The architecture (``model``) and the fine-tuning settings (``downstream.finetune``).
    vocab_size : int
        Output units of the CTC head (``len(CharVocab)``).

    Returns
    -------
    CTCModel
        The model, SpecAugment included when ``downstream.finetune.specaugment`` is set.
    """
    cfg = params.downstream.finetune
    fbank, frontend, encoder = build_parts(params)
    augment = SpecAugment.from_config(cfg) if cfg.specaugment else None
    return CTCModel(
        fbank, frontend, encoder, vocab_size, cfg.freeze_steps, augment, params.model.streaming
    )


def load_encoder(model: CTCModel, path: Any, params: Params) -> CTCModel:
    """Copy the front-end and encoder weights of an ``encoder.pt`` into ``model``.

    Arguments
    ---------
    model : CTCModel
        The model built by :func:`build_ctc_model` from ``params``.
    path : Any
        The ``encoder.pt`` file.
    params : Params
        The config ``model`` was built from; the file must fit its architecture.

    Returns
    -------
    CTCModel
        ``model``, its head unchanged.

    Raises
    ------
    ProbeError
        When the file is of another architecture; the message names the first mismatch
        (:func:`smx.downstream.upstream.load_checkpoint_upstream`).
    """
    from smx.downstream.upstream import load_checkpoint_upstream

    with torch.random.fork_rng():  # building the check copy must not move the caller's RNG
        state = load_checkpoint_upstream(path, params).state_dict()
    model.load_state_dict({**model.state_dict(), **state})
    return model


def encode_texts(
    texts: Sequence[str | None], vocab: CharVocab
) -> tuple[torch.Tensor, torch.Tensor]:
    """Character ids ``[B, U]`` (zero-padded) and lengths ``[B]`` of transcripts.

    Raises
    ------
    ValueError
        When a transcript is None.

    Example
    -------
    >>> encode_texts(["ba", "a"], CharVocab("ab"))
    (tensor([[3, 2],
            [2, 0]]), tensor([2, 1]))
    """
    if any(t is None for t in texts):
        raise ValueError("texts: every utterance of a CTC batch needs a transcript, got None")
    ids = [torch.tensor(vocab.encode(t), dtype=torch.long) for t in texts if t is not None]
    lens = torch.tensor([len(i) for i in ids], dtype=torch.long)
    return nn.utils.rnn.pad_sequence(ids, batch_first=True), lens


def transcribe(
    model: CTCModel,
    items: Sequence[Any],
    vocab: CharVocab,
    max_batch_duration: float,
    chunk: ChunkConfig | None = None,
) -> dict[str, str]:
    """Greedy CTC transcripts of labelled items, in eval mode and without gradients.

    Arguments
    ---------
    model : CTCModel
        The model to decode with.
    items : Sequence[Any]
        Labelled items (:class:`smx.downstream.tasks.Item`).
    vocab : CharVocab
        The characters of the head's outputs.
    max_batch_duration : float
        Seconds of audio per forward pass.
    chunk : ChunkConfig | None
        None: offline, full context. Otherwise streaming: the encoder runs chunk by chunk
        with this chunk size and left context
        (:func:`smx.downstream.streaming_eval.stream_log_probs`).

    Returns
    -------
    dict[str, str]
        Item id -> transcript.
    """
    from lhotse import CutSet

    from smx.data.loader import collate

    device = next(model.parameters()).device
    model.eval()
    hyps: dict[str, str] = {}
    with torch.no_grad():
        for group in duration_batches(items, max_batch_duration):
            batch = collate(CutSet.from_cuts([item.cut for item in group]))
            audio, audio_lens = batch["audio"].to(device), batch["audio_lens"].to(device)
            if chunk is None:
                log_probs, lengths = model.log_probs(audio, audio_lens)
            else:
                log_probs, lengths = stream_log_probs(model, audio, audio_lens, chunk)
            for item, ids in zip(group, greedy_decode(log_probs, lengths), strict=True):
                hyps[item.id] = vocab.decode(ids)
    return hyps


def error_rates(
    model: CTCModel,
    items: Sequence[Any],
    vocab: CharVocab,
    max_batch_duration: float,
    chunk: ChunkConfig | None = None,
) -> dict[str, float]:
    """Greedy-decoding WER and CER (fractions) of ``model`` on labelled items.

    The arguments are those of :func:`transcribe` (``chunk``: offline when None, else
    streaming); the items' labels are the references.

    Returns
    -------
    dict[str, float]
        ``{"wer": ..., "cer": ...}``.
    """
    hyps = transcribe(model, items, vocab, max_batch_duration, chunk)
    refs = [item.label for item in items]
    texts = [hyps[item.id] for item in items]
    return {"wer": wer(refs, texts).rate, "cer": cer(refs, texts).rate}
