"""Pre-training: one tracked Ray Train job of the SSL objective, and its DVC outputs.

:func:`pretrain` checks the tracking URI and the corpus first (a user mistake costs no
compute), runs :func:`smx.train.loop.train_loop_per_worker` as one job of
:func:`smx.train.launch.run_job` (MLflow run ``<Ray run name>``, tag ``smx.role = pretrain``)
and writes, atomically, from the final checkpoint:

    <out>/models/<variant>/encoder.pt     front-end + encoder state dict, config, config hash
                                          and source hash
    <out>/models/<variant>/config.json    the resolved config that made it
    <out>/metrics/pretrain/<variant>.json final loss, accuracy, steps, throughput, ...
    <out>/plots/pretrain/<variant>.csv    one row per logged step
    <out>/models/<variant>/registry.json  the MLflow model's URIs (run, version, alias)

The front-end and encoder are also logged to the MLflow run as a self-contained pyfunc model
(:mod:`smx.serving`), registered as ``<tracking.registry_prefix>-<variant>``, whose new
version ``models:/<name>@latest`` names. The Ray run name is
``<variant>-<hash of model, ssl, train, data, seed, workers>-<source hash>``
(:func:`smx.train.launch.run_name`, :mod:`smx.provenance`), so launching the same config on
the same code again resumes it from ``<cluster.storage_path>/<name>``, and changing either,
committed or not, starts a new run.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from smx.atomic import atomic_path, write_json, write_text
from smx.config import Params
from smx.tracking import log_encoder_model
from smx.train.checkpoint import config_hash, read_state
from smx.train.launch import Job, Launch, PretrainError, open_launch, run_job, run_name
from smx.train.loop import train_loop_per_worker

#: the state dict entries of ``encoder.pt``: the front-end and the encoder, no SSL heads
ENCODER_PREFIXES = ("fbank.", "extractor.", "subsampling.", "encoder.")
#: the last logged values that the metrics file keeps
FINAL_KEYS = ("loss", "accuracy", "code_perplexity", "prob_perplexity", "lr", "peak_memory_mb")


@dataclass
class PretrainResult:
    """Where the outputs went and the final numbers."""

    run_name: str
    run_id: str
    checkpoint: str  # a local folder or a URI under cluster.storage_path
    encoder: Path
    metrics: dict[str, Any]


def encoder_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The front-end and encoder entries of an objective's state dict (no SSL heads).

    Example
    -------
    >>> sorted(encoder_state({"encoder.w": torch.ones(1), "quantizer.c": torch.ones(1)}))
    ['encoder.w']
    """
    return {k: v for k, v in model_state.items() if k.startswith(ENCODER_PREFIXES)}


def check_inputs(launch: Launch, resume: Path | None) -> None:
    """Raise :class:`PretrainError` unless the corpus can train and ``resume`` fits the config.

    Arguments
    ---------
    launch : Launch
        The launch (config and corpus); the corpus's train split must fill one batch per
        worker.
    resume : Path | None
        A checkpoint folder to start from; its model config must match.

    Raises
    ------
    PretrainError
        A missing corpus, too little audio, or a checkpoint of another model.
    """
    from smx.data.manifests import load_cuts
    from smx.data.problems import PrepareError

    try:
        cuts = load_cuts(launch.corpus, "train")
    except PrepareError as exc:
        raise PretrainError(f"{exc} (run `dvc repro prepare` or `smx prepare`)") from None
    launch.check_enough_audio(cuts)
    if resume is not None:
        try:
            read_state(resume, config_hash(launch.params), launch.source)
        except ValueError as exc:
            raise PretrainError(str(exc)) from None


