"""DVC stage `probe@<variant>-<task>`: MP3S-style scoring of one pre-trained encoder on one task.

The stage's code and options: :mod:`smx.stages.probe` (also `smx stage probe`).
"""

import sys

from smx.stages.common import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("probe"))
