"""Speech data: the embedded espeak-ng corpus, real corpora through Lhotse, training input.

Modules (imported on demand, so that worker processes stay light):

* :mod:`smx.data.synth` -- the synthetic corpus (``prepare_synth``).
* :mod:`smx.data.corpora` -- LibriSpeech, Libri-Light, a folder of audio files.
* :mod:`smx.data.manifests` -- manifests on disk, validation, summary, ``load_cuts``.
* :mod:`smx.data.audio` -- audio checks and repairs, resampling, noise.
* :mod:`smx.data.text` -- intent templates, free-reading sentences, normalisation, vocabulary.
* :mod:`smx.data.loader` -- duration filters, bucketing sampler, collation, ``TrainLoader``.
* :mod:`smx.data.shar` -- Lhotse Shar export and reading.
* :mod:`smx.data.problems` -- skipped/repaired items and user-facing errors.
* :mod:`smx.data.cli` -- the ``smx prepare`` commands.

Nothing here imports Ray, MLflow or DVC.
"""
