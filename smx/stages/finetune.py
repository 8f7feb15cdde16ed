"""DVC stage `finetune@<variant>`: CTC fine-tuning of one pre-trained encoder on Ray Train.

Reads the variant's resolved config (resolved/<variant>/params.json, written by
`resolve@<variant>`) and its encoder (models/<variant>/encoder.pt, written by
`pretrain@<variant>`); fine-tunes it for character CTC ASR, then the same recipe from a
random init, and writes metrics/finetune/<variant>.json (dev and test WER/CER per init) and
plots/finetune/<variant>.csv. Each init has an MLflow run under the variant's run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smx.stages.common import StageInputError, require, resolved_params
from smx.train.finetune import finetune
from smx.train.launch import PretrainError

#: how DVC runs the stage (dvc.yaml); `smx stage finetune` runs the same code
PROG = "python -m pipelines.finetune"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The stage's options (the same for `python -m pipelines.finetune` and `smx stage finetune`)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", required=True, help="a name under `variants` in the config")
    parser.add_argument(
        "--resolved", default="resolved", help="resolved configs (default: resolved)"
    )
    parser.add_argument("--models", default="models", help="pre-trained encoders (default: models)")
    parser.add_argument("--out", default=".", help="project folder for the outputs (default: .)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default: the command line) and run the stage; the exit code."""
    return run(parser(prog).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the stage with parsed options; prints where its outputs went, returns the exit code."""
    stage = f"finetune@{args.variant}"
    try:
        params = resolved_params(stage, args.variant, args.resolved)
        encoder = require(
            stage, Path(args.models) / args.variant / "encoder.pt", f"pretrain@{args.variant}"
        )
    except StageInputError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        finetune(params, args.variant, encoder=encoder.resolve(), out=Path(args.out).resolve())
    except PretrainError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return 1 if exc.during_training else 2
    return 0
