"""DVC stage `finetune@<variant>`: CTC fine-tuning of one pre-trained encoder on Ray Train.

Reads the variant's resolved config (resolved/<variant>/params.json, written by
`resolve@<variant>`) and its encoder (models/<variant>/encoder.pt, written by
`pretrain@<variant>`); fine-tunes it for character CTC ASR, then the same recipe from a
random init, and writes metrics/finetune/<variant>.json (dev and test WER/CER per init) and
plots/finetune/<variant>.csv. Each init has an MLflow run under the variant's run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smx.stages.common import add_variant, require, resolved_params, training_failed
from smx.train.finetune import finetune
from smx.train.launch import PretrainError


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_variant(parser)
    parser.add_argument(
        "--resolved", default="resolved", help="resolved configs (default: resolved)"
    )
    parser.add_argument("--models", default="models", help="pre-trained encoders (default: models)")
    parser.add_argument("--out", default=".", help="project folder for the outputs (default: .)")


def run(args: argparse.Namespace) -> None:
    """Fine-tune the variant's encoder and its random-init twin; the launcher says where the
    outputs went."""
    stage = f"finetune@{args.variant}"
    params = resolved_params(stage, args.variant, args.resolved)
    encoder = require(
        stage, Path(args.models) / args.variant / "encoder.pt", f"pretrain@{args.variant}"
    )
    try:
        finetune(params, args.variant, encoder=encoder.resolve(), out=Path(args.out).resolve())
    except PretrainError as exc:
        raise training_failed(stage, exc) from None
