"""DVC stage `resolve@<variant>`: validate params.yaml and write the variant's full config.

Later stages read build/<variant>/params.json, so every number they use is the resolved,
validated value (defaults included) and the file records exactly what ran.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smx.atomic import write_json
from smx.config import load
from smx.yamlio import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="config file (default: params.yaml)"
    )
    parser.add_argument("--variant", required=True, help="a name under `variants` in the config")
    parser.add_argument("--out", default="build", help="output folder (default: build)")
    args = parser.parse_args(argv)
    try:
        params = load(args.params)
        resolved = params.variant(args.variant)
    except ConfigError as exc:
        print(f"resolve: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"resolve@{args.variant}: {args.params}: {exc.args[0]}", file=sys.stderr)
        return 2
    out = Path(args.out) / args.variant / "params.json"
    write_json(out, resolved.model_dump(mode="json"))
    print(f"resolve@{args.variant}: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
