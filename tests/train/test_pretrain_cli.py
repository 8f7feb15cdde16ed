"""`smx pretrain` refuses bad input before any training starts (no Ray run, no MLflow run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from servers import free_port
from tiny import tiny_params

from smx.train.checkpoint import write_checkpoint

SMX = str(Path(sys.executable).parent / "smx")


def smx_pretrain(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [SMX, "pretrain", "--config", str(config), "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def write_config(folder: Path, corpus_root: Path, uri: str, **sections: dict) -> Path:
    data = tiny_params(corpus_root, folder / "ray", uri).model_dump(mode="json")
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    path = folder / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_an_unreachable_mlflow_server_stops_before_training(
    corpus_root: Path, tmp_path: Path
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    res = smx_pretrain(write_config(tmp_path, corpus_root, uri))
    assert res.returncode == 2
    assert f"MLflow tracking server {uri} is unreachable" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "ray").exists()  # no Ray run was started


def test_a_missing_corpus_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "nowhere", f"sqlite:///{tmp_path}/m.db")
    res = smx_pretrain(config)
    assert res.returncode == 2
    assert str(tmp_path / "nowhere" / "synth") in res.stderr and "smx prepare" in res.stderr


def test_an_unknown_variant_is_named(corpus_root: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, corpus_root, f"sqlite:///{tmp_path}/m.db")
    res = smx_pretrain(config, "--variant", "nope")
    assert res.returncode == 2 and "nope" in res.stderr


@pytest.mark.parametrize("layers", [3])
def test_a_checkpoint_of_another_model_is_refused(
    corpus_root: Path, tmp_path: Path, layers: int
) -> None:
    other = tiny_params(corpus_root, tmp_path / "ray", None)
    from smx.train.checkpoint import config_hash

    folder = write_checkpoint(
        tmp_path / "ckpt", 0, {}, {"step": 5, "config_hash": config_hash(other), "model": {}}
    )
    config = write_config(
        tmp_path,
        corpus_root,
        f"sqlite:///{tmp_path}/m.db",
        model={"encoder": {**other.model.encoder.model_dump(mode="json"), "num_layers": layers}},
    )
    res = smx_pretrain(config, "--resume", str(folder))
    assert res.returncode == 2
    assert f"checkpoint {folder} was made with another model or ssl config" in res.stderr
    assert not (tmp_path / "ray").exists()
    assert torch.load(folder / "state.pt", weights_only=True)["step"] == 5  # left intact


def test_too_little_audio_for_one_batch_per_worker_is_refused(
    corpus_root: Path, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, corpus_root, f"sqlite:///{tmp_path}/m.db", data={"max_batch_duration": 5000.0}
    )
    res = smx_pretrain(config)
    assert res.returncode == 2
    assert "less than one batch of data.max_batch_duration=5000 s for each of the 2 workers" in (
        res.stderr
    )
    assert not (tmp_path / "ray").exists()


def test_a_checkpoint_of_other_code_is_refused(corpus_root: Path, tmp_path: Path) -> None:
    """Same config, another source hash: the message names both hashes, nothing starts."""
    from smx.provenance import source_hash, with_source
    from smx.train.checkpoint import config_hash

    config = write_config(tmp_path, corpus_root, f"sqlite:///{tmp_path}/m.db")
    params = tiny_params(corpus_root, tmp_path / "ray", f"sqlite:///{tmp_path}/m.db")
    other = "f" * 64
    shared = {"step": 5, "config_hash": with_source(config_hash(params), other)}
    folder = write_checkpoint(tmp_path / "ckpt", 0, {}, {**shared, "source_hash": other})
    res = smx_pretrain(config, "--resume", str(folder))
    assert res.returncode == 2
    assert (
        f"checkpoint {folder} was written by other smx code (source hash ffffffff, "
        f"this tree {source_hash()[:8]})" in res.stderr
    )
    assert not (tmp_path / "ray").exists()
