"""Real servers for tests: a free local port, an ``mlflow server`` process, a Ray head node."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from smx.train.launch import LOCAL_TRAIN_ENV

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or hangs."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{url} did not come up; server log:\n{log.read_text()}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server --host 127.0.0.1`` with a SQLite store and local artifacts in ``folder``."""
    port = free_port()
    log_path = folder / "server.log"
    cmd = [
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
        str(folder / "artifacts"),
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"http://127.0.0.1:{port}"
        try:
            wait_http(uri + "/health", proc, log_path)
            yield uri
        finally:
            stop(proc)


@dataclass(frozen=True)
class RayHead:
    """A running Ray head node: its GCS address (``ray.init``, ``RAY_ADDRESS``) and the URL
    of its dashboard (job submission, state API)."""

    address: str
    dashboard: str


#: the environment of a test head node: no token authentication, no usage stats, and Ray
#: Train's settings of a local instance (smx.train.launch.start_ray)
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    **LOCAL_TRAIN_ENV,
}


@contextmanager
def ray_head(folder: Path, num_cpus: int = 2) -> Iterator[RayHead]:
    """``ray start --head --block`` on 127.0.0.1 with the dashboard, stopped on exit.

    SIGTERM to the blocking ``ray start`` stops every process it started (its workers
    included); SIGKILL to its process group if that has not happened in 60 s.
    """
    port, dashboard = free_port(), free_port()
    log_path = folder / "ray-head.log"
    cmd = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=true",
        # fixed defaults that a second head on this machine (another xdist worker) would share
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        "--disable-usage-stats",
    ]
    # the venv first on PATH (the drivers of submitted jobs run its `smx`); on SIGTERM, stop
    # at once instead of draining the node for 30 s (nothing runs on it by then)
    env = {
        **os.environ,
        **RAY_ENV,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        url = f"http://127.0.0.1:{dashboard}"
        try:
            wait_http(url + "/api/version", proc, log_path)
            yield RayHead(f"127.0.0.1:{port}", url)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
