"""Fixtures of the training tests: a tiny corpus, tiny params, a local Ray instance."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny import DATA

from smx.config import DataCfg


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/synth``: about 2.4 minutes of synthetic speech, 6 speakers."""
    from smx.data.synth import prepare_synth

    root = tmp_path_factory.mktemp("data")
    prepare_synth(root / "synth", DataCfg.model_validate(DATA))
    return root


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance for the session (2 CPUs), shut down at the end."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
