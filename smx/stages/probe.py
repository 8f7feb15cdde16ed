"""DVC stage `probe@<variant>-<task>`: MP3S-style scoring of one pre-trained encoder on one task.

Reads the variant's resolved config (resolved/<variant>/params.json, or `--params` + the
variant), models/<variant>/encoder.pt (checked against that config), the task's corpus
(its ``corpus`` in downstream.tasks, else <data.root>/<data.corpus>; one sentence naming
the task, the folder and what prepares it when that is not a prepared corpus) and the task's
fbank baseline (metrics/baseline/<task>.json, made by `baseline@<task>`); trains both
probes of the task on the frozen encoder and on its random-init twin over downstream.seeds
seeds (downstream.workers trainings at once; a line on stderr after each) and takes the
fbank rows from the baseline (probing fbank here, with a note, when the baseline was made
with other settings, e.g. a variant's own front-end); writes
<metrics-dir>/<variant>/<task>.json (mean and std per probe and upstream) and
<plots-dir>/<variant>/<task>_layer_weights.png, each atomically; logs them as an MLflow run
nested under the variant's parent run (skip with --no-mlflow).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from smx.config import TASKS, Params
from smx.data.problems import PrepareError
from smx.downstream.errors import ProbeError
from smx.downstream.run import baseline_mismatch, probe_encoder, write_results
from smx.downstream.tasks import task_corpus
from smx.stages.common import (
    StageInputError,
    add_params,
    add_variant,
    open_tracking,
    progress_line,
    require,
    stage_params,
)


def read_baseline(stage: str, path: Path, task: str) -> dict[str, Any]:
    """The stored fbank baseline of ``task`` at ``path``.

    Arguments
    ---------
    stage : str
        The calling stage's name, the prefix of every message.
    path : Path
        The JSON file ``baseline@<task>`` wrote.
    task : str
        The probing task the baseline must be of.

    Returns
    -------
    dict[str, Any]
        The stored result of :func:`smx.downstream.run.probe_baseline`.

    Raises
    ------
    StageInputError
        When the file is missing, is not readable JSON, or is the baseline of another task.
    """
    require(stage, path, f"baseline@{task}")
    try:
        baseline = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StageInputError(
            f"{stage}: {path} is not readable JSON ({exc}); re-run `dvc repro baseline@{task}`"
        ) from None
    if not isinstance(baseline, dict) or baseline.get("task") != task:
        raise StageInputError(
            f"{stage}: {path} is not the fbank baseline of task '{task}'; re-run "
            f"`dvc repro baseline@{task}`"
        )
    return baseline


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_params(parser, None, "resolved/<variant>/params.json")
    add_variant(parser)
    parser.add_argument("--task", required=True, choices=TASKS, help="the probing task")
    parser.add_argument(
        "--encoder", default=None, help="encoder file (default: models/<variant>/encoder.pt)"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="stored fbank baseline (default: metrics/baseline/<task>.json)",
    )
    parser.add_argument(
        "--metrics-dir", default="metrics/probe", help="metrics root (default: metrics/probe)"
    )
    parser.add_argument(
        "--plots-dir", default="plots/probe", help="plots root (default: plots/probe)"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")


def run(args: argparse.Namespace) -> None:
    """Probe the frozen encoder and its random init, write the results, log them, say where."""
    stage = f"probe@{args.variant}-{args.task}"
    params = stage_params(stage, args.variant, args.params)
    default = Path("models") / args.variant / "encoder.pt"
    encoder = require(stage, args.encoder or default, f"pretrain@{args.variant}")
    baseline_path = Path(args.baseline or Path("metrics/baseline") / f"{args.task}.json")
    stored = read_baseline(stage, baseline_path, args.task)
    uri = None if args.no_mlflow else open_tracking(stage, params)
    why = baseline_mismatch(stored, params, args.task)
    if why:
        print(f"{stage}: probing fbank here: {baseline_path} does not fit: {why}", file=sys.stderr)
    baseline = None if why else stored
    try:
        corpus = task_corpus(params, args.task)
        result = probe_encoder(
            encoder,
            args.task,
            params,
            corpus,
            arch=params,
            progress=progress_line(stage),
            baseline=baseline,
        )
    except (ProbeError, PrepareError) as exc:
        raise StageInputError(f"{stage}: {exc}") from None
    result["variant"] = args.variant
    result["fbank_baseline"] = str(baseline_path) if baseline else "probed in this stage"
    metrics = Path(args.metrics_dir) / args.variant / f"{args.task}.json"
    plot = Path(args.plots_dir) / args.variant / f"{args.task}_layer_weights.png"
    write_results(result, metrics, plot)
    primary = result["primary_metric"]
    summary = ", ".join(
        f"{probe} {m['pretrained']['metrics'][primary]['mean']:.4f} "
        f"(random init {m['random_init']['metrics'][primary]['mean']:.4f})"
        for probe, m in result["probes"].items()
    )
    print(f"{stage}: {primary} {summary}; wrote {metrics} and {plot}")
    if uri is not None:
        run_id = log_run(uri, params, args.variant, result, [metrics, plot])
        print(f"{stage}: MLflow run {run_id} (experiment {params.tracking.experiment!r})")
        tagged = tag_registered_model(uri, Path(encoder).parent / "registry.json", result)
        if tagged:
            print(f"{stage}: scores tagged on the registered model {tagged}")


def probe_tags(result: dict[str, Any]) -> dict[str, str]:
    """The model-version tags of a probing result: each probe's primary metric (mean).

    Example
    -------
    >>> res = {"task": "intent", "primary_metric": "accuracy", "probes": {"linear": {
    ...     "pretrained": {"metrics": {"accuracy": {"mean": 0.41666, "std": 0.02}}}}}}
    >>> probe_tags(res)
    {'probe.intent.linear.accuracy': '0.4167'}
    """
    primary, task = result["primary_metric"], result["task"]
    return {
        f"probe.{task}.{probe}.{primary}": f"{m['pretrained']['metrics'][primary]['mean']:.4f}"
        for probe, m in result["probes"].items()
    }


def tag_registered_model(uri: str, registry: Path, result: dict[str, Any]) -> str | None:
    """Tag the encoder's registered model version (``registry.json``) with the scores.

    Returns the version's URI, or None when the encoder was not registered.
    """
    from smx.tracking import tag_model_version

    if not registry.is_file():
        return None
    entry = json.loads(registry.read_text())
    if "name" not in entry:
        return None
    tag_model_version(uri, entry["name"], entry["version"], probe_tags(result))
    return str(entry["uri"])


def log_run(uri: str, params: Params, variant: str, result: dict, files: list[Path]) -> str:
    """Log the probing result as an MLflow run nested under the variant's parent run.

    Arguments
    ---------
    uri : str
        The checked MLflow tracking URI.
    params : Params
        The variant's config (experiment, downstream settings, config hash of the parent).
    variant : str
        The variant whose parent run the probe run goes under.
    result : dict
        The result of :func:`smx.downstream.run.probe_encoder`.
    files : list[Path]
        The metrics and plot files, logged as artifacts.

    Returns
    -------
    str
        The id of the probe run.
    """
    from smx.tracking import log_probe_run, variant_run
    from smx.train.checkpoint import config_hash

    parent = variant_run(uri, params.tracking.experiment, variant, config_hash(params))
    ds = params.downstream
    settings = {"probe_dim": ds.probe_dim, "epochs": ds.epochs, "lr": ds.lr}
    settings.update({f"epochs.{probe}": n for probe, n in ds.probe_epochs.items()})
    settings.update({f"lr.{probe}": lr for probe, lr in ds.probe_lr.items()})
    return log_probe_run(uri, parent, result, files, settings)
