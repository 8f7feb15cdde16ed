"""MLflow tracking: URI resolution, a reachability probe, and rank-0 logging helpers.

The driver creates (or, on a re-run, reopens) the run, logs the flattened config as params
and the tags; it passes the run id to the workers, where rank 0 reopens the run with
:class:`RunLogger` so that worker restarts append to the same run. Metric steps already
logged before a restart are not logged again (the resumed run replays them identically).
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from smx.config import TrackingCfg
from smx.project import project_root


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking URI cannot be reached or written."""


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


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingUnavailable` (one clear sentence) unless ``uri`` is usable.

    HTTP(S) servers are probed at ``/health``; SQLite stores need a writable folder. Other
    schemes are left to MLflow.

    Example
    -------
    >>> check_tracking_uri("http://127.0.0.1:9/")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smx.train.tracking.TrackingUnavailable: MLflow tracking server http://127.0.0.1:9/ is unreachable ...
    """
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                if resp.status == 200:
                    return
                why = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            why = str(getattr(exc, "reason", exc))
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({why}); start it "
            "(mlflow server --host 127.0.0.1 --port PORT) or set tracking.uri / "
            "MLFLOW_TRACKING_URI to a reachable server"
        )
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        if not (folder.is_dir() and os.access(folder, os.W_OK)):
            raise TrackingUnavailable(
                f"MLflow store {uri}: folder {folder} does not exist or is not writable; "
                "create it or set tracking.uri / MLFLOW_TRACKING_URI"
            )


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts to ``{"a.b.c": "value"}`` strings, as MLflow params.

    Example
    -------
    >>> flatten({"model": {"encoder": {"d_model": 32}, "kinds": [1, 2]}, "seed": 0})
    {'model.encoder.d_model': '32', 'model.kinds': '[1, 2]', 'seed': '0'}
    """
    if isinstance(data, dict):
        flat: dict[str, str] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: str(data)[:6000]}


def git_commit(root: Path | None = None) -> str:
    """The git commit of the project (suffix ``-dirty`` with local changes), or ``unknown``.

    ``$SMX_GIT_COMMIT`` wins: a Ray job's working directory is a copy without ``.git``, so
    the submitter passes the commit (``--runtime-env-json '{"env_vars": {...}}'``).
    """
    if os.environ.get("SMX_GIT_COMMIT"):
        return os.environ["SMX_GIT_COMMIT"]
    root = root or project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def find_run(uri: str, experiment: str, ray_run_path: str) -> str | None:
    """The newest MLflow run of ``experiment`` tagged ``ray_run_path`` (None when none is).

    A Ray run is identified by its storage folder and name; a relaunch that resumes it
    (same config, commit and storage) keeps logging to the run found here.
    """
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    escaped = ray_run_path.replace("'", "\\'")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.ray_run_path = '{escaped}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def tagged_run(uri: str, experiment: str, run_name: str, tags: dict[str, str]) -> str:
    """The newest run of ``experiment`` carrying all ``tags``; else a new one (closed).

    Creates the experiment when it does not exist. Tag values must not contain quotes.
    """
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    query = " AND ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time DESC"]
    )
    if runs:
        return runs[0].info.run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def variant_run(uri: str, experiment: str, variant: str, encoder_hash: str) -> str:
    """The variant's parent run in ``experiment``: found by its tags, else created.

    One parent per (variant, encoder config): pre-training, fine-tuning and probing runs of
    that encoder are its children (tag ``mlflow.parentRunId``, nested in the MLflow UI).
    ``encoder_hash`` is :func:`smx.train.checkpoint.config_hash` of the variant's config, so
    changing a variant's model opens a new parent and the old runs stay comparable.
    """
    tags = {"smx.role": "variant", "variant": variant, "encoder_hash": encoder_hash}
    return tagged_run(uri, experiment, variant, tags)


def open_run(
    uri: str,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    run_id: str | None = None,
) -> str:
    """Create the run (logging params and tags) or, given ``run_id``, only re-tag it.

    Params are immutable in MLflow, so a resumed run never logs them again. Returns the run
    id; the run is left closed (``FINISHED`` until a worker reopens it).
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    if run_id is not None:
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tags(tags)
        return run_id
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        flat = flatten(params)
        items = sorted(flat.items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i : i + 100]))
        return run.info.run_id


class RunLogger:
    """Rank 0's view of the run: reopen it, log metrics once per step, close it.

    Arguments
    ---------
    uri: the tracking URI.
    run_id: the run created by the driver.
    system_metrics: also sample CPU/memory/GPU in the background (MLflow system metrics).
    """

    def __init__(self, uri: str, run_id: str, system_metrics: bool = True) -> None:
        import mlflow

        mlflow.set_tracking_uri(uri)
        self._mlflow = mlflow
        self.run_id = run_id
        self.run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
        history = mlflow.MlflowClient().get_metric_history(run_id, "loss")
        self.logged_until = max((m.step for m in history), default=0)

    def log(self, metrics: dict[str, float], step: int) -> bool:
        """Log ``metrics`` at ``step`` unless that step was logged before a restart."""
        if step <= self.logged_until:
            return False
        self._mlflow.log_metrics(metrics, step=step)
        self.logged_until = step
        return True

    def close(self, status: str = "FINISHED") -> None:
        """End the run with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``)."""
        self._mlflow.end_run(status=status)


def log_final_model(
    uri: str,
    run_id: str,
    model: Any,
    files: list[Path],
    register_as: str | None,
    requirements: list[str],
) -> str:
    """Log the encoder as an MLflow PyTorch model (pickled) plus its state-dict files.

    The model is registered under ``register_as`` when it is set. Returns the model URI.
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="encoder")
        info = mlflow.pytorch.log_model(
            model,
            name="encoder",
            serialization_format="pickle",
            pip_requirements=requirements,
            registered_model_name=register_as,
        )
    return info.model_uri
