"""DVC stages `resolve@<variant>` and `defaults`: validate params.yaml, write full configs.

`resolve@<variant>` writes resolved/<variant>/params.json (the base config with the variant's
patch of `model`); `defaults` (no --variant) writes resolved/params.json, the base config that
stages shared by every variant read (`baseline@<task>`). Later stages read these files, so
every number they use is the resolved, validated value (defaults included) and the file
records exactly what ran.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smx.atomic import write_json
from smx.stages.common import StageInputError, add_params, load_params


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_params(parser)
    parser.add_argument(
        "--variant",
        default=None,
        help="a name under `variants` in the config (default: the base config, for `defaults`)",
    )
    parser.add_argument("--out", default="resolved", help="output folder (default: resolved)")


def run(args: argparse.Namespace) -> None:
    """Write the resolved config of the variant (or the base config) and say where."""
    stage = f"resolve@{args.variant}" if args.variant else "defaults"
    params = load_params(stage, args.params)
    try:
        resolved = params.variant(args.variant) if args.variant else params
    except KeyError as exc:
        raise StageInputError(f"{stage}: {args.params}: {exc.args[0]}") from None
    out = Path(args.out) / (args.variant or "") / "params.json"
    write_json(out, resolved.model_dump(mode="json"))
    print(f"{stage}: wrote {out}")
