"""The pre-training driver: MLflow run, Ray Train TorchTrainer, progress bar, DVC outputs.

:func:`pretrain` checks the tracking URI and the corpus first (a user mistake costs no
compute), creates the MLflow run (or reopens it when the same run is launched again), runs
:func:`smx.train.loop.train_loop_per_worker` on ``cluster.num_workers`` Ray workers and
writes, atomically, from the final checkpoint:

    <out>/models/<variant>/encoder.pt     front-end + encoder state dict, config and hash
    <out>/models/<variant>/config.json    the resolved config that made it
    <out>/metrics/pretrain/<variant>.json final loss, accuracy, steps, throughput, ...
    <out>/plots/pretrain/<variant>.csv    one row per logged step

Ray runs locally (``ray.init()``) unless ``RAY_ADDRESS`` names a cluster. The Ray run name is
``<variant>-<hash of model, ssl, train, data, seed, workers>-<git commit>``, so launching the
same config at the same commit again resumes it from ``<cluster.storage_path>/<name>``, and
changing either starts a new run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from smx.atomic import atomic_path, write_json, write_text
from smx.config import Params
from smx.project import project_root
from smx.tracking import (
    check_tracking_uri,
    find_run,
    git_commit,
    log_final_model,
    open_run,
    resolve_tracking_uri,
    variant_run,
)
from smx.train.checkpoint import config_hash, read_state

#: environment variables forwarded to the workers (test hooks, MLflow settings)
FORWARDED_ENV = ("SMX_", "MLFLOW_")
ENCODER_PREFIXES = ("fbank.", "extractor.", "subsampling.", "encoder.")
#: on a local Ray instance, how often Ray Train's controller polls its workers (Ray's default
#: is 2 s; a run waits for a poll at each phase, start and end: 0.25 s took 3.6 s off every
#: run here, median of 3 x 2 runs of an empty loop on 2 workers: 16.5 s instead of 20.1 s)
LOCAL_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


class PretrainError(RuntimeError):
    """Pre-training could not start or did not finish; the message says why.

    ``during_training`` is False for problems found before any compute was spent (a bad
    tracking URI, corpus or checkpoint) and True for a failed or diverged run.
    """

    def __init__(self, message: str, during_training: bool = False) -> None:
        super().__init__(message)
        self.during_training = during_training


@dataclass
class PretrainResult:
    """Where the outputs went and the final numbers."""

    run_name: str
    run_id: str
    checkpoint: str  # a local folder or a URI under cluster.storage_path
    encoder: Path
    metrics: dict[str, Any]


def run_name(params: Params, variant: str, commit: str = "") -> str:
    """The Ray run name: stable for one config and commit, new when either changes.

    Launching the same config at the same commit again resumes the run from its latest
    checkpoint (a finished run ends at once); new code or new training-relevant fields
    start a new run. ``commit`` is the git commit (``-dirty`` and ``unknown`` ignored).

    Example
    -------
    >>> run_name(Params(), "sm") == run_name(Params(), "sm"), run_name(Params(), "sm")[:3]
    (True, 'sm-')
    >>> run_name(Params(), "sm", "0123456789abcdef")[-8:]
    '-0123456'
    """
    data = params.model_dump(mode="json")
    keep = {k: data[k] for k in ("seed", "data", "model", "ssl", "train")}
    keep["num_workers"] = params.cluster.num_workers
    digest = hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()
    sha = commit.removesuffix("-dirty")
    suffix = f"-{sha[:7]}" if sha and sha != "unknown" else ""
    return f"{variant}-{digest[:12]}{suffix}"


def absolute(path: str, root: Path) -> str:
    """``path`` made absolute against ``root`` unless it is a URI (``s3://``) or absolute."""
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


def encoder_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The front-end and encoder entries of an objective's state dict (no SSL heads).

    Example
    -------
    >>> sorted(encoder_state({"encoder.w": torch.ones(1), "quantizer.c": torch.ones(1)}))
    ['encoder.w']
    """
    return {k: v for k, v in model_state.items() if k.startswith(ENCODER_PREFIXES)}


def encoder_module(params: Params, model_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Front-end + encoder of the trained objective, as one module for MLflow."""
    from smx.ssl.objective import build_objective

    objective = build_objective(params)
    objective.load_state_dict(model_state)
    parts = {"fbank": objective.fbank, "encoder": objective.encoder}
    frontend = getattr(objective, "extractor", None) or objective.subsampling
    parts["frontend"] = frontend
    return torch.nn.ModuleDict(parts).eval()


def write_outputs(state: dict[str, Any], variant: str, out: Path) -> dict[str, Path]:
    """Write encoder.pt, config.json, the metrics JSON and the plot CSV under ``out``."""
    paths = {
        "encoder": out / "models" / variant / "encoder.pt",
        "config": out / "models" / variant / "config.json",
        "metrics": out / "metrics" / "pretrain" / f"{variant}.json",
        "plots": out / "plots" / "pretrain" / f"{variant}.csv",
    }
    params = json.loads(state["params"])
    with atomic_path(paths["encoder"]) as tmp:
        torch.save(
            {
                "format": 1,
                "step": int(state["step"]),
                "config_hash": state["config_hash"],
                "params": state["params"],
                "state_dict": encoder_state(state["model"]),
            },
            tmp,
        )
    write_json(paths["config"], params)
    write_json(paths["metrics"], final_metrics(state))
    history = state["history"]
    columns = ["step", *sorted({k for row in history for k in row} - {"step"})]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (int(v) if k == "step" else f"{v:.6g}") for k, v in row.items()})
    write_text(paths["plots"], buf.getvalue())
    return paths


