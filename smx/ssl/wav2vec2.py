"""The wav2vec 2.0 objective of the SummaryMixing SSL recipe (arXiv 2006.11477, 2407.13377).

waveforms -> log-mel (per-utterance normalised) -> CNN latent extractor ``z [B, T, C]``
(20 ms frames) -> span mask on the latent axis with the true latent lengths -> encoder
(projection, mask embedding on masked frames, positions, blocks) -> ``final_proj`` at the
masked frames gives the context vectors; the Gumbel quantiser of the *unmasked* latents
``z`` at the same frames, then ``target_proj``, gives the targets. The loss is

``L = L_contrastive + N * (diversity_weight * L_diversity + feature_penalty_weight * P)``

with ``L_contrastive`` summed over the ``N`` masked frames (SpeechBrain's scale; the
weights of the other terms are multiplied by ``N`` to sit on that scale, as SpeechBrain
does for the diversity term), ``L_diversity = (G*V - PP) / (G*V)`` and ``P`` the mean
squared latent. Gradients reach the CNN through both the encoder and the quantiser (no
stop-gradient, as in SpeechBrain). See docs/algorithm.md, "wav2vec 2.0".

Randomness: masks and negatives come from ``self.generator`` (seeded, CPU); the Gumbel
noise, dropout and layerdrop from torch's global RNG.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from smx.config import StreamingCfg, Wav2Vec2Cfg
from smx.nn.base import lengths_to_mask
from smx.nn.encoder import Encoder
from smx.nn.frontend import CnnLatentExtractor, Conv2dSubsampling, FbankFrontend
from smx.nn.streaming import training_chunk
from smx.ssl.losses import (
    contrastive_accuracy,
    contrastive_logits,
    contrastive_loss,
    diversity_loss,
    feature_penalty,
    sample_negatives,
)
from smx.ssl.masking import span_mask
from smx.ssl.objective import LossOutput, check_audio_batch, metric_values
from smx.ssl.quantizer import GumbelVectorQuantizer


class Wav2Vec2Objective(nn.Module):
    """wav2vec 2.0 pre-training: span masking, Gumbel targets, contrastive + diversity loss.

    Arguments
    ---------
    fbank : smx.nn.frontend.FbankFrontend
        ``(audio [B, S], samples [B]) -> (feats [B, T_f, F], frames [B])``.
    extractor : smx.nn.frontend.CnnLatentExtractor or Conv2dSubsampling
        ``(feats, frames) -> (latents [B, T, C], lengths [B])`` with ``output_dim = C``
        (the SummaryMixing SSL recipe uses the CNN latent extractor).
    encoder : smx.nn.encoder.Encoder
        Encoder over ``C`` input features, built with ``mask_embedding=True``.
    cfg : smx.config.Wav2Vec2Cfg
        Masking, quantiser, loss and temperature parameters.
    seed : int
        Initial seed of :attr:`generator` (masks and negatives).
    streaming : StreamingCfg or None
        ``model.streaming``: when enabled, every training batch runs the encoder with a
        chunk configuration drawn from :attr:`generator` (dynamic chunk training).

    Example
    -------
    >>> from smx.nn.blocks import ConformerBlock
    >>> from smx.nn.encoder import Encoder
    >>> from smx.nn.frontend import CnnLatentExtractor, FbankFrontend
    >>> from smx.nn.mixers.summary_mixing import SummaryMixing
    >>> def block():
    ...     mixer = SummaryMixing(16, local_hidden=[16], local_out=16, summary_hidden=[16], heads=2)
    ...     return ConformerBlock(16, mixer, d_ffn=32, kernel_size=3)
    >>> extractor = CnnLatentExtractor(80, channels=(16, 16))
    >>> encoder = Encoder(16, 16, [block()], mask_embedding=True)
    >>> cfg = Wav2Vec2Cfg(codebook_entries=8, code_dim=8, proj_dim=8, num_negatives=5)
    >>> objective = Wav2Vec2Objective(FbankFrontend(), extractor, encoder, cfg)
    >>> batch = {"audio": torch.randn(2, 16000), "audio_lens": torch.tensor([16000, 12000])}
    >>> out = objective(batch)
    >>> out.loss.shape, out.metrics["gumbel_temp"], bool(torch.isfinite(out.loss))
    (torch.Size([]), 2.0, True)
    """

    def __init__(
        self,
        fbank: FbankFrontend,
        extractor: CnnLatentExtractor | Conv2dSubsampling,
        encoder: Encoder,
        cfg: Wav2Vec2Cfg,
        seed: int = 0,
        streaming: StreamingCfg | None = None,
    ) -> None:
        super().__init__()
        self.streaming = streaming
        name = type(self).__name__
        if encoder.mask_embedding is None:
            raise ValueError(f"{name}: encoder must have a mask embedding (mask_embedding=True)")
        latent_dim = extractor.output_dim
        if encoder.input_dim != latent_dim:
            raise ValueError(
                f"{name}: encoder.input_dim must equal extractor.output_dim={latent_dim}, "
                f"got {encoder.input_dim}"
            )
        self.cfg = cfg
        self.fbank = fbank
        self.extractor = extractor
        self.encoder = encoder
        self.quantizer = GumbelVectorQuantizer(
            latent_dim,
            groups=cfg.codebook_groups,
            entries=cfg.codebook_entries,
            code_dim=cfg.code_dim,
            temp_start=cfg.gumbel_temp_start,
            temp_decay=cfg.gumbel_temp_decay,
            temp_min=cfg.gumbel_temp_min,
        )
        self.target_proj = nn.Linear(cfg.code_dim, cfg.proj_dim)  # quantised code -> target
        self.final_proj = nn.Linear(encoder.d_model, cfg.proj_dim)  # encoder -> context
        self.generator = torch.Generator().manual_seed(seed)

    def set_step(self, step: int) -> None:
        """Anneal the Gumbel temperature to optimiser step ``step``."""
        self.quantizer.set_step(step)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> LossOutput:
        """Loss and metrics of a batch ``{"audio": [B, S], "audio_lens": [B]}``.

        Metrics: ``loss``, ``contrastive`` (summed over masked frames),
        ``contrastive_per_frame``, ``diversity``, ``feature_penalty``, ``accuracy``,
        ``code_perplexity``, ``prob_perplexity``, ``gumbel_temp``, ``masked_fraction``
        (masked / real latent frames) and ``num_masked`` (``N``).
        """
        cfg = self.cfg
        audio, audio_lens = check_audio_batch(batch, type(self).__name__)
        feats, frames = self.fbank(audio, audio_lens)  # [B, T_f, F], [B]
        latents, lengths = self.extractor(feats, frames)  # [B, T, C], [B]
        pad_mask = lengths_to_mask(lengths, latents.shape[1])  # [B, T]
        masked = span_mask(
            lengths, latents.shape[1], cfg.mask_prob, cfg.mask_length, self.generator
        )  # [B, T]
        chunk = training_chunk(self.streaming, self.generator, self.training)
        encoded = self.encoder(latents, lengths, masked=masked, chunk=chunk).last  # [B, T, D]
        context = self.final_proj(encoded[masked])  # [N, P]
        quantized = self.quantizer(latents[masked])  # codes [N, code_dim]
        targets = self.target_proj(quantized.codes)  # [N, P]
        negatives, valid = sample_negatives(masked, cfg.num_negatives, self.generator)
        logits = contrastive_logits(context, targets, negatives, valid, cfg.logit_temp)
        num_masked = context.shape[0]
        contrastive = contrastive_loss(logits)
        diversity = diversity_loss(quantized.prob_perplexity, self.quantizer.num_codes)
        penalty = feature_penalty(latents, pad_mask)
        loss = contrastive + num_masked * (
            cfg.diversity_weight * diversity + cfg.feature_penalty_weight * penalty
        )
        metrics = metric_values(
            {
                "loss": loss,
                "contrastive": contrastive,
                "contrastive_per_frame": contrastive / max(num_masked, 1),
                "diversity": diversity,
                "feature_penalty": penalty,
                "accuracy": contrastive_accuracy(logits),
                "code_perplexity": quantized.code_perplexity,
                "prob_perplexity": quantized.prob_perplexity,
                "gumbel_temp": self.quantizer.temperature,
                "masked_fraction": num_masked / max(int(lengths.sum()), 1),
                "num_masked": num_masked,
            }
        )
        return LossOutput(loss=loss, metrics=metrics)
