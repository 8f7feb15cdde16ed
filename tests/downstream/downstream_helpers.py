"""Helpers of the downstream tests: tiny configs and encoder files as pre-training writes them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from smx.config import Params

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

TINY_MODEL: dict[str, Any] = {
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

TINY_SSL: dict[str, dict[str, Any]] = {
    "wav2vec2": {
        "kind": "wav2vec2",
        "codebook_entries": 16,
        "code_dim": 16,
        "proj_dim": 16,
        "num_negatives": 10,
        "mask_length": 4,
    },
    "bestrq": {"kind": "bestrq", "stack_frames": 2, "codebook_size": 16, "mask_length": 4},
}

#: subprocess environment: single-threaded torch, as the ``one_thread`` fixture in-process
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}

#: small, fast probing settings (seconds per probe on the tiny corpus)
DOWNSTREAM: dict[str, Any] = {
    "seeds": 2,
    "epochs": 2,
    "probe_dim": 16,
    "max_batch_duration": 10.0,
}


def tiny_params(corpus_root: Path | None = None, ssl: str = "wav2vec2", **overrides: Any) -> Params:
    """The tiny encoder of the training tests with fast probing settings."""
    data = {**DATA, "root": str(corpus_root)} if corpus_root else DATA
    return Params.model_validate(
        {
            "seed": 0,
            "data": data,
            "model": TINY_MODEL,
            "ssl": TINY_SSL[ssl],
            "downstream": {**DOWNSTREAM, **overrides},
        }
    )


def write_encoder(objective: torch.nn.Module, params: Params, path: Path) -> Path:
    """An ``encoder.pt`` as pre-training writes it (smx.train.launch.write_outputs)."""
    prefixes = ("fbank.", "extractor.", "subsampling.", "encoder.")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": 1,
            "step": 7,
            "config_hash": "test",
            "params": json.dumps(params.model_dump(mode="json")),
            "state_dict": {
                k: v for k, v in objective.state_dict().items() if k.startswith(prefixes)
            },
        },
        path,
    )
    return path
