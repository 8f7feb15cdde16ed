"""Fixtures of the training tests: a tiny corpus, a real MLflow server, a local Ray instance."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smx.config import DataCfg, Params

VENV_BIN = Path(sys.executable).parent

DATA = {
    "min_duration": 0.5,
    "max_duration": 10.0,
    "max_batch_duration": 12.0,
    "num_buckets": 3,
    "synth": {
        "hours": 0.04,
        "num_speakers": 6,
        "heldout_speakers": 2,
        "free_sentences": 50,
        "workers": 2,
    },
}

TINY_MODEL = {
    "frontend": {"kind": "mel_cnn", "cnn_channels": [32, 32]},
    "encoder": {
        "num_layers": 2,
        "d_model": 32,
        "d_ffn": 64,
        "kernel_size": 3,
        "dropout": 0.1,
        "input_dropout": 0.1,
        "layerdrop": 0.0,
    },
    "mixer": {
        "kind": "summarymixing",
        "local_hidden": [32],
        "local_out": 32,
        "summary_hidden": [32],
        "heads": 4,
    },
}

TINY_SSL = {
    "kind": "wav2vec2",
    "codebook_entries": 16,
    "code_dim": 16,
    "proj_dim": 16,
    "num_negatives": 10,
    "mask_length": 4,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/synth``: about 2.4 minutes of synthetic speech, 6 speakers."""
    from smx.data.synth import prepare_synth

    root = tmp_path_factory.mktemp("data")
    prepare_synth(root / "synth", DataCfg.model_validate(DATA))
    return root


def tiny_params(corpus_root: Path, storage: Path, tracking_uri: str | None, **train: Any) -> Params:
    """2 layers, d_model 32, wav2vec 2.0 with 16x2 codes; ``train`` overrides the loop."""
    settings = {
        "max_steps": 30,
        "lr": 3e-3,
        "warmup_steps": 5,
        "grad_accum": 1,
        "precision": "fp32",
        "checkpoint_every": 10,
        "keep_checkpoints": 2,
        "log_every": 1,
        "max_nan_steps": 3,
        **train,
    }
    return Params.model_validate(
        {
            "seed": 0,
            "data": {**DATA, "root": str(corpus_root)},
            "model": TINY_MODEL,
            "ssl": TINY_SSL,
            "train": settings,
            "tracking": {
                "uri": tracking_uri,
                "experiment": "smx-tests",
                "log_system_metrics": False,
                "register_model": "smx-test-encoder",
            },
            "cluster": {"num_workers": 2, "storage_path": str(storage), "max_failures": 2},
        }
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite store), stopped at the end."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed in the finally
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder}/mlflow.db",
            "--artifacts-destination",
            str(folder / "art"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(folder / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield uri
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


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
