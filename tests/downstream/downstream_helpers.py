"""Helpers of the downstream tests: tiny configs and encoder files as pre-training writes them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tiny import DATA, MODEL, SSL

from smx.config import Params

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
