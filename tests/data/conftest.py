"""Shared tiny corpora for the data tests (synthesised once per session)."""

from __future__ import annotations

from typing import Any

import pytest
from data_helpers import tiny_data_cfg

from smx.config import DataCfg


@pytest.fixture(scope="session")
def synth_cfg() -> DataCfg:
    return tiny_data_cfg()


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory: pytest.TempPathFactory, synth_cfg: DataCfg) -> Any:
    """The synthetic corpus of :func:`tiny_data_cfg`, prepared once (2 workers)."""
    from smx.data.synth import prepare_synth

    return prepare_synth(tmp_path_factory.mktemp("synth") / "corpus", synth_cfg)
