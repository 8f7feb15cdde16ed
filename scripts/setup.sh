#!/usr/bin/env bash
# Set up everything smx needs, idempotently: espeak-ng (apt-get), .venv, the pinned
# Python packages. A second call checks a stamp and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.smx-installed"
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# 1. System package: espeak-ng synthesises the embedded corpus.
if ! command -v espeak-ng >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || die "espeak-ng is missing and installing it needs root: run 'sudo apt-get install -y espeak-ng', then this command again."
      SUDO="sudo"
    fi
    say "installing espeak-ng with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
  else
    die "espeak-ng is missing and apt-get is not available: install espeak-ng with your system's package manager (macOS: brew install espeak-ng), then run this command again."
  fi
fi

# 2. Python >= 3.11 and the virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-}"
  if [ -z "$PY" ]; then
    for cand in python3.11 python3.12 python3.13 python3; do
      if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        PY="$cand"; break
      fi
    done
  fi
  [ -n "$PY" ] || die "Python 3.11 or newer was not found: install python3.11 (Debian/Ubuntu: apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python."
  say "creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV" || die "could not create $VENV: install the venv module (Debian/Ubuntu: apt-get install python3-venv)."
fi

# 3. Python packages, pinned by requirements.lock; skipped when nothing changed.
# pip's output without its "is ignored" notes; a failed install stops here, with pip's reason
pip_install() {
  local status=0
  "$VENV/bin/python" -m pip install --quiet "$@" > "$VENV/pip.log" 2>&1 || status=$?
  grep -v "is ignored" "$VENV/pip.log" || true
  [ "$status" -eq 0 ] || die "pip install $* failed (pip's reason above; 'No space left on device': free disk space, the venv needs about 7 GB)."
}
want="$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  say "packages up to date ($VENV)"
else
  say "installing smx and its pinned dependencies into $VENV (first time: a few minutes)"
  pip_install --upgrade "pip>=25"
  pip_install -c requirements.lock -e '.[dev,test-speechbrain]'
  "$VENV/bin/python" scripts/check_env.py || die "the environment check failed (see above)."
  echo "$want" > "$STAMP"
fi
