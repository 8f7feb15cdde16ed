"""DVC stage `bench`: the scaling benchmark of every variant's pre-training step.

Runs `smx bench pretrain` on params.yaml: one full step (front-end, encoder, objective,
backward, optimiser) of each variant's model at each of bench.lengths_s, a fresh process
per point, ratios against the `mhsa` variant. Writes <out>/pretrain.json, .csv and .png
and logs an MLflow run (tag smx.role=bench) in the pipeline's experiment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer

from smx.bench.cli import pretrain as bench_pretrain
from smx.config import load
from smx.stages.common import StageInputError, open_tracking
from smx.yamlio import ConfigError

#: how DVC runs the stage (dvc.yaml); `smx stage bench` runs the same code
PROG = "python -m pipelines.bench"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The stage's options (the same for `python -m pipelines.bench` and `smx stage bench`)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--params", default="params.yaml", help="config file (default: params.yaml)"
    )
    parser.add_argument("--out", default="reports/bench", help="output folder")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default: the command line) and run the stage; the exit code."""
    return run(parser(prog).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the stage with parsed options; prints where its outputs went, returns the exit code."""
    try:
        params = load(args.params)
        if not params.variants:
            raise StageInputError(f"bench: {args.params}: `variants` is empty; define at least one")
        uri = open_tracking("bench", params)
    except ConfigError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except StageInputError as exc:
        print(exc, file=sys.stderr)
        return 2
    cfg = params.bench
    try:
        bench_pretrain(
            configs=args.params,
            kinds=",".join(params.variants),
            lengths=",".join(f"{s:g}" for s in cfg.lengths_s),
            batch=cfg.batch,
            repeats=cfg.repeats,
            warmup=cfg.warmup,
            threads=cfg.threads,
            tracking_uri=uri,
            out_dir=Path(args.out),
        )
    except typer.Exit as exc:
        return exc.exit_code
    return 0
