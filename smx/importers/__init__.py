"""Encoders trained elsewhere, written as smx encoder files (``encoder.pt``).

:mod:`smx.importers.speechbrain` reads a SpeechBrain checkpoint folder;
:mod:`smx.importers.cli` is ``smx import``. The pretrain stage imports a variant that names
``init: {speechbrain: DIR}`` instead of pre-training it (:mod:`smx.stages.pretrain`).
"""
