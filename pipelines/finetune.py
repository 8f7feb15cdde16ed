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

from pipelines.common import StageInputError, require, resolved_params
from smx.train.finetune_launch import finetune
from smx.train.launch import PretrainError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, help="a name under `variants` in the config")
    parser.add_argument(
        "--resolved", default="resolved", help="resolved configs (default: resolved)"
    )
    parser.add_argument("--models", default="models", help="pre-trained encoders (default: models)")
    parser.add_argument("--out", default=".", help="project folder for the outputs (default: .)")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
