"""Helpers of the downstream tests: tiny configs and encoder files as pre-training writes them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from tiny import DATA, MODEL, SSL

from smx.config import Params
from smx.train.launch import encoder_state

#: the tiny corpus, model and wav2vec 2.0 objective of every slow test (tests/tiny.py)
TINY_MODEL = MODEL
TINY_SSL: dict[str, dict[str, Any]] = {
    "wav2vec2": SSL,
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
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": 1,
            "step": 7,
            "config_hash": "test",
            "params": json.dumps(params.model_dump(mode="json")),
            "state_dict": encoder_state(objective.state_dict()),
        },
        path,
    )
    return path
