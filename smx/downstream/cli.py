"""``smx probe``: MP3S-style scoring of one frozen encoder on one task, with its baselines.

User mistakes (a bad config, a missing corpus or label, an encoder that does not fit its
config) end with one sentence on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

out_console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
EXIT_USER = 2


def _fail(message: str) -> typer.Exit:
    """Print ``message`` on stderr; the exit (code 2) for the caller to raise."""
    err_console.print(f"smx probe: {message}", markup=False)
    return typer.Exit(EXIT_USER)


def _params(config: Path) -> Any:
    """The validated config at ``config``, or every problem on stderr and exit code 2."""
    from smx.config import load
    from smx.yamlio import ConfigError

    try:
        return load(config)
    except ConfigError as exc:
        for issue in exc.issues:
            err_console.print(str(issue), markup=False)
        raise typer.Exit(EXIT_USER) from None


def _table(result: dict[str, Any]) -> Any:
    """The primary metric (mean ± std over seeds) per probe and upstream, as a rich table."""
    from rich.table import Table

    primary = result["primary_metric"]
    table = Table(title=f"{result['task']}: {primary} ({result['better']} is better)")
    upstreams = list(next(iter(result["probes"].values())))
    table.add_column("probe")
    for name in upstreams:
        table.add_column(name, justify="right")
    for probe, by_upstream in result["probes"].items():
        cells = []
        for name in upstreams:
            m = by_upstream[name]["metrics"][primary]
            cells.append(f"{m['mean']:.4f} ± {m['std']:.4f}")
        table.add_row(probe, *cells)
    return table


def _probe_with_progress(
    encoder: str, task: str, params: Any, corpus: Path, probes: list[str], arch: Any
) -> dict[str, Any]:
    """:func:`smx.downstream.run.probe_encoder` under a progress bar on stderr.

    A user mistake becomes one sentence and exit code 2.
    """
    from rich.progress import Progress

    from smx.data.problems import PrepareError
    from smx.downstream.errors import ProbeError
    from smx.downstream.run import UPSTREAMS, probe_encoder

    total = len(UPSTREAMS) * len(probes) * params.downstream.seeds
    try:
        with Progress(console=err_console, transient=True) as bar:
            job = bar.add_task("probing", total=total)

            def progress(what: str, finished: int) -> None:
                bar.update(job, description=what, completed=finished)

            return probe_encoder(
                encoder,
                task,
                params,
                corpus,
                probes=probes,
                arch=arch,
                tracking_uri=params.tracking.uri,
                progress=progress,
            )
    except (ProbeError, PrepareError) as exc:
        raise _fail(str(exc)) from None


def probe_command(
    encoder: Annotated[
        str, typer.Option(help="Encoder: models/<variant>/encoder.pt or an MLflow models:/ URI.")
    ],
    task: Annotated[str, typer.Option(help="Task: asr, speaker, intent or style.")],
    probe: Annotated[
        str | None, typer.Option(help="Only this probe of the task (default: both).")
    ] = None,
    config: Annotated[
        Path, typer.Option(help="YAML config (seed, data, downstream settings).")
    ] = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for <task>.json and the plot.")] = Path(
        "metrics/probe"
    ),
    variant: Annotated[
        str | None,
        typer.Option(help="Check the encoder against this variant of the config's `variants`."),
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(help="Prepared corpus (default: <data.root>/<data.corpus> of the config)."),
    ] = None,
) -> None:
    """Score a frozen encoder on a task with two probes, against random-init and fbank baselines.

    Writes OUT/<task>.json (mean and std over downstream.seeds per probe and upstream) and
    OUT/<task>_layer_weights.png (the learned layer weights).

    Example: smx probe --encoder models/summarymixing/encoder.pt --task intent --out metrics/probe/sm
    """
    from smx.config import PROBES, TASKS

    params = _params(config)
    if task not in TASKS:
        raise _fail(f"--task '{task}' is not a probing task (choose from {', '.join(TASKS)})")
    arch = None
    if variant is not None:
        try:
            arch = params.variant(variant)
        except KeyError as exc:
            raise _fail(f"{config}: {exc.args[0]}") from None
    corpus_dir = corpus or Path(params.data.root) / params.data.corpus
    probes = [probe] if probe else list(PROBES[task])
    result = _probe_with_progress(encoder, task, params, corpus_dir, probes, arch)
    from smx.downstream.run import write_results

    metrics_path, plot_path = out / f"{task}.json", out / f"{task}_layer_weights.png"
    write_results(result, metrics_path, plot_path)
    out_console.print(_table(result))
    out_console.print(f"wrote {metrics_path} and {plot_path}", markup=False)
