"""DVC stage `report`: the study report from every upstream output, summarised in MLflow.

The stage's code and options: :mod:`smx.stages.report` (also `smx stage report`).
"""

import sys

from smx.stages.common import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("report"))
