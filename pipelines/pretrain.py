"""DVC stage `pretrain@<variant>`: self-supervised pre-training of one encoder on Ray Train.

The stage's code and options: :mod:`smx.stages.pretrain` (also `smx stage pretrain`).
"""

import sys

from smx.stages.common import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("pretrain"))
