"""DVC stages `resolve@<variant>` and `defaults`: validate params.yaml, write full configs.

The stage's code and options: :mod:`smx.stages.resolve` (also `smx stage resolve`).
"""

import sys

from smx.stages.resolve import main

if __name__ == "__main__":
    sys.exit(main())
