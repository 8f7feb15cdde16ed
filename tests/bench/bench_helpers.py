"""Tiny benchmark configs and a runner for the ``smx bench`` CLI (shared by the bench tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TINY_MODEL = """\
model:
  frontend: {{kind: {frontend}, cnn_channels: [16, 16], conv2d_channels: [4, 4]}}
  encoder: {{num_layers: 1, d_model: 32, d_ffn: 64, kernel_size: 3, layerdrop: 0.0,
            dropout: 0.0, input_dropout: 0.0}}
  mixer: {{kind: summarymixing, local_hidden: [32], local_out: 32, summary_hidden: [32],
          heads: 2, dropout: 0.0}}
  streaming: {{eval_chunk: 8, eval_left: null}}
variants:
  summarymixing: {{mixer: {{kind: summarymixing}}}}
  mhsa: {{mixer: {{kind: mhsa, heads: 2, dropout: 0.0}}}}
tracking: {{experiment: tiny-bench}}
"""

TINY_SSL = {
    "wav2vec2": "ssl: {kind: wav2vec2, codebook_entries: 8, code_dim: 8, proj_dim: 8, "
    "num_negatives: 4}\n",
    "bestrq": "ssl: {kind: bestrq, codebook_size: 16}\n",
}


def tiny_config(folder: Path, objective: str) -> Path:
    """A one-layer d_model 32 benchmark config for ``objective`` (wav2vec2 or bestrq)."""
    frontend = "mel_cnn" if objective == "wav2vec2" else "conv2d"
    path = folder / f"tiny_{objective}.yaml"
    path.write_text(TINY_MODEL.format(frontend=frontend) + TINY_SSL[objective])
    return path


def smx(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the ``smx`` console script of this interpreter's environment."""
    exe = shutil.which("smx", path=str(Path(sys.executable).parent)) or "smx"
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ}
    )
