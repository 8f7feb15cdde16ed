"""DVC stage `report`: the study report from every upstream output, summarised in MLflow.

Reads, under --root, metrics/pretrain/<variant>.json and plots/pretrain/<variant>.csv,
metrics/probe/<variant>/<task>.json, metrics/finetune/<variant>.json and
reports/bench/pretrain.json for every variant and task of the config; writes
<out>/report.md, <out>/summary.json and the PNG figures in <out>/figures/, each atomically;
logs each variant's numbers to its MLflow parent run and the report to a `report` run.
The header names the git commit and the SHA-256 of <root>/dvc.lock.

It also rewrites the generated blocks of --readme (`demo`) and --results (`demo-probes`, `demo-time`)
and copies the best-probe figure into --figures-dir (:mod:`smx.report.documents`); a
document that is absent is skipped with a note.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smx.docblock import BlockError
from smx.report.build import file_sha256, write_report
from smx.report.documents import FIGURE, Documents, publish
from smx.report.inputs import ReportError, gather
from smx.report.markdown import Provenance
from smx.stages.common import StageInputError, add_params, load_params, open_tracking
from smx.tracking import git_commit

STAGE = "report"


def documents_of(args: argparse.Namespace, root: Path) -> Documents:
    """The documents of the options, each defaulting to the project's own under ``root``."""
    own = Documents.under(root)
    return Documents(
        Path(args.readme) if args.readme else own.readme,
        Path(args.results) if args.results else own.results,
        Path(args.figures_dir) if args.figures_dir else own.figures,
    )


def options(parser: argparse.ArgumentParser) -> None:
    """The stage's options."""
    add_params(parser)
    parser.add_argument("--root", default=".", help="project folder with the inputs (default: .)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--readme", help="README with block `demo` (default: <root>/README.md)")
    parser.add_argument(
        "--results",
        help="page with blocks `demo-probes` and `demo-time` (default: <root>/docs/results.md)",
    )
    parser.add_argument(
        "--figures-dir", help="where their figure goes (default: <root>/docs/figures)"
    )


def run(args: argparse.Namespace) -> None:
    """Write the report and the documents' generated blocks, log the study, say where."""
    root, out = Path(args.root), Path(args.out)
    documents = documents_of(args, root)
    params = load_params(STAGE, args.params)
    try:
        study = gather(root, params)
    except ReportError as exc:
        raise StageInputError(f"{STAGE}: {exc}") from None
    uri = open_tracking(STAGE, params)
    provenance = Provenance(git_commit(root.resolve()), file_sha256(root / "dvc.lock"))
    files = write_report(study, params, out, provenance)
    try:
        published = publish(study, files.figures[FIGURE], documents)
    except BlockError as exc:
        raise StageInputError(f"{STAGE}: {exc}") from None

    from smx.tracking import log_study

    runs = log_study(uri, params, study, files, provenance)
    figures = ", ".join(str(p) for p in files.figures.values())
    print(f"{STAGE}: wrote {files.report} and {files.summary}; figures: {figures}")
    for path in published.absent:
        print(f"{STAGE}: {path} is absent; its generated block was not written")
    if published.written:
        print(f"{STAGE}: rewrote {', '.join(str(p) for p in published.written)}")
    parents = ", ".join(f"{v} {runs[v]}" for v in study.variants)
    print(
        f"{STAGE}: MLflow experiment {params.tracking.experiment!r} at {uri}: parent runs "
        f"{parents}; report run {runs['report']}; browse with: make ui"
    )
    for v in study.variants:
        uri_v = study.pretrain[v].model_uri or "not logged"
        print(f"{STAGE}: the {v} encoder as an MLflow model: {uri_v}")
