"""DVC stage `finetune@<variant>`: CTC fine-tuning of one pre-trained encoder on Ray Train.

The stage's code and options: :mod:`smx.stages.finetune` (also `smx stage finetune`).
"""

import sys

from smx.stages.common import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("finetune"))
