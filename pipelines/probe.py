"""DVC stage `probe@<variant>-<task>`: MP3S-style scoring of one pre-trained encoder on one task.

Reads models/<variant>/encoder.pt (checked against the variant's model config) and the
corpus <data.root>/<data.corpus>; trains both probes of the task on the frozen encoder, on
its random-init twin and on plain fbank features, over downstream.seeds seeds; writes
<metrics-dir>/<variant>/<task>.json (mean and std per probe and upstream) and
<plots-dir>/<variant>/<task>_layer_weights.png, each atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smx.config import TASKS, load
from smx.data.report import PrepareError
from smx.downstream.errors import ProbeError
from smx.downstream.run import probe_encoder, write_results
from smx.yamlio import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="config file (default: params.yaml)"
    )
    parser.add_argument("--variant", required=True, help="a name under `variants` in the config")
    parser.add_argument("--task", required=True, choices=TASKS, help="the probing task")
    parser.add_argument(
        "--encoder", default=None, help="encoder file (default: models/<variant>/encoder.pt)"
    )
    parser.add_argument(
        "--metrics-dir", default="metrics/probe", help="metrics root (default: metrics/probe)"
    )
    parser.add_argument(
        "--plots-dir", default="plots/probe", help="plots root (default: plots/probe)"
    )
    args = parser.parse_args(argv)
    stage = f"probe@{args.variant}-{args.task}"
    try:
        params = load(args.params)
        arch = params.variant(args.variant)
    except ConfigError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"{stage}: {args.params}: {exc.args[0]}", file=sys.stderr)
        return 2
    encoder = Path(args.encoder or Path("models") / args.variant / "encoder.pt")
    corpus = Path(params.data.root) / params.data.corpus
    try:
        result = probe_encoder(encoder, args.task, params, corpus, arch=arch)
    except (ProbeError, PrepareError) as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return 2
    result["variant"] = args.variant
    metrics = Path(args.metrics_dir) / args.variant / f"{args.task}.json"
    plot = Path(args.plots_dir) / args.variant / f"{args.task}_layer_weights.png"
    write_results(result, metrics, plot)
    primary = result["primary_metric"]
    summary = ", ".join(
        f"{probe} {m['pretrained']['metrics'][primary]['mean']:.4f} "
        f"(random init {m['random_init']['metrics'][primary]['mean']:.4f})"
        for probe, m in result["probes"].items()
    )
    print(f"{stage}: {primary} {summary}; wrote {metrics} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
