"""The ``smx`` command line: one typer app, one sub-command per job.

User mistakes (a bad config, a missing file) end with one clear sentence and a non-zero
exit code, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from smx import __version__
from smx.bench.cli import bench_app
from smx.data.cli import prepare_app
from smx.doctor import MIN_FREE_GB
from smx.downstream.cli import probe_command
from smx.importers.cli import import_app
from smx.stages import STAGES
from smx.train.cli import finetune_command, pretrain_command
from smx.yamlio import ConfigError

app = typer.Typer(
    name="smx",
    help="Cheap self-supervised speech pre-training with SummaryMixing.\n\n"
    "Example: smx config validate params.yaml configs/*.yaml",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(
    help="Validate, show and compare config files.\n\nExample: smx config show params.yaml",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")
stage_app = typer.Typer(
    help="Run one DVC stage of the study by hand, exactly as `dvc repro` runs it.\n\n"
    "Example: smx stage probe --variant mhsa --task asr   (options: smx stage probe --help)",
    no_args_is_help=True,
)
app.add_typer(stage_app, name="stage")
app.add_typer(prepare_app, name="prepare")
app.add_typer(bench_app, name="bench")
app.add_typer(import_app, name="import")
app.command("probe")(probe_command)
app.command("pretrain")(pretrain_command)
app.command("finetune")(finetune_command)


def _stage_command(name: str) -> Any:
    """A command that hands its arguments to the stage's own parser.

    Options, help, messages and exit codes are those of `python -m pipelines.<name>`.
    """

    def command(ctx: typer.Context) -> None:
        from smx.stages.common import run_stage

        raise typer.Exit(run_stage(name, list(ctx.args), prog=f"smx stage {name}"))

    return command


for _name, _help in STAGES.items():
    stage_app.command(
        _name,
        help=f"{_help} Options: smx stage {_name} --help",
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(_stage_command(_name))

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_CONFIG = 2


def _version(value: bool) -> None:
    """Print the version and exit when ``--version`` is given."""
    if value:
        out.print(f"smx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Cheap self-supervised speech pre-training with SummaryMixing."""


@app.command("version")
def version_command(
    source_hash: Annotated[
        bool, typer.Option("--source-hash", help="Print only the source hash.")
    ] = False,
) -> None:
    """Print the smx version, the git commit and the source hash that names training runs.

    Exit code 2 when the source cannot be hashed.

    Example: smx version --source-hash
    """
    from smx.provenance import SourceHashError
    from smx.provenance import source_hash as compute
    from smx.tracking import git_commit

    try:
        digest = compute()
    except SourceHashError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if source_hash:
        out.print(digest, markup=False)
        return
    out.print(f"smx {__version__}\ncommit {git_commit()}\nsource {digest}", markup=False)


def _load_or_exit(path: Path) -> Any:
    """The validated config at ``path``, or every problem on stderr and exit code 2."""
    from smx.config import load

    try:
        return load(path)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(str(issue), markup=False)
        raise typer.Exit(EXIT_CONFIG) from None


@config_app.command("validate")
def config_validate(
    files: Annotated[list[Path], typer.Argument(help="YAML config files to check.")],
) -> None:
    """Check config files: prints OK per file, or every problem as FILE:LINE: path: message.

    Exit code 2 when any file has a problem.

    Example: smx config validate params.yaml configs/*.yaml
    """
    from smx.config import load

    failed = False
    for path in files:
        try:
            load(path)
        except ConfigError as exc:
            failed = True
            for issue in exc.issues:
                err.print(str(issue), markup=False)
        else:
            out.print(f"{path}: OK", markup=False)
    if failed:
        raise typer.Exit(EXIT_CONFIG)


@config_app.command("show")
def config_show(
    file: Annotated[Path, typer.Argument(help="YAML config file.")],
    variant: Annotated[
        str | None, typer.Option(help="Show this variant of the file's `variants`.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
) -> None:
    """Print the resolved config: the file's values plus every default.

    Example: smx config show params.yaml --variant mhsa
    """
    params = _load_or_exit(file)
    if variant is not None:
        try:
            params = params.variant(variant)
        except KeyError as exc:
            err.print(f"{file}: {exc.args[0]}", markup=False)
            raise typer.Exit(EXIT_CONFIG) from None
    data = params.model_dump(mode="json")
    if as_json:
        out.print(json.dumps(data, indent=2), markup=False)
        return
    import io

    from ruamel.yaml import YAML

    buf = io.StringIO()
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(data, buf)
    out.print(buf.getvalue().rstrip(), markup=False)


@config_app.command("diff")
def config_diff(
    a: Annotated[Path, typer.Argument(help="First config file.")],
    b: Annotated[Path, typer.Argument(help="Second config file.")],
) -> None:
    """Print the resolved values that differ between two configs (defaults included).

    Exit code 0 when they are equal, 1 when they differ, 2 when a file is invalid.

    Example: smx config diff configs/w2v2_155m_summarymixing.yaml configs/w2v2_155m_mhsa.yaml
    """
    from smx.config import differences

    changed = differences(
        _load_or_exit(a).model_dump(mode="json"), _load_or_exit(b).model_dump(mode="json")
    )
    if not changed:
        out.print(f"{a} and {b}: no differences", markup=False)
        return
    table = Table(title=f"{a} -> {b}", show_lines=False)
    table.add_column("parameter")
    table.add_column(str(a))
    table.add_column(str(b))
    for key, x, y in changed:
        table.add_row(key, json.dumps(x), json.dumps(y))
    out.print(table)
    raise typer.Exit(1)


@config_app.command("describe")
def config_describe(
    file: Annotated[Path, typer.Argument(help="YAML config file.")],
    batch_seconds: Annotated[
        float | None,
        typer.Option(help="Seconds of audio per GPU per step (default: data.max_batch_duration)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print parameter count, FLOPs per second of audio and the memory estimate per GPU.

    The method (what is counted, what is measured) is in the docstring of smx.describe.

    Example: smx config describe configs/w2v2_155m_summarymixing.yaml --batch-seconds 360
    """
    from smx.describe import describe, summary_rows

    params = _load_or_exit(file)
    try:
        result = describe(params, batch_seconds=batch_seconds)
    except ValueError as exc:
        err.print(f"{file}: {exc}", markup=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if as_json:
        out.print(json.dumps(result.to_dict(), indent=2), markup=False)
        return
    table = Table(title=str(file))
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    for key, value in summary_rows(result, params):
        table.add_row(key, value)
    out.print(table)


@app.command("doctor")
def doctor(
    config: Annotated[
        Path | None,
        typer.Option(help="Config whose tracking URI is probed (default: $MLFLOW_TRACKING_URI)."),
    ] = None,
    min_free_gb: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Free disk (GB) the project needs; the default covers the demo, "
            "real corpora need their own size on top.",
        ),
    ] = MIN_FREE_GB,
) -> None:
    """Check torch, torchaudio, CUDA, espeak-ng, Ray, MLflow, DVC and disk; say how to fix problems.

    Exit code 1 when any component has a problem.

    Example: smx doctor --config params.yaml
    """
    from smx.doctor import run_checks

    tracking = _load_or_exit(config).tracking if config else None
    checks = run_checks(tracking, min_free_gb)
    table = Table(title="smx doctor")
    for col in ("component", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        status = "[green]ok[/green]" if c.ok else "[red]problem[/red]"
        table.add_row(c.component, status, c.detail, c.fix)
    out.print(table)
    bad = [c.component for c in checks if not c.ok]
    if bad:
        err.print(f"problems: {', '.join(bad)}", markup=False)
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
