"""DVC stage `prepare`: the corpus named by data.corpus, as Lhotse manifests.

``synth`` synthesises the embedded corpus with espeak-ng; ``librispeech``, ``librilight``
and ``folder`` read data.corpus_dir. The corpus goes to <data.root>/<data.corpus>; the
summary (hours, utterances, speakers, classes per split; for synth also the real-time
factor of synthesis) is copied to the metrics file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from smx.atomic import write_json
from smx.config import DataCfg
from smx.data.problems import PrepareError
from smx.stages.common import StageInputError, add_params, load_params


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_params(parser)
    parser.add_argument(
        "--metrics",
        default="metrics/prepare.json",
        help="summary written for DVC (default: metrics/prepare.json)",
    )


def run(args: argparse.Namespace) -> None:
    """Prepare the corpus, copy its summary to the metrics file and say where both went."""
    data = load_params("prepare", args.params).data
    out = Path(data.root) / data.corpus
    try:
        summary = prepare(data, out)
    except PrepareError as exc:
        raise StageInputError(f"prepare: {exc}") from None
    write_json(args.metrics, summary)
    total = summary["total"]
    print(
        f"prepare: wrote {data.corpus} corpus ({total['hours']:.3f} h, "
        f"{total['utterances']} utterances, {total['speakers']} speakers) to {out}; "
        f"summary in {args.metrics}"
    )


def prepare(data: DataCfg, out: Path) -> dict[str, Any]:
    """The corpus named by ``data.corpus`` prepared into ``out``; its summary."""
    if data.corpus != "synth":
        from smx.data.corpora import PREPARERS

        return PREPARERS[data.corpus](data.corpus_dir, out, data)
    from smx.data.synth import prepare_synth

    result = prepare_synth(out, data)
    synthesis = result.run
    print(f"prepare: synthesis ran {synthesis.realtime_factor:.0f}x faster than real time")
    return {
        **result.summary,
        "synthesis": {
            "audio_seconds": round(synthesis.new_seconds, 3),
            "wall_seconds": round(synthesis.wall_seconds, 3),
            "realtime_factor": round(synthesis.realtime_factor, 1),
            "workers": synthesis.workers,
        },
    }
