"""The BEST-RQ objective: predict frozen random-projection codes of masked frames.

BEST-RQ (arXiv 2202.01855) as in SpeechBrain's recipe (docs/algorithm.md, "BEST-RQ"):
waveforms -> log-mel ``x [B, T, F]`` normalised per utterance, or with global statistics
frozen after ``model.frontend.global_norm_updates`` training batches as in arXiv 2409.02596
(``model.frontend.normalize``; the front-end keeps them), zero-padded to a multiple of
``stack_frames`` -> targets: the :class:`RandomProjectionQuantizer` codes of the
**clean** stacked frames -> block mask (:func:`smx.ssl.masking.block_mask`, per
utterance) -> masked feature frames replaced by Gaussian noise (mean 0, std
``noise_std``) -> subsampling front-end (stride ``stack_frames`` in time) -> encoder ->
one ``Linear(d_model -> codebook_size)`` head per codebook -> cross-entropy at the masked
encoder frames only, mean over frames, averaged over codebooks.

Encoder frame ``j`` covers feature frames ``[s*j, s*j + s)`` (``s = stack_frames``, equal
to the front-end's subsampling); it is a prediction target when any of them is masked.
With ``mask_length`` a multiple of ``s`` (the default: both 4) masked encoder frames are
exactly the fully masked stacks, as in SpeechBrain's BEST-RQ (``mask[::4] // 4``). Masks
only cover real frames, so padded frames are never targets.

Randomness: block positions come from ``self.generator`` (seeded, CPU); the noise fill,
dropout and layerdrop from torch's global RNG.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from smx.config import BestRQCfg, StreamingCfg
from smx.nn.encoder import Encoder
from smx.nn.frontend import CnnLatentExtractor, Conv2dSubsampling, FbankFrontend
from smx.nn.streaming import training_chunk
from smx.ssl.masking import block_mask
from smx.ssl.objective import LossOutput, check_audio_batch, metric_values
from smx.ssl.quantizer import RandomProjectionQuantizer, stack_frames


def target_perplexity(targets: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``exp(entropy)`` of the target histogram, averaged over codebooks (codes in use).

    Arguments
    ---------
    targets : torch.Tensor
        ``[N, K]`` target indices of ``K`` codebooks.
    codebook_size : int
        Entries per codebook.

    Example
    -------
    >>> float(target_perplexity(torch.tensor([[0, 1], [1, 1], [2, 1], [3, 1]]), 8))
    2.5
    """
    counts = torch.stack(
        [torch.bincount(t, minlength=codebook_size) for t in targets.t()]
    ).float()  # [K, V]
    probs = counts / counts.sum(-1, keepdim=True).clamp(min=1)  # [K, V]
    return (-torch.xlogy(probs, probs).sum(-1)).exp().mean()


