"""DVC stage `prepare`: the corpus named by data.corpus, as Lhotse manifests.

The stage's code and options: :mod:`smx.stages.prepare` (also `smx stage prepare`).
"""

import sys

from smx.stages.common import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("prepare"))
