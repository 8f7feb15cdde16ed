"""The data tests' corpus: the session's synthetic corpus (tests/conftest.py ``corpus_root``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny import DATA

from smx.config import DataCfg


@pytest.fixture(scope="session")
def synth_cfg() -> DataCfg:
    """The data section of tests/tiny.py, which ``corpus_root`` was synthesised with."""
    return DataCfg.model_validate(DATA)


@pytest.fixture(scope="session")
def synth_corpus(corpus_root: Path, synth_cfg: DataCfg) -> Any:
    """The session's corpus as :func:`smx.data.synth.prepare_synth` reports it (a re-run on
    the finished corpus: nothing is synthesised again)."""
    from smx.data.synth import prepare_synth

    return prepare_synth(corpus_root / "synth", synth_cfg)
