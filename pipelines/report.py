"""DVC stage `report`: the study report from every upstream output, summarised in MLflow.

Reads, under --root, metrics/pretrain/<variant>.json and plots/pretrain/<variant>.csv,
metrics/probe/<variant>/<task>.json, metrics/finetune/<variant>.json and
reports/bench/pretrain.json for every variant and task of the config; writes
<out>/report.md, <out>/summary.json and the PNG figures in <out>/figures/, each atomically;
logs each variant's numbers to its MLflow parent run and the report to a `report` run.
The header names the git commit and the SHA-256 of <root>/dvc.lock.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common import StageInputError, open_tracking
from smx.config import load
from smx.report.build import file_sha256, write_report
from smx.report.inputs import ReportError, gather
from smx.report.markdown import Provenance
from smx.tracking import git_commit
from smx.yamlio import ConfigError

STAGE = "report"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="config file (default: params.yaml)"
    )
    parser.add_argument("--root", default=".", help="project folder with the inputs (default: .)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    args = parser.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    try:
        params = load(args.params)
        study = gather(root, params)
        uri = open_tracking(STAGE, params)
    except (ConfigError, ReportError) as exc:
        print(f"{STAGE}: {exc}", file=sys.stderr)
        return 2
    except StageInputError as exc:
        print(exc, file=sys.stderr)
        return 2
    provenance = Provenance(git_commit(root.resolve()), file_sha256(root / "dvc.lock"))
    files = write_report(study, params, out, provenance)

    from smx.tracking import log_study

    runs = log_study(uri, params, study, files, provenance)
    figures = ", ".join(str(p) for p in files.figures.values())
    print(f"{STAGE}: wrote {files.report} and {files.summary}; figures: {figures}")
    parents = ", ".join(f"{v} {runs[v]}" for v in study.variants)
    print(
        f"{STAGE}: MLflow experiment {params.tracking.experiment!r} at {uri}: parent runs "
        f"{parents}; report run {runs['report']}; browse with: make ui"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
