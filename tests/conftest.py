"""Fixtures shared by every test folder (this file also puts tests/ on sys.path)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
from dvc_helpers import make_dvc_repo


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A temporary git + DVC copy of the project with a tiny corpus (see dvc_helpers)."""
    return make_dvc_repo(tmp_path)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite store) for the session."""
    with servers.mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/synth``: about 2.4 minutes of synthetic speech, 6 speakers."""
    from tiny import DATA

    from smx.config import DataCfg
    from smx.data.synth import prepare_synth

    root = tmp_path_factory.mktemp("data")
    prepare_synth(root / "synth", DataCfg.model_validate(DATA))
    return root


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray instance (2 CPUs) for one test module, shut down at its end.

    Not per session: tests/infra/test_ray_job.py ends with `ray stop --force`, which kills
    every Ray process on the machine, an in-process instance of another module included.
    """
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
