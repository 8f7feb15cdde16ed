"""What the DVC stages share: a variant's resolved config and their required inputs.

Each stage names itself (``probe@mhsa-asr``) in every message, and a missing input names
the file and the stage that makes it, so a stage run out of order says what
to run first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from smx.config import Params, load
from smx.yamlio import ConfigError


class StageError(RuntimeError):
    """A stage stops: one sentence on stderr and the exit code ``code``.

    Arguments
    ---------
    message : str
        The sentence, prefixed with the stage's name (``pretrain@mhsa: ...``); empty when
        what failed has already said why.
    code : int
        1 when training ran and failed, 2 for bad or missing input.
    """

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class StageInputError(StageError):
    """A stage's input is missing or unusable (exit 2, one sentence)."""


def run_stage(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` with the options of stage ``name`` and run it; the exit code.

    Arguments
    ---------
    name : str
        The stage's module under :mod:`smx.stages`: its ``options(parser)`` adds the
        options, its docstring is the help text, and its ``run(args)`` is the stage (it
        prints where its outputs went and raises :class:`StageError`).
    argv : list[str] | None
        The arguments (None: the command line).
    prog : str | None
        The command named in usage messages (default: ``python -m pipelines.<name>``, as
        dvc.yaml runs it).

    Returns
    -------
    int
        0, or the :class:`StageError`'s code after printing its sentence on stderr (argparse
        exits with 2 on bad options, after its usage message).
    """
    import importlib

    start = time.monotonic()  # before the stage's imports (torch, Lhotse, MLflow: seconds)
    module = importlib.import_module(f"smx.stages.{name}")
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m pipelines.{name}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.options(parser)
    args = parser.parse_args(argv)
    try:
        module.run(args)
    except StageError as exc:
        if str(exc):
            print(exc, file=sys.stderr)
        return exc.code
    record_time(time.monotonic() - start)
    return 0


#: where a stage run by DVC records its wall time, under the repository root
TIME_DIR = Path("metrics") / "time"


def record_time(seconds: float, env: dict[str, str] | None = None) -> Path | None:
    """Under ``dvc repro``: write ``$DVC_ROOT/metrics/time/$DVC_STAGE.json``, the stage's seconds.

    DVC names the running stage in ``DVC_STAGE`` (``probe@mhsa-asr``) and the repository in
    ``DVC_ROOT``; outside DVC (a stage run by hand or by a test) nothing is written. The file
    is not a DVC output: it says what the stage's outputs last cost, and the report's time
    table reads it (:mod:`smx.report.inputs`).

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     path = record_time(12.345, {"DVC_STAGE": "probe@mhsa-asr", "DVC_ROOT": root})
    ...     path.relative_to(root).as_posix(), json.loads(path.read_text())
    ('metrics/time/probe@mhsa-asr.json', {'seconds': 12.3, 'stage': 'probe@mhsa-asr'})
    >>> record_time(1.0, {}) is None
    True
    """
    from smx.atomic import write_json

    env = os.environ if env is None else env
    stage, root = env.get("DVC_STAGE"), env.get("DVC_ROOT")
    if not stage or not root:
        return None
    path = Path(root) / TIME_DIR / f"{stage}.json"
    write_json(path, {"stage": stage, "seconds": round(seconds, 1)})
    return path


def add_params(
    parser: argparse.ArgumentParser, default: str | None = "params.yaml", otherwise: str = ""
) -> None:
    """The ``--params`` option: the YAML config; with ``default=None`` the stage reads the
    resolved config named by ``otherwise``."""
    where = default or otherwise
    parser.add_argument("--params", default=default, help=f"config file (default: {where})")


def add_variant(parser: argparse.ArgumentParser) -> None:
    """The required ``--variant`` option."""
    parser.add_argument("--variant", required=True, help="a name under `variants` in the config")


def load_params(stage: str, path: str | Path) -> Params:
    """The validated YAML config at ``path``; an invalid one is a :class:`StageInputError`."""
    try:
        return load(path)
    except ConfigError as exc:
        raise StageInputError(f"{stage}: {exc}") from None


def training_failed(stage: str, exc: Exception) -> StageError:
    """The :class:`StageError` of a failed Ray Train launch (``PretrainError``): exit 1 when
    training ran and failed, 2 when its input was unusable."""
    return StageError(f"{stage}: {exc}", 1 if getattr(exc, "during_training", False) else 2)


def progress_line(stage: str) -> Callable[[str, int], None]:
    """A progress callback that prints ``<stage>: <what>`` on stderr."""
    return lambda what, _: print(f"{stage}: {what}", file=sys.stderr, flush=True)


def resolved_params(stage: str, variant: str | None, resolved: str | Path = "resolved") -> Params:
    """The resolved config of ``variant`` (or the base config) that a resolve stage wrote.

    Arguments
    ---------
    stage : str
        The calling stage's name (``probe@mhsa-asr``), the prefix of every message.
    variant : str | None
        The variant whose config ``resolve@<variant>`` wrote in
        ``<resolved>/<variant>/params.json``; None for the base config ``defaults`` wrote in
        ``<resolved>/params.json``.
    resolved : str | Path
        The folder the resolve stages write to.

    Returns
    -------
    Params
        The validated config.

    Raises
    ------
    StageInputError
        When the file is missing; the message names the stage to run first.

    Example
    -------
    >>> resolved_params("probe@nope-asr", "nope", "/nonexistent")
    Traceback (most recent call last):
    ...
    smx.stages.common.StageInputError: probe@nope-asr: /nonexistent/nope/params.json is missing; run `dvc repro resolve@nope` first (is `nope` listed under `variants` in params.yaml?)
    >>> resolved_params("baseline@asr", None, "/nonexistent")
    Traceback (most recent call last):
    ...
    smx.stages.common.StageInputError: baseline@asr: /nonexistent/params.json is missing; run `dvc repro defaults` first
    """
    source = Path(resolved) / (variant or "") / "params.json"
    if variant is None:
        require(stage, source, "defaults")
    elif not source.is_file():
        raise StageInputError(
            f"{stage}: {source} is missing; run `dvc repro resolve@{variant}` first "
            f"(is `{variant}` listed under `variants` in params.yaml?)"
        )
    return Params.model_validate(json.loads(source.read_text()))


def stage_params(stage: str, variant: str | None, params_file: str | None) -> Params:
    """The stage's config, from a YAML file when given, else from what a resolve stage wrote.

    Arguments
    ---------
    stage : str
        The calling stage's name, the prefix of every message.
    variant : str | None
        The variant whose patch of ``model`` applies; None for the base config.
    params_file : str | None
        A YAML config to load; None to read what ``resolve@<variant>`` (or, without a
        variant, ``defaults``) wrote in resolved/.

    Returns
    -------
    Params
        The validated config (patched by ``variant`` when given).

    Raises
    ------
    StageInputError
        When the file is missing or invalid, or ``variant`` is not one of its variants.
    """
    if params_file is None:
        return resolved_params(stage, variant)
    try:
        params = load(params_file)
        return params.variant(variant) if variant else params
    except ConfigError as exc:
        raise StageInputError(f"{stage}: {exc}") from None
    except KeyError as exc:
        raise StageInputError(f"{stage}: {params_file}: {exc.args[0]}") from None


def require(stage: str, path: str | Path, producer: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`, after checking that it exists.

    Arguments
    ---------
    stage : str
        The calling stage's name, the prefix of the message.
    path : str | Path
        The required input.
    producer : str
        The DVC stage that makes ``path`` (``pretrain@mhsa``), named in the message.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    StageInputError
        When ``path`` does not exist; the message names it and ``producer``.

    Example
    -------
    >>> require("report", "/nonexistent/encoder.pt", "pretrain@mhsa")
    Traceback (most recent call last):
    ...
    smx.stages.common.StageInputError: report: /nonexistent/encoder.pt is missing; run `dvc repro pretrain@mhsa` first
    """
    path = Path(path)
    if not path.exists():
        raise StageInputError(f"{stage}: {path} is missing; run `dvc repro {producer}` first")
    return path


def open_tracking(stage: str, params: Params) -> str:
    """The MLflow URI of ``params.tracking``, checked before any compute.

    Raises
    ------
    StageInputError
        When the tracking store cannot be used (the message says why).
    """
    from smx.tracking import TrackingUnavailable, check_tracking_uri, resolve_tracking_uri

    uri = resolve_tracking_uri(params.tracking)
    try:
        check_tracking_uri(uri)
    except TrackingUnavailable as exc:
        raise StageInputError(f"{stage}: {exc}") from None
    return uri
