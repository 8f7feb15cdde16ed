"""Self-supervised objectives: wav2vec 2.0 and BEST-RQ, their masks, quantisers and losses.

Components only: nothing here knows about Ray, MLflow or DVC (the training loop in
:mod:`smx.train` drives them).
"""

from smx.ssl.bestrq import BestRQObjective
from smx.ssl.objective import LossOutput, build_objective
from smx.ssl.wav2vec2 import Wav2Vec2Objective

__all__ = ["BestRQObjective", "LossOutput", "Wav2Vec2Objective", "build_objective"]
