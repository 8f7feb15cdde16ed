"""DVC stages `resolve@<variant>` and `defaults`: validate params.yaml, write full configs.

The stage's code and options: :mod:`smx.stages.resolve` (also `smx stage resolve`).
"""

import sys

from smx.stages.common import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("resolve"))
