"""``smx doctor``: check every component smx relies on and say how to fix what is wrong."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

from smx.config import TrackingCfg
from smx.project import project_root

# The demo pipeline (`make demo`) writes about 0.2 GB (corpus, features, checkpoints, DVC
# cache, MLflow store); real corpora need their own size on top.
MIN_FREE_GB = 1.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report.

    Arguments
    ---------
    component : str
        What was checked (``torch``, ``mlflow``, ``disk``).
    ok : bool
        Whether it is usable.
    detail : str
        What was found (a version, an address, free space).
    fix : str
        How to fix it; empty when ``ok``.
    """

    component: str
    ok: bool
    detail: str
    fix: str = ""


def _pinned(name: str) -> str | None:
    """The version smx pins for ``name`` (read from the installed package metadata)."""
    try:
        requires = metadata.requires("smx") or []
    except metadata.PackageNotFoundError:
        return None
    for line in requires:
        head = line.split(";")[0].strip()
        if head.startswith(f"{name}=="):
            return head.split("==", 1)[1]
    return None


def check_python() -> Check:
    """The interpreter is Python 3.11 or newer."""
    v = sys.version_info
    ok = v >= (3, 11)
    return Check(
        "python",
        ok,
        f"{v.major}.{v.minor}.{v.micro} ({sys.executable})",
        "" if ok else "use Python >= 3.11",
    )


def check_package(name: str) -> Check:
    """The package ``name`` imports and is installed at the version smx pins."""
    pinned = _pinned(name)
    fix = "run 'make setup' (pip install -c requirements.lock -e '.[dev]')"
    try:
        module = __import__(name)
        version = getattr(module, "__version__", metadata.version(name))
    except Exception as exc:
        return Check(name, False, f"does not import: {exc}", fix)
    base = str(version).split("+")[0]
    if pinned and base != pinned:
        return Check(name, False, f"{version} installed, smx pins {pinned}", fix)
    return Check(name, True, str(version))


def check_cuda() -> Check:
    """The CUDA devices torch sees (none is fine: everything runs on the CPU)."""
    import torch

    if not torch.cuda.is_available():
        return Check("cuda", True, "no CUDA device: training and benchmarks run on the CPU")
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return Check("cuda", True, f"{len(names)} device(s): {', '.join(names)}")


def check_espeak() -> Check:
    """espeak-ng, which synthesises the embedded corpus, is on PATH and runs."""
    exe = shutil.which("espeak-ng")
    fix = "apt-get install -y espeak-ng (or run 'make setup')"
    if exe is None:
        return Check(
            "espeak-ng", False, "not found on PATH (needed to synthesise the embedded corpus)", fix
        )
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return Check("espeak-ng", False, f"{exe} does not run: {exc}", fix)
    return Check("espeak-ng", True, out.strip().splitlines()[0] if out.strip() else exe)


def _http_ok(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Whether a GET of ``url`` answers 2xx, and the status or the error in words."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(getattr(exc, "reason", exc))


def check_ray() -> Check:
    """Ray imports, and the cluster named by $RAY_ADDRESS (if any) answers."""
    try:
        import ray
    except Exception as exc:
        return Check("ray", False, f"does not import: {exc}", "run 'make setup'")
    address = os.environ.get("RAY_ADDRESS", "")
    if address in ("", "auto", "local"):
        return Check(
            "ray", True, f"{ray.__version__}; no RAY_ADDRESS: a local Ray instance starts on demand"
        )
    if address.startswith(("http://", "https://")):
        ok, why = _http_ok(address.rstrip("/") + "/api/version")
        fix = "" if ok else f"start the head node (ray start --head) or fix RAY_ADDRESS={address}"
        return Check("ray", ok, f"{ray.__version__}; dashboard {address}: {why}", fix)
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 10001
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as exc:
        return Check(
            "ray",
            False,
            f"{ray.__version__}; {address}: {exc}",
            f"start Ray at {address} or unset RAY_ADDRESS",
        )
    return Check("ray", True, f"{ray.__version__}; {address} answers")


def check_mlflow(cfg: TrackingCfg | None = None) -> Check:
    """The tracking store of ``cfg`` (default: the default config's) can be written or reached.

    A local SQLite store needs a writable folder; an HTTP server must answer its health
    check; other stores are not probed.
    """
    from smx.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(cfg or TrackingCfg())
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if folder.is_dir() and os.access(folder, os.W_OK):
            return Check("mlflow", True, f"{uri} (local SQLite store, writable)")
        return Check(
            "mlflow", False, f"{uri}: folder {folder} is not writable", "set MLFLOW_TRACKING_URI"
        )
    if uri.startswith(("http://", "https://")):
        ok, why = _http_ok(uri.rstrip("/") + "/health")
        fix = (
            ""
            if ok
            else "start the server (mlflow server --host 127.0.0.1) or fix MLFLOW_TRACKING_URI"
        )
        return Check("mlflow", ok, f"{uri}: {why}", fix)
    return Check("mlflow", True, f"{uri} (not probed)")


def check_disk(root: Path, min_free_gb: float = MIN_FREE_GB) -> Check:
    """At least ``min_free_gb`` GB are free on the file system of ``root``."""
    free_gb = shutil.disk_usage(root).free / 1e9
    ok = free_gb >= min_free_gb
    fix = (
        "" if ok else f"free at least {min_free_gb:g} GB for corpora, checkpoints and the DVC cache"
    )
    return Check("disk", ok, f"{free_gb:.1f} GB free at {root}", fix)


def check_tool(name: str, fix: str) -> Check:
    """The command ``name`` is on PATH and runs ``--version``; ``fix`` says how to install it."""
    exe = shutil.which(name)
    if exe is None:
        return Check(name, False, "not found on PATH", fix)
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return Check(name, False, f"{exe} does not run: {exc}", fix)
    return Check(name, True, out.splitlines()[0] if out else exe)


def run_checks(
    tracking: TrackingCfg | None = None, min_free_gb: float = MIN_FREE_GB
) -> list[Check]:
    """Every check, in the order the report shows them.

    The running interpreter's bin folder is put first on PATH, so that the tools installed
    beside it (dvc) are found in a virtual environment that was not activated.

    Arguments
    ---------
    tracking : TrackingCfg | None
        The tracking section whose store is checked (default: the default config's).
    min_free_gb : float
        Free disk space the project needs, in GB.

    Returns
    -------
    list[Check]
        One check per component.
    """
    root = project_root()
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return [
        check_python(),
        check_package("torch"),
        check_package("torchaudio"),
        check_cuda(),
        check_espeak(),
        check_ray(),
        check_mlflow(tracking),
        check_tool("dvc", "run 'make setup'"),
        check_tool("git", "apt-get install -y git"),
        check_disk(root, min_free_gb),
    ]
