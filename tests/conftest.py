"""Fixtures shared by every test folder (this file also puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dvc_helpers import make_dvc_repo


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A temporary git + DVC copy of the project with a tiny corpus (see dvc_helpers)."""
    return make_dvc_repo(tmp_path)
