"""DVC stage `pretrain@<variant>`: self-supervised pre-training of one encoder on Ray Train.

Reads the variant's resolved config (resolved/<variant>/params.json, written by
`resolve@<variant>`) and writes models/<variant>/encoder.pt and config.json,
metrics/pretrain/<variant>.json and plots/pretrain/<variant>.csv. The MLflow run is tagged
with the DVC stage; its id is in the metrics file.

A variant with `init: {speechbrain: DIR}` is imported from that SpeechBrain checkpoint
folder instead (smx.importers.speechbrain, as `smx import speechbrain`): the same files,
the metrics saying what was imported, the plot CSV with its header only, and no MLflow run
or registered model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from smx.atomic import write_json, write_text
from smx.config import Params
from smx.stages.common import StageInputError, add_variant, resolved_params, training_failed
from smx.train.launch import PretrainError
from smx.train.pretrain import pretrain

#: the header of an imported variant's plot CSV (no training steps)
IMPORT_CURVE_HEADER = "step,loss\n"


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_variant(parser)
    parser.add_argument(
        "--resolved", default="resolved", help="resolved configs (default: resolved)"
    )
    parser.add_argument("--out", default=".", help="project folder for the outputs (default: .)")


def import_variant(stage: str, params: Params, variant: str, out: Path) -> dict[str, Path]:
    """Import the variant's encoder from ``params.init`` and write the stage's outputs.

    Returns
    -------
    dict[str, Path]
        The files written: ``encoder``, ``config``, ``metrics``, ``plots``.

    Raises
    ------
    StageInputError
        When the folder cannot be imported with the variant's config (nothing is written).
    """
    from smx.importers.speechbrain import (
        SpeechBrainImportError,
        import_speechbrain,
        write_encoder_file,
    )

    assert params.init is not None
    folder = params.init.speechbrain
    start = time.perf_counter()
    try:
        imported = import_speechbrain(folder, params)
    except SpeechBrainImportError as exc:
        raise StageInputError(f"{stage}: {exc}") from None
    models = out / "models" / variant
    paths = {
        "encoder": models / "encoder.pt",
        "config": models / "config.json",
        "metrics": out / "metrics" / "pretrain" / f"{variant}.json",
        "plots": out / "plots" / "pretrain" / f"{variant}.csv",
    }
    write_encoder_file(imported, paths["encoder"])
    write_json(paths["config"], imported.params.model_dump(mode="json"))
    metrics = {
        "init": "speechbrain",
        "source": str(folder),
        "files": [p.name for p in imported.files],
        "layout": imported.layout,
        "parameters": imported.parameters,
        "steps": 0,
        "import_seconds": round(time.perf_counter() - start, 3),
    }
    write_json(paths["metrics"], metrics)
    write_text(paths["plots"], IMPORT_CURVE_HEADER)
    (models / "registry.json").unlink(missing_ok=True)  # no MLflow model for an import
    return paths


def run(args: argparse.Namespace) -> None:
    """Pre-train the variant's encoder (a progress bar on a terminal, a line every 10 s in
    logs), or import it when the variant names `init`; says where the outputs went."""
    stage = f"pretrain@{args.variant}"
    params = resolved_params(stage, args.variant, args.resolved)
    if params.init is not None:
        paths = import_variant(stage, params, args.variant, Path(args.out).resolve())
        print(f"{stage}: imported {params.init.speechbrain} (SpeechBrain) instead of pre-training")
        for key, path in paths.items():
            print(f"{stage}: {key} -> {path}")
        return
    try:
        pretrain(params, args.variant, out=Path(args.out).resolve())
    except PretrainError as exc:
        raise training_failed(stage, exc) from None
