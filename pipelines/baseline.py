"""DVC stage `baseline@<task>`: the fbank baseline of one task's probes, shared by all variants.

The stage's code and options: :mod:`smx.stages.baseline` (also `smx stage baseline`).
"""

import sys

from smx.stages.common import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("baseline"))
