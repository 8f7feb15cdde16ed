"""DVC stage `bench`: the scaling benchmark of every variant's pre-training step.

Runs `smx bench pretrain` on params.yaml: one full step (front-end, encoder, objective,
backward, optimiser) of each variant's model at each of bench.lengths_s, a fresh process
per point, ratios against the `mhsa` variant. Writes <out>/pretrain.json, .csv and .png
and logs an MLflow run (tag smx.role=bench) in the pipeline's experiment.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import typer

from smx.bench.cli import pretrain as bench_pretrain
from smx.stages.common import StageError, StageInputError, add_params, load_params, open_tracking


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_params(parser)
    parser.add_argument("--out", default="reports/bench", help="output folder")


def run(args: argparse.Namespace) -> None:
    """Run `smx bench pretrain` on the config's variants and lengths (it says where it wrote)."""
    params = load_params("bench", args.params)
    if not params.variants:
        raise StageInputError(f"bench: {args.params}: `variants` is empty; define at least one")
    uri = open_tracking("bench", params)
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
            modes="default",  # what training runs; `smx bench pretrain` also measures eager
            tracking_uri=uri,
            out_dir=Path(args.out),
        )
    except typer.Exit as exc:
        if exc.exit_code:
            raise StageError("", exc.exit_code) from None  # the benchmark printed why