def pretrain_job(launch: Launch, resume: Path | None) -> Job:
    """The Ray Train job that pre-trains the launch's variant."""
    params = launch.params
    name = run_name(params, launch.variant, launch.source)
    return Job(
        name=name,
        title=name,
        role="pretrain",
        tags={"objective": params.ssl.kind},
        loop=train_loop_per_worker,
        state_hash=config_hash(params),
        max_steps=params.train.max_steps,
        resume_from=resume.resolve() if resume else None,  # the workers run elsewhere
    )


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
    params : Params
        The resolved config of one variant.
    variant : str
        The name of the outputs and of the Ray run.
    out : Path | None
        The folder that receives models/, metrics/ and plots/ (default: the project).
    resume : Path | None
        A checkpoint folder to start from (its model config must match).
    show_progress : bool
        Draw the progress bar.

    Returns
    -------
    PretrainResult
        The run's names, final checkpoint, encoder file and metrics.

    Raises
    ------
    PretrainError
        One clear sentence when the tracking URI, the corpus or the resume checkpoint is
        unusable, when training fails after ``cluster.max_failures`` restarts, or when the
        loss stays non-finite for ``train.max_nan_steps`` steps.
    """
    launch = open_launch(params, variant)
    out = Path(out) if out else launch.root
    check_inputs(launch, resume)
    job = pretrain_job(launch, resume)
    finished = run_job(launch, job, show_progress)
    paths = write_outputs(finished.state, variant, out)
    paths["registry"] = out / "models" / variant / "registry.json"
    uris = log_encoder(launch, finished.run_id, paths["encoder"], paths["registry"])
    for key, path in paths.items():
        print(f"pretrain@{variant}: {key} -> {path}")
    where = uris.get("alias_uri", uris["model_uri"])
    print(f"pretrain@{variant}: MLflow model -> {uris.get('uri', uris['model_uri'])} ({where})")
    metrics = final_metrics(finished.state)
    return PretrainResult(
        job.name, finished.run_id, finished.checkpoint.path, paths["encoder"], metrics
    )


def log_encoder(
    launch: Launch, run_id: str, encoder: Path, registry: Path | None = None
) -> dict[str, str]:
    """Log ``encoder`` as an MLflow pyfunc model to the run and register it (:mod:`smx.serving`).

    The model is registered as ``<tracking.registry_prefix>-<variant>``; the new version is
    tagged with the commit, the config and source hashes and the variant, and becomes
    ``models:/<name>@latest`` (MLflow's alias of the newest version). ``registry``, when
    given, receives the URIs as JSON (a DVC output).

    Returns
    -------
    dict[str, str]
        :func:`smx.tracking.log_encoder_model`'s URIs.
    """
    from smx.serving import bundle_code, pinned_requirements, write_model_folder

    prefix = launch.params.tracking.registry_prefix
    name = f"{prefix}-{launch.variant}" if prefix else None
    tags = {
        "variant": launch.variant,
        "git_commit": launch.commit,
        "source_hash": launch.source,
        "config_hash": config_hash(launch.params),
        "run_id": run_id,
    }
    with tempfile.TemporaryDirectory(prefix="smx-model-") as tmp:
        data = write_model_folder(Path(tmp) / "encoder", encoder, tags)
        code = bundle_code(Path(tmp) / "code")
        uris = log_encoder_model(launch.uri, run_id, data, code, name, pinned_requirements(), tags)
    if registry is not None:
        write_json(registry, uris)
    return uris


def write_outputs(state: dict[str, Any], variant: str, out: Path) -> dict[str, Path]:
    """Write encoder.pt, config.json, the metrics JSON and the plot CSV under ``out``.

    Returns
    -------
    dict[str, Path]
        The files written: ``encoder``, ``config``, ``metrics``, ``plots``.
    """
    paths = {
        "encoder": out / "models" / variant / "encoder.pt",
        "config": out / "models" / variant / "config.json",
        "metrics": out / "metrics" / "pretrain" / f"{variant}.json",
        "plots": out / "plots" / "pretrain" / f"{variant}.csv",
    }
    with atomic_path(paths["encoder"]) as tmp:
        torch.save(
            {
                "format": 1,
                "step": int(state["step"]),
                "config_hash": config_hash(Params.model_validate_json(state["params"])),
                "source_hash": state.get("source_hash", ""),
                "params": state["params"],
                "state_dict": encoder_state(state["model"]),
            },
            tmp,
        )
    write_json(paths["config"], json.loads(state["params"]))
    write_json(paths["metrics"], final_metrics(state))
    write_text(paths["plots"], history_csv(state["history"]))
    return paths


def history_csv(history: list[dict[str, float]]) -> str:
    """The plot CSV: one row per logged step, ``step`` first, the other columns sorted.

    Example
    -------
    >>> print(history_csv([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "lr": 0.1}]), end="")
    step,loss,lr
    1,2,
    2,1.5,0.1
    """
    columns = ["step", *sorted({k for row in history for k in row} - {"step"})]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (int(v) if k == "step" else f"{v:.6g}") for k, v in row.items()})
    return buf.getvalue()


def final_metrics(state: dict[str, Any]) -> dict[str, Any]:
    """The DVC metrics of a finished run: last logged values plus totals."""
    history = state["history"]
    last = history[-1] if history else {}
    first = history[0] if history else {}
    out: dict[str, Any] = {k: round(float(last[k]), 6) for k in FINAL_KEYS if k in last}
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
