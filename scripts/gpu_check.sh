#!/usr/bin/env bash
# Check and measure the GPU path on one GPU machine: `smx bench gpu` for a bare machine.
#
#   scripts/gpu_check.sh [options of smx bench gpu]     # e.g. --out reports/bench/gpu
#   scripts/gpu_check.sh --device cpu --quick           # the CI run, on a CPU
#
# The machine needs Python 3.12 and torch with CUDA, nothing else of the project and no
# network: the script first unpacks the wheels of scripts/gpu_wheels.txt from wheels/gpu/
# (an ignored folder: fill it with scripts/fetch_gpu_wheels.sh where a package index is
# reachable, and carry it with the working tree) into wheels/site/, puts that folder first
# on PYTHONPATH, then runs `python -m smx.bench.gpu` (no typer, rich, Ray, MLflow, DVC or
# Lhotse needed). It checks the device, measures one bf16 pre-training step per paper-scale
# variant at 20, 40 and 80 s, eager and compiled, within about 8 minutes on one H200, and
# writes gpu.json, gpu.md and gpu-worker.log to the --out folder (reports/bench/gpu).
#
# Environment: PYTHON (default python3); SMX_GPU_WHEELS (default wheels/gpu; "none" uses
# the packages already installed, as in CI); SMX_GPU_SITE (default wheels/site).
# Exit status: 0 done, 1 a check or a point failed, 2 bad arguments, no CUDA or no wheels.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  echo "Options: run it with SMX_GPU_WHEELS set and --help after the install, or read smx/bench/gpu.py."
  exit 0
fi

PYTHON=${PYTHON:-python3}
WHEELS=${SMX_GPU_WHEELS:-wheels/gpu}
SITE=${SMX_GPU_SITE:-wheels/site}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "scripts/gpu_check.sh: no Python named '$PYTHON' on the PATH; set PYTHON" >&2
  exit 2
fi
if [ "$WHEELS" != "none" ]; then
  "$PYTHON" -m smx.bench.gpu_wheels "$WHEELS" "$SITE" >&2 || exit $?
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # smx from this working tree
exec "$PYTHON" -m smx.bench.gpu "$@"
