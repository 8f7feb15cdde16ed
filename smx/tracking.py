"""Every MLflow call of smx: the tracking URI, the runs of a study and what they hold.

One experiment (``tracking.experiment``) holds one parent run per variant (found by variant
and encoder config hash, :func:`variant_run`); its pre-training, fine-tuning and probing runs
are its children (tag ``mlflow.parentRunId``, nested in the MLflow UI). The benchmark and
the report are runs of their own (tag ``smx.role`` = ``bench``, ``report``).

Training: the driver creates (or, on a re-run, reopens) the run, logs the flattened config
as params and the tags (:func:`open_run`); it passes the run id to the workers, where rank 0
reopens the run with :class:`RunLogger` so that worker restarts append to the same run.
Metric steps already logged before a restart are not logged again (the resumed run replays
them identically).

Probing (:func:`log_probe_run`): a child run with params task, probes, upstreams, seeds,
probe width and epochs; metrics ``<probe>.<upstream>.<metric>`` (mean over seeds),
``..._std`` and ``<probe>.<upstream>.layer_weight.<l>``; artifacts the metrics JSON and the
layer-weight PNG under ``probe/``.

The study (:func:`log_study`): each variant's parent gets the metrics of
:func:`smx.report.build.variant_metrics` at step 0 under names that are the same for every
variant, so ``mlflow ui`` compares the parents side by side, and the tags ``git_commit``,
``dvc_lock_sha256`` and ``report_run_id``. ``report.md``, ``summary.json`` and the figures
go to one run tagged ``smx.role=report`` (one per git commit and dvc.lock hash; re-running
the stage on the same inputs reuses it), not to the parents: the report compares all
variants and belongs to none, and a parent outlives a commit (it is keyed by the encoder
config), so its artifacts would be overwritten by the next study's report.

MLflow is imported inside the functions only: importing this module is cheap, and nothing
outside it imports MLflow.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smx.config import Params, TrackingCfg
from smx.project import project_root

if TYPE_CHECKING:
    from smx.report.build import ReportFiles
    from smx.report.inputs import Study
    from smx.report.markdown import Provenance

REPORT_ROLE = "report"


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking URI cannot be reached or written."""


def resolve_tracking_uri(cfg: TrackingCfg, root: Path | None = None) -> str:
    """The MLflow tracking URI of ``cfg``, absolute.

    The config's URI, else $MLFLOW_TRACKING_URI, else ``sqlite:///mlflow.db``; a relative
    SQLite path is made absolute against ``root``, so that runs started from other working
    directories (DVC queued experiments, Ray jobs) use the same store.

    Arguments
    ---------
    cfg : TrackingCfg
        The ``tracking`` section of the config.
    root : Path | None
        The folder relative SQLite paths are resolved against (default: the project root).

    Returns
    -------
    str
        The URI.

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
    """Check that the tracking store at ``uri`` can be used, before any compute is spent.

    HTTP(S) servers are probed at ``/health``; SQLite stores need a writable folder. Other
    schemes are left to MLflow.

    Arguments
    ---------
    uri : str
        The tracking URI, as :func:`resolve_tracking_uri` gives it.
    timeout : float
        Seconds to wait for an HTTP(S) server.

    Raises
    ------
    TrackingUnavailable
        When the server does not answer 200 or the SQLite folder is missing or read-only
        (one sentence that says how to fix it).

    Example
    -------
    >>> check_tracking_uri("http://127.0.0.1:9/")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smx.tracking.TrackingUnavailable: MLflow tracking server http://127.0.0.1:9/ is unreachable ...
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


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name`` at ``uri``, created when it does not exist.

    MLflow puts a new experiment's artifacts under ``./mlruns`` of whatever folder the
    creating process runs in; a DVC experiment or a Ray job runs elsewhere, which would
    scatter the artifacts of one store over several folders. A new experiment of a SQLite
    store therefore keeps its artifacts beside the database, in ``<folder>/mlartifacts``.

    Arguments
    ---------
    uri : str
        The tracking URI.
    name : str
        The experiment's name.

    Returns
    -------
    str
        The experiment's id.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> uri = f"sqlite:///{folder}/mlflow.db"
    >>> first = experiment_id(uri, "demo")
    >>> first == experiment_id(uri, "demo")
    True
    >>> import mlflow
    >>> mlflow.MlflowClient(uri).get_experiment(first).artifact_location == (
    ...     folder / "mlartifacts").as_uri()
    True
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another process created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def tagged_run(uri: str, experiment: str, run_name: str, tags: dict[str, str]) -> str:
    """The newest run of ``experiment`` carrying all ``tags``; else a new one (closed).

    Creates the experiment when it does not exist. Tag values must not contain quotes.
    """
    import mlflow

    client = mlflow.MlflowClient(uri)
    found_id = experiment_id(uri, experiment)
    query = " AND ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs(
        [found_id], filter_string=query, order_by=["attributes.start_time DESC"]
    )
    if runs:
        return runs[0].info.run_id
    run = client.create_run(found_id, run_name=run_name, tags=tags)
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

    Params are immutable in MLflow, so a resumed run never logs them again.

    Arguments
    ---------
    uri : str
        The tracking URI.
    experiment : str
        The experiment of a new run (created when missing).
    run_name : str
        The name of a new run.
    params : dict[str, Any]
        The config, logged flattened (:func:`flatten`) as the new run's params.
    tags : dict[str, str]
        Tags set on the run, new or reopened.
    run_id : str | None
        The run to re-tag; None to create one.

    Returns
    -------
    str
        The run id; the run is left closed (``FINISHED`` until a worker reopens it).
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    if run_id is not None:
        with reopen_run(uri, run_id):
            mlflow.set_tags(tags)
        return run_id
    mlflow.set_experiment(experiment_id=experiment_id(uri, experiment))
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
    uri : str
        The tracking URI.
    run_id : str
        The run created by the driver (:func:`open_run`).
    system_metrics : bool
        Also sample CPU/memory/GPU in the background (MLflow system metrics).
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
        """Log ``metrics`` at ``step`` unless that step was logged before a restart.

        Returns
        -------
        bool
            Whether the metrics were logged.
        """
        if step <= self.logged_until:
            return False
        self._mlflow.log_metrics(metrics, step=step)
        self.logged_until = step
        return True

    def close(self, status: str = "FINISHED") -> None:
        """End the run with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``)."""
        self._mlflow.end_run(status=status)


