"""Tiny models and batches for the SSL objective tests (not a test module)."""

from __future__ import annotations

from typing import Any

import torch

from smx.config import BestRQCfg, ModelCfg, Wav2Vec2Cfg
from smx.nn.build import build_encoder, build_fbank, build_subsampling
from smx.ssl.bestrq import BestRQObjective
from smx.ssl.wav2vec2 import Wav2Vec2Objective

D_MODEL = 32

MIXERS: dict[str, dict[str, Any]] = {
    "summarymixing": {
        "kind": "summarymixing",
        "local_hidden": [D_MODEL],
        "local_out": D_MODEL,
        "summary_hidden": [D_MODEL],
        "heads": 4,
        "dropout": 0.0,
    },
    "mhsa": {"kind": "mhsa", "heads": 4, "dropout": 0.0},
}


def tiny_model_cfg(
    mixer: str = "summarymixing", block: str = "conformer", frontend: str = "mel_cnn"
) -> ModelCfg:
    """2 layers, d_model 32, no dropout nor layerdrop (deterministic in training mode)."""
    return ModelCfg.model_validate(
        {
            "frontend": {"kind": frontend, "cnn_channels": [32, 32], "conv2d_channels": [8, 8]},
            "encoder": {
                "block": block,
                "num_layers": 2,
                "d_model": D_MODEL,
                "d_ffn": 64,
                "kernel_size": 3,
                "csgu_units": 64,
                "dropout": 0.0,
                "input_dropout": 0.0,
                "layerdrop": 0.0,
            },
            "mixer": MIXERS[mixer],
        }
    )


W2V_TINY = {
    "codebook_groups": 2,
    "codebook_entries": 16,
    "code_dim": 16,
    "proj_dim": 16,
    "num_negatives": 10,
}


def tiny_wav2vec2(
    mixer: str = "summarymixing", block: str = "conformer", seed: int = 0, **ssl: Any
) -> Wav2Vec2Objective:
    """A wav2vec 2.0 objective over the tiny model (16 codes x 2 groups, 10 negatives)."""
    model = tiny_model_cfg(mixer, block, "mel_cnn")
    fbank = build_fbank(model.frontend, 16000)
    extractor = build_subsampling(model.frontend)
    encoder = build_encoder(model, extractor.output_dim, mask_embedding=True)
    cfg = Wav2Vec2Cfg.model_validate({**W2V_TINY, **ssl})
    return Wav2Vec2Objective(fbank, extractor, encoder, cfg, seed=seed)


def tiny_bestrq(
    mixer: str = "summarymixing", block: str = "conformer", seed: int = 0, **ssl: Any
) -> BestRQObjective:
    """A BEST-RQ objective over the tiny model with a conv2d front-end (64 codes)."""
    model = tiny_model_cfg(mixer, block, "conv2d")
    fbank = build_fbank(model.frontend, 16000)
    subsampling = build_subsampling(model.frontend)
    encoder = build_encoder(model, subsampling.output_dim)
    cfg = BestRQCfg.model_validate({"codebook_size": 64, **ssl})
    return BestRQObjective(fbank, subsampling, encoder, cfg, seed=seed)


def random_batch(
    seconds: tuple[float, ...] = (2.0, 1.5), extra: int = 0, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random audio rows of the given durations at 16 kHz, plus ``extra`` padding samples."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([round(s * 16000) for s in seconds])
    audio = torch.randn(len(seconds), int(lens.max()), generator=g)
    audio = torch.nn.functional.pad(audio, (0, extra))  # [B, S + extra]
    audio = audio * (torch.arange(audio.shape[1])[None, :] < lens[:, None])  # zero padding
    return {"audio": audio, "audio_lens": lens}


def grad_norm(module: torch.nn.Module) -> float:
    """Total gradient norm of a module's parameters (0 when none has a gradient)."""
    norms = [p.grad.norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0
