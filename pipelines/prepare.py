"""DVC stage `prepare`: the corpus named by data.corpus, as Lhotse manifests.

The stage's code and options: :mod:`smx.stages.prepare` (also `smx stage prepare`).
"""

import sys

from smx.stages.prepare import main

if __name__ == "__main__":
    sys.exit(main())
