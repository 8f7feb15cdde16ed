"""DVC stage `baseline@<task>`: the fbank baseline of one task's probes, shared by all variants.

Plain log-mel features do not depend on the encoder, so their probes are trained once per
task (over downstream.seeds seeds, downstream.workers at once, a line on stderr after each)
and each `probe@<variant>-<task>` takes its fbank rows from
<metrics-dir>/<task>.json (written atomically) when the variant's settings match those
recorded in it. The task reads its own corpus (its ``corpus`` in downstream.tasks, else
<data.root>/<data.corpus>). The config is the base one (resolved/params.json, written by
`defaults`, or `--params`): its front-end makes the features; a variant that changes the
front-end gets its fbank baseline probed in its own stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smx.atomic import write_json
from smx.config import TASKS
from smx.data.problems import PrepareError
from smx.downstream.errors import ProbeError
from smx.downstream.run import probe_baseline
from smx.downstream.tasks import task_corpus
from smx.stages.common import StageInputError, add_params, progress_line, stage_params


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_params(parser, None, "resolved/params.json")
    parser.add_argument("--task", required=True, choices=TASKS, help="the probing task")
    parser.add_argument(
        "--metrics-dir",
        default="metrics/baseline",
        help="output folder (default: metrics/baseline)",
    )


def run(args: argparse.Namespace) -> None:
    """Probe the task on fbank features over seeds, write the result and say where."""
    stage = f"baseline@{args.task}"
    params = stage_params(stage, None, args.params)
    try:
        corpus = task_corpus(params, args.task)
        result = probe_baseline(args.task, params, corpus, progress=progress_line(stage))
    except (ProbeError, PrepareError) as exc:
        raise StageInputError(f"{stage}: {exc}") from None
    out = Path(args.metrics_dir) / f"{args.task}.json"
    write_json(out, result)
    primary = result["primary_metric"]
    summary = ", ".join(
        f"{probe} {rows['fbank']['metrics'][primary]['mean']:.4f}"
        for probe, rows in result["probes"].items()
    )
    print(f"{stage}: fbank {primary} {summary}; wrote {out}")
