"""Where the project lives on disk, so that every path and URI can be made absolute."""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The smx project directory: $DVC_ROOT, else the nearest parent holding dvc.yaml, else CWD.

    Absolute paths matter: DVC queued experiments and Ray job working directories run in
    other directories, and a relative ``sqlite:///mlflow.db`` would silently split runs.

    Example
    -------
    >>> project_root().is_absolute()
    True
    """
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "params.yaml").is_file():
            return folder
    return here
