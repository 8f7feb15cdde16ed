"""The tiny corpus, model and objective every slow test trains: seconds per step on a CPU."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from smx.config import Params

if TYPE_CHECKING:
    from smx.train.pretrain import PretrainResult

#: about 2.4 minutes of synthetic speech from 6 speakers (the `data` section)
DATA: dict[str, Any] = {
    "min_duration": 0.5,
    "max_duration": 10.0,
    "max_batch_duration": 12.0,
    "num_buckets": 3,
    "synth": {
        "hours": 0.04,
        "num_speakers": 6,
        "heldout_speakers": 2,
        "free_sentences": 50,
        "workers": 2,
    },
}

#: 2 Conformer layers of width 32 with SummaryMixing (the `model` section)
MODEL: dict[str, Any] = {
    "frontend": {"kind": "mel_cnn", "cnn_channels": [32, 32]},
    "encoder": {
        "num_layers": 2,
        "d_model": 32,
        "d_ffn": 64,
        "kernel_size": 3,
        "dropout": 0.1,
        "input_dropout": 0.1,
        "layerdrop": 0.0,
    },
    "mixer": {
        "kind": "summarymixing",
        "local_hidden": [32],
        "local_out": 32,
        "summary_hidden": [32],
        "heads": 4,
    },
}

#: wav2vec 2.0 with a 16 x 2 codebook and 10 negatives (the `ssl` section)
SSL: dict[str, Any] = {
    "kind": "wav2vec2",
    "codebook_entries": 16,
    "code_dim": 16,
    "proj_dim": 16,
    "num_negatives": 10,
    "mask_length": 4,
}

#: a short fp32 run that checkpoints often (the `train` section)
TRAIN: dict[str, Any] = {
    "max_steps": 30,
    "lr": 3e-3,
    "warmup_steps": 5,
    "grad_accum": 1,
    "precision": "fp32",
    "checkpoint_every": 10,
    "keep_checkpoints": 2,
    "log_every": 1,
    "max_nan_steps": 3,
}


def tiny_params(corpus_root: Path, storage: Path, tracking_uri: str | None, **train: Any) -> Params:
    """2 layers, d_model 32, wav2vec 2.0 with 16x2 codes; ``train`` overrides the loop."""
    settings = {**TRAIN, **train}
    return Params.model_validate(
        {
            "seed": 0,
            "data": {**DATA, "root": str(corpus_root)},
            "model": MODEL,
            "ssl": SSL,
            "train": settings,
            "tracking": {
                "uri": tracking_uri,
                "experiment": "smx-tests",
                "log_system_metrics": False,
                "registry_prefix": "smx-test",
            },
            "cluster": {"num_workers": 2, "storage_path": str(storage), "max_failures": 2},
        }
    )


def save_encoder(objective: torch.nn.Module, params: Params, path: Path, step: int = 7) -> Path:
    """``objective``'s front-end and encoder as the ``encoder.pt`` pre-training writes
    (smx.train.pretrain.write_outputs)."""
    from smx.train.pretrain import encoder_state

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": 1,
            "step": step,
            "config_hash": "test",
            "params": json.dumps(params.model_dump(mode="json")),
            "state_dict": encoder_state(objective.state_dict()),
        },
        path,
    )
    return path


def write_encoder(params: Params, path: Path, seed: int = 1) -> Path:
    """An ``encoder.pt`` of ``params``' architecture with weights drawn with ``seed``."""
    from smx.ssl.objective import build_objective

    torch.manual_seed(seed)
    return save_encoder(build_objective(params), params, path, step=3)


@dataclass
class PretrainRun:
    """A finished pre-training run of :func:`pretrain_tiny`."""

    params: Params
    result: PretrainResult
    out: Path  # models/, metrics/ and plots/ of the run
    storage: Path  # cluster.storage_path (the Ray run folders)

    @property
    def encoder(self) -> Path:
        return self.result.encoder


def pretrain_tiny(
    corpus_root: Path, tmp: Path, uri: str, resume: Path | None = None, **train: Any
) -> PretrainRun:
    """Pre-train the tiny model (variant ``sm``) on the running Ray instance; ``train``
    overrides the loop (see :data:`TRAIN`)."""
    from smx.train.pretrain import pretrain

    params = tiny_params(corpus_root, tmp / "ray", uri, **train)
    result = pretrain(params, "sm", out=tmp / "out", resume=resume, show_progress=False)
    return PretrainRun(params, result, tmp / "out", tmp / "ray")