def final_metrics(state: dict[str, Any]) -> dict[str, Any]:
    """The DVC metrics of a finished run: last logged values plus totals."""
    history = state["history"]
    last = history[-1] if history else {}
    first = history[0] if history else {}
    keep = ("loss", "accuracy", "code_perplexity", "prob_perplexity", "lr", "peak_memory_mb")
    out: dict[str, Any] = {k: round(float(last[k]), 6) for k in keep if k in last}
    if "loss" in first:
        out["first_loss"] = round(float(first["loss"]), 6)
    elapsed = float(state["elapsed"])
    out.update(
        steps=int(state["step"]),
        skipped_steps=int(state["skipped_steps"]),
        audio_hours=round(float(state["audio_seconds"]) / 3600, 6),
        train_seconds=round(elapsed, 3),
        audio_seconds_per_second=round(float(state["audio_seconds"]) / max(elapsed, 1e-9), 3),
        steps_per_second=round(int(state["step"]) / max(elapsed, 1e-9), 4),
    )
    return out


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete ``checkpoint_*`` folder of a local run directory, if any."""
    found = sorted(p for p in run_dir.glob("checkpoint_*") if (p / "state.pt").is_file())
    return found[-1] if found else None


class ProgressBar:
    """The driver's progress bar, fed by rank 0's progress file (step, loss, hours, ETA)."""

    def __init__(self, path: Path | None, max_steps: int, title: str) -> None:
        self.path, self.max_steps, self.title = path, max_steps, title
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProgressBar:
        if self.path is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def read(self) -> dict[str, Any] | None:
        """Rank 0's latest progress record, or None before the first one."""
        try:
            return json.loads(self.path.read_text()) if self.path else None
        except (OSError, ValueError):
            return None

    def _run(self) -> None:
        from rich.console import Console

        console = Console(stderr=True, highlight=False)
        if console.is_terminal:
            self._run_bar(console)
        else:
            self._run_lines(console)

    def _run_lines(self, console: Any, every: float = 10.0) -> None:
        """Without a terminal (DVC logs, CI): one plain line every ``every`` seconds."""
        start, shown = time.monotonic(), -1
        while True:
            stopping = self._stop.wait(every)
            data = self.read()
            if data and data.get("step", 0) != shown:
                shown = int(data["step"])
                done = max(shown - int(data.get("start_step", 0)), 0)
                elapsed = time.monotonic() - start
                eta = elapsed / done * (self.max_steps - shown) if done else math.nan
                console.print(
                    f"{self.title}: step {shown}/{self.max_steps}, loss {data.get('loss', math.nan):.4g}, "
                    f"{data.get('audio_hours', 0.0):.3f} h audio, ETA "
                    f"{'?' if math.isnan(eta) else f'{eta:.0f} s'}",
                    markup=False,
                )
            if stopping:
                return

    def _run_bar(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[hours]} h audio"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(self.title, total=self.max_steps, loss="-", hours="0.000")
            while not self._stop.wait(0.5):
                self._update(bar, task)
            self._update(bar, task)

    def _update(self, bar: Any, task: Any) -> None:
        data = self.read()
        if data is None:
            return
        loss = data.get("loss", math.nan)
        bar.update(
            task,
            completed=data.get("step", 0),
            loss=f"{loss:.3f}" if math.isfinite(loss) else str(loss),
            hours=f"{data.get('audio_hours', 0.0):.3f}",
        )


