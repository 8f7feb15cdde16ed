"""DVC stage `baseline@<task>`: the fbank baseline of one task's probes, shared by all variants.

Plain log-mel features do not depend on the encoder, so their probes are trained once per
task (over downstream.seeds seeds, downstream.workers at once, a line on stderr after each)
and each `probe@<variant>-<task>` takes its fbank rows from
<metrics-dir>/<task>.json (written atomically) when the variant's settings match those
recorded in it. The config is the base one (resolved/params.json, written by `defaults`, or
`--params`): its front-end makes the features; a variant that changes the front-end gets its
fbank baseline probed in its own stage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smx.atomic import write_json
from smx.config import TASKS
from smx.data.problems import PrepareError
from smx.downstream.errors import ProbeError
from smx.downstream.run import probe_baseline
from smx.stages.common import StageInputError, stage_params

#: how DVC runs the stage (dvc.yaml); `smx stage baseline` runs the same code
PROG = "python -m pipelines.baseline"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The stage's options (the same for `python -m pipelines.baseline` and `smx stage baseline`)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--params", default=None, help="config file (default: resolved/params.json)"
    )
    parser.add_argument("--task", required=True, choices=TASKS, help="the probing task")
    parser.add_argument(
        "--metrics-dir",
        default="metrics/baseline",
        help="output folder (default: metrics/baseline)",
    )
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default: the command line) and run the stage; the exit code."""
    return run(parser(prog).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the stage with parsed options; prints where its outputs went, returns the exit code."""
    stage = f"baseline@{args.task}"
    try:
        params = stage_params(stage, None, args.params)
    except StageInputError as exc:
        print(exc, file=sys.stderr)
        return 2
    corpus = Path(params.data.root) / params.data.corpus
    try:
        result = probe_baseline(
            args.task,
            params,
            corpus,
            progress=lambda what, _: print(f"{stage}: {what}", file=sys.stderr, flush=True),
        )
    except (ProbeError, PrepareError) as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.metrics_dir) / f"{args.task}.json"
    write_json(out, result)
    primary = result["primary_metric"]
    summary = ", ".join(
        f"{probe} {rows['fbank']['metrics'][primary]['mean']:.4f}"
        for probe, rows in result["probes"].items()
    )
    print(f"{stage}: fbank {primary} {summary}; wrote {out}")
    return 0
