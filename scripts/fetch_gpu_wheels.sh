#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh installs on a bare GPU machine (the list and
# versions: scripts/gpu_wheels.txt) into wheels/gpu/, an ignored folder; run it where a
# package index is reachable, then carry wheels/gpu with the working tree.
#
#   scripts/fetch_gpu_wheels.sh [PYTHON_VERSION]     # default 3.12 (manylinux x86_64)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=${1:-3.12}
dest=${SMX_GPU_WHEELS:-wheels/gpu}
pip=(.venv/bin/python -m pip)
[ -x .venv/bin/python ] || pip=(python3 -m pip)
mapfile -t pins < <(sed 's/#.*//; /^[[:space:]]*$/d' scripts/gpu_wheels.txt)
mkdir -p "$dest"
"${pip[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$version" --implementation cp --abi "cp${version/./}" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  --dest "$dest" "${pins[@]}" 2> >(grep -v "^WARNING: Location" >&2)
echo "downloaded ${#pins[@]} wheels for Python $version into $dest ($(du -sh "$dest" | cut -f1));"
echo "carry $dest to the GPU machine with the working tree, then run scripts/gpu_check.sh there"