def reopen_run(uri: str, run_id: str) -> Any:
    """``mlflow.start_run(run_id=...)`` with the run's own experiment made the active one.

    MLflow refuses to resume a run of another experiment than the process's active one
    (``set_experiment`` earlier in the process, or ``MLFLOW_EXPERIMENT_ID``).
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id
    mlflow.set_experiment(experiment_id=experiment)
    return mlflow.start_run(run_id=run_id)


def encoder_signature() -> Any:
    """The signature of an smx encoder model: padded audio and lengths in, ``[B, T, D]`` out.

    ``layer`` (an integer parameter, default -1) picks the layer (:mod:`smx.serving`).
    """
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    inputs = Schema(
        [
            TensorSpec(np.dtype(np.float32), (-1, -1), "audio"),  # [B, S] at 16 kHz, padded
            TensorSpec(np.dtype(np.int64), (-1,), "lengths"),  # [B] samples
        ]
    )
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1), "hidden_states")])
    params = ParamSchema([ParamSpec("layer", "long", -1)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def encoder_example() -> dict[str, Any]:
    """The input example of an encoder model: two utterances of 0.2 and 0.1 s, padded."""
    import numpy as np

    audio = np.zeros((2, 3200), dtype=np.float32)
    return {"audio": audio, "lengths": np.array([3200, 1600], dtype=np.int64)}


def log_encoder_model(
    uri: str,
    run_id: str,
    data_dir: Path,
    code_dir: Path,
    register_as: str | None,
    requirements: list[str],
    tags: dict[str, str],
) -> dict[str, str]:
    """Log an encoder as an MLflow pyfunc model and register it as a new version, which
    ``models:/<name>@latest`` then names (MLflow's reserved alias of the newest version).

    Arguments
    ---------
    uri : str
        The tracking URI.
    run_id : str
        The run that gets the model (artifact ``encoder``).
    data_dir : Path
        The model's data folder (:func:`smx.serving.write_model_folder`).
    code_dir : Path
        The ``smx`` package copy bundled with the model (``code_paths``).
    register_as : str | None
        The registered model's name; None logs without registering.
    requirements : list[str]
        The pinned pip requirements of loading and running the model.
    tags : dict[str, str]
        Tags of the new model version (commit, config hash, source hash, ...).

    Returns
    -------
    dict[str, str]
        ``model_uri`` (``runs:/``); registered: ``name``, ``version``, ``uri``, ``alias_uri``.
    """
    import mlflow

    with reopen_run(uri, run_id):
        info = mlflow.pyfunc.log_model(
            name="encoder",
            loader_module="smx.serving",
            data_path=str(data_dir),
            code_paths=[str(code_dir)],
            signature=encoder_signature(),
            input_example=encoder_example(),
            pip_requirements=requirements,
            registered_model_name=register_as,
        )
    out = {"model_uri": info.model_uri}
    if register_as is None:
        return out
    version = str(info.registered_model_version)
    tag_model_version(uri, register_as, version, tags)
    out.update(
        name=register_as,
        version=version,
        uri=f"models:/{register_as}/{version}",
        alias_uri=f"models:/{register_as}@latest",
    )
    return out


def tag_model_version(uri: str, name: str, version: str, tags: dict[str, str]) -> None:
    """Set ``tags`` on version ``version`` of the registered model ``name``."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def download_model(uri: str, dst: Path, tracking_uri: str | None = None) -> Path:
    """Download the model at ``uri`` (``models:/``, ``runs:/``) into ``dst``; its folder.

    A ``tracking_uri`` becomes MLflow's tracking URI for the rest of the process
    (``models:/`` URIs resolve through it). MLflow raises many exception types for a bad URI;
    they reach the caller unchanged.
    """
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of a probing result as flat MLflow metric names.

    Example
    -------
    >>> res = {"probes": {"linear": {"fbank": {"metrics": {"accuracy": {"mean": 0.5, "std": 0.1}},
    ...                                        "layer_weights": {"mean": [1.0]}}}}}
    >>> flat_metrics(res)
    {'linear.fbank.accuracy': 0.5, 'linear.fbank.accuracy_std': 0.1, 'linear.fbank.layer_weight.0': 1.0}
    """
    out: dict[str, float] = {}
    for probe, by_upstream in result["probes"].items():
        for upstream, entry in by_upstream.items():
            prefix = f"{probe}.{upstream}"
            for name, value in entry["metrics"].items():
                out[f"{prefix}.{name}"] = float(value["mean"])
                out[f"{prefix}.{name}_std"] = float(value["std"])
            for layer, weight in enumerate(entry["layer_weights"]["mean"]):
                out[f"{prefix}.layer_weight.{layer}"] = float(weight)
    return out


def probe_params(result: dict[str, Any]) -> dict[str, str]:
    """The run parameters that say what a probing result covers.

    Example
    -------
    >>> probe_params({"task": "asr", "seeds": [0, 1],
    ...               "probes": {"conv": {"fbank": {}, "pretrained": {}}, "lstm": {"fbank": {}}}})
    {'task': 'asr', 'probes': 'conv,lstm', 'upstreams': 'fbank,pretrained', 'seeds': '0,1'}
    """
    upstreams = sorted({u for by in result["probes"].values() for u in by})
    return {
        "task": result["task"],
        "probes": ",".join(result["probes"]),
        "upstreams": ",".join(upstreams),
        "seeds": ",".join(str(s) for s in result["seeds"]),
    }


def log_probe_run(
    tracking_uri: str,
    parent_run_id: str,
    result: dict[str, Any],
    files: Sequence[str | Path] = (),
    params: dict[str, Any] | None = None,
) -> str:
    """Log ``result`` (from :func:`smx.downstream.run.run_probing`) as a nested child run.

    Arguments
    ---------
    tracking_uri : str
        The MLflow tracking URI (``sqlite:///...``, ``http://...``).
    parent_run_id : str
        The variant's run; the child joins its experiment.
    result : dict[str, Any]
        The probing result.
    files : Sequence[str | Path]
        Artifacts to attach (e.g. the metrics JSON and the layer-weight PNG).
    params : dict[str, Any] | None
        Extra run parameters (e.g. ``downstream`` settings), flat names -> values.

    Returns
    -------
    str
        The child run's id.

    Raises
    ------
    ProbeError
        When ``parent_run_id`` is not a run of the tracking store.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    from smx.downstream.errors import ProbeError

    client = MlflowClient(tracking_uri)
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException:
        message = f"MLflow run {parent_run_id} does not exist at {tracking_uri}"
        raise ProbeError(f"{message}; pass the run id of the variant's pre-training") from None
    run_id = _create_probe_run(client, parent, result)
    values = {**probe_params(result), **(params or {})}
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in flat_metrics(result).items()],
        params=[Param(k, str(v)) for k, v in values.items()],
        tags=[RunTag("smx.primary_metric", result["primary_metric"])],
    )
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path="probe")
    client.set_terminated(run_id)
    return run_id


