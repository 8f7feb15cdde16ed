"""The study report: every upstream output of the pipeline gathered, compared and written.

- :mod:`smx.report.inputs` reads the metrics files of the DVC stages into one typed
  :class:`~smx.report.inputs.Study` (a missing or malformed file names the stage to re-run);
- :mod:`smx.report.analysis` compares variants and baselines and states the findings;
- :mod:`smx.report.figures` draws the PNG figures (matplotlib, Agg);
- :mod:`smx.report.markdown` renders ``report.md`` and :mod:`smx.report.build` writes it all;
- :mod:`smx.report.documents` rewrites the study's headline in README.md and docs/results.md.

Each variant's numbers are summarised in its MLflow parent run by
:func:`smx.tracking.log_study`.
"""
