"""``smx pretrain`` and ``smx finetune``: pre-training and CTC fine-tuning on Ray Train.

User mistakes (a bad config, an unknown variant, a missing corpus, an unreachable MLflow
server, a checkpoint of another model) end with one sentence on stderr and exit code 2;
a run that fails or diverges during training exits with 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from smx.config import Params

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
EXIT_USER = 2
EXIT_FAILED = 1
#: ``--init`` of `smx finetune` -> the inits it trains
INIT_CHOICES = {
    "pretrained": ("pretrained",),
    "random": ("random_init",),
    "both": ("pretrained", "random_init"),
}


def load_params(command: str, config: Path, variant: str | None) -> Params:
    """The config of ``config`` with ``variant`` applied, if any.

    Raises
    ------
    typer.Exit
        (EXIT_USER) The config is invalid (each issue printed) or has no such variant.
    """
    from smx.config import load
    from smx.yamlio import ConfigError

    try:
        params = load(config)
        return params if variant is None else params.variant(variant)
    except ConfigError as exc:
        for issue in exc.issues:
            err_console.print(str(issue), markup=False)
        raise typer.Exit(EXIT_USER) from None
    except KeyError as exc:
        err_console.print(f"smx {command}: {config}: {exc.args[0]}", markup=False)
        raise typer.Exit(EXIT_USER) from None


def run_training(command: str, train: Callable[[], object]) -> None:
    """Call ``train``; a training error ends the command with one sentence on stderr.

    Raises
    ------
    typer.Exit
        EXIT_FAILED for a run that failed or diverged, EXIT_USER for bad input.
    """
    from smx.train.launch import PretrainError

    try:
        train()
    except PretrainError as exc:
        err_console.print(f"smx {command}: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED if exc.during_training else EXIT_USER) from None


def pretrain_command(
    config: Annotated[Path, typer.Option("--config", help="YAML (or resolved JSON) config.")],
    variant: Annotated[
        str | None,
        typer.Option(help="Apply this entry of the config's `variants` and name the outputs."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Output name (default: the variant, else the file stem).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Start from this checkpoint folder (made with the same model)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for models/, metrics/ and plots/ (default: the project)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Draw the progress bar.")] = True,
) -> None:
    """Pre-train an encoder (wav2vec 2.0 or BEST-RQ, any mixer) on Ray Train.

    Runs on a local Ray instance, or on the cluster named by RAY_ADDRESS. Writes
    models/<name>/encoder.pt, metrics/pretrain/<name>.json and plots/pretrain/<name>.csv,
    and logs the run to MLflow (tracking.uri, else MLFLOW_TRACKING_URI, else mlflow.db).

    Example: smx pretrain --config params.yaml --variant summarymixing
    """
    from smx.train.pretrain import pretrain

    params = load_params("pretrain", config, variant)
    label = name or variant or config.stem
    run_training(
        "pretrain",
        lambda: pretrain(params, label, out=out, resume=resume, show_progress=progress),
    )


def finetune_command(
    config: Annotated[Path, typer.Option("--config", help="YAML (or resolved JSON) config.")],
    variant: Annotated[
        str, typer.Option(help="The variant of the config's `variants` whose encoder to tune.")
    ],
    encoder: Annotated[
        Path | None,
        typer.Option(help="Pre-trained encoder file (default: models/<variant>/encoder.pt)."),
    ] = None,
    init: Annotated[
        str, typer.Option(help="Which init to fine-tune: pretrained, random or both.")
    ] = "both",
    resume: Annotated[
        Path | None,
        typer.Option(help="Resume this fine-tuning checkpoint folder (of the same init)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for metrics/finetune and plots/finetune (default: the project)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Draw the progress bar.")] = True,
) -> None:
    """Fine-tune a pre-trained encoder for CTC character ASR, against the same recipe from random init.

    Runs on Ray Train like pre-training (local Ray, or the cluster of RAY_ADDRESS); the
    encoder trains frozen for downstream.finetune.freeze_steps updates, then unfrozen. Writes
    metrics/finetune/<variant>.json (dev and test WER/CER per init) and
    plots/finetune/<variant>.csv, and logs one MLflow run per init.

    Example: smx finetune --config params.yaml --variant summarymixing
    """
    from smx.train.finetune import finetune

    if init not in INIT_CHOICES:
        err_console.print(
            f"smx finetune: --init '{init}' is not an init (choose pretrained, random or both)",
            markup=False,
        )
        raise typer.Exit(EXIT_USER)
    params = load_params("finetune", config, variant)
    inits = INIT_CHOICES[init]
    run_training(
        "finetune",
        lambda: finetune(
            params,
            variant,
            encoder=encoder,
            inits=inits,
            resume=resume,
            out=out,
            show_progress=progress,
        ),
    )