def check_enough_audio(cuts: Any, params: Params, corpus: Path) -> None:
    """Raise :class:`PretrainError` when the train split cannot fill one batch per worker.

    Batches are dropped when incomplete (every DDP rank must take the same number of
    steps), so each worker needs at least ``data.max_batch_duration`` seconds of audio
    within the duration filters.
    """
    from smx.data.loader import filter_duration

    data, workers = params.data, params.cluster.num_workers
    kept = filter_duration(cuts, data.min_duration, data.max_duration)
    seconds = sum(cut.duration for cut in kept)
    if seconds < data.max_batch_duration * workers:
        raise PretrainError(
            f"the train split of {corpus} has {seconds:.1f} s of audio between "
            f"data.min_duration={data.min_duration:g} and data.max_duration={data.max_duration:g} s, "
            f"less than one batch of data.max_batch_duration={data.max_batch_duration:g} s for each "
            f"of the {workers} workers; prepare more audio or lower data.max_batch_duration"
        )


def check_storage(storage: str) -> None:
    """Raise :class:`PretrainError` unless a local ``storage`` folder can be written.

    Object-store URIs (``s3://``, ``gs://``) are left to Ray, which checks them when the run
    starts.

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


def start_ray() -> None:
    """Join the cluster of ``RAY_ADDRESS`` (checked first) or start a local Ray instance."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    address = os.environ.get("RAY_ADDRESS", "")
    if address and address not in ("auto", "local") and "://" not in address:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise PretrainError(
                f"RAY_ADDRESS={address}: no Ray cluster answers there ({exc}); start one with "
                "`ray start --head`, or unset RAY_ADDRESS to train on a local Ray instance"
            ) from None
    if not address or address == "local":  # a cluster keeps Ray's defaults
        for key, value in LOCAL_TRAIN_ENV.items():
            os.environ.setdefault(key, value)
    # with the dashboard: Ray Train's placement-group cleaner asks the state API it serves
    # for the controller's state every second (without, a warning each time)
    try:
        ray.init(log_to_driver=True)
    except (ConnectionError, RuntimeError) as exc:
        raise PretrainError(f"Ray could not start or join a cluster: {exc}") from None


