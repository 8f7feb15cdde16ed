"""Without RAY_ADDRESS, training starts its own local Ray instance: an address file left by a
cluster that is gone (a crashed `ray start`) must not make it wait for that cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.servers import RAY_ENV

SCRIPT = """
import ray
from smx.train.launch import start_ray
start_ray()
print(ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


@pytest.mark.e2e
def test_a_stale_ray_address_file_is_ignored_without_ray_address() -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    # a short folder: Ray puts its Unix sockets there (107-byte path limit)
    with tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as temp:
        (Path(temp) / "ray").mkdir()
        (Path(temp) / "ray" / "ray_current_cluster").write_text(dead)  # where Ray reads it
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_ENV, RAY_TMPDIR=temp, OMP_NUM_THREADS="1")
        res = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert res.returncode == 0, res.stderr[-2000:]
    address = res.stdout.strip().splitlines()[-1]
    assert address and address != dead
    assert "Failed to connect to GCS" not in res.stderr
