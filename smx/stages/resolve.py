"""DVC stages `resolve@<variant>` and `defaults`: validate params.yaml, write full configs.

`resolve@<variant>` writes resolved/<variant>/params.json (the base config with the variant's
patch of `model`); `defaults` (no --variant) writes resolved/params.json, the base config that
stages shared by every variant read (`baseline@<task>`). Later stages read these files, so
every number they use is the resolved, validated value (defaults included) and the file
records exactly what ran.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smx.atomic import write_json
from smx.config import load
from smx.yamlio import ConfigError

#: how DVC runs the stage (dvc.yaml); `smx stage resolve` runs the same code
PROG = "python -m pipelines.resolve"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The stage's options (the same for `python -m pipelines.resolve` and `smx stage resolve`)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--params", default="params.yaml", help="config file (default: params.yaml)"
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="a name under `variants` in the config (default: the base config, for `defaults`)",
    )
    parser.add_argument("--out", default="resolved", help="output folder (default: resolved)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default: the command line) and run the stage; the exit code."""
    return run(parser(prog).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the stage with parsed options; prints where its outputs went, returns the exit code."""
    stage = f"resolve@{args.variant}" if args.variant else "defaults"
    try:
        params = load(args.params)
        resolved = params.variant(args.variant) if args.variant else params
    except ConfigError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"{stage}: {args.params}: {exc.args[0]}", file=sys.stderr)
        return 2
    out = Path(args.out) / (args.variant or "") / "params.json"
    write_json(out, resolved.model_dump(mode="json"))
    print(f"{stage}: wrote {out}")
    return 0
