"""Fixtures of the downstream tests: a tiny synthetic corpus, a tiny encoder file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from downstream_helpers import DATA, tiny_params, write_encoder

from smx.config import DataCfg


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/synth``: about 2.4 minutes of synthetic speech, 6 speakers (2 held out)."""
    from smx.data.synth import prepare_synth

    root = tmp_path_factory.mktemp("data")
    prepare_synth(root / "synth", DataCfg.model_validate(DATA))
    return root


@pytest.fixture(scope="session")
def encoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny wav2vec 2.0 encoder.pt with random (seed 0) weights."""
    from smx.ssl.objective import build_objective

    params = tiny_params()
    torch.manual_seed(0)
    return write_encoder(
        build_objective(params), params, tmp_path_factory.mktemp("models") / "encoder.pt"
    )
