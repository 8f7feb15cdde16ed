"""DVC stage `bench`: the scaling benchmark of every variant's pre-training step.

The stage's code and options: :mod:`smx.stages.bench` (also `smx stage bench`).
"""

import sys

from smx.stages.common import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("bench"))
