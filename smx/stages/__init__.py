"""The DVC stages of the study, one module each (dvc.yaml runs ``python -m pipelines.<name>``,
a two-line wrapper; ``smx stage <name>`` runs the same code with the same options).

Each module has ``options(parser)`` (the stage's options; its docstring is the help text)
and ``run(args)`` (the stage: it prints where its outputs went and raises
:class:`~smx.stages.common.StageError`); :func:`smx.stages.common.run_stage` parses the
options, runs the stage and turns a StageError into one sentence on stderr and the exit code
(1 when training failed, 2 for bad or missing input). :mod:`smx.stages.common` also holds
what the stages share: the resolved configs, required inputs named with the stage that makes
them, the tracking pre-flight.
"""

#: stage name -> what it does (the order of the study)
STAGES = {
    "prepare": "The corpus named by data.corpus, as Lhotse manifests.",
    "resolve": "Validate the config and write a variant's (or, without --variant, the base) resolved config.",
    "pretrain": "Self-supervised pre-training of one variant's encoder on Ray Train.",
    "finetune": "CTC fine-tuning of one variant's encoder and of its random-init twin.",
    "baseline": "The fbank baseline of one task's probes, shared by every variant.",
    "probe": "MP3S-style probes of one variant's frozen encoder on one task.",
    "bench": "Time and peak memory of every variant's pre-training step against input length.",
    "report": "The study report (Markdown, figures, summary) and each variant's MLflow summary.",
}