def check_resources(cluster: Any, available: dict[str, float], local: bool = True) -> None:
    """Raise :class:`PretrainError` when the cluster lacks what ``cluster`` asks for.

    GPUs are checked everywhere (a cluster with none cannot run a GPU config); CPUs only on
    a local instance, since an autoscaling cluster adds CPU workers on demand.

    Arguments
    ---------
    cluster: the ``cluster`` section (:class:`smx.config.ClusterCfg`).
    available: ``ray.cluster_resources()``.
    local: Ray runs on this machine only (no ``RAY_ADDRESS``).

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
        need = cluster.num_workers * cluster.gpus_per_worker
        have = available.get("GPU", 0.0)
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
    need_cpu = cluster.num_workers * cluster.cpus_per_worker
    have_cpu = available.get("CPU", 0.0)
    if local and have_cpu < need_cpu:
        raise PretrainError(
            f"cluster asks for {need_cpu:g} CPUs ({cluster.num_workers} workers x "
            f"{cluster.cpus_per_worker:g}) but the Ray cluster has {have_cpu:g}; lower "
            "cluster.num_workers or cluster.cpus_per_worker"
        )


def start_cluster(params: Params, storage: str) -> None:
    """Check the storage folder, start or join Ray and check its resources (PretrainError)."""
    check_storage(storage)
    start_ray()
    import ray

    check_resources(
        params.cluster, ray.cluster_resources(), local=not os.environ.get("RAY_ADDRESS")
    )


def open_tracked_run(
    params: Params,
    uri: str,
    variant: str,
    name: str,
    storage: str,
    tags: dict[str, str],
    role: str,
    title: str | None = None,
) -> tuple[str, Path | None]:
    """The MLflow run of the Ray run ``name``, a child of the variant's run; and the run folder.

    A relaunch of the same Ray run (storage + name) keeps its MLflow run. The run is tagged
    with ``tags``, ``smx.role = role`` and the Ray run name and path, and titled ``title``
    (default ``name``); its id is written to ``<run folder>/mlflow_run_id.txt``. The run
    folder is None for object-store storage. MLflow problems raise :class:`PretrainError`.
    """
    run_dir = None if "://" in storage else Path(storage) / name
    run_path = f"{storage.rstrip('/')}/{name}"
    tags = {**tags, "ray_run_name": name, "ray_run_path": run_path, "smx.role": role}
    try:
        previous = find_run(uri, params.tracking.experiment, run_path)
        parent = variant_run(uri, params.tracking.experiment, variant, config_hash(params))
        tags["mlflow.parentRunId"] = parent
        run_id = open_run(
            uri,
            params.tracking.experiment,
            title or name,
            params.model_dump(mode="json"),
            tags,
            previous,
        )
    except Exception as exc:
        raise PretrainError(f"MLflow tracking at {uri} failed: {exc}") from None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "mlflow_run_id.txt", run_id + "\n")
    return run_id, run_dir


def pretrain(
    params: Params,
    variant: str = "default",
    out: Path | None = None,
    resume: Path | None = None,
    show_progress: bool = True,
) -> PretrainResult:
    """Pre-train ``params`` on Ray Train and write the DVC outputs (see the module doc).

    Arguments
    ---------
    params: the resolved config of one variant.
    variant: the name of the outputs and of the Ray run.
    out: the folder that receives models/, metrics/ and plots/ (default: the project).
    resume: a checkpoint folder to start from (its model config must match).
    show_progress: draw the progress bar.

    Raises :class:`PretrainError` with one clear sentence when the tracking URI, the corpus
    or the resume checkpoint is unusable, when training fails after ``cluster.max_failures``
    restarts, or when the loss stays non-finite for ``train.max_nan_steps`` steps.
    """
    from smx.data.problems import PrepareError

    root = project_root()
    out = Path(out) if out else root
    uri = resolve_tracking_uri(params.tracking, root)
    try:
        check_tracking_uri(uri)
    except RuntimeError as exc:
        raise PretrainError(str(exc)) from None
    corpus = corpus_dir(params, root)
    try:
        from smx.data.manifests import load_cuts

        cuts = load_cuts(corpus, "train")
    except PrepareError as exc:
        raise PretrainError(f"{exc} (run `dvc repro prepare` or `smx prepare`)") from None
    check_enough_audio(cuts, params, corpus)
    if resume is not None:
        try:
            read_state(resume, config_hash(params))
        except ValueError as exc:
            raise PretrainError(str(exc)) from None

    commit = git_commit(root)
    name = run_name(params, variant, commit)
    storage = absolute(params.cluster.storage_path, root)
    start_cluster(params, storage)
    tags = {
        "git_commit": commit,
        "variant": variant,
        "stage": os.environ.get("DVC_STAGE", "manual"),
        "mixer": params.model.mixer.kind,
        "objective": params.ssl.kind,
    }
    run_id, run_dir = open_tracked_run(params, uri, variant, name, storage, tags, "pretrain")
    config = loop_config(params, corpus, run_dir, uri, run_id, resume)
    result = fit_run(params, name, storage, config, show_progress)
    final = final_checkpoint(result, run_dir, name, storage, params.train.max_nan_steps)
    with final.as_directory() as folder:
        state = read_state(folder, config_hash(params))
    paths = write_outputs(state, variant, out)
    requirements = [f"torch=={torch.__version__.split('+')[0]}"]
    model = encoder_module(params, state["model"])
    log_final_model(
        uri,
        run_id,
        model,
        [paths["encoder"], paths["config"]],
        params.tracking.register_model,
        requirements,
    )
    for key, path in paths.items():
        print(f"pretrain@{variant}: {key} -> {path}")
    return PretrainResult(name, run_id, final.path, paths["encoder"], final_metrics(state))


def final_checkpoint(
    result: Any, run_dir: Path | None, name: str, storage: str, max_nan_steps: int
) -> Any:
    """The last checkpoint of a finished Ray run (a ``ray.train.Checkpoint``).

    Raises :class:`PretrainError` (during training) when the run diverged, naming its last
    good checkpoint, or when it ended without any checkpoint.
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


def fit_run(
    params: Params,
    name: str,
    storage: str,
    config: dict[str, Any],
    show_progress: bool = True,
    loop: Any = None,
    max_steps: int | None = None,
) -> Any:
    """Run the TorchTrainer; a failure after the allowed restarts becomes PretrainError.

    ``loop`` is the workers' entry point (default
    :func:`smx.train.loop.train_loop_per_worker`) and ``max_steps`` the progress bar's total
    (default ``train.max_steps``).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from smx.train.loop import train_loop_per_worker

    loop = loop or train_loop_per_worker
    cluster = params.cluster
    resources = {"CPU": cluster.cpus_per_worker}
    if cluster.use_gpu:
        resources["GPU"] = cluster.gpus_per_worker
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    trainer = TorchTrainer(
        loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cluster.num_workers,
            use_gpu=cluster.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cluster.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=params.train.keep_checkpoints),
            worker_runtime_env={"env_vars": env},
        ),
    )
    run_dir = config["run_dir"]
    progress = Path(run_dir) / "progress.json" if run_dir else None
    if progress is not None:
        progress.unlink(missing_ok=True)
    if not show_progress:
        progress = None
    try:
        with ProgressBar(progress, max_steps or params.train.max_steps, name):
            return trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise PretrainError(
            f"training run {name} failed after {cluster.max_failures} automatic restarts "
            f"(cluster.max_failures): {exc}",
            during_training=True,
        ) from exc
