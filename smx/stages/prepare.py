"""DVC stage `prepare`: the corpus named by data.corpus, as Lhotse manifests.

``synth`` synthesises the embedded corpus with espeak-ng; ``librispeech``, ``librilight``
and ``folder`` read data.corpus_dir. The corpus goes to <data.root>/<data.corpus>; the
summary (hours, utterances, speakers, classes per split; for synth also the real-time
factor of synthesis) is copied to the metrics file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smx.atomic import write_json
from smx.config import load
from smx.data.problems import PrepareError
from smx.yamlio import ConfigError

#: how DVC runs the stage (dvc.yaml); `smx stage prepare` runs the same code
PROG = "python -m pipelines.prepare"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The stage's options (the same for `python -m pipelines.prepare` and `smx stage prepare`)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--params", default="params.yaml", help="config file (default: params.yaml)"
    )
    parser.add_argument(
        "--metrics",
        default="metrics/prepare.json",
        help="summary written for DVC (default: metrics/prepare.json)",
    )
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default: the command line) and run the stage; the exit code."""
    return run(parser(prog).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the stage with parsed options; prints where its outputs went, returns the exit code."""
    try:
        data = load(args.params).data
    except ConfigError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 2
    out = Path(data.root) / data.corpus
    try:
        if data.corpus == "synth":
            from smx.data.synth import prepare_synth

            result = prepare_synth(out, data)
            summary = dict(result.summary)
            run = result.run
            summary["synthesis"] = {
                "audio_seconds": round(run.new_seconds, 3),
                "wall_seconds": round(run.wall_seconds, 3),
                "realtime_factor": round(run.realtime_factor, 1),
                "workers": run.workers,
            }
            print(f"prepare: synthesis ran {run.realtime_factor:.0f}x faster than real time")
        else:
            from smx.data.corpora import PREPARERS

            summary = PREPARERS[data.corpus](data.corpus_dir, out, data)
    except PrepareError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 2
    write_json(args.metrics, summary)
    total = summary["total"]
    print(
        f"prepare: wrote {data.corpus} corpus ({total['hours']:.3f} h, "
        f"{total['utterances']} utterances, {total['speakers']} speakers) to {out}; "
        f"summary in {args.metrics}"
    )
    return 0
