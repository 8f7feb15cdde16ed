"""Fixtures of the downstream tests: a tiny synthetic corpus, a tiny encoder file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from downstream_helpers import tiny_params
from tiny import save_encoder


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run single-threaded: the tiny probes gain nothing from intra-op threads, and two threads
    on a 2-core machine that is busy with other work make them 10-30x slower (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def encoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny wav2vec 2.0 encoder.pt with random (seed 0) weights."""
    from smx.ssl.objective import build_objective

    params = tiny_params()
    torch.manual_seed(0)
    return save_encoder(
        build_objective(params), params, tmp_path_factory.mktemp("models") / "encoder.pt"
    )
