"""What the DVC stages share: a variant's resolved config and their required inputs.

Each stage names itself (``probe@mhsa-asr``) in every message, and a missing input names
the file and the stage that makes it, so a stage run out of order says what
to run first.
"""

from __future__ import annotations

import json
from pathlib import Path

from smx.config import Params, load
from smx.yamlio import ConfigError


class StageInputError(RuntimeError):
    """A stage's input is missing or unusable (exit 2, one sentence)."""


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
