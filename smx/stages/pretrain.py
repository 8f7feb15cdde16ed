"""DVC stage `pretrain@<variant>`: self-supervised pre-training of one encoder on Ray Train.

Reads the variant's resolved config (resolved/<variant>/params.json, written by
`resolve@<variant>`) and writes models/<variant>/encoder.pt and config.json,
metrics/pretrain/<variant>.json and plots/pretrain/<variant>.csv. The MLflow run is tagged
with the DVC stage; its id is in the metrics file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smx.stages.common import add_variant, resolved_params, training_failed
from smx.train.launch import PretrainError
from smx.train.pretrain import pretrain


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_variant(parser)
    parser.add_argument(
        "--resolved", default="resolved", help="resolved configs (default: resolved)"
    )
    parser.add_argument("--out", default=".", help="project folder for the outputs (default: .)")


def run(args: argparse.Namespace) -> None:
    """Pre-train the variant's encoder (a progress bar on a terminal, a line every 10 s in
    logs); the launcher says where the outputs went."""
    stage = f"pretrain@{args.variant}"
    params = resolved_params(stage, args.variant, args.resolved)
    try:
        pretrain(params, args.variant, out=Path(args.out).resolve())
    except PretrainError as exc:
        raise training_failed(stage, exc) from None
