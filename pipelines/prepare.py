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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="config file (default: params.yaml)"
    )
    parser.add_argument(
        "--metrics",
        default="metrics/prepare.json",
        help="summary written for DVC (default: metrics/prepare.json)",
    )
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
