"""MLflow tracking URI resolution (the rest of tracking arrives with pre-training)."""

from __future__ import annotations

import os
from pathlib import Path

from smx.config import TrackingCfg
from smx.project import project_root


def resolve_tracking_uri(cfg: TrackingCfg, root: Path | None = None) -> str:
    """Tracking URI: the config's, else $MLFLOW_TRACKING_URI, else ``sqlite:////<project>/mlflow.db``.

    A relative SQLite path is made absolute against the project root.

    Example
    -------
    >>> resolve_tracking_uri(TrackingCfg(uri="http://127.0.0.1:5000"))
    'http://127.0.0.1:5000'
    >>> resolve_tracking_uri(TrackingCfg(uri="sqlite:///runs.db"), Path("/p"))
    'sqlite:////p/runs.db'
    """
    root = root or project_root()
    uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str((root / uri[len(prefix) :]).resolve())
    return uri