def _create_probe_run(client: Any, parent: Any, result: dict[str, Any]) -> str:
    """Create the probe run of ``result`` as a child of the run ``parent``; its id."""
    task = result["task"]
    variant = result.get("variant") or parent.data.tags.get("mlflow.runName", "encoder")
    run = client.create_run(
        parent.info.experiment_id,
        run_name=f"probe-{variant}-{task}",
        tags={
            "mlflow.parentRunId": parent.info.run_id,
            "smx.stage": "probe",
            "smx.role": "probe",
            "smx.task": task,
            "variant": variant,
        },
    )
    return run.info.run_id


def report_run(uri: str, experiment: str, provenance: Provenance, variants: list[str]) -> str:
    """The experiment's report run for this commit and dvc.lock: found by its tags, else created."""
    tags = {
        "smx.role": REPORT_ROLE,
        "git_commit": provenance.git_commit,
        "dvc_lock_sha256": provenance.dvc_lock_sha256,
        "variants": ",".join(variants),
    }
    return tagged_run(uri, experiment, "report", tags)


def log_study(
    uri: str, params: Params, study: Study, files: ReportFiles, provenance: Provenance
) -> dict[str, str]:
    """Log every variant's numbers to its parent and the report files to the report run.

    Arguments
    ---------
    uri : str
        The tracking URI.
    params : Params
        The base config (experiment; each variant's config hash finds its parent).
    study : Study
        The study's results.
    files : ReportFiles
        The report, summary and figures, logged to the report run.
    provenance : Provenance
        The git commit and dvc.lock hash, tagged on every run and keying the report run.

    Returns
    -------
    dict[str, str]
        ``{variant: parent run id, ..., "report": report run id}``.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    from smx.report.build import variant_metrics
    from smx.train.checkpoint import config_hash

    client = MlflowClient(uri)
    experiment = params.tracking.experiment
    report_id = report_run(uri, experiment, provenance, study.variants)
    tags = {
        "git_commit": provenance.git_commit,
        "dvc_lock_sha256": provenance.dvc_lock_sha256,
    }
    runs: dict[str, str] = {}
    now = int(time.time() * 1000)
    for v in study.variants:
        run_id = variant_run(uri, experiment, v, config_hash(params.variant(v)))
        metrics = [Metric(k, float(x), now, 0) for k, x in variant_metrics(study, v).items()]
        run_tags = [RunTag(k, x) for k, x in {**tags, "report_run_id": report_id}.items()]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000], tags=run_tags if i == 0 else [])
        runs[v] = run_id
    client.log_artifact(report_id, str(files.report))
    client.log_artifact(report_id, str(files.summary))
    for path in files.figures.values():
        client.log_artifact(report_id, str(path), artifact_path="figures")
    client.set_terminated(report_id)
    runs["report"] = report_id
    return runs


def log_metrics(uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log ``metrics`` to the (closed or open) run ``run_id`` at ``step``."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value, step=step)


def log_series_run(
    uri: str,
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, Any],
    series: Sequence[tuple[int, dict[str, float]]],
    files: Sequence[Path],
) -> str:
    """Log a new run of ``experiment`` holding a series of measurements.

    Arguments
    ---------
    uri : str
        The tracking URI.
    experiment : str
        The run's experiment (created when missing).
    run_name : str
        The run's name.
    tags : dict[str, str]
        The run's tags (e.g. ``smx.role``).
    params : dict[str, Any]
        Settings, logged flattened (:func:`flatten`) as params.
    series : Sequence[tuple[int, dict[str, float]]]
        ``(step, metrics)`` points (e.g. a benchmark, one step per input length).
    files : Sequence[Path]
        Artifacts to attach.

    Returns
    -------
    str
        The new run's id.
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id(uri, experiment))
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_params(flatten(params))
        for step, metrics in series:
            mlflow.log_metrics(metrics, step=step)
        for path in files:
            mlflow.log_artifact(str(path))
        return run.info.run_id
