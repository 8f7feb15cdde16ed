"""Run one tracked Ray Train job: pre-flight, cluster, MLflow run, fit, final checkpoint.

Pre-training (:mod:`smx.train.pretrain`) and fine-tuning (:mod:`smx.train.finetune`) describe
their runs as jobs (:class:`Job`) and hand them to :func:`run_job`; they only check their own
inputs and write their own outputs. The sequence, the same for every job:

1. :func:`open_launch` resolves the tracking URI and checks that it answers, before the
   caller checks its inputs, so that a user mistake costs no compute.
2. :func:`run_job` checks that the storage folder can be written, starts a local Ray
   instance or joins the cluster of ``RAY_ADDRESS`` and checks its resources.
3. It opens the job's MLflow run, a child of the variant's run (the same run again when the
   same Ray run is launched again).
4. It runs the job's loop on ``cluster.num_workers`` Ray workers, with a progress bar.
5. It takes the final checkpoint (an error for a diverged run) and reads its state, checked
   against the job's hash.

The Ray run folder is ``<cluster.storage_path>/<job name>``: launching a job of the same name
again resumes it from its latest checkpoint (a finished run ends at once). Problems raise
:class:`PretrainError`, whose ``during_training`` tells a failed run from bad input.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from smx.atomic import write_text
from smx.config import Params
from smx.project import project_root
from smx.provenance import SourceHashError, source_hash
from smx.tracking import (
    check_tracking_uri,
    find_run,
    git_commit,
    open_run,
    resolve_tracking_uri,
    variant_run,
)
from smx.train.checkpoint import config_hash, read_state
from smx.train.distributed import worker_env
from smx.train.progress import ProgressBar

#: environment variables forwarded to the workers (test hooks, MLflow settings)
FORWARDED_ENV = ("SMX_", "MLFLOW_")
#: on a local Ray instance, how often Ray Train's controller polls its workers: a run waits
#: for a poll at each phase (start, end), so Ray's default of 2 s adds seconds to every run
LOCAL_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


class PretrainError(RuntimeError):
    """A tracked training job could not start or did not finish; the message says why.

    Fine-tuning's error (:class:`smx.train.finetune.FinetuneError`) is one too.

    Arguments
    ---------
    message : str
        One sentence for the user.
    during_training : bool
        False for problems found before any compute was spent (a bad tracking URI, corpus or
        checkpoint), True for a failed or diverged run.

    Example
    -------
    >>> PretrainError("no corpus").during_training
    False
    """

    def __init__(self, message: str, during_training: bool = False) -> None:
        super().__init__(message)
        self.during_training = during_training


@dataclass(frozen=True)
class Job:
    """One tracked Ray Train run, as pre-training or fine-tuning describes it.

    Arguments
    ---------
    name : str
        The Ray run name: its folder under ``cluster.storage_path``.
    title : str
        The MLflow run name.
    role : str
        The MLflow tag ``smx.role`` (``pretrain``, ``finetune``).
    tags : dict[str, str]
        MLflow tags beside the launch's own (:meth:`Launch.tags`).
    loop : Callable
        The workers' entry point: ``loop(config) -> summary``.
    state_hash : str
        The config hash the final checkpoint must have been made with (combined with the
        launch's source hash, :func:`smx.train.checkpoint.read_state`).
    max_steps : int
        The progress bar's total.
    config : dict[str, Any]
        Entries added to the workers' :func:`loop_config`.
    resume_from : Path | None
        A checkpoint folder the run starts from.

    Example
    -------
    >>> Job("sm-1", "sm-1", "pretrain", {}, print, "h", 10).config
    {}
    """

    name: str
    title: str
    role: str
    tags: dict[str, str]
    loop: Callable[[dict[str, Any]], Any]
    state_hash: str
    max_steps: int
    config: dict[str, Any] = field(default_factory=dict)
    resume_from: Path | None = None


@dataclass(frozen=True)
class Launch:
    """Where the tracked jobs of one variant run: project, tracking URI, corpus, storage.

    Made by :func:`open_launch` once the tracking URI answers.

    Arguments
    ---------
    params : Params
        The resolved config of the variant.
    variant : str
        The variant's name (outputs, tags, parent MLflow run).
    root : Path
        The project folder; relative paths of the config are taken from it.
    uri : str
        The MLflow tracking URI.

    Example
    -------
    >>> launch = Launch(Params(), "sm", Path("/p"), "sqlite:///m.db")
    >>> str(launch.corpus), launch.storage
    ('/p/data/synth', '/p/ray_results')
    """

    params: Params
    variant: str
    root: Path
    uri: str

    @property
    def corpus(self) -> Path:
        """The prepared corpus of ``data.corpus``."""
        return corpus_dir(self.params, self.root)

    @property
    def storage(self) -> str:
        """``cluster.storage_path``, absolute unless it is a URI."""
        return absolute(self.params.cluster.storage_path, self.root)

    @cached_property
    def commit(self) -> str:
        """The project's git commit (an MLflow tag)."""
        return git_commit(self.root)

    @cached_property
    def source(self) -> str:
        """The hash of the smx code training executes (part of run names and checkpoints).

        Raises
        ------
        SourceHashError
            The source cannot be hashed (:func:`smx.provenance.source_hash`).
        """
        return source_hash()

    def tags(self) -> dict[str, str]:
        """The MLflow tags of every job: commit, source hash, variant, DVC stage, mixer."""
        return {
            "git_commit": self.commit,
            "source_hash": self.source,
            "variant": self.variant,
            "stage": os.environ.get("DVC_STAGE", "manual"),
            "mixer": self.params.model.mixer.kind,
        }

    def check_enough_audio(self, cuts: Any) -> None:
        """Raise :class:`PretrainError` when the train split cannot fill one batch per worker.

        Batches are dropped when incomplete (every DDP rank must take the same number of
        steps), so each worker needs at least ``data.max_batch_duration`` seconds of audio
        within the duration filters.

        Arguments
        ---------
        cuts : CutSet
            The train split of the launch's corpus.

        Raises
        ------
        PretrainError
            Less than one batch of audio for each worker.
        """
        from smx.data.loader import filter_duration

        data, workers = self.params.data, self.params.cluster.num_workers
        kept = filter_duration(cuts, data.min_duration, data.max_duration)
        seconds = sum(cut.duration for cut in kept)
        if seconds < data.max_batch_duration * workers:
            raise PretrainError(
                f"the train split of {self.corpus} has {seconds:.1f} s of audio between "
                f"data.min_duration={data.min_duration:g} and "
                f"data.max_duration={data.max_duration:g} s, less than one batch of "
                f"data.max_batch_duration={data.max_batch_duration:g} s for each of the "
                f"{workers} workers; prepare more audio or lower data.max_batch_duration"
            )


@dataclass(frozen=True)
class Finished:
    """A finished job: its MLflow run, its final checkpoint and that checkpoint's state."""

    run_id: str
    checkpoint: Any  # ray.train.Checkpoint: a local folder or a URI under the storage
    state: dict[str, Any]


def open_launch(params: Params, variant: str, error: type[PretrainError] = PretrainError) -> Launch:
    """The launch of ``variant``'s jobs, once its tracking URI answers.

    Arguments
    ---------
    params : Params
        The resolved config of the variant.
    variant : str
        The variant's name.
    error : type[PretrainError]
        The error raised for an unreachable tracking URI.

    Returns
    -------
    Launch
        The project, the tracking URI and what follows from the config.

    Raises
    ------
    PretrainError
        (``error``) The tracking URI does not answer, or the source cannot be hashed.
    """
    root = project_root()
    uri = resolve_tracking_uri(params.tracking, root)
    try:
        check_tracking_uri(uri)
    except RuntimeError as exc:
        raise error(str(exc)) from None
    launch = Launch(params, variant, root, uri)
    try:
        launch.source  # noqa: B018 - hashed now: a tree that cannot be hashed stops here
    except SourceHashError as exc:
        raise error(str(exc)) from None
    return launch


def run_job(launch: Launch, job: Job, show_progress: bool = True) -> Finished:
    """Run ``job`` on Ray Train, tracked by MLflow, and read its final checkpoint.

    Arguments
    ---------
    launch : Launch
        Where the job runs (:func:`open_launch`).
    job : Job
        The run.
    show_progress : bool
        Draw the progress bar.

    Returns
    -------
    Finished
        The MLflow run id, the final checkpoint and its state.

    Raises
    ------
    PretrainError
        The storage, the cluster or MLflow is unusable (``during_training`` False); the run
        failed after ``cluster.max_failures`` restarts or diverged (True).

    Example
    -------
    See ``tests/train`` and ``tests/finetune`` (they start Ray).
    """
    params, storage = launch.params, launch.storage
    start_cluster(params, storage)
    run_id, run_dir = open_tracked_run(launch, job)
    config = loop_config(params, launch.corpus, run_dir, launch.uri, run_id, job.resume_from)
    config.update(job.config, source_hash=launch.source)
    result = fit_run(params, job, storage, config, show_progress)
    final = final_checkpoint(result, run_dir, job.name, storage, params.train.max_nan_steps)
    with final.as_directory() as folder:
        state = read_state(folder, job.state_hash, launch.source)
    return Finished(run_id, final, state)


def run_name(params: Params, prefix: str, source: str = "", **fields: Any) -> str:
    """The Ray run name ``<prefix>-<config hash>-<source hash>``: stable for one config and code.

    The config hash covers what a run's result depends on (seed, data, model, ssl, train,
    the worker count) and ``fields``; ``source`` is the hash of the code that runs
    (:func:`smx.provenance.source_hash`, '' leaves it out). Launching the same config on
    the same code again resumes the run from its latest checkpoint (a finished run ends at
    once); a code change, committed or not, or a change of a training-relevant field starts
    a new run.

    Example
    -------
    >>> run_name(Params(), "sm") == run_name(Params(), "sm"), run_name(Params(), "sm")[:3]
    (True, 'sm-')
    >>> run_name(Params(), "sm", "0123456789abcdef")[-9:]
    '-01234567'
    >>> run_name(Params(), "sm", vocab=["a"]) == run_name(Params(), "sm")
    False
    """
    data = params.model_dump(mode="json")
    keep = {k: data[k] for k in ("seed", "data", "model", "ssl", "train")}
    keep.update(num_workers=params.cluster.num_workers, **fields)
    digest = hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()
    suffix = f"-{source[:8]}" if source else ""
    return f"{prefix}-{digest[:12]}{suffix}"


def absolute(path: str, root: Path) -> str:
    """``path`` made absolute against ``root`` unless it is a URI (``s3://``) or absolute.

    Example
    -------
    >>> absolute("ray", Path("/p")), absolute("s3://b/ray", Path("/p"))
    ('/p/ray', 's3://b/ray')
    """
    if "://" in path or Path(path).is_absolute():
        return path
    return str((root / path).resolve())


def corpus_dir(params: Params, root: Path) -> Path:
    """The prepared corpus of ``data.corpus`` (``<data.root>/<data.corpus>``)."""
    return Path(absolute(str(Path(params.data.root) / params.data.corpus), root))


def loop_config(
    params: Params,
    corpus: Path,
    run_dir: Path | None,
    tracking_uri: str,
    run_id: str | None,
    resume_from: Path | None,
) -> dict[str, Any]:
    """The ``train_loop_config`` of the workers (plain JSON data)."""
    return {
        "params": params.model_dump(mode="json"),
        "corpus_dir": str(corpus),
        "run_dir": str(run_dir) if run_dir else None,
        "tracking_uri": tracking_uri,
        "run_id": run_id,
        "resume_from": str(resume_from) if resume_from else None,
        "system_metrics": params.tracking.log_system_metrics,
    }


def check_storage(storage: str) -> None:
    """Raise :class:`PretrainError` unless a local ``storage`` folder can be written.

    Object-store URIs (``s3://``, ``gs://``) are left to Ray, which checks them when the run
    starts.

    Raises
    ------
    PretrainError
        The folder cannot be created or written.

    Example
    -------
    >>> check_storage("/proc/smx")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smx.train.launch.PretrainError: cluster.storage_path /proc/smx cannot be written (...
    """
    if "://" in storage:
        return
    folder = Path(storage)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".smx-write-test-{os.getpid()}"
        probe.write_text("ok\n")
        probe.unlink()
    except OSError as exc:
        raise PretrainError(
            f"cluster.storage_path {storage} cannot be written ({exc.strerror or exc}); "
            "choose a folder the Ray workers can write, shared by every node, or an s3:// URI"
        ) from None


def check_ray_address(address: str) -> None:
    """Raise :class:`PretrainError` when no Ray cluster answers at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise PretrainError(
            f"RAY_ADDRESS={address}: no Ray cluster answers there ({exc}); start one with "
            "`ray start --head`, or unset RAY_ADDRESS to train on a local Ray instance"
        ) from None


def start_ray() -> None:
    """Join the cluster of ``RAY_ADDRESS`` (checked first) or start a local Ray instance.

    Raises
    ------
    PretrainError
        No cluster answers at ``RAY_ADDRESS``, or Ray cannot start or join it.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    address = os.environ.get("RAY_ADDRESS", "")
    if address and address not in ("auto", "local") and "://" not in address:
        check_ray_address(address)
    if not address or address == "local":  # a cluster keeps Ray's defaults
        for key, value in LOCAL_TRAIN_ENV.items():
            os.environ.setdefault(key, value)
    # with the dashboard: Ray Train's placement-group cleaner asks the state API it serves
    # for the controller's state every second (without, a warning each time). Without
    # RAY_ADDRESS a fresh local instance starts ("local"): a bare ray.init() would join the
    # cluster named in Ray's address file, and retry for minutes when that cluster is gone.
    try:
        ray.init(address=None if address else "local", log_to_driver=True)
    except (ConnectionError, RuntimeError) as exc:
        raise PretrainError(f"Ray could not start or join a cluster: {exc}") from None


def check_resources(cluster: Any, available: dict[str, float], local: bool = True) -> None:
    """Raise :class:`PretrainError` when the cluster lacks what ``cluster`` asks for.

    GPUs are checked everywhere (a cluster with none cannot run a GPU config); CPUs only on
    a local instance, since an autoscaling cluster adds CPU workers on demand.

    Arguments
    ---------
    cluster : ClusterCfg
        The ``cluster`` section (:class:`smx.config.ClusterCfg`).
    available : dict[str, float]
        ``ray.cluster_resources()``.
    local : bool
        Ray runs on this machine only (no ``RAY_ADDRESS``).

    Raises
    ------
    PretrainError
        Too few GPUs, or too few CPUs on a local instance.

    Example
    -------
    >>> from smx.config import ClusterCfg
    >>> check_resources(ClusterCfg(num_workers=2), {"CPU": 2.0})
    >>> check_resources(ClusterCfg(use_gpu=True, gpus_per_worker=1), {"CPU": 8.0})
    Traceback (most recent call last):
    ...
    smx.train.launch.PretrainError: cluster.use_gpu is true but the Ray cluster has no GPU; set cluster.use_gpu: false and gpus_per_worker: 0, or add GPU nodes
    """
    if cluster.use_gpu:
        check_gpus(cluster, available.get("GPU", 0.0))
    need_cpu = cluster.num_workers * cluster.cpus_per_worker
    have_cpu = available.get("CPU", 0.0)
    if local and have_cpu < need_cpu:
        raise PretrainError(
            f"cluster asks for {need_cpu:g} CPUs ({cluster.num_workers} workers x "
            f"{cluster.cpus_per_worker:g}) but the Ray cluster has {have_cpu:g}; lower "
            "cluster.num_workers or cluster.cpus_per_worker"
        )


def check_gpus(cluster: Any, have: float) -> None:
    """Raise :class:`PretrainError` unless ``have`` GPUs cover every worker's."""
    need = cluster.num_workers * cluster.gpus_per_worker
    if have == 0:
        raise PretrainError(
            "cluster.use_gpu is true but the Ray cluster has no GPU; set cluster.use_gpu: "
            "false and gpus_per_worker: 0, or add GPU nodes"
        )
    if have < need:
        raise PretrainError(
            f"cluster asks for {need:g} GPUs ({cluster.num_workers} workers x "
            f"{cluster.gpus_per_worker:g}) but the Ray cluster has {have:g}; lower "
            "cluster.num_workers or add GPU nodes"
        )


def start_cluster(params: Params, storage: str) -> None:
    """Check the storage folder, start or join Ray and check its resources (PretrainError)."""
    check_storage(storage)
    start_ray()
    import ray

    check_resources(
        params.cluster, ray.cluster_resources(), local=not os.environ.get("RAY_ADDRESS")
    )


def open_tracked_run(launch: Launch, job: Job) -> tuple[str, Path | None]:
    """The MLflow run of ``job``, a child of the variant's run; and the Ray run folder.

    A relaunch of the same Ray run (storage + name) keeps its MLflow run. The run is tagged
    with the launch's and the job's tags, ``smx.role`` and the Ray run name and path, and
    titled ``job.title``; its id is written to ``<run folder>/mlflow_run_id.txt``.

    Returns
    -------
    tuple[str, Path | None]
        The MLflow run id, and the run folder (None for object-store storage).

    Raises
    ------
    PretrainError
        MLflow failed.
    """
    params, storage, name = launch.params, launch.storage, job.name
    run_dir = None if "://" in storage else Path(storage) / name
    run_path = f"{storage.rstrip('/')}/{name}"
    tags = {**launch.tags(), **job.tags, "ray_run_name": name, "ray_run_path": run_path}
    tags["smx.role"] = job.role
    experiment, data = params.tracking.experiment, params.model_dump(mode="json")
    try:
        previous = find_run(launch.uri, experiment, run_path)
        parent = variant_run(launch.uri, experiment, launch.variant, config_hash(params))
        tags["mlflow.parentRunId"] = parent
        run_id = open_run(launch.uri, experiment, job.title, data, tags, previous)
    except Exception as exc:
        raise PretrainError(f"MLflow tracking at {launch.uri} failed: {exc}") from None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "mlflow_run_id.txt", run_id + "\n")
    return run_id, run_dir


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete ``checkpoint_*`` folder of a local run directory, if any."""
    found = sorted(p for p in run_dir.glob("checkpoint_*") if (p / "state.pt").is_file())
    return found[-1] if found else None


def final_checkpoint(
    result: Any, run_dir: Path | None, name: str, storage: str, max_nan_steps: int
) -> Any:
    """The last checkpoint of a finished Ray run (a ``ray.train.Checkpoint``).

    Raises
    ------
    PretrainError
        (during training) The run diverged (the message names its last good checkpoint),
        or it ended without any checkpoint.
    """
    import ray.train

    summary = result.return_value or result.metrics or {}
    final = result.checkpoint  # local or remote (s3://): read through Ray's Checkpoint
    latest = latest_checkpoint(run_dir) if final is None and run_dir is not None else None
    if latest is not None:
        final = ray.train.Checkpoint.from_directory(str(latest))
    if summary.get("status") == "diverged":
        checkpoint = final.path if final is not None else None
        raise PretrainError(
            f"the loss was not finite for {summary['nan_streak']} steps in a row (up to step "
            f"{summary['step']}, train.max_nan_steps={max_nan_steps}); training stopped, "
            f"the last good checkpoint is {checkpoint}",
            during_training=True,
        )
    if final is None:
        raise PretrainError(
            f"run {name} finished without a checkpoint in {storage}", during_training=True
        )
    return final


def make_trainer(params: Params, job: Job, storage: str, config: dict[str, Any]) -> Any:
    """The ``TorchTrainer`` of ``job``: its workers, their resources and environment, restarts."""
    import ray.train
    from ray.train.torch import TorchTrainer

    cluster = params.cluster
    resources = {"CPU": cluster.cpus_per_worker}
    if cluster.use_gpu:
        resources["GPU"] = cluster.gpus_per_worker
    env = worker_env(os.environ, cluster.use_gpu, FORWARDED_ENV)  # + NCCL settings on GPUs
    return TorchTrainer(
        job.loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cluster.num_workers,
            use_gpu=cluster.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=ray.train.RunConfig(
            name=job.name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cluster.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=params.train.keep_checkpoints),
            worker_runtime_env={"env_vars": env},
        ),
    )


def fit_run(
    params: Params, job: Job, storage: str, config: dict[str, Any], show_progress: bool = True
) -> Any:
    """Run ``job``'s TorchTrainer with a progress bar; its ``ray.train.Result``.

    Raises
    ------
    PretrainError
        (during training) The run failed after ``cluster.max_failures`` restarts.
    """
    import ray.train

    trainer = make_trainer(params, job, storage, config)
    run_dir = config["run_dir"]
    progress = Path(run_dir) / "progress.json" if run_dir else None
    if progress is not None:
        progress.unlink(missing_ok=True)
    if not show_progress:
        progress = None
    try:
        with ProgressBar(progress, job.max_steps, job.name):
            return trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise PretrainError(
            f"training run {job.name} failed after {params.cluster.max_failures} automatic "
            f"restarts (cluster.max_failures): {exc}",
            during_training=True,
        ) from exc
