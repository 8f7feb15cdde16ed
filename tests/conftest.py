"""Fixtures shared by every test folder (this file also puts tests/ on sys.path)."""

from __future__ import annotations

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
