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

from pipelines.common import StageInputError, resolved_params
from smx.train.launch import PretrainError, pretrain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, help="a name under `variants` in the config")
    parser.add_argument(
        "--resolved", default="resolved", help="resolved configs (default: resolved)"
    )
    parser.add_argument("--out", default=".", help="project folder for the outputs (default: .)")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