class BestRQObjective(nn.Module):
    """BEST-RQ pre-training: noise-filled block masks and masked code prediction.

    Arguments
    ---------
    fbank : smx.nn.frontend.FbankFrontend
        ``(audio [B, S], samples [B]) -> (feats [B, T, F], frames [B])``, normalised per
        utterance or with its global statistics (updated in training mode).
    subsampling : smx.nn.frontend.Conv2dSubsampling or CnnLatentExtractor
        ``(feats, frames) -> (x [B, T / s, C], lengths [B])`` for ``T`` a multiple of
        ``s = cfg.stack_frames`` (SpeechBrain's BEST-RQ recipe uses the Conv2d front-end).
    encoder : smx.nn.encoder.Encoder
        Encoder over the subsampling's ``output_dim`` features (no mask embedding needed).
    cfg : smx.config.BestRQCfg
        Stacking, codebooks, masking and noise parameters.
    seed : int
        Seed of the random-projection quantiser and initial seed of :attr:`generator`.
    streaming : StreamingCfg or None
        ``model.streaming``: when enabled, every training batch runs the encoder with a
        chunk configuration drawn from :attr:`generator` (dynamic chunk training).

    Example
    -------
    >>> from smx.nn.blocks import ConformerBlock
    >>> from smx.nn.encoder import Encoder
    >>> from smx.nn.frontend import Conv2dSubsampling, FbankFrontend
    >>> from smx.nn.mixers.summary_mixing import SummaryMixing
    >>> mixer = SummaryMixing(16, local_hidden=[16], local_out=16, summary_hidden=[16], heads=2)
    >>> subsampling = Conv2dSubsampling(80, channels=(4, 4))
    >>> encoder = Encoder(subsampling.output_dim, 16, [ConformerBlock(16, mixer, 32, 3)])
    >>> cfg = BestRQCfg(codebook_size=32, num_codebooks=2)
    >>> objective = BestRQObjective(FbankFrontend(), subsampling, encoder, cfg)
    >>> batch = {"audio": torch.randn(2, 16000), "audio_lens": torch.tensor([16000, 12000])}
    >>> out = objective(batch)
    >>> bool(torch.isfinite(out.loss)), round(out.metrics["masked_fraction"], 2) > 0.0
    (True, True)
    """

    def __init__(
        self,
        fbank: FbankFrontend,
        subsampling: Conv2dSubsampling | CnnLatentExtractor,
        encoder: Encoder,
        cfg: BestRQCfg,
        seed: int = 0,
        streaming: StreamingCfg | None = None,
    ) -> None:
        super().__init__()
        self.streaming = streaming
        name = type(self).__name__
        if encoder.input_dim != subsampling.output_dim:
            raise ValueError(
                f"{name}: encoder.input_dim must equal subsampling.output_dim="
                f"{subsampling.output_dim}, got {encoder.input_dim}"
            )
        self.cfg = cfg
        self.fbank = fbank
        self.subsampling = subsampling
        self.encoder = encoder
        self.quantizer = RandomProjectionQuantizer(
            cfg.stack_frames * fbank.output_dim,
            code_dim=cfg.code_dim,
            codebook_size=cfg.codebook_size,
            num_codebooks=cfg.num_codebooks,
            seed=seed,
        )
        self.heads = nn.ModuleList(
            nn.Linear(encoder.d_model, cfg.codebook_size) for _ in range(cfg.num_codebooks)
        )
        self.generator = torch.Generator().manual_seed(seed)

    def set_step(self, step: int) -> None:
        """No schedule depends on the step in BEST-RQ (kept for the objective interface)."""

    def forward(self, batch: Mapping[str, torch.Tensor]) -> LossOutput:
        """Loss and metrics of a batch ``{"audio": [B, S], "audio_lens": [B]}``.

        Metrics: ``loss``, ``accuracy`` (top-1 at the masked encoder frames, averaged over
        codebooks), ``masked_fraction`` (masked / real feature frames),
        ``target_perplexity`` (codes in use among the masked frames' targets, averaged over
        codebooks) and ``num_masked`` (masked encoder frames ``N``).
        """
        cfg, name = self.cfg, type(self).__name__
        audio, audio_lens = check_audio_batch(batch, name)
        feats, frames = self.fbank(audio, audio_lens)  # [B, T, F], [B]
        stack = cfg.stack_frames
        feats = F.pad(feats, (0, 0, 0, -feats.shape[1] % stack))  # [B, T', F], T' = s * n
        batch_size, num_frames, _ = feats.shape
        masked = block_mask(frames, num_frames, cfg.mask_prob, cfg.mask_length, self.generator)
        noise = torch.randn_like(feats) * cfg.noise_std  # [B, T', F]
        noisy = torch.where(masked[..., None], noise, feats)  # [B, T', F]
        x, lengths = self.subsampling(noisy, frames)  # [B, T'/s, C]
        chunk = training_chunk(self.streaming, self.generator, self.training)
        encoded = self.encoder(x, lengths, chunk=chunk).last  # [B, T'/s, D]
        if encoded.shape[1] != num_frames // stack:
            raise ValueError(
                f"{name}: the front-end gives {encoded.shape[1]} frames for {num_frames} "
                f"feature frames; its time subsampling must equal stack_frames={stack}"
            )
        masked_frames = masked.view(batch_size, -1, stack).any(-1)  # [B, T'/s]
        targets = self.quantizer(stack_frames(feats, stack)[masked_frames])  # [N, K], clean
        hidden = encoded[masked_frames]  # [N, D]
        loss, accuracy = self._predict(hidden, targets)
        metrics = metric_values(
            {
                "loss": loss,
                "accuracy": accuracy,
                "masked_fraction": int(masked.sum()) / max(int(frames.sum()), 1),
                "target_perplexity": target_perplexity(targets, cfg.codebook_size),
                "num_masked": hidden.shape[0],
            }
        )
        return LossOutput(loss=loss, metrics=metrics)

    def _predict(
        self, hidden: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and top-1 accuracy of the codebook heads, averaged over codebooks.

        ``hidden [N, D]`` are the encoder outputs at the masked frames, ``targets [N, K]``
        their codes, one column per codebook. The heads' logits, the cross-entropies and the
        accuracies are float32, also under bf16 autocast.
        """
        losses, accuracies = [], []
        with torch.autocast(hidden.device.type, enabled=False):
            for k, head in enumerate(self.heads):
                logits = head(hidden.to(head.weight.dtype)).float()  # [N, V]
                if hidden.shape[0] == 0:  # nothing masked: a zero loss that keeps the graph
                    losses.append(logits.sum() * 0.0)
                    accuracies.append(logits.new_zeros(()))
                    continue
                losses.append(F.cross_entropy(logits, targets[:, k]))
                accuracies.append((logits.argmax(-1) == targets[:, k]).float().mean())
            return torch.stack(losses).mean(), torch.stack(accuracies).mean()
