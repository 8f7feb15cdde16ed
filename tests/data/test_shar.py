"""Lhotse Shar export of a prepared corpus, and training from the shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_helpers import tiny_data_cfg

from smx.data.loader import TrainLoader
from smx.data.manifests import MARKER, load_cuts
from smx.data.problems import PrepareError
from smx.data.shar import export_shar, load_shar


@pytest.fixture(scope="module")
def shar_dir(synth_corpus: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shar")
    export_shar(synth_corpus.out_dir, out, ["train", "dev"], shard_size=8)
    return out


def test_export_writes_complete_shards_per_split(synth_corpus: Any, shar_dir: Path) -> None:
    marker = json.loads((shar_dir / MARKER).read_text())
    n_train = synth_corpus.summary["splits"]["train"]["utterances"]
    assert marker["splits"]["train"] == {"shards": -(-n_train // 8), "cuts": n_train}
    files = sorted(p.name for p in (shar_dir / "train").iterdir())
    assert files[0] == "cuts.000000.jsonl.gz" and "recording.000000.tar" in files
    assert not list(shar_dir.glob(".*.partial"))
    assert sorted(p.name for p in shar_dir.iterdir()) == [MARKER, "dev", "train"]


def test_shar_cuts_hold_the_same_audio_and_labels(synth_corpus: Any, shar_dir: Path) -> None:
    original = {c.id: c for c in load_cuts(synth_corpus.out_dir, "dev")}
    from_shar = list(load_shar(shar_dir, "dev"))
    assert [c.id for c in from_shar] == list(original)
    for cut in from_shar:
        ref = original[cut.id]
        np.testing.assert_array_equal(cut.load_audio(), ref.load_audio())  # FLAC is lossless
        assert cut.supervisions[0].text == ref.supervisions[0].text
        assert cut.supervisions[0].custom == ref.supervisions[0].custom


def test_training_from_shar_uses_the_same_sampler_and_collation(
    synth_corpus: Any, shar_dir: Path
) -> None:
    config = tiny_data_cfg({"max_duration": 5.0, "max_batch_duration": 6.0})
    from_disk = TrainLoader(
        load_cuts(synth_corpus.out_dir, "train"), config, rank=0, world_size=1, shuffle=False
    )
    from_shar = TrainLoader(
        load_shar(shar_dir, "train"), config, rank=0, world_size=1, shuffle=False
    )
    disk_batches, shar_batches = list(from_disk), list(from_shar)
    assert [b["ids"] for b in shar_batches] == [b["ids"] for b in disk_batches]
    for a, b in zip(disk_batches, shar_batches, strict=True):
        assert b["audio"].shape == a["audio"].shape
        assert (b["audio"] == a["audio"]).all() and b["intent"] == a["intent"]


def test_export_and_load_refuse_unfinished_inputs(synth_corpus: Any, tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="not a finished corpus"):
        export_shar(tmp_path, tmp_path / "out")
    with pytest.raises(PrepareError, match="has no split 'eval'"):
        export_shar(synth_corpus.out_dir, tmp_path / "out", ["eval"])
    with pytest.raises(PrepareError, match="not a finished Shar export"):
        load_shar(tmp_path, "train")
