"""Check that the installed torch/torchaudio are exactly the pinned builds and load together.

Run by scripts/setup.sh after every install: pip must never pull another torch build
(a CPU-only torch cannot load torchaudio 2.11.0; a newer torch is several GB of CUDA).
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement


def main() -> int:
    pins = {}
    for line in metadata.requires("smx") or []:
        req = Requirement(line)
        if req.name in ("torch", "torchaudio"):
            pins[req.name] = str(req.specifier).removeprefix("==")
    problems = []
    for name, pinned in pins.items():
        installed = metadata.version(name).split("+")[0]
        if installed != pinned:
            problems.append(f"{name} {installed} is installed but smx pins {pinned}")
    try:
        import torch
        import torchaudio

        torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 80, 16000)
        print(f"[setup] torch {torch.__version__} + torchaudio {torchaudio.__version__}: ok")
    except Exception as exc:
        problems.append(f"torch/torchaudio do not load together: {exc}")
    for p in problems:
        print(f"[setup] error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
