"""DVC stage `pretrain@<variant>`: self-supervised pre-training of one encoder on Ray Train.

Reads the variant's resolved config (resolved/<variant>/params.json, written by
`resolve@<variant>`) and writes models/<variant>/encoder.pt and config.json,
metrics/pretrain/<variant>.json and plots/pretrain/<variant>.csv. The MLflow run is tagged
with the DVC stage; its id is in the metrics file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smx.stages.common import StageInputError, resolved_params
from smx.train.launch import PretrainError
from smx.train.pretrain import pretrain

#: how DVC runs the stage (dvc.yaml); `smx stage pretrain` runs the same code
PROG = "python -m pipelines.pretrain"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The stage's options (the same for `python -m pipelines.pretrain` and `smx stage pretrain`)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", required=True, help="a name under `variants` in the config")
    parser.add_argument(
        "--resolved", default="resolved", help="resolved configs (default: resolved)"
    )
    parser.add_argument("--out", default=".", help="project folder for the outputs (default: .)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default: the command line) and run the stage; the exit code."""
    return run(parser(prog).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the stage with parsed options; prints where its outputs went, returns the exit code."""
    stage = f"pretrain@{args.variant}"
    try:
        params = resolved_params(stage, args.variant, args.resolved)
    except StageInputError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        # a bar on a terminal, a plain progress line every 10 s in logs (dvc repro > log)
        pretrain(params, args.variant, out=Path(args.out).resolve())
    except PretrainError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return 1 if exc.during_training else 2
    return 0
